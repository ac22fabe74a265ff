/* kvattn.cu — decode attention (one new query per sequence, a batch of sequences) over the
 * compressed KV cache of kvquant.h / runtime/kvcache.c, reading the packed codes directly: no
 * dequantized copy is ever made. The twin is kvattn_ref (n_q = 1): the stored positions
 * 0 .. len-1 (keys [0,kq) in key blocks, values [0,vq) per token, the rest in the fp16 windows
 * at slot p % cap) plus the new token at position len, whose k/v come in k_new / v_new.
 *
 * Flash-decoding: every (sequence b, kv head, chunk of <= 8 query heads of its GQA group) row
 * of the context is cut into parts; a split kernel writes each part's running max m (log2
 * units), sum l and unnormalized output o to the workspace, kvattn_combine_kernel merges them
 * (out = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s, parts with m = -inf skipped).
 *  - kvattn_mma_kernel (kvattn_mma.cuh; impl KVATTN_MMA): parts 0 .. n_mma_parts-1, one per
 *    block of 4 warps, over the 32-token tiles below min(kq, vq) (keys and values both
 *    quantized), on the tensor cores; see that file for what each lane does. Its grid also
 *    carries the scalar parts of the tail as its last blocks (one launch for both).
 *  - kvattn_scalar_kernel: the remaining parts. Under KVATTN_MMA it covers the tail
 *    [32 * floor(min(kq, vq) / 32), len] (window, last partial tile, new token; kvattn_tail_len),
 *    under KVATTN_SCALAR every position [0, len]. Grid (parts, n_kv * hchunks, n_batch), 128
 *    threads; per tile of 128 positions: thread i scores position t0 + i against the chunk's
 *    (<= 8) heads with fp32 FMAs (the key dequantized on the fly: code * scale + zero; a window
 *    key read as 16-byte vectors of its fp16 row; or k_new), warp w then does the online-softmax
 *    step of heads w and w + 4, and thread c accumulates output channel c (and c + 128) of every
 *    head over the tile's values, 4 positions per step. Opt-in plan (kvattn_args.tail_split, not
 *    yet run on a GPU; run on the CPU by tests/emu/kvattn_emu.cpp): the scalar parts (the MMA
 *    impl's tail, or every position under the scalar impl) in parts of 32 positions, whose short
 *    tiles split the key scoring by channel quarter over the 4 warps, to shorten the tail's
 *    critical path.
 * Precision: fp32 throughout the scalar kernel; the MMA kernel keeps fp32-level accuracy (exact
 * integer codes, hi + lo fp16 halves of every non-integer operand). Against kvattn_ref the
 * outputs agree to ~1e-5 relative (tests/gpu_kvattn.c states its tolerance).
 * Test: ./build-gpu/tests/gpu_kvattn (on a GPU machine); benchmark: ./build-gpu/tests/bench_decode_attn. */
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

#define KVA_THREADS 128
#define KVA_TILE 128     /* positions per scalar tile */
#define KVA_HCHUNK 8     /* query heads per block (rows of the MMA tiles) */
#define KVA_MAX_D 256    /* scalar kernel; the MMA kernel takes 64 and 128 */
#define KVA_MAX_PARTS 2048
#define KVA_TARGET_BLOCKS 1024 /* scalar parts (impl scalar) */
#define KVA_MMA_BLOCKS 792     /* 2 waves of 3 resident MMA blocks on 132 SMs (H200) */
#define KVA_LOG2E 1.4426950408889634f

