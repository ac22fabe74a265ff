/* kvview_util.h — which bits of a (layer, sequence) cache slot its view owns, for the tests that
 * copy a host cache to a device (or an emulated device) with everything else poisoned, and that
 * compare a device cache with the host's bit for bit (tests/gpu_kvattn.c, tests/emu/
 * kvattn_emu.cpp). Owned: the key records below kq, the value codes, scales and zeros of
 * positions below vq (a record being filled is owned only at those positions' bits), and the
 * window slots of [kq, len) and [vq, len). Layout: kernels/kvlayout.h. Header-only (C and C++). */
#ifndef ASYMKV_KVVIEW_UTIL_H
#define ASYMKV_KVVIEW_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvquant.h"

/* Bytes of a view's slot, from k_quant to the end of v_win (fp16 windows). */
static inline size_t kvview_bytes(const kvq_view *w) {
    const size_t row = (size_t)w->n_kv_heads * w->head_dim;
    return (size_t)((const uint8_t *)w->v_win - w->k_quant) + (size_t)w->v_cap * row * 2;
}

/* mask[i]: the bits of byte i of the slot the view owns (kvview_bytes(w) bytes). */
static inline void kvview_owned_mask(const kvq_view *w, uint8_t *mask) {
    const int H = w->n_kv_heads, D = w->head_dim, G = w->group;
    const size_t row = (size_t)H * D, bytes = kvview_bytes(w);
    const uint8_t *base = w->k_quant;
    memset(mask, 0, bytes);
    if (kvl_is_quant(w->k_bits))
        memset(mask, 0xff, (size_t)(w->kq / G) * H * kvl_record_bytes(w->k_bits, D, G));
    if (kvl_is_quant(w->v_bits)) {
        const int vb = w->v_bits;
        uint8_t *vm = mask + (w->v_quant - base);
        memset(vm, 0xff, (size_t)(w->vq / G) * H * kvl_record_bytes(vb, D, G));
        const int blk = w->vq / G, n = w->vq % G;
        for (int g = 0; n && g < H; g++) {
            uint8_t *rec = vm + kvl_record_off(vb, D, G, H, blk, g);
            for (int p = 0; p < n; p++) {
                for (int c = 0; c < D; c++) {
                    int word, bit;
                    kvl_value_code_loc(vb, D, p % KVL_TILE, c, &word, &bit);
                    uint32_t *wd = (uint32_t *)(rec + (size_t)(p / KVL_TILE) * kvl_tile_code_bytes(vb, D));
                    wd[word] |= ((1u << vb) - 1u) << bit;
                }
                for (int j = 0; j < D / G; j++) {
                    const size_t m = 2 * (size_t)kvl_vmeta_index(D, G, p, j);
                    memset(rec + kvl_scale_off(vb, D, G) + m, 0xff, 2);
                    memset(rec + kvl_zero_off(vb, D, G) + m, 0xff, 2);
                }
            }
        }
    }
    const size_t koff = (size_t)((const uint8_t *)w->k_win - base);
    const size_t voff = (size_t)((const uint8_t *)w->v_win - base);
    for (int p = w->kq; p < w->len; p++) memset(mask + koff + (size_t)(p % w->k_cap) * row * 2, 0xff, row * 2);
    for (int p = w->vq; p < w->len; p++) memset(mask + voff + (size_t)(p % w->v_cap) * row * 2, 0xff, row * 2);
}

/* A malloc'd copy of the view's slot with every bit it does not own set (0xff bytes: NaN
 * scales and windows); NULL when out of memory. */
static inline uint8_t *kvview_poisoned_copy(const kvq_view *w) {
    const size_t bytes = kvview_bytes(w);
    uint8_t *mask = (uint8_t *)malloc(bytes), *h = (uint8_t *)malloc(bytes ? bytes : 1);
    if (!mask || !h) {
        free(mask), free(h);
        return NULL;
    }
    kvview_owned_mask(w, mask);
    for (size_t i = 0; i < bytes; i++) h[i] = (uint8_t)((w->k_quant[i] & mask[i]) | (uint8_t)~mask[i]);
    free(mask);
    return h;
}

/* Owned bits that differ between the view's slot and a copy of it (first ones printed). */
static inline size_t kvview_diff(const kvq_view *w, const uint8_t *copy, const char *label,
                                 void (*print)(const char *label, size_t i, int got, int want)) {
    const size_t bytes = kvview_bytes(w);
    uint8_t *mask = (uint8_t *)malloc(bytes ? bytes : 1);
    if (!mask) return (size_t)-1;
    kvview_owned_mask(w, mask);
    size_t bad = 0;
    for (size_t i = 0; i < bytes; i++)
        if ((w->k_quant[i] ^ copy[i]) & mask[i]) {
            if (bad < 6 && print) print(label, i, copy[i] & mask[i], w->k_quant[i] & mask[i]);
            bad++;
        }
    free(mask);
    return bad;
}

#endif
