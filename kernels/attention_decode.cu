/* attention_decode.cu — decode attention (one new query per sequence, a batch of sequences) over
 * an fp16 K/V cache, flash-decoding style. q, out fp32 [n_batch][n_heads][D]; sequence b reads
 * cache slot slots[b] (k, v + slot * seq_stride, rows [position][n_kv_heads][D]) and sees keys
 * 0 .. lens[b]-1. The context is cut into splits of split_len keys (split_len_for: enough splits
 * to give ~1024 blocks, at least 128 keys, at most 1024 splits).
 *  1. decode_split_kernel, grid (n_splits, n_kv_heads * ceil(group / 16), n_batch), one warp:
 *     the warp's 16 rows are the query heads of one GQA group (padding rows are zeros), so every
 *     K/V tile it copies into shared memory (cp.async, 64 keys) serves the whole group through
 *     the tensor cores (attention_tile.cuh). It writes the split's running max m (log2 units),
 *     row sum l and unnormalized output to the workspace. Splits past lens[b] exit at once.
 *  2. decode_combine_kernel, one 128-thread block per (b, head): M = max m_s, w_s = 2^(m_s - M),
 *     out = sum_s w_s o_s / sum_s w_s l_s over the splits that cover lens[b].
 * Precision: Q and P enter the tensor cores as fp16; softmax, sums and accumulation are fp32.
 * Twin: attention_ref.c with n_q = 1, pos0 = lens[b] - 1, fed the same fp16 K/V as fp32.
 * Test: ./build-cuda/tests/gpu_kernels --filter attention_decode/matches_twin (and
 * attention_decode/long_context; on a GPU machine). */
#include <stdint.h>

#include "attention_tile.cuh"
#include "cuda_check.h"
#include "kernels_cuda.h"

using namespace akv_attn;

#define DEC_TARGET_BLOCKS 1024 /* ~8 one-warp blocks per SM on 132 SMs */
#define DEC_MIN_SPLIT 128      /* keys; a multiple of BC */
#define DEC_MAX_SPLITS 1024    /* bounds the combine kernel's shared weights */
#define DEC_COMBINE_THREADS 128

static int head_chunks(int n_heads, int n_kv) {
    return (n_heads / n_kv + 15) / 16;
}

/* Keys per split, a multiple of BC so that a tile never straddles two splits. */
static int split_len_for(int n_batch, int n_heads, int n_kv, int max_len) {
    const long long blocks = (long long)n_batch * n_kv * head_chunks(n_heads, n_kv);
    const long long want = (DEC_TARGET_BLOCKS + blocks - 1) / blocks; /* splits per row */
    long long len = (max_len + want - 1) / want;
    if (len < DEC_MIN_SPLIT) len = DEC_MIN_SPLIT;
    const long long least = ((long long)max_len + DEC_MAX_SPLITS - 1) / DEC_MAX_SPLITS;
    if (len < least) len = least;
    return (int)((len + BC - 1) / BC * BC);
}

