/* comm_internal.h — the inside of comm_t, shared by the transport core (comm_transport.c, MPI)
 * and the NCCL data path (comm_nccl.c). Not installed beyond comm/. */
#ifndef ASYMKV_COMM_INTERNAL_H
#define ASYMKV_COMM_INTERNAL_H

#include <mpi.h>

#include "comm.h"

/* Message tags on comm->mpi; pairs of ranks match messages in order within a tag. */
enum { COMM_TAG_IDS = 11, COMM_TAG_ACT = 12 };

struct comm_nccl; /* comm_nccl.c */

struct comm {
    comm_kind kind;
    int rank, size;
    MPI_Comm mpi;            /* our duplicate of MPI_COMM_WORLD (errors returned) */
    int in_group;            /* between comm_group_begin and comm_group_end */
    MPI_Request *req;        /* [cap_req] host transfers posted in the open group */
    int n_req, cap_req;
    struct comm_nccl *nccl;  /* NULL for the MPI transport */
};

/* Idle step of a polling wait: spin first, then yield, then sleep up to ~0.2 ms, so ranks
 * waiting on a peer leave the CPU to ranks that compute (CI runs 4 ranks on 2 cores). */
void comm_idle(long *spins);

/* The NCCL data path. Without CUDA in the build, open fails and the rest are never reached. */
akv_status comm_nccl_open(comm_t *c, void *stream, akv_err *err);
void comm_nccl_close(comm_t *c, int abort_ops);
void comm_nccl_set_stream(comm_t *c, void *stream);
akv_status comm_nccl_group_begin(comm_t *c, akv_err *err);
akv_status comm_nccl_send(comm_t *c, int peer, const float *x, size_t n, akv_err *err);
akv_status comm_nccl_recv(comm_t *c, int peer, float *x, size_t n, akv_err *err);
akv_status comm_nccl_group_end(comm_t *c, akv_err *err);
/* Asynchronous NCCL error (a dead peer, a network failure) while the host waits. */
akv_status comm_nccl_poll(comm_t *c, akv_err *err);

#endif
