/* kvlayout.h — the one owner of the compressed KV cache's byte layout (design §4, docs/design.md
 * "The KV cache format"): region sizes and order, record order and sections, where every code,
 * scale and zero sits, the residual-window slot rule, the flush plan (KIVI's rules) and the bytes
 * of a layer. The CPU twin (runtime/kvcache.c, kernels/kvattn_ref.c, kernels/kvquant_ref.c), the
 * CUDA kernels (kernels/kvquant.cu, kernels/kvattn*.cu*), the memory formula (runtime/kvconfig.c)
 * and the planner (dist/plan.c through kvcfg_layer_bytes) all read it; nothing else spells the
 * layout out. Plain C, includable from CUDA (the functions are __host__ __device__ there).
 *
 * One (layer, sequence) slot holds four regions, in this order (16-byte aligned when head_dim is a
 * multiple of 8, as quantized tensors require multiples of 16):
 *   [k_quant][v_quant][k_win][v_win]
 * k_quant / v_quant: the quantized keys / values (absent for a 16-bit tensor), one RECORD per
 *   (block of G positions, kv head), records ordered [block][kv head];
 * k_win / v_win: fp16 [cap][n_kv_heads][head_dim], position p at slot p % cap; cap = R for a
 *   quantized tensor (the residual window), ctx' (ctx rounded up to G) for a 16-bit one (fp32
 *   rows for the 32-bit reference width of the CPU backend).
 *
 * A record of a block of G positions (G in {32, 64, 128}), for keys and for values alike:
 *   [codes of 32-position tile 0] .. [codes of tile G/32 - 1][scales][zeros]
 * codes of a tile: 32 * D * b bits as D * b 32-bit words (b = bits, D = head_dim); scales, zeros:
 * D fp16 each. Keys have one (scale, zero) per channel for the block (KIVI: per channel over G
 * tokens), stored in channel order. Values have one per (position, group of G channels); their
 * D halves are ordered [tile][group][t][8] (kvl_vmeta_index). Bytes = G*D*b/8 + 4*D per record,
 * the design's formula (codes H*D*b/8 per token, scale+zero H*D*4/G per token for either tensor).
 *
 * Inside a tile the codes are in "fragment order": the bits a lane of the tensor-core decode kernel
 * (kvattn_tc.cuh) needs for its mma.sync m16n8k16 A operands are its own words, placed so that a
 * shift and one AND (1 bit) or one AND-OR plus one subtraction (2/4 bits) turn them into fp16
 * pairs. The A operands are the cache itself: keys as [32 tokens x D channels], values as
 * [D channels x 32 tokens]. Channels are permuted inside each 32-channel chunk (kvl_logical) so
 * that a lane's fp16 rows of the window (and its query and key scales) are 16 contiguous bytes.
 *  lane L = 4g + t owns, of a key tile: tokens 16m + 8rh + g (m, rh in {0,1}) and logical channels
 *    16kk + 8c8 + 2t + e of every k-step kk (c8, e in {0,1}); of a value tile: logical channels
 *    16mt + 8rh + g of every 16-channel tile mt, tokens 16kc + 8c8 + 2t + e (kc, c8, e in {0,1});
 *  b = 1: one word per 32 logical channels; the pair (e = 0, e = 1) of register v sits at bits
 *    (15 - 2v - c8, 31 - 2v - c8): a shift puts it at bit 14 (c8 = 0: fp16 2 * code) or 13
 *    (c8 = 1: fp16 2^-7 * code) of each half. v = kh*4 + m*2 + rh for keys (kh = kk % 2),
 *    (mt % 2)*4 + kc*2 + rh for values. A key tile of D % 32 == 16 has a last half word, shared
 *    by lanes L and L + 16 (the upper lane as if kh = 1);
 *  b = 2: one word per k-step (keys) / 16-channel tile (values); field f = m*4 + c8*2 + rh
 *    (keys), kc*4 + c8*2 + rh (values) at bits (2f, 16 + 2f);
 *  b = 4: two words per k-step (word 2kk + m) / tile (word 2mt + kc); field f = c8*2 + rh at
 *    bits (4f, 16 + 4f).
 *  Word w of lane L is at 128*(w/4) + L*cw + w%4 words into the tile (cw = the words of that
 *  group of four the lane has: 4, or fewer in the last group), so a lane reads 16 bytes at a time;
 *  the half word at 32*floor(D*b/32) + L%16.
 *
 * Flushing (KIVI), token by token as tokens are committed (kvl_append_plan): a key enters the
 * window; when it holds R keys they are quantized as R/G blocks and the window empties. A value
 * enters the window; when it already holds R values, the oldest is quantized first (its bits are
 * or-ed into its block's words, the other positions' bits untouched). A call attends first (its
 * own tokens exact), then commits. */