template <int D>
static __global__ void __launch_bounds__(32)
    decode_split_kernel(float *o_part, float *ml_part, const float *q, const __half *k,
                        const __half *v, size_t seq_stride, const int32_t *slots,
                        const int32_t *lens, int max_len, int n_heads, int n_kv, int hchunks,
                        int split_len, int n_splits, float qscale) {
    __shared__ __align__(16) KVTile<D> tile;
    const int split = blockIdx.x, kvh = blockIdx.y / hchunks, hc = blockIdx.y % hchunks;
    const int b = blockIdx.z, len = lens[b];
    const int start = split * split_len;
    if (len < 1 || len > max_len || start >= len) return; /* bad lengths: combine writes NaN */
    const int end = min(len, start + split_len);
    const int group = n_heads / n_kv, g = threadIdx.x >> 2;
    const int j0 = hc * 16 + g, j1 = j0 + 8; /* this thread's rows: heads j0, j1 of the group */
    const int h0 = kvh * group + j0, h1 = kvh * group + j1;
    const float *qb = q + (size_t)b * n_heads * D;
    WarpState<D> w;
    warp_init(w, j0 < group ? qb + (size_t)h0 * D : nullptr,
              j1 < group ? qb + (size_t)h1 * D : nullptr, qscale);
    const size_t slot = slots ? (size_t)slots[b] : (size_t)b;
    const __half *kb = k + slot * seq_stride + (size_t)kvh * D;
    const __half *vb = v + slot * seq_stride + (size_t)kvh * D;
    float p[BC / 8][4];
    for (int kv0 = start; kv0 < end; kv0 += BC) {
        load_kv_tile<D, 32>(tile, kb, vb, (size_t)n_kv * D, kv0, end);
        cp_async_wait<1>();
        __syncwarp();
        warp_scores(w, tile, p, kv0, end - 1, end - 1, kv0 + BC > end);
        cp_async_wait<0>();
        __syncwarp();
        warp_pv(w, tile, p);
        __syncwarp(); /* the next tile overwrites shared memory */
    }
    float l[2];
    warp_row_sums(w, l);
    const size_t rec0 = ((size_t)b * n_heads + h0) * n_splits + split;
    const size_t rec1 = ((size_t)b * n_heads + h1) * n_splits + split;
    warp_store(w, j0 < group ? o_part + rec0 * D : nullptr,
               j1 < group ? o_part + rec1 * D : nullptr, 1.0f, 1.0f);
    if ((threadIdx.x & 3) == 0) {
        if (j0 < group) ml_part[2 * rec0] = w.m[0], ml_part[2 * rec0 + 1] = l[0];
        if (j1 < group) ml_part[2 * rec1] = w.m[1], ml_part[2 * rec1 + 1] = l[1];
    }
}

/* Block-wide max (is_max) or sum; every thread gets the result. */
static __device__ float block_reduce(float x, bool is_max) {
    __shared__ float part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); /* part may still be read by a previous call */
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = is_max ? fmaxf(x, y) : x + y;
    }
    if (lane == 0) part[warp] = x;
    __syncthreads();
    x = lane < (int)(blockDim.x >> 5) ? part[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = is_max ? fmaxf(x, y) : x + y;
    }
    return x;
}

static __global__ void __launch_bounds__(DEC_COMBINE_THREADS)
    decode_combine_kernel(float *out, const float *o_part, const float *ml_part,
                          const int32_t *lens, int max_len, int n_heads, int D, int split_len,
                          int n_splits) {
    __shared__ float wsplit[DEC_MAX_SPLITS];
    const int bh = blockIdx.x, len = lens[bh / n_heads];
    float *dst = out + (size_t)bh * D;
    if (len < 1 || len > max_len) {
        for (int d = threadIdx.x; d < D; d += blockDim.x)
            dst[d] = __int_as_float(0x7fc00000);
        return;
    }
    const int ns = (len + split_len - 1) / split_len;
    const float *ml = ml_part + (size_t)bh * n_splits * 2;
    const float *op = o_part + (size_t)bh * n_splits * D;
    float mx = -INFINITY;
    for (int s = threadIdx.x; s < ns; s += blockDim.x)
        mx = fmaxf(mx, ml[2 * s]);
    mx = block_reduce(mx, true);
    float lsum = 0.0f;
    for (int s = threadIdx.x; s < ns; s += blockDim.x) {
        const float ws = exp2f(ml[2 * s] - mx);
        wsplit[s] = ws;
        lsum += ws * ml[2 * s + 1];
    }
    lsum = block_reduce(lsum, false); /* its barriers also publish wsplit */
    const float inv = 1.0f / lsum;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < ns; s++)
            acc += wsplit[s] * op[(size_t)s * D + d];
        dst[d] = acc * inv;
    }
}

