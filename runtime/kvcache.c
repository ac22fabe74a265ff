/* kvcache.c — AsymKV cache storage and KIVI flushing; the layout (regions, records, code
 * places, flush plan) is kernels/kvlayout.h's. One allocation per layer holds every sequence's
 * slot. */
#include "kvcache.h"

#include <stdlib.h>

typedef struct layer_cache {
    int k_bits, v_bits;
    kvl_slot slot;  /* one sequence's regions */
    uint8_t *mem;   /* [n_seq][slot.bytes] */
    int *len, *kq, *vq; /* [n_seq] */
} layer_cache;

struct kvcache {
    kvcache_shape shape;
    int group, residual, ctx_r;
    size_t row;     /* n_kv_heads * head_dim */
    layer_cache *layers;
};

static akv_status layer_init(kvcache *kv, layer_cache *L, int k_bits, int v_bits, akv_err *err) {
    L->k_bits = k_bits;
    L->v_bits = v_bits;
    L->slot = kvl_slot_layout(k_bits, v_bits, kv->shape.n_kv_heads, kv->shape.head_dim, kv->group,
                              kv->residual, kv->ctx_r);
    const size_t n_seq = (size_t)kv->shape.n_seq;
    L->mem = malloc(n_seq * L->slot.bytes);
    L->len = calloc(n_seq, sizeof(int));
    L->kq = calloc(n_seq, sizeof(int));
    L->vq = calloc(n_seq, sizeof(int));
    if (!L->mem || !L->len || !L->kq || !L->vq)
        return akv_fail(err, AKV_ERUNTIME,
                        "out of host memory for the KV cache (%zu bytes per layer; lower --ctx "
                        "or --batch, or use a lower-bit --kv)", n_seq * L->slot.bytes);
    return AKV_OK;
}

akv_status kvcache_init(kvcache **out, const kvcache_shape *shape, akv_err *err) {
    *out = NULL;
    if (shape->n_layers < 0 || shape->n_seq <= 0 || shape->ctx <= 0)
        return akv_fail(err, AKV_EINPUT, "kv cache needs --batch >= 1 and --ctx >= 1");
    kvcache *kv = calloc(1, sizeof *kv);
    if (!kv) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    kv->shape = *shape;
    kv->group = shape->cfg ? shape->cfg->group : KV_DEFAULT_GROUP;
    kv->residual = shape->cfg ? shape->cfg->residual : KV_DEFAULT_RESIDUAL;
    kv->ctx_r = (shape->ctx + kv->group - 1) / kv->group * kv->group;
    kv->row = (size_t)shape->n_kv_heads * shape->head_dim;
    kv->layers = calloc((size_t)shape->n_layers + 1, sizeof *kv->layers);
    akv_status s = kv->layers ? AKV_OK : akv_fail(err, AKV_ERUNTIME, "out of host memory");
    for (int l = 0; !s && l < shape->n_layers; l++) {
        int gl = shape->layer0 + l;
        int kb = shape->cfg ? shape->cfg->k_bits[gl] : 16, vb = shape->cfg ? shape->cfg->v_bits[gl] : 16;
        s = layer_init(kv, &kv->layers[l], kb, vb, err);
    }
    if (s) {
        kvcache_free(kv);
        return s;
    }
    *out = kv;
    return AKV_OK;
}

void kvcache_free(kvcache *kv) {
    if (!kv) return;
    for (int l = 0; kv->layers && l < kv->shape.n_layers; l++) {
        free(kv->layers[l].mem);
        free(kv->layers[l].len);
        free(kv->layers[l].kq);
        free(kv->layers[l].vq);
    }
    free(kv->layers);
    free(kv);
}

size_t kvcache_layer_bytes(const kvcache *kv, int layer) {
    return kv->layers[layer].slot.bytes * (size_t)kv->shape.n_seq;
}

size_t kvcache_bytes(const kvcache *kv) {
    size_t total = 0;
    for (int l = 0; l < kv->shape.n_layers; l++) total += kvcache_layer_bytes(kv, l);
    return total;
}

int kvcache_len(const kvcache *kv, int layer, int seq) { return kv->layers[layer].len[seq]; }
int kvcache_k_bits(const kvcache *kv, int layer) { return kv->layers[layer].k_bits; }
int kvcache_v_bits(const kvcache *kv, int layer) { return kv->layers[layer].v_bits; }

void kvcache_reset(kvcache *kv, int seq) {
    for (int l = 0; l < kv->shape.n_layers; l++) {
        layer_cache *L = &kv->layers[l];
        L->len[seq] = L->kq[seq] = L->vq[seq] = 0;
    }
}

