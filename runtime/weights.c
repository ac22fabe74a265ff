/* weights.c — reads a stage's tensors from a safetensors checkpoint into fp32 arrays,
 * checking names and shapes against config.json. */
#include "weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Finds name, checks its shape is [d0] (d1 == 0) or [d0][d1], converts it to fp32. */
static akv_status load_tensor(float **dst, const st_model *st, const char *name, int64_t d0,
                              int64_t d1, size_t *bytes, akv_err *err) {
    const st_tensor *t = st_find(st, name);
    if (!t)
        return akv_fail(err, AKV_EINPUT,
                        "checkpoint is missing tensor %s (is the folder complete and does "
                        "config.json match it?)", name);
    int want_nd = d1 ? 2 : 1;
    if (t->ndim != want_nd || t->shape[0] != d0 || (d1 && t->shape[1] != d1))
        return akv_fail(err, AKV_EINPUT,
                        "tensor %s has shape [%lld%s%lld] but config.json implies [%lld%s%lld]",
                        name, (long long)t->shape[0], t->ndim > 1 ? "," : "",
                        t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)d0,
                        d1 ? "," : "", d1 ? (long long)d1 : 0LL);
    if (!dst) return AKV_OK; /* shape check only */
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    *dst = malloc(n * sizeof(float));
    if (!*dst) return akv_fail(err, AKV_ERUNTIME, "out of host memory loading %s", name);
    *bytes += n * sizeof(float);
    return st_read_f32(t, *dst, n, err);
}

/* weights_synthetic's source: when set, tensors are drawn instead of read. */
typedef struct synth_src {
    uint64_t seed;
} synth_src;

static uint64_t mix64(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static akv_status synth_tensor(float **dst, const synth_src *src, const char *name, int64_t d0,
                               int64_t d1, size_t *bytes, akv_err *err) {
    const size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    *dst = malloc(n * sizeof(float));
    if (!*dst) return akv_fail(err, AKV_ERUNTIME, "out of host memory making %s", name);
    *bytes += n * sizeof(float);
    uint64_t state = src->seed;
    for (const char *p = name; *p; p++) state = (state ^ (uint8_t)*p) * 0x100000001B3ull;
    const int norm = strstr(name, "norm") != NULL, bias = strstr(name, "bias") != NULL;
    const float amp = bias ? 0.02f : d1 ? 0.5f * sqrtf(3.0f / (float)d1) : 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (norm) {
            (*dst)[i] = 1.0f;
            continue;
        }
        const uint64_t r = mix64(&state);
        (*dst)[i] = amp * (2.0f * (float)(r >> 40) * (1.0f / 16777216.0f) - 1.0f);
    }
    return AKV_OK;
}

/* Loads (or, with load == 0, only checks) one decoder layer; with synth, draws it instead. */
static akv_status layer_io(layer_weights *L, int load, const model_config *c,
                           const st_model *st, const synth_src *synth, int layer,
                           size_t *bytes, akv_err *err) {
    const int64_t H = c->hidden, I = c->intermediate;
    const int64_t QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim;
    struct {
        const char *suffix;
        float **dst;
        int64_t d0, d1;
        int present;
    } t[] = {
        {"input_layernorm.weight", &L->attn_norm, H, 0, 1},
        {"self_attn.q_proj.weight", &L->wq, QD, H, 1},
        {"self_attn.k_proj.weight", &L->wk, KD, H, 1},
        {"self_attn.v_proj.weight", &L->wv, KD, H, 1},
        {"self_attn.o_proj.weight", &L->wo, H, QD, 1},
        {"self_attn.q_proj.bias", &L->bq, QD, 0, c->qkv_bias},
        {"self_attn.k_proj.bias", &L->bk, KD, 0, c->qkv_bias},
        {"self_attn.v_proj.bias", &L->bv, KD, 0, c->qkv_bias},
        {"self_attn.o_proj.bias", &L->bo, H, 0, c->o_bias},
        {"post_attention_layernorm.weight", &L->mlp_norm, H, 0, 1},
        {"mlp.gate_proj.weight", &L->w_gate, I, H, 1},
        {"mlp.up_proj.weight", &L->w_up, I, H, 1},
        {"mlp.down_proj.weight", &L->w_down, H, I, 1},
    };
    char name[256];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (!t[i].present) continue;
        snprintf(name, sizeof name, "model.layers.%d.%s", layer, t[i].suffix);
        akv_status s = synth ? synth_tensor(t[i].dst, synth, name, t[i].d0, t[i].d1, bytes, err)
                             : load_tensor(load ? t[i].dst : NULL, st, name, t[i].d0, t[i].d1,
                                           bytes, err);
        if (s) return s;
    }
    return AKV_OK;
}

