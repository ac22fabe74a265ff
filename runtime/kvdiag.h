/* kvdiag.h — the paper's §3 analysis, measured inside the forward pass: for every layer, the
 * error of the attention output when only K is quantized versus only V, at 1, 2 and 4 bits,
 * against the exact (fp16-cache) output on the same inputs. An fp16 shadow cache and, per width,
 * a K-only and a V-only shadow cache are fed the same keys/values as the stage's real cache,
 * so the errors are per layer and do not compound across layers, whatever --kv the run uses. */
#ifndef ASYMKV_KVDIAG_H
#define ASYMKV_KVDIAG_H

#include "kvcache.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVDIAG_WIDTHS 3 /* 1, 2, 4 bits, in that order */

typedef struct kvdiag_layer {
    double ref_sq;                  /* sum of squares of the exact attention outputs */
    double k_sse[KVDIAG_WIDTHS];    /* sum of squared errors, K quantized only */
    double v_sse[KVDIAG_WIDTHS];    /* sum of squared errors, V quantized only */
    long n;                         /* output elements measured */
} kvdiag_layer;

typedef struct kvdiag kvdiag;

/* Shadow caches for the stage's layers (shape as the stage's cache; cfg gives G and R). */
akv_status kvdiag_init(kvdiag **out, const kvcache_shape *shape, akv_err *err);
void kvdiag_free(kvdiag *d); /* NULL-safe */

/* For one run of n tokens of a sequence: when measure is set, attends with every shadow cache
 * and accumulates the errors against the fp16 shadow's output; then appends k/v (fp16-rounded)
 * to every shadow cache. scratch: kvattn_scratch_floats(ctx, head_dim) floats; tmp: 2 * n * n_heads * head_dim. */
akv_status kvdiag_observe(kvdiag *d, int layer, int seq, int n, int n_heads, const float *q,
                          const float *k, const float *v, float scale, int measure,
                          float *scratch, float *tmp, akv_err *err);

void kvdiag_reset(kvdiag *d, int seq);
const kvdiag_layer *kvdiag_result(const kvdiag *d, int layer);

#ifdef __cplusplus
}
#endif
#endif
