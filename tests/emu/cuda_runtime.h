/* cuda_runtime.h (emulation) — a host-only stand-in for the CUDA runtime, used by
 * tests/test_stage_emu.c to run runtime/stage_cuda.c (the CUDA backend's host logic: arena
 * layout, per-call tables, cache counts, prefill commits, decode appends, sampling plumbing)
 * on a machine without a GPU, with every launcher replaced by its CPU twin (cuda_emu.c).
 * "Device" memory is host memory filled with 0xff (NaN) at allocation, so a read of anything the
 * stage never wrote shows up as NaN. Every name is mapped to emu_* so nothing clashes with the
 * real CUDA libraries a CUDA build links. Not a general emulator: only what the stage (and
 * comm/comm.c's device pick, for the emulated binary asymkv_emu) uses. */
#ifndef ASYMKV_EMU_CUDA_RUNTIME_H
#define ASYMKV_EMU_CUDA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
                         cudaErrorNotReady = 600 } cudaError_t;
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
                      cudaMemcpyDeviceToDevice = 3 };
#define cudaStreamNonBlocking 1u
#define cudaEventDisableTiming 2u

struct cudaDeviceProp {
    struct {
        unsigned char bytes[16];
    } uuid;
};

#define cudaGetDeviceProperties emu_cudaGetDeviceProperties
#define cudaGetErrorString emu_cudaGetErrorString
#define cudaGetLastError emu_cudaGetLastError
#define cudaGetDeviceCount emu_cudaGetDeviceCount
#define cudaSetDevice emu_cudaSetDevice
#define cudaMalloc emu_cudaMalloc
#define cudaFree emu_cudaFree
#define cudaMallocHost emu_cudaMallocHost
#define cudaFreeHost emu_cudaFreeHost
#define cudaMemGetInfo emu_cudaMemGetInfo
#define cudaMemcpyAsync emu_cudaMemcpyAsync
#define cudaMemsetAsync emu_cudaMemsetAsync
#define cudaStreamCreateWithFlags emu_cudaStreamCreateWithFlags
#define cudaStreamDestroy emu_cudaStreamDestroy
#define cudaStreamSynchronize emu_cudaStreamSynchronize
#define cudaEventCreateWithFlags emu_cudaEventCreateWithFlags
#define cudaEventDestroy emu_cudaEventDestroy
#define cudaEventRecord emu_cudaEventRecord
#define cudaEventSynchronize emu_cudaEventSynchronize
#define cudaEventCreate emu_cudaEventCreate
#define cudaEventQuery emu_cudaEventQuery
#define cudaStreamWaitEvent emu_cudaStreamWaitEvent
#define cudaEventElapsedTime emu_cudaEventElapsedTime

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d); /* one GPU, one UUID */
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k,
                            cudaStream_t s);
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventQuery(cudaEvent_t e); /* always done: streams are synchronous */
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end); /* host clock */

/* The launchers of kernels_cuda.h and sample_cuda.h, renamed to their emulations. */
#define embedding_cuda emu_embedding_cuda
#define rmsnorm_cuda emu_rmsnorm_cuda
#define rope_cuda emu_rope_cuda
#define swiglu_cuda emu_swiglu_cuda
#define add_cuda emu_add_cuda
#define argmax_cuda emu_argmax_cuda
#define matmul_ctx emu_matmul_ctx
#define matmul_ctx_init emu_matmul_ctx_init
#define matmul_ctx_free emu_matmul_ctx_free
#define matmul_cuda emu_matmul_cuda
#define attention_prefill_cuda emu_attention_prefill_cuda
#define attention_decode_cuda emu_attention_decode_cuda
#define attention_decode_workspace_bytes emu_attention_decode_workspace_bytes
#define kvq_append_cuda emu_kvq_append_cuda
#define kvq_round_f16_cuda emu_kvq_round_f16_cuda
#define kvq_dense_cuda emu_kvq_dense_cuda
#define kvq_commit_cuda emu_kvq_commit_cuda
#define f32_to_f16_cuda emu_f32_to_f16_cuda
#define kvattn_cuda emu_kvattn_cuda
#define kvattn_workspace_bytes emu_kvattn_workspace_bytes
#define sample_cuda emu_sample_cuda
#define sample_cuda_workspace_bytes emu_sample_cuda_workspace_bytes

/* Test knobs: bytes cudaMemGetInfo reports free; calls of each kind so far. */
extern size_t emu_free_bytes;
extern long emu_host_syncs; /* cudaStreamSynchronize calls */
/* Nonzero: prefill over a compressed layer attends to the fp16 rows of the dense scratch, as the
 * real kernel does (default: to the cache itself, as the CPU backend does, so that the
 * emulation is exact and any difference is the stage's logic). */
extern int emu_rounded_dense;


#ifdef __cplusplus
}
#endif
#endif
