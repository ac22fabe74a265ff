/* comm.h — moving bytes between ranks (design §6): the process world (MPI start-up, rank
 * identity, node-local rank, rank -> GPU) and the transport comm_t that carries a pipeline's
 * activations and token ids, grouped per tick. The only folder, with launch/, that includes
 * mpi.h / nccl.h; nothing here prints or exits except comm_abort / comm_world_abort. */
#ifndef ASYMKV_COMM_H
#define ASYMKV_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- the world (bootstrap) */

typedef struct comm_world {
    int rank;           /* in MPI_COMM_WORLD */
    int size;
    int local_rank;     /* among the ranks of this node (MPI_Comm_split_type SHARED) */
    int local_size;
    char launcher[64];  /* "mpirun", "srun (job 12)", "mpirun (job 12)" or "singleton" */
} comm_world;

/* MPI_Init_thread (funneled) and the rank identity. Works as a singleton (no launcher), under
 * mpirun/mpiexec and under srun --mpi=pmix. Errors are returned by MPI calls (not fatal).
 * AKV_EINPUT when srun started several tasks but MPI sees one rank (srun without --mpi=pmix). */
akv_status comm_world_init(comm_world *w, int *argc, char ***argv, akv_err *err);

/* This process's rank as the launcher put it in the environment (OMPI_COMM_WORLD_RANK,
 * PMIX_RANK, SLURM_PROCID), readable before MPI_Init: -1 when not launched. Lets a flag error
 * found before MPI starts be printed once, by rank 0, instead of by every rank. */
int comm_env_rank(void);

/* MPI_Finalize (when this module initialized MPI). */
void comm_world_finalize(void);

/* Ends every rank of the job now with the given exit code (MPI_Abort). */
void comm_world_abort(int code);

/* The GPU this rank uses: node-local rank modulo the visible devices. */
typedef struct comm_device {
    int device;     /* CUDA ordinal, -1 when this build has no CUDA or the rank sees no GPU */
    int n_visible;  /* cudaGetDeviceCount (0 on error or without CUDA) */
    int shared;     /* another rank of this node uses the same physical GPU (UUID compare) */
} comm_device;

/* Collective over the world (it compares GPU UUIDs among a node's ranks). When bind is set and
 * a device exists, makes it current (cudaSetDevice). Never fails for lack of a GPU; a failure
 * (cudaSetDevice, MPI) may leave peers inside the collective: the caller ends the job. */
akv_status comm_world_device(const comm_world *w, int bind, comm_device *d, akv_err *err);

/* ---------------------------------------------------------------- the transport */

typedef enum comm_kind {
    COMM_MPI = 0,  /* host buffers; the CPU backend and ranks sharing a GPU */
    COMM_NCCL = 1, /* device buffers; every rank has a GPU of its own */
} comm_kind;

const char *comm_kind_name(comm_kind k);

/* Collective: NCCL when activations live in device memory (device_buffers), this build has
 * CUDA and every rank of the job has a GPU of its own (NCCL refuses two ranks on one
 * device); otherwise MPI. */
akv_status comm_choose(const comm_world *w, int device_buffers, const comm_device *d,
                       comm_kind *kind, akv_err *err);

typedef struct comm comm_t;

typedef struct comm_opts {
    comm_kind kind;
    void *stream; /* NCCL: the cudaStream_t compute runs on; transfers of a group are ordered
                     after the work queued on it so far, and later work after them, by events.
                     NULL: comm_group_end waits on the host. Ignored by MPI. */
} comm_opts;

/* Collective over the world: duplicates MPI_COMM_WORLD (and, for NCCL, creates the NCCL
 * communicator: rank 0 makes the unique id, MPI_Bcast shares it). */
akv_status comm_open(comm_t **out, const comm_world *w, const comm_opts *o, akv_err *err);
void comm_close(comm_t *c); /* NULL-safe; not collective */

/* NCCL: the compute stream transfers are ordered against from now on (see comm_opts.stream);
 * no effect on MPI. For callers whose stream exists only after comm_open. */
void comm_set_stream(comm_t *c, void *stream);

int comm_rank(const comm_t *c);
int comm_size(const comm_t *c);
comm_kind comm_get_kind(const comm_t *c);

/* Point to point. Between comm_group_begin and comm_group_end the calls only post the
 * transfers (buffers must stay untouched until comm_group_end); comm_group_end completes all
 * of them (MPI: Waitall; NCCL: ncclGroupEnd on the comm stream). Outside a group each call is
 * a group of one. Messages between two ranks are matched in order.
 * Activations are floats in the transport's memory (host for MPI, device for NCCL); token ids
 * and other int32 control words are always host memory and always go over MPI. A receive of
 * ids takes at most n; the sender's count must equal the receiver's for activations. */
akv_status comm_group_begin(comm_t *c, akv_err *err);
akv_status comm_send_act(comm_t *c, int peer, const float *x, size_t n, akv_err *err);
akv_status comm_recv_act(comm_t *c, int peer, float *x, size_t n, akv_err *err);
akv_status comm_send_ids(comm_t *c, int peer, const int32_t *ids, int n, akv_err *err);
akv_status comm_recv_ids(comm_t *c, int peer, int32_t *ids, int n, akv_err *err);
akv_status comm_group_end(comm_t *c, akv_err *err);

/* Collective: every rank passes its own status (err holding its message when failing) and
 * gets the job's. When some rank failed, all return the code of the lowest failing rank; that
 * rank keeps its message, every other rank gets an empty message (the failure is reported
 * once, by the rank that saw it). */
akv_status comm_agree(comm_t *c, akv_status mine, akv_err *err);

/* Collectives on host memory. */
akv_status comm_bcast_i32(comm_t *c, int32_t *buf, int n, int root, akv_err *err);
/* all (on root only): [size][bytes], rank r's block at r * bytes. */
akv_status comm_gather(comm_t *c, const void *mine, size_t bytes, void *all, int root,
                       akv_err *err);
akv_status comm_barrier(comm_t *c, akv_err *err);

/* Ends every rank of the job with exit code `code`: aborts the NCCL communicator (so no
 * kernel waits on a dead peer), flushes stdout/stderr, then MPI_Abort. Never returns. */
void comm_abort(comm_t *c, int code);

#ifdef __cplusplus
}
#endif
#endif
