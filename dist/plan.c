/* plan.c — the placement planner: byte counts of a deployment, the exact two-phase dynamic
 * program over cut points, evaluation of given spans, list parsing and the table; see plan.h. */
#include "plan.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Fractions bytes / capacity are compared exactly by cross-multiplying in 128 bits, so "tied"
 * means mathematically equal and the planner agrees with any brute force bit for bit. */
__extension__ typedef unsigned __int128 plan_u128;

static int frac_less(size_t a, size_t ca, size_t b, size_t cb) {
    return (plan_u128)a * cb < (plan_u128)b * ca;
}

/* ---- byte counts ---- */

/* Parameters of one decoder layer (norms, projections, biases). */
static size_t layer_params(const model_config *c) {
    size_t H = (size_t)c->hidden, I = (size_t)c->intermediate;
    size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
    size_t p = 2 * H + QD * H + 2 * KD * H + H * QD + 3 * I * H;
    if (c->qkv_bias) p += QD + 2 * KD;
    if (c->o_bias) p += H;
    return p;
}

/* fp32 scratch of one forward call of T rows, mirroring runtime/stage.c: normed input and
 * residual temp (2H), q and attention output (2QD), k and v (2KD), gate and up (2I), the
 * hidden state received and sent (2H), positions (1), and ctx attention scores. On the GPU
 * (bf16 weights) also what runtime/stage_cuda.c's arena holds besides weights and cache: the
 * dense fp16 K/V scratch of one sequence for prefill over a compressed layer, the attention
 * workspace (its bound for one sequence: 2048 parts of head_dim + 2 floats per head), the
 * sampling histories (batch x ctx ids), cuBLASLt's bf16 copy of a GEMM input, the per-call
 * tables and the arena's alignment (tests/emu/test_stage_emu.c checks the arena fits this). */
static size_t workspace_bytes(const model_config *c, const kv_config *kv, const plan_deploy *d) {
    size_t H = (size_t)c->hidden, I = (size_t)c->intermediate;
    size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
    size_t per_row = 4 * H + 2 * QD + 2 * KD + 2 * I + 1;
    size_t b = 4 * ((size_t)d->tokens * per_row + (size_t)d->ctx);
    if (d->weight_bytes != 2) return b;
    int quant = 0;
    for (int l = 0; l < kv->n_layers; l++) quant |= kv->k_bits[l] <= 4 || kv->v_bits[l] <= 4;
    const size_t G = kv->group > 0 ? (size_t)kv->group : 32;
    const size_t ctxp = ((size_t)d->ctx + G - 1) / G * G;
    const size_t widest = I > QD ? (I > H ? I : H) : (QD > H ? QD : H);
    if (quant) b += 2 * ctxp * KD * 2;
    b += (size_t)c->n_heads * 2048 * ((size_t)c->head_dim + 2) * 4;
    b += (size_t)d->batch * d->ctx * 4;
    b += (size_t)d->tokens * widest * 2;
    /* three blocks of per-call tables (ids, positions, one cache descriptor and append plan
     * per layer and sequence), and the arena's 256-byte alignment of its ~20 regions a layer */
    const size_t runs = (size_t)(d->tokens < d->batch ? d->tokens : d->batch);
    b += 3 * ((size_t)d->tokens * 16 + (size_t)c->n_layers * runs * 64 + 16384);
    b += ((size_t)c->n_layers * 20 + 64) * 256;
    return b;
}

akv_status plan_costs_init(plan_costs *pc, const model_config *c, const kv_config *kv,
                           const plan_deploy *d, akv_err *err) {
    memset(pc, 0, sizeof *pc);
    if (c->n_layers < 1 || c->n_layers > KV_MAX_LAYERS || kv->n_layers != c->n_layers)
        return akv_fail(err, AKV_EINPUT, "plan: the KV config has %d layers, the model %d (1..%d)",
                        kv->n_layers, c->n_layers, KV_MAX_LAYERS);
    if (d->ctx < 1 || d->batch < 1 || d->tokens < 1 || d->weight_bytes < 1)
        return akv_fail(err, AKV_EINPUT, "plan: --ctx, --batch, tokens per forward and bytes per "
                        "weight must be >= 1 (got %d, %d, %d, %d)", d->ctx, d->batch, d->tokens,
                        d->weight_bytes);
    size_t wb = (size_t)d->weight_bytes, VH = (size_t)c->vocab_size * c->hidden;
    pc->n_layers = c->n_layers;
    for (int l = 0; l < c->n_layers; l++) {
        pc->weights[l] = layer_params(c) * wb;
        pc->kv[l] = kvcfg_layer_bytes(kv, l, c->n_kv_heads, c->head_dim, d->ctx, d->batch);
    }
    pc->workspace = workspace_bytes(c, kv, d);
    pc->embed = VH * wb;
    pc->norm = (size_t)c->hidden * wb;
    pc->lm_head = VH * wb;
    /* logits: the CPU stage's rows of one call; the GPU stage's head works 256 rows at a time
     * and keeps the sampler's workspace of the same size */
    pc->logits = d->weight_bytes == 2
                     ? 2 * (size_t)(d->tokens < 256 ? d->tokens : 256) * c->vocab_size * sizeof(float)
                     : (size_t)d->tokens * c->vocab_size * sizeof(float);
    pc->tied = c->tie_embeddings;
    return AKV_OK;
}

