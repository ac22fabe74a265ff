/* rope.cu — rotary position embedding in place, HF "rotate_half" layout: channel i pairs with
 * i + head_dim/2, angle = pos * inv_freq[i] in fp32. x fp32 [n][n_heads][head_dim], pos int32 [n],
 * inv_freq fp32 [head_dim/2] computed on the host by rope_inv_freq_ref (default or llama3
 * schedule) and uploaded, so both schedules are the twin's numbers exactly.
 * One block per token; threadIdx.x walks the frequencies, threadIdx.y the heads, so each
 * (cos, sin) pair is computed once per token and reused by every head. cos/sin run in double and
 * are rounded to float, and the rotation avoids FMA contraction, as the twin does, so results
 * match rope_ref to the last bit except where a double cos/sin rounds across a float boundary.
 * Twin: rope_ref.c.
 * Test: ./build-cuda/tests/gpu_kernels --filter rope/matches_twin (on a GPU machine). */
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

static __global__ void rope_kernel(float *x, const int32_t *pos, int n_heads, int head_dim,
                                   const float *inv_freq) {
    const int t = blockIdx.x, half = head_dim / 2;
    const float fpos = (float)pos[t];
    float *row = x + (size_t)t * n_heads * head_dim;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float angle = fpos * inv_freq[i];
        double sd, cd;
        sincos((double)angle, &sd, &cd);
        const float c = (float)cd, s = (float)sd;
        for (int h = threadIdx.y; h < n_heads; h += blockDim.y) {
            float *xh = row + (size_t)h * head_dim;
            const float x0 = xh[i], x1 = xh[i + half];
            xh[i] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            xh[i + half] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
        }
    }
}

extern "C" cudaError_t rope_cuda(float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                                 const float *inv_freq, cudaStream_t stream) {
    AKV_REQUIRE(x && pos && inv_freq && n >= 0 && n_heads > 0);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 512);
    if (n == 0) return cudaSuccess;
    const int half = head_dim / 2;
    const int bx = half >= 128 ? 128 : (half + 31) / 32 * 32;
    const dim3 block(bx, 256 / bx);
    rope_kernel<<<n, block, 0, stream>>>(x, pos, n_heads, head_dim, inv_freq);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
