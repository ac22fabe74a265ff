/* kvcache.h — the per-stage KV cache: for each local layer and each resident sequence, keys
 * (after RoPE) and values of every position so far. The stage only appends and attends; the
 * storage format behind these calls is the cache's business. Preallocated for ctx x n_seq at
 * init; nothing is allocated afterwards. */
#ifndef ASYMKV_KVCACHE_H
#define ASYMKV_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvcache kvcache;

typedef struct kvcache_shape {
    int n_layers;   /* local layers of this stage */
    int n_seq;      /* sequence slots (--batch) */
    int ctx;        /* positions per slot (--ctx) */
    int n_kv_heads;
    int head_dim;
} kvcache_shape;

akv_status kvcache_init(kvcache **out, const kvcache_shape *shape, akv_err *err);
void kvcache_free(kvcache *kv); /* NULL-safe */

/* Bytes allocated for layer l (local index) and in total. */
size_t kvcache_layer_bytes(const kvcache *kv, int layer);
size_t kvcache_bytes(const kvcache *kv);

/* Tokens stored for a sequence (the same for every layer once a forward pass completes). */
int kvcache_len(const kvcache *kv, int layer, int seq);
/* Forgets a sequence in every layer (its slot can take a new one). */
void kvcache_reset(kvcache *kv, int seq);

/* Appends n tokens' keys/values ([n][n_kv_heads * head_dim]) at positions len .. len+n-1.
 * AKV_EINPUT if that would exceed ctx. */
akv_status kvcache_append(kvcache *kv, int layer, int seq, int n, const float *k,
                          const float *v, akv_err *err);

/* Causal attention of the last n stored positions' queries q ([n][n_heads][head_dim]) over
 * all stored positions; out [n][n_heads][head_dim]. scratch: ctx floats. */
void kvcache_attend(const kvcache *kv, int layer, int seq, int n, int n_heads, const float *q,
                    float *out, float scale, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