/* Everything the kernels need, passed by value. */
struct KvaParams {
    float *out, *o_part, *ml_part;     /* o_part [B][n_heads][n_parts][D], ml_part [..][2] */
    const float *q, *k_new, *v_new;
    const kvq_seq_dev *seqs;
    int n_batch, n_heads, n_kv, hchunks, D, G, k_bits, v_bits, max_len;
    int n_parts, n_mma_parts;          /* parts [0, n_mma_parts) come from the MMA kernel */
    int mma_blocks;                    /* MMA blocks per row (= n_mma_parts); tail blocks follow */
    int mma;                           /* 1: the scalar kernel covers only the tail */
    int fine_tail;                     /* tail_split plan: short tiles split keys by channel */
    int sc_split;                      /* positions per scalar part (a multiple of 32) */
    int mma_tiles;                     /* 32-token tiles per MMA block (a multiple of 4) */
    float qscale;                      /* scale * log2(e) */
};

static __device__ __forceinline__ float h2f(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}

/* First position the scalar kernel covers for this sequence. */
static __device__ __forceinline__ int tail_start(const KvaParams &P, const kvq_seq_dev &s) {
    if (!P.mma || P.k_bits > 4 || P.v_bits > 4) return 0;
    return (s.kq < s.vq ? s.kq : s.vq) / 32 * 32;
}

/* The counts describe a cache this launch can read completely (else the row becomes NaN). */
static __device__ bool seq_ok(const KvaParams &P, const kvq_seq_dev &s) {
    if (s.len < 0 || s.len + 1 > P.max_len || s.k_cap < 1 || s.v_cap < 1) return false;
    if (P.k_bits <= 4) {
        if (s.kq < 0 || s.kq % P.G || s.kq > s.len || s.len - s.kq > s.k_cap) return false;
    } else if (s.kq != 0 || s.len > s.k_cap) {
        return false;
    }
    if (P.v_bits <= 4) {
        if (s.vq < 0 || s.vq > s.len || s.len - s.vq > s.v_cap) return false;
    } else if (s.vq != 0 || s.len > s.v_cap) {
        return false;
    }
    const long long covered = (long long)(P.n_parts - P.n_mma_parts) * P.sc_split;
    return s.len + 1 - tail_start(P, s) <= covered;
}

/* Key of position p, channel c of kv head g as fp32 (quantized: code * scale + zero). */
static __device__ __forceinline__ float key_at(const KvaParams &P, const kvq_seq_dev &s, int b,
                                               int g, int p, int c) {
    if (p == s.len) return P.k_new[((size_t)b * P.n_kv + g) * P.D + c];
    if (p < s.kq) {
        const int G = P.G, bits = P.k_bits, tk = p % G;
        const uint8_t *u = s.k_quant + (((size_t)(p / G) * P.n_kv + g) * P.D + c) *
                                           ((size_t)G * bits / 8 + 4);
        const uint32_t w = reinterpret_cast<const uint32_t *>(u)[(tk * bits) >> 5];
        const uint32_t sz = *reinterpret_cast<const uint32_t *>(u + (size_t)G * bits / 8);
        const uint32_t code = (w >> ((tk * bits) & 31)) & ((1u << bits) - 1u);
        return (float)code * h2f((uint16_t)(sz & 0xffffu)) + h2f((uint16_t)(sz >> 16));
    }
    return h2f(s.k_win[((size_t)(p % s.k_cap) * P.n_kv + g) * P.D + c]);
}

static __device__ __forceinline__ float value_at(const KvaParams &P, const kvq_seq_dev &s, int b,
                                                 int g, int p, int c) {
    if (p == s.len) return P.v_new[((size_t)b * P.n_kv + g) * P.D + c];
    if (p < s.vq) {
        const int G = P.G, bits = P.v_bits, j = c / G, i = c % G;
        const uint8_t *u = s.v_quant + (((size_t)p * P.n_kv + g) * (P.D / G) + j) *
                                           ((size_t)G * bits / 8 + 4);
        const uint32_t w = reinterpret_cast<const uint32_t *>(u)[(i * bits) >> 5];
        const uint32_t sz = *reinterpret_cast<const uint32_t *>(u + (size_t)G * bits / 8);
        const uint32_t code = (w >> ((i * bits) & 31)) & ((1u << bits) - 1u);
        return (float)code * h2f((uint16_t)(sz & 0xffffu)) + h2f((uint16_t)(sz >> 16));
    }
    return h2f(s.v_win[((size_t)(p % s.v_cap) * P.n_kv + g) * P.D + c]);
}

