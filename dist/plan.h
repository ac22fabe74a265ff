/* plan.h — the placement planner of design §5: which contiguous span of decoder layers each
 * pipeline rank holds, chosen exactly (dynamic programming over cut points) to minimize the
 * largest per-rank fraction of memory capacity, then the largest per-tick streamed bytes.
 *
 * Usage: plan_costs_init() turns a model_config + kv_config + deployment into byte counts
 * (nothing is loaded or allocated on a device); plan_solve() places the layers; the result
 * holds plain int spans and a per-rank byte breakdown. Pure functions, no globals, safe to
 * call from any thread; plan_solve mallocs one scratch block and frees it before returning.
 *
 * Memory model (what the table reports; all in bytes):
 *   per layer   weights (params x weight_bytes; 2 = bf16 on the GPU, 4 = fp32 on the CPU
 *               backend; norms and biases counted in the same dtype) + the KV cache of that
 *               layer, kvcfg_layer_bytes(ctx, batch) with its own K/V bit widths
 *   per rank    the activation workspace of one forward call of `tokens` rows: it is reused
 *               layer after layer, so it is counted once per rank, not once per layer
 *   first rank  the embedding matrix
 *   last rank   final norm + LM head + the fp32 logits buffer (tokens x vocab x 4); with tied
 *               embeddings the head *is* the embedding matrix: one copy when a single rank
 *               holds both ends, a second copy on the last rank otherwise
 * Spans are never empty when n_ranks <= n_layers; with more ranks than layers some ranks get
 * no layer (they still forward activations, so they keep their workspace). */
#ifndef ASYMKV_PLAN_H
#define ASYMKV_PLAN_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "kvconfig.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLAN_MAX_RANKS 256

/* How the model is deployed. */
typedef struct plan_deploy {
    int ctx;          /* positions per sequence (--ctx), >= 1 */
    int batch;        /* sequences resident at once, over all micro-batches (--batch), >= 1 */
    int tokens;       /* rows of one forward call: max(prefill chunk, batch), >= 1 */
    int weight_bytes; /* bytes per weight element: 2 (bf16, GPU) or 4 (fp32, CPU backend) */
} plan_deploy;

/* What the planner places, in bytes. Transparent: tests and callers may fill it directly. */
typedef struct plan_costs {
    int n_layers;
    size_t weights[KV_MAX_LAYERS]; /* [n_layers] weights of layer l */
    size_t kv[KV_MAX_LAYERS];      /* [n_layers] KV cache of layer l at ctx x batch */
    size_t workspace;              /* activation scratch, once per rank */
    size_t embed;                  /* embedding matrix, first rank */
    size_t norm;                   /* final norm, last rank */
    size_t lm_head;                /* LM head matrix, last rank (== embed when tied) */
    size_t logits;                 /* logits buffer, last rank */
    int tied;                      /* LM head is the embedding matrix */
} plan_costs;

/* Byte counts of a model deployed as d. kv must describe c's layers. AKV_EINPUT on
 * inconsistent input (layer counts, non-positive sizes). */
akv_status plan_costs_init(plan_costs *pc, const model_config *c, const kv_config *kv,
                           const plan_deploy *d, akv_err *err);

/* Extras of rank r of n (embedding, head, logits), and what it streams per decode tick
 * besides its layers (the LM head and final norm on the last rank). */
size_t plan_extras(const plan_costs *pc, int rank, int n_ranks);
size_t plan_extras_tick(const plan_costs *pc, int rank, int n_ranks);

typedef struct plan_input {
    const plan_costs *costs;
    int n_ranks;            /* 1..PLAN_MAX_RANKS */
    const size_t *capacity; /* [n_ranks] usable device bytes of each rank, > 0 (may differ) */
    const int *layers;      /* [n_ranks] layer counts to use instead of solving, or NULL */
} plan_input;

/* One rank of a placement. total = weights + kv + workspace + extras. */
typedef struct plan_rank {
    size_t weights, kv, workspace, extras, total, capacity;
    size_t tick; /* bytes streamed per decode tick: weights + KV of its layers + head */
} plan_rank;

typedef struct plan_result {
    int n_ranks;
    int begin[PLAN_MAX_RANKS]; /* [n_ranks] rank r holds layers [begin[r], end[r]) */
    int end[PLAN_MAX_RANKS];   /* [n_ranks] end[r] == begin[r + 1]; end[n_ranks-1] == n_layers */
    plan_rank rank[PLAN_MAX_RANKS];
    int worst;       /* rank with the largest total / capacity (lowest such rank on ties) */
    double max_frac; /* rank[worst].total / rank[worst].capacity */
    size_t max_tick; /* largest rank tick */
    int fits;        /* every rank's total <= its capacity */
} plan_result;

/* Places the layers: in->layers when given (validated), else the exact optimum — the spans
 * minimizing max_r total_r / capacity_r, and among those max_r tick_r. *out is filled in
 * either case; when the placement does not fit, the return is AKV_EINPUT with a message
 * naming the worst rank, its bytes needed and its bytes available. */
akv_status plan_solve(const plan_input *in, plan_result *out, akv_err *err);

/* Fills *out for the placement given by counts[n_ranks] (layers per rank, summing to
 * n_layers; each >= 1 unless n_ranks > n_layers). Does not fail when it does not fit. */
akv_status plan_evaluate(const plan_input *in, const int *counts, plan_result *out,
                         akv_err *err);

/* The even split: n_layers / n_ranks each, the first n_layers % n_ranks ranks one more. */
void plan_even_counts(int n_layers, int n_ranks, int *counts);

/* Parses "80G,80G,40G" (or one value for every rank) into bytes[n_ranks]. Units: K, M, G, T
 * and KiB..TiB are binary (G = 2^30, like Slurm's --mem); KB, MB, GB, TB are decimal; no unit
 * is bytes; decimals allowed ("79.5G"). what names the option in messages. */
akv_status plan_parse_sizes(const char *list, int n_ranks, const char *what, size_t *bytes,
                            akv_err *err);

/* Parses "10,12,10" into counts[n_ranks], checking they sum to n_layers. */
akv_status plan_parse_counts(const char *list, int n_ranks, int n_layers, const char *what,
                             int *counts, akv_err *err);

/* "12.34 GiB" (or MiB / KiB / B for smaller values). */
void plan_format_bytes(char *buf, size_t n, size_t bytes);

/* The table: rank, layers, weights, KV, workspace, extras, total, capacity, % of capacity,
 * a mark on ranks that do not fit, then the largest rank in exact bytes. */
void plan_format_table(FILE *f, const plan_result *r);

/* One summary line: "label (20,20,20,20 layers): max 98.1% of capacity (rank 0), max 33.41
 * GiB streamed per tick". */
void plan_format_summary(FILE *f, const char *label, const plan_result *r);

#ifdef __cplusplus
}
#endif
#endif
