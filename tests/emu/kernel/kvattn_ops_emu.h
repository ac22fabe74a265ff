/* kvattn_ops_emu.h — kernels/kvattn_ops.cuh's device operations on the CPU (tests/emu/
 * kernel_emu.h's threads): fp16x2 arithmetic rounded exactly as the GPU rounds it (the exact
 * product or difference, once, to nearest even), mma.sync m16n8k16 and movmatrix as warp
 * collectives over the PTX fragment layouts (the product summed in double, then rounded to
 * float: the tensor cores' own summation order is not specified, so the kernel's error here is
 * at most its error on the GPU), the bulk copy as a memcpy that completes at once (waiting on an
 * mbarrier is a warp barrier, so the issuing lane's copy is done for all), loads as memcpy. */
#ifndef ASYMKV_KVATTN_OPS_EMU_H
#define ASYMKV_KVATTN_OPS_EMU_H

#include <cstdint>
#include <cstring>

#include "common.h"
#include "kernel_emu.h"

namespace kvt {

inline float h_lo(uint32_t x) { return akv_f16_to_f32((uint16_t)(x & 0xffffu)); }
inline float h_hi(uint32_t x) { return akv_f16_to_f32((uint16_t)(x >> 16)); }
inline uint32_t h2(float lo, float hi) {
    return (uint32_t)akv_f32_to_f16(lo) | (uint32_t)akv_f32_to_f16(hi) << 16;
}

inline uint32_t hmul2(uint32_t a, uint32_t b) { /* fp16 x fp16 is exact in fp32 */
    return h2(h_lo(a) * h_lo(b), h_hi(a) * h_hi(b));
}
inline uint32_t hsub2(uint32_t a, uint32_t b) {
    return h2((float)((double)h_lo(a) - h_lo(b)), (float)((double)h_hi(a) - h_hi(b)));
}
inline uint32_t pack_h2(float lo, float hi) { return h2(lo, hi); }
inline uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) { return (a & b) | c; }
inline float exp2_ftz(float x) {
    const float y = exp2f(x);
    return y < 1.17549435e-38f ? 0.0f : y;
}

/* fp16 element k of row r of the A fragments the lanes put down (16 x 16). */
inline float a_elem(const emu::Lane *ln, int r, int k) {
    const int lane = 4 * (r & 7) + (k & 7) / 2, reg = (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    const uint32_t x = ln[lane].a[reg];
    return k & 1 ? h_hi(x) : h_lo(x);
}
/* Element (k, n) of the B fragments (16 x 8). */
inline float b_elem(const emu::Lane *ln, int k, int n) {
    const uint32_t x = ln[4 * n + (k & 7) / 2].b[k >= 8 ? 1 : 0];
    return k & 1 ? h_hi(x) : h_lo(x);
}

inline void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const float c[4]) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    emu::Lane *ln = emu::blk->lanes.data() + (size_t)w * 32;
    for (int i = 0; i < 4; i++) ln[l].a[i] = a[i], ln[l].c[i] = c[i];
    ln[l].b[0] = b0, ln[l].b[1] = b1;
    emu::blk->warp[w]->arrive_and_wait();
    const int g = (int)l >> 2, t = (int)l & 3;
    float out[4];
    for (int i = 0; i < 4; i++) {
        const int r = g + (i >= 2 ? 8 : 0), n = 2 * t + (i & 1);
        double acc = ln[l].c[i];
        for (int k = 0; k < 16; k++) acc += (double)a_elem(ln, r, k) * b_elem(ln, k, n);
        out[i] = (float)acc;
    }
    emu::blk->warp[w]->arrive_and_wait(); /* every lane has read before d (which may be c) is set */
    for (int i = 0; i < 4; i++) d[i] = out[i];
}

inline uint32_t movm_t(uint32_t x) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    emu::Lane *ln = emu::blk->lanes.data() + (size_t)w * 32;
    ln[l].x = x;
    emu::blk->warp[w]->arrive_and_wait();
    const int g = (int)l >> 2, t = (int)l & 3;
    /* out (row g, cols 2t, 2t+1) = in (rows 2t, 2t+1, col g): lane 4r + g/2, half g%2 */
    const uint32_t s0 = ln[4 * (2 * t) + g / 2].x, s1 = ln[4 * (2 * t + 1) + g / 2].x;
    const uint32_t lo = g & 1 ? s0 >> 16 : s0 & 0xffffu, hi = g & 1 ? s1 >> 16 : s1 & 0xffffu;
    emu::blk->warp[w]->arrive_and_wait();
    return lo | hi << 16;
}

inline void mbar_init(uint64_t *bar, uint32_t) { *bar = 0; }
inline void mbar_fence_init() {}
inline void mbar_arrive_tx(uint64_t *, uint32_t) {}
inline void mbar_arrive(uint64_t *) {}
/* The copies lane 0 issued (memcpy, done at issue) are seen by the warp after its barrier. */
inline void mbar_wait(uint64_t *, uint32_t) { __syncwarp(); }
inline void fence_async() {}
inline void bulk_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *) { memcpy(dst, src, bytes); }

inline uint4 ld16(const void *p) { uint4 u; memcpy(&u, p, 16); return u; }
inline uint2 ld8(const void *p) { uint2 u; memcpy(&u, p, 8); return u; }
inline uint32_t ld4(const void *p) { uint32_t u; memcpy(&u, p, 4); return u; }
inline uint4 ldg16(const void *p) { return ld16(p); }
inline uint2 ldg8(const void *p) { return ld8(p); }

#define KVT_DYN_SMEM(name) uint8_t *name = dyn_smem()

} // namespace kvt

#endif
