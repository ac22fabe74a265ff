/* eval_diag.c — `asymkv eval --diag` table/CSV and `--search-kv`; see eval.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "io.h"
#include "kvsearch.h"
#include "tokenizer.h"


akv_status eval_tokenize_file(const cli_settings *s, const char *path, int32_t **ids, int *n,
                              akv_err *err) {
    char tpath[4096], *text = NULL;
    size_t len = 0;
    tokenizer_t *tok = NULL;
    snprintf(tpath, sizeof tpath, "%s", s->tokenizer ? s->tokenizer : s->model);
    akv_status st = tokenizer_load(&tok, tpath, err);
    if (!st) st = io_read_text(path, &text, &len, err);
    if (!st) st = tokenizer_encode(tok, text, len, 1, ids, n, err);
    free(text);
    tokenizer_free(tok);
    return st;
}

/* Width index of b in {1, 2, 4}; -1 for 16/32 (unquantized). */
static int widx(int b) { return b == 1 ? 0 : b == 2 ? 1 : b == 4 ? 2 : -1; }

static double mse(double sse, long n) { return n ? sse / (double)n : 0.0; }

static void print_ratio(double k, double v) {
    if (v > 0) printf(" %9.2f", k / v);
    else printf(" %9s", "-");
}

akv_status eval_print_diag(const cli_settings *s, const kv_config *kv, const kvdiag_layer *rows,
                           akv_err *err) {
    printf("\nper-layer attention-output error vs the fp16 cache, K quantized only vs V only "
           "(MSE per element; decode steps)\n");
    printf("%5s %5s %5s %12s %12s %9s | %9s %9s %9s\n", "layer", "kbits", "vbits", "mse_K",
           "mse_V", "K/V", "K/V@1bit", "K/V@2bit", "K/V@4bit");
    for (int l = 0; l < kv->n_layers; l++) {
        const kvdiag_layer *d = &rows[l];
        int kw = widx(kv->k_bits[l]), vw = widx(kv->v_bits[l]);
        double mk = kw < 0 ? 0 : mse(d->k_sse[kw], d->n), mv = vw < 0 ? 0 : mse(d->v_sse[vw], d->n);
        printf("%5d %5d %5d %12.4e %12.4e", l, kv->k_bits[l], kv->v_bits[l], mk, mv);
        print_ratio(mk, mv);
        printf(" |");
        for (int w = 0; w < KVDIAG_WIDTHS; w++) print_ratio(d->k_sse[w], d->v_sse[w]);
        printf("\n");
    }
    FILE *f = fopen(s->csv, "w");
    if (!f) return akv_fail(err, AKV_EINPUT, "cannot write --csv %s", s->csv);
    fprintf(f, "layer,k_bits,v_bits,n,ref_ms,mse_k1,mse_k2,mse_k4,mse_v1,mse_v2,mse_v4\n");
    for (int l = 0; l < kv->n_layers; l++) {
        const kvdiag_layer *d = &rows[l];
        fprintf(f, "%d,%d,%d,%ld,%.6e", l, kv->k_bits[l], kv->v_bits[l], d->n, mse(d->ref_sq, d->n));
        for (int w = 0; w < KVDIAG_WIDTHS; w++) fprintf(f, ",%.6e", mse(d->k_sse[w], d->n));
        for (int w = 0; w < KVDIAG_WIDTHS; w++) fprintf(f, ",%.6e", mse(d->v_sse[w], d->n));
        fprintf(f, "\n");
    }
    if (fclose(f)) return akv_fail(err, AKV_ERUNTIME, "failed writing %s", s->csv);
    if (!s->quiet) fprintf(stderr, "wrote %s\n", s->csv);
    return AKV_OK;
}

