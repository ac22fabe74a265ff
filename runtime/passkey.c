/* passkey.c — passkey prompt construction over a tokenized filler; see passkey.h. */
#include "passkey.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>

struct passkey_gen {
    int32_t *flat;   /* filler tokens, piece after piece */
    long *off;       /* [n_pieces + 1] token offset of each piece */
    long n_pieces;
    int32_t bos, nl, digit[10];
    int32_t *a, *b, *c, *q; /* needle parts and question */
    int na, nb, nc, nq;
};

static const char NEEDLE_A[] = "The pass key is ", NEEDLE_B[] = ". Remember it. ",
                  NEEDLE_C[] = " is the pass key.", QUESTION[] = "What is the pass key? The pass key is";

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Length of the piece starting at p: up to (not incl.) the next '\n' after the first byte, or
 * through a . ! ? ; : , that is followed by a space. */
static size_t piece_len(const char *p) {
    size_t i = 1;
    for (; p[i]; i++) {
        if (p[i] == '\n') return i;
        if (strchr(".!?;:,", p[i - 1]) && p[i] == ' ') return i;
    }
    return i;
}

static akv_status single(const tokenizer_t *t, const char *s, int32_t *id, akv_err *err) {
    int32_t *ids = NULL;
    int n = 0;
    akv_status st = tokenizer_encode(t, s, strlen(s), 0, &ids, &n, err);
    if (!st && n != 1)
        st = akv_fail(err, AKV_EINPUT, "passkey prompts need \"%s\" to be one token of the "
                      "tokenizer (it is %d)", s[0] == '\n' ? "\\n" : s, n);
    if (!st) *id = ids[0];
    free(ids);
    return st;
}

static akv_status encode_parts(passkey_gen *g, const tokenizer_t *t, akv_err *err) {
    akv_status s = single(t, "\n", &g->nl, err);
    for (int d = 0; !s && d < 10; d++) {
        char buf[2] = {(char)('0' + d), 0};
        s = single(t, buf, &g->digit[d], err);
    }
    if (!s) s = tokenizer_encode(t, NEEDLE_A, strlen(NEEDLE_A), 0, &g->a, &g->na, err);
    if (!s) s = tokenizer_encode(t, NEEDLE_B, strlen(NEEDLE_B), 0, &g->b, &g->nb, err);
    if (!s) s = tokenizer_encode(t, NEEDLE_C, strlen(NEEDLE_C), 0, &g->c, &g->nc, err);
    if (!s) s = tokenizer_encode(t, QUESTION, strlen(QUESTION), 0, &g->q, &g->nq, err);
    g->bos = tokenizer_bos_id(t);
    return s;
}

static akv_status encode_filler(passkey_gen *g, const tokenizer_t *t, const char *text,
                                akv_err *err) {
    size_t cap = 1024, ncap = 1024;
    g->flat = malloc(cap * sizeof *g->flat);
    g->off = malloc(ncap * sizeof *g->off);
    if (!g->flat || !g->off) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    g->off[0] = 0;
    for (const char *p = text; *p;) {
        size_t len = piece_len(p);
        int32_t *ids = NULL;
        int n = 0;
        akv_status s = tokenizer_encode(t, p, len, 0, &ids, &n, err);
        if (s) return s;
        while ((size_t)(g->off[g->n_pieces] + n) > cap) g->flat = realloc(g->flat, (cap *= 2) * sizeof *g->flat);
        if ((size_t)g->n_pieces + 2 > ncap) g->off = realloc(g->off, (ncap *= 2) * sizeof *g->off);
        if (!g->flat || !g->off) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
        memcpy(g->flat + g->off[g->n_pieces], ids, (size_t)n * sizeof *ids);
        g->off[g->n_pieces + 1] = g->off[g->n_pieces] + n;
        g->n_pieces++;
        free(ids);
        p += len;
    }
    if (g->n_pieces < 2) return akv_fail(err, AKV_EINPUT, "the passkey filler text is too short");
    return AKV_OK;
}

