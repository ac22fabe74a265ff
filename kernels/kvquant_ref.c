/* kvquant_ref.c — reference quantization of one KV group, the format table, the tabulated code
 * locations of a tile (kvlayout.h) and the dense dequantization of a cache view used to test the
 * fused attention. See kvquant.h for the arithmetic, kvlayout.h for where everything sits. */
#include "kvquant.h"

#include <math.h>
#include <string.h>

#include "common.h"

/* RMSE budgets of a round trip on N(0,1) groups of 32, measured on 1e5 groups (1-bit 1.400,
 * 2-bit 0.393, 4-bit 0.078: 1 bit maps every element to its group's min or max) and rounded
 * up; tests/test_kvquant.c holds each width to its budget. */
const kvq_format KVQ_FORMATS[3] = {
    {1, 1.45},
    {2, 0.41},
    {4, 0.085},
};

int kvq_format_index(int bits) {
    return bits == 1 ? 0 : bits == 2 ? 1 : bits == 4 ? 2 : -1;
}

void kvq_round_f16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = akv_f16_to_f32(akv_f32_to_f16(x[i]));
}

void kvq_quantize(const float *x, size_t stride, int bits, int group, uint8_t *codes,
                  uint16_t *scale, uint16_t *zero) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < group; i++) {
        float v = x[(size_t)i * stride];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    const float maxq = (float)((1 << bits) - 1);
    float range = (mx - mn) / maxq;
    const uint16_t s16 = akv_f32_to_f16(range > 65504.0f ? 65504.0f : range);
    const uint16_t z16 = akv_f32_to_f16(mn);
    const float s = akv_f16_to_f32(s16), z = akv_f16_to_f32(z16);
    for (int i = 0; i < group; i++) {
        uint8_t q = 0;
        if (s > 0.0f) {
            float u = rintf((x[(size_t)i * stride] - z) / s); /* ties to even (default mode) */
            q = u <= 0.0f ? 0u : u >= maxq ? (uint8_t)maxq : (uint8_t)u;
        }
        codes[i] = q;
    }
    *scale = s16;
    *zero = z16;
}

float kvq_dequant(uint32_t code, uint16_t scale, uint16_t zero) {
    volatile float prod = (float)code * akv_f16_to_f32(scale); /* never contracted into an FMA */
    return prod + akv_f16_to_f32(zero);
}

void kvq_put_key_group(uint8_t *region, int bits, int n_kv, int D, int G, int blk, int g, int c,
                       const float *x) {
    uint8_t *rec = region + kvl_record_off(bits, D, G, n_kv, blk, g), codes[128];
    uint16_t *sc = (uint16_t *)(rec + kvl_scale_off(bits, D, G));
    uint16_t *zr = (uint16_t *)(rec + kvl_zero_off(bits, D, G));
    kvq_quantize(x, 1, bits, G, codes, &sc[c], &zr[c]);
    for (int t = 0; t < G; t++) kvl_put_code(rec, 1, bits, D, t, c, codes[t]);
}

void kvq_put_value_group(uint8_t *region, int bits, int n_kv, int D, int G, int p, int g, int j,
                         const float *x) {
    uint8_t *rec = region + kvl_record_off(bits, D, G, n_kv, p / G, g), codes[128];
    uint16_t *sc = (uint16_t *)(rec + kvl_scale_off(bits, D, G));
    uint16_t *zr = (uint16_t *)(rec + kvl_zero_off(bits, D, G));
    const int m = kvl_vmeta_index(D, G, p % G, j);
    kvq_quantize(x, 1, bits, G, codes, &sc[m], &zr[m]);
    for (int i = 0; i < G; i++) kvl_put_code(rec, 0, bits, D, p % G, j * G + i, codes[i]);
}

void kvq_code_table(int is_key, int bits, int D, uint16_t *tab) {
    for (int tau = 0; tau < KVL_TILE; tau++)
        for (int c = 0; c < D; c++) {
            int w, b;
            if (is_key) kvl_key_code_loc(bits, D, tau, c, &w, &b);
            else kvl_value_code_loc(bits, D, tau, c, &w, &b);
            tab[tau * D + c] = (uint16_t)(w << 5 | b);
        }
}

void kvq_decode_tile(const uint32_t *words, const uint16_t *tab, int bits, int D, uint8_t *out) {
    const uint32_t mask = (1u << bits) - 1u;
    for (int i = 0; i < KVL_TILE * D; i++) out[i] = (uint8_t)((words[tab[i] >> 5] >> (tab[i] & 31)) & mask);
}

/* Dense fp32 rows of one tensor (keys or values) of a view, positions [0, len). */
static void dequant_keys(const kvq_view *kv, float *k) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group, b = kv->k_bits;
    const size_t row = (size_t)H * D;
    for (int blk = 0; blk < kv->kq / G; blk++)
        for (int g = 0; g < H; g++) {
            const uint8_t *rec = kv->k_quant + kvl_record_off(b, D, G, H, blk, g);
            for (int c = 0; c < D; c++) {
                const uint16_t s = kvl_key_scale(rec, b, D, G, c), z = kvl_key_zero(rec, b, D, G, c);
                for (int p = 0; p < G; p++)
                    k[(size_t)(blk * G + p) * row + (size_t)g * D + c] =
                        kvq_dequant(kvl_get_code(rec, 1, b, D, p, c), s, z);
            }
        }
    for (int p = kv->kq; p < kv->len; p++)
        for (size_t i = 0; i < row; i++)
            k[(size_t)p * row + i] = kvq_win_load(kv->k_win, kv->k_bits, (size_t)(p % kv->k_cap) * row + i);
}

static void dequant_values(const kvq_view *kv, float *v) {
    const int H = kv->n_kv_heads, D = kv->head_dim, G = kv->group, b = kv->v_bits;
    const size_t row = (size_t)H * D;
    for (int p = 0; p < kv->vq; p++)
        for (int g = 0; g < H; g++) {
            const uint8_t *rec = kv->v_quant + kvl_record_off(b, D, G, H, p / G, g);
            for (int c = 0; c < D; c++) {
                const int pb = p % G, j = c / G;
                v[(size_t)p * row + (size_t)g * D + c] =
                    kvq_dequant(kvl_get_code(rec, 0, b, D, pb, c),
                                kvl_value_scale(rec, b, D, G, pb, j), kvl_value_zero(rec, b, D, G, pb, j));
            }
        }
    for (int p = kv->vq; p < kv->len; p++)
        for (size_t i = 0; i < row; i++)
            v[(size_t)p * row + i] = kvq_win_load(kv->v_win, kv->v_bits, (size_t)(p % kv->v_cap) * row + i);
}

void kvq_view_dequantize(const kvq_view *kv, float *k, float *v) {
    dequant_keys(kv, k);
    dequant_values(kv, v);
}