void kvcache_view(const kvcache *kv, int layer, int seq, kvq_view *v) {
    const layer_cache *L = &kv->layers[layer];
    uint8_t *base = L->mem + (size_t)seq * L->slot.bytes;
    v->n_kv_heads = kv->shape.n_kv_heads;
    v->head_dim = kv->shape.head_dim;
    v->group = kv->group;
    v->k_bits = L->k_bits;
    v->v_bits = L->v_bits;
    v->len = L->len[seq];
    v->kq = L->kq[seq];
    v->vq = L->vq[seq];
    v->k_cap = L->slot.k_cap;
    v->v_cap = L->slot.v_cap;
    v->k_quant = base + L->slot.k_quant;
    v->v_quant = base + L->slot.v_quant;
    v->k_win = base + L->slot.k_win;
    v->v_win = base + L->slot.v_win;
}

void kvcache_attend(const kvcache *kv, int layer, int seq, int n, int n_heads, const float *q,
                    const float *k_new, const float *v_new, float *out, float scale,
                    float *scratch) {
    kvq_view v;
    kvcache_view(kv, layer, seq, &v);
    kvattn_ref(out, q, n, n_heads, &v, k_new, v_new, scale, scratch);
}

/* Quantizes the R keys of the full window into R/G key blocks starting at block kq/G. */
static void flush_keys(const kvcache *kv, const kvq_view *v, int kq) {
    const int G = kv->group, R = kv->residual, H = v->n_kv_heads, D = v->head_dim;
    float x[128];
    for (int blk = kq / G; blk < (kq + R) / G; blk++)
        for (int g = 0; g < H; g++)
            for (int c = 0; c < D; c++) {
                for (int t = 0; t < G; t++) {
                    const int p = blk * G + t;
                    x[t] = kvq_win_load(v->k_win, v->k_bits,
                                        (size_t)(p % v->k_cap) * kv->row + (size_t)g * D + c);
                }
                kvq_put_key_group((uint8_t *)v->k_quant, v->k_bits, H, D, G, blk, g, c, x);
            }
}

/* Quantizes the value of position p (the oldest in the window) per token. */
static void flush_value(const kvcache *kv, const kvq_view *v, int p) {
    const int G = kv->group, H = v->n_kv_heads, D = v->head_dim;
    float x[128];
    const size_t src = (size_t)(p % v->v_cap) * kv->row;
    for (int g = 0; g < H; g++)
        for (int j = 0; j < D / G; j++) {
            for (int i = 0; i < G; i++)
                x[i] = kvq_win_load(v->v_win, v->v_bits, src + (size_t)g * D + (size_t)j * G + i);
            kvq_put_value_group((uint8_t *)v->v_quant, v->v_bits, H, D, G, p, g, j, x);
        }
}

/* Stores one token's row into window slot `slot` at the window's precision. */
static void store_row(const void *win, int bits, size_t row, int slot, const float *src) {
    if (bits == 32) {
        memcpy((float *)win + (size_t)slot * row, src, row * sizeof(float));
        return;
    }
    uint16_t *dst = (uint16_t *)win + (size_t)slot * row;
    for (size_t i = 0; i < row; i++) dst[i] = akv_f32_to_f16(src[i]);
}

akv_status kvcache_append(kvcache *kv, int layer, int seq, int n, const float *k,
                          const float *v, akv_err *err) {
    layer_cache *L = &kv->layers[layer];
    if (L->len[seq] + n > kv->shape.ctx)
        return akv_fail(err, AKV_EINPUT, "context full: %d + %d tokens exceed --ctx %d (raise "
                        "--ctx)", L->len[seq], n, kv->shape.ctx);
    kvq_view w;
    kvcache_view(kv, layer, seq, &w);
    for (int i = 0; i < n; i++) {
        const kvl_append_op op = kvl_append_plan(L->len[seq], L->kq[seq], L->vq[seq], L->k_bits,
                                                 L->v_bits, kv->residual);
        if (op.v_flush >= 0) flush_value(kv, &w, op.v_flush), L->vq[seq]++;
        store_row(w.k_win, w.k_bits, kv->row, op.pos % w.k_cap, k + (size_t)i * kv->row);
        store_row(w.v_win, w.v_bits, kv->row, op.pos % w.v_cap, v + (size_t)i * kv->row);
        L->len[seq] = op.pos + 1;
        if (op.k_flush >= 0) flush_keys(kv, &w, op.k_flush), L->kq[seq] += kv->residual;
    }
    return AKV_OK;
}
