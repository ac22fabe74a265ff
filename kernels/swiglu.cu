/* swiglu.cu — the SwiGLU gate, elementwise: out[i] = silu(gate[i]) * up[i],
 * silu(g) = g / (1 + exp(-g)) with the accurate expf and IEEE division (as the twin computes).
 * Flat fp32 arrays of n elements; out may alias gate. Grid-stride loop, 16-byte accesses when
 * all three pointers are 16-byte aligned (the scalar loop takes the tail).
 * Twin: swiglu_ref.c.
 * Test: ./build-cuda/tests/gpu_kernels --filter swiglu/matches_twin (on a GPU machine). */
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

static __device__ __forceinline__ float swiglu1(float g, float u) {
    return __fdiv_rn(g, 1.0f + expf(-g)) * u;
}

static __global__ void swiglu_kernel(float *out, const float *gate, const float *up, size_t n,
                                     int vec4) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t done = 0;
    if (vec4) {
        const float4 *g4 = (const float4 *)gate, *u4 = (const float4 *)up;
        float4 *o4 = (float4 *)out;
        for (size_t j = i; j < n / 4; j += stride) {
            float4 g = g4[j], u = u4[j];
            o4[j] = make_float4(swiglu1(g.x, u.x), swiglu1(g.y, u.y), swiglu1(g.z, u.z),
                                swiglu1(g.w, u.w));
        }
        done = n / 4 * 4;
    }
    for (size_t j = done + i; j < n; j += stride)
        out[j] = swiglu1(gate[j], up[j]);
}

extern "C" cudaError_t swiglu_cuda(float *out, const float *gate, const float *up, size_t n,
                                   cudaStream_t stream) {
    AKV_REQUIRE(out && gate && up);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    if (n == 0) return cudaSuccess;
    const int vec4 = ((uintptr_t)out | (uintptr_t)gate | (uintptr_t)up) % 16 == 0;
    const size_t work = vec4 ? n / 4 + 1 : n;
    const int threads = 256;
    const unsigned blocks = (unsigned)(work / threads + 1 < 65536 ? work / threads + 1 : 65536);
    swiglu_kernel<<<blocks, threads, 0, stream>>>(out, gate, up, n, vec4);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
