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
#include "kvlayout.h"

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
 * Supported head_dim: 16, 32, 64, 80, 96, 128. Cache rows: position t, kv head g at
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

/* ---- compressed KV cache (kvlayout.h layout; kernels/kvquant.cu, kernels/kvattn.cu) ----
 * One sequence's cache of one layer on the device, its regions as kvlayout.h lays them out
 * (window slot = position % cap): the device twin of kvq_view. The host mirrors the counts
 * (len, kq, vq) and uploads an array of these per layer. Widths 16, 4, 2, 1 (the 32-bit
 * reference width is refused); regions 16-byte aligned. */
typedef struct kvq_seq_dev {
    uint8_t *k_quant;       /* key records (unused when k_bits == 16) */
    uint8_t *v_quant;       /* value records (unused when v_bits == 16) */
    uint16_t *k_win, *v_win; /* fp16 [k_cap | v_cap][n_kv_heads][head_dim] */
    int32_t len, kq, vq;    /* positions stored; [0,kq) keys and [0,vq) values quantized */
    int32_t k_cap, v_cap;   /* window slots (R, or ctx' for a 16-bit tensor) */
    int32_t pad_;
} kvq_seq_dev;

/* Decode append of one token per sequence (kvcache_append with n = 1), as three steps on the
 * device: (a) value flush: quantize the value at v_flush out of the window; (b) store the new
 * token's k and v (fp32 -> fp16) at slot pos % cap; (c) key flush: when the key window is full,
 * quantize the R keys from k_flush on into R/G key blocks. Records are bit-identical to
 * runtime/kvcache.c's. The host plans each sequence with kvl_append_plan (no device reads). */
typedef struct kvq_append_args {
    const kvq_seq_dev *seqs;  /* [n_batch] (device; counts unused) */
    const kvl_append_op *ops; /* [n_batch] (device) */
    const float *k, *v;       /* [n_batch][n_kv_heads][head_dim], stored as fp16 */
    int n_batch, n_kv_heads, head_dim, group, residual, k_bits, v_bits;
    int any_key_flush; /* nonzero if some ops[b].k_flush >= 0 (else step (c) is not launched) */
} kvq_append_args;
cudaError_t kvq_append_cuda(const kvq_append_args *a, cudaStream_t stream);

/* x[i] = fp32(fp16(x[i])), round to nearest even: kvq_round_f16's twin (what the cache stores). */
cudaError_t kvq_round_f16_cuda(float *x, size_t n, cudaStream_t stream);

/* The prefill path of a compressed layer (runtime/stage_cuda.c): one sequence's stored positions
 * as dense fp16 rows, then the chunk's new rows, attention over them, and the commit back.
 *  kvq_dense_cuda: k, v [len][n_kv_heads][head_dim] fp16 = the stored positions [0, len) of
 *    *seq (device; its counts kq, vq, caps are used, len is given here): quantized positions
 *    dequantized (q * scale + zero in fp32, rounded to fp16), window positions copied. Twin:
 *    kvq_view_dequantize (fp32), equal up to that fp16 rounding.
 *  kvq_commit_cuda: after the chunk's rows [len, len_new) were written into the same dense
 *    k, v, brings the cache to its state after appending them (counts planned on the host with
 *    kvl_advance): key blocks [kq, kq_new) and values [vq, vq_new) quantized from the dense rows
 *    (bit-identical to runtime/kvcache.c on the same fp16 values, which the window held exactly),
 *    then window slots p % cap written for keys [k_win0, len_new) and values [v_win0, len_new).
 *    A 16-bit tensor's "window" is its whole context. */
typedef struct kvq_commit_args {
    const kvq_seq_dev *seq;        /* (device) */
    const uint16_t *k, *v;         /* dense fp16 [len_new][n_kv_heads][head_dim] (device) */
    int kq, kq_new, vq, vq_new;    /* quantized counts before / after */
    int k_win0, v_win0, len_new;   /* window rows to write */
    int n_kv_heads, head_dim, group, k_bits, v_bits;
} kvq_commit_args;
cudaError_t kvq_dense_cuda(uint16_t *k, uint16_t *v, const kvq_seq_dev *seq, int len,
                           int n_kv_heads, int head_dim, int group, int k_bits, int v_bits,
                           cudaStream_t stream);
