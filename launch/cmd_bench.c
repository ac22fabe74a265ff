/* cmd_bench.c — `asymkv bench`: time to first token, decode tokens/s and time per output token,
 * per-rank memory and pipeline bubbles, for a real model (--model) or random weights of a
 * built-in shape (--synthetic), under mpirun as a single process. Prompts are random ids
 * (--batch of them, --prompt-len each), decoding is greedy and runs the full -n tokens (EOS
 * ignored). One warm-up run (2 tokens) precedes the measured one. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "engine.h"
#include "plan.h"
#include "ranks.h"
#include "shapes.h"

/* B prompts of T random ids in [0, vocab), the same on every rank. */
static akv_status bench_prompts(const cli_settings *s, int vocab, int n_new, prompts *p,
                                akv_err *err) {
    const int B = s->batch, T = s->prompt_len;
    memset(p, 0, sizeof *p);
    p->P = B;
    p->max_T = T;
    p->ids = malloc((size_t)B * T * sizeof(int32_t));
    p->len = malloc((size_t)B * sizeof(int));
    p->seqs = calloc((size_t)B, sizeof *p->seqs);
    p->out = malloc((size_t)B * n_new * sizeof(int32_t));
    if (!p->ids || !p->len || !p->seqs || !p->out)
        return akv_fail(err, AKV_ERUNTIME, "out of host memory for %d x %d prompt ids", B, T);
    uint64_t x = (uint64_t)s->seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < (size_t)B * T; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p->ids[i] = (int32_t)(x % (uint64_t)vocab);
    }
    for (int b = 0; b < B; b++) {
        p->len[b] = T;
        p->seqs[b].prompt = p->ids + (size_t)b * T;
        p->seqs[b].T = T;
        p->seqs[b].out = p->out + (size_t)b * n_new;
    }
    return AKV_OK;
}

typedef struct bench_result {
    engine_stats st;
    int ranks, steps;
    double tpot_s, step_bytes, mem_ratio, even_ratio, mem_max, even_max;
    double floor_s; /* slowest rank's bytes per decode step / its measured bandwidth */
    int floor_rank;
} bench_result;

/* Bytes a decode step reads: all weights, and every layer's cache at the mean context of the
 * decode phase (codes and scales; windows at fp16). */
static double rank_step_bytes(const ranks_ctx *r, const cli_settings *s,
                              const engine_rank_info *row) {
    double b = (double)row->weight_bytes;
    const double mean_len = s->prompt_len + s->n_new / 2.0;
    for (int l = row->layer_begin; l < row->layer_end; l++)
        b += (double)kvcfg_token_bytes(&r->kv, l, r->cfg.n_kv_heads, r->cfg.head_dim) * mean_len *
             s->batch;
    return b;
}

/* The whole step's bytes, and the floor: ranks stream their own bytes at once, so a step
 * cannot be faster than the slowest rank's bytes over its measured bandwidth. */
static double step_bytes(const ranks_ctx *r, const cli_settings *s, const engine_rank_info *rows,
                         const engine_timing *tm, int n, double *floor_s, int *floor_rank) {
    double b = 0;
    *floor_s = 0, *floor_rank = 0;
    for (int i = 0; i < n; i++) {
        const double bi = rank_step_bytes(r, s, &rows[i]);
        b += bi;
        const double f = tm[i].bandwidth > 0 ? bi / tm[i].bandwidth : 0;
        if (f > *floor_s) *floor_s = f, *floor_rank = i;
    }
    return b;
}

/* max/min over ranks of the planner's per-rank totals (weights + KV + workspace + extras), for
 * this run's spans and for an even split, and each placement's largest rank. */
static void ratio_of(const plan_result *pr, int n, double *ratio, double *largest) {
    double mx = 0, mn = 1e300;
    for (int i = 0; i < n; i++) {
        const double t = (double)pr->rank[i].total;
        mx = t > mx ? t : mx;
        mn = t < mn ? t : mn;
    }
    *ratio = mn > 0 ? mx / mn : 0;
    *largest = mx;
}