akv_status passkey_init(passkey_gen **out, const tokenizer_t *tok, const char *filler,
                        akv_err *err) {
    *out = NULL;
    passkey_gen *g = calloc(1, sizeof *g);
    if (!g) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    akv_status s = encode_parts(g, tok, err);
    if (!s) s = encode_filler(g, tok, filler, err);
    if (s) {
        passkey_free(g);
        return s;
    }
    *out = g;
    return AKV_OK;
}

void passkey_free(passkey_gen *g) {
    if (!g) return;
    free(g->flat);
    free(g->off);
    free(g->a);
    free(g->b);
    free(g->c);
    free(g->q);
    free(g);
}

/* Index of the last i with off[i] <= v (binary search). */
static long floor_index(const long *off, long n, long v) {
    long lo = 0, hi = n;
    while (lo < hi) {
        long mid = (lo + hi + 1) / 2;
        if (off[mid] <= v) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Consecutive pieces [s, e) of at most budget tokens, cut at the boundary nearest depth. */
static void take_filler(const passkey_gen *g, uint64_t *rng, long budget, double depth,
                        long *from, long *cut, long *to) {
    const long *off = g->off, n = g->n_pieces;
    long s = 0, e = 0;
    for (int tries = 0; tries < 20; tries++) {
        s = (long)(splitmix(rng) % (uint64_t)n);
        long last_start = floor_index(off, n, off[n] - budget);
        s = s < last_start ? s : last_start;
        e = floor_index(off, n, off[s] + budget);
        if (e > s) break;
    }
    const double target = depth * (double)(off[e] - off[s]);
    long best = s;
    for (long i = s; i <= e; i++)
        if (fabs((double)(off[i] - off[s]) - target) < fabs((double)(off[best] - off[s]) - target))
            best = i;
    *from = off[s];
    *cut = off[best];
    *to = off[e];
}

static void put(int32_t *dst, int *n, const int32_t *src, int m) {
    memcpy(dst + *n, src, (size_t)m * sizeof *src);
    *n += m;
}

akv_status passkey_build(const passkey_gen *g, uint64_t *rng, int length, double depth,
                         int32_t **ids, int *n, char key[6], akv_err *err) {
    int32_t kd[5];
    uint64_t k = 10000 + splitmix(rng) % 90000;
    snprintf(key, 6, "%05llu", (unsigned long long)k);
    for (int i = 0; i < 5; i++) kd[i] = g->digit[key[i] - '0'];
    const int fixed = 2 + g->na + 5 + g->nb + 5 + g->nc + 1 + g->nq;
    long budget = length - fixed - PASSKEY_GEN_TOKENS;
    if (budget < 8)
        return akv_fail(err, AKV_EINPUT, "passkey length %d is too short (at least %d tokens)",
                        length, fixed + PASSKEY_GEN_TOKENS + 8);
    long from, cut, to;
    take_filler(g, rng, budget, depth, &from, &cut, &to);
    int32_t *t = malloc((size_t)(fixed + (to - from)) * sizeof *t);
    if (!t) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    int m = 0;
    if (g->bos >= 0) t[m++] = g->bos;
    put(t, &m, g->flat + from, (int)(cut - from));
    put(t, &m, &g->nl, 1);
    put(t, &m, g->a, g->na);
    put(t, &m, kd, 5);
    put(t, &m, g->b, g->nb);
    put(t, &m, kd, 5);
    put(t, &m, g->c, g->nc);
    put(t, &m, g->flat + cut, (int)(to - cut));
    put(t, &m, &g->nl, 1);
    put(t, &m, g->q, g->nq);
    *ids = t;
    *n = m;
    return AKV_OK;
}

int passkey_check(const char *text, const char *key) {
    const char *p = text;
    while (*p && !isdigit((unsigned char)*p)) p++;
    size_t n = 0;
    while (isdigit((unsigned char)p[n])) n++;
    return n == strlen(key) && !strncmp(p, key, n);
}
