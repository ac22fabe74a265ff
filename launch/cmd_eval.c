/* cmd_eval.c — `asymkv eval`: teacher-forced perplexity under any --kv (the first --prefix
 * tokens of each window prefilled, every later token through the decode path), the paper's
 * per-layer K-vs-V attention-error diagnostic (--diag), the width search (--search-kv) and
 * passkey retrieval (--passkey, eval_passkey.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "eval.h"
#include "io.h"
#include "kvsearch.h"
#include "tokenizer.h"

/* Every rank reads the scored text itself (--ids-file, or --text-file tokenized with the
 * model's tokenizer.json, BOS as the tokenizer adds it). Agreed. */
static akv_status read_tokens(ranks_ctx *r, const cli_settings *s, int32_t **ids, int *T,
                              akv_err *err) {
    akv_status st = AKV_OK;
    if (!!s->ids_file == !!s->text_file)
        st = akv_fail(err, AKV_EINPUT, "give exactly one of --ids-file FILE or --text-file FILE");
    else if (s->ids_file)
        st = ids_read_file(s->ids_file, ids, T, err);
    else
        st = eval_tokenize_file(s, s->text_file, ids, T, err);
    if (!st && *T < 2)
        st = akv_fail(err, AKV_EINPUT, "the text has %d token(s); at least 2 are needed to score",
                      *T);
    return ranks_agree(r, st, err);
}

/* Windows of W tokens (the last may be shorter) as the prompts the engine checks. */
static akv_status make_windows(const int32_t *ids, int T, int W, prompts *p, akv_err *err) {
    memset(p, 0, sizeof *p);
    p->P = (T + W - 1) / W;
    p->seqs = calloc((size_t)p->P, sizeof *p->seqs);
    p->len = calloc((size_t)p->P, sizeof *p->len);
    if (!p->seqs || !p->len) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    for (int w = 0; w < p->P; w++) {
        p->len[w] = T - w * W < W ? T - w * W : W;
        p->seqs[w].prompt = ids + (size_t)w * W;
        p->seqs[w].T = p->len[w];
        p->max_T = p->len[w] > p->max_T ? p->len[w] : p->max_T;
    }
    return AKV_OK;
}

/* NLL (nats) of ids[p] given logits[p-1], for p in [from, n). */
static double window_nll(const float *logits, const int32_t *ids, int n, int from, int V) {
    double nll = 0;
    for (int p = from; p < n; p++) {
        const float *row = logits + (size_t)(p - 1) * V;
        double mx = row[0], sum = 0;
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        nll += mx + log(sum) - row[ids[p]];
    }
    return nll;
}

/* Scores every window; the output rank sums, rank 0 gets the totals. */
static akv_status score(ranks_ctx *r, const cli_settings *s, engine_t *e, const prompts *p,
                        double tot[2], akv_err *err) {
    const int V = engine_config(e)->vocab_size, out = engine_rank(e) == engine_output_rank(e);
    float *logits = out ? malloc((size_t)p->max_T * V * sizeof(float)) : NULL;
    if (out && !logits) return akv_fail(err, AKV_ERUNTIME, "out of host memory for logits");
    const int from = s->prefix > 1 ? s->prefix : 1;
    akv_status st = AKV_OK;
    tot[0] = tot[1] = 0;
    for (int w = 0; !st && w < p->P; w++) {
        st = engine_logits_ex(e, p->seqs[w].prompt, p->len[w], from, logits, err);
        if (!st && out && p->len[w] > from) {
            tot[0] += window_nll(logits, p->seqs[w].prompt, p->len[w], from, V);
            tot[1] += p->len[w] - from;
        }
    }
    free(logits);
    if (st || !r->comm) return st;
    double all[2 * 256];
    if (engine_ranks(e) > 256) return akv_fail(err, AKV_ERUNTIME, "eval supports up to 256 ranks");
    st = comm_gather(r->comm, tot, sizeof(double) * 2, all, 0, err);
    if (!st && engine_rank(e) == 0) {
        tot[0] = all[2 * engine_output_rank(e)];
        tot[1] = all[2 * engine_output_rank(e) + 1];
    }
    return st;
}

