/* comm_nccl.c — the NCCL data path of comm_t (device activations). One communicator over the
 * world, bootstrapped by MPI (rank 0's unique id, MPI_Bcast); transfers of a group run on a
 * dedicated comm stream, after the compute stream's work (event `ready`), and the compute
 * stream waits for them (event `done`) — no device-wide syncs. Waits on the host poll
 * ncclCommGetAsyncError, so a dead peer or network error surfaces instead of hanging.
 * Compiled only with ASYMKV_HAVE_CUDA; otherwise opening an NCCL transport fails cleanly. */
#include <stdlib.h>
#include <string.h>

#include "comm_check.h"
#include "comm_internal.h"

#ifdef ASYMKV_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

#include "cuda_check.h"

struct comm_nccl {
    ncclComm_t nc;
    cudaStream_t stream;  /* transfers run here (created, non-blocking) */
    cudaStream_t compute; /* borrowed compute stream; NULL: the host waits in group_end */
    cudaEvent_t ready;    /* recorded on compute at group_begin, waited on by stream */
    cudaEvent_t done;     /* recorded on stream at group_end, waited on by compute */
};

/* MPI_MIN over "this rank is fine": a failure anywhere fails everywhere. */
static akv_status agree_local(comm_t *c, akv_status mine, akv_err *err) {
    int ok = mine == AKV_OK, all = 0;
    int rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, c->mpi);
    if (rc != MPI_SUCCESS) return akv_fail(err, AKV_ERUNTIME, "MPI_Allreduce failed (%d)", rc);
    if (!all) return akv_fail(err, AKV_ERUNTIME, "CUDA/NCCL setup failed on another rank");
    return mine;
}

/* Rank 0 makes the unique id and MPI_Bcast shares it, with rank 0's result so that every
 * rank fails together when it could not. */
static akv_status share_id(comm_t *c, ncclUniqueId *id, akv_err *err) {
    struct { ncclUniqueId id; int rc; } msg;
    memset(&msg, 0, sizeof msg);
    if (c->rank == 0) {
        msg.rc = (int)ncclGetUniqueId(&msg.id);
    }
    int rc = MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, 0, c->mpi);
    if (rc != MPI_SUCCESS) return akv_fail(err, AKV_ERUNTIME, "MPI_Bcast of the NCCL id failed");
    if (msg.rc != ncclSuccess)
        return akv_fail(err, AKV_ERUNTIME, "ncclGetUniqueId failed on rank 0: %s",
                        ncclGetErrorString((ncclResult_t)msg.rc));
    *id = msg.id;
    return AKV_OK;
}

/* ncclCommInitRank waits for every rank, so it is entered only when all ranks got that far;
 * a failure inside it can still leave the others waiting: the caller must then end the job
 * (comm_abort), which is what launch/ does with any comm_open failure. */
akv_status comm_nccl_open(comm_t *c, void *stream, akv_err *err) {
    akv_status st = AKV_OK;
    ncclUniqueId id;
    struct comm_nccl *n = calloc(1, sizeof *n);
    if (!n) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    c->nccl = n; /* comm_open's cleanup closes it */
    n->compute = (cudaStream_t)stream;
    if ((st = share_id(c, &id, err))) return st;
    CUDA_CHECK(err, cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    CUDA_CHECK(err, cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming));
    CUDA_CHECK(err, cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming));
fail:
    if ((st = agree_local(c, st, err))) return st;
    ncclResult_t r = ncclCommInitRank(&n->nc, c->size, id, c->rank);
    if (r != ncclSuccess) /* no goto: the others may be inside the init; the job must end */
        return akv_fail(err, AKV_ERUNTIME, "ncclCommInitRank failed on rank %d: %s (%s)",
                        c->rank, ncclGetErrorString(r), ncclGetLastError(NULL));
    return AKV_OK;
}

void comm_nccl_set_stream(comm_t *c, void *stream) {
    if (c->nccl) c->nccl->compute = (cudaStream_t)stream;
}

void comm_nccl_close(comm_t *c, int abort_ops) {
    struct comm_nccl *n = c->nccl;
    if (!n) return;
    if (n->nc) {
        /* Teardown results are ignored: the job is ending either way. */
        if (abort_ops) (void)ncclCommAbort(n->nc); /* returns at once; kills pending kernels */
        else (void)ncclCommDestroy(n->nc);
    }
    if (!abort_ops) { /* after an abort the device may be unusable: leak rather than block */
        if (n->done) (void)cudaEventDestroy(n->done);
        if (n->ready) (void)cudaEventDestroy(n->ready);
        if (n->stream) (void)cudaStreamDestroy(n->stream);
    }
    free(n);
    c->nccl = NULL;
}

