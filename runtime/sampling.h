/* sampling.h — picking the next token from a row of logits: greedy, temperature, top-k, top-p,
 * min-p and repetition penalty, with a counter-based RNG so that a seed reproduces a run on any
 * number of ranks. Pure and backend-independent (a CUDA twin follows). Tested in
 * tests/test_sampling.c. */
#ifndef ASYMKV_SAMPLING_H
#define ASYMKV_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The order of operations is transformers' (generate()): repetition penalty, temperature,
 * top-k, top-p, min-p, then one draw. */
typedef struct sampler_params {
    float temperature;        /* 0 = greedy: argmax, first index on ties (like argmax_ref) */
    int top_k;                /* keep the k largest logits (all ties of the k-th); 0 = off */
    float top_p;              /* keep the smallest most-likely set with mass >= top_p; 1 = off */
    float min_p;              /* drop tokens with p < min_p * p_max; 0 = off */
    float repetition_penalty; /* CTRL: logits of tokens in history: > 0 divided, < 0 multiplied
                                 by it (once per distinct token); 1 = off */
    uint64_t seed;
} sampler_params;

/* Greedy, no penalty, seed 0. */
sampler_params sampler_params_default(void);

/* AKV_EINPUT naming the bad field and its valid range (temperature >= 0, top_k >= 0,
 * 0 < top_p <= 1, 0 <= min_p <= 1, repetition_penalty > 0, all finite). */
akv_status sampler_params_check(const sampler_params *p, akv_err *err);

/* Floats of scratch sample_token needs for a vocabulary of `vocab`. */
size_t sampler_scratch_floats(int vocab);

/* The RNG. Its state for sequence `seq` (the index of the prompt in the whole job, not in a
 * rank's batch) at generation step `step` (0 for the first new token) is
 * sampler_rng(seed, seq, step): it depends on nothing else, so a run gives the same tokens
 * whatever the number of ranks, the batch composition or the order sequences are processed
 * in. A step draws from it with sampler_uniform (splitmix64), which advances the state. */
uint64_t sampler_rng(uint64_t seed, uint64_t seq, uint64_t step);
double sampler_uniform(uint64_t *state); /* uniform in [0, 1), 53 bits */

/* The next token. logits: [vocab] (NaN counts as -inf). history: the ids the repetition
 * penalty applies to (prompt and generated so far; ids outside [0, vocab) are ignored; may be
 * NULL when n_hist is 0). rng_state: see sampler_rng; greedy does not touch it, any other
 * setting draws exactly one number. scratch: sampler_scratch_floats(vocab) floats (unused by
 * greedy without penalty, may then be NULL). Params are assumed checked. */
int32_t sample_token(const float *logits, int vocab, const sampler_params *p,
                     const int32_t *history, int n_hist, uint64_t *rng_state, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
