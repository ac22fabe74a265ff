/* cublasLt.h (emulation) — the two names cuda_check.h uses; see cuda_runtime.h here. */
#ifndef ASYMKV_EMU_CUBLASLT_H
#define ASYMKV_EMU_CUBLASLT_H
typedef enum cublasStatus { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
static inline const char *cublasLtGetStatusString(cublasStatus_t s) {
    return s ? "cuBLAS error (emulated)" : "success";
}
#endif