static void memory_ratios(const ranks_ctx *r, const cli_settings *res, const engine_rank_info *rows,
                          int n, bench_result *out) {
    plan_costs pc;
    plan_deploy d = {res->ctx, res->batch,
                     res->prefill_chunk > res->batch ? res->prefill_chunk : res->batch,
                     r->on_device ? 2 : 4};
    int counts[PLAN_MAX_RANKS], even[PLAN_MAX_RANKS];
    size_t cap[PLAN_MAX_RANKS];
    if (n > PLAN_MAX_RANKS || plan_costs_init(&pc, &r->cfg, &r->kv, &d, NULL)) return;
    for (int i = 0; i < n; i++) {
        cap[i] = (size_t)1 << 60;
        counts[i] = rows[i].layer_end - rows[i].layer_begin;
    }
    plan_even_counts(r->cfg.n_layers, n, even);
    plan_input in = {&pc, n, cap, NULL};
    plan_result pr;
    if (!plan_evaluate(&in, counts, &pr, NULL)) ratio_of(&pr, n, &out->mem_ratio, &out->mem_max);
    if (!plan_evaluate(&in, even, &pr, NULL)) ratio_of(&pr, n, &out->even_ratio, &out->even_max);
}

static void print_report(FILE *f, const cli_settings *res, const char *kv_canon,
                         const bench_result *b, const engine_rank_info *rows,
                         const engine_timing *tm) {
    const engine_stats *st = &b->st;
    const int dec_tokens = st->new_tokens - res->batch;
    fprintf(f, "asymkv bench: %s%s, %d rank%s, backend %s, --kv %s, batch %d x (prompt %d + %d "
            "new), micro-batches %d, prefill chunk %d\n", res->shape ? res->shape : res->model,
            res->shape ? " (synthetic)" : "", b->ranks, b->ranks > 1 ? "s" : "", res->backend,
            kv_canon, res->batch, res->prompt_len, res->n_new, res->micro_batches,
            res->prefill_chunk);
    fprintf(f, "  prefill: %d prompt tokens, first token of every sequence after %.3f s (%.1f "
            "prompt tok/s)\n", st->prompt_tokens, st->prefill_s,
            st->prompt_tokens / (st->prefill_s + 1e-12));
    fprintf(f, "  decode:  %d tokens in %.3f s: %.1f tok/s, %.3f ms per step of %d sequences "
            "(TPOT)\n", dec_tokens, st->decode_s, dec_tokens / (st->decode_s + 1e-12),
            1e3 * b->tpot_s, res->batch);
    fprintf(f, "  decode step reads %.3f GB (weights + KV at the mean context): %.1f GB/s "
            "achieved\n", b->step_bytes / 1e9, b->step_bytes / 1e9 / (b->tpot_s + 1e-12));
    fprintf(f, "  floor per step %.3f ms (rank %d: its bytes / its measured copy bandwidth %.1f "
            "GB/s); TPOT = %.2f x the floor\n", 1e3 * b->floor_s, b->floor_rank,
            tm[b->floor_rank].bandwidth / 1e9, b->tpot_s / (b->floor_s + 1e-15));
    fprintf(f, "  %4s %-8s %11s %11s %9s %9s %8s %8s %7s\n", "rank", "layers", "weights",
            "KV cache", "prefill s", "decode s", "comm s", "wall s", "bubble");
    for (int i = 0; i < b->ranks; i++) {
        char layers[32], wb[32], kb[32];
        snprintf(layers, sizeof layers, "%d-%d", rows[i].layer_begin, rows[i].layer_end - 1);
        if (rows[i].layer_end <= rows[i].layer_begin) snprintf(layers, sizeof layers, "-");
        plan_format_bytes(wb, sizeof wb, (size_t)rows[i].weight_bytes);
        plan_format_bytes(kb, sizeof kb, (size_t)rows[i].kv_bytes);
        const double busy = tm[i].busy_prefill_s + tm[i].busy_decode_s;
        fprintf(f, "  %4d %-8s %11s %11s %9.3f %9.3f %8.3f %8.3f %6.1f%%\n", i, layers, wb, kb,
                tm[i].busy_prefill_s, tm[i].busy_decode_s, tm[i].comm_s, tm[i].wall_s,
                100.0 * (1.0 - busy / (tm[i].wall_s + 1e-12)));
    }
    if (b->ranks > 1)
        fprintf(f, "  memory per rank (planned: weights + KV + workspace + extras): largest %.1f "
                "MiB, max/min %.3f; an even split: largest %.1f MiB, max/min %.3f\n",
                b->mem_max / 1048576.0, b->mem_ratio, b->even_max / 1048576.0, b->even_ratio);
}