/* Rank 0 gets every layer's diag rows (each rank fills its own span). */
static akv_status gather_diag(ranks_ctx *r, engine_t *e, kvdiag_layer *rows, akv_err *err) {
    const int L = engine_config(e)->n_layers, n = engine_ranks(e);
    memset(rows, 0, (size_t)L * sizeof *rows);
    engine_diag_rows(e, rows);
    if (!r->comm) return AKV_OK;
    kvdiag_layer *all = engine_rank(e) == 0 ? calloc((size_t)L * n, sizeof *all) : NULL;
    if (engine_rank(e) == 0 && !all) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    akv_status st = comm_gather(r->comm, rows, (size_t)L * sizeof *rows, all, 0, err);
    for (int k = 0; !st && all && k < n; k++) /* rank k filled only its own layers */
        for (int l = 0; l < L; l++)
            if (all[(size_t)k * L + l].n) rows[l] = all[(size_t)k * L + l];
    free(all);
    return st;
}

static void print_ppl(const cli_settings *s, const ranks_ctx *r, const prompts *p,
                      const double tot[2], int W) {
    char kv[1024];
    kvcfg_format(&r->kv, kv, sizeof kv);
    printf("perplexity: %.4f\nscored_tokens: %.0f\n", exp(tot[0] / tot[1]), tot[1]);
    if (s->quiet) return;
    size_t bpt = 0;
    for (int l = 0; l < r->cfg.n_layers; l++)
        bpt += kvcfg_token_bytes(&r->kv, l, r->cfg.n_kv_heads, r->cfg.head_dim);
    fprintf(stderr, "kv %s (%s): %.3f bits/value, %zu bytes/token over all layers; %d windows "
            "of <= %d tokens, prefix %d, mean NLL %.5f nats\n", s->kv, kv,
            kvcfg_avg_bits(&r->kv, r->cfg.head_dim), bpt, p->P, W, s->prefix, tot[0] / tot[1]);
}

/* Perplexity, then the diagnostics on rank 0. */
static akv_status run_ppl(ranks_ctx *r, const cli_settings *s, engine_t *e, const prompts *p,
                          int W, akv_err *err) {
    double tot[2];
    akv_status st = score(r, s, e, p, tot, err);
    if (st) return st;
    if (engine_rank(e) == 0) print_ppl(s, r, p, tot, W);
    if (!s->diag && !s->search_kv) return AKV_OK;
    kvdiag_layer *rows = calloc((size_t)r->cfg.n_layers, sizeof *rows);
    if (!rows) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    st = gather_diag(r, e, rows, err);
    if (!st && engine_rank(e) == 0 && s->diag) st = eval_print_diag(s, &r->kv, rows, err);
    if (!st && engine_rank(e) == 0 && s->search_kv) st = eval_search(s, &r->kv, rows, err);
    free(rows);
    return st;
}

static akv_status check_eval(const cli_settings *s, akv_err *err) {
    akv_status st = check_common(s, err);
    if (!st && (s->prefix < 0 || s->window < 0))
        st = akv_fail(err, AKV_EINPUT, "--prefix and --window must be >= 0");
    if (!st && s->search_kv) st = eval_budgets(s->budget, NULL, NULL, err);
    if (!st && s->passkey && (s->diag || s->search_kv))
        st = akv_fail(err, AKV_EINPUT, "--passkey cannot be combined with --diag/--search-kv");
    return st;
}

int cmd_eval(const cli_settings *s) {
    akv_err err = {0};
    ranks_ctx r = {0};
    cli_settings res;
    prompts p = {0};
    engine_t *e = NULL;
    int32_t *ids = NULL;
    int T = 0;
    ranks_how how = RANKS_SAME;
    akv_status st = check_eval(s, &err);
    if (!st) {
        how = RANKS_LOCAL;
        st = ranks_open(&r, s, &err);
    }
    if (!st) how = RANKS_AGREED;
    if (!st && s->passkey) {
        st = eval_passkey(&r, s, &how, &err);
        return ranks_finish(&r, s, st, &err, how);
    }
    if (!st) st = read_tokens(&r, s, &ids, &T, &err);
    if (!st) st = ranks_model(&r, s, &err);
    int W = s->window ? s->window : s->ctx ? s->ctx : r.cfg.max_pos;
    if (!st) st = make_windows(ids, T, W, &p, &err);
    cli_settings s2 = *s;
    s2.ctx = W;
    if (!st) st = open_engine(&r, &s2, &p, 0, &e, &res, &err);
    if (!st) st = ranks_print_settings(&r, &res, e, &err);
    if (!st) {
        how = RANKS_LOCAL;
        st = run_ppl(&r, s, e, &p, W, &err);
    }
    engine_close(e);
    free(p.seqs);
    free(p.len);
    free(ids);
    return ranks_finish(&r, s, st, &err, how);
}
