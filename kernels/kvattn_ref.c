/* kvattn_ref.c — reference causal attention over the compressed KV cache (quantized blocks +
 * fp16 window + the new tokens), computed directly on the codes through the scale/zero
 * identities of design §4 — the twin of the fused CUDA decode kernel. */
#include <math.h>

#include "common.h"
#include "kvquant.h"

/* Logits of query qh against the quantized key blocks [0, kq): per block and channel,
 * w_c = q_c * scale_c and beta = sum_c q_c * zero_c, then logit_t = beta + sum_c w_c * code. */
static void logits_quant_keys(float *lg, const float *qh, int g, const kvq_view *kv, float *w) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group, b = kv->k_bits;
    const size_t unit = kvq_group_bytes(b, G);
    for (int blk = 0; blk < kv->kq / G; blk++) {
        const uint8_t *base = kv->k_quant + ((size_t)blk * H + g) * D * unit;
        float beta = 0.0f;
        for (int c = 0; c < D; c++) {
            uint16_t s16, z16;
            memcpy(&s16, base + c * unit + (size_t)G * b / 8, 2);
            memcpy(&z16, base + c * unit + (size_t)G * b / 8 + 2, 2);
            w[c] = qh[c] * akv_f16_to_f32(s16);
            beta += qh[c] * akv_f16_to_f32(z16);
        }
        for (int t = 0; t < G; t++) {
            float acc = beta;
            for (int c = 0; c < D; c++) acc += w[c] * (float)kvq_code(base + c * unit, b, t);
            lg[blk * G + t] = acc;
        }
    }
}

static float dot_win(const float *q, const void *win, int bits, size_t off, int n) {
    float acc = 0.0f;
    for (int c = 0; c < n; c++) acc += q[c] * kvq_win_load(win, bits, off + (size_t)c);
    return acc;
}

static float dot_f32(const float *q, const float *k, int n) {
    float acc = 0.0f;
    for (int c = 0; c < n; c++) acc += q[c] * k[c];
    return acc;
}

/* Softmax-weighted sum over the quantized values [0, vq): per token and channel group,
 * o_c += (a_t * scale) * code_c, and Z_group += a_t * zero, added once per channel. */
static void out_quant_values(float *o, const float *a, int g, const kvq_view *kv, float *zsum) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group, b = kv->v_bits;
    const size_t unit = kvq_group_bytes(b, G);
    const int ng = D / G;
    if (kv->vq == 0) return; /* nothing quantized (always so for 16-bit values) */
    for (int j = 0; j < ng; j++) zsum[j] = 0.0f;
    for (int p = 0; p < kv->vq; p++) {
        const uint8_t *base = kv->v_quant + ((size_t)p * H + g) * ng * unit;
        for (int j = 0; j < ng; j++) {
            uint16_t s16, z16;
            memcpy(&s16, base + j * unit + (size_t)G * b / 8, 2);
            memcpy(&z16, base + j * unit + (size_t)G * b / 8 + 2, 2);
            float as = a[p] * akv_f16_to_f32(s16);
            zsum[j] += a[p] * akv_f16_to_f32(z16);
            for (int i = 0; i < G; i++) o[j * G + i] += as * (float)kvq_code(base + j * unit, b, i);
        }
    }
    for (int c = 0; c < D; c++) o[c] += zsum[c / G];
}

/* One query row: logits over [0, P], softmax, weighted sum. */
static void attend_row(float *oh, const float *qh, int P, int g, const kvq_view *kv,
                       const float *k_new, const float *v_new, float scale, float *lg,
                       float *tmp) {
    const int D = kv->head_dim, row = kv->n_kv_heads * D;
    logits_quant_keys(lg, qh, g, kv, tmp);
    for (int p = kv->kq; p < kv->len && p <= P; p++)
        lg[p] = dot_win(qh, kv->k_win, kv->k_bits, (size_t)(p % kv->k_cap) * row + (size_t)g * D, D);
    for (int p = kv->len; p <= P; p++)
        lg[p] = dot_f32(qh, k_new + (size_t)(p - kv->len) * row + (size_t)g * D, D);
    float mx = -INFINITY, sum = 0.0f;
    for (int p = 0; p <= P; p++) {
        lg[p] *= scale;
        mx = lg[p] > mx ? lg[p] : mx;
    }
    for (int p = 0; p <= P; p++) sum += (lg[p] = expf(lg[p] - mx));
    for (int p = 0; p <= P; p++) lg[p] /= sum;
    for (int c = 0; c < D; c++) oh[c] = 0.0f;
    out_quant_values(oh, lg, g, kv, tmp);
    for (int p = kv->vq; p <= P; p++) {
        const float a = lg[p];
        if (p < kv->len) {
            const size_t off = (size_t)(p % kv->v_cap) * row + (size_t)g * D;
            for (int c = 0; c < D; c++) oh[c] += a * kvq_win_load(kv->v_win, kv->v_bits, off + c);
        } else {
            const float *vr = v_new + (size_t)(p - kv->len) * row + (size_t)g * D;
            for (int c = 0; c < D; c++) oh[c] += a * vr[c];
        }
    }
}

void kvattn_ref(float *out, const float *q, int n_q, int n_heads, const kvq_view *kv,
                const float *k_new, const float *v_new, float scale, float *scratch) {
    const int D = kv->head_dim, per_kv = n_heads / kv->n_kv_heads;
    float *lg = scratch, *tmp = scratch + kv->len + n_q;
    for (int i = 0; i < n_q; i++)
        for (int h = 0; h < n_heads; h++)
            attend_row(out + ((size_t)i * n_heads + h) * D, q + ((size_t)i * n_heads + h) * D,
                       kv->len + i, h / per_kv, kv, k_new, v_new, scale, lg, tmp);
}
