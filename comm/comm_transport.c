/* comm_transport.c — comm_t: grouped point-to-point transfers and the engine's collectives.
 * Host-side transfers (token ids always, activations for the MPI transport) are MPI
 * Isend/Irecv completed by a polling Testall; device activations go to comm_nccl.c. */
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "comm_check.h"
#include "comm_internal.h"

const char *comm_kind_name(comm_kind k) { return k == COMM_NCCL ? "nccl" : "mpi"; }
int comm_rank(const comm_t *c) { return c->rank; }
int comm_size(const comm_t *c) { return c->size; }
comm_kind comm_get_kind(const comm_t *c) { return c->kind; }

void comm_set_stream(comm_t *c, void *stream) {
    if (c->kind == COMM_NCCL) comm_nccl_set_stream(c, stream);
}

void comm_idle(long *spins) {
    long s = (*spins)++;
    if (s < 64) return;
    if (s < 512) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, s < 2048 ? 20000 : 200000};
    nanosleep(&ts, NULL);
}

akv_status comm_choose(const comm_world *w, int device_buffers, const comm_device *d,
                       comm_kind *kind, akv_err *err) {
    akv_status st = AKV_OK;
    int mine = device_buffers && d->device >= 0 && !d->shared, all = 0;
#ifndef ASYMKV_HAVE_CUDA
    mine = 0;
#endif
    (void)w;
    MPI_CHECK(err, MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    *kind = all ? COMM_NCCL : COMM_MPI;
fail:
    return st;
}

akv_status comm_open(comm_t **out, const comm_world *w, const comm_opts *o, akv_err *err) {
    akv_status st = AKV_OK;
    *out = NULL;
    comm_t *c = calloc(1, sizeof *c);
    if (!c) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    c->mpi = MPI_COMM_NULL;
    c->kind = o->kind;
    c->rank = w->rank;
    c->size = w->size;
    c->cap_req = 16;
    if (!(c->req = malloc((size_t)c->cap_req * sizeof *c->req))) {
        st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        goto fail;
    }
    MPI_CHECK(err, MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi));
    MPI_CHECK(err, MPI_Comm_set_errhandler(c->mpi, MPI_ERRORS_RETURN));
    if (c->kind == COMM_NCCL && (st = comm_nccl_open(c, o->stream, err))) goto fail;
    *out = c;
    return AKV_OK;
fail:
    comm_close(c);
    return st;
}

void comm_close(comm_t *c) {
    if (!c) return;
    if (c->nccl) comm_nccl_close(c, 0);
    if (c->mpi != MPI_COMM_NULL) (void)MPI_Comm_free(&c->mpi); /* teardown: nothing to tell */
    free(c->req);
    free(c);
}

/* Room for one more request in the open group. */
static akv_status next_req(comm_t *c, MPI_Request **r, akv_err *err) {
    if (c->n_req == c->cap_req) {
        MPI_Request *p = realloc(c->req, 2 * (size_t)c->cap_req * sizeof *p);
        if (!p) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
        c->req = p;
        c->cap_req *= 2;
    }
    *r = &c->req[c->n_req++];
    return AKV_OK;
}

/* Completes every posted host transfer, polling so that NCCL errors are seen too. */
static akv_status wait_host(comm_t *c, akv_err *err) {
    akv_status st = AKV_OK;
    long spins = 0;
    for (int done = 0; !done;) {
        MPI_CHECK(err, MPI_Testall(c->n_req, c->req, &done, MPI_STATUSES_IGNORE));
        if (!done && c->nccl && (st = comm_nccl_poll(c, err))) goto fail;
        if (!done) comm_idle(&spins);
    }
fail:
    c->n_req = 0;
    return st;
}

akv_status comm_group_begin(comm_t *c, akv_err *err) {
    if (c->in_group) return akv_fail(err, AKV_ERUNTIME, "comm_group_begin: group already open");
    c->in_group = 1;
    c->n_req = 0;
    return c->nccl ? comm_nccl_group_begin(c, err) : AKV_OK;
}

akv_status comm_group_end(comm_t *c, akv_err *err) {
    if (!c->in_group) return akv_fail(err, AKV_ERUNTIME, "comm_group_end: no group open");
    c->in_group = 0;
    akv_status st = c->nccl ? comm_nccl_group_end(c, err) : AKV_OK;
    akv_status sw = wait_host(c, err); /* always: never leave requests pending */
    return st ? st : sw;
}

