/* add.cu — the residual add x[i] += y[i] over n fp32 elements (exact: the twin's result bit for
 * bit). Grid-stride loop, 16-byte accesses when both pointers are 16-byte aligned (the scalar loop
 * takes the tail). Twin: add_ref.c.
 * Test: ./build-cuda/tests/gpu_kernels --filter add/matches_twin (on a GPU machine). */
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

static __global__ void add_kernel(float *x, const float *y, size_t n, int vec4) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t done = 0;
    if (vec4) {
        float4 *x4 = (float4 *)x;
        const float4 *y4 = (const float4 *)y;
        for (size_t j = i; j < n / 4; j += stride) {
            float4 a = x4[j], b = y4[j];
            x4[j] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
        }
        done = n / 4 * 4;
    }
    for (size_t j = done + i; j < n; j += stride)
        x[j] += y[j];
}

extern "C" cudaError_t add_cuda(float *x, const float *y, size_t n, cudaStream_t stream) {
    AKV_REQUIRE(x && y);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    if (n == 0) return cudaSuccess;
    const int vec4 = ((uintptr_t)x | (uintptr_t)y) % 16 == 0;
    const size_t work = vec4 ? n / 4 + 1 : n;
    const int threads = 256;
    const unsigned blocks = (unsigned)(work / threads + 1 < 65536 ? work / threads + 1 : 65536);
    add_kernel<<<blocks, threads, 0, stream>>>(x, y, n, vec4);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