akv_status comm_nccl_poll(comm_t *c, akv_err *err) {
    akv_status st = AKV_OK;
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(err, ncclCommGetAsyncError(c->nccl->nc, &async));
    if (async != ncclSuccess && async != ncclInProgress)
        return akv_fail(err, AKV_ERUNTIME, "NCCL asynchronous error on rank %d: %s (%s)",
                        c->rank, ncclGetErrorString(async), ncclGetLastError(c->nccl->nc));
fail:
    return st;
}

akv_status comm_nccl_group_begin(comm_t *c, akv_err *err) {
    akv_status st = AKV_OK;
    struct comm_nccl *n = c->nccl;
    if (n->compute) { /* sends read what compute wrote; receives overwrite what it read */
        CUDA_CHECK(err, cudaEventRecord(n->ready, n->compute));
        CUDA_CHECK(err, cudaStreamWaitEvent(n->stream, n->ready, 0));
    }
    NCCL_CHECK(err, ncclGroupStart());
fail:
    return st;
}

akv_status comm_nccl_send(comm_t *c, int peer, const float *x, size_t n, akv_err *err) {
    akv_status st = AKV_OK;
    NCCL_CHECK(err, ncclSend(x, n, ncclFloat32, peer, c->nccl->nc, c->nccl->stream));
fail:
    return st;
}

akv_status comm_nccl_recv(comm_t *c, int peer, float *x, size_t n, akv_err *err) {
    akv_status st = AKV_OK;
    NCCL_CHECK(err, ncclRecv(x, n, ncclFloat32, peer, c->nccl->nc, c->nccl->stream));
fail:
    return st;
}

/* Host wait for the comm stream without cudaStreamSynchronize, which would block forever on
 * a transfer whose peer died; polling lets the async error end the rank instead. */
static akv_status wait_done(comm_t *c, akv_err *err) {
    akv_status st = AKV_OK;
    long spins = 0;
    for (;;) {
        cudaError_t q = cudaEventQuery(c->nccl->done);
        if (q == cudaSuccess) break;
        if (q != cudaErrorNotReady) CUDA_CHECK(err, q);
        if ((st = comm_nccl_poll(c, err))) goto fail;
        comm_idle(&spins);
    }
fail:
    return st;
}

akv_status comm_nccl_group_end(comm_t *c, akv_err *err) {
    akv_status st = AKV_OK;
    struct comm_nccl *n = c->nccl;
    ncclResult_t r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress) NCCL_CHECK(err, r);
    CUDA_CHECK(err, cudaEventRecord(n->done, n->stream));
    if (n->compute) CUDA_CHECK(err, cudaStreamWaitEvent(n->compute, n->done, 0));
    else st = wait_done(c, err);
fail:
    return st;
}

#else /* no CUDA in this build: comm_choose never selects NCCL */

akv_status comm_nccl_open(comm_t *c, void *stream, akv_err *err) {
    (void)c;
    (void)stream;
    return akv_fail(err, AKV_EINPUT, "this build has no NCCL (configure with -DASYMKV_CUDA=ON)");
}
void comm_nccl_close(comm_t *c, int abort_ops) { (void)c; (void)abort_ops; }
void comm_nccl_set_stream(comm_t *c, void *stream) { (void)c; (void)stream; }
akv_status comm_nccl_group_begin(comm_t *c, akv_err *err) { (void)c; (void)err; return AKV_OK; }
akv_status comm_nccl_send(comm_t *c, int peer, const float *x, size_t n, akv_err *err) {
    (void)c; (void)peer; (void)x; (void)n;
    return akv_fail(err, AKV_ERUNTIME, "no NCCL in this build");
}
akv_status comm_nccl_recv(comm_t *c, int peer, float *x, size_t n, akv_err *err) {
    (void)c; (void)peer; (void)x; (void)n;
    return akv_fail(err, AKV_ERUNTIME, "no NCCL in this build");
}
akv_status comm_nccl_group_end(comm_t *c, akv_err *err) { (void)c; (void)err; return AKV_OK; }
akv_status comm_nccl_poll(comm_t *c, akv_err *err) { (void)c; (void)err; return AKV_OK; }

#endif
