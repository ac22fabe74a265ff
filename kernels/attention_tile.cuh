/* attention_tile.cuh — warp-level building blocks shared by attention_prefill.cu and
 * attention_decode.cu: a warp owns 16 "rows" (queries of one head for prefill, heads of one GQA
 * group for decode) and streams 64-key tiles of an fp16 K/V cache through shared memory with an
 * online softmax, using mma.sync.m16n8k16 (fp16 inputs, fp32 accumulation).
 * Fragment layouts are the PTX ISA's for m16n8k16 (g = lane / 4, t = lane % 4):
 *   A 16x16: reg0 (row g, cols 2t, 2t+1), reg1 (row g+8, same cols),
 *            reg2 (row g, cols 2t+8, 2t+9), reg3 (row g+8, cols 2t+8, 2t+9)
 *   B 16x8 : reg0 (k 2t, 2t+1; col g), reg1 (k 2t+8, 2t+9; col g)
 *   C 16x8 : c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same cols)
 * so the score accumulators of two adjacent 8-key tiles are exactly the A fragment of P for the
 * P·V product (no shuffle, no shared-memory round trip). Scores are kept in log2 units: Q is
 * pre-multiplied by scale * log2(e) and the softmax uses exp2f. */
#ifndef ASYMKV_ATTENTION_TILE_CUH
#define ASYMKV_ATTENTION_TILE_CUH

#include <cuda_fp16.h>
#include <stdint.h>

namespace akv_attn {

constexpr int BC = 64; /* keys per shared-memory tile */
constexpr float LOG2E = 1.4426950408889634f;

/* One tile of keys and values. Rows are padded by 16 bytes so the eight 16-byte row reads of
 * one ldmatrix phase fall in eight different 4-bank groups (conflict-free for D % 16 == 0). */
template <int D> struct KVTile {
    __half k[BC][D + 8];
    __half v[BC][D + 8];
};

/* Per-warp state for its 16 rows (this thread holds rows g and g+8). */
template <int D> struct WarpState {
    uint32_t q[D / 16][4]; /* Q as A fragments, fp16, scaled by scale * log2(e) */
    float o[D / 8][4];     /* unnormalized output, C fragments over D/8 column tiles */
    float m[2];            /* running max of rows g, g+8 (log2 units; -inf before any key) */
    float l[2];            /* this thread's share of the running row sums */
};

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte global -> shared copy; ok = false writes zeros and reads nothing. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p))
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p))
                 : "memory");
}

/* c += a · b (16x16 by 16x8, fp16 in, fp32 accumulate). */
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi); /* lo in the low 16 bits: the lower column */
    return *reinterpret_cast<uint32_t *>(&h);
}

/* Cooperative async load of keys kv0 .. kv0+BC-1 (rows at or past kv_end become zeros) by the
 * NT threads of the block: K as one commit group, V as a second, so a caller can start on the
 * scores after cp_async_wait<1>() while V is still in flight. k, v point at this kv head's row 0;
 * stride is halves between positions. */
template <int D, int NT>
__device__ __forceinline__ void load_kv_tile(KVTile<D> &t, const __half *k, const __half *v,
                                             size_t stride, int kv0, int kv_end) {
    constexpr int CH = D / 8; /* 16-byte chunks per row */
#pragma unroll 4
    for (int i = threadIdx.x; i < BC * CH; i += NT) {
        const int r = i / CH, c = i % CH, key = kv0 + r;
        const bool ok = key < kv_end;
        cp_async16(&t.k[r][c * 8], k + (ok ? (size_t)key * stride + c * 8 : 0), ok);
    }
    cp_async_commit();
#pragma unroll 4
    for (int i = threadIdx.x; i < BC * CH; i += NT) {
        const int r = i / CH, c = i % CH, key = kv0 + r;
        const bool ok = key < kv_end;
        cp_async16(&t.v[r][c * 8], v + (ok ? (size_t)key * stride + c * 8 : 0), ok);
    }
    cp_async_commit();
}

/* Loads this thread's Q rows (q0: row g, q1: row g+8; NULL = a padding row of zeros), scales
 * them, and resets the softmax state. */
template <int D>
__device__ __forceinline__ void warp_init(WarpState<D> &w, const float *q0, const float *q1,
                                          float qscale) {
    const int t = threadIdx.x & 3;
#pragma unroll
    for (int c = 0; c < D / 16; c++) {
#pragma unroll
        for (int hi = 0; hi < 2; hi++) {
            const int col = 16 * c + 8 * hi + 2 * t;
            const float2 a = q0 ? *reinterpret_cast<const float2 *>(q0 + col) : make_float2(0, 0);
            const float2 b = q1 ? *reinterpret_cast<const float2 *>(q1 + col) : make_float2(0, 0);
            w.q[c][2 * hi] = pack_half2(a.x * qscale, a.y * qscale);
            w.q[c][2 * hi + 1] = pack_half2(b.x * qscale, b.y * qscale);
        }
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++)
        w.o[dt][0] = w.o[dt][1] = w.o[dt][2] = w.o[dt][3] = 0.0f;
    w.m[0] = w.m[1] = -INFINITY;
    w.l[0] = w.l[1] = 0.0f;
}

/* Scores of the warp's rows against the tile's keys kv0 .. kv0+BC-1, keys past lim0 (row g) /
 * lim1 (row g+8) masked when need_mask, then the online-softmax step: on return p holds
 * exp2(s - m_new) and the output accumulator has been rescaled to m_new. */