akv_status weights_load(stage_weights *w, const model_config *c, const st_model *st, int l0,
                        int l1, int with_embed, int with_head, akv_err *err) {
    memset(w, 0, sizeof *w);
    w->layer_begin = l0;
    w->layer_end = l1;
    akv_status s = AKV_OK;
    if (l0 < 0 || l1 > c->n_layers || l0 > l1)
        return akv_fail(err, AKV_EINPUT, "layer span [%d,%d) outside the model's %d layers", l0,
                        l1, c->n_layers);
    w->layers = calloc((size_t)(l1 - l0) + 1, sizeof *w->layers);
    if (!w->layers) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    int need_embed = with_embed || (with_head && c->tie_embeddings);
    if (need_embed) {
        s = load_tensor(&w->embed, st, "model.embed_tokens.weight", c->vocab_size, c->hidden,
                        &w->bytes, err);
        if (s) goto fail;
    }
    for (int l = l0; l < l1; l++) {
        s = layer_io(&w->layers[l - l0], 1, c, st, NULL, l, &w->bytes, err);
        if (s) goto fail;
    }
    if (with_head) {
        s = load_tensor(&w->final_norm, st, "model.norm.weight", c->hidden, 0, &w->bytes, err);
        if (s) goto fail;
        if (c->tie_embeddings) {
            w->lm_head = w->embed;
        } else {
            s = load_tensor(&w->lm_head, st, "lm_head.weight", c->vocab_size, c->hidden,
                            &w->bytes, err);
            if (s) goto fail;
        }
    }
    return AKV_OK;
fail:
    weights_free(w);
    return s;
}

akv_status weights_synthetic(stage_weights *w, const model_config *c, int l0, int l1,
                             int with_embed, int with_head, uint64_t seed, akv_err *err) {
    memset(w, 0, sizeof *w);
    w->layer_begin = l0;
    w->layer_end = l1;
    if (l0 < 0 || l1 > c->n_layers || l0 > l1)
        return akv_fail(err, AKV_EINPUT, "layer span [%d,%d) outside the model's %d layers", l0,
                        l1, c->n_layers);
    const synth_src src = {seed};
    akv_status s = AKV_OK;
    w->layers = calloc((size_t)(l1 - l0) + 1, sizeof *w->layers);
    if (!w->layers) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (with_embed || (with_head && c->tie_embeddings))
        s = synth_tensor(&w->embed, &src, "model.embed_tokens.weight", c->vocab_size, c->hidden,
                         &w->bytes, err);
    for (int l = l0; !s && l < l1; l++)
        s = layer_io(&w->layers[l - l0], 1, c, NULL, &src, l, &w->bytes, err);
    if (!s && with_head) {
        s = synth_tensor(&w->final_norm, &src, "model.norm.weight", c->hidden, 0, &w->bytes, err);
        if (!s && c->tie_embeddings) w->lm_head = w->embed;
        else if (!s)
            s = synth_tensor(&w->lm_head, &src, "lm_head.weight", c->vocab_size, c->hidden,
                             &w->bytes, err);
    }
    if (s) weights_free(w);
    return s;
}

akv_status weights_check_all(const model_config *c, const st_model *st, akv_err *err) {
    size_t bytes = 0;
    akv_status s = load_tensor(NULL, st, "model.embed_tokens.weight", c->vocab_size, c->hidden,
                               &bytes, err);
    if (s) return s;
    layer_weights dummy;
    for (int l = 0; l < c->n_layers; l++) {
        s = layer_io(&dummy, 0, c, st, NULL, l, &bytes, err);
        if (s) return s;
    }
    s = load_tensor(NULL, st, "model.norm.weight", c->hidden, 0, &bytes, err);
    if (s || c->tie_embeddings) return s;
    return load_tensor(NULL, st, "lm_head.weight", c->vocab_size, c->hidden, &bytes, err);
}

void weights_free(stage_weights *w) {
    if (!w) return;
    if (w->layers) {
        for (int l = 0; l < w->layer_end - w->layer_begin; l++) {
            layer_weights *L = &w->layers[l];
            float *p[] = {L->attn_norm, L->wq, L->wk, L->wv, L->wo, L->bq, L->bk,
                          L->bv, L->bo, L->mlp_norm, L->w_gate, L->w_up, L->w_down};
            for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
        }
        free(w->layers);
    }
    if (w->lm_head != w->embed) free(w->lm_head);
    free(w->embed);
    free(w->final_norm);
    memset(w, 0, sizeof *w);
}
