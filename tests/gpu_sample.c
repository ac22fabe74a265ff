/* gpu_sample.c — sample_cuda (kernels/sample.cu) against its twin sample_token (runtime/sampling.c)
 * on seeded random logits (never zeros): every row must give the same token, not just one from the
 * same distribution, and the history append must match. Settings: greedy (with ties), temperature,
 * top-k (1, ties), top-p (0.5, 0.9), min-p, repetition penalty (duplicated and out-of-range ids),
 * all combined, vocabularies 1 to 128256, flat and peaked rows, several rows with different
 * settings through row_slot, NaN rows.
 * Tolerance: none. The kernel computes the probabilities bit for bit as glibc's x86-64 FMA expf
 * does; only its double sums run in another order (~1e-16 relative each), which could flip a draw
 * landing within ~1e-12 of a bucket edge. With these seeds none does: a CPU emulation of the
 * kernel (its reduction order, glibc expf) gave 0 differences here and in 202000 random rows
 * (0 in 100000 even with a correctly rounded exp instead of glibc's). The first mismatches are
 * printed.
 * Without a usable CUDA device every test is skipped.
 * Run on the GPU machine:  ./build-gpu/tests/gpu_sample [--filter sample/matches_twin] */
#include <criterion/criterion.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "gpu_util.h"
#include "sample_cuda.h"
#include "sampling.h"

/* sample_params_dev mirrors sampler_params: host arrays are uploaded as they are. */
_Static_assert(sizeof(sample_params_dev) == sizeof(sampler_params), "params layout");
_Static_assert(offsetof(sample_params_dev, top_k) == offsetof(sampler_params, top_k), "top_k");
_Static_assert(offsetof(sample_params_dev, top_p) == offsetof(sampler_params, top_p), "top_p");
_Static_assert(offsetof(sample_params_dev, min_p) == offsetof(sampler_params, min_p), "min_p");
_Static_assert(offsetof(sample_params_dev, repetition_penalty) ==
                   offsetof(sampler_params, repetition_penalty),
               "repetition_penalty");
_Static_assert(offsetof(sample_params_dev, seed) == offsetof(sampler_params, seed), "seed");

/* One launch: host copies of everything sample_cuda reads. hist may be NULL. */
typedef struct sample_case {
    int n_rows, vocab;
    float *logits;          /* [n_rows][vocab] */
    sampler_params *params; /* [n_rows] */
    uint64_t *rng;          /* [n_rows] */
    int n_slots, hist_cap;
    int32_t *hist;     /* [n_slots][hist_cap] or NULL */
    int32_t *hist_len; /* [n_slots] */
    int32_t *row_slot; /* [n_rows] or NULL */
} sample_case;

static sampler_params make_params(float temp, int top_k, float top_p, float min_p, float rp) {
    sampler_params p = sampler_params_default();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repetition_penalty = rp;
    p.seed = 0x5a5a;
    return p;
}

/* ---- data ---- */

static float nonzero(float v) { return v == 0.0f ? 0.375f : v; }

/* Flat: U(-4, 4). Peaked (an LLM-like row): U(-3, 3) plus a few logits in [6, 12). */
static void fill_row(float *x, int n, int peaked, uint32_t *s) {
    for (int i = 0; i < n; i++)
        x[i] = nonzero(peaked ? rng_uniform(s, -3.0f, 3.0f) : rng_uniform(s, -4.0f, 4.0f));
    if (peaked)
        for (int j = 0; j < 12 && n > 1; j++)
            x[rng_next(s) % (uint32_t)n] = rng_uniform(s, 6.0f, 12.0f);
}

/* Values on a grid of 0.5 in [-4, 4] (no 0): ties everywhere, the maximum tied too. */
static void fill_row_ties(float *x, int n, uint32_t *s) {
    for (int i = 0; i < n; i++)
        x[i] = nonzero(0.5f * (float)((int)(rng_next(s) % 17u) - 8));
    if (n > 2) x[rng_next(s) % (uint32_t)n] = x[rng_next(s) % (uint32_t)n] = 9.0f;
}

