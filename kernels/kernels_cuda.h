/* kernels_cuda.h — the CUDA launchers of the full-precision path, one per kernels/<op>.cu, each
 * tested against the scalar twin of the same name (kernels.h) by tests/gpu_kernels.c.
 * Includable from C. Contract shared by every launcher:
 *   - all pointers are device pointers unless a comment says otherwise; tensors are dense
 *     row-major, fp32 unless named bf16/fp16 (stored as uint16_t bit patterns);
 *   - work is enqueued on `stream`, a stream the caller created (NULL, the legacy default
 *     stream, is refused), and the launcher returns at once; nothing is allocated after init;
 *   - the return value is cudaSuccess, cudaErrorInvalidValue when a precondition fails (one line
 *     on stderr names it), or the launch error. Callers wrap them in CUDA_CHECK (cuda_check.h).
 *   - no launcher synchronizes; buffers must stay valid until the stream reaches the work. */
#ifndef ASYMKV_KERNELS_CUDA_H
#define ASYMKV_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i][:] = fp32(table[ids[i]][:]). table: bf16 [vocab][dim]; out [n][dim]. An id outside
 * [0, vocab) makes its row NaN (the caller validates ids; this only keeps reads in bounds). */
cudaError_t embedding_cuda(float *out, const uint16_t *table, int vocab, const int32_t *ids, int n,
                           int dim, cudaStream_t stream);

/* RMSNorm per row, as rmsnorm_ref: out = w * (x * 1/sqrt(mean(x^2) + eps)). x, out [n][dim]
 * (out may alias x), w [dim]. */
cudaError_t rmsnorm_cuda(float *out, const float *x, const float *w, int n, int dim, float eps,
                         cudaStream_t stream);

/* RoPE in place, as rope_ref (rotate_half layout). x [n][n_heads][head_dim]; pos [n] (device);
 * inv_freq [head_dim/2]: the table rope_inv_freq_ref computed on the host, uploaded once, so
 * both schedules (default, llama3) come out of the same code. head_dim even, <= 512. */
cudaError_t rope_cuda(float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                      const float *inv_freq, cudaStream_t stream);

/* out[i] = silu(gate[i]) * up[i] (out may alias gate). */
cudaError_t swiglu_cuda(float *out, const float *gate, const float *up, size_t n,
                        cudaStream_t stream);

/* x[i] += y[i]. */
cudaError_t add_cuda(float *x, const float *y, size_t n, cudaStream_t stream);

/* out[r] = argmax of row r of x [n_rows][n], the first index on ties (argmax_ref). NaN-free. */
cudaError_t argmax_cuda(int32_t *out, const float *x, int n_rows, int n, cudaStream_t stream);

/* ---- linear layers through cuBLASLt ----
 * out[n][m] = x[n][k] · w[m][k]^T (+ bias[m]), w bf16 on the device, x and out fp32, bias fp32
 * or NULL. x is rounded to bf16 (one small kernel into the context's buffer), the product runs on
 * the tensor cores with fp32 accumulation and an fp32 output (the bias is fused as an epilogue).
 * Accuracy against matmul_ref fed the same bf16 weights: each output differs by at most
 * 2^-8 · sum_j |x_j w_j| (the rounding of x), ~1e-3 relative in norm on random data.
 * A context is used by one stream at a time (its bf16 buffer is shared by every call). */
typedef struct matmul_ctx matmul_ctx;

/* max_x_elems: the largest n*k any call will pass (sizes the bf16 activation buffer). */
akv_status matmul_ctx_init(matmul_ctx **out, size_t max_x_elems, akv_err *err);
void matmul_ctx_free(matmul_ctx *ctx); /* NULL-safe; its cudaFree waits for pending work */

akv_status matmul_cuda(matmul_ctx *ctx, float *out, const float *x, const uint16_t *w,
                       const float *bias, int n, int k, int m, cudaStream_t stream, akv_err *err);

/* ---- attention over an fp16 K/V cache (fp16 Q and P on the tensor cores, fp32 softmax and
 * accumulation; agrees with attention_ref fed the same fp16 K/V to ~1e-3, see the tests) ----
 * Supported head_dim: 64, 80, 96, 128. Cache rows: position t, kv head g at
 * (t * n_kv_heads + g) * head_dim halves from a sequence's base; bases 16-byte aligned. */

/* Causal prefill of one sequence, as attention_ref: q, out [n_q][n_heads][head_dim]; k, v fp16
 * [>= pos0 + n_q][n_kv_heads][head_dim]; query i at position pos0 + i sees keys 0 .. pos0 + i.
 * Flash-style tiles with an online softmax; no n_q x n_keys buffer. */
cudaError_t attention_prefill_cuda(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                                   int n_q, int pos0, int n_heads, int n_kv_heads, int head_dim,
                                   float scale, cudaStream_t stream);

/* Decode: one query per sequence, n_batch sequences, each over its own cache slot. */
typedef struct attention_decode_args {
    float *out;            /* [n_batch][n_heads][head_dim] */
    const float *q;        /* [n_batch][n_heads][head_dim] */
    const uint16_t *k, *v; /* fp16 cache, slot s starts at s * seq_stride halves */
    size_t seq_stride;     /* halves between slots (a multiple of 8) */
    const int32_t *slots;  /* [n_batch] cache slot of each query; NULL: query b uses slot b */
    const int32_t *lens;   /* [n_batch] keys each query sees (its position + 1), 1 .. max_len;
                              a length outside that range makes the query's output NaN */
    int n_batch, max_len, n_heads, n_kv_heads, head_dim;
    float scale;
    void *workspace; /* attention_decode_workspace_bytes() bytes, device */
    size_t workspace_bytes;
} attention_decode_args;

/* Flash-decoding: the context is cut in splits (a function of n_batch, n_kv_heads and max_len);
 * one kernel writes each split's max, sum and unnormalized output, a second combines them. */
cudaError_t attention_decode_cuda(const attention_decode_args *a, cudaStream_t stream);
size_t attention_decode_workspace_bytes(int n_batch, int n_heads, int n_kv_heads, int head_dim,
                                        int max_len);

#ifdef __cplusplus
}
#endif
#endif