size_t plan_extras(const plan_costs *pc, int rank, int n_ranks) {
    size_t x = rank == 0 ? pc->embed : 0;
    if (rank == n_ranks - 1) {
        x += pc->norm + pc->logits;
        if (!(pc->tied && n_ranks == 1)) x += pc->lm_head; /* tied on one rank: one matrix */
    }
    return x;
}

size_t plan_extras_tick(const plan_costs *pc, int rank, int n_ranks) {
    /* The embedding reads only the rows of this tick's tokens; the head reads all of itself. */
    return rank == n_ranks - 1 ? pc->norm + pc->lm_head : 0;
}

/* ---- evaluating a placement ---- */

static akv_status check_input(const plan_input *in, akv_err *err) {
    if (!in->costs || in->costs->n_layers < 1 || in->costs->n_layers > KV_MAX_LAYERS)
        return akv_fail(err, AKV_EINPUT, "plan: the model must have 1..%d layers", KV_MAX_LAYERS);
    if (in->n_ranks < 1 || in->n_ranks > PLAN_MAX_RANKS)
        return akv_fail(err, AKV_EINPUT, "plan: %d ranks is outside 1..%d", in->n_ranks,
                        PLAN_MAX_RANKS);
    for (int r = 0; r < in->n_ranks; r++)
        if (!in->capacity || in->capacity[r] == 0)
            return akv_fail(err, AKV_EINPUT, "plan: rank %d has no memory capacity", r);
    return AKV_OK;
}

/* Fewest layers a rank may hold: one, unless there are more ranks than layers. */
static int min_span(int n_layers, int n_ranks) {
    return n_ranks > n_layers ? 0 : 1;
}

static akv_status check_counts(const int *counts, int n_ranks, int n_layers, akv_err *err) {
    int sum = 0, lo = min_span(n_layers, n_ranks);
    for (int r = 0; r < n_ranks; r++) {
        if (counts[r] < lo)
            return akv_fail(err, AKV_EINPUT, "layer count %d of rank %d is below %d (every rank "
                            "needs a layer when there are no more ranks than layers)", counts[r],
                            r, lo);
        sum += counts[r];
    }
    if (sum != n_layers)
        return akv_fail(err, AKV_EINPUT, "the layer counts sum to %d but the model has %d layers",
                        sum, n_layers);
    return AKV_OK;
}

static void fill_rank(const plan_input *in, int r, int b, int e, plan_rank *pr) {
    const plan_costs *pc = in->costs;
    memset(pr, 0, sizeof *pr);
    for (int l = b; l < e; l++) {
        pr->weights += pc->weights[l];
        pr->kv += pc->kv[l];
    }
    pr->workspace = pc->workspace;
    pr->extras = plan_extras(pc, r, in->n_ranks);
    pr->total = pr->weights + pr->kv + pr->workspace + pr->extras;
    pr->capacity = in->capacity[r];
    pr->tick = pr->weights + pr->kv + plan_extras_tick(pc, r, in->n_ranks);
}

akv_status plan_evaluate(const plan_input *in, const int *counts, plan_result *out,
                         akv_err *err) {
    akv_status st = check_input(in, err);
    if (!st) st = check_counts(counts, in->n_ranks, in->costs->n_layers, err);
    if (st) return st;
    memset(out, 0, sizeof *out);
    out->n_ranks = in->n_ranks;
    out->fits = 1;
    for (int r = 0, at = 0; r < in->n_ranks; at += counts[r++]) {
        plan_rank *pr = &out->rank[r];
        out->begin[r] = at;
        out->end[r] = at + counts[r];
        fill_rank(in, r, at, at + counts[r], pr);
        const plan_rank *w = &out->rank[out->worst];
        if (frac_less(w->total, w->capacity, pr->total, pr->capacity)) out->worst = r;
        if (pr->tick > out->max_tick) out->max_tick = pr->tick;
        if (pr->total > pr->capacity) out->fits = 0;
    }
    const plan_rank *w = &out->rank[out->worst];
    out->max_frac = (double)w->total / (double)w->capacity;
    return AKV_OK;
}