/* Index of the largest logit of a row (an id worth penalizing). */
static int32_t row_argmax(const float *x, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* A history of `len` ids: the row's top id (twice), random ids with repeats, and ids outside
 * [0, vocab) that must be ignored. */
static void fill_history(int32_t *h, int len, const float *row, int n, uint32_t *s) {
    for (int j = 0; j < len; j++) {
        const uint32_t kind = rng_next(s) % 8u;
        if (kind == 0) h[j] = row_argmax(row, n);
        else if (kind == 1) h[j] = j > 0 ? h[rng_next(s) % (uint32_t)j] : 0; /* a repeat */
        else if (kind == 2) h[j] = (rng_next(s) & 1) ? -1 : n + (int32_t)(rng_next(s) % 7u);
        else h[j] = (int32_t)(rng_next(s) % (uint32_t)n);
    }
    if (len >= 2) h[0] = h[1] = row_argmax(row, n);
}

static void case_alloc(sample_case *c, int n_rows, int vocab, int n_slots, int hist_cap) {
    memset(c, 0, sizeof *c);
    c->n_rows = n_rows, c->vocab = vocab, c->n_slots = n_slots, c->hist_cap = hist_cap;
    c->logits = xmalloc((size_t)n_rows * vocab * sizeof(float));
    c->params = xmalloc((size_t)n_rows * sizeof(sampler_params));
    c->rng = xmalloc((size_t)n_rows * sizeof(uint64_t));
    if (hist_cap > 0) {
        c->hist = xmalloc((size_t)n_slots * hist_cap * sizeof(int32_t));
        c->hist_len = xmalloc((size_t)n_slots * sizeof(int32_t));
    }
}

static void case_free(sample_case *c) {
    free(c->logits), free(c->params), free(c->rng), free(c->hist), free(c->hist_len);
    free(c->row_slot);
}

/* ---- one launch against the twin ---- */

typedef struct dev_case {
    sample_cuda_args a;
    size_t hist_bytes, len_bytes;
} dev_case;

static dev_case upload_case(const sample_case *c, cudaStream_t s) {
    dev_case d = {0};
    const size_t R = (size_t)c->n_rows;
    d.a.n_rows = c->n_rows, d.a.vocab = c->vocab, d.a.hist_cap = c->hist_cap;
    d.a.out = dev_poisoned(R * sizeof(int32_t), s);
    d.a.logits = dev_upload(c->logits, R * c->vocab * sizeof(float), s);
    d.a.params = dev_upload(c->params, R * sizeof(sampler_params), s);
    d.a.rng = dev_upload(c->rng, R * sizeof(uint64_t), s);
    if (c->hist) {
        d.hist_bytes = (size_t)c->n_slots * c->hist_cap * sizeof(int32_t);
        d.len_bytes = (size_t)c->n_slots * sizeof(int32_t);
        d.a.hist = dev_upload(c->hist, d.hist_bytes, s);
        d.a.hist_len = dev_upload(c->hist_len, d.len_bytes, s);
    }
    if (c->row_slot) d.a.row_slot = dev_upload(c->row_slot, R * sizeof(int32_t), s);
    d.a.workspace_bytes = sample_cuda_workspace_bytes(c->n_rows, c->vocab);
    d.a.workspace = dev_poisoned(d.a.workspace_bytes, s);
    return d;
}

static void free_dev_case(dev_case *d) {
    cudaFree(d->a.out), cudaFree(d->a.logits), cudaFree((void *)d->a.params);
    cudaFree((void *)d->a.rng), cudaFree(d->a.hist), cudaFree(d->a.hist_len);
    cudaFree((void *)d->a.row_slot), cudaFree(d->a.workspace);
}

/* The twin's token for each row (want[r]), and the history it leaves (c->hist updated). */
static void twin_tokens(sample_case *c, int32_t *want) {
    float *scratch = xmalloc(sampler_scratch_floats(c->vocab) * sizeof(float));
    for (int r = 0; r < c->n_rows; r++) {
        const int slot = c->row_slot ? c->row_slot[r] : r;
        int32_t *h = c->hist ? c->hist + (size_t)slot * c->hist_cap : NULL;
        int n_hist = h ? c->hist_len[slot] : 0;
        n_hist = n_hist < 0 ? 0 : n_hist > c->hist_cap ? c->hist_cap : n_hist;
        uint64_t st = c->rng[r];
        want[r] = sample_token(c->logits + (size_t)r * c->vocab, c->vocab, &c->params[r], h,
                               n_hist, &st, scratch);
        if (h && n_hist < c->hist_cap) {
            h[n_hist] = want[r];
            c->hist_len[slot] = n_hist + 1;
        }
    }
    free(scratch);
}

/* Runs sample_cuda on the case's device copy d (its history state carried over from earlier
 * launches) and the twin on c; returns the rows whose token or history differs. */
static int run_and_compare(const char *what, sample_case *c, dev_case *d, cudaStream_t s) {
    const size_t R = (size_t)c->n_rows;
    int32_t *got = xmalloc(R * sizeof(int32_t)), *want = xmalloc(R * sizeof(int32_t));
    CUDA_CHECK_EXIT(cudaMemcpyAsync(d->a.logits, c->logits, R * c->vocab * sizeof(float),
                                    cudaMemcpyHostToDevice, s)); /* the kernel used it as scratch */
    CUDA_CHECK_EXIT(cudaMemcpyAsync((void *)d->a.rng, c->rng, R * sizeof(uint64_t),
                                    cudaMemcpyHostToDevice, s));
    CUDA_CHECK_EXIT(sample_cuda(&d->a, s));
    dev_download(got, d->a.out, R * sizeof(int32_t), s);
    twin_tokens(c, want);
    int bad = 0;
    for (int r = 0; r < c->n_rows; r++)
        if (got[r] != want[r] && bad++ < 8)
            fprintf(stderr, "  %s vocab=%d row %d: got %d, want %d\n", what, c->vocab, r, got[r],
                    want[r]);
    if (c->hist && !bad) {
        int32_t *gh = xmalloc(d->hist_bytes), *gl = xmalloc(d->len_bytes);
        dev_download(gh, d->a.hist, d->hist_bytes, s);
        dev_download(gl, d->a.hist_len, d->len_bytes, s);
        if (memcmp(gh, c->hist, d->hist_bytes) || memcmp(gl, c->hist_len, d->len_bytes)) {
            fprintf(stderr, "  %s vocab=%d: history after the append differs\n", what, c->vocab);
            bad++;
        }
        free(gh), free(gl);
    }
    free(got), free(want);
    return bad;
}

/* Uploads, runs one launch at step `step` (rng of row r: sampler_rng(seed, r, step)), compares. */
static int check_case(const char *what, sample_case *c, int step, cudaStream_t s) {
    for (int r = 0; r < c->n_rows; r++)
        c->rng[r] = sampler_rng(c->params[r].seed, (uint64_t)r, (uint64_t)step);
    dev_case d = upload_case(c, s);
    const int bad = run_and_compare(what, c, &d, s);
    free_dev_case(&d);
    return bad;
}

/* ---- tests ---- */

static const struct {
    const char *name;
    float temp;
    int top_k;
    float top_p, min_p, rp;
} settings[] = {
    {"greedy", 0.0f, 0, 1.0f, 0.0f, 1.0f},
    {"greedy, penalty 1.3", 0.0f, 0, 1.0f, 0.0f, 1.3f},
    {"temperature 1", 1.0f, 0, 1.0f, 0.0f, 1.0f},
    {"temperature 0.7", 0.7f, 0, 1.0f, 0.0f, 1.0f},
    {"temperature 1.5", 1.5f, 0, 1.0f, 0.0f, 1.0f},
    {"top-k 1", 1.0f, 1, 1.0f, 0.0f, 1.0f},
    {"top-k 50", 0.9f, 50, 1.0f, 0.0f, 1.0f},
    {"top-p 0.5", 1.0f, 0, 0.5f, 0.0f, 1.0f},
    {"top-p 0.9", 0.8f, 0, 0.9f, 0.0f, 1.0f},
    {"min-p 0.05", 1.0f, 0, 1.0f, 0.05f, 1.0f},
    {"penalty 1.3", 1.0f, 0, 1.0f, 0.0f, 1.3f},
    {"penalty 0.8", 1.0f, 0, 1.0f, 0.0f, 0.8f},
    {"combined", 0.8f, 40, 0.9f, 0.02f, 1.2f},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* n_rows rows of one setting, each with its own slot and a 24-id history (cap 32). */
static int check_setting(size_t k, int vocab, int n_rows, int ties, uint32_t *seed,
                         cudaStream_t s) {
    sample_case c;
    case_alloc(&c, n_rows, vocab, n_rows, 32);
    for (int r = 0; r < n_rows; r++) {
        float *row = c.logits + (size_t)r * vocab;
        if (ties) fill_row_ties(row, vocab, seed);
        else fill_row(row, vocab, r & 1, seed);
        c.params[r] = make_params(settings[k].temp, settings[k].top_k, settings[k].top_p,
                                  settings[k].min_p, settings[k].rp);
        c.params[r].seed = 1000u + (uint64_t)k;
        c.hist_len[r] = 24;
        fill_history(c.hist + (size_t)r * 32, 24, row, vocab, seed);
    }
    char what[96];
    snprintf(what, sizeof what, "%s%s", settings[k].name, ties ? " (ties)" : "");
    const int bad = check_case(what, &c, (int)k, s);
    case_free(&c);
    return bad;
}

Test(sample, matches_twin) {
    REQUIRE_GPU();
    const int vocabs[] = {1, 7, 4096, 32000, 128256};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x5a3b1e7u;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++)
        for (size_t k = 0; k < N_SETTINGS; k++) {
            const int rows = vocabs[v] > 32000 ? 16 : 32;
            cr_expect_eq(check_setting(k, vocabs[v], rows, 0, &seed, s), 0, "%s vocab=%d differs",
                         settings[k].name, vocabs[v]);
        }
    cudaStreamDestroy(s);
}

Test(sample, ties) { /* greedy: first index; top-k keeps every tie of the k-th; top-p ties */
    REQUIRE_GPU();
    const int vocabs[] = {7, 4096, 128256};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x7135u;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++)
        for (size_t k = 0; k < N_SETTINGS; k++)
            cr_expect_eq(check_setting(k, vocabs[v], 16, 1, &seed, s), 0, "%s vocab=%d differs",
                         settings[k].name, vocabs[v]);
    cudaStreamDestroy(s);
}

