/* nccl_emu.c — tests/emu/nccl.h over MPI (see there). Only what comm/comm_nccl.c uses; float
 * payloads; one communicator at a time. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "nccl.h"

#define EMU_NCCL_TAG 77
#define EMU_NCCL_MAX_OPS 64

struct emu_nccl_comm {
    MPI_Comm mpi;
    int rank, size;
};

static struct {
    int depth; /* ncclGroupStart nesting */
    int n;
    MPI_Request req[EMU_NCCL_MAX_OPS];
} group;

const char *ncclGetErrorString(ncclResult_t r) {
    return r == ncclSuccess ? "no error" : r == ncclInvalidUsage ? "invalid usage (emulated)"
                                                                 : "system error (emulated)";
}
const char *ncclGetLastError(ncclComm_t c) {
    (void)c;
    return "";
}
ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    memcpy(id->internal, "asymkv-emu-nccl", 15);
    return ncclSuccess;
}
ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank) {
    int size = 0, me = -1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (strcmp(id.internal, "asymkv-emu-nccl") || nranks != size || rank != me)
        return ncclInvalidUsage;
    *c = calloc(1, sizeof **c);
    if (!*c || MPI_Comm_dup(MPI_COMM_WORLD, &(*c)->mpi) != MPI_SUCCESS) return ncclSystemError;
    (*c)->rank = rank, (*c)->size = nranks;
    return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (c) MPI_Comm_free(&c->mpi);
    free(c);
    return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t c) {
    free(c); /* the job is ending: no collective MPI_Comm_free */
    return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *async) {
    (void)c;
    *async = ncclSuccess;
    return ncclSuccess;
}

static ncclResult_t finish(void) {
    const int rc = MPI_Waitall(group.n, group.req, MPI_STATUSES_IGNORE);
    group.n = 0;
    return rc == MPI_SUCCESS ? ncclSuccess : ncclSystemError;
}

ncclResult_t ncclGroupStart(void) {
    group.depth++;
    return ncclSuccess;
}
ncclResult_t ncclGroupEnd(void) {
    if (group.depth <= 0) return ncclInvalidUsage;
    return --group.depth == 0 ? finish() : ncclSuccess;
}

static ncclResult_t post(void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c,
                         int send) {
    if (t != ncclFloat32 || count > (size_t)0x7fffffff || group.n == EMU_NCCL_MAX_OPS ||
        peer < 0 || peer >= c->size)
        return ncclInvalidUsage;
    const int rc = send ? MPI_Isend(buf, (int)count, MPI_FLOAT, peer, EMU_NCCL_TAG, c->mpi,
                                    &group.req[group.n])
                        : MPI_Irecv(buf, (int)count, MPI_FLOAT, peer, EMU_NCCL_TAG, c->mpi,
                                    &group.req[group.n]);
    if (rc != MPI_SUCCESS) return ncclSystemError;
    group.n++;
    return group.depth ? ncclSuccess : finish();
}

ncclResult_t ncclSend(const void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c,
                      cudaStream_t s) {
    (void)s;
    return post((void *)buf, count, t, peer, c, 1);
}
ncclResult_t ncclRecv(void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c,
                      cudaStream_t s) {
    (void)s;
    return post(buf, count, t, peer, c, 0);
}
