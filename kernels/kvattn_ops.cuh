/* kvattn_ops.cuh — the few warp-level device operations kvattn_tc.cuh is built from, each one
 * PTX instruction (sm_90): fp16x2 arithmetic on 32-bit words, mma.sync m16n8k16 (fp16 in, fp32
 * accumulate), movmatrix (8x8 transpose across the warp), and the bulk copy engine with its
 * mbarrier. tests/emu/kernel/kvattn_ops_emu.h implements the same functions on the CPU (bit-exact
 * fp16 roundings, the PTX fragment layouts), so tests/emu/kvattn_emu.cpp runs the kernel source
 * in CI. Fragment layouts (g = lane / 4, t = lane % 4), lower half = lower column / k:
 *   A 16x16: a0 (row g, cols 2t, 2t+1), a1 (row g+8, same), a2 (row g, cols 2t+8, 2t+9),
 *            a3 (row g+8, cols 2t+8, 2t+9);   B 16x8: b0 (k 2t, 2t+1; col g), b1 (k 2t+8, 2t+9);
 *   C 16x8: c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same);
 *   movmatrix 8x8: a lane holds row g, cols 2t, 2t+1, before and after the transpose. */
#ifndef ASYMKV_KVATTN_OPS_CUH
#define ASYMKV_KVATTN_OPS_CUH

#ifdef KVA_EMULATE
#include "kvattn_ops_emu.h" /* tests/emu/kernel/: the same functions on the CPU */
#else

#include <cuda_fp16.h>
#include <stdint.h>

namespace kvt {

__device__ __forceinline__ uint32_t hmul2(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}
__device__ __forceinline__ uint32_t hsub2(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}
/* (a & b) | c in one LOP3 (b, c registers: the compiler must not split it into two immediates). */
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
/* 2^x for x <= 0 (softmax weights): one MUFU.EX2; results below 2^-126 flush to 0. */
__device__ __forceinline__ float exp2_ftz(float x) {
    float d;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(d) : "f"(x));
    return d;
}
/* fp16x2 of (lo, hi), round to nearest even. */
__device__ __forceinline__ uint32_t pack_h2(float lo, float hi) {
    uint32_t d;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}

/* d = a . b + c (16x16 by 16x8, fp16 in, fp32 accumulate); d may be c. */
__device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1,
                                         const float c[4]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(c[0]),
                   "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

/* The transpose of the 8x8 fp16 matrix the warp holds (one word per lane). */
__device__ __forceinline__ uint32_t movm_t(uint32_t x) {
    uint32_t d;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(d) : "r"(x));
    return d;
}

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* ---- the bulk copy engine, completing on an mbarrier ---- */
__device__ __forceinline__ void mbar_init(uint64_t *bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count)
                 : "memory");
}
/* Makes initialized barriers visible to the copy engine. */
__device__ __forceinline__ void mbar_fence_init() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
/* One arrival that also expects `bytes` of copies to complete on the barrier. */
__device__ __forceinline__ void mbar_arrive_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(
                     smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_addr(bar))
                 : "memory");
}
/* Waits until the barrier's phase with this parity has completed. */
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "WAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT_%=;\n"
                 "}\n" ::"r"(smem_addr(bar)),
                 "r"(parity)
                 : "memory");
}
/* Orders this thread's earlier shared-memory accesses before later copy-engine writes. */
__device__ __forceinline__ void fence_async() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
/* bytes (a multiple of 16, both addresses 16-byte aligned) from global src to shared dst. */
__device__ __forceinline__ void bulk_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], "
                 "%2, [%3];" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
}

/* 16 / 8 / 4 bytes from shared or global memory (plain loads; the compiler emits LDS/LDG). */
__device__ __forceinline__ uint4 ld16(const void *p) { return *reinterpret_cast<const uint4 *>(p); }
__device__ __forceinline__ uint2 ld8(const void *p) { return *reinterpret_cast<const uint2 *>(p); }
__device__ __forceinline__ uint32_t ld4(const void *p) { return *reinterpret_cast<const uint32_t *>(p); }
/* 16 / 8 bytes from global memory that no one writes during the kernel (read-only path). */
__device__ __forceinline__ uint4 ldg16(const void *p) { return __ldg(reinterpret_cast<const uint4 *>(p)); }
__device__ __forceinline__ uint2 ldg8(const void *p) { return __ldg(reinterpret_cast<const uint2 *>(p)); }

#define KVT_DYN_SMEM(name) extern __shared__ __align__(16) uint8_t name[]

} // namespace kvt

#endif /* KVA_EMULATE */
#endif
