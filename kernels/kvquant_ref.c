/* kvquant_ref.c — reference quantize / dequantize of one KV storage unit (a group of G
 * elements at 1, 2 or 4 bits), the format table, and the dense dequantization of a cache view
 * used to test the fused attention. See kvquant.h for the format. */
#include "kvquant.h"

#include <math.h>
#include <string.h>

#include "common.h"

/* RMSE budgets of a round trip on N(0,1) groups of 32, measured on 1e5 groups (1-bit 1.400,
 * 2-bit 0.393, 4-bit 0.078: 1 bit maps every element to its group's min or max) and rounded
 * up; tests/test_kvquant.c holds each width to its budget. */
const kvq_format KVQ_FORMATS[3] = {
    {1, sizeof(kvq_group32_b1), 1.45},
    {2, sizeof(kvq_group32_b2), 0.41},
    {4, sizeof(kvq_group32_b4), 0.085},
};

int kvq_format_index(int bits) {
    return bits == 1 ? 0 : bits == 2 ? 1 : bits == 4 ? 2 : -1;
}

void kvq_round_f16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = akv_f16_to_f32(akv_f32_to_f16(x[i]));
}

void kvq_quantize_group(uint8_t *dst, const float *x, size_t stride, int bits, int group) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < group; i++) {
        float v = x[(size_t)i * stride];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    const float maxq = (float)((1 << bits) - 1);
    float range = (mx - mn) / maxq;
    uint16_t s16 = akv_f32_to_f16(range > 65504.0f ? 65504.0f : range);
    uint16_t z16 = akv_f32_to_f16(mn);
    const float s = akv_f16_to_f32(s16), z = akv_f16_to_f32(z16);
    uint32_t *w = (uint32_t *)dst;
    const int words = group * bits / 32;
    memset(w, 0, (size_t)words * 4);
    for (int i = 0; s > 0.0f && i < group; i++) {
        float u = rintf((x[(size_t)i * stride] - z) / s); /* ties to even (default mode) */
        uint32_t q = u <= 0.0f ? 0u : u >= maxq ? (uint32_t)maxq : (uint32_t)u;
        int bit = i * bits;
        w[bit >> 5] |= q << (bit & 31);
    }
    memcpy(dst + (size_t)words * 4, &s16, 2);
    memcpy(dst + (size_t)words * 4 + 2, &z16, 2);
}

/* Scale and zero of a storage unit as floats. */
static void unit_meta(const uint8_t *unit, int bits, int group, float *s, float *z) {
    uint16_t s16, z16;
    size_t off = (size_t)group * bits / 8;
    memcpy(&s16, unit + off, 2);
    memcpy(&z16, unit + off + 2, 2);
    *s = akv_f16_to_f32(s16);
    *z = akv_f16_to_f32(z16);
}

void kvq_dequantize_group(float *out, size_t stride, const uint8_t *src, int bits, int group) {
    float s, z;
    unit_meta(src, bits, group, &s, &z);
    for (int i = 0; i < group; i++) out[(size_t)i * stride] = (float)kvq_code(src, bits, i) * s + z;
}

/* Dense fp32 rows of one tensor (keys or values) of a view, positions [0, len). */
static void dequant_keys(const kvq_view *kv, float *k) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group;
    const size_t row = (size_t)H * D, unit = kvq_group_bytes(kv->k_bits, G);
    for (int b = 0; b < kv->kq / G; b++)
        for (size_t hc = 0; hc < row; hc++)
            kvq_dequantize_group(k + (size_t)b * G * row + hc, row,
                                 kv->k_quant + ((size_t)b * row + hc) * unit, kv->k_bits, G);
    for (int p = kv->kq; p < kv->len; p++)
        for (size_t i = 0; i < row; i++)
            k[(size_t)p * row + i] = kvq_win_load(kv->k_win, kv->k_bits, (size_t)(p % kv->k_cap) * row + i);
}

static void dequant_values(const kvq_view *kv, float *v) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group;
    const size_t row = (size_t)H * D, unit = kvq_group_bytes(kv->v_bits, G);
    const size_t groups = row / (size_t)G;
    for (int p = 0; p < kv->vq; p++)
        for (size_t j = 0; j < groups; j++)
            kvq_dequantize_group(v + (size_t)p * row + j * G, 1,
                                 kv->v_quant + ((size_t)p * groups + j) * unit, kv->v_bits, G);
    for (int p = kv->vq; p < kv->len; p++)
        for (size_t i = 0; i < row; i++)
            v[(size_t)p * row + i] = kvq_win_load(kv->v_win, kv->v_bits, (size_t)(p % kv->v_cap) * row + i);
}

void kvq_view_dequantize(const kvq_view *kv, float *k, float *v) {
    dequant_keys(kv, k);
    dequant_values(kv, v);
}
