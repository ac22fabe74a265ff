/* nccl.h (emulation) — a host-only stand-in for NCCL, for comm/comm_nccl.c in asymkv_emu: the
 * communicator is a duplicate of MPI_COMM_WORLD and the sends/receives of a group are MPI
 * Isend/Irecv completed at ncclGroupEnd (the emulated streams are synchronous and "device"
 * memory is host memory, so MPI can move it). With ASYMKV_EMU_GPU_PER_RANK=1 every process
 * sees a GPU of its own (tests/emu/cuda_emu.c), so the pipeline picks this NCCL transport and
 * its whole path (grouping, comm stream, events, async-error polls, close) runs on a CPU.
 * Every name maps to emu_*, clear of the real NCCL a CUDA build links. */
#ifndef ASYMKV_EMU_NCCL_H
#define ASYMKV_EMU_NCCL_H

#include <stddef.h>

#include "cuda_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ncclSuccess = 0, ncclSystemError = 2, ncclInvalidUsage = 5, ncclInProgress = 7 }
    ncclResult_t;
typedef enum { ncclFloat32 = 7 } ncclDataType_t;
#define ncclFloat ncclFloat32
typedef struct { char internal[128]; } ncclUniqueId;
typedef struct emu_nccl_comm *ncclComm_t;

#define ncclGetErrorString emu_ncclGetErrorString
#define ncclGetLastError emu_ncclGetLastError
#define ncclGetUniqueId emu_ncclGetUniqueId
#define ncclCommInitRank emu_ncclCommInitRank
#define ncclCommDestroy emu_ncclCommDestroy
#define ncclCommAbort emu_ncclCommAbort
#define ncclCommGetAsyncError emu_ncclCommGetAsyncError
#define ncclGroupStart emu_ncclGroupStart
#define ncclGroupEnd emu_ncclGroupEnd
#define ncclSend emu_ncclSend
#define ncclRecv emu_ncclRecv

const char *ncclGetErrorString(ncclResult_t r);
const char *ncclGetLastError(ncclComm_t c);
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t c);
ncclResult_t ncclCommAbort(ncclComm_t c);
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *async);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);
ncclResult_t ncclSend(const void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c,
                      cudaStream_t s);
ncclResult_t ncclRecv(void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c,
                      cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
