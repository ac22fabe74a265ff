/* rmsnorm.cu — RMSNorm as in HF Llama: out = w * (x * 1/sqrt(mean(x^2) + eps)), per row.
 * x, out fp32 [n][dim] (out may alias x: each element is read and then written by the same
 * thread), w fp32 [dim]. One 256-thread block per row: a fp32 sum of squares (per-thread partial
 * sums, then a warp-shuffle tree), then a second pass over the row, which L1/L2 still hold.
 * 16-byte accesses when dim % 4 == 0 and the pointers are aligned.
 * Twin: rmsnorm_ref.c (sums in double; the fp32 tree differs by a few ulp).
 * Test: ./build-cuda/tests/gpu_kernels --filter rmsnorm/matches_twin (on a GPU machine). */
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

#define RMS_THREADS 256

/* Sum over the block; every thread gets the total. blockDim.x is a multiple of 32. */
static __device__ float block_sum(float v) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __global__ void __launch_bounds__(RMS_THREADS)
    rmsnorm_kernel(float *out, const float *x, const float *w, int dim, float eps, int vec4) {
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = out + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    if (vec4) {
        const float4 *x4 = (const float4 *)xr;
        for (int j = threadIdx.x; j < dim / 4; j += blockDim.x) {
            float4 a = x4[j];
            ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
        }
    } else {
        for (int j = threadIdx.x; j < dim; j += blockDim.x)
            ss += xr[j] * xr[j];
    }
    const float r = 1.0f / sqrtf(block_sum(ss) / (float)dim + eps);
    if (vec4) {
        const float4 *x4 = (const float4 *)xr, *w4 = (const float4 *)w;
        float4 *y4 = (float4 *)yr;
        for (int j = threadIdx.x; j < dim / 4; j += blockDim.x) {
            float4 a = x4[j], g = w4[j];
            y4[j] = make_float4(g.x * (a.x * r), g.y * (a.y * r), g.z * (a.z * r), g.w * (a.w * r));
        }
    } else {
        for (int j = threadIdx.x; j < dim; j += blockDim.x)
            yr[j] = w[j] * (xr[j] * r);
    }
}

extern "C" cudaError_t rmsnorm_cuda(float *out, const float *x, const float *w, int n, int dim,
                                    float eps, cudaStream_t stream) {
    AKV_REQUIRE(out && x && w && n >= 0 && dim > 0 && eps >= 0.0f);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    if (n == 0) return cudaSuccess;
    int vec4 = dim % 4 == 0 && ((uintptr_t)out | (uintptr_t)x | (uintptr_t)w) % 16 == 0;
    rmsnorm_kernel<<<n, RMS_THREADS, 0, stream>>>(out, x, w, dim, eps, vec4);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
