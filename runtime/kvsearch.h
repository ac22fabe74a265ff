/* kvsearch.h — `eval --search-kv`: picks each layer's K and V width from {1, 2, 4} bits to
 * minimize the summed measured attention error (kvdiag, relative to each layer's output
 * energy) under an average code-bits budget. Exact: dynamic programming over (tensor, bits
 * spent), a multiple-choice knapsack. */
#ifndef ASYMKV_KVSEARCH_H
#define ASYMKV_KVSEARCH_H

#include "kvconfig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* err_k[l * 3 + w] / err_v[l * 3 + w]: error of layer l's K (V) at width {1, 2, 4}[w].
 * budget: average code bits per K/V element over all 2 * n_layers tensors (1 <= budget).
 * out gets the widths (its group/residual are left as the caller set them); *total the
 * summed error of the choice. */
akv_status kvsearch_solve(int n_layers, const double *err_k, const double *err_v,
                          double budget, kv_config *out, double *total, akv_err *err);

#ifdef __cplusplus
}
#endif
#endif