/* Sum (is_max = false) or max over the warp; every lane gets it. */
static __device__ __forceinline__ float warp_reduce(float x, bool is_max) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = is_max ? fmaxf(x, y) : x + y;
    }
    return x;
}

/* One scalar tile: positions t0 .. t0+n-1 (n <= KVA_TILE) of the block's heads. */
struct __align__(16) ScalarSmem { /* float4 reads of q and p rows */
    float q[KVA_HCHUNK][KVA_MAX_D]; /* q * scale * log2(e); rows past the chunk are zeros */
    float p[KVA_HCHUNK][KVA_TILE];  /* scores, then exp2(score - m) */
    float m[KVA_HCHUNK], l[KVA_HCHUNK], alpha[KVA_HCHUNK];
};

/* acc[h] += q_h . key of position p over channels [c0, c1) (fp32 FMAs in channel order). */
static __device__ __forceinline__ void score_key(const KvaParams &P, const kvq_seq_dev &s,
                                                 const ScalarSmem &sm, int b, int g, int p,
                                                 int c0, int c1, float acc[KVA_HCHUNK]) {
    if (p >= s.kq && p < s.len && ((c0 | c1) & 7) == 0) {
        /* an fp16 window key: its row is D contiguous halves, read 16 bytes at a time (the
         * per-channel path below would touch 32 rows per warp load) */
        const uint4 *kr = reinterpret_cast<const uint4 *>(
            s.k_win + ((size_t)(p % s.k_cap) * P.n_kv + g) * P.D);
        for (int c8 = c0 / 8; c8 < c1 / 8; c8++) {
            const uint4 u = kr[c8];
            const uint32_t w[4] = {u.x, u.y, u.z, u.w};
            float k[8];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                k[2 * j] = h2f((uint16_t)(w[j] & 0xffffu));
                k[2 * j + 1] = h2f((uint16_t)(w[j] >> 16));
            }
#pragma unroll
            for (int h = 0; h < KVA_HCHUNK; h++) {
                const float4 qa = *reinterpret_cast<const float4 *>(&sm.q[h][8 * c8]);
                const float4 qb = *reinterpret_cast<const float4 *>(&sm.q[h][8 * c8 + 4]);
                float a = acc[h]; /* channel order as below: the same sums, bit for bit */
                a = fmaf(qa.x, k[0], a), a = fmaf(qa.y, k[1], a), a = fmaf(qa.z, k[2], a);
                a = fmaf(qa.w, k[3], a), a = fmaf(qb.x, k[4], a), a = fmaf(qb.y, k[5], a);
                a = fmaf(qb.z, k[6], a), acc[h] = fmaf(qb.w, k[7], a);
            }
        }
        return;
    }
    for (int c = c0; c < c1; c++) {
        const float k = key_at(P, s, b, g, p, c);
#pragma unroll
        for (int h = 0; h < KVA_HCHUNK; h++) acc[h] = fmaf(sm.q[h][c], k, acc[h]);
    }
}

