/* test_sampling.c — sample_token against hand-computed distributions: greedy equals argmax_ref,
 * temperature / top-k / top-p / min-p keep exactly the tokens they should with the right
 * frequencies, the repetition penalty applies once per token, and a seed reproduces a run
 * whatever the order (or rank) in which sequences and steps are sampled. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "sampling.h"

#define N_DRAWS 100000

static sampler_params params(float temp, int top_k, float top_p, float min_p, float rp) {
    sampler_params p = sampler_params_default();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repetition_penalty = rp;
    p.seed = 1234;
    return p;
}

/* Frequencies of N_DRAWS draws (step = draw index, sequence 0). */
static void frequencies(const float *logits, int vocab, const sampler_params *p, double *freq) {
    float *scratch = malloc(sampler_scratch_floats(vocab) * sizeof *scratch);
    memset(freq, 0, (size_t)vocab * sizeof *freq);
    for (int i = 0; i < N_DRAWS; i++) {
        uint64_t rng = sampler_rng(p->seed, 0, (uint64_t)i);
        int32_t t = sample_token(logits, vocab, p, NULL, 0, &rng, scratch);
        cr_assert(t >= 0 && t < vocab);
        freq[t] += 1.0 / N_DRAWS;
    }
    free(scratch);
}

/* Frequencies within 0.01 of want (the standard deviation is <= 0.0016 at N_DRAWS). */
static void expect_freq(const double *freq, const double *want, int vocab, const char *what) {
    for (int i = 0; i < vocab; i++)
        cr_expect(fabs(freq[i] - want[i]) < 0.01, "%s: token %d drawn %.4f of the time, want %.4f",
                  what, i, freq[i], want[i]);
}

Test(sampling, greedy_is_argmax_ref) {
    srand(3);
    float logits[1000];
    for (int trial = 0; trial < 50; trial++) {
        for (int i = 0; i < 1000; i++) logits[i] = (float)(rand() % 200) / 10.0f; /* many ties */
        sampler_params p = sampler_params_default();
        uint64_t rng = 99, before = rng;
        cr_expect_eq(sample_token(logits, 1000, &p, NULL, 0, &rng, NULL), argmax_ref(logits, 1000));
        cr_expect_eq(rng, before, "greedy must not draw");
    }
    float tie[4] = {1, 3, 3, 2};
    sampler_params p = sampler_params_default();
    uint64_t rng = 0;
    cr_expect_eq(sample_token(tie, 4, &p, NULL, 0, &rng, NULL), 1, "first index on ties");
    float nan_first[3] = {NAN, 1, 2};
    cr_expect_eq(sample_token(nan_first, 3, &p, NULL, 0, &rng, NULL), 2, "NaN never wins");
}

Test(sampling, temperature_follows_softmax) {
    float logits[3] = {0.0f, logf(2.0f), logf(4.0f)};
    double f[3];
    sampler_params p = params(1.0f, 0, 1.0f, 0.0f, 1.0f);
    frequencies(logits, 3, &p, f);
    expect_freq(f, (const double[]){1 / 7.0, 2 / 7.0, 4 / 7.0}, 3, "T=1");
    p.temperature = 0.5f; /* probabilities ∝ exp(2 logit) = 1, 4, 16 */
    frequencies(logits, 3, &p, f);
    expect_freq(f, (const double[]){1 / 21.0, 4 / 21.0, 16 / 21.0}, 3, "T=0.5");
}

Test(sampling, top_k) {
    float logits[4] = {0.0f, logf(2.0f), logf(4.0f), logf(1.0f)};
    double f[4];
    sampler_params p = params(1.0f, 2, 1.0f, 0.0f, 1.0f);
    frequencies(logits, 4, &p, f);
    expect_freq(f, (const double[]){0, 1 / 3.0, 2 / 3.0, 0}, 4, "top-k 2");
    p.top_k = 1; /* top-1 is greedy */
    frequencies(logits, 4, &p, f);
    expect_freq(f, (const double[]){0, 0, 1, 0}, 4, "top-k 1");
    float ties[4] = {1, 1, 0, 1}; /* every tie of the k-th value is kept */
    frequencies(ties, 4, &p, f);
    expect_freq(f, (const double[]){1 / 3.0, 1 / 3.0, 0, 1 / 3.0}, 4, "top-k 1 with ties");
}