/* Five rows with different settings on slots {7, 2, 11, 0, 5} of 12, histories of lengths 0 to
 * full (cap 16), stepped 20 times on the device: each step appends to its slot, later steps are
 * penalized by what earlier ones sampled; the other slots must stay untouched. Then the same
 * launch twice: the same tokens (the reductions have a fixed order). */
Test(sample, rows_slots_and_history) {
    REQUIRE_GPU();
    enum { ROWS = 5, SLOTS = 12, CAP = 16, VOCAB = 32000, STEPS = 20 };
    const int32_t slots[ROWS] = {7, 2, 11, 0, 5};
    const int lens[SLOTS] = {3, 5, 0, 9, 4, 16, 2, 1, 8, 6, 10, 0};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x510755u;
    sample_case c;
    case_alloc(&c, ROWS, VOCAB, SLOTS, CAP);
    c.row_slot = xmalloc(sizeof slots);
    memcpy(c.row_slot, slots, sizeof slots);
    c.params[0] = make_params(0.0f, 0, 1.0f, 0.0f, 1.0f);   /* greedy */
    c.params[1] = make_params(0.0f, 0, 1.0f, 0.0f, 1.5f);   /* greedy, penalty */
    c.params[2] = make_params(0.9f, 30, 0.95f, 0.0f, 1.1f); /* empty history at first */
    c.params[3] = make_params(1.2f, 0, 0.7f, 0.01f, 1.3f);
    c.params[4] = make_params(1.0f, 0, 1.0f, 0.1f, 1.25f); /* slot 5: full history */
    for (int r = 0; r < ROWS; r++) fill_row(c.logits + (size_t)r * VOCAB, VOCAB, 1, &seed);
    for (int sl = 0; sl < SLOTS; sl++) {
        c.hist_len[sl] = lens[sl];
        for (int j = 0; j < CAP; j++)
            c.hist[(size_t)sl * CAP + j] = (int32_t)(rng_next(&seed) % VOCAB);
    }
    for (int r = 0; r < ROWS; r++) /* make the penalty matter: the row's top id in its history */
        c.hist[(size_t)slots[r] * CAP] = row_argmax(c.logits + (size_t)r * VOCAB, VOCAB);
    dev_case d = upload_case(&c, s);
    for (int step = 0; step < STEPS; step++) {
        for (int r = 0; r < ROWS; r++)
            c.rng[r] = sampler_rng(c.params[r].seed, (uint64_t)r, (uint64_t)step);
        cr_expect_eq(run_and_compare("rows/slots", &c, &d, s), 0, "step %d differs", step);
    }
    int32_t first[ROWS], again[ROWS];
    sample_cuda_args same = d.a;
    same.hist = NULL; /* no append: both launches see the same state */
    for (int rep = 0; rep < 2; rep++) {
        CUDA_CHECK_EXIT(cudaMemcpyAsync(same.logits, c.logits, sizeof(float) * ROWS * VOCAB,
                                        cudaMemcpyHostToDevice, s));
        CUDA_CHECK_EXIT(sample_cuda(&same, s));
        dev_download(rep ? again : first, same.out, sizeof first, s);
    }
    cr_expect(memcmp(first, again, sizeof first) == 0, "two identical launches differ");
    free_dev_case(&d);
    case_free(&c);
    cudaStreamDestroy(s);
}

