/* kvattn_ref.c — reference causal attention over the compressed KV cache (quantized blocks +
 * fp16 window + the new tokens), computed directly on the codes through the scale/zero
 * identities of design §4 — the twin of the fused CUDA decode kernel. Codes are read through
 * kvlayout.h (decoded once per kv head and call, then shared by its query rows). The query rows of a call
 * are split over CPU threads (kernels_threads()) when there is enough work; every row is
 * computed the same way on any thread. */
#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"
#include "kernels.h"
#include "kvquant.h"

#define PARALLEL_MIN_WORK (1 << 18) /* rows x positions x head_dim below this: one thread */

/* Logits of query qh against the quantized key blocks [0, kq): per block and channel,
 * w_c = q_c * scale_c and beta = sum_c q_c * zero_c, then logit_t = beta + sum_c w_c * code.
 * kc: the decoded codes of kv head g, [kq][D]. */
static void logits_quant_keys(float *lg, const float *qh, int g, const kvq_view *kv,
                              const uint8_t *kc, float *w) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group, b = kv->k_bits;
    for (int blk = 0; blk < kv->kq / G; blk++) {
        const uint8_t *rec = kv->k_quant + kvl_record_off(b, D, G, H, blk, g);
        float beta = 0.0f;
        for (int c = 0; c < D; c++) {
            w[c] = qh[c] * akv_f16_to_f32(kvl_key_scale(rec, b, D, G, c));
            beta += qh[c] * akv_f16_to_f32(kvl_key_zero(rec, b, D, G, c));
        }
        for (int t = 0; t < G; t++) {
            const uint8_t *code = kc + (size_t)(blk * G + t) * D;
            float acc = beta;
            for (int c = 0; c < D; c++) acc += w[c] * (float)code[c];
            lg[blk * G + t] = acc;
        }
    }
}

/* Dot product with four partial sums (a fixed order, independent of the caller). */
static float dot_f32(const float *q, const float *k, int n) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int c = 0;
    for (; c + 4 <= n; c += 4) {
        a0 += q[c] * k[c];
        a1 += q[c + 1] * k[c + 1];
        a2 += q[c + 2] * k[c + 2];
        a3 += q[c + 3] * k[c + 3];
    }
    for (; c < n; c++) a0 += q[c] * k[c];
    return (a0 + a1) + (a2 + a3);
}

/* Softmax-weighted sum over the quantized values [0, vq): per token and channel group,
 * o_c += (a_t * scale) * code_c, and Z_group += a_t * zero, added once per channel.
 * vc: the decoded codes of kv head g, [vq][D]. */
static void out_quant_values(float *o, const float *a, int g, const kvq_view *kv,
                             const uint8_t *vc, float *zsum) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group, b = kv->v_bits;
    const int ng = D / G;
    if (kv->vq == 0) return; /* nothing quantized (always so for 16-bit values) */
    for (int j = 0; j < ng; j++) zsum[j] = 0.0f;
    for (int p = 0; p < kv->vq; p++) {
        const uint8_t *rec = kv->v_quant + kvl_record_off(b, D, G, H, p / G, g);
        const uint8_t *code = vc + (size_t)p * D;
        for (int j = 0; j < ng; j++) {
            const float as = a[p] * akv_f16_to_f32(kvl_value_scale(rec, b, D, G, p % G, j));
            zsum[j] += a[p] * akv_f16_to_f32(kvl_value_zero(rec, b, D, G, p % G, j));
            for (int i = 0; i < G; i++) o[j * G + i] += as * (float)code[j * G + i];
        }
    }
    for (int c = 0; c < D; c++) o[c] += zsum[c / G];
}

/* The codes of kv head g's records below n positions (keys: n = kq, values: n = vq; whole tiles)
 * as bytes out[p][D], through the tiles' code table tab (kvq_code_table). */
static void decode_codes(uint8_t *out, const uint8_t *region, int bits, int n, int g,
                         const kvq_view *kv, const uint16_t *tab) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group;
    for (int p0 = 0; p0 < n; p0 += KVL_TILE) {
        const uint8_t *rec = region + kvl_record_off(bits, D, G, H, p0 / G, g);
        const uint8_t *tile = rec + (size_t)((p0 % G) / KVL_TILE) * kvl_tile_code_bytes(bits, D);
        kvq_decode_tile((const uint32_t *)tile, tab, bits, D, out + (size_t)p0 * D);
    }
}

/* Keys (values) of kv head g at positions [from, len + n_new) as dense fp32 rows: the window
 * converted once per call, then the new tokens. */
static void stage_rows(float *dst, const void *win, int bits, int cap, int from,
                       const kvq_view *kv, const float *fresh, int n_new, int g) {
    const int D = kv->head_dim, row = kv->n_kv_heads * D;
    for (int p = from; p < kv->len; p++) {
        const size_t off = (size_t)(p % cap) * row + (size_t)g * D;
        for (int c = 0; c < D; c++) dst[(size_t)(p - from) * D + c] = kvq_win_load(win, bits, off + c);
    }
    for (int i = 0; i < n_new; i++)
        memcpy(dst + (size_t)(kv->len - from + i) * D, fresh + (size_t)i * row + (size_t)g * D,
               (size_t)D * sizeof(float));
}

