/* kvconfig.h — the per-layer KV cache configuration (`--kv`): key and value bit widths of
 * every layer (16 = unquantized fp16, 4, 2, 1; 32 = fp32, an exact reference mode), group
 * size G and residual window R, and the
 * memory formula of design §4 that the cache's allocation must equal.
 *
 * Spec language (layers counted from the input side, 0-based in code, "first L layers"):
 *   fp16                  every layer unquantized (fp16 storage)
 *   fp32                  every layer unquantized in fp32 (reference; twice fp16's memory)
 *   kivi2 | kivi4         every layer's K and V at 2 / 4 bits
 *   asymkv:LK/LV          first LK layers' keys and first LV layers' values at the high width
 *                         (2, or --kv-hi-bits 4), every other K/V at 1 bit
 *   k=2x16,1x16;v=1x32    explicit run-length lists per tensor; counts must sum to n_layers
 *                         (widths 16, 4, 2, 1) */
#ifndef ASYMKV_KVCONFIG_H
#define ASYMKV_KVCONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KV_MAX_LAYERS 512
#define KV_DEFAULT_GROUP 32
#define KV_DEFAULT_RESIDUAL 128

typedef struct kv_config {
    int n_layers;
    uint8_t k_bits[KV_MAX_LAYERS]; /* [n_layers] 32, 16, 4, 2 or 1 */
    uint8_t v_bits[KV_MAX_LAYERS]; /* [n_layers] */
    int group;                     /* G: tokens per key group, channels per value group */
    int residual;                  /* R: full-precision window; a multiple of G */
} kv_config;

/* Parses spec for a model of n_layers. hi_bits is the high width of asymkv:LK/LV (2 or 4).
 * Any invalid string is AKV_EINPUT with a message listing the valid forms. */
akv_status kvcfg_parse(kv_config *c, const char *spec, int n_layers, int hi_bits, int group,
                       int residual, akv_err *err);

/* Checks that head_dim is compatible with the quantized widths: a multiple of G when any value
 * is quantized (values are grouped over channels), of 16 when any key is (kvlayout.h). */
akv_status kvcfg_check_head_dim(const kv_config *c, int head_dim, akv_err *err);

/* Bytes of one token of layer l for K plus V, residual window excluded (design §4):
 * quantized K: H*D*b/8 + H*D*4/G; quantized V: H*D*b/8 + H*(D/G)*4; 16-bit: H*D*2 each
 * (32-bit: H*D*4). */
size_t kvcfg_token_bytes(const kv_config *c, int layer, int n_kv_heads, int head_dim);

/* Bytes layer l's cache holds for ctx positions x batch sequences: token bytes x ctx' + the
 * residual window (R tokens of H*D*2 for each quantized K or V) per sequence, where ctx' is
 * ctx rounded up to a multiple of G (kvl_layer_bytes). This is what the cache allocates. */
size_t kvcfg_layer_bytes(const kv_config *c, int layer, int n_kv_heads, int head_dim, int ctx,
                         int batch);

/* Average stored bits per K/V element over all layers, scale/zero included, residual
 * excluded (fp16 = 16, all 1-bit at G=32 = 2). */
double kvcfg_avg_bits(const kv_config *c, int head_dim);

/* Writes the canonical explicit form, e.g. "k=2x16,1x16;v=1x32", into buf. */
void kvcfg_format(const kv_config *c, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
