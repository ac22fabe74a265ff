/* comm.c — the process world: MPI start-up, the rank identity, which launcher started us, and
 * the rank -> GPU mapping by node-local rank; see comm.h. */
#include "comm.h"

#include <stdlib.h>
#include <string.h>

#include "comm_check.h"
#ifdef ASYMKV_HAVE_CUDA
#include <cuda_runtime.h>
#endif

/* Read before MPI_Init: mpirun exports OMPI_COMM_WORLD_*; srun exports SLURM_STEP_ID. */
static void detect_launcher(comm_world *w) {
    const char *job = getenv("SLURM_JOB_ID");
    const char *who = getenv("OMPI_COMM_WORLD_SIZE") ? "mpirun"
                      : getenv("SLURM_STEP_ID") && getenv("PMIX_RANK") ? "srun"
                      : getenv("PMIX_RANK") ? "pmix"
                      : "singleton";
    if (job && strcmp(who, "singleton"))
        snprintf(w->launcher, sizeof w->launcher, "%s (Slurm job %s)", who, job);
    else
        snprintf(w->launcher, sizeof w->launcher, "%s", who);
}

/* srun without a PMI that Open MPI understands starts N singletons that each think they are
 * alone: N copies of the job. Say so instead of running them. */
static akv_status check_srun_mpi(const comm_world *w, akv_err *err) {
    const char *n = getenv("SLURM_STEP_NUM_TASKS");
    if (w->size == 1 && n && atoi(n) > 1 && getenv("SLURM_STEP_ID") && !getenv("PMIX_RANK"))
        return akv_fail(err, AKV_EINPUT,
                        "srun started %s tasks but MPI sees a single rank: launch with "
                        "srun --mpi=pmix (or mpirun inside the allocation)", n);
    return AKV_OK;
}

akv_status comm_world_init(comm_world *w, int *argc, char ***argv, akv_err *err) {
    akv_status st = AKV_OK;
    int provided = 0, inited = 0;
    MPI_Comm node = MPI_COMM_NULL;
    memset(w, 0, sizeof *w);
    detect_launcher(w);
    MPI_CHECK(err, MPI_Initialized(&inited));
    if (!inited) MPI_CHECK(err, MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    MPI_CHECK(err, MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(err, MPI_Comm_rank(MPI_COMM_WORLD, &w->rank));
    MPI_CHECK(err, MPI_Comm_size(MPI_COMM_WORLD, &w->size));
    MPI_CHECK(err, MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank,
                                       MPI_INFO_NULL, &node));
    MPI_CHECK(err, MPI_Comm_rank(node, &w->local_rank));
    MPI_CHECK(err, MPI_Comm_size(node, &w->local_size));
    st = check_srun_mpi(w, err);
fail:
    if (node != MPI_COMM_NULL) (void)MPI_Comm_free(&node); /* cleanup: st already says it */
    return st;
}

int comm_env_rank(void) {
    const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v);
    }
    return -1;
}

/* Teardown: the exit code is decided already and nobody is left to tell of a failure, so the
 * results are deliberately ignored. */
void comm_world_finalize(void) {
    int fin = 0, inited = 0;
    (void)MPI_Initialized(&inited);
    (void)MPI_Finalized(&fin);
    if (inited && !fin) (void)MPI_Finalize();
}

void comm_world_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
}

#ifdef ASYMKV_HAVE_CUDA
/* Picks local_rank % visible and reads its UUID; no device is not an error. */
static void pick_device(const comm_world *w, comm_device *d, unsigned char uuid[16]) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) { /* count is untouched on error */
        cudaGetLastError();
        return;
    }
    struct cudaDeviceProp p;
    d->n_visible = n;
    d->device = w->local_rank % n;
    if (cudaGetDeviceProperties(&p, d->device) == cudaSuccess) memcpy(uuid, p.uuid.bytes, 16);
    else d->device = -1;
}
#endif

akv_status comm_world_device(const comm_world *w, int bind, comm_device *d, akv_err *err) {
    akv_status st = AKV_OK;
    unsigned char uuid[16] = {0}, *all = NULL;
    MPI_Comm node = MPI_COMM_NULL;
    d->device = -1;
    d->n_visible = 0;
    d->shared = 0;
#ifdef ASYMKV_HAVE_CUDA
    pick_device(w, d, uuid);
    if (bind && d->device >= 0 && cudaSetDevice(d->device) != cudaSuccess) {
        st = akv_fail(err, AKV_ERUNTIME, "cudaSetDevice(%d) failed on local rank %d",
                      d->device, w->local_rank);
        goto fail;
    }
#endif
    /* Same physical GPU seen under different ordinals (CUDA_VISIBLE_DEVICES per task) is
     * still shared; compare UUIDs among the node's ranks. */
    if (!(all = calloc((size_t)w->local_size, 16))) {
        st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        goto fail;
    }
    MPI_CHECK(err, MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank,
                                       MPI_INFO_NULL, &node));
    MPI_CHECK(err, MPI_Allgather(uuid, 16, MPI_BYTE, all, 16, MPI_BYTE, node));
    for (int r = 0; d->device >= 0 && r < w->local_size; r++)
        if (r != w->local_rank && !memcmp(all + 16 * r, uuid, 16)) d->shared = 1;
fail:
    if (node != MPI_COMM_NULL) (void)MPI_Comm_free(&node); /* cleanup: st already says it */
    free(all);
    return st;
}
