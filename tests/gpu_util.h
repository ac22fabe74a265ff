/* gpu_util.h — what the GPU tests share: the skip when no CUDA device is usable, quick mode,
 * streams, NaN-poisoned device buffers, uploads and downloads (the seeded generator is
 * testutil.h's).
 * Static inline: each test binary includes it once. */
#ifndef ASYMKV_GPU_UTIL_H
#define ASYMKV_GPU_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "testutil.h" /* rng_next, rng_uniform */

static inline const char *gpu_missing(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n); /* fails (e.g. no driver) rather than reporting 0 */
    if (e != cudaSuccess) return cudaGetErrorString(e);
    return n > 0 ? NULL : "cudaGetDeviceCount found 0 devices";
}

#define REQUIRE_GPU()                                                                              \
    do {                                                                                           \
        const char *why_ = gpu_missing();                                                          \
        if (why_) cr_skip_test("no usable CUDA device: %s", why_);                                 \
    } while (0)

static inline int quick_mode(void) {
    const char *s = getenv("ASYMKV_GPU_QUICK");
    return s && *s && strcmp(s, "0") != 0;
}

static inline cudaStream_t new_stream(void) {
    cudaStream_t s;
    CUDA_CHECK_EXIT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
}

/* Device buffer filled with 0xff bytes: NaN as fp32 and fp16, -1 as int32. */
static inline void *dev_poisoned(size_t bytes, cudaStream_t s) {
    void *p = NULL;
    CUDA_CHECK_EXIT(cudaMalloc(&p, bytes ? bytes : 1));
    CUDA_CHECK_EXIT(cudaMemsetAsync(p, 0xff, bytes ? bytes : 1, s));
    return p;
}

static inline void *dev_upload(const void *host, size_t bytes, cudaStream_t s) {
    void *p = dev_poisoned(bytes, s);
    CUDA_CHECK_EXIT(cudaMemcpyAsync(p, host, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK_EXIT(cudaStreamSynchronize(s)); /* host buffers may be freed right after */
    return p;
}

/* Waits for the stream (surfacing asynchronous kernel errors) and copies back. */
static inline void dev_download(void *host, const void *dev, size_t bytes, cudaStream_t s) {
    CUDA_CHECK_EXIT(cudaStreamSynchronize(s));
    CUDA_CHECK_EXIT(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK_EXIT(cudaStreamSynchronize(s));
}

/* Host buffer (zero-filled: every test overwrites it before use; no read of garbage). */
static inline void *xmalloc(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    cr_assert(p, "out of host memory (%zu bytes)", bytes);
    return p;
}

#endif
