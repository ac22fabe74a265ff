/* kvcache.h — the per-stage KV cache of AsymKV (design §4): for each local layer and each
 * resident sequence, keys (after RoPE) and values, each at its layer's width from the kv_config
 * (16 = fp16; 4/2/1 = KIVI groups: keys per channel over G tokens, values per token over G
 * channels) with an fp16 residual window of R tokens. Everything is allocated at init for
 * ctx x n_seq (ctx rounded up to G); appends never allocate. kvcache_layer_bytes() equals
 * kvcfg_layer_bytes() — the design's formula.
 *
 * Flushing (KIVI's rules, applied token by token as tokens are committed): a key enters the
 * window; when the window holds R keys they are quantized as R/G blocks and the window empties.
 * A value enters the window; when the window already holds R values the oldest is quantized
 * first. A forward call first attends (over the cache plus its own tokens, which are exact),
 * then commits its tokens, so one-shot prefill is exact and quantization affects later steps. */
#ifndef ASYMKV_KVCACHE_H
#define ASYMKV_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "kvconfig.h"
#include "kvquant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvcache kvcache;

typedef struct kvcache_shape {
    int n_layers;         /* local layers of this stage */
    int layer0;           /* global index of local layer 0 (selects widths in cfg) */
    int n_seq;            /* sequence slots (--batch) */
    int ctx;              /* positions per slot (--ctx) */
    int n_kv_heads;
    int head_dim;
    const kv_config *cfg; /* NULL = fp16 everywhere (G 32, R 128) */
} kvcache_shape;

akv_status kvcache_init(kvcache **out, const kvcache_shape *shape, akv_err *err);
void kvcache_free(kvcache *kv); /* NULL-safe */

/* Bytes allocated for local layer l and in total. */
size_t kvcache_layer_bytes(const kvcache *kv, int layer);
size_t kvcache_bytes(const kvcache *kv);

/* Positions stored for a sequence in local layer l. */
int kvcache_len(const kvcache *kv, int layer, int seq);
/* Forgets a sequence in every layer (its slot can take a new one). */
void kvcache_reset(kvcache *kv, int seq);

/* Attention of n new tokens (queries q [n][n_heads][head_dim], keys/values k_new/v_new
 * [n][n_kv_heads * head_dim], fp16-rounded by the caller) over the stored positions and the
 * new tokens, causally. out: [n][n_heads][head_dim]; scratch: kvattn_scratch_floats(ctx,
 * head_dim) floats. */
void kvcache_attend(const kvcache *kv, int layer, int seq, int n, int n_heads, const float *q,
                    const float *k_new, const float *v_new, float *out, float scale,
                    float *scratch);

/* Commits n tokens' keys/values (as passed to kvcache_attend) at positions len .. len+n-1,
 * applying the flushing rules. AKV_EINPUT if that would exceed ctx. */
akv_status kvcache_append(kvcache *kv, int layer, int seq, int n, const float *k,
                          const float *v, akv_err *err);

/* The stored state of (layer, seq) as the attention kernels see it. */
void kvcache_view(const kvcache *kv, int layer, int seq, kvq_view *view);

/* Widths of local layer l. */
int kvcache_k_bits(const kvcache *kv, int layer);
int kvcache_v_bits(const kvcache *kv, int layer);

#ifdef __cplusplus
}
#endif
#endif