Test(sampling, top_p) {
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    double f[4];
    sampler_params p = params(1.0f, 0, 0.75f, 0.0f, 1.0f);
    frequencies(logits, 4, &p, f); /* 0.5 < 0.75, then 0.8 >= 0.75: tokens 0 and 1 */
    expect_freq(f, (const double[]){0.625, 0.375, 0, 0}, 4, "top-p 0.75");
    p.top_p = 0.85f;
    frequencies(logits, 4, &p, f);
    expect_freq(f, (const double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 4, "top-p 0.85");
    p.top_p = 0.1f; /* the most likely token alone */
    frequencies(logits, 4, &p, f);
    expect_freq(f, (const double[]){1, 0, 0, 0}, 4, "top-p 0.1");
}

Test(sampling, min_p) {
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    double f[4];
    sampler_params p = params(1.0f, 0, 1.0f, 0.2f, 1.0f); /* keep p >= 0.1 */
    frequencies(logits, 4, &p, f);
    expect_freq(f, (const double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 4, "min-p 0.2");
    p.min_p = 0.5f; /* keep p >= 0.25 */
    frequencies(logits, 4, &p, f);
    expect_freq(f, (const double[]){0.625, 0.375, 0, 0}, 4, "min-p 0.5");
}

Test(sampling, repetition_penalty_once_per_token) {
    float logits[4] = {2.0f, 1.0f, -1.0f, 0.5f};
    int32_t hist[] = {0, 0, 2, 77, -1}; /* repeated and out-of-range ids */
    float scratch[8];
    uint64_t rng = 0;
    sampler_params p = params(0.0f, 0, 1.0f, 0.0f, 2.0f);
    /* once: 2/2 = 1 ties with token 1 and wins as the first index; twice would give 0.5 */
    cr_expect_eq(sample_token(logits, 4, &p, hist, 5, &rng, scratch), 0);
    p.repetition_penalty = 4.0f; /* 0.5 < 1 */
    cr_expect_eq(sample_token(logits, 4, &p, hist, 5, &rng, scratch), 1);
    float neg[3] = {-1.0f, -1.5f, -3.0f}; /* negative logits are multiplied: -1 -> -2 */
    p.repetition_penalty = 2.0f;
    cr_expect_eq(sample_token(neg, 3, &p, hist, 1, &rng, scratch), 1);
    double f[4];
    p = params(1.0f, 0, 1.0f, 0.0f, 2.0f); /* sampling sees the penalized logits too */
    float *s2 = malloc(sampler_scratch_floats(4) * sizeof *s2);
    memset(f, 0, sizeof f);
    for (int i = 0; i < N_DRAWS; i++) {
        uint64_t r = sampler_rng(5, 0, (uint64_t)i);
        f[sample_token(logits, 4, &p, hist, 3, &r, s2)] += 1.0 / N_DRAWS;
    }
    double e[4] = {exp(1.0), exp(1.0), exp(-2.0), exp(0.5)}, z = e[0] + e[1] + e[2] + e[3];
    expect_freq(f, (const double[]){e[0] / z, e[1] / z, e[2] / z, e[3] / z}, 4, "penalized T=1");
    free(s2);
}

/* Tokens of 6 sequences x 12 steps on random logits, sampled in a given order. */
static void run_job(int order, int32_t out[6][12]) {
    sampler_params p = params(0.9f, 50, 0.95f, 0.01f, 1.1f);
    float logits[500], scratch[1000];
    for (int k = 0; k < 72; k++) {
        int seq, step;
        if (order == 0) seq = k / 12, step = k % 12;             /* one rank, sequence-major */
        else if (order == 1) seq = 5 - k % 6, step = k / 6;      /* step-major, reversed */
        else seq = (k % 3) * 2 + (k / 36), step = (k / 3) % 12; /* interleaved "ranks" */
        srand((unsigned)(seq * 1000 + step)); /* the logits depend only on (seq, step) */
        for (int i = 0; i < 500; i++) logits[i] = (float)(rand() % 1000) / 100.0f;
        uint64_t rng = sampler_rng(p.seed, (uint64_t)seq, (uint64_t)step);
        int32_t hist[12];
        for (int i = 0; i < step; i++) hist[i] = (int32_t)((seq + i) % 500);
        out[seq][step] = sample_token(logits, 500, &p, hist, step, &rng, scratch);
    }
}

Test(sampling, seed_reproduces_any_order) {
    int32_t a[6][12], b[6][12], c[6][12];
    run_job(0, a);
    run_job(1, b);
    run_job(2, c);
    cr_expect(!memcmp(a, b, sizeof a), "step-major order changed the tokens");
    cr_expect(!memcmp(a, c, sizeof a), "interleaved order changed the tokens");
    int distinct = 0;
    for (int s = 1; s < 6; s++) distinct += memcmp(a[0], a[s], sizeof a[0]) != 0;
    cr_expect_eq(distinct, 5, "sequences should draw different streams");
    cr_expect_neq(sampler_rng(1, 1, 2), sampler_rng(1, 2, 1));
    cr_expect_neq(sampler_rng(1, 0, 0), sampler_rng(2, 0, 0));
    cr_expect_eq(sampler_rng(7, 3, 4), sampler_rng(7, 3, 4));
}

Test(sampling, uniform_and_edge_cases) {
    uint64_t s = sampler_rng(42, 0, 0);
    double sum = 0, lo = 1, hi = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        double u = sampler_uniform(&s);
        cr_assert(u >= 0 && u < 1);
        sum += u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    cr_expect(fabs(sum / N_DRAWS - 0.5) < 0.005 && lo < 0.001 && hi > 0.999);
    float dead[3] = {-INFINITY, -INFINITY, -INFINITY}, scratch[6];
    sampler_params p = params(1.0f, 0, 0.9f, 0.1f, 1.0f);
    cr_expect_eq(sample_token(dead, 3, &p, NULL, 0, &s, scratch), 0, "all -inf: index 0");
    float one[1] = {3.0f};
    cr_expect_eq(sample_token(one, 1, &p, NULL, 0, &s, scratch), 0);
}

Test(sampling, params_check) {
    akv_err err = {0};
    sampler_params p = sampler_params_default();
    cr_expect_eq(sampler_params_check(&p, &err), AKV_OK);
    struct { sampler_params p; const char *want; } bad[] = {
        {params(-1.0f, 0, 1.0f, 0.0f, 1.0f), "temperature"},
        {params(NAN, 0, 1.0f, 0.0f, 1.0f), "temperature"},
        {params(1.0f, -2, 1.0f, 0.0f, 1.0f), "top-k"},
        {params(1.0f, 0, 0.0f, 0.0f, 1.0f), "top-p"},
        {params(1.0f, 0, 1.5f, 0.0f, 1.0f), "top-p"},
        {params(1.0f, 0, 1.0f, -0.1f, 1.0f), "min-p"},
        {params(1.0f, 0, 1.0f, 0.0f, 0.0f), "repetition penalty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        akv_err_clear(&err);
        cr_expect_eq(sampler_params_check(&bad[i].p, &err), AKV_EINPUT);
        cr_expect(strstr(err.msg, bad[i].want) != NULL, "\"%s\" lacks \"%s\"", err.msg, bad[i].want);
    }
}