static akv_status write_json(const char *path, const cli_settings *res, const char *kv_canon,
                             const bench_result *b, const engine_rank_info *rows,
                             const engine_timing *tm, akv_err *err) {
    cJSON *o = cJSON_CreateObject(), *rs = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "model", res->shape ? res->shape : res->model);
    cJSON_AddBoolToObject(o, "synthetic", res->shape != NULL);
    cJSON_AddStringToObject(o, "backend", res->backend);
    cJSON_AddStringToObject(o, "kv", kv_canon);
    cJSON_AddNumberToObject(o, "ranks", b->ranks);
    cJSON_AddNumberToObject(o, "batch", res->batch);
    cJSON_AddNumberToObject(o, "prompt_len", res->prompt_len);
    cJSON_AddNumberToObject(o, "new_tokens", res->n_new);
    cJSON_AddNumberToObject(o, "micro_batches", res->micro_batches);
    cJSON_AddNumberToObject(o, "prefill_chunk", res->prefill_chunk);
    cJSON_AddNumberToObject(o, "ttft_s", b->st.prefill_s);
    cJSON_AddNumberToObject(o, "prefill_tok_s", b->st.prompt_tokens / (b->st.prefill_s + 1e-12));
    cJSON_AddNumberToObject(o, "decode_s", b->st.decode_s);
    cJSON_AddNumberToObject(o, "decode_tok_s",
                            (b->st.new_tokens - res->batch) / (b->st.decode_s + 1e-12));
    cJSON_AddNumberToObject(o, "tpot_s", b->tpot_s);
    cJSON_AddNumberToObject(o, "step_bytes", b->step_bytes);
    cJSON_AddNumberToObject(o, "floor_s", b->floor_s);
    cJSON_AddNumberToObject(o, "tpot_over_floor", b->tpot_s / (b->floor_s + 1e-15));
    cJSON_AddNumberToObject(o, "mem_max_over_min", b->mem_ratio);
    cJSON_AddNumberToObject(o, "even_split_max_over_min", b->even_ratio);
    cJSON_AddNumberToObject(o, "mem_largest_bytes", b->mem_max);
    cJSON_AddNumberToObject(o, "even_split_largest_bytes", b->even_max);
    for (int i = 0; i < b->ranks; i++) {
        cJSON *r = cJSON_CreateObject();
        const double busy = tm[i].busy_prefill_s + tm[i].busy_decode_s;
        cJSON_AddNumberToObject(r, "rank", i);
        cJSON_AddNumberToObject(r, "layer_begin", rows[i].layer_begin);
        cJSON_AddNumberToObject(r, "layer_end", rows[i].layer_end);
        cJSON_AddNumberToObject(r, "weight_bytes", (double)rows[i].weight_bytes);
        cJSON_AddNumberToObject(r, "kv_bytes", (double)rows[i].kv_bytes);
        cJSON_AddNumberToObject(r, "busy_prefill_s", tm[i].busy_prefill_s);
        cJSON_AddNumberToObject(r, "busy_decode_s", tm[i].busy_decode_s);
        cJSON_AddNumberToObject(r, "comm_s", tm[i].comm_s);
        cJSON_AddNumberToObject(r, "wall_s", tm[i].wall_s);
        cJSON_AddNumberToObject(r, "bandwidth_bytes_s", tm[i].bandwidth);
        cJSON_AddNumberToObject(r, "bubble", 1.0 - busy / (tm[i].wall_s + 1e-12));
        cJSON_AddItemToArray(rs, r);
    }
    cJSON_AddItemToObject(o, "per_rank", rs);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = text ? fopen(path, "w") : NULL;
    akv_status st = AKV_OK;
    if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0)
        st = akv_fail(err, AKV_EINPUT, "cannot write %s (check the folder exists and is writable)",
                      path);
    free(text);
    return st;
}

