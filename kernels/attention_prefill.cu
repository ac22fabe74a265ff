/* attention_prefill.cu — causal grouped-query attention of a prefill chunk over an fp16 cache,
 * flash-style: q, out fp32 [n_q][n_heads][D]; k, v fp16 [>= pos0+n_q][n_kv_heads][D]; query i
 * (position pos0 + i) of head h sees keys 0 .. pos0+i of kv head h / (n_heads / n_kv_heads).
 * Grid (ceil(n_q / 64), n_heads), 128 threads: a block takes 64 queries of one head, each of its
 * four warps 16 of them (attention_tile.cuh). Per 64-key tile the block copies K and V into shared
 * memory with cp.async (V lands while the warps compute Q·K^T on the tensor cores), each warp
 * updates its online softmax and accumulates P·V in registers. Memory is O(tile): no n_q x keys
 * buffer. Query tiles run latest-first (the causal triangle makes them the longest), and a warp
 * skips tiles that lie wholly past its last query. D = 16, 32, 64, 80, 96 or 128.
 * Precision: Q and P enter the tensor cores as fp16; softmax, sums and accumulation are fp32.
 * Twin: attention_ref.c fed the same fp16 K/V as fp32 (tolerance in tests/gpu_kernels.c).
 * Test: ./build-cuda/tests/gpu_kernels --filter attention_prefill/matches_twin (and
 * attention_prefill/long_context; on a GPU machine). */
#include <stdint.h>

#include "attention_tile.cuh"
#include "cuda_check.h"
#include "kernels_cuda.h"

using namespace akv_attn;

#define PF_WARPS 4
#define PF_ROWS (16 * PF_WARPS) /* queries per block */

template <int D>
static __global__ void __launch_bounds__(32 * PF_WARPS)
    prefill_kernel(float *out, const float *q, const __half *k, const __half *v, int n_q, int pos0,
                   int n_heads, int n_kv, float qscale) {
    __shared__ __align__(16) KVTile<D> tile;
    const int qt = gridDim.x - 1 - blockIdx.x; /* latest (heaviest) query tiles first */
    const int h = blockIdx.y, kvh = h / (n_heads / n_kv);
    const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2;
    const int wrow = qt * PF_ROWS + warp * 16; /* the warp's first query */
    const int r0 = wrow + g, r1 = r0 + 8;      /* this thread's two queries */
    const size_t qstride = (size_t)n_heads * D;
    WarpState<D> w;
    warp_init(w, r0 < n_q ? q + r0 * qstride + (size_t)h * D : nullptr,
              r1 < n_q ? q + r1 * qstride + (size_t)h * D : nullptr, qscale);
    const int last = min(qt * PF_ROWS + PF_ROWS - 1, n_q - 1);
    const int kv_end = pos0 + last + 1; /* keys the block needs */
    const bool warp_live = wrow < n_q;
    const int wlast = pos0 + min(wrow + 15, n_q - 1); /* the warp's last visible key */
    const __half *kb = k + (size_t)kvh * D, *vb = v + (size_t)kvh * D;
    const size_t kstride = (size_t)n_kv * D;
    float p[BC / 8][4];
    for (int kv0 = 0; kv0 < kv_end; kv0 += BC) {
        load_kv_tile<D, 32 * PF_WARPS>(tile, kb, vb, kstride, kv0, kv_end);
        const bool active = warp_live && kv0 <= wlast;
        cp_async_wait<1>(); /* K is in */
        __syncthreads();
        if (active) warp_scores(w, tile, p, kv0, pos0 + r0, pos0 + r1, kv0 + BC - 1 > pos0 + wrow);
        cp_async_wait<0>(); /* V is in */
        __syncthreads();
        if (active) warp_pv(w, tile, p);
        __syncthreads(); /* the next tile overwrites shared memory */
    }
    if (!warp_live) return;
    float l[2];
    warp_row_sums(w, l);
    warp_store(w, r0 < n_q ? out + r0 * qstride + (size_t)h * D : nullptr,
               r1 < n_q ? out + r1 * qstride + (size_t)h * D : nullptr, 1.0f / l[0], 1.0f / l[1]);
}

template <int D>
static void prefill_launch(dim3 grid, cudaStream_t stream, float *out, const float *q,
                           const uint16_t *k, const uint16_t *v, int n_q, int pos0, int n_heads,
                           int n_kv, float qscale) {
    prefill_kernel<D><<<grid, 32 * PF_WARPS, 0, stream>>>(
        out, q, (const __half *)k, (const __half *)v, n_q, pos0, n_heads, n_kv, qscale);
}

extern "C" cudaError_t attention_prefill_cuda(float *out, const float *q, const uint16_t *k,
                                              const uint16_t *v, int n_q, int pos0, int n_heads,
                                              int n_kv_heads, int head_dim, float scale,
                                              cudaStream_t stream) {
    AKV_REQUIRE(out && q && k && v && n_q >= 0 && pos0 >= 0);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0 && n_heads <= 65535);
    AKV_REQUIRE(head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 80 ||
                head_dim == 96 || head_dim == 128);
    AKV_REQUIRE(((uintptr_t)k | (uintptr_t)v) % 16 == 0 &&
                ((uintptr_t)q | (uintptr_t)out) % 8 == 0);
    AKV_REQUIRE((long long)pos0 + n_q <= 0x7fffffff - BC);
    if (n_q == 0) return cudaSuccess;
    const dim3 grid((n_q + PF_ROWS - 1) / PF_ROWS, n_heads);
    const float qs = scale * LOG2E;
    switch (head_dim) {
    case 16:
        prefill_launch<16>(grid, stream, out, q, k, v, n_q, pos0, n_heads, n_kv_heads, qs);
        break;
    case 32:
        prefill_launch<32>(grid, stream, out, q, k, v, n_q, pos0, n_heads, n_kv_heads, qs);
        break;
    case 64:
        prefill_launch<64>(grid, stream, out, q, k, v, n_q, pos0, n_heads, n_kv_heads, qs);
        break;
    case 80:
        prefill_launch<80>(grid, stream, out, q, k, v, n_q, pos0, n_heads, n_kv_heads, qs);
        break;
    case 96:
        prefill_launch<96>(grid, stream, out, q, k, v, n_q, pos0, n_heads, n_kv_heads, qs);
        break;
    default:
        prefill_launch<128>(grid, stream, out, q, k, v, n_q, pos0, n_heads, n_kv_heads, qs);
        break;
    }
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
