/* kvattn.cu — decode attention (one new query per sequence, a batch of sequences) over the
 * compressed KV cache of kvlayout.h / runtime/kvcache.c, reading the packed codes directly: no
 * dequantized copy is ever made. The twin is kvattn_ref (n_q = 1): the stored positions
 * 0 .. len-1 (keys [0,kq) in key records, values [0,vq) in value records, the rest in the fp16
 * windows at slot p % cap) plus the new token at position len, whose k/v come in k_new / v_new.
 *
 * Flash-decoding: every (sequence b, kv head, chunk of <= 8 query heads of its GQA group) row
 * of the stored context is cut into parts; a split kernel writes each part's running max m (log2
 * units), sum l and unnormalized output o to the workspace, kvattn_combine_kernel merges them with
 * the new token (its score q'.k_new, weight 2^(s - M), value v_new):
 * out = (sum_s 2^(m_s - M) o_s + 2^(s_new - M) v_new) / (sum_s 2^(m_s - M) l_s + 2^(s_new - M)).
 *  - KVATTN_MMA: kvattn_tc_kernel (kvattn_tc.cuh), tensor cores, the default where it applies
 *    (G 32, head_dim 64 / 80 / 96 / 128, a quantized K or V). Plan (kva_plan_tc): rows x parts
 *    about one wave of resident blocks (SM count x blocks per SM); the 4 x parts warps of a row
 *    share its tiles by cost (a fast tile 1, a tail tile KVT_TAIL_COST: it reads fp16 rows).
 *  - KVATTN_SCALAR: kvattn_scalar_kernel, fp32, any shape the cache takes (G 64 / 128, other
 *    head_dims): grid (parts, n_kv * hchunks, n_batch), 128 threads; per tile of 128 positions:
 *    thread i scores position t0 + i against the chunk's (<= 8) heads with fp32 FMAs (the key
 *    dequantized on the fly: code * scale + zero; a window key read as 16-byte vectors of its
 *    fp16 row), warp w then does the online-softmax step of heads w and w + 4, and thread c
 *    accumulates output channel c (and c + 128) of every head over the tile's values, 4
 *    positions per step. CPU twin of this kernel's code: tests/emu/kvattn_emu.cpp.
 * Test: ./build-gpu/tests/gpu_kvattn (on a GPU machine); benchmark: ./build-gpu/tests/bench_decode_attn. */
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

#define KVA_THREADS 128
#define KVA_TILE 128     /* positions per scalar tile */
#define KVA_HCHUNK 8     /* query heads per row (the columns of the MMA tiles) */
#define KVA_MAX_D 256    /* scalar kernel */
#define KVA_MAX_PARTS 2048
#define KVA_TARGET_BLOCKS 1024 /* scalar parts */
#define KVA_LOG2E 1.4426950408889634f
#define KVT_MIN_BLOCKS 4       /* tensor-core blocks per SM the register allocation allows */
#define KVT_TAIL_COST 4        /* a tail tile (fp16 rows, 16 KB at D 128) in fast tiles (2.5 KB) */

/* Everything the kernels need, passed by value. */
struct KvaParams {
    float *out, *o_part, *ml_part;     /* o_part [B][n_heads][n_parts][D], ml_part [..][2] */
    const float *q, *k_new, *v_new;
    const kvq_seq_dev *seqs;
    int n_batch, n_heads, n_kv, hchunks, D, G, k_bits, v_bits, max_len;
    int n_parts;
    int tc;                            /* 1: the tensor-core kernel's plan */
    int sc_split;                      /* scalar: positions per part (a multiple of KVA_TILE) */
    int tail_cost;                     /* tensor cores: a tail tile's cost in fast tiles */
    uint32_t magic[5];                 /* fp16x2 2^(10 - 2i): code fields at bit 2i weigh 1 */
    float qscale;                      /* scale * log2(e) */
};

static __device__ __forceinline__ float h2f(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}

/* The counts describe a cache this launch can read completely (else the row becomes NaN). */
static __device__ bool seq_ok(const KvaParams &P, const kvq_seq_dev &s) {
    if (s.len < 0 || s.len + 1 > P.max_len || s.k_cap < 1 || s.v_cap < 1) return false;
    if (kvl_is_quant(P.k_bits)) {
        if (s.kq < 0 || s.kq % P.G || s.kq > s.len || s.len - s.kq > s.k_cap) return false;
    } else if (s.kq != 0 || s.len > s.k_cap) {
        return false;
    }
    if (kvl_is_quant(P.v_bits)) {
        if (s.vq < 0 || s.vq > s.len || s.len - s.vq > s.v_cap) return false;
    } else if (s.vq != 0 || s.len > s.v_cap) {
        return false;
    }
    return P.tc || (long long)P.n_parts * P.sc_split >= s.len; /* tc: every tile has a warp */
}