/* One host transfer: posted into the open group, or a group of its own. */
static akv_status host_xfer(comm_t *c, int send, int peer, void *buf, size_t n,
                            MPI_Datatype type, int tag, akv_err *err) {
    akv_status st = AKV_OK;
    MPI_Request *r = NULL;
    int own = !c->in_group;
    if (peer < 0 || peer >= c->size || peer == c->rank || n > INT_MAX)
        return akv_fail(err, AKV_ERUNTIME, "comm: bad transfer to/from rank %d of %zu items",
                        peer, n);
    if (own && (st = comm_group_begin(c, err))) return st;
    if ((st = next_req(c, &r, err))) goto fail;
    if (send) MPI_CHECK(err, MPI_Isend(buf, (int)n, type, peer, tag, c->mpi, r));
    else MPI_CHECK(err, MPI_Irecv(buf, (int)n, type, peer, tag, c->mpi, r));
fail:
    if (st && r) c->n_req--;
    if (own) {
        akv_status se = comm_group_end(c, err);
        if (!st) st = se;
    }
    return st;
}

akv_status comm_send_ids(comm_t *c, int peer, const int32_t *ids, int n, akv_err *err) {
    return host_xfer(c, 1, peer, (void *)ids, (size_t)n, MPI_INT32_T, COMM_TAG_IDS, err);
}

akv_status comm_recv_ids(comm_t *c, int peer, int32_t *ids, int n, akv_err *err) {
    return host_xfer(c, 0, peer, ids, (size_t)n, MPI_INT32_T, COMM_TAG_IDS, err);
}

/* Device activations under NCCL, in the open group or a group of their own. */
static akv_status nccl_xfer(comm_t *c, int send, int peer, float *x, size_t n, akv_err *err) {
    int own = !c->in_group;
    akv_status st = own ? comm_group_begin(c, err) : AKV_OK;
    if (!st) st = send ? comm_nccl_send(c, peer, x, n, err) : comm_nccl_recv(c, peer, x, n, err);
    if (own) {
        akv_status se = comm_group_end(c, err);
        if (!st) st = se;
    }
    return st;
}

akv_status comm_send_act(comm_t *c, int peer, const float *x, size_t n, akv_err *err) {
    if (c->nccl) return nccl_xfer(c, 1, peer, (float *)x, n, err);
    return host_xfer(c, 1, peer, (void *)x, n, MPI_FLOAT, COMM_TAG_ACT, err);
}

akv_status comm_recv_act(comm_t *c, int peer, float *x, size_t n, akv_err *err) {
    if (c->nccl) return nccl_xfer(c, 0, peer, x, n, err);
    return host_xfer(c, 0, peer, x, n, MPI_FLOAT, COMM_TAG_ACT, err);
}

akv_status comm_agree(comm_t *c, akv_status mine, akv_err *err) {
    akv_status st = AKV_OK;
    int *all = calloc((size_t)c->size, sizeof(int)), code = (int)mine;
    if (!all) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    MPI_CHECK(err, MPI_Allgather(&code, 1, MPI_INT, all, 1, MPI_INT, c->mpi));
    for (int r = 0; r < c->size; r++) {
        if (!all[r]) continue;
        st = (akv_status)all[r];
        if (r != c->rank && err) { /* reported by rank r, not here */
            err->code = st;
            err->msg[0] = '\0';
        }
        break;
    }
fail:
    free(all);
    return st;
}

akv_status comm_bcast_i32(comm_t *c, int32_t *buf, int n, int root, akv_err *err) {
    akv_status st = AKV_OK;
    MPI_CHECK(err, MPI_Bcast(buf, n, MPI_INT32_T, root, c->mpi));
fail:
    return st;
}

akv_status comm_gather(comm_t *c, const void *mine, size_t bytes, void *all, int root,
                       akv_err *err) {
    akv_status st = AKV_OK;
    if (bytes > INT_MAX) return akv_fail(err, AKV_ERUNTIME, "comm_gather: %zu bytes", bytes);
    MPI_CHECK(err, MPI_Gather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, root,
                              c->mpi));
fail:
    return st;
}

akv_status comm_barrier(comm_t *c, akv_err *err) {
    akv_status st = AKV_OK;
    MPI_CHECK(err, MPI_Barrier(c->mpi));
fail:
    return st;
}

void comm_abort(comm_t *c, int code) {
    if (c && c->nccl) comm_nccl_close(c, 1);
    comm_world_abort(code);
    exit(code); /* MPI_Abort does not return; keep the contract if it ever does */
}
