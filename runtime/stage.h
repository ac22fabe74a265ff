/* stage.h — one pipeline stage on one device: a contiguous span of decoder layers with its
 * KV cache, plus the embedding (first stage) and final norm + LM head (last stage).
 * A forward call takes a batch of n tokens from one or more resident sequences: the tokens of
 * one sequence are contiguous, in position order, and continue where that sequence's cache
 * ends (a prefill chunk is many tokens of one sequence; a decode step is one token of each of
 * several sequences). The result of each token does not depend on what else is in the batch,
 * so any chunking or micro-batching gives bitwise-identical outputs. Not thread-safe. */
#ifndef ASYMKV_STAGE_H
#define ASYMKV_STAGE_H

#include "config.h"
#include "kvconfig.h"
#include "kvdiag.h"
#include "kvcache.h"
#include "weights.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct stage stage_t;

typedef struct stage_opts {
    int n_seq;      /* resident sequence slots (--batch) */
    int ctx;        /* positions per sequence (--ctx) */
    int max_tokens; /* most tokens one forward call may carry (prefill chunk or batch) */
    const kv_config *kv; /* per-layer K/V widths (global layer indices); NULL = fp16 */
    int diag;            /* keep kvdiag shadow caches (asymkv eval --diag) */
} stage_opts;

/* Borrows c and w (they must outlive the stage). */
akv_status stage_init(stage_t **out, const model_config *c, const stage_weights *w,
                      const stage_opts *o, akv_err *err);
void stage_free(stage_t *s); /* NULL-safe */

/* First stage: x[n][hidden] = embedding of ids (ids must be in [0, vocab)). */
akv_status stage_embed(stage_t *s, const int32_t *ids, int n, float *x, akv_err *err);

/* Runs the span's layers in place on x[n][hidden]; seq[i] is token i's slot. */
akv_status stage_forward(stage_t *s, int n, const int32_t *seq, float *x, akv_err *err);

/* Last stage: logits[n][vocab] = lm_head(final_norm(x)). x is left unchanged. */
akv_status stage_head(stage_t *s, int n, const float *x, float *logits, akv_err *err);

/* Positions stored for a sequence; forgetting a sequence frees its slot. */
int stage_seq_len(const stage_t *s, int seq);
void stage_seq_reset(stage_t *s, int seq);

const kvcache *stage_kvcache(const stage_t *s);

/* With opts.diag: whether later forward calls add to the K-vs-V error measurements (on by
 * default; only decode steps — runs of one token — are measured, the shadow caches are fed
 * either way), and the per-layer results (local layer index). */
void stage_diag_measure(stage_t *s, int on);
const kvdiag *stage_diag(const stage_t *s);

#ifdef __cplusplus
}
#endif
#endif