/* NaN counts as -inf and never wins: all-NaN rows give 0; [NaN, -inf, ...] gives the first -inf
 * when greedy without penalty (argmax skips NaN) and 0 once the penalty path has turned NaN into
 * -inf; a NaN where the maximum would be is skipped. Every case against the twin too. */
Test(sample, nan_rows) {
    REQUIRE_GPU();
    enum { ROWS = 8, VOCAB = 4096 };
    cudaStream_t s = new_stream();
    uint32_t seed = 0xa1au;
    sample_case c;
    case_alloc(&c, ROWS, VOCAB, ROWS, 4);
    const sampler_params greedy = make_params(0.0f, 0, 1.0f, 0.0f, 1.0f),
                         greedy_pen = make_params(0.0f, 0, 1.0f, 0.0f, 1.3f),
                         sampled = make_params(1.0f, 20, 0.9f, 0.0f, 1.3f);
    const sampler_params per_row[ROWS] = {greedy, greedy_pen, sampled, greedy,
                                          greedy_pen, sampled, greedy, sampled};
    for (int r = 0; r < ROWS; r++) {
        float *row = c.logits + (size_t)r * VOCAB;
        c.params[r] = per_row[r];
        c.hist_len[r] = 2;
        c.hist[(size_t)r * 4] = 3, c.hist[(size_t)r * 4 + 1] = 3;
        if (r < 3) { /* all NaN */
            for (int i = 0; i < VOCAB; i++) row[i] = NAN;
        } else if (r < 6) { /* NaN and -inf only */
            for (int i = 0; i < VOCAB; i++) row[i] = (i % 3 == 0) ? NAN : -INFINITY;
        } else { /* random, with a NaN on the top logit and on every 7th */
            fill_row(row, VOCAB, 1, &seed);
            for (int i = 0; i < VOCAB; i += 7) row[i] = NAN;
            row[row_argmax(row, VOCAB)] = NAN;
        }
    }
    const int32_t expect[6] = {0, 0, 0, 1, 0, 0};
    for (int r = 0; r < ROWS; r++)
        c.rng[r] = sampler_rng(c.params[r].seed, (uint64_t)r, 0);
    dev_case d = upload_case(&c, s);
    int32_t got[ROWS];
    CUDA_CHECK_EXIT(sample_cuda(&d.a, s));
    dev_download(got, d.a.out, sizeof got, s);
    for (int r = 0; r < 6; r++)
        cr_expect_eq(got[r], expect[r], "NaN row %d: got %d, want %d", r, got[r], expect[r]);
    for (int r = 6; r < ROWS; r++)
        cr_expect(got[r] >= 0 && got[r] < VOCAB && !isnan(c.logits[(size_t)r * VOCAB + got[r]]),
                  "row %d picked a NaN logit (%d)", r, got[r]);
    free_dev_case(&d);
    cr_expect_eq(check_case("NaN rows", &c, 1, s), 0, "NaN rows differ from the twin");
    case_free(&c);
    cudaStreamDestroy(s);
}

Test(sample, preconditions) {
    REQUIRE_GPU();
    cudaStream_t s = new_stream();
    void *d = dev_poisoned(4096, s);
    sample_cuda_args a = {.out = d, .logits = d, .n_rows = 2, .vocab = 100,
                          .params = d, .rng = d, .workspace = d, .workspace_bytes = 4096};
    cr_expect_eq(sample_cuda(&a, NULL), cudaErrorInvalidValue, "the legacy default stream");
    a.workspace_bytes = sample_cuda_workspace_bytes(2, 100) - 1;
    cr_expect_eq(sample_cuda(&a, s), cudaErrorInvalidValue, "workspace too small");
    a.workspace_bytes = 4096, a.hist = d;
    cr_expect_eq(sample_cuda(&a, s), cudaErrorInvalidValue, "history without lengths");
    a.hist = NULL, a.vocab = 0;
    cr_expect_eq(sample_cuda(&a, s), cudaErrorInvalidValue, "empty vocabulary");
    CUDA_CHECK_EXIT(cudaStreamSynchronize(s));
    cudaFree(d);
    cudaStreamDestroy(s);
}