void plan_even_counts(int n_layers, int n_ranks, int *counts) {
    for (int r = 0; r < n_ranks; r++) counts[r] = n_layers / n_ranks + (r < n_layers % n_ranks);
}

/* ---- the exact planner ----
 * State (r, j): ranks 0..r-1 hold layers [0, j). Phase 1 computes A = min over placements of
 * max_r mem_r / cap_r, with F(r, j) = min_i max(F(r-1, i), mem(r-1, [i, j)) / cap_{r-1}).
 * Phase 2 minimizes max_r tick_r over the placements whose every rank stays <= A, with the
 * same recursion on ticks. (A single DP on the pair (A, tick) would not be exact: a prefix
 * that is lexicographically best can carry a larger tick that a later rank no longer hides.) */

typedef struct dp {
    const plan_input *in;
    int L, P, lo;
    size_t *pre_mem, *pre_tick; /* [L + 1] prefix sums of per-layer bytes */
    size_t *num, *den;          /* [(P + 1) * (L + 1)] phase-1 value num/den; den 0: unreachable */
    size_t *tick;               /* [(P + 1) * (L + 1)] phase-2 value; SIZE_MAX: unreachable */
    int *choice;                /* [(P + 1) * (L + 1)] phase-2 start of rank r-1's span */
} dp;

#define AT(d, r, j) ((size_t)(r) * (size_t)((d)->L + 1) + (size_t)(j))

static size_t span_mem(const dp *d, int k, int i, int j) {
    const plan_costs *pc = d->in->costs;
    return d->pre_mem[j] - d->pre_mem[i] + pc->workspace + plan_extras(pc, k, d->P);
}

static size_t span_tick(const dp *d, int k, int i, int j) {
    return d->pre_tick[j] - d->pre_tick[i] + plan_extras_tick(d->in->costs, k, d->P);
}

static akv_status dp_init(dp *d, const plan_input *in, akv_err *err) {
    memset(d, 0, sizeof *d);
    d->in = in;
    d->L = in->costs->n_layers;
    d->P = in->n_ranks;
    d->lo = min_span(d->L, d->P);
    size_t cells = (size_t)(d->P + 1) * (size_t)(d->L + 1);
    size_t n = 2 * (size_t)(d->L + 1) + 3 * cells;
    size_t *block = malloc(n * sizeof(size_t) + cells * sizeof(int));
    if (!block) return akv_fail(err, AKV_ERUNTIME, "plan: out of host memory");
    d->pre_mem = block;
    d->pre_tick = d->pre_mem + d->L + 1;
    d->num = d->pre_tick + d->L + 1;
    d->den = d->num + cells;
    d->tick = d->den + cells;
    d->choice = (int *)(d->tick + cells);
    d->pre_mem[0] = d->pre_tick[0] = 0;
    for (int l = 0; l < d->L; l++) {
        size_t b = in->costs->weights[l] + in->costs->kv[l];
        d->pre_mem[l + 1] = d->pre_mem[l] + b;
        d->pre_tick[l + 1] = d->pre_tick[l] + b;
    }
    return AKV_OK;
}

/* Phase 1: fills num/den; the optimum is num/den at (P, L). */
static void dp_minmax_frac(dp *d) {
    for (size_t c = 0; c < AT(d, d->P, d->L) + 1; c++) d->num[c] = d->den[c] = 0;
    d->den[AT(d, 0, 0)] = 1;
    for (int r = 1; r <= d->P; r++) {
        size_t cap = d->in->capacity[r - 1];
        for (int j = r * d->lo; j <= d->L - (d->P - r) * d->lo; j++) {
            size_t bn = 0, bd = 0;
            for (int i = (r - 1) * d->lo; i <= j - d->lo; i++) {
                size_t pn = d->num[AT(d, r - 1, i)], pd = d->den[AT(d, r - 1, i)];
                if (!pd) continue;
                size_t m = span_mem(d, r - 1, i, j), vn = pn, vd = pd;
                if (frac_less(pn, pd, m, cap)) vn = m, vd = cap;
                if (!bd || frac_less(vn, vd, bn, bd)) bn = vn, bd = vd;
            }
            d->num[AT(d, r, j)] = bn;
            d->den[AT(d, r, j)] = bd;
        }
    }
}

