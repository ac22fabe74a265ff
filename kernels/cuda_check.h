/* cuda_check.h — the one family of CUDA / cuBLAS check macros (style §4). Includable from C and
 * from .cu files. Two flavours:
 *   - library code (kernels/, runtime/): CUDA_CHECK(err, call) / CUBLAS_CHECK(err, call) record
 *     "call failed: reason (file:line)" in the caller's akv_err, set the caller's local
 *     `akv_status st` to AKV_ERUNTIME and `goto fail;` (the function's single cleanup label);
 *   - launch/ and tests: CUDA_CHECK_EXIT(call) prints the same line to stderr and exits with 1.
 * Inside an extern "C" kernel launcher that returns cudaError_t, AKV_LAUNCH_CHECK() follows every
 * kernel launch and returns the launch error, and AKV_REQUIRE(cond) returns cudaErrorInvalidValue
 * (after one stderr line naming the launcher and the condition) when a precondition fails. */
#ifndef ASYMKV_CUDA_CHECK_H
#define ASYMKV_CUDA_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "common.h"

/* Library flavour: needs `akv_status st;` in scope and a `fail:` label. */
#define CUDA_CHECK(err, call)                                                                  \
    do {                                                                                       \
        cudaError_t akv_ce_ = (call);                                                          \
        if (akv_ce_ != cudaSuccess) {                                                          \
            st = akv_fail((err), AKV_ERUNTIME, "%s failed: %s (%s:%d)", #call,                 \
                          cudaGetErrorString(akv_ce_), __FILE__, __LINE__);                    \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)

#define CUBLAS_CHECK(err, call)                                                                \
    do {                                                                                       \
        cublasStatus_t akv_cs_ = (call);                                                       \
        if (akv_cs_ != CUBLAS_STATUS_SUCCESS) {                                                \
            st = akv_fail((err), AKV_ERUNTIME, "%s failed: %s (%s:%d)", #call,                 \
                          cublasLtGetStatusString(akv_cs_), __FILE__, __LINE__);               \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)

/* launch/ and tests: a CUDA error ends the process with exit code 1 (design §7). */
#define CUDA_CHECK_EXIT(call)                                                                  \
    do {                                                                                       \
        cudaError_t akv_ce_ = (call);                                                          \
        if (akv_ce_ != cudaSuccess) {                                                          \
            fprintf(stderr, "asymkv: %s failed: %s (%s:%d)\n", #call,                          \
                    cudaGetErrorString(akv_ce_), __FILE__, __LINE__);                          \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Launcher flavour (functions returning cudaError_t). */
#define AKV_LAUNCH_CHECK()                                                                     \
    do {                                                                                       \
        cudaError_t akv_le_ = cudaGetLastError();                                              \
        if (akv_le_ != cudaSuccess) return akv_le_;                                            \
    } while (0)

#define AKV_REQUIRE(cond)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "asymkv: %s: precondition failed: %s (%s:%d)\n", __func__, #cond, \
                    __FILE__, __LINE__);                                                       \
            return cudaErrorInvalidValue;                                                      \
        }                                                                                      \
    } while (0)

#endif
