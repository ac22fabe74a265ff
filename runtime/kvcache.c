/* kvcache.c — full-precision (fp32 on the CPU backend) KV cache, one contiguous slab per
 * (layer, sequence) of [ctx][n_kv_heads * head_dim] floats for K and for V. */
#include "kvcache.h"

#include <stdlib.h>

#include "kernels.h"

struct kvcache {
    kvcache_shape shape;
    size_t row;     /* floats per position: n_kv_heads * head_dim */
    float *k, *v;   /* [n_layers][n_seq][ctx][row] */
    int *len;       /* [n_layers][n_seq] */
};

akv_status kvcache_init(kvcache **out, const kvcache_shape *shape, akv_err *err) {
    *out = NULL;
    if (shape->n_layers < 0 || shape->n_seq <= 0 || shape->ctx <= 0)
        return akv_fail(err, AKV_EINPUT, "kv cache needs --batch >= 1 and --ctx >= 1");
    kvcache *kv = calloc(1, sizeof *kv);
    if (!kv) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    kv->shape = *shape;
    kv->row = (size_t)shape->n_kv_heads * shape->head_dim;
    size_t n = (size_t)shape->n_layers * shape->n_seq * shape->ctx * kv->row;
    kv->k = malloc((n ? n : 1) * sizeof(float));
    kv->v = malloc((n ? n : 1) * sizeof(float));
    kv->len = calloc((size_t)shape->n_layers * shape->n_seq + 1, sizeof(int));
    if (!kv->k || !kv->v || !kv->len) {
        kvcache_free(kv);
        return akv_fail(err, AKV_ERUNTIME,
                        "out of host memory for the KV cache (%zu bytes; lower --ctx or --batch)",
                        2 * n * sizeof(float));
    }
    *out = kv;
    return AKV_OK;
}

void kvcache_free(kvcache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv->len);
    free(kv);
}

size_t kvcache_layer_bytes(const kvcache *kv, int layer) {
    (void)layer;
    return 2 * (size_t)kv->shape.n_seq * kv->shape.ctx * kv->row * sizeof(float);
}

size_t kvcache_bytes(const kvcache *kv) {
    return (size_t)kv->shape.n_layers * kvcache_layer_bytes(kv, 0);
}

static size_t slab(const kvcache *kv, int layer, int seq) {
    return ((size_t)layer * kv->shape.n_seq + seq) * kv->shape.ctx * kv->row;
}

int kvcache_len(const kvcache *kv, int layer, int seq) {
    return kv->len[(size_t)layer * kv->shape.n_seq + seq];
}

void kvcache_reset(kvcache *kv, int seq) {
    for (int l = 0; l < kv->shape.n_layers; l++) kv->len[(size_t)l * kv->shape.n_seq + seq] = 0;
}

akv_status kvcache_append(kvcache *kv, int layer, int seq, int n, const float *k,
                          const float *v, akv_err *err) {
    int *len = &kv->len[(size_t)layer * kv->shape.n_seq + seq];
    if (*len + n > kv->shape.ctx)
        return akv_fail(err, AKV_EINPUT,
                        "context full: %d + %d tokens exceed --ctx %d (raise --ctx)", *len, n,
                        kv->shape.ctx);
    size_t off = slab(kv, layer, seq) + (size_t)*len * kv->row;
    memcpy(kv->k + off, k, (size_t)n * kv->row * sizeof(float));
    memcpy(kv->v + off, v, (size_t)n * kv->row * sizeof(float));
    *len += n;
    return AKV_OK;
}

void kvcache_attend(const kvcache *kv, int layer, int seq, int n, int n_heads, const float *q,
                    float *out, float scale, float *scratch) {
    int len = kvcache_len(kv, layer, seq);
    size_t off = slab(kv, layer, seq);
    attention_ref(out, q, kv->k + off, kv->v + off, n, len - n, n_heads, kv->shape.n_kv_heads,
                  kv->shape.head_dim, scale, scratch);
}
