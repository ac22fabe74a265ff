/* ranks.h — the rank plumbing of the commands that run a model: the transport bootstrap,
 * the layer placement, rank 0 reading and broadcasting the prompts, the settings and placement
 * table printed once by rank 0, and failure reporting that names the failing rank and ends
 * every rank promptly. Single process: the same calls, no communication. */
#ifndef ASYMKV_RANKS_H
#define ASYMKV_RANKS_H

#include "cli.h"
#include "comm.h"
#include "engine.h"
#include "kvconfig.h"

typedef struct ranks_ctx {
    const comm_world *world;
    comm_device dev;
    int on_device;  /* the model runs on dev.device (a CUDA backend); else on the CPU */
    comm_kind kind;
    comm_t *comm;  /* NULL for a single process */
    int *layers;   /* [size] layers per rank: --layers-per-rank or the planner's spans */
    model_config cfg; /* the model's config.json (after ranks_model) */
    kv_config kv;     /* --kv resolved against cfg (after ranks_model) */
} ranks_ctx;

/* How a failure was seen, which decides who prints it and whether the job must be ended. */
typedef enum ranks_how {
    RANKS_SAME,   /* every rank saw the same error (flags): rank 0 prints, all return */
    RANKS_AGREED, /* through comm_agree: the rank holding the message prints, all return */
    RANKS_LOCAL,  /* this rank alone, peers wait on it: print, then end the job (comm_abort) */
} ranks_how;

/* The prompts of a command, identical on every rank after ranks_read_prompts. */
typedef struct prompts {
    int P, max_T;
    int32_t *ids;     /* every prompt, concatenated */
    int *len;         /* [P] */
    engine_seq *seqs; /* [P] into ids; out [n_new] each */
    int32_t *out;     /* [P][n_new] */
} prompts;

/* Chooses the device and the transport and opens it (collective; a failure is LOCAL). */
akv_status ranks_open(ranks_ctx *r, const cli_settings *s, akv_err *err);

/* Reads config.json and resolves --kv (--kv-hi-bits, --kv-group, --kv-residual) against it
 * into r->cfg / r->kv. Agreed. */
akv_status ranks_model(ranks_ctx *r, const cli_settings *s, akv_err *err);

/* The placement, after ranks_model: --layers-per-rank (counts summing to the model's layers),
 * else with several ranks the planner's optimum (dist/plan.h) for ctx x --batch with the
 * resolved --kv, the CPU backend's fp32 weights and --mem-per-rank capacities (equal
 * capacities when not given, which minimizes the largest rank's bytes). A job that does not
 * fit --mem-per-rank is refused before anything is loaded. Agreed. */
akv_status ranks_layers(ranks_ctx *r, const cli_settings *s, int ctx, akv_err *err);

/* Rank 0 reads --ids / --ids-file / --prompts-file and broadcasts them. Agreed. */
akv_status ranks_read_prompts(ranks_ctx *r, const cli_settings *s, int n_new, prompts *p,
                              akv_err *err);
void prompts_free(prompts *p);

/* comm_agree when there are several ranks; the identity otherwise. */
akv_status ranks_agree(ranks_ctx *r, akv_status mine, akv_err *err);

/* Rank 0 prints the resolved settings, the job line and the placement table (collective;
 * nothing at all with -q). resolved: the settings with defaults resolved. */
akv_status ranks_print_settings(ranks_ctx *r, const cli_settings *resolved, engine_t *e,
                                akv_err *err);

/* Reports st (if any) as `how` says, closes the transport and returns the exit code. A LOCAL
 * failure with several ranks never returns: it ends the whole job with st as exit code. */
int ranks_finish(ranks_ctx *r, const cli_settings *s, akv_status st, const akv_err *err,
                 ranks_how how);

#endif
