/* eval_passkey.c — `asymkv eval --passkey`: seeded passkey prompts (runtime/passkey.h) at
 * each --passkey-lengths x --passkey-depths, --passkey-trials each, all generated together
 * (8 greedy tokens each) under the chosen --kv; prints exact-retrieval accuracy. */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "eval.h"
#include "io.h"
#include "passkey.h"

#define PK_MAX 32

typedef struct pk_plan {
    int n_len, n_depth, trials;
    int len[PK_MAX];
    double depth[PK_MAX];
    char (*keys)[6];     /* [P] */
} pk_plan;

static akv_status parse_list(const char *list, const char *what, double *v, int *n, akv_err *err) {
    const char *p = list;
    for (*n = 0; *p && *n < PK_MAX; (*n)++) {
        char *end;
        v[*n] = strtod(p, &end);
        if (end == p || (*end && *end != ','))
            return akv_fail(err, AKV_EINPUT, "%s \"%s\": expected numbers separated by commas", what, list);
        p = *end ? end + 1 : end;
    }
    return *n ? AKV_OK : akv_fail(err, AKV_EINPUT, "%s is empty", what);
}

static akv_status parse_plan(const cli_settings *s, pk_plan *pl, akv_err *err) {
    double lens[PK_MAX];
    akv_status st = parse_list(s->passkey_lengths, "--passkey-lengths", lens, &pl->n_len, err);
    if (!st) st = parse_list(s->passkey_depths, "--passkey-depths", pl->depth, &pl->n_depth, err);
    for (int i = 0; !st && i < pl->n_len; i++) {
        pl->len[i] = (int)lens[i];
        if (lens[i] < 64 || lens[i] != pl->len[i])
            st = akv_fail(err, AKV_EINPUT, "--passkey-lengths: %g is not a length >= 64", lens[i]);
    }
    for (int i = 0; !st && i < pl->n_depth; i++)
        if (pl->depth[i] < 0 || pl->depth[i] > 1)
            st = akv_fail(err, AKV_EINPUT, "--passkey-depths: %g is outside 0..1", pl->depth[i]);
    pl->trials = s->passkey_trials;
    if (!st && pl->trials < 1) st = akv_fail(err, AKV_EINPUT, "--passkey-trials must be >= 1");
    return st;
}

/* Builds every prompt (each rank does the same, deterministically). */
static akv_status build_prompts(const cli_settings *s, const tokenizer_t *tok, pk_plan *pl,
                                prompts *p, akv_err *err) {
    char path[4096], *filler = NULL;
    snprintf(path, sizeof path, "%s/heldout.txt", s->model);
    akv_status st = io_read_text(s->filler ? s->filler : path, &filler, NULL, err);
    passkey_gen *g = NULL;
    if (!st) st = passkey_init(&g, tok, filler, err);
    p->P = pl->n_len * pl->n_depth * pl->trials;
    p->len = calloc((size_t)p->P, sizeof *p->len);
    p->seqs = calloc((size_t)p->P, sizeof *p->seqs);
    p->out = calloc((size_t)p->P * PASSKEY_GEN_TOKENS, sizeof *p->out);
    pl->keys = calloc((size_t)p->P, sizeof *pl->keys);
    int32_t **one = calloc((size_t)p->P, sizeof *one);
    if (!st && (!p->len || !p->seqs || !p->out || !pl->keys || !one))
        st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    uint64_t rng = (uint64_t)s->seed * 0x9e3779b97f4a7c15ull + 17;
    size_t total = 0;
    for (int i = 0; !st && i < p->P; i++) {
        int li = i / (pl->n_depth * pl->trials), di = i / pl->trials % pl->n_depth;
        st = passkey_build(g, &rng, pl->len[li], pl->depth[di], &one[i], &p->len[i], pl->keys[i], err);
        total += st ? 0 : (size_t)p->len[i];
    }
    if (!st && !(p->ids = malloc(total * sizeof *p->ids))) st = akv_fail(err, AKV_ERUNTIME, "out of memory");
    for (int i = 0, at = 0; !st && i < p->P; at += p->len[i], i++) {
        memcpy(p->ids + at, one[i], (size_t)p->len[i] * sizeof *p->ids);
        p->seqs[i] = (engine_seq){p->ids + at, p->len[i], p->out + (size_t)i * PASSKEY_GEN_TOKENS, 0, NULL};
        p->max_T = p->len[i] > p->max_T ? p->len[i] : p->max_T;
    }
    for (int i = 0; one && i < p->P; i++) free(one[i]);
    free(one);
    passkey_free(g);
    free(filler);
    return st;
}

/* Rank 0: decode each answer and print the accuracy table. */
static akv_status report(const cli_settings *s, const tokenizer_t *tok, const pk_plan *pl,
                         const prompts *p, akv_err *err) {
    printf("passkey retrieval (%d trials per cell, greedy, %d tokens generated)\n%8s",
           pl->trials, PASSKEY_GEN_TOKENS, "length");
    for (int d = 0; d < pl->n_depth; d++) printf(" %7.2f", pl->depth[d]);
    printf(" %9s\n", "all");
    for (int l = 0, i = 0; l < pl->n_len; l++) {
        int all = 0;
        printf("%8d", pl->len[l]);
        for (int d = 0; d < pl->n_depth; d++) {
            int ok = 0;
            for (int t = 0; t < pl->trials; t++, i++) {
                char *text = NULL;
                size_t n = 0;
                akv_status st = tokenizer_decode(tok, p->seqs[i].out, p->seqs[i].n_out, 1, &text, &n, err);
                if (st) return st;
                ok += passkey_check(text, pl->keys[i]);
                free(text);
            }
            printf(" %4d/%-2d", ok, pl->trials);
            all += ok;
        }
        printf(" %5.1f%%\n", 100.0 * all / (pl->n_depth * pl->trials));
    }
    (void)s;
    return AKV_OK;
}

akv_status eval_passkey(ranks_ctx *r, const cli_settings *s, ranks_how *how, akv_err *err) {
    pk_plan pl = {0};
    prompts p = {0};
    tokenizer_t *tok = NULL;
    engine_t *e = NULL;
    cli_settings res, s2 = *s;
    engine_stats stats;
    akv_status st = parse_plan(s, &pl, err);
    if (!st) st = tokenizer_load(&tok, s->tokenizer ? s->tokenizer : s->model, err);
    if (!st) st = build_prompts(s, tok, &pl, &p, err);
    if ((st = ranks_agree(r, st, err))) goto done;
    s2.ctx = s->ctx ? s->ctx : p.max_T + PASSKEY_GEN_TOKENS;
    if (!st) st = open_engine(r, &s2, &p, PASSKEY_GEN_TOKENS, &e, &res, err);
    if (!st) st = ranks_print_settings(r, &res, e, err);
    if (st) goto done;
    *how = RANKS_LOCAL;
    st = engine_generate_batch(e, p.seqs, p.P, PASSKEY_GEN_TOKENS, NULL, NULL, &stats, err);
    if (!st && engine_rank(e) == 0) st = report(s, tok, &pl, &p, err);
done:
    engine_close(e);
    tokenizer_free(tok);
    prompts_free(&p);
    free(pl.keys);
    return st;
}