cudaError_t kvq_commit_cuda(const kvq_commit_args *a, cudaStream_t stream);

/* dst[i] = fp16(src[i]) (round to nearest even). */
cudaError_t f32_to_f16_cuda(uint16_t *dst, const float *src, size_t n, cudaStream_t stream);

/* Decode attention over the compressed cache, one new query per sequence: kvattn_ref with
 * n_q = 1 for each sequence (its stored positions plus the new token, whose k/v are passed in),
 * reading the codes directly (no dequantized copy), flash-decoding style: split kernels write
 * per-part (max, sum, unnormalized output), a combine kernel merges them and the new token.
 *   KVATTN_MMA (tensor cores, kvattn_tc.cuh): every stored position through mma.sync m16n8k16
 *     with the cache as the A operand and the (<= 8) query heads of a GQA group as N: codes
 *     turned into exact fp16 operands, q * key scale and p * value scale as fp16, fp32
 *     accumulation; the fp16 window through the same tiles. Needs G 32, head_dim 64, 80, 96
 *     or 128, a quantized K or V (16/16 is attention_decode's), and
 *     |q_c * scale * log2(e) * key scale_c| < 512 for 1-bit keys (fp16 operands). Accuracy
 *     against kvattn_ref: max |d| <= 1e-3 (|ref| + 1), relative L2 <= 2e-3 (tests/gpu_kvattn.c).
 *   KVATTN_SCALAR: fp32 per-position math over every position (any shape the cache takes;
 *     ~1e-5 relative against kvattn_ref).
 *   KVATTN_AUTO:   MMA when supported, else SCALAR.
 * A sequence whose counts are inconsistent (or len + 1 > max_len, or a tail over max_tail) gets
 * NaN outputs. */
enum { KVATTN_AUTO = 0, KVATTN_SCALAR = 1, KVATTN_MMA = 2 };

/* 32-position tiles of a sequence the tensor-core kernel reads with every quantized tensor
 * fully quantized (its "fast" tiles); the rest, up to len, is the tail (window, partial tiles). */
KVL_FN int kvattn_fast_tiles(int kq, int vq, int k_bits, int v_bits) {
    const int kb = kvl_is_quant(k_bits), vb = kvl_is_quant(v_bits);
    const int n = kb && vb ? (kq < vq ? kq : vq) : kb ? kq : vb ? vq : 0;
    return n / KVL_TILE;
}
/* Stored positions past the fast tiles (what max_tail bounds). */
KVL_FN int kvattn_tail_len(int len, int kq, int vq, int k_bits, int v_bits) {
    return len - KVL_TILE * kvattn_fast_tiles(kq, vq, k_bits, v_bits);
}

typedef struct kvattn_args {
    float *out;                 /* [n_batch][n_heads][head_dim] */
    const float *q;             /* [n_batch][n_heads][head_dim] */
    const float *k_new, *v_new; /* [n_batch][n_kv_heads][head_dim], fp16-rounded */
    const kvq_seq_dev *seqs;    /* [n_batch] (device) */
    int n_batch;
    int max_len;  /* >= len + 1 of every sequence */
    int max_tail; /* >= kvattn_tail_len() of every sequence (<= 0: max_len) */
    int n_heads, n_kv_heads, head_dim, group, k_bits, v_bits;
    float scale;
    int impl; /* KVATTN_AUTO / KVATTN_SCALAR / KVATTN_MMA */
    void *workspace; /* kvattn_workspace_bytes(a) bytes, device */
    size_t workspace_bytes;
} kvattn_args;
cudaError_t kvattn_cuda(const kvattn_args *a, cudaStream_t stream);
size_t kvattn_workspace_bytes(const kvattn_args *a); /* 0 if the shape is unsupported */

#ifdef __cplusplus
}
#endif
#endif
