/* comm.h — the process world: MPI start-up and shutdown, this process's rank, the number of
 * ranks and the node-local rank (for rank -> GPU mapping). The only folder, with launch/,
 * that includes mpi.h. */
#ifndef ASYMKV_COMM_H
#define ASYMKV_COMM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comm_world {
    int rank;       /* in MPI_COMM_WORLD */
    int size;
    int local_rank; /* among the ranks of this node (MPI_Comm_split_type SHARED) */
    int local_size;
} comm_world;

/* MPI_Init_thread (funneled) and the rank identity. Works as a singleton (no launcher). */
akv_status comm_world_init(comm_world *w, int *argc, char ***argv, akv_err *err);

/* MPI_Finalize (when this module initialized MPI). */
void comm_world_finalize(void);

/* Ends every rank of the job now with the given exit code (MPI_Abort). */
void comm_world_abort(int code);

#ifdef __cplusplus
}
#endif
#endif