/* The measured run and the report (rank 0). Collective. */
static akv_status bench_run(ranks_ctx *r, const cli_settings *res, engine_t *e, prompts *p,
                            akv_err *err) {
    const int n = engine_ranks(e), root = engine_rank(e) == 0;
    engine_stats warm;
    akv_status st = engine_measure_bandwidth(e, err);
    if (st) return st;
    st = engine_generate_batch(e, p->seqs, p->P, 2, NULL, NULL, &warm, err);
    if (st) return st;
    engine_timing_reset(e);
    bench_result b;
    memset(&b, 0, sizeof b);
    b.ranks = n;
    st = engine_generate_batch(e, p->seqs, p->P, res->n_new, NULL, NULL, &b.st, err);
    engine_rank_info *rows = root ? calloc((size_t)n, sizeof *rows) : NULL;
    engine_timing *tm = root ? calloc((size_t)n, sizeof *tm) : NULL;
    if (!st && root && (!rows || !tm)) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!st) st = engine_placement(e, rows, err);
    if (!st) st = engine_gather_timing(e, tm, err);
    if (!st && root) {
        char kv_canon[1024];
        kvcfg_format(&r->kv, kv_canon, sizeof kv_canon);
        b.steps = res->n_new - 1;
        b.tpot_s = b.st.decode_s / (b.steps > 0 ? b.steps : 1);
        b.step_bytes = step_bytes(r, res, rows, tm, n, &b.floor_s, &b.floor_rank);
        memory_ratios(r, res, rows, n, &b);
        print_report(stdout, res, kv_canon, &b, rows, tm);
        fflush(stdout);
        if (res->json) st = write_json(res->json, res, kv_canon, &b, rows, tm, err);
    }
    free(rows);
    free(tm);
    return st;
}

int cmd_bench(const cli_settings *s) {
    akv_err err = {0};
    ranks_ctx r = {0};
    cli_settings res;
    prompts p = {0};
    engine_t *e = NULL;
    ranks_how how = RANKS_SAME;
    model_config cfg;
    akv_status st = check_common(s, &err);
    if (!st && (s->prompt_len < 1 || s->n_new < 2))
        st = akv_fail(&err, AKV_EINPUT, "--prompt-len must be >= 1 and -n >= 2");
    if (!st) st = s->shape ? shape_lookup(s->shape, &cfg, &err) : config_load(&cfg, s->model, &err);
    if (!st) st = bench_prompts(s, cfg.vocab_size, s->n_new, &p, &err);
    if (!st) {
        how = RANKS_LOCAL;
        st = ranks_open(&r, s, &err);
    }
    if (!st) {
        how = RANKS_AGREED;
        st = open_engine(&r, s, &p, s->n_new, &e, &res, &err);
    }
    if (!st) st = ranks_print_settings(&r, &res, e, &err);
    if (!st) {
        how = RANKS_LOCAL;
        st = bench_run(&r, &res, e, &p, &err);
    }
    engine_close(e);
    prompts_free(&p);
    return ranks_finish(&r, s, st, &err, how);
}