static __device__ __forceinline__ void scalar_tile(const KvaParams &P, const kvq_seq_dev &s,
                                                   ScalarSmem &sm, int b, int g, int nh, int t0,
                                                   int n, float o[KVA_HCHUNK][2]) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, D = P.D;
    __syncthreads(); /* q loaded / the previous tile's p consumed */
    float acc[KVA_HCHUNK] = {};
    if (!(P.fine_tail && n <= 32)) { /* thread tid scores position t0 + tid */
        if (tid < n) score_key(P, s, sm, b, g, t0 + tid, 0, D, acc);
    } else {
        /* a short tile of the fine tail plan: warp w scores the positions over a quarter of the
         * channels, and the quarters are summed through sm.p (4 x 32 slots per head) */
        const int q4 = D / 4; /* every supported head_dim is a multiple of 16 */
        if (lane < n) score_key(P, s, sm, b, g, t0 + lane, warp * q4, (warp + 1) * q4, acc);
#pragma unroll
        for (int h = 0; h < KVA_HCHUNK; h++) sm.p[h][warp * 32 + lane] = acc[h];
        __syncthreads();
#pragma unroll
        for (int h = 0; h < KVA_HCHUNK; h++)
            acc[h] = tid < 32 ? sm.p[h][tid] + sm.p[h][32 + tid] + sm.p[h][64 + tid] +
                                    sm.p[h][96 + tid]
                              : 0.0f;
        __syncthreads(); /* every partial read before the scores overwrite them */
    }
#pragma unroll
    for (int h = 0; h < KVA_HCHUNK; h++) sm.p[h][tid] = tid < n ? acc[h] : -INFINITY;
    __syncthreads();
    for (int h = warp; h < nh; h += KVA_THREADS / 32) { /* online softmax of head h */
        float x[KVA_TILE / 32], mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < KVA_TILE / 32; i++) mx = fmaxf(mx, x[i] = sm.p[h][lane + 32 * i]);
        mx = warp_reduce(mx, true);
        const float m_old = sm.m[h], m_new = fmaxf(m_old, mx); /* finite: position t0 is valid */
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < KVA_TILE / 32; i++) {
            const float e = exp2f(x[i] - m_new); /* -inf (past n) gives 0 */
            sm.p[h][lane + 32 * i] = e;
            sum += e;
        }
        sum = warp_reduce(sum, false);
        __syncwarp();
        if (lane == 0) {
            const float a = exp2f(m_old - m_new); /* m_old = -inf before the first tile: 0 */
            sm.alpha[h] = a;
            sm.l[h] = sm.l[h] * a + sum;
            sm.m[h] = m_new;
        }
    }
    __syncthreads();
#pragma unroll
    for (int cs = 0; cs < 2; cs++) {
        const int c = tid + cs * KVA_THREADS;
        if (c >= D) break;
        float a[KVA_HCHUNK] = {};
        int i = 0;
        for (; i + 4 <= n; i += 4) { /* 4 positions: independent loads, one p load per head */
            const float v0 = value_at(P, s, b, g, t0 + i, c);
            const float v1 = value_at(P, s, b, g, t0 + i + 1, c);
            const float v2 = value_at(P, s, b, g, t0 + i + 2, c);
            const float v3 = value_at(P, s, b, g, t0 + i + 3, c);
#pragma unroll
            for (int h = 0; h < KVA_HCHUNK; h++) {
                const float4 pp = *reinterpret_cast<const float4 *>(&sm.p[h][i]);
                a[h] = fmaf(pp.w, v3, fmaf(pp.z, v2, fmaf(pp.y, v1, fmaf(pp.x, v0, a[h]))));
            }
        }
        for (; i < n; i++) {
            const float v = value_at(P, s, b, g, t0 + i, c);
#pragma unroll
            for (int h = 0; h < KVA_HCHUNK; h++) a[h] = fmaf(sm.p[h][i], v, a[h]);
        }
#pragma unroll
        for (int h = 0; h < KVA_HCHUNK; h++) o[h][cs] = h < nh ? o[h][cs] * sm.alpha[h] + a[h] : 0.0f;
    }
}

