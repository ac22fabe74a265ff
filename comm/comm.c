/* comm.c — MPI start-up and the rank identity; see comm.h. */
#include "comm.h"

#include <mpi.h>

akv_status comm_world_init(comm_world *w, int *argc, char ***argv, akv_err *err) {
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return akv_fail(err, AKV_ERUNTIME, "MPI_Init_thread failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (MPI_Comm_rank(MPI_COMM_WORLD, &w->rank) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, &w->size) != MPI_SUCCESS)
        return akv_fail(err, AKV_ERUNTIME, "MPI_Comm_rank/size failed");
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL,
                            &node) != MPI_SUCCESS)
        return akv_fail(err, AKV_ERUNTIME, "MPI_Comm_split_type failed");
    MPI_Comm_rank(node, &w->local_rank);
    MPI_Comm_size(node, &w->local_size);
    MPI_Comm_free(&node);
    return AKV_OK;
}

void comm_world_finalize(void) {
    int fin = 0, inited = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (inited && !fin) MPI_Finalize();
}

void comm_world_abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
}
