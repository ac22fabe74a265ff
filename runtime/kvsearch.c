/* kvsearch.c — exact multiple-choice knapsack over per-tensor widths; see kvsearch.h. */
#include "kvsearch.h"

#include <math.h>
#include <stdlib.h>

static const int BITS[3] = {1, 2, 4};

/* Error of tensor i (even: K of layer i/2, odd: V) at width w. */
static double tensor_err(const double *ek, const double *ev, int i, int w) {
    return (i % 2 ? ev : ek)[(i / 2) * 3 + w];
}

akv_status kvsearch_solve(int n_layers, const double *err_k, const double *err_v,
                          double budget, kv_config *out, double *total, akv_err *err) {
    if (n_layers < 1 || n_layers > KV_MAX_LAYERS)
        return akv_fail(err, AKV_EINPUT, "search over %d layers is not supported", n_layers);
    if (!(budget >= 1.0))
        return akv_fail(err, AKV_EINPUT, "--budget must be at least 1 bit per value (the "
                        "smallest width), not %g", budget);
    const int n = 2 * n_layers;
    int cap = (int)floor(budget * n + 1e-9); /* bits that may be spent in all */
    if (cap > 4 * n) cap = 4 * n;
    const size_t W = (size_t)cap + 1;
    double *dp = malloc((size_t)(n + 1) * W * sizeof(double));
    signed char *pick = malloc((size_t)n * W);
    if (!dp || !pick) {
        free(dp);
        free(pick);
        return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    }
    for (size_t b = 0; b < W; b++) dp[b] = b == 0 ? 0.0 : INFINITY; /* exact bits spent */
    for (int i = 0; i < n; i++)
        for (size_t b = 0; b < W; b++) {
            double best = INFINITY;
            signed char arg = -1;
            for (int w = 0; w < 3; w++) {
                if ((size_t)BITS[w] > b) continue;
                double v = dp[(size_t)i * W + b - BITS[w]] + tensor_err(err_k, err_v, i, w);
                if (v < best) best = v, arg = (signed char)w;
            }
            dp[(size_t)(i + 1) * W + b] = best;
            pick[(size_t)i * W + b] = arg;
        }
    size_t bb = 0;
    for (size_t b = 1; b < W; b++)
        if (dp[(size_t)n * W + b] < dp[(size_t)n * W + bb]) bb = b;
    *total = dp[(size_t)n * W + bb];
    out->n_layers = n_layers;
    for (int i = n - 1; i >= 0; i--) {
        int w = pick[(size_t)i * W + bb];
        (i % 2 ? out->v_bits : out->k_bits)[i / 2] = (uint8_t)BITS[w];
        bb -= (size_t)BITS[w];
    }
    free(dp);
    free(pick);
    return AKV_OK;
}