/* Scalar part `split` of the block's row (blockIdx.y, blockIdx.z): KVA_THREADS threads. */
static __device__ void scalar_part(const KvaParams &P, int split) {
    static __shared__ __align__(16) ScalarSmem sm;
    const int b = blockIdx.z, g = blockIdx.y / P.hchunks, hc = blockIdx.y % P.hchunks;
    const kvq_seq_dev s = P.seqs[b];
    if (!seq_ok(P, s)) return; /* the combine kernel writes NaN */
    const int group = P.n_heads / P.n_kv, h0 = hc * KVA_HCHUNK, D = P.D, tid = threadIdx.x;
    const int nh = min(KVA_HCHUNK, group - h0);
    const int first = tail_start(P, s) + split * P.sc_split;
    const int end = min(s.len + 1, first + P.sc_split);
    const int part = P.n_mma_parts + split;
    const size_t row0 = (size_t)b * P.n_heads + (size_t)g * group + h0; /* first head's row */
    if (first >= end) { /* an empty part */
        if (tid < nh) {
            P.ml_part[2 * ((row0 + tid) * P.n_parts + part)] = -INFINITY;
            P.ml_part[2 * ((row0 + tid) * P.n_parts + part) + 1] = 0.0f;
        }
        return;
    }
    for (int i = tid; i < KVA_HCHUNK * D; i += KVA_THREADS) {
        const int h = i / D, c = i % D;
        sm.q[h][c] = h < nh ? P.q[(row0 + h) * D + c] * P.qscale : 0.0f;
    }
    if (tid < KVA_HCHUNK) sm.m[tid] = -INFINITY, sm.l[tid] = 0.0f;
    float o[KVA_HCHUNK][2] = {};
    for (int t0 = first; t0 < end; t0 += KVA_TILE)
        scalar_tile(P, s, sm, b, g, nh, t0, min(KVA_TILE, end - t0), o);
    for (int h = 0; h < nh; h++) {
        float *dst = P.o_part + ((row0 + h) * P.n_parts + part) * D;
        if (tid < D) dst[tid] = o[h][0];
        if (tid + KVA_THREADS < D) dst[tid + KVA_THREADS] = o[h][1];
    }
    if (tid < nh) {
        P.ml_part[2 * ((row0 + tid) * P.n_parts + part)] = sm.m[tid];
        P.ml_part[2 * ((row0 + tid) * P.n_parts + part) + 1] = sm.l[tid];
    }
}

static __global__ void __launch_bounds__(KVA_THREADS, 4) kvattn_scalar_kernel(const KvaParams P) {
    scalar_part(P, blockIdx.x);
}

#ifndef KVA_EMULATE_SCALAR
#include "kvattn_mma.cuh"
#else /* tests/emu/kvattn_emu.cpp runs the scalar and combine kernels on the CPU: no MMA impl */
static bool kva_mma_supported(int, int, int) {
    return false;
}
#endif

/* Block-wide max (is_max) or sum; every thread gets the result. */
static __device__ float block_reduce(float x, bool is_max, float *part) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); /* part may still be read by a previous call */
    x = warp_reduce(x, is_max);
    if (lane == 0) part[warp] = x;
    __syncthreads();
    x = lane < (int)(blockDim.x >> 5) ? part[lane] : (is_max ? -INFINITY : 0.0f);
    return warp_reduce(x, is_max);
}

/* One block per (b, head): merges the parts, or writes NaN for a sequence seq_ok refuses. */
static __global__ void __launch_bounds__(KVA_THREADS) kvattn_combine_kernel(const KvaParams P) {
    static __shared__ float wpart[KVA_MAX_PARTS];
    static __shared__ float red[32];
    const int bh = blockIdx.x, b = bh / P.n_heads, D = P.D;
    float *dst = P.out + (size_t)bh * D;
    if (!seq_ok(P, P.seqs[b])) {
        for (int d = threadIdx.x; d < D; d += blockDim.x) dst[d] = __int_as_float(0x7fc00000);
        return;
    }
    const float *ml = P.ml_part + (size_t)bh * P.n_parts * 2;
    const float *op = P.o_part + (size_t)bh * P.n_parts * D;
    float mx = -INFINITY;
    for (int s = threadIdx.x; s < P.n_parts; s += blockDim.x) mx = fmaxf(mx, ml[2 * s]);
    mx = block_reduce(mx, true, red); /* finite: the new token is in some part */
    float lsum = 0.0f;
    for (int s = threadIdx.x; s < P.n_parts; s += blockDim.x) {
        const float ws = ml[2 * s] == -INFINITY ? 0.0f : exp2f(ml[2 * s] - mx);
        wpart[s] = ws;
        lsum += ws * (ws != 0.0f ? ml[2 * s + 1] : 0.0f);
    }
    lsum = block_reduce(lsum, false, red); /* its barriers also publish wpart */
    const float inv = 1.0f / lsum;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < P.n_parts; s++)
            if (wpart[s] != 0.0f) acc += wpart[s] * op[(size_t)s * D + d]; /* empty parts: no o */
        dst[d] = acc * inv;
    }
}