/* Phase 2: the smallest max tick among placements with every mem_r / cap_r <= an / ad. */
static void dp_minmax_tick(dp *d, size_t an, size_t ad) {
    for (size_t c = 0; c < AT(d, d->P, d->L) + 1; c++) d->tick[c] = SIZE_MAX, d->choice[c] = -1;
    d->tick[AT(d, 0, 0)] = 0;
    for (int r = 1; r <= d->P; r++) {
        size_t cap = d->in->capacity[r - 1];
        for (int j = r * d->lo; j <= d->L - (d->P - r) * d->lo; j++) {
            size_t best = SIZE_MAX;
            for (int i = (r - 1) * d->lo; i <= j - d->lo; i++) {
                size_t prev = d->tick[AT(d, r - 1, i)];
                if (prev == SIZE_MAX || frac_less(an, ad, span_mem(d, r - 1, i, j), cap)) continue;
                size_t t = span_tick(d, r - 1, i, j);
                if (prev > t) t = prev;
                if (t < best) best = t, d->choice[AT(d, r, j)] = i;
            }
            d->tick[AT(d, r, j)] = best;
        }
    }
}

/* The optimal layer counts per rank. */
static akv_status solve_counts(const plan_input *in, int *counts, akv_err *err) {
    dp d;
    akv_status st = dp_init(&d, in, err);
    if (st) return st;
    dp_minmax_frac(&d);
    dp_minmax_tick(&d, d.num[AT(&d, d.P, d.L)], d.den[AT(&d, d.P, d.L)]);
    for (int r = d.P, j = d.L; r >= 1; r--) {
        int i = d.choice[AT(&d, r, j)];
        counts[r - 1] = j - i;
        j = i;
    }
    free(d.pre_mem);
    return AKV_OK;
}

akv_status plan_solve(const plan_input *in, plan_result *out, akv_err *err) {
    int counts[PLAN_MAX_RANKS];
    akv_status st = check_input(in, err);
    if (!st && in->layers) memcpy(counts, in->layers, (size_t)in->n_ranks * sizeof(int));
    else if (!st) st = solve_counts(in, counts, err);
    if (!st) st = plan_evaluate(in, counts, out, err);
    if (st || out->fits) return st;
    const plan_rank *w = &out->rank[out->worst];
    char need[32], have[32];
    plan_format_bytes(need, sizeof need, w->total);
    plan_format_bytes(have, sizeof have, w->capacity);
    return akv_fail(err, AKV_EINPUT, "the job does not fit: rank %d needs %s (%zu bytes) but has "
                    "%s (%zu bytes) available, %s (add ranks or memory, lower --ctx or --batch, "
                    "or quantize the KV cache with --kv)", out->worst, need, w->total, have,
                    w->capacity, in->layers ? "with the given layer counts"
                                            : "even with the best placement");
}

/* ---- parsing ---- */

/* One size: a number and an optional unit. */
static int parse_size(const char *tok, size_t *out) {
    static const struct { const char *unit; double mult; } UNITS[] = {
        {"", 1}, {"B", 1}, {"K", 0x1p10}, {"KiB", 0x1p10}, {"KB", 1e3}, {"M", 0x1p20},
        {"MiB", 0x1p20}, {"MB", 1e6}, {"G", 0x1p30}, {"GiB", 0x1p30}, {"GB", 1e9},
        {"T", 0x1p40}, {"TiB", 0x1p40}, {"TB", 1e12}};
    char *end;
    double x = strtod(tok, &end);
    if (end == tok || !isfinite(x) || x <= 0 || *tok == '-' || *tok == '+') return -1;
    for (size_t u = 0; u < sizeof UNITS / sizeof UNITS[0]; u++) {
        if (strcasecmp(end, UNITS[u].unit)) continue;
        double b = floor(x * UNITS[u].mult);
        if (b < 1 || b >= 0x1p62) return -1;
        *out = (size_t)b;
        return 0;
    }
    return -1;
}

/* Splits list at commas into toks (pointers into buf); returns the count or -1. */
static int split_list(const char *list, char *buf, size_t n, char **toks, int max) {
    if (!list || strlen(list) >= n) return -1;
    strcpy(buf, list);
    int k = 0;
    for (char *s = buf;; s++) {
        if (k == max) return -1;
        toks[k++] = s;
        s = strchr(s, ',');
        if (!s) return k;
        *s = '\0';
    }
}

