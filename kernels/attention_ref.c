/* attention_ref.c — scalar twin of causal grouped-query attention over a KV cache.
 * Layout: q, out [n_q][n_heads][head_dim]; k, v [positions][n_kv_heads][head_dim]; query i sits
 * at position pos0 + i and sees keys 0 .. pos0 + i. Tested in tests/test_ops.c. */
#include "kernels.h"

#include <math.h>

/* Shape of one call, so the per-head helper takes a handful of arguments. */
typedef struct attn_shape {
    int n_heads, n_kv_heads, head_dim;
    float scale;
} attn_shape;

static float dot(const float *a, const float *b, int d) {
    float s = 0.0f;
    for (int i = 0; i < d; i++) s += a[i] * b[i];
    return s;
}

/* probs[0..n_keys) = softmax(scale * q·k_t) for one head against kv head kvh. */
static void head_probs(float *probs, const float *qh, const float *k, int n_keys, int kvh,
                       const attn_shape *s) {
    size_t kv_stride = (size_t)s->n_kv_heads * s->head_dim;
    const float *kh = k + (size_t)kvh * s->head_dim;
    float mx = -INFINITY;
    for (int t = 0; t < n_keys; t++) {
        probs[t] = dot(qh, kh + t * kv_stride, s->head_dim) * s->scale;
        if (probs[t] > mx) mx = probs[t];
    }
    float sum = 0.0f;
    for (int t = 0; t < n_keys; t++) {
        probs[t] = expf(probs[t] - mx);
        sum += probs[t];
    }
    for (int t = 0; t < n_keys; t++) probs[t] /= sum;
}

/* oh = sum_t probs[t] * v_t for kv head kvh. */
static void head_mix(float *oh, const float *probs, const float *v, int n_keys, int kvh,
                     const attn_shape *s) {
    size_t kv_stride = (size_t)s->n_kv_heads * s->head_dim;
    const float *vh = v + (size_t)kvh * s->head_dim;
    for (int d = 0; d < s->head_dim; d++) oh[d] = 0.0f;
    for (int t = 0; t < n_keys; t++) {
        const float *vt = vh + t * kv_stride;
        for (int d = 0; d < s->head_dim; d++) oh[d] += probs[t] * vt[d];
    }
}

void attention_ref(float *out, const float *q, const float *k, const float *v, int n_q, int pos0,
                   int n_heads, int n_kv_heads, int head_dim, float scale, float *scratch) {
    attn_shape s = {n_heads, n_kv_heads, head_dim, scale};
    int group = n_heads / n_kv_heads;
    size_t row = (size_t)n_heads * head_dim;
    for (int i = 0; i < n_q; i++) {
        int n_keys = pos0 + i + 1; /* causal: keys 0 .. pos0 + i */
        for (int h = 0; h < n_heads; h++) {
            size_t off = i * row + (size_t)h * head_dim;
            head_probs(scratch, q + off, k, n_keys, h / group, &s);
            head_mix(out + off, scratch, v, n_keys, h / group, &s);
        }
    }
}
