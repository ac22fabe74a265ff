/* kvquant.h — the AsymKV / KIVI quantization arithmetic (design §4) and the reference
 * dequantize / attention functions over a cache view (the CPU backend; the CUDA kernels are tested
 * against these). Where the codes, scales and zeros sit is kvlayout.h's, the one owner of the
 * cache layout.
 *
 * Scheme: asymmetric min/max round-to-nearest-even with fp16 scale and zero (= group min),
 * scale = (max - min) / (2^b - 1), q = clamp(rint((x - zero) / scale), 0, 2^b - 1),
 * x* = q * scale + zero. The codes are computed with the fp16-rounded scale and zero that are
 * stored, so encode and decode agree. A constant group stores scale 0 and all-zero codes (no
 * NaN). Groups are G in {32, 64, 128} elements: keys per (kv head, channel) over G consecutive
 * positions, values per (position, kv head) over G consecutive channels.
 * Full-precision (16-bit) K/V and the residual window are fp16 [slot][n_kv_heads][head_dim];
 * the 32-bit reference width stores fp32 there instead. */
#ifndef ASYMKV_KVQUANT_H
#define ASYMKV_KVQUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kvlayout.h"

#ifdef __cplusplus
#define _Static_assert static_assert /* C++ (tests/emu/kvattn_emu.cpp) spells it so */
extern "C" {
#endif

/* Record sizes of the formats at a Llama-shaped head (kvl_record_bytes is the general form):
 * G 32, head_dim 128: codes 32*128*b/8 bytes, then 128 fp16 scales and 128 fp16 zeros. */
#define KVQ_RECORD_BYTES(b, D, G) ((size_t)(G) * (D) * (b) / 8 + 4 * (size_t)(D))
_Static_assert(KVQ_RECORD_BYTES(1, 128, 32) == 1024, "1-bit record of 32 x 128 is 1 KiB");
_Static_assert(KVQ_RECORD_BYTES(2, 128, 32) == 1536, "2-bit record of 32 x 128 is 1.5 KiB");
_Static_assert(KVQ_RECORD_BYTES(4, 128, 32) == 2560, "4-bit record of 32 x 128 is 2.5 KiB");

typedef struct kvq_format {
    int bits;           /* 1, 2, 4 */
    double rmse_budget; /* round-trip RMSE budget on N(0,1) groups (tests hold it) */
} kvq_format;

/* One table of the quantized formats, indexed by kvq_format_index(bits). */
extern const kvq_format KVQ_FORMATS[3];
int kvq_format_index(int bits); /* -1 if bits is not 1, 2 or 4 */

/* Quantizes the group x[i * stride], i < group: codes[i] (one per element), the fp16 scale and
 * zero (bit patterns). */
void kvq_quantize(const float *x, size_t stride, int bits, int group, uint8_t *codes,
                  uint16_t *scale, uint16_t *zero);

/* code * scale + zero in fp32, two roundings (no fused multiply-add, as the CUDA twins). */
float kvq_dequant(uint32_t code, uint16_t scale, uint16_t zero);

/* Quantizes the G keys x[0..G) of channel c of kv head g, block blk, into the key region (its
 * records, kvlayout.h): scale, zero and codes. */
void kvq_put_key_group(uint8_t *region, int bits, int n_kv, int D, int G, int blk, int g, int c,
                       const float *x);
/* Quantizes the G values x[0..G) of position p, kv head g, channel group j into the value
 * region: that position's scale, zero and code bits (the record's other positions untouched). */
void kvq_put_value_group(uint8_t *region, int bits, int n_kv, int D, int G, int p, int g, int j,
                         const float *x);

/* Code locations of a tile (kvlayout.h), tabulated: tab[tau * D + c] = word << 5 | bit of the
 * code of (tile position tau, physical channel c). 32 * D entries. */
void kvq_code_table(int is_key, int bits, int D, uint16_t *tab);
/* The 32 x D codes of one tile (its first code word at words) as bytes out[tau * D + c]. */
void kvq_decode_tile(const uint32_t *words, const uint16_t *tab, int bits, int D, uint8_t *out);

/* Rounds x to fp16 precision in place (what the 16-bit cache and residual window store). */
void kvq_round_f16(float *x, size_t n);

/* One (layer, sequence) cache as the attention sees it (regions as kvlayout.h lays them out).
 * Positions [0, kq) of the keys are in key records (kq a multiple of G); positions [kq, len) are
 * in the key window at slot p % k_cap. Likewise values: [0, vq) in value records (quantized one
 * position at a time), [vq, len) in the window at slot p % v_cap. For a 16/32-bit tensor kq (vq)
 * = 0 and its window holds every position. */
typedef struct kvq_view {
    int n_kv_heads, head_dim, group;
    int k_bits, v_bits;          /* 32, 16, 4, 2, 1 */
    int len, kq, vq;
    int k_cap, v_cap;            /* window slots */
    const uint8_t *k_quant;      /* records [ctx' / G][n_kv_heads] (kvl_record_off) */
    const void *k_win;           /* [k_cap][n_kv_heads][head_dim], fp32 if k_bits == 32 else fp16 */
    const uint8_t *v_quant;      /* records [ctx' / G][n_kv_heads] */
    const void *v_win;           /* [v_cap][n_kv_heads][head_dim], fp32 if v_bits == 32 else fp16 */
} kvq_view;

/* Element i of a window (fp32 when bits == 32, else fp16). */
static inline float kvq_win_load(const void *win, int bits, size_t i) {
    if (bits == 32) return ((const float *)win)[i];
    uint16_t h = ((const uint16_t *)win)[i];
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
    else if (exp) u = sign | ((exp + 112u) << 23) | (man << 13);
    else if (!man) u = sign;
    else { /* subnormal */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Causal attention of n_q new tokens (positions len .. len+n_q-1) whose keys / values are
 * k_new / v_new ([n_q][n_kv_heads][head_dim], already fp16-rounded) over the stored cache and
 * the new tokens. q, out: [n_q][n_heads][head_dim]. Quantized keys are scored through the
 * identity q.k* = sum_c q_c*zero_c + sum_c (q_c*scale_c)*code_c, quantized values through
 * o_c = sum_t a_t*zero_t + sum_t (a_t*scale_t)*code_tc; softmax in fp32 over the whole row.
 * scratch: kvattn_scratch_floats(len + n_q, head_dim) floats. */
size_t kvattn_scratch_floats(int ctx, int head_dim);
void kvattn_ref(float *out, const float *q, int n_q, int n_heads, const kvq_view *kv,
                const float *k_new, const float *v_new, float scale, float *scratch);

/* Dequantizes the stored part of a view into dense fp32 k, v [len][n_kv_heads][head_dim]
 * (the "dequantize then attend" path the fused attention is tested against). */
void kvq_view_dequantize(const kvq_view *kv, float *k, float *v);

#ifdef __cplusplus
}
#endif
#endif