/* Relative error (error energy over output energy) of every layer's K and V at each width. */
static void relative_errors(const kvdiag_layer *rows, int L, double *ek, double *ev) {
    for (int l = 0; l < L; l++)
        for (int w = 0; w < KVDIAG_WIDTHS; w++) {
            double ref = rows[l].ref_sq > 0 ? rows[l].ref_sq : 1.0;
            ek[l * 3 + w] = rows[l].k_sse[w] / ref;
            ev[l * 3 + w] = rows[l].v_sse[w] / ref;
        }
}

/* Summed relative error of a configuration (unquantized tensors count 0). */
static double config_error(const kv_config *c, const double *ek, const double *ev) {
    double e = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int kw = widx(c->k_bits[l]), vw = widx(c->v_bits[l]);
        e += (kw < 0 ? 0 : ek[l * 3 + kw]) + (vw < 0 ? 0 : ev[l * 3 + vw]);
    }
    return e;
}

static double code_bits(const kv_config *c) {
    double b = 0;
    for (int l = 0; l < c->n_layers; l++) b += c->k_bits[l] + c->v_bits[l];
    return b / (2.0 * c->n_layers);
}

akv_status eval_budgets(const char *list, double *b, int *n, akv_err *err) {
    double tmp[EVAL_MAX_BUDGETS];
    int k = 0;
    for (const char *p = list; p && *p && k < EVAL_MAX_BUDGETS; k++) {
        char *end;
        tmp[k] = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !(tmp[k] >= 1.0 && tmp[k] <= 16.0))
            return akv_fail(err, AKV_EINPUT, "--budget \"%s\": expected numbers between 1 and 16 "
                            "bits per value, separated by commas", list);
        p = *end ? end + 1 : end;
    }
    if (!k) return akv_fail(err, AKV_EINPUT, "--budget is empty");
    if (b) memcpy(b, tmp, (size_t)k * sizeof *b);
    if (n) *n = k;
    return AKV_OK;
}

/* One budget's search and its comparison with asymkv:LK/0. */
static akv_status search_one(const kv_config *kv, const double *ek, const double *ev,
                             double budget, akv_err *err);

akv_status eval_search(const cli_settings *s, const kv_config *kv, const kvdiag_layer *rows,
                       akv_err *err) {
    const int L = kv->n_layers;
    double budgets[EVAL_MAX_BUDGETS];
    int nb = 0;
    akv_status st = eval_budgets(s->budget, budgets, &nb, err);
    if (st) return st;
    double *ek = malloc(sizeof(double) * 3 * L), *ev = malloc(sizeof(double) * 3 * L);
    if (!ek || !ev) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!st) relative_errors(rows, L, ek, ev);
    for (int i = 0; !st && i < nb; i++) st = search_one(kv, ek, ev, budgets[i], err);
    free(ek);
    free(ev);
    return st;
}

static akv_status search_one(const kv_config *kv, const double *ek, const double *ev,
                             double budget, akv_err *err) {
    const int L = kv->n_layers;
    double total;
    kv_config best = *kv;
    akv_status st = kvsearch_solve(L, ek, ev, budget, &best, &total, err);
    if (!st) {
        char buf[1024];
        kvcfg_format(&best, buf, sizeof buf);
        printf("\nsearch-kv (budget %.3g code bits/value): --kv \"%s\"\n", budget, buf);
        printf("  code bits %.3f, stored bits %.3f (scale/zero incl.), summed relative error "
               "%.4e\n", code_bits(&best), kvcfg_avg_bits(&best, kv->group), total);
        /* the paper's position-based choice within the same budget, for comparison:
         * asymkv:LK/0 spends 1 + LK / (2L) code bits per value */
        int lk = (int)floor((budget - 1.0) * 2 * L + 1e-9);
        lk = lk > L ? L : lk;
        kv_config a;
        char spec[64];
        snprintf(spec, sizeof spec, "asymkv:%d/0", lk);
        if (!kvcfg_parse(&a, spec, L, 2, kv->group, kv->residual, err))
            printf("  vs %s (code bits %.3f): summed relative error %.4e\n", spec, code_bits(&a),
                   config_error(&a, ek, ev));
    }
    return st;
}