#ifndef ASYMKV_KVLAYOUT_H
#define ASYMKV_KVLAYOUT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define KVL_FN static inline __host__ __device__
#else
#define KVL_FN static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define KVL_TILE 32 /* positions per tile (the tensor-core kernel's unit) */

KVL_FN int kvl_is_quant(int bits) { return bits == 1 || bits == 2 || bits == 4; }

/* ---- sizes ---- */

/* Bytes of one record (a block of G positions of one kv head), keys or values. */
KVL_FN size_t kvl_record_bytes(int bits, int D, int G) {
    return (size_t)G * (size_t)D * (size_t)bits / 8 + 4 * (size_t)D;
}
/* Bytes of a tile's codes (32 positions x D channels x bits). */
KVL_FN size_t kvl_tile_code_bytes(int bits, int D) { return (size_t)4 * D * bits; }
/* Offsets of a record's scales and zeros. */
KVL_FN size_t kvl_scale_off(int bits, int D, int G) { return (size_t)G * D * bits / 8; }
KVL_FN size_t kvl_zero_off(int bits, int D, int G) { return kvl_scale_off(bits, D, G) + 2 * (size_t)D; }

/* Bytes per stored position of one tensor of one kv head (residual window excluded). */
KVL_FN size_t kvl_token_bytes(int bits, int D, int G) {
    if (!kvl_is_quant(bits)) return (size_t)D * (size_t)bits / 8;
    return (size_t)D * bits / 8 + 4 * (size_t)D / G;
}

/* The regions of one (layer, sequence) slot. */
typedef struct kvl_slot {
    size_t k_quant, v_quant, k_win, v_win; /* byte offsets in the slot */
    size_t bytes;                          /* the slot's size */
    int k_cap, v_cap;                      /* window slots */
} kvl_slot;

/* ctx' = ctx rounded up to G (every region is sized for it). */
KVL_FN int kvl_ctx_round(int ctx, int G) { return (ctx + G - 1) / G * G; }

/* The slot of a layer whose tensors are k_bits / v_bits (1, 2, 4, 16, or 32: the CPU's fp32
 * reference width) wide, n_kv heads of D channels, group G, window R, ctx' positions. */
KVL_FN kvl_slot kvl_slot_layout(int k_bits, int v_bits, int n_kv, int D, int G, int R, int ctx_r) {
    kvl_slot s;
    const size_t blocks = (size_t)ctx_r / G, row = (size_t)n_kv * D;
    const size_t kq = kvl_is_quant(k_bits) ? blocks * n_kv * kvl_record_bytes(k_bits, D, G) : 0;
    const size_t vq = kvl_is_quant(v_bits) ? blocks * n_kv * kvl_record_bytes(v_bits, D, G) : 0;
    s.k_cap = kvl_is_quant(k_bits) ? R : ctx_r;
    s.v_cap = kvl_is_quant(v_bits) ? R : ctx_r;
    const size_t kw = (size_t)s.k_cap * row * (k_bits == 32 ? 4 : 2);
    const size_t vw = (size_t)s.v_cap * row * (v_bits == 32 ? 4 : 2);
    s.k_quant = 0;
    s.v_quant = kq;
    s.k_win = kq + vq;
    s.v_win = kq + vq + kw;
    s.bytes = kq + vq + kw + vw;
    return s;
}

/* The design's formula for one layer, all slots: what every allocation must equal. */
KVL_FN size_t kvl_layer_bytes(int k_bits, int v_bits, int n_kv, int D, int G, int R, int ctx,
                              int batch) {
    const int ctx_r = kvl_ctx_round(ctx, G);
    const size_t row = (size_t)n_kv * D;
    size_t per = (kvl_token_bytes(k_bits, D, G) + kvl_token_bytes(v_bits, D, G)) * n_kv * ctx_r;
    if (kvl_is_quant(k_bits)) per += (size_t)R * row * 2;
    if (kvl_is_quant(v_bits)) per += (size_t)R * row * 2;
    return per * (size_t)batch;
}