extern "C" size_t attention_decode_workspace_bytes(int n_batch, int n_heads, int n_kv_heads,
                                                   int head_dim, int max_len) {
    if (n_batch <= 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || head_dim <= 0 ||
        max_len <= 0)
        return 0;
    const int sl = split_len_for(n_batch, n_heads, n_kv_heads, max_len);
    const size_t ns = ((size_t)max_len + sl - 1) / sl;
    return (size_t)n_batch * n_heads * ns * (head_dim + 2) * sizeof(float);
}

template <int D>
static void split_launch(const attention_decode_args *a, dim3 grid, int hchunks, int split_len,
                         int n_splits, float *o_part, float *ml_part, cudaStream_t stream) {
    decode_split_kernel<D><<<grid, 32, 0, stream>>>(o_part, ml_part, a->q, (const __half *)a->k,
                                                    (const __half *)a->v, a->seq_stride, a->slots,
                                                    a->lens, a->max_len, a->n_heads, a->n_kv_heads,
                                                    hchunks, split_len, n_splits, a->scale * LOG2E);
}

extern "C" cudaError_t attention_decode_cuda(const attention_decode_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->out && a->q && a->k && a->v && a->lens && a->workspace);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(a->n_batch >= 0 && a->n_batch <= 65535 && a->max_len > 0);
    AKV_REQUIRE(a->n_heads > 0 && a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0);
    const int D = a->head_dim;
    AKV_REQUIRE(D == 16 || D == 32 || D == 64 || D == 80 || D == 96 || D == 128);
    AKV_REQUIRE(((uintptr_t)a->k | (uintptr_t)a->v) % 16 == 0 && a->seq_stride % 8 == 0);
    AKV_REQUIRE(((uintptr_t)a->q | (uintptr_t)a->out | (uintptr_t)a->workspace) % 8 == 0);
    AKV_REQUIRE(a->max_len <= 0x7fffffff - DEC_MAX_SPLITS * BC);
    AKV_REQUIRE(a->workspace_bytes >= attention_decode_workspace_bytes(
                                          a->n_batch, a->n_heads, a->n_kv_heads, D, a->max_len));
    if (a->n_batch == 0) return cudaSuccess;
    const int hchunks = head_chunks(a->n_heads, a->n_kv_heads);
    AKV_REQUIRE((long long)a->n_kv_heads * hchunks <= 65535);
    const int split_len = split_len_for(a->n_batch, a->n_heads, a->n_kv_heads, a->max_len);
    const int n_splits = (a->max_len + split_len - 1) / split_len;
    float *o_part = (float *)a->workspace;
    float *ml_part = o_part + (size_t)a->n_batch * a->n_heads * n_splits * D;
    const dim3 grid(n_splits, a->n_kv_heads * hchunks, a->n_batch);
    switch (D) {
    case 16:
        split_launch<16>(a, grid, hchunks, split_len, n_splits, o_part, ml_part, stream);
        break;
    case 32:
        split_launch<32>(a, grid, hchunks, split_len, n_splits, o_part, ml_part, stream);
        break;
    case 64:
        split_launch<64>(a, grid, hchunks, split_len, n_splits, o_part, ml_part, stream);
        break;
    case 80:
        split_launch<80>(a, grid, hchunks, split_len, n_splits, o_part, ml_part, stream);
        break;
    case 96:
        split_launch<96>(a, grid, hchunks, split_len, n_splits, o_part, ml_part, stream);
        break;
    default:
        split_launch<128>(a, grid, hchunks, split_len, n_splits, o_part, ml_part, stream);
        break;
    }
    AKV_LAUNCH_CHECK();
    decode_combine_kernel<<<a->n_batch * a->n_heads, DEC_COMBINE_THREADS, 0, stream>>>(
        a->out, o_part, ml_part, a->lens, a->max_len, a->n_heads, D, split_len, n_splits);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
