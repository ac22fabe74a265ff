/* engine.c — prefill/decode loops over the stage(s) of this process; see engine.h. */
#include "engine.h"

#include <stdlib.h>
#include <time.h>

#include "genconfig.h"
#include "kernels.h"
#include "safetensors.h"
#include "stage.h"

struct engine {
    engine_opts o;
    model_config cfg;
    st_model *st;
    stage_weights w;
    stage_t *stage;
    float *x;      /* [prefill_chunk][hidden] */
    float *logits; /* [prefill_chunk][vocab] */
    int32_t *seq;  /* [prefill_chunk] */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static akv_status check_opts(const engine_opts *o, const model_config *c, akv_err *err) {
    if (o->ctx < 1 || o->batch < 1 || o->prefill_chunk < 1)
        return akv_fail(err, AKV_EINPUT, "--ctx, --batch and --prefill-chunk must be >= 1");
    if (o->ctx > c->max_pos)
        return akv_fail(err, AKV_EINPUT,
                        "--ctx %d exceeds the model's max_position_embeddings %d (lower --ctx)",
                        o->ctx, c->max_pos);
    if (c->sliding_window > 0 && o->ctx > c->sliding_window)
        return akv_fail(err, AKV_EINPUT,
                        "--ctx %d exceeds the model's sliding_window %d, which asymkv does not "
                        "implement (lower --ctx to %d)", o->ctx, c->sliding_window,
                        c->sliding_window);
    return AKV_OK;
}

akv_status engine_open(engine_t **out, const engine_opts *o, akv_err *err) {
    *out = NULL;
    engine_t *e = calloc(1, sizeof *e);
    if (!e) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    e->o = *o;
    akv_status s = config_load(&e->cfg, o->model_dir, err);
    if (!s) s = genconfig_apply(&e->cfg, o->model_dir, err);
    if (!s) s = check_opts(o, &e->cfg, err);
    if (!s) s = st_open_dir(&e->st, o->model_dir, err);
    if (!s) s = weights_check_all(&e->cfg, e->st, err);
    if (!s) s = weights_load(&e->w, &e->cfg, e->st, 0, e->cfg.n_layers, 1, 1, err);
    if (s) goto fail;
    stage_opts so = {o->batch, o->ctx, o->prefill_chunk > o->batch ? o->prefill_chunk : o->batch};
    s = stage_init(&e->stage, &e->cfg, &e->w, &so, err);
    if (s) goto fail;
    size_t T = (size_t)so.max_tokens;
    e->x = malloc(T * (size_t)e->cfg.hidden * sizeof(float));
    e->logits = malloc(T * (size_t)e->cfg.vocab_size * sizeof(float));
    e->seq = calloc(T, sizeof(int32_t));
    if (!e->x || !e->logits || !e->seq) {
        s = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        goto fail;
    }
    *out = e;
    return AKV_OK;
fail:
    engine_close(e);
    return s;
}

void engine_close(engine_t *e) {
    if (!e) return;
    stage_free(e->stage);
    weights_free(&e->w);
    st_close(e->st);
    free(e->x);
    free(e->logits);
    free(e->seq);
    free(e);
}

const model_config *engine_config(const engine_t *e) { return &e->cfg; }
size_t engine_weight_bytes(const engine_t *e) { return e->w.bytes; }
size_t engine_kv_bytes(const engine_t *e) { return kvcache_bytes(stage_kvcache(e->stage)); }

static akv_status check_len(const engine_t *e, int T, int n_new, akv_err *err) {
    if (T < 1) return akv_fail(err, AKV_EINPUT, "the prompt is empty");
    if ((long)T + n_new > e->o.ctx)
        return akv_fail(err, AKV_EINPUT,
                        "prompt of %d tokens + %d new tokens exceeds --ctx %d (raise --ctx, at "
                        "most max_position_embeddings %d)", T, n_new, e->o.ctx, e->cfg.max_pos);
    return AKV_OK;
}

/* Runs tokens [i0, i0+n) of slot 0 through the model; logits of that chunk in e->logits. */
static akv_status run_chunk(engine_t *e, const int32_t *ids, int n, akv_err *err) {
    akv_status s = stage_embed(e->stage, ids, n, e->x, err);
    if (!s) s = stage_forward(e->stage, n, e->seq, e->x, err);
    if (!s) s = stage_head(e->stage, n, e->x, e->logits, err);
    return s;
}

akv_status engine_logits(engine_t *e, const int32_t *ids, int T, float *logits, akv_err *err) {
    akv_status s = check_len(e, T, 0, err);
    if (s) return s;
    stage_seq_reset(e->stage, 0);
    const size_t V = (size_t)e->cfg.vocab_size;
    for (int i0 = 0; i0 < T; i0 += e->o.prefill_chunk) {
        int n = T - i0 < e->o.prefill_chunk ? T - i0 : e->o.prefill_chunk;
        s = run_chunk(e, ids + i0, n, err);
        if (s) return s;
        memcpy(logits + (size_t)i0 * V, e->logits, (size_t)n * V * sizeof(float));
    }
    return AKV_OK;
}

static int is_eos(const model_config *c, int32_t t) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == t) return 1;
    return 0;
}

akv_status engine_generate(engine_t *e, const int32_t *prompt, int T, int n_new, int32_t *out,
                           int *n_out, engine_token_fn fn, void *user, engine_stats *stats,
                           akv_err *err) {
    *n_out = 0;
    akv_status s = check_len(e, T, n_new, err);
    if (s) return s;
    stage_seq_reset(e->stage, 0);
    const size_t V = (size_t)e->cfg.vocab_size;
    double t0 = now_s();
    int32_t next = 0;
    for (int i0 = 0; i0 < T; i0 += e->o.prefill_chunk) {
        int n = T - i0 < e->o.prefill_chunk ? T - i0 : e->o.prefill_chunk;
        s = run_chunk(e, prompt + i0, n, err);
        if (s) return s;
        if (i0 + n == T) next = argmax_ref(e->logits + (size_t)(n - 1) * V, (int)V);
    }
    double t1 = now_s();
    int count = 0;
    while (count < n_new) {
        out[count++] = next;
        if ((fn && fn(user, next)) || is_eos(&e->cfg, next) || count == n_new) break;
        s = run_chunk(e, &next, 1, err);
        if (s) return s;
        next = argmax_ref(e->logits, (int)V);
    }
    *n_out = count;
    if (stats) {
        stats->prompt_tokens = T;
        stats->new_tokens = count;
        stats->prefill_s = t1 - t0;
        stats->decode_s = now_s() - t1;
    }
    return AKV_OK;
}