/* One query row at position P: logits over [0, P], softmax, weighted sum. kf / vf: the dense
 * rows of positions [kq, ...) / [vq, ...) of this kv head. */
static void attend_row(float *oh, const float *qh, int P, int g, const kvq_view *kv,
                       const float *kf, const float *vf, const uint8_t *kc, const uint8_t *vc,
                       float scale, float *lg, float *tmp) {
    const int D = kv->head_dim;
    logits_quant_keys(lg, qh, g, kv, kc, tmp);
    for (int p = kv->kq; p <= P; p++) lg[p] = dot_f32(qh, kf + (size_t)(p - kv->kq) * D, D);
    float mx = -INFINITY, sum = 0.0f;
    for (int p = 0; p <= P; p++) {
        lg[p] *= scale;
        mx = lg[p] > mx ? lg[p] : mx;
    }
    for (int p = 0; p <= P; p++) sum += (lg[p] = expf(lg[p] - mx));
    const float inv = 1.0f / sum;
    for (int p = 0; p <= P; p++) lg[p] *= inv;
    for (int c = 0; c < D; c++) oh[c] = 0.0f;
    out_quant_values(oh, lg, g, kv, vc, tmp);
    for (int p = kv->vq; p <= P; p++) {
        const float a = lg[p], *vr = vf + (size_t)(p - kv->vq) * D;
        for (int c = 0; c < D; c++) oh[c] += a * vr[c];
    }
}

/* logits [ctx], a temporary [D], dense window rows kf, vf [ctx][D], decoded codes kc, vc
 * [ctx'][D] bytes, two code tables [32][D] uint16 (ctx' = ctx rounded up to a tile). */
size_t kvattn_scratch_floats(int ctx, int head_dim) {
    const size_t D = (size_t)head_dim, ctx_r = ((size_t)ctx + KVL_TILE - 1) / KVL_TILE * KVL_TILE;
    return (size_t)ctx * (2 * D + 1) + D + (2 * ctx_r * D + 3) / 4 + KVL_TILE * D;
}

void kvattn_ref(float *out, const float *q, int n_q, int n_heads, const kvq_view *kv,
                const float *k_new, const float *v_new, float scale, float *scratch) {
    const int D = kv->head_dim, per_kv = n_heads / kv->n_kv_heads, T = kv->len + n_q;
    const size_t T_r = ((size_t)T + KVL_TILE - 1) / KVL_TILE * KVL_TILE;
    float *lg = scratch, *tmp = lg + T, *kf = tmp + D, *vf = kf + (size_t)T * D;
    uint8_t *kc = (uint8_t *)(vf + (size_t)T * D), *vc = kc + T_r * D;
    uint16_t *ktab = (uint16_t *)(scratch + (size_t)T * (2 * D + 1) + D + (2 * T_r * D + 3) / 4);
    uint16_t *vtab = ktab + KVL_TILE * D;
    if (kvl_is_quant(kv->k_bits)) kvq_code_table(1, kv->k_bits, D, ktab);
    if (kvl_is_quant(kv->v_bits)) kvq_code_table(0, kv->v_bits, D, vtab);
    const int rows = n_q * per_kv; /* query rows per kv head */
    int threads = kernels_threads();
    if (rows < 2 || (double)rows * T * D < PARALLEL_MIN_WORK) threads = 1;
    if (threads > rows) threads = rows;
    /* each extra thread's own logits + temporaries (thread 0 uses the caller's scratch) */
    float *extra = threads > 1 ? malloc((size_t)(threads - 1) * (T + D) * sizeof(float)) : NULL;
    if (!extra) threads = 1;
    for (int g = 0; g < kv->n_kv_heads; g++) {
        stage_rows(kf, kv->k_win, kv->k_bits, kv->k_cap, kv->kq, kv, k_new, n_q, g);
        stage_rows(vf, kv->v_win, kv->v_bits, kv->v_cap, kv->vq, kv, v_new, n_q, g);
        if (kv->kq) decode_codes(kc, kv->k_quant, kv->k_bits, kv->kq, g, kv, ktab);
        if (kv->vq) decode_codes(vc, kv->v_quant, kv->v_bits, kv->vq, g, kv, vtab);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
        {
            int me = 0;
#ifdef _OPENMP
            me = omp_get_thread_num();
#endif
            float *my_lg = me ? extra + (size_t)(me - 1) * (T + D) : lg;
            float *my_tmp = my_lg + T;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int r = 0; r < rows; r++) {
                const int i = r / per_kv, h = g * per_kv + r % per_kv;
                attend_row(out + ((size_t)i * n_heads + h) * D, q + ((size_t)i * n_heads + h) * D,
                           kv->len + i, g, kv, kf, vf, kc, vc, scale, my_lg, my_tmp);
            }
        }
    }
    free(extra);
}