template <int D>
__device__ __forceinline__ void warp_scores(WarpState<D> &w, const KVTile<D> &t, float p[BC / 8][4],
                                            int kv0, int lim0, int lim1, bool need_mask) {
    const int lane = threadIdx.x & 31, tq = lane & 3, mi = lane >> 3;
#pragma unroll
    for (int nt = 0; nt < BC / 8; nt++)
        p[nt][0] = p[nt][1] = p[nt][2] = p[nt][3] = 0.0f;
#pragma unroll
    for (int c = 0; c < D / 16; c++) {
#pragma unroll
        for (int np = 0; np < BC / 16; np++) { /* matrices: (keys lo, d lo) (keys lo, d hi) */
            uint32_t b[4];                     /*           (keys hi, d lo) (keys hi, d hi) */
            ldsm_x4(b, &t.k[16 * np + 8 * (mi >> 1) + (lane & 7)][16 * c + 8 * (mi & 1)]);
            mma16816(p[2 * np], w.q[c], b[0], b[1]);
            mma16816(p[2 * np + 1], w.q[c], b[2], b[3]);
        }
    }
    if (need_mask) {
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int key = kv0 + 8 * nt + 2 * tq + e;
                if (key > lim0) p[nt][e] = -INFINITY;
                if (key > lim1) p[nt][2 + e] = -INFINITY;
            }
        }
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < BC / 8; nt++) {
        mx0 = fmaxf(mx0, fmaxf(p[nt][0], p[nt][1]));
        mx1 = fmaxf(mx1, fmaxf(p[nt][2], p[nt][3]));
    }
#pragma unroll
    for (int o = 1; o <= 2; o <<= 1) { /* the four lanes of a row group */
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o));
    }
    const float mn0 = fmaxf(w.m[0], mx0), mn1 = fmaxf(w.m[1], mx1);
    /* A row that has seen only masked keys keeps m = -inf; subtract 0 then, never inf - inf. */
    const float base0 = mn0 == -INFINITY ? 0.0f : mn0, base1 = mn1 == -INFINITY ? 0.0f : mn1;
    const float a0 = exp2f(w.m[0] - base0), a1 = exp2f(w.m[1] - base1);
    w.m[0] = mn0;
    w.m[1] = mn1;
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < BC / 8; nt++) {
        p[nt][0] = exp2f(p[nt][0] - base0);
        p[nt][1] = exp2f(p[nt][1] - base0);
        p[nt][2] = exp2f(p[nt][2] - base1);
        p[nt][3] = exp2f(p[nt][3] - base1);
        s0 += p[nt][0] + p[nt][1];
        s1 += p[nt][2] + p[nt][3];
    }
    w.l[0] = w.l[0] * a0 + s0;
    w.l[1] = w.l[1] * a1 + s1;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        w.o[dt][0] *= a0;
        w.o[dt][1] *= a0;
        w.o[dt][2] *= a1;
        w.o[dt][3] *= a1;
    }
}

/* o += P · V for the tile: P (16 rows x 64 keys) straight from the score registers. */
template <int D>
__device__ __forceinline__ void warp_pv(WarpState<D> &w, const KVTile<D> &t,
                                        const float p[BC / 8][4]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int kc = 0; kc < BC / 16; kc++) {
        const uint32_t a[4] = {pack_half2(p[2 * kc][0], p[2 * kc][1]),
                               pack_half2(p[2 * kc][2], p[2 * kc][3]),
                               pack_half2(p[2 * kc + 1][0], p[2 * kc + 1][1]),
                               pack_half2(p[2 * kc + 1][2], p[2 * kc + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) { /* matrices: (keys lo, d lo) (keys hi, d lo) */
            uint32_t b[4];                    /*           (keys lo, d hi) (keys hi, d hi) */
            ldsm_x4_trans(
                b, &t.v[16 * kc + 8 * ((lane >> 3) & 1) + (lane & 7)][16 * dp + 8 * (lane >> 4)]);
            mma16816(w.o[2 * dp], a, b[0], b[1]);
            mma16816(w.o[2 * dp + 1], a, b[2], b[3]);
        }
    }
}

/* Full row sums of rows g and g+8 (the four lanes of a row group hold a share each). */
template <int D> __device__ __forceinline__ void warp_row_sums(const WarpState<D> &w, float l[2]) {
    l[0] = w.l[0];
    l[1] = w.l[1];
#pragma unroll
    for (int o = 1; o <= 2; o <<= 1) {
        l[0] += __shfl_xor_sync(0xffffffffu, l[0], o);
        l[1] += __shfl_xor_sync(0xffffffffu, l[1], o);
    }
}

/* Writes rows g (to o0, times f0) and g+8 (to o1, times f1); NULL skips a row. */
template <int D>
__device__ __forceinline__ void warp_store(const WarpState<D> &w, float *o0, float *o1, float f0,
                                           float f1) {
    const int t = threadIdx.x & 3;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        const int col = 8 * dt + 2 * t;
        if (o0)
            *reinterpret_cast<float2 *>(o0 + col) = make_float2(w.o[dt][0] * f0, w.o[dt][1] * f0);
        if (o1)
            *reinterpret_cast<float2 *>(o1 + col) = make_float2(w.o[dt][2] * f1, w.o[dt][3] * f1);
    }
}

} /* namespace akv_attn */

#endif
