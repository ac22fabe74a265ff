/* stage.h — one pipeline stage on one device: a contiguous span of decoder layers with its
 * KV cache, plus the embedding (first stage) and final norm + LM head (last stage).
 * A forward call takes a batch of n tokens from one or more resident sequences: the tokens of
 * one sequence are contiguous, in position order, and continue where that sequence's cache
 * ends (a prefill chunk is many tokens of one sequence; a decode step is one token of each of
 * several sequences). The result of each token does not depend on what else is in the batch,
 * so any chunking or micro-batching gives bitwise-identical outputs on the CPU backend (the CUDA
 * backend agrees with it to its bf16 / fp16 rounding; its prefill and decode paths round
 * differently). Not thread-safe. */
#ifndef ASYMKV_STAGE_H
#define ASYMKV_STAGE_H

#include "config.h"
#include "kvconfig.h"
#include "kvdiag.h"
#include "kvcache.h"
#include "safetensors.h"
#include "sampling.h"
#include "weights.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct stage stage_t;

/* The backend table (design §1): where a stage runs. */
typedef enum stage_backend {
    STAGE_CPU = 0,  /* the kernels/ scalar twins, fp32 weights, activations in host memory */
    STAGE_CUDA = 1, /* runtime/stage_cuda.c: bf16 weights, one device arena, its own stream */
} stage_backend;

typedef struct stage_opts {
    int n_seq;      /* resident sequence slots (--batch) */
    int ctx;        /* positions per sequence (--ctx) */
    int max_tokens; /* most tokens one forward call may carry (prefill chunk or batch) */
    const kv_config *kv; /* per-layer K/V widths (global layer indices); NULL = fp16 */
    int diag;            /* keep kvdiag shadow caches (asymkv eval --diag; CPU only) */
    stage_backend backend;
    int device;          /* CUDA ordinal (STAGE_CUDA) */
    /* STAGE_CUDA only: read the weights straight from this checkpoint (bf16 uploaded as
     * stored, fp16/fp32 converted in chunks) instead of w's fp32 arrays, which are then not
     * loaded (w gives the layer span; the extras are with_embed / with_head; the checkpoint's
     * shapes must have been validated, weights_check_all). NULL: use w. */
    const st_model *src;
    int with_embed, with_head;
} stage_opts;

/* GPUs this process sees (0 without CUDA in the build, or without a driver). */
int stage_cuda_devices(void);

/* Borrows c and w (they must outlive the stage; the CUDA stage copies the weights to the device
 * at init, after which the caller may release w's layer arrays with weights_free). */
akv_status stage_init(stage_t **out, const model_config *c, const stage_weights *w,
                      const stage_opts *o, akv_err *err);
void stage_free(stage_t *s); /* NULL-safe */

stage_backend stage_get_backend(const stage_t *s);
/* The CUDA stage's stream (cudaStream_t) that all its work runs on; NULL for the CPU. */
void *stage_stream(const stage_t *s);

/* Activation buffers live in the backend's memory: host for the CPU, device for CUDA. The
 * x arguments below are such buffers; ids, seq, logits and ids_out are always host memory. */
akv_status stage_act_alloc(stage_t *s, size_t n_floats, float **out, akv_err *err);
void stage_act_free(stage_t *s, float *x); /* NULL-safe */
/* Copies between an activation buffer and host memory (for transports that need host
 * buffers); they return when the copy is complete. */
akv_status stage_act_to_host(stage_t *s, float *host, const float *x, size_t n, akv_err *err);
akv_status stage_act_from_host(stage_t *s, float *x, const float *host, size_t n, akv_err *err);

/* First stage: x[n][hidden] = embedding of ids (ids must be in [0, vocab)). */
akv_status stage_embed(stage_t *s, const int32_t *ids, int n, float *x, akv_err *err);

/* Runs the span's layers in place on x[n][hidden]; seq[i] is token i's slot. */
akv_status stage_forward(stage_t *s, int n, const int32_t *seq, float *x, akv_err *err);

/* Last stage: logits[n][vocab] (host) = lm_head(final_norm(x)). x is left unchanged. */
akv_status stage_head(stage_t *s, int n, const float *x, float *logits, akv_err *err);

/* Last stage: the head of rows[r] of x and one sampled token per row (sampling.h's
 * sample_token, on the device for CUDA; only the ids come back). slots[r] is the row's sequence
 * slot, whose history (stage_hist_set) the repetition penalty reads and the sampled id is
 * appended to; sp[r] NULL = greedy; rng[r] = sampler_rng(...) of the row. */
akv_status stage_sample(stage_t *s, int n_rows, const int32_t *rows, const int32_t *slots,
                        const sampler_params *const *sp, const uint64_t *rng, const float *x,
                        int32_t *ids_out, akv_err *err);
/* Sets a slot's sampling history (the prompt) on the last stage; at most --ctx ids. */
akv_status stage_hist_set(stage_t *s, int slot, const int32_t *ids, int n, akv_err *err);

/* Measured copy bandwidth of the stage's memory in bytes/s (read + write counted once each, so
 * a copy of n bytes moves 2n): a 512 MiB device-to-device copy timed with events on the GPU, a
 * 256 MiB memcpy on the CPU; best of 3. The floor of a memory-bound step is its bytes over this. */
akv_status stage_bandwidth(stage_t *s, double *bytes_per_s, akv_err *err);

/* Returns when all work queued on the stage has finished (a no-op on the CPU). */
akv_status stage_sync(stage_t *s, akv_err *err);

/* Positions stored for a sequence; forgetting a sequence frees its slot. */
int stage_seq_len(const stage_t *s, int seq);
void stage_seq_reset(stage_t *s, int seq);

/* The stored keys and values of (local layer, seq) as the attention sees them: k, v fp16
 * [len][n_kv_heads][head_dim] (quantized positions dequantized, then rounded to fp16; window
 * positions as stored). Returns len. For tests and diagnostics (synchronous on the GPU). */
int stage_kv_dump(stage_t *s, int layer, int seq, uint16_t *k, uint16_t *v, akv_err *err);

/* Device bytes the CUDA stage allocated at init (its arena); 0 on the CPU. */
size_t stage_device_bytes(const stage_t *s);

/* Weight bytes the stage holds (fp32 on the CPU, bf16 + fp32 norms/biases on the device). */
size_t stage_weight_bytes(const stage_t *s);

/* KV cache bytes allocated for local layer l / in total (kvcfg_layer_bytes per layer). */
size_t stage_kv_layer_bytes(const stage_t *s, int layer);
size_t stage_kv_bytes(const stage_t *s);

/* With opts.diag: whether later forward calls add to the K-vs-V error measurements (on by
 * default; only decode steps — runs of one token — are measured, the shadow caches are fed
 * either way), and the per-layer results (local layer index). */
void stage_diag_measure(stage_t *s, int on);
const kvdiag *stage_diag(const stage_t *s);

#ifdef __cplusplus
}
#endif
#endif
