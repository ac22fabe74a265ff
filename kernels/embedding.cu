/* embedding.cu — token-embedding gather: out[i][:] = fp32(table[ids[i]][:]), table bf16
 * [vocab][dim], out fp32 [n][dim]. One block per token; rows whose dim is a multiple of 8 (and
 * whose pointers allow it) move as 16-byte loads of 8 bf16 and two 16-byte stores.
 * Twin: embedding_ref.c (fed the table converted to fp32; results are bit-identical).
 * Test: ./build-cuda/tests/gpu_kernels --filter embedding/matches_twin (on a GPU machine). */
#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

static __global__ void embedding_kernel(float *out, const __nv_bfloat16 *table, int vocab,
                                        const int32_t *ids, int dim, int vec8) {
    const int i = blockIdx.x;
    const int id = ids[i];
    float *dst = out + (size_t)i * dim;
    if (id < 0 || id >= vocab) { /* keep reads in bounds; make the mistake visible */
        for (int j = threadIdx.x; j < dim; j += blockDim.x)
            dst[j] = __int_as_float(0x7fc00000);
        return;
    }
    const __nv_bfloat16 *src = table + (size_t)id * dim;
    if (vec8) {
        const uint4 *s8 = (const uint4 *)src;
        float4 *d4 = (float4 *)dst;
        for (int j = threadIdx.x; j < dim / 8; j += blockDim.x) {
            uint4 u = s8[j];
            const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
            float2 a = __bfloat1622float2(h[0]), b = __bfloat1622float2(h[1]);
            float2 c = __bfloat1622float2(h[2]), d = __bfloat1622float2(h[3]);
            d4[2 * j] = make_float4(a.x, a.y, b.x, b.y);
            d4[2 * j + 1] = make_float4(c.x, c.y, d.x, d.y);
        }
    } else {
        for (int j = threadIdx.x; j < dim; j += blockDim.x)
            dst[j] = __bfloat162float(src[j]);
    }
}

extern "C" cudaError_t embedding_cuda(float *out, const uint16_t *table, int vocab,
                                      const int32_t *ids, int n, int dim, cudaStream_t stream) {
    AKV_REQUIRE(out && table && ids && vocab > 0 && n >= 0 && dim > 0);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    if (n == 0) return cudaSuccess;
    int vec8 = dim % 8 == 0 && (uintptr_t)table % 16 == 0 && (uintptr_t)out % 16 == 0;
    int threads = vec8 ? (dim / 8 < 256 ? (dim / 8 + 31) / 32 * 32 : 256) : 256;
    embedding_kernel<<<n, threads, 0, stream>>>(out, (const __nv_bfloat16 *)table, vocab, ids, dim,
                                                vec8);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