/* ---- launch plan ---- */

struct KvaPlan {
    int impl_mma, hchunks, rows;    /* rows: n_batch * n_kv * hchunks */
    int mma_tiles, mma_blocks;      /* tiles per MMA block, MMA blocks per row */
    int sc_split, sc_parts;
    int n_parts;
    int fine;                       /* the tail_split plan */
};

static bool kva_shape_ok(const kvattn_args *a) {
    auto width_ok = [](int bits) { return bits == 16 || bits == 4 || bits == 2 || bits == 1; };
    return a->n_batch >= 0 && a->n_batch <= 65535 && a->max_len >= 1 && a->n_heads > 0 &&
           a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0 && a->head_dim >= 1 &&
           a->head_dim <= KVA_MAX_D && (a->group == 32 || a->group == 64 || a->group == 128) &&
           width_ok(a->k_bits) && width_ok(a->v_bits) &&
           (a->v_bits == 16 || a->head_dim % a->group == 0) &&
           (a->impl == KVATTN_AUTO || a->impl == KVATTN_SCALAR || a->impl == KVATTN_MMA) &&
           a->tail_split >= 0;
}

static bool kva_plan(const kvattn_args *a, KvaPlan *pl) {
    if (!kva_shape_ok(a)) return false;
    const int group = a->n_heads / a->n_kv_heads;
    const bool mma_ok = kva_mma_supported(a->head_dim, a->k_bits, a->v_bits);
    if (a->impl == KVATTN_MMA && !mma_ok) return false;
    pl->impl_mma = a->impl == KVATTN_MMA || (a->impl == KVATTN_AUTO && mma_ok);
    pl->hchunks = (group + KVA_HCHUNK - 1) / KVA_HCHUNK;
    if ((long long)a->n_kv_heads * pl->hchunks > 65535) return false;
    const long long rows = (long long)a->n_batch * a->n_kv_heads * pl->hchunks;
    pl->rows = (int)rows;
    const long long r = rows > 0 ? rows : 1;
    pl->mma_tiles = 0, pl->mma_blocks = 0;
    int tail = a->max_len;
    if (pl->impl_mma) {
        const long long tiles = a->max_len / 32; /* whole tiles below min(kq, vq) <= len */
        /* a whole number of blocks per row, so that rows x blocks fills the waves instead of
         * spilling a partial one (B 16 x 32k on the H200: 7 blocks per row made 2.26 waves) */
        long long nb = KVA_MMA_BLOCKS / r;
        if (nb < 1) nb = 1;
        long long per = (tiles + nb - 1) / nb;
        per = (per + 3) / 4 * 4;
        pl->mma_tiles = (int)(per < 16 ? 16 : per);
        pl->mma_blocks = (int)((tiles + pl->mma_tiles - 1) / pl->mma_tiles);
        if (a->max_tail > 0 && a->max_tail < tail) tail = a->max_tail;
    }
    /* scalar parts: multiples of `unit` positions (a tile, or tail_split's multiple of 32) */
    const bool fine = a->tail_split > 0;
    const long long unit = fine ? 32 : KVA_TILE;
    long long sl;
    if (fine) {
        sl = a->tail_split;
    } else {
        const long long want = (KVA_TARGET_BLOCKS / 2 + r - 1) / r; /* scalar parts per row */
        sl = (tail + want - 1) / want;
    }
    sl = (sl + unit - 1) / unit * unit;
    if (sl < unit) sl = unit;
    const long long room = KVA_MAX_PARTS - (long long)pl->mma_blocks;
    if (room < 1) return false;
    if ((tail + sl - 1) / sl > room) sl = (tail + room - 1) / room;
    sl = (sl + unit - 1) / unit * unit;
    pl->fine = fine;
    pl->sc_split = (int)sl;
    pl->sc_parts = (int)((tail + sl - 1) / sl);
    pl->n_parts = pl->mma_blocks + pl->sc_parts;
    return pl->n_parts <= KVA_MAX_PARTS;
}

