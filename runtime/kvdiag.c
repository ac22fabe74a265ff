/* kvdiag.c — K-only / V-only shadow caches and their error accumulators; see kvdiag.h. */
#include "kvdiag.h"

#include <stdlib.h>

static const int WIDTH[KVDIAG_WIDTHS] = {1, 2, 4};

struct kvdiag {
    kvcache_shape shape;
    kv_config cfg[2][KVDIAG_WIDTHS]; /* [0] K-only, [1] V-only */
    kvcache *kv[2][KVDIAG_WIDTHS];
    kv_config exact_cfg;
    kvcache *exact;                  /* fp16 shadow: the reference output */
    kvdiag_layer *res;               /* [n_layers] */
};

akv_status kvdiag_init(kvdiag **out, const kvcache_shape *shape, akv_err *err) {
    *out = NULL;
    kvdiag *d = calloc(1, sizeof *d);
    if (!d) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    d->shape = *shape;
    d->res = calloc((size_t)shape->n_layers + 1, sizeof *d->res);
    akv_status s = d->res ? AKV_OK : akv_fail(err, AKV_ERUNTIME, "out of host memory");
    int n_global = shape->layer0 + shape->n_layers;
    int G = shape->cfg ? shape->cfg->group : KV_DEFAULT_GROUP;
    int R = shape->cfg ? shape->cfg->residual : KV_DEFAULT_RESIDUAL;
    for (int t = 0; !s && t < 2; t++)
        for (int w = 0; !s && w < KVDIAG_WIDTHS; w++) {
            char spec[64];
            snprintf(spec, sizeof spec, t == 0 ? "k=%dx%d;v=16x%d" : "k=16x%d;v=%dx%d",
                     t == 0 ? WIDTH[w] : n_global, t == 0 ? n_global : WIDTH[w], n_global);
            s = kvcfg_parse(&d->cfg[t][w], spec, n_global, 2, G, R, err);
            kvcache_shape sh = *shape;
            sh.cfg = &d->cfg[t][w];
            if (!s) s = kvcache_init(&d->kv[t][w], &sh, err);
        }
    kvcache_shape sh = *shape;
    sh.cfg = &d->exact_cfg;
    if (!s) s = kvcfg_parse(&d->exact_cfg, "fp16", n_global, 2, G, R, err);
    if (!s) s = kvcache_init(&d->exact, &sh, err);
    if (s) {
        kvdiag_free(d);
        return s;
    }
    *out = d;
    return AKV_OK;
}

void kvdiag_free(kvdiag *d) {
    if (!d) return;
    for (int t = 0; t < 2; t++)
        for (int w = 0; w < KVDIAG_WIDTHS; w++) kvcache_free(d->kv[t][w]);
    kvcache_free(d->exact);
    free(d->res);
    free(d);
}

static double sse(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

akv_status kvdiag_observe(kvdiag *d, int layer, int seq, int n, int n_heads, const float *q,
                          const float *k, const float *v, float scale, int measure,
                          float *scratch, float *tmp, akv_err *err) {
    const size_t m = (size_t)n * n_heads * d->shape.head_dim;
    kvdiag_layer *r = &d->res[layer];
    float *exact_out = tmp + m;
    if (measure) {
        kvcache_attend(d->exact, layer, seq, n, n_heads, q, k, v, exact_out, scale, scratch);
        for (size_t i = 0; i < m; i++) r->ref_sq += (double)exact_out[i] * exact_out[i];
        r->n += (long)m;
    }
    akv_status s0 = kvcache_append(d->exact, layer, seq, n, k, v, err);
    if (s0) return s0;
    for (int t = 0; t < 2; t++)
        for (int w = 0; w < KVDIAG_WIDTHS; w++) {
            if (measure) {
                kvcache_attend(d->kv[t][w], layer, seq, n, n_heads, q, k, v, tmp, scale, scratch);
                double e = sse(tmp, exact_out, m);
                if (t == 0) r->k_sse[w] += e;
                else r->v_sse[w] += e;
            }
            akv_status s = kvcache_append(d->kv[t][w], layer, seq, n, k, v, err);
            if (s) return s;
        }
    return AKV_OK;
}

void kvdiag_reset(kvdiag *d, int seq) {
    for (int t = 0; t < 2; t++)
        for (int w = 0; w < KVDIAG_WIDTHS; w++) kvcache_reset(d->kv[t][w], seq);
    kvcache_reset(d->exact, seq);
}

const kvdiag_layer *kvdiag_result(const kvdiag *d, int layer) { return &d->res[layer]; }