/* Offset of the record of (block, kv head g) in its region. */
KVL_FN size_t kvl_record_off(int bits, int D, int G, int n_kv, int block, int g) {
    return ((size_t)block * n_kv + g) * kvl_record_bytes(bits, D, G);
}

/* ---- the channel permutation inside 32-channel chunks (and a last 16-channel chunk) ---- */

/* Logical channel of physical channel c: in a chunk of 32, c = 8a + 2b + e <-> 8b + 2a + e; in a
 * last chunk of 16, c = 4a + 2b + e <-> 8b + 2a + e. A lane t of the decode kernel thus reads
 * physical channels [8t, 8t + 8) (or [4t, 4t + 4)) of a chunk as 16 (8) contiguous bytes. */
KVL_FN int kvl_logical(int c, int D) {
    const int base = c & ~31, r = c & 31;
    if (base + 32 <= D) return base + 8 * ((r >> 1) & 3) + 2 * (r >> 3) + (r & 1);
    return base + 8 * ((r >> 1) & 1) + 2 * (r >> 2) + (r & 1);
}
KVL_FN int kvl_physical(int l, int D) {
    const int base = l & ~31, r = l & 31;
    if (base + 32 <= D) return base + 8 * ((r >> 1) & 3) + 2 * (r >> 3) + (r & 1);
    return base + 4 * ((r >> 1) & 3) + 2 * (r >> 3) + (r & 1);
}

/* ---- where a code sits ---- */

/* Word address (in 32-bit words, from the tile's first word) of lane L's word w, for a lane that
 * has n_full whole words (and maybe a half word, w == n_full). */
KVL_FN int kvl_word_addr(int w, int L, int n_full) {
    if (w >= n_full) return 32 * n_full + (L & 15);
    const int grp = w >> 2, cw = n_full - 4 * grp < 4 ? n_full - 4 * grp : 4;
    return 128 * grp + L * cw + (w & 3);
}

/* Word (from the tile's first word) and bit of the code of key (tile token tau, physical channel
 * c), bits wide. */
KVL_FN void kvl_key_code_loc(int bits, int D, int tau, int c, int *word, int *bit) {
    const int l = kvl_logical(c, D), kk = l >> 4, col = l & 15;
    const int c8 = col >> 3, t = (col & 7) >> 1, lohi = col & 1;
    const int m = tau >> 4, g = tau & 7, rh = (tau >> 3) & 1, L = 4 * g + t;
    const int n_full = D * bits / 32;
    if (bits == 1) {
        const int w = kk >> 1, half = w >= n_full;
        const int v = (kk & 1) * 4 + m * 2 + rh + (half && L >= 16 ? 4 : 0);
        *word = kvl_word_addr(w, L, n_full);
        *bit = 16 * lohi + 15 - 2 * v - c8;
    } else if (bits == 2) {
        *word = kvl_word_addr(kk, L, n_full);
        *bit = 16 * lohi + 2 * (m * 4 + c8 * 2 + rh);
    } else {
        *word = kvl_word_addr(2 * kk + m, L, n_full);
        *bit = 16 * lohi + 4 * (c8 * 2 + rh);
    }
}

/* Word and bit of the code of value (tile token tau, physical channel c); D % 32 == 0. */
KVL_FN void kvl_value_code_loc(int bits, int D, int tau, int c, int *word, int *bit) {
    const int l = kvl_logical(c, D), mt = l >> 4, g = l & 7, rh = (l >> 3) & 1;
    const int kc = tau >> 4, col = tau & 15, c8 = col >> 3, t = (col & 7) >> 1, lohi = col & 1;
    const int L = 4 * g + t, n_full = D * bits / 32;
    if (bits == 1) {
        *word = kvl_word_addr(mt >> 1, L, n_full);
        *bit = 16 * lohi + 15 - 2 * ((mt & 1) * 4 + kc * 2 + rh) - c8;
    } else if (bits == 2) {
        *word = kvl_word_addr(mt, L, n_full);
        *bit = 16 * lohi + 2 * (kc * 4 + c8 * 2 + rh);
    } else {
        *word = kvl_word_addr(2 * mt + kc, L, n_full);
        *bit = 16 * lohi + 4 * (c8 * 2 + rh);
    }
}

