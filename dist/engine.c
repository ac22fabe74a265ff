/* engine.c — opening a rank's part of the model (its layer span, stage and pipeline buffers),
 * the agreed request checks, and logits / generate on top of the pipeline driver
 * (pipeline.c) and the scheduler (schedule.c); see engine.h. */
#include <stdlib.h>
#include <unistd.h>

#include "engine_internal.h"
#include "genconfig.h"
#include "plan.h"
#include "shapes.h"

static akv_status check_opts(const engine_opts *o, const model_config *c, akv_err *err) {
    if (o->ctx < 1 || o->batch < 1 || o->prefill_chunk < 1)
        return akv_fail(err, AKV_EINPUT, "--ctx, --batch and --prefill-chunk must be >= 1");
    if (o->micro_batches < 0)
        return akv_fail(err, AKV_EINPUT, "--micro-batches must be >= 0 (0 = one per rank)");
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

/* Every rank's span from the layer counts (or the even split when layers is NULL). */
static akv_status resolve_spans(engine_t *e, const int *layers, akv_err *err) {
    const int L = e->cfg.n_layers;
    int *counts = malloc((size_t)e->size * sizeof(int));
    e->begin = malloc((size_t)e->size * sizeof(int));
    e->end = malloc((size_t)e->size * sizeof(int));
    if (!counts || !e->begin || !e->end) {
        free(counts);
        return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    }
    if (layers) memcpy(counts, layers, (size_t)e->size * sizeof(int));
    else plan_even_counts(L, e->size, counts);
    int sum = 0, bad = 0;
    for (int r = 0; r < e->size; r++) {
        bad |= counts[r] < 0;
        e->begin[r] = sum;
        sum += counts[r];
        e->end[r] = sum;
    }
    free(counts);
    if (bad || sum != L)
        return akv_fail(err, AKV_EINPUT, "the layers per rank must be >= 0 and sum to the "
                        "model's %d layers (got %d over %d ranks)", L, sum, e->size);
    return AKV_OK;
}

/* Pipeline buffers of this rank (activations in the stage's memory, host copies when the
 * stage is on the device but the transport moves host memory); the sampling tables only on
 * the last rank. */
static akv_status alloc_buffers(engine_t *e, akv_err *err) {
    const size_t T = (size_t)e->max_tokens, H = (size_t)e->cfg.hidden;
    akv_status st = AKV_OK;
    const int host_copy = e->comm && e->size > 1 && stage_get_backend(e->stage) != STAGE_CPU &&
                          comm_get_kind(e->comm) == COMM_MPI;
    for (int i = 0; !st && i < 2; i++) {
        st = stage_act_alloc(e->stage, T * H, &e->x[i], err);
        e->hdr[i] = calloc((size_t)PIPE_HDR_INTS(e->max_tokens), sizeof(int32_t));
        if (host_copy) e->xh[i] = malloc(T * H * sizeof(float));
    }
    if (st) return st;
    e->ids = calloc(T, sizeof(int32_t));
    e->res = calloc((size_t)PIPE_RES_INTS(e->max_tokens), sizeof(int32_t));
    int ok = e->hdr[0] && e->hdr[1] && e->ids && e->res && (!host_copy || (e->xh[0] && e->xh[1]));
    if (ok && e->rank == e->size - 1) {
        e->slot_prompt = calloc((size_t)e->o.batch, sizeof(int));
        e->slot_step = calloc((size_t)e->o.batch, sizeof(int));
        e->srow = calloc(T, sizeof(int32_t));
        e->sslot = calloc(T, sizeof(int32_t));
        e->ssp = calloc(T, sizeof *e->ssp);
        e->srng = calloc(T, sizeof(uint64_t));
        ok = e->slot_prompt && e->slot_step && e->srow && e->sslot && e->ssp && e->srng;
    }
    return ok ? AKV_OK : akv_fail(err, AKV_ERUNTIME, "out of host memory for pipeline buffers");
}

static void read_hooks(engine_t *e) {
    const char *f = getenv("ASYMKV_TEST_FAIL_RANK"), *k = getenv("ASYMKV_TEST_KILL_RANK");
    const char *t = getenv("ASYMKV_TEST_FAIL_TICK");
    e->hook_fail = f && *f ? atoi(f) : -1;
    e->hook_kill = k && *k ? atoi(k) : -1;
    e->hook_tick = t && *t ? atol(t) : 2;
}

/* Everything one rank does to open, before the ranks agree on the outcome. */
/* The cache must have allocated exactly design §4's formula (kvcfg_layer_bytes) per layer. */
static akv_status check_kv_bytes(const engine_t *e, akv_err *err) {
    for (int l = e->w.layer_begin; e->o.kv && l < e->w.layer_end; l++) {
        size_t want = kvcfg_layer_bytes(e->o.kv, l, e->cfg.n_kv_heads, e->cfg.head_dim, e->o.ctx,
                                        e->o.batch);
        size_t got = stage_kv_layer_bytes(e->stage, l - e->w.layer_begin);
        if (got != want)
            return akv_fail(err, AKV_ERUNTIME, "internal: layer %d's KV cache holds %zu bytes, "
                            "the formula says %zu", l, got, want);
    }
    return AKV_OK;
}

static akv_status open_local(engine_t *e, akv_err *err) {
    const engine_opts *o = &e->o;
    akv_status s;
    if (o->synthetic) {
        s = shape_lookup(o->synthetic, &e->cfg, err);
        if (!s) s = check_opts(o, &e->cfg, err);
        if (!s) s = resolve_spans(e, o->layers, err);
    } else {
        s = config_load(&e->cfg, o->model_dir, err);
        if (!s) s = genconfig_apply(&e->cfg, o->model_dir, err);
        if (!s) s = check_opts(o, &e->cfg, err);
        if (!s) s = resolve_spans(e, o->layers, err);
        if (!s) s = st_open_dir(&e->st, o->model_dir, err);
        if (!s) s = weights_check_all(&e->cfg, e->st, err);
    }
    if (s) return s;
    if (o->ignore_eos) e->cfg.n_eos = 0;
    read_hooks(e);
    if (e->hook_fail == e->rank && e->hook_tick < 0)
        return akv_fail(err, AKV_ERUNTIME, "simulated allocation failure in engine_open (test "
                        "hook ASYMKV_TEST_FAIL_RANK=%d)", e->rank);
    const int first = e->rank == 0, last = e->rank == e->size - 1;
    /* the CUDA stage reads a checkpoint's tensors itself (no fp32 copy of the span on the host) */
    const int direct = o->backend == STAGE_CUDA && !o->synthetic;
    if (o->synthetic)
        s = weights_synthetic(&e->w, &e->cfg, e->begin[e->rank], e->end[e->rank], first, last,
                              o->synth_seed, err);
    else if (direct)
        e->w.layer_begin = e->begin[e->rank], e->w.layer_end = e->end[e->rank];
    else
        s = weights_load(&e->w, &e->cfg, e->st, e->begin[e->rank], e->end[e->rank], first, last,
                         err);
    e->max_tokens = o->prefill_chunk > o->batch ? o->prefill_chunk : o->batch;
    stage_opts so = {.n_seq = o->batch, .ctx = o->ctx, .max_tokens = e->max_tokens, .kv = o->kv,
                     .diag = o->diag, .backend = o->backend, .device = o->device,
                     .src = direct ? e->st : NULL, .with_embed = first, .with_head = last};
    if (!s) s = stage_init(&e->stage, &e->cfg, &e->w, &so, err);
    if (s) return s;
    e->has_embed = first;
    e->has_head = last;
    e->weight_bytes = e->w.bytes;
    if (o->backend == STAGE_CUDA) { /* the device holds the weights now (bf16) */
        const int b = e->w.layer_begin, en = e->w.layer_end;
        weights_free(&e->w);
        e->w.layer_begin = b, e->w.layer_end = en;
        e->weight_bytes = stage_weight_bytes(e->stage);
        if (e->comm && comm_get_kind(e->comm) == COMM_NCCL)
            comm_set_stream(e->comm, stage_stream(e->stage));
    }
    s = check_kv_bytes(e, err);
    if (!s) s = alloc_buffers(e, err);
    return s;
}

akv_status engine_open(engine_t **out, const engine_opts *o, akv_err *err) {
    *out = NULL;
    engine_t *e = calloc(1, sizeof *e);
    if (!e) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    e->o = *o;
    e->comm = o->comm;
    e->rank = o->comm ? comm_rank(o->comm) : 0;
    e->size = o->comm ? comm_size(o->comm) : 1;
    e->micro = o->micro_batches > 0 ? o->micro_batches : e->size;
    akv_status s = open_local(e, err);
    e->o.layers = NULL; /* borrowed only during open; e->begin/end hold the spans */
    if (e->comm) s = comm_agree(e->comm, s, err);
    if (s) {
        engine_close(e);
        return s;
    }
    *out = e;
    return AKV_OK;
}

void engine_close(engine_t *e) {
    if (!e) return;
    for (int i = 0; i < 2; i++) {
        if (e->stage) stage_act_free(e->stage, e->x[i]);
        free(e->xh[i]);
        free(e->hdr[i]);
    }
    stage_free(e->stage);
    weights_free(&e->w);
    st_close(e->st);
    free(e->ids);
    free(e->res);
    free(e->srow);
    free(e->sslot);
    free(e->ssp);
    free(e->srng);
    free(e->slot_prompt);
    free(e->slot_step);
    free(e->begin);
    free(e->end);
    free(e);
}

const model_config *engine_config(const engine_t *e) { return &e->cfg; }
size_t engine_weight_bytes(const engine_t *e) { return e->weight_bytes; }
size_t engine_kv_bytes(const engine_t *e) { return stage_kv_bytes(e->stage); }
size_t engine_device_bytes(const engine_t *e) { return stage_device_bytes(e->stage); }
stage_backend engine_backend(const engine_t *e) { return stage_get_backend(e->stage); }
int engine_rank(const engine_t *e) { return e->rank; }
int engine_ranks(const engine_t *e) { return e->size; }
int engine_micro_batches(const engine_t *e) { return e->micro; }
int engine_output_rank(const engine_t *e) { return e->size - 1; }

void engine_diag_measure(engine_t *e, int on) {
    if (e->stage) stage_diag_measure(e->stage, on);
}

void engine_diag_rows(const engine_t *e, kvdiag_layer *rows) {
    const kvdiag *d = e->stage ? stage_diag(e->stage) : NULL;
    for (int l = e->w.layer_begin; d && l < e->w.layer_end; l++)
        rows[l] = *kvdiag_result(d, l - e->w.layer_begin);
}

void engine_timing_reset(engine_t *e) {
    const double bw = e->timing.bandwidth;
    memset(&e->timing, 0, sizeof e->timing);
    e->timing.bandwidth = bw;
}

akv_status engine_measure_bandwidth(engine_t *e, akv_err *err) {
    return stage_bandwidth(e->stage, &e->timing.bandwidth, err);
}

akv_status engine_gather_timing(engine_t *e, engine_timing *rows, akv_err *err) {
    if (!e->comm) {
        rows[0] = e->timing;
        return AKV_OK;
    }
    return comm_gather(e->comm, &e->timing, sizeof e->timing, rows, 0, err);
}

void engine_span(const engine_t *e, int *begin, int *end) {
    *begin = e->begin[e->rank];
    *end = e->end[e->rank];
}

akv_status engine_placement(engine_t *e, engine_rank_info *rows, akv_err *err) {
    engine_rank_info me;
    memset(&me, 0, sizeof me);
    me.layer_begin = e->begin[e->rank];
    me.layer_end = e->end[e->rank];
    me.embed = e->has_embed;
    me.head = e->has_head;
    me.weight_bytes = (int64_t)engine_weight_bytes(e);
    me.kv_bytes = (int64_t)engine_kv_bytes(e);
    if (gethostname(me.host, sizeof me.host - 1)) snprintf(me.host, sizeof me.host, "?");
    if (!e->comm) {
        rows[0] = me;
        return AKV_OK;
    }
    return comm_gather(e->comm, &me, sizeof me, rows, 0, err);
}

/* One prompt: non-empty, within --ctx with n_new more tokens, ids in the vocabulary. */
static akv_status check_seq(const engine_t *e, const engine_seq *q, int i, int P, int n_new,
                            akv_err *err) {
    char which[32] = "";
    if (P > 1) snprintf(which, sizeof which, " %d", i + 1);
    if (q->T < 1) return akv_fail(err, AKV_EINPUT, "prompt%s is empty", which);
    if ((long)q->T + n_new > e->o.ctx)
        return akv_fail(err, AKV_EINPUT,
                        "prompt%s of %d tokens + %d new tokens exceeds --ctx %d (raise --ctx, at "
                        "most max_position_embeddings %d)", which, q->T, n_new, e->o.ctx,
                        e->cfg.max_pos);
    for (int t = 0; q->prompt && t < q->T; t++)
        if (q->prompt[t] < 0 || q->prompt[t] >= e->cfg.vocab_size)
            return akv_fail(err, AKV_EINPUT, "token id %d is outside the vocabulary [0, %d)",
                            q->prompt[t], e->cfg.vocab_size);
    return AKV_OK;
}

akv_status engine_check(engine_t *e, const engine_seq *seqs, int P, int n_new, akv_err *err) {
    akv_status s = P < 1 ? akv_fail(err, AKV_EINPUT, "no prompt given") : AKV_OK;
    if (!s && n_new < 0) s = akv_fail(err, AKV_EINPUT, "the number of new tokens is negative");
    for (int i = 0; !s && i < P; i++) s = check_seq(e, &seqs[i], i, P, n_new, err);
    return e->comm ? comm_agree(e->comm, s, err) : s;
}

akv_status engine_logits(engine_t *e, const int32_t *ids, int T, float *logits, akv_err *err) {
    return engine_logits_ex(e, ids, T, 0, logits, err);
}

akv_status engine_logits_ex(engine_t *e, const int32_t *ids, int T, int decode_from,
                            float *logits, akv_err *err) {
    engine_seq q = {ids, T, NULL, 0, NULL};
    akv_status s = e->rank == 0 ? check_seq(e, &q, 0, 1, 0, err) : AKV_OK;
    if (s) return s;
    sched_t sc;
    sched_opts so = {SCHED_LOGITS, e->o.batch, e->micro, e->o.prefill_chunk, 0, NULL, 0, NULL,
                     NULL, decode_from};
    sched_seq sq = {ids, T, NULL, 0, -1, 0, 0, 0};
    if (e->rank == 0 && (s = sched_init(&sc, &so, &sq, 1, err))) return s;
    e->out_logits = logits;
    e->out_rows = T;
    s = pipe_run(e, e->rank == 0 ? &sc : NULL, err);
    e->out_logits = NULL;
    if (e->rank == 0) sched_free(&sc);
    return s;
}

/* Rank 0's view of a generate call: the caller's callback and the timing. */
typedef struct gen_ctx {
    engine_seq_fn fn;
    void *user;
    const sched_seq *sq;
    int P, started;
    double t_first;
} gen_ctx;

static int on_token(void *user, int seq, int32_t token) {
    gen_ctx *g = user;
    if (g->sq[seq].n_out == 1 && ++g->started == g->P) g->t_first = akv_now_s();
    return g->fn ? g->fn(g->user, seq, token) : 0;
}

/* Rank 0: the scheduler over the prompts, the pipeline, then outputs and stats. */
static akv_status generate_root(engine_t *e, engine_seq *seqs, int P, int n_new, gen_ctx *g,
                                engine_stats *stats, akv_err *err) {
    sched_seq *sq = calloc((size_t)P, sizeof *sq);
    if (!sq) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    for (int i = 0; i < P; i++) {
        sq[i].prompt = seqs[i].prompt;
        sq[i].T = seqs[i].T;
        sq[i].out = seqs[i].out;
    }
    g->sq = sq;
    sched_t sc;
    sched_opts so = {SCHED_GENERATE, e->o.batch, e->micro, e->o.prefill_chunk, n_new,
                     e->cfg.eos_ids, e->cfg.n_eos, on_token, g, 0};
    double t0 = akv_now_s();
    akv_status s = sched_init(&sc, &so, sq, P, err);
    if (!s) s = pipe_run(e, &sc, err);
    double t1 = akv_now_s();
    engine_stats st = {0, 0, (g->started == P ? g->t_first : t1) - t0, 0};
    st.decode_s = t1 - t0 - st.prefill_s;
    for (int i = 0; i < P; i++) {
        seqs[i].n_out = sq[i].n_out;
        st.prompt_tokens += sq[i].T;
        st.new_tokens += sq[i].n_out;
    }
    if (stats) *stats = st;
    sched_free(&sc);
    free(sq);
    return s;
}

/* Last rank: per-sequence histories (prompt + sampled ids) for the samplers that need them. */
static akv_status sampling_begin(engine_t *e, const engine_seq *seqs, int P, int n_new,
                                 akv_err *err) {
    e->gen = seqs;
    e->gen_P = P;
    e->gen_new = n_new;
    if (e->rank != e->size - 1) return AKV_OK;
    for (int i = 0; i < P; i++) /* the stage's histories start from the prompts */
        if (seqs[i].sp && !seqs[i].prompt)
            return akv_fail(err, AKV_ERUNTIME, "sampling needs the prompts on the last rank");
    return AKV_OK;
}

static void sampling_end(engine_t *e) {
    e->gen = NULL;
    e->gen_P = 0;
}

akv_status engine_generate_batch(engine_t *e, engine_seq *seqs, int P, int n_new,
                                 engine_seq_fn fn, void *user, engine_stats *stats,
                                 akv_err *err) {
    for (int i = 0; i < P; i++) seqs[i].n_out = 0;
    if (stats) memset(stats, 0, sizeof *stats);
    akv_status s = AKV_OK;
    for (int i = 0; !s && e->rank == 0 && i < P; i++) s = check_seq(e, &seqs[i], i, P, n_new, err);
    if (!s && n_new < 1) s = akv_fail(err, AKV_EINPUT, "generate needs at least one new token");
    if (s) return s;
    if ((s = sampling_begin(e, seqs, P, n_new, err))) return s;
    if (e->rank != 0) {
        s = pipe_run(e, NULL, err);
    } else {
        gen_ctx g = {fn, user, NULL, P, 0, 0.0};
        s = generate_root(e, seqs, P, n_new, &g, stats, err);
    }
    sampling_end(e);
    return s;
}

/* Adapts the one-prompt callback to the per-sequence one. */
typedef struct one_ctx {
    engine_token_fn fn;
    void *user;
} one_ctx;

static int one_token(void *user, int seq, int32_t token) {
    one_ctx *o = user;
    (void)seq;
    return o->fn ? o->fn(o->user, token) : 0;
}

akv_status engine_generate(engine_t *e, const int32_t *prompt, int T, int n_new, int32_t *out,
                           int *n_out, engine_token_fn fn, void *user, engine_stats *stats,
                           akv_err *err) {
    engine_seq q = {prompt, T, out, 0, NULL};
    one_ctx o = {fn, user};
    akv_status s = engine_generate_batch(e, &q, 1, n_new, one_token, &o, stats, err);
    *n_out = q.n_out;
    return s;
}
