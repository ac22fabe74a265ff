/* nccl.h (emulation) — the names comm/comm_check.h uses, for comm/comm.c in asymkv_emu (which
 * never selects NCCL: its one emulated GPU is shared by every rank of a node). */
#ifndef ASYMKV_EMU_NCCL_H
#define ASYMKV_EMU_NCCL_H
typedef enum { ncclSuccess = 0 } ncclResult_t;
static inline const char *ncclGetErrorString(ncclResult_t r) {
    return r ? "NCCL error (emulated)" : "no error";
}
#endif