/* Index (in halves, from the record's scales / zeros) of the value scale / zero of position p of
 * the block (0 <= p < G) and channel group j (of D / G). */
KVL_FN int kvl_vmeta_index(int D, int G, int p, int j) {
    const int tile = p >> 5, tau = p & 31, ng = D / G;
    const int t = (tau & 7) >> 1, slot = (tau >> 4) * 4 + ((tau >> 3) & 1) * 2 + (tau & 1);
    return ((tile * ng + j) * 4 + t) * 8 + slot;
}

/* Code of a record: position p of the block (0 <= p < G), physical channel c. */
KVL_FN uint32_t kvl_get_code(const uint8_t *rec, int is_key, int bits, int D, int p, int c) {
    int w, b;
    if (is_key) kvl_key_code_loc(bits, D, p & 31, c, &w, &b);
    else kvl_value_code_loc(bits, D, p & 31, c, &w, &b);
    const uint32_t *words = (const uint32_t *)(rec + (size_t)(p >> 5) * kvl_tile_code_bytes(bits, D));
    return (words[w] >> b) & ((1u << bits) - 1u);
}

/* Sets (replaces) that code. */
KVL_FN void kvl_put_code(uint8_t *rec, int is_key, int bits, int D, int p, int c, uint32_t code) {
    int w, b;
    if (is_key) kvl_key_code_loc(bits, D, p & 31, c, &w, &b);
    else kvl_value_code_loc(bits, D, p & 31, c, &w, &b);
    uint32_t *words = (uint32_t *)(rec + (size_t)(p >> 5) * kvl_tile_code_bytes(bits, D));
    const uint32_t mask = ((1u << bits) - 1u) << b;
    words[w] = (words[w] & ~mask) | ((code << b) & mask);
}

/* Scale and zero (fp16 bits) of key channel c of a record / of value (p, group j). */
KVL_FN uint16_t kvl_key_scale(const uint8_t *rec, int bits, int D, int G, int c) {
    return ((const uint16_t *)(rec + kvl_scale_off(bits, D, G)))[c];
}
KVL_FN uint16_t kvl_key_zero(const uint8_t *rec, int bits, int D, int G, int c) {
    return ((const uint16_t *)(rec + kvl_zero_off(bits, D, G)))[c];
}
KVL_FN uint16_t kvl_value_scale(const uint8_t *rec, int bits, int D, int G, int p, int j) {
    return ((const uint16_t *)(rec + kvl_scale_off(bits, D, G)))[kvl_vmeta_index(D, G, p, j)];
}
KVL_FN uint16_t kvl_value_zero(const uint8_t *rec, int bits, int D, int G, int p, int j) {
    return ((const uint16_t *)(rec + kvl_zero_off(bits, D, G)))[kvl_vmeta_index(D, G, p, j)];
}

/* ---- the flush plan ---- */

/* What committing the token at position len does to a sequence holding len / kq / vq. */
typedef struct kvl_append_op {
    int32_t pos;     /* the new token's position: len before the append */
    int32_t v_flush; /* value position quantized before the store, or -1 */
    int32_t k_flush; /* first of the R keys quantized after the store, or -1 */
    int32_t pad_;
} kvl_append_op;

KVL_FN kvl_append_op kvl_append_plan(int len, int kq, int vq, int k_bits, int v_bits, int R) {
    kvl_append_op op;
    op.pos = len, op.v_flush = -1, op.k_flush = -1, op.pad_ = 0;
    if (kvl_is_quant(v_bits) && len - vq == R) op.v_flush = vq;
    if (kvl_is_quant(k_bits) && len + 1 - kq == R) op.k_flush = kq;
    return op;
}

/* The counts after committing m tokens to (len, kq, vq) one by one (a 16-bit tensor keeps 0). */
KVL_FN void kvl_advance(int len, int m, int k_bits, int v_bits, int R, int *kq, int *vq) {
    for (int i = 0; i < m; i++, len++) {
        const kvl_append_op op = kvl_append_plan(len, *kq, *vq, k_bits, v_bits, R);
        if (op.v_flush >= 0) (*vq)++;
        if (op.k_flush >= 0) *kq += R;
    }
}

#ifdef __cplusplus
}
#endif
#endif
