/* sampling.c — scalar sampling of the next token; see sampling.h. Probabilities are kept
 * unnormalized (exp(x - max)) and summed in double; filters set logits to -inf, so the final
 * draw walks the vocabulary in index order and does not depend on any sort. */
#include "sampling.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

sampler_params sampler_params_default(void) {
    sampler_params p = {0.0f, 0, 1.0f, 0.0f, 1.0f, 0};
    return p;
}

akv_status sampler_params_check(const sampler_params *p, akv_err *err) {
    if (!isfinite(p->temperature) || p->temperature < 0)
        return akv_fail(err, AKV_EINPUT, "temperature must be >= 0 (0 = greedy), not %g",
                        p->temperature);
    if (p->top_k < 0) return akv_fail(err, AKV_EINPUT, "top-k must be >= 0 (0 = off), not %d", p->top_k);
    if (!isfinite(p->top_p) || p->top_p <= 0 || p->top_p > 1)
        return akv_fail(err, AKV_EINPUT, "top-p must be in (0, 1] (1 = off), not %g", p->top_p);
    if (!isfinite(p->min_p) || p->min_p < 0 || p->min_p > 1)
        return akv_fail(err, AKV_EINPUT, "min-p must be in [0, 1] (0 = off), not %g", p->min_p);
    if (!isfinite(p->repetition_penalty) || p->repetition_penalty <= 0)
        return akv_fail(err, AKV_EINPUT, "repetition penalty must be > 0 (1 = off), not %g",
                        p->repetition_penalty);
    return AKV_OK;
}

size_t sampler_scratch_floats(int vocab) { return 2 * (size_t)(vocab > 0 ? vocab : 0); }

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t sampler_rng(uint64_t seed, uint64_t seq, uint64_t step) {
    uint64_t s = seed;
    s = splitmix64(&s) ^ seq;
    s = splitmix64(&s) ^ step;
    return splitmix64(&s);
}

double sampler_uniform(uint64_t *state) {
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

/* First index of the largest value; NaN never wins (x > NaN and NaN > x are both false). */
static int32_t argmax_nan(const float *x, int n) {
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best < 0 ? 0 : best;
}

/* CTRL penalty, once per distinct id: an entry already changed is not changed again (a
 * penalty != 1 moves every finite nonzero logit; zeros and infinities are fixed points). */
static void apply_penalty(float *x, const float *logits, int vocab, float rp, const int32_t *h,
                          int n_hist) {
    for (int i = 0; i < n_hist; i++) {
        int32_t id = h[i];
        if (id < 0 || id >= vocab || isnan(logits[id]) || x[id] != logits[id]) continue;
        x[id] = x[id] > 0 ? x[id] / rp : x[id] * rp;
    }
}

/* The k-th largest of v[0..n) (1-based, k <= n); reorders v. Quickselect (Hoare partition),
 * O(n) expected. */
static float kth_largest(float *v, ptrdiff_t n, ptrdiff_t k) {
    ptrdiff_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return v[want]; /* between the halves: equal to the pivot */
    }
    return v[want];
}

static void top_k_filter(float *x, float *tmp, int vocab, int k) {
    if (k <= 0 || k >= vocab) return;
    memcpy(tmp, x, (size_t)vocab * sizeof *x);
    float thr = kth_largest(tmp, vocab, k);
    for (int i = 0; i < vocab; i++)
        if (x[i] < thr) x[i] = -INFINITY;
}

static int desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Keeps the most likely tokens while the mass before them is < top_p (ties of the last kept
 * probability are kept too). p: unnormalized probabilities with total z; tmp: [vocab]. */
static void top_p_filter(float *p, float *tmp, int vocab, double z, float top_p) {
    size_t m = 0;
    for (int i = 0; i < vocab; i++)
        if (p[i] > 0) tmp[m++] = p[i];
    qsort(tmp, m, sizeof *tmp, desc);
    double acc = 0, want = (double)top_p * z;
    float thr = m ? tmp[m - 1] : 0;
    for (size_t j = 0; j < m; j++) {
        acc += tmp[j];
        if (acc >= want) {
            thr = tmp[j];
            break;
        }
    }
    for (int i = 0; i < vocab; i++)
        if (p[i] < thr) p[i] = 0;
}

/* p[i] = exp(x[i] - max x); returns the sum. */
static double softmax_unnorm(const float *x, float *p, int vocab) {
    float m = -INFINITY;
    for (int i = 0; i < vocab; i++)
        if (x[i] > m) m = x[i];
    double z = 0;
    for (int i = 0; i < vocab; i++) {
        p[i] = x[i] == -INFINITY ? 0.0f : expf(x[i] - m);
        z += p[i];
    }
    return z;
}

/* One draw from unnormalized p in index order. */
static int32_t draw(const float *p, int vocab, double z, uint64_t *rng) {
    double u = sampler_uniform(rng) * z, acc = 0;
    int32_t last = -1;
    for (int i = 0; i < vocab; i++) {
        if (p[i] <= 0) continue;
        acc += p[i];
        last = i;
        if (acc > u) return i;
    }
    return last; /* rounding left u at the very top */
}

int32_t sample_token(const float *logits, int vocab, const sampler_params *p,
                     const int32_t *history, int n_hist, uint64_t *rng_state, float *scratch) {
    int penal = p->repetition_penalty != 1.0f && n_hist > 0;
    if (p->temperature <= 0 && !penal) return argmax_nan(logits, vocab);
    float *x = scratch, *q = scratch + vocab;
    for (int i = 0; i < vocab; i++) x[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    if (penal) apply_penalty(x, logits, vocab, p->repetition_penalty, history, n_hist);
    if (p->temperature <= 0) return argmax_nan(x, vocab);
    int32_t best = argmax_nan(x, vocab);
    if (x[best] == -INFINITY) return best; /* nothing to sample from */
    for (int i = 0; i < vocab; i++) x[i] /= p->temperature;
    top_k_filter(x, q, vocab, p->top_k);
    double z = softmax_unnorm(x, q, vocab); /* from here on q holds the probabilities */
    if (p->top_p < 1.0f) top_p_filter(q, x, vocab, z, p->top_p);
    if (p->min_p > 0) {
        float pmax = 0;
        for (int i = 0; i < vocab; i++) pmax = q[i] > pmax ? q[i] : pmax;
        for (int i = 0; i < vocab; i++)
            if (q[i] < p->min_p * pmax) q[i] = 0;
    }
    z = 0;
    for (int i = 0; i < vocab; i++) z += q[i];
    return draw(q, vocab, z, rng_state);
}
