/* comm_check.h — MPI_CHECK / NCCL_CHECK, the comm/ members of the one family of check macros
 * (style §4; CUDA_CHECK lives in kernels/cuda_check.h). Library flavour only: they record
 * "call failed: reason (file:line)" in the caller's akv_err, set the caller's local
 * `akv_status st` to AKV_ERUNTIME and `goto fail;`. launch/ prefixes the rank when it prints. */
#ifndef ASYMKV_COMM_CHECK_H
#define ASYMKV_COMM_CHECK_H

#include <mpi.h>

#include "common.h"

#define MPI_CHECK(err, call)                                                                   \
    do {                                                                                       \
        int akv_mrc_ = (call);                                                                 \
        if (akv_mrc_ != MPI_SUCCESS) {                                                         \
            char akv_ms_[MPI_MAX_ERROR_STRING] = "unknown MPI error";                          \
            int akv_ml_ = 0;                                                                   \
            MPI_Error_string(akv_mrc_, akv_ms_, &akv_ml_);                                     \
            st = akv_fail((err), AKV_ERUNTIME, "%s failed: %s (%s:%d)", #call, akv_ms_,        \
                          __FILE__, __LINE__);                                                 \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)

#ifdef ASYMKV_HAVE_CUDA
#include <nccl.h>
#define NCCL_CHECK(err, call)                                                                  \
    do {                                                                                       \
        ncclResult_t akv_nr_ = (call);                                                         \
        if (akv_nr_ != ncclSuccess) {                                                          \
            st = akv_fail((err), AKV_ERUNTIME, "%s failed: %s (%s:%d)", #call,                 \
                          ncclGetErrorString(akv_nr_), __FILE__, __LINE__);                    \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)
#endif

#endif
