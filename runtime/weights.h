/* weights.h — the weights of one pipeline stage (a contiguous layer span plus, on the first
 * stage, the embedding and, on the last, final norm + LM head), converted to fp32 for the
 * CPU backend. Only the tensors of the span are read from the mmap'd checkpoint. */
#ifndef ASYMKV_WEIGHTS_H
#define ASYMKV_WEIGHTS_H

#include "config.h"
#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct layer_weights {
    float *attn_norm; /* [hidden] */
    float *wq;        /* [n_heads * head_dim][hidden] */
    float *wk;        /* [n_kv_heads * head_dim][hidden] */
    float *wv;        /* [n_kv_heads * head_dim][hidden] */
    float *wo;        /* [hidden][n_heads * head_dim] */
    float *bq;        /* [n_heads * head_dim] or NULL */
    float *bk;        /* [n_kv_heads * head_dim] or NULL */
    float *bv;        /* [n_kv_heads * head_dim] or NULL */
    float *bo;        /* [hidden] or NULL */
    float *mlp_norm;  /* [hidden] */
    float *w_gate;    /* [intermediate][hidden] */
    float *w_up;      /* [intermediate][hidden] */
    float *w_down;    /* [hidden][intermediate] */
} layer_weights;

typedef struct stage_weights {
    int layer_begin, layer_end; /* global layer indices [begin, end) */
    float *embed;               /* [vocab][hidden], first stage (and last when tied), else NULL */
    float *final_norm;          /* [hidden], last stage only */
    float *lm_head;             /* [vocab][hidden], last stage; == embed when tied */
    layer_weights *layers;      /* [layer_end - layer_begin] */
    size_t bytes;               /* fp32 bytes held */
} stage_weights;

/* Loads layers [l0, l1) and the extras. Every required tensor must exist with the shape
 * config.json implies; a missing or mis-shaped tensor is AKV_EINPUT naming it. */
akv_status weights_load(stage_weights *w, const model_config *c, const st_model *st, int l0,
                        int l1, int with_embed, int with_head, akv_err *err);

/* Random weights of layers [l0, l1) and the extras, for `asymkv bench --synthetic` (no
 * checkpoint): matrices uniform in +-sqrt(3 / fan_in) / 2, norms 1, biases +-0.02, each tensor
 * from its own stream of (seed, its checkpoint name), so every rank placement builds the same
 * model. */
akv_status weights_synthetic(stage_weights *w, const model_config *c, int l0, int l1,
                             int with_embed, int with_head, uint64_t seed, akv_err *err);

/* Checks that every tensor of the model exists with the right shape, without reading data. */
akv_status weights_check_all(const model_config *c, const st_model *st, akv_err *err);

void weights_free(stage_weights *w); /* NULL-safe, also on a half-loaded struct */

#ifdef __cplusplus
}
#endif
#endif