/* Key of position p, channel c of kv head g as fp32 (quantized: code * scale + zero). */
static __device__ __forceinline__ float key_at(const KvaParams &P, const kvq_seq_dev &s, int g,
                                               int p, int c) {
    if (p < s.kq) {
        const uint8_t *rec = s.k_quant + kvl_record_off(P.k_bits, P.D, P.G, P.n_kv, p / P.G, g);
        return (float)kvl_get_code(rec, 1, P.k_bits, P.D, p % P.G, c) *
                   h2f(kvl_key_scale(rec, P.k_bits, P.D, P.G, c)) +
               h2f(kvl_key_zero(rec, P.k_bits, P.D, P.G, c));
    }
    return h2f(s.k_win[((size_t)(p % s.k_cap) * P.n_kv + g) * P.D + c]);
}

static __device__ __forceinline__ float value_at(const KvaParams &P, const kvq_seq_dev &s, int g,
                                                 int p, int c) {
    if (p < s.vq) {
        const uint8_t *rec = s.v_quant + kvl_record_off(P.v_bits, P.D, P.G, P.n_kv, p / P.G, g);
        const int pb = p % P.G, j = c / P.G;
        return (float)kvl_get_code(rec, 0, P.v_bits, P.D, pb, c) *
                   h2f(kvl_value_scale(rec, P.v_bits, P.D, P.G, pb, j)) +
               h2f(kvl_value_zero(rec, P.v_bits, P.D, P.G, pb, j));
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

/* acc[h] += q_h . key of position p (fp32 FMAs in channel order). */
static __device__ __forceinline__ void score_key(const KvaParams &P, const kvq_seq_dev &s,
                                                 const ScalarSmem &sm, int g, int p,
                                                 float acc[KVA_HCHUNK]) {
    if (p >= s.kq && P.D % 8 == 0) {
        /* an fp16 window key: its row is D contiguous halves, read 16 bytes at a time (the
         * per-channel path below would touch 32 rows per warp load) */
        const uint4 *kr = reinterpret_cast<const uint4 *>(
            s.k_win + ((size_t)(p % s.k_cap) * P.n_kv + g) * P.D);
        for (int c8 = 0; c8 < P.D / 8; c8++) {
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
    for (int c = 0; c < P.D; c++) {
        const float k = key_at(P, s, g, p, c);
#pragma unroll
        for (int h = 0; h < KVA_HCHUNK; h++) acc[h] = fmaf(sm.q[h][c], k, acc[h]);
    }
}

static __device__ __forceinline__ void scalar_tile(const KvaParams &P, const kvq_seq_dev &s,
                                                   ScalarSmem &sm, int g, int nh, int t0, int n,
                                                   float o[KVA_HCHUNK][2]) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, D = P.D;
    __syncthreads(); /* q loaded / the previous tile's p consumed */
    float acc[KVA_HCHUNK] = {};
    if (tid < n) score_key(P, s, sm, g, t0 + tid, acc); /* thread tid scores position t0 + tid */
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
            const float v0 = value_at(P, s, g, t0 + i, c);
            const float v1 = value_at(P, s, g, t0 + i + 1, c);
            const float v2 = value_at(P, s, g, t0 + i + 2, c);
            const float v3 = value_at(P, s, g, t0 + i + 3, c);
#pragma unroll
            for (int h = 0; h < KVA_HCHUNK; h++) {
                const float4 pp = *reinterpret_cast<const float4 *>(&sm.p[h][i]);
                a[h] = fmaf(pp.w, v3, fmaf(pp.z, v2, fmaf(pp.y, v1, fmaf(pp.x, v0, a[h]))));
            }
        }
        for (; i < n; i++) {
            const float v = value_at(P, s, g, t0 + i, c);
#pragma unroll
            for (int h = 0; h < KVA_HCHUNK; h++) a[h] = fmaf(sm.p[h][i], v, a[h]);
        }
#pragma unroll
        for (int h = 0; h < KVA_HCHUNK; h++) o[h][cs] = h < nh ? o[h][cs] * sm.alpha[h] + a[h] : 0.0f;
    }
}

/* Scalar part `split` of the block's row (blockIdx.y, blockIdx.z): KVA_THREADS threads. */
static __global__ void __launch_bounds__(KVA_THREADS, 4) kvattn_scalar_kernel(const KvaParams P) {
    static __shared__ __align__(16) ScalarSmem sm;
    const int split = blockIdx.x;
    const int b = blockIdx.z, g = blockIdx.y / P.hchunks, hc = blockIdx.y % P.hchunks;
    const kvq_seq_dev s = P.seqs[b];
    if (!seq_ok(P, s)) return; /* the combine kernel writes NaN */
    const int group = P.n_heads / P.n_kv, h0 = hc * KVA_HCHUNK, D = P.D, tid = threadIdx.x;
    const int nh = min(KVA_HCHUNK, group - h0);
    const int first = split * P.sc_split, end = min(s.len, first + P.sc_split);
    const size_t row0 = (size_t)b * P.n_heads + (size_t)g * group + h0; /* first head's row */
    if (first >= end) { /* an empty part */
        if (tid < nh) {
            P.ml_part[2 * ((row0 + tid) * P.n_parts + split)] = -INFINITY;
            P.ml_part[2 * ((row0 + tid) * P.n_parts + split) + 1] = 0.0f;
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
        scalar_tile(P, s, sm, g, nh, t0, min(KVA_TILE, end - t0), o);
    for (int h = 0; h < nh; h++) {
        float *dst = P.o_part + ((row0 + h) * P.n_parts + split) * D;
        if (tid < D) dst[tid] = o[h][0];
        if (tid + KVA_THREADS < D) dst[tid + KVA_THREADS] = o[h][1];
    }
    if (tid < nh) {
        P.ml_part[2 * ((row0 + tid) * P.n_parts + split)] = sm.m[tid];
        P.ml_part[2 * ((row0 + tid) * P.n_parts + split) + 1] = sm.l[tid];
    }
}

#ifndef KVA_EMULATE_SCALAR
#include "kvattn_tc.cuh"
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

/* One block per (b, head): merges the parts and the new token, or writes NaN for a sequence
 * seq_ok refuses. */
static __global__ void __launch_bounds__(KVA_THREADS) kvattn_combine_kernel(const KvaParams P) {
    static __shared__ float wpart[KVA_MAX_PARTS];
    static __shared__ float red[32];
    const int bh = blockIdx.x, b = bh / P.n_heads, D = P.D;
    const int kvh = (bh % P.n_heads) / (P.n_heads / P.n_kv);
    float *dst = P.out + (size_t)bh * D;
    if (!seq_ok(P, P.seqs[b])) {
        for (int d = threadIdx.x; d < D; d += blockDim.x) dst[d] = __int_as_float(0x7fc00000);
        return;
    }
    const float *q = P.q + (size_t)bh * D, *kn = P.k_new + ((size_t)b * P.n_kv + kvh) * D;
    const float *vn = P.v_new + ((size_t)b * P.n_kv + kvh) * D;
    float dot = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) dot = fmaf(q[d] * P.qscale, kn[d], dot);
    const float s_new = block_reduce(dot, false, red); /* the new token's score (log2 units) */
    const float *ml = P.ml_part + (size_t)bh * P.n_parts * 2;
    const float *op = P.o_part + (size_t)bh * P.n_parts * D;
    float mx = -INFINITY;
    for (int s = threadIdx.x; s < P.n_parts; s += blockDim.x) mx = fmaxf(mx, ml[2 * s]);
    mx = fmaxf(block_reduce(mx, true, red), s_new);
    float lsum = 0.0f;
    for (int s = threadIdx.x; s < P.n_parts; s += blockDim.x) {
        const float ws = ml[2 * s] == -INFINITY ? 0.0f : exp2f(ml[2 * s] - mx);
        wpart[s] = ws;
        lsum += ws * (ws != 0.0f ? ml[2 * s + 1] : 0.0f);
    }
    const float w_new = exp2f(s_new - mx);
    lsum = block_reduce(lsum, false, red) + w_new; /* its barriers also publish wpart */
    const float inv = 1.0f / lsum;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = w_new * vn[d];
        for (int s = 0; s < P.n_parts; s++)
            if (wpart[s] != 0.0f) acc += wpart[s] * op[(size_t)s * D + d]; /* empty parts: no o */
        dst[d] = acc * inv;
    }
}

/* ---- launch plan ---- */

struct KvaPlan {
    int tc, hchunks, rows;  /* rows: n_batch * n_kv * hchunks */
    int sc_split;           /* scalar: positions per part */
    int tail_cost;
    int n_parts;
};

static bool width_ok(int bits) { return bits == 16 || bits == 4 || bits == 2 || bits == 1; }

static bool kva_shape_ok(const kvattn_args *a) {
    return a->n_batch >= 0 && a->n_batch <= 65535 && a->max_len >= 1 && a->n_heads > 0 &&
           a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0 && a->head_dim >= 1 &&
           a->head_dim <= KVA_MAX_D && (a->group == 32 || a->group == 64 || a->group == 128) &&
           width_ok(a->k_bits) && width_ok(a->v_bits) &&
           (!kvl_is_quant(a->v_bits) || a->head_dim % a->group == 0) &&
           (!kvl_is_quant(a->k_bits) || a->head_dim % 16 == 0) &&
           (a->impl == KVATTN_AUTO || a->impl == KVATTN_SCALAR || a->impl == KVATTN_MMA);
}

/* The tensor-core kernel takes this shape (kvattn_tc.cuh). */
static bool kva_tc_supported(int D, int G, int k_bits, int v_bits) {
    if (G != 32 || (!kvl_is_quant(k_bits) && !kvl_is_quant(v_bits))) return false;
    if (D == 80) return !kvl_is_quant(v_bits); /* values need D % 32 == 0 */
    return D == 64 || D == 96 || D == 128;
}

#ifndef KVA_EMULATE
/* An attribute of the current device (cached per device and attribute; fallback if unknown). */
static int kva_device_attr(cudaDeviceAttr attr, int slot, int fallback) {
    static int cached[16][2];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return fallback;
    if (dev < 16 && cached[dev][slot]) return cached[dev][slot];
    int n = 0;
    if (cudaDeviceGetAttribute(&n, attr, dev) != cudaSuccess || n < 1) n = fallback;
    if (dev < 16) cached[dev][slot] = n;
    return n;
}
static int kva_sm_count(void) { return kva_device_attr(cudaDevAttrMultiProcessorCount, 0, 132); }
static int kva_smem_per_sm(void) {
    return kva_device_attr(cudaDevAttrMaxSharedMemoryPerMultiprocessor, 1, 233472);
}
#else
static int kva_emu_sms = 132; /* the emulation plans for an H200 unless told otherwise */
static int kva_sm_count(void) {
    return kva_emu_sms;
}
static int kva_smem_per_sm(void) {
    return 233472; /* an H200's 228 KiB */
}
#endif

static size_t kva_tc_smem(int D, int KB, int VB);

static bool kva_plan_tc(const kvattn_args *a, KvaPlan *pl) {
    const long long rows = pl->rows > 0 ? pl->rows : 1;
    const long long nt = ((long long)a->max_len - 1 + KVL_TILE - 1) / KVL_TILE; /* stored tiles */
    /* blocks resident per SM: the launch bounds allow KVT_MIN_BLOCKS; shared memory may allow fewer */
    const size_t smem = kva_tc_smem(a->head_dim, a->k_bits, a->v_bits) + 1024;
    long long bps = (long long)((size_t)kva_smem_per_sm() / smem);
    bps = bps < 1 ? 1 : bps > KVT_MIN_BLOCKS ? KVT_MIN_BLOCKS : bps;
    const long long wave = (long long)kva_sm_count() * bps;
    long long parts = wave / rows; /* one wave over all rows */
    if (parts < 1) parts = 1;
    const long long most = (nt + 2 * 4 - 1) / (2 * 4); /* and at least ~2 tiles per warp */
    if (parts > most) parts = most > 0 ? most : 1;
    if (parts > KVA_MAX_PARTS) parts = KVA_MAX_PARTS;
    pl->n_parts = (int)parts;
    pl->tail_cost = KVT_TAIL_COST;
    pl->sc_split = 0;
    return true;
}

static bool kva_plan_scalar(const kvattn_args *a, KvaPlan *pl) {
    const long long r = pl->rows > 0 ? pl->rows : 1;
    const long long stored = a->max_len > 1 ? a->max_len - 1 : 1;
    const long long want = (KVA_TARGET_BLOCKS / 2 + r - 1) / r; /* parts per row */
    long long sl = (stored + want - 1) / want;
    sl = (sl + KVA_TILE - 1) / KVA_TILE * KVA_TILE;
    if (sl < KVA_TILE) sl = KVA_TILE;
    if ((stored + sl - 1) / sl > KVA_MAX_PARTS) sl = (stored + KVA_MAX_PARTS - 1) / KVA_MAX_PARTS;
    sl = (sl + KVA_TILE - 1) / KVA_TILE * KVA_TILE;
    pl->sc_split = (int)sl;
    pl->n_parts = (int)((stored + sl - 1) / sl);
    pl->tail_cost = 0;
    return pl->n_parts <= KVA_MAX_PARTS;
}

static bool kva_plan(const kvattn_args *a, KvaPlan *pl) {
    if (!kva_shape_ok(a)) return false;
    const int group = a->n_heads / a->n_kv_heads;
    const bool tc_ok = kva_tc_supported(a->head_dim, a->group, a->k_bits, a->v_bits);
    if (a->impl == KVATTN_MMA && !tc_ok) return false;
    pl->tc = a->impl == KVATTN_MMA || (a->impl == KVATTN_AUTO && tc_ok);
    pl->hchunks = (group + KVA_HCHUNK - 1) / KVA_HCHUNK;
    if ((long long)a->n_kv_heads * pl->hchunks > 65535) return false;
    pl->rows = (int)((long long)a->n_batch * a->n_kv_heads * pl->hchunks);
    return pl->tc ? kva_plan_tc(a, pl) : kva_plan_scalar(a, pl);
}

/* The kernel parameters of a plan (workspace at ws). */
static KvaParams kva_params(const kvattn_args *a, const KvaPlan &pl, float *ws) {
    KvaParams P;
    P.out = a->out;
    P.o_part = ws;
    P.ml_part = ws + (size_t)a->n_batch * a->n_heads * pl.n_parts * a->head_dim;
    P.q = a->q, P.k_new = a->k_new, P.v_new = a->v_new, P.seqs = a->seqs;
    P.n_batch = a->n_batch, P.n_heads = a->n_heads, P.n_kv = a->n_kv_heads, P.hchunks = pl.hchunks;
    P.D = a->head_dim, P.G = a->group, P.k_bits = a->k_bits, P.v_bits = a->v_bits;
    P.max_len = a->max_len, P.n_parts = pl.n_parts, P.tc = pl.tc, P.sc_split = pl.sc_split;
    P.tail_cost = pl.tail_cost;
    for (int i = 0; i < 5; i++) P.magic[i] = ((uint32_t)(25 - 2 * i) << 10) * 0x10001u;
    P.qscale = a->scale * KVA_LOG2E;
    return P;
}

extern "C" size_t kvattn_workspace_bytes(const kvattn_args *a) {
    KvaPlan pl;
    if (!a || !kva_plan(a, &pl)) return 0;
    return (size_t)(a->n_batch > 0 ? a->n_batch : 1) * a->n_heads * pl.n_parts * (a->head_dim + 2) *
           sizeof(float);
}

/* ---- the tensor-core instantiations: D in {64, 80, 96, 128} x K, V widths ---- */

#ifndef KVA_EMULATE_SCALAR
/* Instantiated: some tensor quantized, quantized values only for D % 32 == 0. */
template <int D, int KB, int VB> static constexpr bool tc_inst() {
    return (KB <= 4 || VB <= 4) && (VB > 4 || D % 32 == 0)
#ifdef KVA_EMU_TC_FILTER /* the CPU emulation builds the instantiations it runs */
           && KVA_EMU_TC_FILTER(D, KB, VB)
#endif
        ;
}

#ifndef KVA_EMULATE
template <int D, int KB, int VB>
static cudaError_t tc_launch(const KvaParams &P, dim3 grid, cudaStream_t stream) {
    const size_t smem = TcShape<D, KB, VB>::SMEM;
    static bool raised = false; /* once per instantiation */
    if (!raised) {
        cudaError_t e = cudaFuncSetAttribute(kvattn_tc_kernel<D, KB, VB>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(kvattn_tc_kernel<D, KB, VB>,
                                     cudaFuncAttributePreferredSharedMemoryCarveout, 100);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    kvattn_tc_kernel<D, KB, VB><<<grid, KVT_WARPS * 32, smem, stream>>>(P);
    return cudaGetLastError();
}
#else /* tests/emu/kvattn_emu.cpp runs the kernel on the CPU */
template <int D, int KB, int VB>
static cudaError_t tc_launch(const KvaParams &P, dim3 grid, cudaStream_t stream);
#endif

/* One instantiation: launches (launch) or reports its shared memory. */
template <int D, int KB, int VB>
static cudaError_t tc_case(bool launch, const KvaParams *P, dim3 grid, cudaStream_t stream,
                           size_t *smem) {
    if constexpr (tc_inst<D, KB, VB>()) {
        if (launch) return tc_launch<D, KB, VB>(*P, grid, stream);
        *smem = TcShape<D, KB, VB>::SMEM;
        return cudaSuccess;
    } else {
        (void)launch, (void)P, (void)grid, (void)stream, (void)smem;
        return cudaErrorInvalidValue;
    }
}

template <int D, int KB>
static cudaError_t tc_case_v(int vb, bool launch, const KvaParams *P, dim3 grid,
                             cudaStream_t stream, size_t *smem) {
    switch (vb) {
    case 1: return tc_case<D, KB, 1>(launch, P, grid, stream, smem);
    case 2: return tc_case<D, KB, 2>(launch, P, grid, stream, smem);
    case 4: return tc_case<D, KB, 4>(launch, P, grid, stream, smem);
    default: return tc_case<D, KB, 16>(launch, P, grid, stream, smem);
    }
}

template <int D>
static cudaError_t tc_case_k(int kb, int vb, bool launch, const KvaParams *P, dim3 grid,
                             cudaStream_t stream, size_t *smem) {
    switch (kb) {
    case 1: return tc_case_v<D, 1>(vb, launch, P, grid, stream, smem);
    case 2: return tc_case_v<D, 2>(vb, launch, P, grid, stream, smem);
    case 4: return tc_case_v<D, 4>(vb, launch, P, grid, stream, smem);
    default: return tc_case_v<D, 16>(vb, launch, P, grid, stream, smem);
    }
}

static cudaError_t tc_dispatch(int D, int kb, int vb, bool launch, const KvaParams *P, dim3 grid,
                               cudaStream_t stream, size_t *smem) {
    switch (D) {
    case 64: return tc_case_k<64>(kb, vb, launch, P, grid, stream, smem);
    case 80: return tc_case_k<80>(kb, vb, launch, P, grid, stream, smem);
    case 96: return tc_case_k<96>(kb, vb, launch, P, grid, stream, smem);
    case 128: return tc_case_k<128>(kb, vb, launch, P, grid, stream, smem);
    default: return cudaErrorInvalidValue;
    }
}

static size_t kva_tc_smem(int D, int KB, int VB) {
    size_t smem = 0;
    if (tc_dispatch(D, KB, VB, false, nullptr, dim3(), nullptr, &smem) != cudaSuccess) return 48 * 1024;
    return smem;
}
#else
static size_t kva_tc_smem(int, int, int) {
    return 48 * 1024;
}
#endif

#ifndef KVA_EMULATE
extern "C" cudaError_t kvattn_cuda(const kvattn_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->out && a->q && a->k_new && a->v_new && a->seqs && a->workspace);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(a->k_bits != 32 && a->v_bits != 32); /* the fp32 reference width: CPU only */
    AKV_REQUIRE(kva_shape_ok(a));
    AKV_REQUIRE(a->impl != KVATTN_MMA ||
                kva_tc_supported(a->head_dim, a->group, a->k_bits, a->v_bits));
    KvaPlan pl;
    AKV_REQUIRE(kva_plan(a, &pl));
    AKV_REQUIRE(a->workspace_bytes >= kvattn_workspace_bytes(a));
    AKV_REQUIRE(((uintptr_t)a->workspace | (uintptr_t)a->q | (uintptr_t)a->out) % 16 == 0);
    if (a->n_batch == 0) return cudaSuccess;
    const KvaParams P = kva_params(a, pl, (float *)a->workspace);
    const dim3 grid(pl.n_parts, a->n_kv_heads * pl.hchunks, a->n_batch);
    if (pl.tc) {
        size_t unused = 0;
        const cudaError_t e = tc_dispatch(a->head_dim, a->k_bits, a->v_bits, true, &P, grid, stream, &unused);
        if (e != cudaSuccess) return e;
    } else {
        kvattn_scalar_kernel<<<grid, KVA_THREADS, 0, stream>>>(P);
        AKV_LAUNCH_CHECK();
    }
    kvattn_combine_kernel<<<a->n_batch * a->n_heads, KVA_THREADS, 0, stream>>>(P);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
#endif
