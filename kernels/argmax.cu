/* argmax.cu — greedy sampling: out[r] = index of the largest element of row r of x fp32
 * [n_rows][n], the first index on ties (torch.argmax, argmax_ref). Inputs are NaN-free.
 * One 1024-thread block per row: each thread scans its strided elements in increasing index
 * order keeping the first strict maximum, then (value, index) pairs are reduced by warp shuffles
 * and shared memory, a larger value winning and an equal value going to the smaller index.
 * Twin: sample_ref.c (argmax_ref).
 * Test: ./build-cuda/tests/gpu_kernels --filter argmax/matches_twin (on a GPU machine). */
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

#define ARGMAX_THREADS 1024

static __device__ __forceinline__ void take_better(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

static __global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_kernel(int32_t *out, const float *x, int n, int vec4) {
    const float *row = x + (size_t)blockIdx.x * n;
    float best = -__int_as_float(0x7f800000); /* -inf */
    int bi = 0x7fffffff;
    if (vec4) {
        const float4 *r4 = (const float4 *)row;
        for (int j = threadIdx.x; j < n / 4; j += blockDim.x) {
            float4 a = r4[j];
            if (bi == 0x7fffffff) {
                best = a.x;
                bi = 4 * j;
            } /* first element seen */
            if (a.x > best) {
                best = a.x;
                bi = 4 * j;
            }
            if (a.y > best) {
                best = a.y;
                bi = 4 * j + 1;
            }
            if (a.z > best) {
                best = a.z;
                bi = 4 * j + 2;
            }
            if (a.w > best) {
                best = a.w;
                bi = 4 * j + 3;
            }
        }
    } else {
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            const float a = row[j];
            if (bi == 0x7fffffff || a > best) {
                best = a;
                bi = j;
            }
        }
    }
    for (int o = 16; o > 0; o >>= 1)
        take_better(best, bi, __shfl_down_sync(0xffffffffu, best, o),
                    __shfl_down_sync(0xffffffffu, bi, o));
    __shared__ float sv[32];
    __shared__ int si[32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp != 0) return;
    const int nw = blockDim.x >> 5;
    best = lane < nw ? sv[lane] : -__int_as_float(0x7f800000);
    bi = lane < nw ? si[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1)
        take_better(best, bi, __shfl_down_sync(0xffffffffu, best, o),
                    __shfl_down_sync(0xffffffffu, bi, o));
    if (lane == 0) out[blockIdx.x] = bi;
}

extern "C" cudaError_t argmax_cuda(int32_t *out, const float *x, int n_rows, int n,
                                   cudaStream_t stream) {
    AKV_REQUIRE(out && x && n_rows >= 0 && n > 0);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    if (n_rows == 0) return cudaSuccess;
    const int vec4 = n % 4 == 0 && (uintptr_t)x % 16 == 0;
    argmax_kernel<<<n_rows, ARGMAX_THREADS, 0, stream>>>(out, x, n, vec4);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