akv_status plan_parse_sizes(const char *list, int n_ranks, const char *what, size_t *bytes,
                            akv_err *err) {
    char buf[4096], *toks[PLAN_MAX_RANKS];
    int k = split_list(list, buf, sizeof buf, toks, PLAN_MAX_RANKS);
    if (k != 1 && k != n_ranks)
        return akv_fail(err, AKV_EINPUT, "%s \"%.100s\": give one size for all ranks or one per "
                        "rank (%d)", what, list ? list : "", n_ranks);
    for (int r = 0; r < n_ranks; r++)
        if (parse_size(toks[k == 1 ? 0 : r], &bytes[r]))
            return akv_fail(err, AKV_EINPUT, "%s: \"%.60s\" is not a memory size (use e.g. 80G, "
                            "141GB, 40000M or plain bytes; G = 2^30, GB = 10^9)", what,
                            toks[k == 1 ? 0 : r]);
    return AKV_OK;
}

akv_status plan_parse_counts(const char *list, int n_ranks, int n_layers, const char *what,
                             int *counts, akv_err *err) {
    char buf[4096], *toks[PLAN_MAX_RANKS];
    int k = split_list(list, buf, sizeof buf, toks, PLAN_MAX_RANKS);
    if (k != n_ranks)
        return akv_fail(err, AKV_EINPUT, "%s \"%.100s\": give one layer count per rank (%d)",
                        what, list ? list : "", n_ranks);
    for (int r = 0; r < n_ranks; r++) {
        char *end;
        long v = strtol(toks[r], &end, 10);
        if (end == toks[r] || *end || v < 0 || v > KV_MAX_LAYERS)
            return akv_fail(err, AKV_EINPUT, "%s: \"%.60s\" is not a layer count", what, toks[r]);
        counts[r] = (int)v;
    }
    akv_status st = check_counts(counts, n_ranks, n_layers, err);
    if (st && err) snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                     " (%s \"%.100s\")", what, list);
    return st;
}

/* ---- printing ---- */

void plan_format_bytes(char *buf, size_t n, size_t bytes) {
    static const char *const UNIT[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) v /= 1024.0, u++;
    if (u == 0) snprintf(buf, n, "%zu B", bytes);
    else snprintf(buf, n, "%.2f %s", v, UNIT[u]);
}

static void format_layers(char *buf, size_t n, int b, int e) {
    if (e <= b) snprintf(buf, n, "-");
    else if (e - b == 1) snprintf(buf, n, "%d", b);
    else snprintf(buf, n, "%d-%d", b, e - 1);
}

#define GIB(x) ((double)(x) / 0x1p30)

void plan_format_table(FILE *f, const plan_result *r) {
    fprintf(f, "%4s  %-8s %10s %10s %10s %10s %10s %10s %7s\n", "rank", "layers", "weights",
            "KV", "workspace", "extras", "total", "capacity", "use");
    fprintf(f, "%4s  %-8s %10s %10s %10s %10s %10s %10s %7s\n", "", "", "GiB", "GiB", "GiB",
            "GiB", "GiB", "GiB", "%");
    for (int k = 0; k < r->n_ranks; k++) {
        const plan_rank *p = &r->rank[k];
        char layers[32];
        format_layers(layers, sizeof layers, r->begin[k], r->end[k]);
        fprintf(f, "%4d  %-8s %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %6.1f%%%s\n", k, layers,
                GIB(p->weights), GIB(p->kv), GIB(p->workspace), GIB(p->extras), GIB(p->total),
                GIB(p->capacity), 100.0 * (double)p->total / (double)p->capacity,
                p->total > p->capacity ? "  << does not fit" : "");
    }
    const plan_rank *w = &r->rank[r->worst];
    fprintf(f, "largest: rank %d, %zu of %zu bytes (%.2f%%)%s\n", r->worst, w->total, w->capacity,
            100.0 * r->max_frac, r->fits ? "" : ": does not fit");
}

void plan_format_summary(FILE *f, const char *label, const plan_result *r) {
    char counts[1024], tick[32];
    size_t off = 0;
    counts[0] = '\0';
    for (int k = 0; k < r->n_ranks && off < sizeof counts; k++)
        off += (size_t)snprintf(counts + off, sizeof counts - off, "%s%d", k ? "," : "",
                                r->end[k] - r->begin[k]);
    plan_format_bytes(tick, sizeof tick, r->max_tick);
    fprintf(f, "%-22s (%s layers): max %.1f%% of capacity (rank %d), max %s streamed per tick%s\n",
            label, counts, 100.0 * r->max_frac, r->worst, tick, r->fits ? "" : ", does not fit");
}
