/* kvquant.h — the AsymKV / KIVI quantized KV formats (design §4) and their reference
 * quantize / dequantize / attention functions (the CPU backend; the CUDA kernels are tested
 * against these).
 *
 * Scheme: asymmetric min/max round-to-nearest-even with fp16 scale and zero (= group min),
 * scale = (max - min) / (2^b - 1), q = clamp(rint((x - zero) / scale), 0, 2^b - 1),
 * x* = q * scale + zero. The codes are computed with the fp16-rounded scale and zero that are
 * stored, so encode and decode agree. A constant group stores scale 0 and all-zero codes
 * (no NaN). Codes are packed LSB-first in 32-bit words: element i of a group sits at bits
 * [(i*b) mod 32, +b) of word (i*b)/32.
 *
 * Storage unit = one group of G elements (G in {32, 64, 128}): G*b/32 code words, then the
 * fp16 scale, then the fp16 zero:  bytes = G*b/8 + 4.
 *   Keys   (per channel): a group is G consecutive tokens of one (kv head, channel); a key
 *          block of G tokens holds [n_kv_heads][head_dim] groups.
 *   Values (per token):   a group is G consecutive channels of one (token, kv head); a token
 *          holds [n_kv_heads][head_dim / G] groups.
 * Full-precision (16-bit) K/V and the residual window are fp16 [slot][n_kv_heads][head_dim];
 * the 32-bit reference width stores fp32 there instead. */
#ifndef ASYMKV_KVQUANT_H
#define ASYMKV_KVQUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#define _Static_assert static_assert /* C++ (tests/emu/kvattn_emu.cpp) spells it so */
extern "C" {
#endif

/* The G = 32 storage units, spelled out; the generic code uses kvq_group_bytes(). */
typedef struct kvq_group32_b1 { uint32_t codes[1]; uint16_t scale, zero; } kvq_group32_b1;
typedef struct kvq_group32_b2 { uint32_t codes[2]; uint16_t scale, zero; } kvq_group32_b2;
typedef struct kvq_group32_b4 { uint32_t codes[4]; uint16_t scale, zero; } kvq_group32_b4;
_Static_assert(sizeof(kvq_group32_b1) == 8, "1-bit group of 32 is 8 bytes");
_Static_assert(sizeof(kvq_group32_b2) == 12, "2-bit group of 32 is 12 bytes");
_Static_assert(sizeof(kvq_group32_b4) == 20, "4-bit group of 32 is 20 bytes");

typedef struct kvq_format {
    int bits;              /* 1, 2, 4 */
    size_t group32_bytes;  /* storage of a 32-element group */
    double rmse_budget;    /* round-trip RMSE budget on N(0,1) groups (tests hold it) */
} kvq_format;

/* One table of the quantized formats, indexed by kvq_format_index(bits). */
extern const kvq_format KVQ_FORMATS[3];
int kvq_format_index(int bits); /* -1 if bits is not 1, 2 or 4 */

static inline size_t kvq_group_bytes(int bits, int group) {
    return (size_t)group * (size_t)bits / 8 + 4;
}

/* Quantizes n = group elements x[i * stride] into one storage unit at dst. */
void kvq_quantize_group(uint8_t *dst, const float *x, size_t stride, int bits, int group);

/* Dequantizes one storage unit into out[i * stride], i < group. */
void kvq_dequantize_group(float *out, size_t stride, const uint8_t *src, int bits, int group);

/* Code of element i of a storage unit. */
static inline uint32_t kvq_code(const uint8_t *unit, int bits, int i) {
    const uint32_t *w = (const uint32_t *)unit;
    int bit = i * bits;
    return (w[bit >> 5] >> (bit & 31)) & ((1u << bits) - 1u);
}

/* Rounds x to fp16 precision in place (what the 16-bit cache and residual window store). */
void kvq_round_f16(float *x, size_t n);

/* One (layer, sequence) cache as the attention sees it. Positions [0, kq) of the keys are in
 * quantized key blocks (kq a multiple of G); positions [kq, len) are in the key window at slot
 * p % k_cap. Likewise values: [0, vq) quantized per token, [vq, len) in the window at slot
 * p % v_cap. For a 16/32-bit tensor kq (vq) = 0 and its window holds every position. */
typedef struct kvq_view {
    int n_kv_heads, head_dim, group;
    int k_bits, v_bits;          /* 32, 16, 4, 2, 1 */
    int len, kq, vq;
    int k_cap, v_cap;            /* window slots */
    const uint8_t *k_quant;      /* [kq / G][n_kv_heads][head_dim] units */
    const void *k_win;           /* [k_cap][n_kv_heads][head_dim], fp32 if k_bits == 32 else fp16 */
    const uint8_t *v_quant;      /* [vq][n_kv_heads][head_dim / G] units */
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
