/* kernels.h — the math of one decoder stage, as scalar C reference functions ("twins").
 * The CPU backend runs these directly; every CUDA kernel (kernels/<op>.cu) is tested against
 * the twin of the same name. All arithmetic is fp32, tensors are dense row-major.
 * Functions never allocate; scratch buffers are passed by the caller. */
#ifndef ASYMKV_KERNELS_H
#define ASYMKV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[n][dim] = table[ids[i]][dim]. table: [vocab][dim]. ids must be in range (caller checks). */
void embedding_ref(float *out, const float *table, const int32_t *ids, int n, int dim);

/* RMSNorm as in HF Llama: y = x / sqrt(mean(x^2) + eps) * w, per row. x, out: [n][dim]
 * (out may alias x). */
void rmsnorm_ref(float *out, const float *x, const float *w, int n, int dim, float eps);

/* out[n][m] = x[n][k] · w[m][k]^T + bias[m] (bias may be NULL). out must not alias x. */
void matmul_ref(float *out, const float *x, const float *w, const float *bias, int n, int k, int m);
/* CPU threads matmul_ref splits a large product over (blocks of w rows; every output is summed
 * the same way on any thread, so results never depend on the count). 1 without OpenMP. */
void kernels_set_threads(int n);
int kernels_threads(void);

/* RoPE frequency schedules: plain rope_theta, and Llama 3.1's piecewise "llama3" scaling. */
typedef enum rope_kind { ROPE_DEFAULT = 0, ROPE_LLAMA3 = 1 } rope_kind;

typedef struct rope_params {
    rope_kind kind;
    double theta;            /* rope_theta */
    double factor;           /* llama3: scaling factor */
    double low_freq_factor;  /* llama3 */
    double high_freq_factor; /* llama3 */
    int original_max_pos;    /* llama3: original_max_position_embeddings */
} rope_params;

/* inv_freq[head_dim/2] for the schedule (HF's _compute_default/_compute_llama3_parameters). */
void rope_inv_freq_ref(float *inv_freq, int head_dim, const rope_params *p);

/* Rotates x in place, HF "rotate_half" layout: channel i pairs with i + head_dim/2.
 * x: [n][n_heads][head_dim]; pos[n] the absolute position of each row. */
void rope_ref(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq);

/* Causal GQA attention of n_q new queries at positions pos0 .. pos0+n_q-1 against a cache that
 * holds keys/values for positions 0 .. pos0+n_q-1 (query i sees keys 0 .. pos0+i).
 * q, out: [n_q][n_heads][head_dim]; k, v: [>= pos0+n_q][n_kv_heads][head_dim];
 * head h uses kv head h / (n_heads / n_kv_heads). scale multiplies q·k (usually 1/sqrt(head_dim)).
 * scratch: at least pos0 + n_q floats. Softmax in fp32 with max subtraction. */
void attention_ref(float *out, const float *q, const float *k, const float *v, int n_q, int pos0,
                   int n_heads, int n_kv_heads, int head_dim, float scale, float *scratch);

/* out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)). out may alias gate. */
void swiglu_ref(float *out, const float *gate, const float *up, size_t n);

/* Residual add: x[i] += y[i]. */
void add_ref(float *x, const float *y, size_t n);

/* Index of the largest element; the first one on ties (like torch.argmax). */
int argmax_ref(const float *x, int n);

#ifdef __cplusplus
}
#endif
#endif
