/* sample_cuda.h — the CUDA twin of runtime/sampling.c's sample_token: repetition penalty,
 * temperature, top-k, top-p, min-p and one draw, for a batch of rows with per-row settings, on
 * the device (kernels/sample.cu). Includable from C. Same contract as kernels_cuda.h: device
 * pointers, the caller's stream (NULL refused), nothing allocated, cudaError_t returned.
 * Tested against sample_token by tests/gpu_sample.c. */
#ifndef ASYMKV_SAMPLE_CUDA_H
#define ASYMKV_SAMPLE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The settings of one row. Mirrors runtime/sampling.h's sampler_params field by field (same
 * types, same order, so the same layout: an array of sampler_params can be uploaded as is);
 * kernels/ does not include runtime/. Assumed checked (sampler_params_check). seed is unused
 * here: the row's RNG state comes in sample_cuda_args.rng. */
typedef struct sample_params_dev {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    float min_p;       /* 0 = off */
    float repetition_penalty; /* 1 = off */
    uint64_t seed;
} sample_params_dev;
#ifdef __cplusplus
static_assert(sizeof(sample_params_dev) == 32, "sample_params_dev is 32 bytes");
#else
_Static_assert(sizeof(sample_params_dev) == 32, "sample_params_dev is 32 bytes");
#endif

typedef struct sample_cuda_args {
    int32_t *out;  /* [n_rows] sampled ids */
    float *logits; /* [n_rows][vocab]; NaN counts as -inf. Scratch: a row that is not greedy
                      without penalty is overwritten (with its probabilities) */
    int n_rows, vocab;
    const sample_params_dev *params; /* [n_rows] */
    const uint64_t *rng; /* [n_rows] RNG state of each row: sampler_rng(seed, seq, step),
                            computed on the host; read, not advanced; greedy rows ignore it */
    int32_t *hist;       /* [n_slots][hist_cap] repetition-penalty history of each slot, or NULL
                            (no penalty, no append) */
    int32_t *hist_len;   /* [n_slots] ids stored in each slot's history (values outside
                            [0, hist_cap] are clamped when read). The kernel applies the penalty
                            over hist[slot][0 .. len) and then, when len < hist_cap, appends the
                            sampled id at hist[slot][len] and stores len + 1; a full history is
                            left as it is. Unused when hist is NULL. */
    const int32_t *row_slot; /* [n_rows] slot of each row, in [0, n_slots), distinct rows on
                                distinct slots; NULL: row r uses slot r */
    int hist_cap;
    void *workspace; /* sample_cuda_workspace_bytes(n_rows, vocab) bytes */
    size_t workspace_bytes;
} sample_cuda_args;

/* out[r] = sample_token(logits[r], vocab, &params[r], hist[slot], hist_len[slot], &rng[r]) for
 * every row: the same token as the scalar twin, not just the same distribution. The
 * probabilities use the exact algorithm of glibc's x86-64 FMA expf, so they are bit-identical
 * to the host's; the double sums are taken in another order (a tree instead of index order),
 * so a draw that lands within ~1e-12 relative of a bucket edge may pick the neighbour.
 * One 1024-thread block per row; 1 <= vocab <= 2^30. Greedy without penalty reads the row once;
 * sampling makes a few passes, plus ~31 for top-p (a bisection over probability bit patterns).
 * Workspace: a float copy of every row (the penalized, scaled logits). */
cudaError_t sample_cuda(const sample_cuda_args *a, cudaStream_t stream);
size_t sample_cuda_workspace_bytes(int n_rows, int vocab);

#ifdef __cplusplus
}
#endif
#endif