extern "C" size_t kvattn_workspace_bytes(const kvattn_args *a) {
    KvaPlan pl;
    if (!a || !kva_plan(a, &pl)) return 0;
    return (size_t)a->n_batch * a->n_heads * pl.n_parts * (a->head_dim + 2) * sizeof(float);
}

#if defined(KVA_EMULATE_SCALAR) && !defined(KVA_EMULATE)
#define KVA_EMULATE
#endif
#ifndef KVA_EMULATE
extern "C" cudaError_t kvattn_cuda(const kvattn_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->out && a->q && a->k_new && a->v_new && a->seqs && a->workspace);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(a->k_bits != 32 && a->v_bits != 32); /* the fp32 reference width: CPU only */
    AKV_REQUIRE(kva_shape_ok(a));
    AKV_REQUIRE(a->impl != KVATTN_MMA || kva_mma_supported(a->head_dim, a->k_bits, a->v_bits));
    KvaPlan pl;
    AKV_REQUIRE(kva_plan(a, &pl));
    AKV_REQUIRE(a->workspace_bytes >= kvattn_workspace_bytes(a));
    AKV_REQUIRE(((uintptr_t)a->workspace | (uintptr_t)a->q | (uintptr_t)a->out) % 16 == 0);
    if (a->n_batch == 0) return cudaSuccess;
    KvaParams P;
    P.out = a->out;
    P.o_part = (float *)a->workspace;
    P.ml_part = P.o_part + (size_t)a->n_batch * a->n_heads * pl.n_parts * a->head_dim;
    P.q = a->q, P.k_new = a->k_new, P.v_new = a->v_new, P.seqs = a->seqs;
    P.n_batch = a->n_batch, P.n_heads = a->n_heads, P.n_kv = a->n_kv_heads, P.hchunks = pl.hchunks, P.D = a->head_dim;
    P.G = a->group, P.k_bits = a->k_bits, P.v_bits = a->v_bits, P.max_len = a->max_len;
    P.n_parts = pl.n_parts, P.n_mma_parts = pl.mma_blocks, P.mma = pl.impl_mma;
    P.mma_blocks = pl.mma_blocks;
    P.sc_split = pl.sc_split, P.mma_tiles = pl.mma_tiles, P.fine_tail = pl.fine;
    P.qscale = a->scale * KVA_LOG2E;
    const dim3 rows(1, a->n_kv_heads * pl.hchunks, a->n_batch);
    if (pl.mma_blocks > 0) { /* the tail's scalar parts ride along as the last blocks */
        const cudaError_t e = kva_mma_launch(P, pl.mma_blocks + pl.sc_parts, stream);
        if (e != cudaSuccess) return e;
    } else {
        kvattn_scalar_kernel<<<dim3(pl.sc_parts, rows.y, rows.z), KVA_THREADS, 0, stream>>>(P);
        AKV_LAUNCH_CHECK();
    }
    kvattn_combine_kernel<<<a->n_batch * a->n_heads, KVA_THREADS, 0, stream>>>(P);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
#endif
