/* engine.h — runs a model end to end for the commands, as one process or as a pipeline of
 * MPI ranks (design §2): each rank holds a contiguous span of layers (the first also the
 * embedding, the last the final norm + LM head), activations flow rank to rank, the last rank
 * samples and sends the token ids back to rank 0. Prompts are prefilled in chunks that
 * pipeline like decode steps; decode keeps several micro-batches in flight. Results are
 * bitwise identical for any number of ranks, micro-batches or prefill chunk size.
 *
 * Collective calls: with a comm every rank calls engine_open, engine_check, engine_logits,
 * engine_generate[_batch] and engine_placement with the same arguments (prompts need only be
 * present on rank 0). Failures of engine_open and engine_check are agreed: every rank returns
 * the same code and only the failing rank's err carries a message (comm_agree). A failure
 * inside engine_logits / engine_generate is local to the failing rank while its peers wait on
 * it: the caller must end the job (comm_abort). */
#ifndef ASYMKV_ENGINE_H
#define ASYMKV_ENGINE_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "kvconfig.h"
#include "kvdiag.h"
#include "sampling.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct engine engine_t;

typedef struct engine_opts {
    const char *model_dir;
    int ctx;           /* positions per sequence; must be >= 1 */
    int batch;         /* resident sequence slots */
    int prefill_chunk; /* tokens per forward call during prefill */
    int micro_batches; /* decode micro-batches in flight; 0 = one per rank */
    const int *layers; /* [ranks] layers held by each rank, in rank order (a placement: the
                          planner's spans or --layers-per-rank); NULL = even split. A rank
                          may hold no layer (it only forwards activations). */
    comm_t *comm;      /* the pipeline's transport; NULL = one process holds every layer */
    const kv_config *kv; /* per-layer K/V widths; NULL = fp16 */
    int diag;            /* measure K-only vs V-only attention error per layer (kvdiag.h) */
    stage_backend backend; /* STAGE_CPU or STAGE_CUDA (this rank's) */
    int device;            /* CUDA ordinal for STAGE_CUDA */
    const char *synthetic; /* a built-in shape (dist/shapes.h): random weights, no model_dir */
    uint64_t synth_seed;   /* their seed */
    int timing;            /* measure compute vs communication per tick (engine_timing; on a
                              GPU each tick's compute is waited for, so it is measured) */
    int ignore_eos;        /* generate exactly n_new tokens (benchmarks) */
} engine_opts;

/* Loads config.json, validates the checkpoint and loads this rank's span of weights. */
akv_status engine_open(engine_t **out, const engine_opts *o, akv_err *err);
void engine_close(engine_t *e); /* NULL-safe; not collective */

const model_config *engine_config(const engine_t *e);
size_t engine_weight_bytes(const engine_t *e); /* this rank's */
size_t engine_kv_bytes(const engine_t *e);     /* this rank's */
size_t engine_device_bytes(const engine_t *e); /* this rank's CUDA arena (0 on the CPU) */
stage_backend engine_backend(const engine_t *e);
int engine_rank(const engine_t *e);
int engine_ranks(const engine_t *e);
int engine_micro_batches(const engine_t *e);   /* resolved */
int engine_output_rank(const engine_t *e);     /* the rank holding logits (the last) */
/* This rank's layer span [*begin, *end). */
void engine_span(const engine_t *e, int *begin, int *end);

/* With opts.diag: whether later calls add to the measurements (the default is on). */
void engine_diag_measure(engine_t *e, int on);

/* This rank's diag results into rows[n_layers] (global layer index); rows of other ranks'
 * layers are left untouched. Not collective. */
void engine_diag_rows(const engine_t *e, kvdiag_layer *rows);

/* One rank's time since engine_open (opts.timing): compute of prefill items (any run of several
 * tokens or a sequence's first token) and of decode items, time in the tick's exchanges (which
 * includes waiting for the neighbours), and the wall time inside pipeline runs. */
typedef struct engine_timing {
    double busy_prefill_s, busy_decode_s, comm_s, wall_s;
    int64_t ticks, work_ticks;
    double bandwidth; /* bytes/s of this rank's memory (engine_measure_bandwidth), 0 = not yet */
} engine_timing;

/* Measures this rank's memory bandwidth (stage_bandwidth) into its timing row. Not collective. */
akv_status engine_measure_bandwidth(engine_t *e, akv_err *err);

void engine_timing_reset(engine_t *e); /* keeps the bandwidth */

/* Collective: rows[ranks] on rank 0 (may be NULL elsewhere). */
akv_status engine_gather_timing(engine_t *e, engine_timing *rows, akv_err *err);

/* One rank's row of the placement table. */
typedef struct engine_rank_info {
    int32_t layer_begin, layer_end, embed, head;
    int64_t weight_bytes, kv_bytes;
    char host[48];
} engine_rank_info;

/* Collective: rows[ranks] on rank 0 (may be NULL elsewhere). */
akv_status engine_placement(engine_t *e, engine_rank_info *rows, akv_err *err);

/* One sequence of a generate call. */
typedef struct engine_seq {
    const int32_t *prompt; /* [T] ids; needed on rank 0 (and checked wherever present) */
    int T;
    int32_t *out;          /* [n_new] generated ids, filled on rank 0 */
    int n_out;             /* ids written (rank 0; 0 elsewhere) */
    const sampler_params *sp; /* sampling of this sequence, NULL = greedy. Used on the last
                                 rank, which then also needs prompt (repetition penalty); the
                                 RNG is sampler_rng(sp->seed, index of the sequence, step). */
} engine_seq;

/* Collective, agreed: every prompt is non-empty, fits --ctx with n_new tokens more, and its
 * ids are in the vocabulary. Call before engine_logits / engine_generate*. */
akv_status engine_check(engine_t *e, const engine_seq *seqs, int P, int n_new, akv_err *err);

/* logits[T][vocab] for every position of ids (one fresh sequence), on engine_output_rank()
 * only; elsewhere logits may be NULL. */
akv_status engine_logits(engine_t *e, const int32_t *ids, int T, float *logits, akv_err *err);

/* engine_logits where the tokens at positions >= decode_from go through the decode path one
 * at a time (teacher forcing: a quantized cache affects what follows, as in generation);
 * positions before it are prefilled in --prefill-chunk pieces. decode_from <= 0: none. */
akv_status engine_logits_ex(engine_t *e, const int32_t *ids, int T, int decode_from,
                            float *logits, akv_err *err);

typedef struct engine_stats {
    int prompt_tokens, new_tokens;
    double prefill_s; /* until every sequence had its first token */
    double decode_s;  /* the rest */
} engine_stats;

/* Called on rank 0 for each generated token of sequence `seq`; non-zero ends it. */
typedef int (*engine_seq_fn)(void *user, int seq, int32_t token);

/* Greedy generation for P prompts of any lengths: at most n_new tokens each, a sequence
 * stopping after an EOS token (included). More prompts than --batch slots queue for a slot.
 * Outputs and stats on rank 0. */
akv_status engine_generate_batch(engine_t *e, engine_seq *seqs, int P, int n_new,
                                 engine_seq_fn fn, void *user, engine_stats *stats,
                                 akv_err *err);

/* Called for each generated token; return non-zero to stop. */
typedef int (*engine_token_fn)(void *user, int32_t token);

/* One prompt: engine_generate_batch with P = 1. */
akv_status engine_generate(engine_t *e, const int32_t *prompt, int T, int n_new, int32_t *out,
                           int *n_out, engine_token_fn fn, void *user, engine_stats *stats,
                           akv_err *err);

#ifdef __cplusplus
}
#endif
#endif
