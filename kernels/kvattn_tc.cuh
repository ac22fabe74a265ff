/* kvattn_tc.cuh — the tensor-core split kernel of kvattn.cu (included there; uses its KvaParams
 * and seq_ok): decode attention over every stored position of a compressed layer, 32 positions
 * (a tile) at a time, on mma.sync m16n8k16 with the CACHE as the A operand and the (<= 8) query
 * heads of a GQA group as the 8 columns (kvattn_ops.cuh has the fragment layouts):
 *   scores^T [32 tok x 8 h] = Kcodes [32 x D] . W [D x 8]  + beta,  W = q' * key scale / kappa,
 *   out^T    [D x 8 h]     += Vcodes^T [D x 32] . (P * value scale / kappa) [32 x 8] + Z,
 * with q' = q * scale * log2(e) (scores in log2 units). Codes become exact fp16 operands by bit
 * placement (kvlayout.h puts each lane's bits where it needs them): 1 bit: a shift and one AND
 * per fp16 pair, giving kappa * code with kappa = 2 (bit 14) or 2^-7 (bit 13), kappa folded into
 * B; 2 / 4 bits: one AND-OR into the mantissa of 2^(10-j) and one fp16 subtraction (exact codes,
 * kappa = 1). beta_h = sum_c q'_hc zero_c comes from the same MMA with the zeros as every row of
 * A, added as the scores' initial accumulator; Z_jh = sum_t p_ht zero_tj and l_h = sum_t p_ht from
 * one MMA per 16 tokens whose A rows are the value zeros of each channel group and a row of ones.
 * P comes from the score accumulators through movmatrix (the C fragment transposed is the B
 * fragment). The fp16 window (and a 16-bit K or V) goes through the same MMAs: K rows are A
 * fragments as loaded (16 contiguous bytes per lane, kvlayout.h's channel permutation), V rows
 * transposed by movmatrix.
 *
 * Grid (parts, n_kv * hchunks, n_batch), 4 warps. The 4 x parts warps of a row share its tiles
 * by cost: "fast" tiles (every quantized tensor fully quantized: kvattn_fast_tiles) cost 1, the
 * tail's tiles (window, the tile where values leave the window, the partial last tile) cost
 * tail_cost, and warp w of part x takes the tiles of cost share 4x + w (consecutive). Each warp
 * streams its tiles' records (K record, V record) through a ring of STAGES
 * shared-memory stages filled by the bulk copy engine (one elected lane, an mbarrier per stage);
 * fp16 rows are read straight into registers. At the end the 4 warps' (m, l, o) meet in shared
 * memory and the block writes one part; kvattn_combine_kernel merges parts and the new token.
 * Accuracy: codes exact; W and P * scale rounded to fp16 (~2^-11 relative), fp32 accumulation;
 * tests/gpu_kvattn.c holds it to max |d| <= 1e-3 (|ref| + 1), relative L2 <= 2e-3 against
 * kvattn_ref. Range: |q'_c * key scale_c| < 512 for 1-bit keys (the 2^-7 class carries x128). */
#include "kvattn_ops.cuh"

#define KVT_WARPS 4
#define KVT_BAR_BYTES 128    /* the mbarriers, before the rings */
#define KVT_STAGE_BUDGET 12288 /* bytes of one warp's ring */

template <int D, int KB, int VB> struct TcShape {
    static constexpr bool KQ = KB <= 4, VQ = VB <= 4;
    static constexpr int NKK = D / 16;          /* key k-steps = value M-tiles */
    static constexpr int NCH = D / 32;          /* whole 32-channel chunks */
    static constexpr bool HALF = D % 32 != 0;   /* a last 16-channel chunk */
    static constexpr int KREC = KQ ? 4 * D * KB + 4 * D : 0; /* record bytes (G 32) */
    static constexpr int VREC = VQ ? 4 * D * VB + 4 * D : 0;
    static constexpr int STAGE = KREC + VREC;
    static constexpr int STAGES_RAW = STAGE ? KVT_STAGE_BUDGET / STAGE : 4;
    static constexpr int STAGES = STAGES_RAW < 2 ? 2 : STAGES_RAW > 4 ? 4 : STAGES_RAW;
    static constexpr int KW = KQ ? D * KB / 32 : 0; /* whole code words of a lane */
    static constexpr bool KHALF = KQ && (D * KB) % 32 != 0;
    static constexpr int VW = VQ ? D * VB / 32 : 0;
    static constexpr int NG = VQ ? D / 32 : 0;  /* value channel groups */
    static constexpr int ONES = NG;             /* row of the Z operand that sums p (l) */
    static constexpr size_t RING = (size_t)KVT_WARPS * STAGES * STAGE;
    static constexpr size_t MERGE = (size_t)KVT_WARPS * KVA_HCHUNK * (D + 2) * 4;
    static constexpr size_t SMEM = KVT_BAR_BYTES + (RING > MERGE ? RING : MERGE);
};

namespace kvt {

constexpr uint32_t M14 = 0x40004000u, M13 = 0x20002000u; /* 1-bit classes: kappa 2, 2^-7 */
constexpr uint32_t H2_HALF = 0x38003800u, H2_128 = 0x58005800u, H2_ONES = 0x3c003c00u;

/* 1 bit: word x moved so that the pair of register v sits at bits (14, 30) and (13, 29). */
__device__ __forceinline__ uint32_t v1(uint32_t x, int v) { return v == 0 ? x >> 1 : x << (2 * v - 1); }

/* The fp16x2 magic 2^(10 - j) of a code field at bit j (bit j then weighs 1), j = 0, 2, .. 8, held
 * in registers (KvaParams.magic, so that each field costs one LOP3 and one HADD2). */
struct Magic {
    uint32_t m[5]; /* m[j / 2] */
};
__device__ __forceinline__ Magic load_magic(const KvaParams &P) {
    Magic g;
#pragma unroll
    for (int i = 0; i < 5; i++) g.m[i] = P.magic[i];
    return g;
}

/* 2 bits: field f (bits 2f / 16 + 2f of x, f < 5; of x >> 10 after) as exact fp16 codes. */
__device__ __forceinline__ uint32_t f2(uint32_t x, int f, const Magic &mg) {
    const uint32_t y = f < 5 ? x : x >> 10;
    const int j = f < 5 ? 2 * f : 2 * (f - 5);
    return hsub2(and_or(y, 0x30003u << j, mg.m[j / 2]), mg.m[j / 2]);
}
/* 4 bits: field f (bits 4f of x, f < 2; of x >> 8 after). */
__device__ __forceinline__ uint32_t f4(uint32_t x, int f, const Magic &mg) {
    const uint32_t y = f < 2 ? x : x >> 8;
    const int j = 4 * (f & 1);
    return hsub2(and_or(y, 0xf000fu << j, mg.m[j / 2]), mg.m[j / 2]);
}

/* A lane's whole code words of a tile (kvl_word_addr: groups of four, the lane's own run). */
template <int N> __device__ __forceinline__ void load_words(const uint32_t *tile, int L, uint32_t (&w)[N > 0 ? N : 1]) {
#pragma unroll
    for (int q = 0; q < (N + 3) / 4; q++) {
        const int cw = N - 4 * q < 4 ? N - 4 * q : 4;
        const uint32_t *p = tile + 128 * q + L * cw;
        if (cw == 4) {
            const uint4 u = ld16(p);
            w[4 * q] = u.x, w[4 * q + 1] = u.y, w[4 * q + 2] = u.z, w[4 * q + 3] = u.w;
        } else if (cw == 2) {
            const uint2 u = ld8(p);
            w[4 * q] = u.x, w[4 * q + 1] = u.y;
        } else {
#pragma unroll
            for (int i = 0; i < cw; i++) w[4 * q + i] = ld4(p + i);
        }
    }
}

/* Key A fragments of M-tile m, k-step kk (x: the k-step's word(s); kh: kk % 2 for 1 bit). */
template <int KB>
__device__ __forceinline__ void key_frag(uint32_t a[4], uint32_t x, int kh, int m, const Magic &mg) {
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
        if (KB == 1) {
            const uint32_t y = v1(x, kh * 4 + m * 2 + rh);
            a[rh] = y & M14, a[2 + rh] = y & M13;
        } else if (KB == 2) {
            a[rh] = f2(x, m * 4 + rh, mg), a[2 + rh] = f2(x, m * 4 + 2 + rh, mg);
        } else {
            a[rh] = f4(x, rh, mg), a[2 + rh] = f4(x, 2 + rh, mg);
        }
    }
}

/* Value A fragments of M-tile mt, token step kc (x: the word holding them). */
template <int VB>
__device__ __forceinline__ void val_frag(uint32_t a[4], uint32_t x, int mt, int kc, const Magic &mg) {
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
        if (VB == 1) {
            const uint32_t y = v1(x, (mt & 1) * 4 + kc * 2 + rh);
            a[rh] = y & M14, a[2 + rh] = y & M13;
        } else if (VB == 2) {
            a[rh] = f2(x, kc * 4 + rh, mg), a[2 + rh] = f2(x, kc * 4 + 2 + rh, mg);
        } else {
            a[rh] = f4(x, rh, mg), a[2 + rh] = f4(x, 2 + rh, mg);
        }
    }
}

/* Lane mask of fp16 pairs (tokens tok, tok + 1) below lim. */
__device__ __forceinline__ uint32_t pair_mask(int tok, int lim) {
    return (tok < lim ? 0x0000ffffu : 0u) | (tok + 1 < lim ? 0xffff0000u : 0u);
}

/* The per-warp state of a row part. */
template <int D> struct TcState {
    float o[D / 16][4]; /* out^T accumulators: M-tile mt rows 16mt + g (+8), heads 2t, 2t+1 */
    float z[4];         /* Z / l accumulator: row g (value group g, or the ones row), heads 2t.. */
    float m[2];         /* running max of heads 2t, 2t+1 (log2 units) */
};

/* One tile of positions 32 i .. of kv head kvh; st: its records in shared memory. */
template <int D, int KB, int VB, bool FAST>
__device__ __forceinline__ void tc_tile(const KvaParams &P, const kvq_seq_dev &s, int kvh, int i,
                                        const uint8_t *st, const uint32_t (&qb)[D / 16][2],
                                        const uint32_t (&qk)[D / 16][2], TcState<D> &S, int lane,
                                        const Magic &mg) {
    using T = TcShape<D, KB, VB>;
    const int g = lane >> 2, t = lane & 3, p0 = i * KVL_TILE;
    const int n_valid = FAST ? KVL_TILE : min(KVL_TILE, s.len - p0);
    const bool kq_tile = T::KQ && (FAST || p0 < s.kq);
    const int v_lo = !T::VQ ? 0 : FAST ? KVL_TILE : max(0, min(KVL_TILE, s.vq - p0));
    const size_t krow = (size_t)P.n_kv * D; /* halves between window rows */

    /* ---- scores of the tile's 32 tokens (M-tile m: tokens 16m + g, 16m + 8 + g) ---- */
    float sc[2][4];
    if (kq_tile) {
        const uint32_t *kc = reinterpret_cast<const uint32_t *>(st);
        const __half *ks = reinterpret_cast<const __half *>(st + 4 * D * KB), *kz = ks + D;
        uint32_t kw[T::KW > 0 ? T::KW : 1];
        load_words<T::KW>(kc, lane, kw);
        uint32_t khw = 0;
        if (T::KHALF) khw = kc[32 * T::KW + (lane & 15)] << (lane >= 16 ? 8 : 0);
        /* two independent accumulator chains (even / odd k-steps) for beta and for each M-tile's
         * scores: half the dependent-MMA latency per tile */
        float beta[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int w = 0; w < T::NCH; w++) {
            const uint4 z = ld16(kz + 32 * w + 8 * t);
            const uint32_t zz[4] = {z.x, z.y, z.z, z.w};
#pragma unroll
            for (int kh = 0; kh < 2; kh++) {
                const uint32_t a[4] = {zz[2 * kh], zz[2 * kh], zz[2 * kh + 1], zz[2 * kh + 1]};
                mma16816(beta[kh], a, qb[2 * w + kh][0], qb[2 * w + kh][1], beta[kh]);
            }
        }
        if (T::HALF) {
            const uint2 z = ld8(kz + 32 * T::NCH + 4 * t);
            const uint32_t a[4] = {z.x, z.x, z.y, z.y};
            mma16816(beta[0], a, qb[T::NKK - 1][0], qb[T::NKK - 1][1], beta[0]);
        }
        float sc2[2][4];
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int e = 0; e < 4; e++) sc[m][e] = beta[0][e], sc2[m][e] = beta[1][e];
#pragma unroll
        for (int kk = 0; kk < T::NKK; kk++) {
            uint32_t s0, s1; /* key scales of the lane's channels of k-step kk (b0, b1 pairs) */
            if (kk / 2 < T::NCH) {
                const uint4 u = ld16(ks + 32 * (kk / 2) + 8 * t);
                s0 = kk & 1 ? u.z : u.x, s1 = kk & 1 ? u.w : u.y;
            } else {
                const uint2 u = ld8(ks + 32 * T::NCH + 4 * t);
                s0 = u.x, s1 = u.y;
            }
            const uint32_t b0 = hmul2(qk[kk][0], s0), b1 = hmul2(qk[kk][1], s1);
            const uint32_t x = KB == 1 ? (kk / 2 < T::KW ? kw[kk / 2] : khw) : KB == 2 ? kw[kk] : 0;
#pragma unroll
            for (int m = 0; m < 2; m++) {
                uint32_t a[4];
                key_frag<KB>(a, KB == 4 ? kw[2 * kk + m] : x, KB == 1 && kk / 2 < T::KW ? kk & 1 : 0, m, mg);
                if (kk & 1) mma16816(sc2[m], a, b0, b1, sc2[m]);
                else mma16816(sc[m], a, b0, b1, sc[m]);
            }
        }
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int e = 0; e < 4; e++) sc[m][e] += sc2[m][e];
    } else { /* fp16 keys: the window (or a 16-bit cache), slot = position % cap */
        const __half *kb = reinterpret_cast<const __half *>(s.k_win) +
                           ((size_t)(p0 % s.k_cap)) * krow + (size_t)kvh * D;
#pragma unroll
        for (int m = 0; m < 2; m++) {
            uint32_t a[T::NKK][4];
#pragma unroll
            for (int rh = 0; rh < 2; rh++) {
                const int tau = 16 * m + 8 * rh + g;
                const bool ok = tau < n_valid;
                const __half *r = kb + (size_t)tau * krow;
#pragma unroll
                for (int w = 0; w < T::NCH; w++) {
                    const uint4 u = ok ? ldg16(r + 32 * w + 8 * t) : make_uint4(0, 0, 0, 0);
                    a[2 * w][rh] = u.x, a[2 * w][2 + rh] = u.y;
                    a[2 * w + 1][rh] = u.z, a[2 * w + 1][2 + rh] = u.w;
                }
                if (T::HALF) {
                    const uint2 u = ok ? ldg8(r + 32 * T::NCH + 4 * t) : make_uint2(0, 0);
                    a[T::NKK - 1][rh] = u.x, a[T::NKK - 1][2 + rh] = u.y;
                }
            }
            const float zero[4] = {0.f, 0.f, 0.f, 0.f};
            mma16816(sc[m], a[0], qb[0][0], qb[0][1], zero);
#pragma unroll
            for (int kk = 1; kk < T::NKK; kk++) mma16816(sc[m], a[kk], qb[kk][0], qb[kk][1], sc[m]);
        }
    }
    if (!FAST && n_valid < KVL_TILE) {
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int rh = 0; rh < 2; rh++)
                if (16 * m + 8 * rh + g >= n_valid) sc[m][2 * rh] = sc[m][2 * rh + 1] = -INFINITY;
    }

    /* ---- online softmax of heads 2t, 2t+1 (their 32 tokens are over the 8 lanes of this t) ---- */
    float mx0 = fmaxf(fmaxf(sc[0][0], sc[0][2]), fmaxf(sc[1][0], sc[1][2]));
    float mx1 = fmaxf(fmaxf(sc[0][1], sc[0][3]), fmaxf(sc[1][1], sc[1][3]));
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o));
    }
    const float n0 = fmaxf(S.m[0], mx0), n1 = fmaxf(S.m[1], mx1); /* finite: token 0 is valid */
    const float al0 = exp2_ftz(S.m[0] - n0), al1 = exp2_ftz(S.m[1] - n1); /* 0 before the first tile */
    S.m[0] = n0, S.m[1] = n1;
#pragma unroll
    for (int m = 0; m < 2; m++) {
        sc[m][0] = exp2_ftz(sc[m][0] - n0), sc[m][1] = exp2_ftz(sc[m][1] - n1);
        sc[m][2] = exp2_ftz(sc[m][2] - n0), sc[m][3] = exp2_ftz(sc[m][3] - n1);
    }
    if (__any_sync(0xffffffffu, al0 != 1.0f || al1 != 1.0f)) {
#pragma unroll
        for (int mt = 0; mt < T::NKK; mt++)
            S.o[mt][0] *= al0, S.o[mt][1] *= al1, S.o[mt][2] *= al0, S.o[mt][3] *= al1;
        S.z[0] *= al0, S.z[1] *= al1, S.z[2] *= al0, S.z[3] *= al1;
    }
    /* P as B fragments: pb[kc][0] = (head g; tokens 16kc + 2t, +1), pb[kc][1] = (.. + 8) */
    uint32_t pb[2][2];
#pragma unroll
    for (int kc = 0; kc < 2; kc++) {
        pb[kc][0] = movm_t(pack_h2(sc[kc][0], sc[kc][1]));
        pb[kc][1] = movm_t(pack_h2(sc[kc][2], sc[kc][3]));
    }

    /* ---- values: quantized positions [0, v_lo) of the tile ---- */
    const bool mixed = !FAST && v_lo < KVL_TILE;
    if (T::VQ && v_lo > 0) {
        const uint8_t *vr = st + T::KREC;
        const uint32_t *vc = reinterpret_cast<const uint32_t *>(vr);
        const __half *vs = reinterpret_cast<const __half *>(vr + 4 * D * VB), *vz = vs + D;
        uint32_t vw[T::VW > 0 ? T::VW : 1];
        load_words<T::VW>(vc, lane, vw);
        uint32_t tm[2][2]; /* [kc][c8]: the pairs below v_lo (mixed tiles) */
#pragma unroll
        for (int kc = 0; kc < 2; kc++)
#pragma unroll
            for (int c8 = 0; c8 < 2; c8++)
                tm[kc][c8] = mixed ? pair_mask(16 * kc + 8 * c8 + 2 * t, v_lo) : 0xffffffffu;
        { /* Z and l: A rows g < NG the value zeros of group g, row ONES all ones */
            const int gj = g < T::NG ? g : 0;
            const uint4 z = ld16(vz + (gj * 4 + t) * 8);
            const uint32_t keep = g < T::NG ? 0xffffffffu : 0u, ones = g == T::ONES ? H2_ONES : 0u;
            const uint32_t a0[4] = {(z.x & keep & tm[0][0]) | ones, 0u, (z.y & keep & tm[0][1]) | ones, 0u};
            const uint32_t a1[4] = {(z.z & keep & tm[1][0]) | ones, 0u, (z.w & keep & tm[1][1]) | ones, 0u};
            mma16816(S.z, a0, pb[0][0], pb[0][1], S.z);
            mma16816(S.z, a1, pb[1][0], pb[1][1], S.z);
        }
        uint32_t pk[2][2];
#pragma unroll
        for (int kc = 0; kc < 2; kc++) {
            pk[kc][0] = VB == 1 ? hmul2(pb[kc][0], H2_HALF) : pb[kc][0];
            pk[kc][1] = VB == 1 ? hmul2(pb[kc][1], H2_128) : pb[kc][1];
        }
#pragma unroll
        for (int j = 0; j < T::NG; j++) {
            const uint4 u = ld16(vs + (j * 4 + t) * 8);
            const uint32_t bj[2][2] = {{hmul2(pk[0][0], u.x) & tm[0][0], hmul2(pk[0][1], u.y) & tm[0][1]},
                                       {hmul2(pk[1][0], u.z) & tm[1][0], hmul2(pk[1][1], u.w) & tm[1][1]}};
#pragma unroll
            for (int mt = 2 * j; mt < 2 * j + 2; mt++)
#pragma unroll
                for (int kc = 0; kc < 2; kc++) {
                    uint32_t a[4];
                    val_frag<VB>(a, VB == 1 ? vw[mt >> 1] : VB == 2 ? vw[mt] : vw[2 * mt + kc], mt, kc, mg);
                    mma16816(S.o[mt], a, bj[kc][0], bj[kc][1], S.o[mt]);
                }
        }
    }
    /* ---- values: fp16 positions [v_lo, n_valid) (window, or a 16-bit cache) ---- */
    if (!T::VQ || v_lo < KVL_TILE) {
        const __half *vb = reinterpret_cast<const __half *>(s.v_win) +
                           ((size_t)(p0 % s.v_cap)) * krow + (size_t)kvh * D;
#pragma unroll
        for (int kc = 0; kc < 2; kc++) {
            uint32_t a[T::NKK][4];
#pragma unroll
            for (int c8 = 0; c8 < 2; c8++) { /* token block 2kc + c8: rows 16kc + 8c8 + g */
                const int tau = 16 * kc + 8 * c8 + g;
                const bool ok = tau >= v_lo && tau < n_valid;
                const __half *r = vb + (size_t)tau * krow;
#pragma unroll
                for (int w = 0; w < T::NCH; w++) {
                    const uint4 u = ok ? ldg16(r + 32 * w + 8 * t) : make_uint4(0, 0, 0, 0);
                    const uint32_t hh[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
                    for (int h = 0; h < 4; h++) { /* logical 8-channel block 4w + h */
                        const int blk = 4 * w + h;
                        a[blk >> 1][2 * c8 + (blk & 1)] = movm_t(hh[h]);
                    }
                }
                if (T::HALF) {
                    const uint2 u = ok ? ldg8(r + 32 * T::NCH + 4 * t) : make_uint2(0, 0);
                    a[T::NKK - 1][2 * c8] = movm_t(u.x);
                    a[T::NKK - 1][2 * c8 + 1] = movm_t(u.y);
                }
            }
#pragma unroll
            for (int mt = 0; mt < T::NKK; mt++) mma16816(S.o[mt], a[mt], pb[kc][0], pb[kc][1], S.o[mt]);
        }
        if (!(T::VQ && v_lo > 0)) { /* l: the ones row (the quantized part counted it otherwise) */
            const uint32_t ones = g == T::ONES ? H2_ONES : 0u;
            const uint32_t a[4] = {ones, 0u, ones, 0u};
            mma16816(S.z, a, pb[0][0], pb[0][1], S.z);
            mma16816(S.z, a, pb[1][0], pb[1][1], S.z);
        }
    }
}

/* The warp's tiles [first, last) through its ring (tiles below n_fast on the fast path). */
template <int D, int KB, int VB>
__device__ __forceinline__ void tc_run(const KvaParams &P, const kvq_seq_dev &s, int kvh, int first,
                                       int last, int n_fast, uint8_t *ring, uint64_t *bars,
                                       const uint32_t (&qb)[D / 16][2], const uint32_t (&qk)[D / 16][2],
                                       TcState<D> &S, int lane) {
    using T = TcShape<D, KB, VB>;
    const int n = last - first;
    const Magic mg = load_magic(P);
    auto issue = [&](int tile, int stg) { /* lane 0: the records of `tile` into stage stg */
        uint8_t *dst = ring + (size_t)stg * T::STAGE;
        const bool nk = T::KQ && tile * KVL_TILE < s.kq;
        const bool nv = T::VQ && tile * KVL_TILE < s.vq;
        const uint32_t bytes = (nk ? T::KREC : 0) + (nv ? T::VREC : 0);
        if (!bytes) {
            mbar_arrive(&bars[stg]);
            return;
        }
        fence_async(); /* the stage's last reads before the engine's writes */
        mbar_arrive_tx(&bars[stg], bytes);
        if (nk) bulk_g2s(dst, s.k_quant + kvl_record_off(KB, D, KVL_TILE, P.n_kv, tile, kvh), T::KREC, &bars[stg]);
        if (nv)
            bulk_g2s(dst + T::KREC, s.v_quant + kvl_record_off(VB, D, KVL_TILE, P.n_kv, tile, kvh),
                     T::VREC, &bars[stg]);
    };
    if (lane == 0)
        for (int j = 0; j < T::STAGES - 1 && j < n; j++) issue(first + j, j);
    for (int j = 0; j < n; j++) {
        if (lane == 0 && j + T::STAGES - 1 < n) issue(first + j + T::STAGES - 1, (j + T::STAGES - 1) % T::STAGES);
        mbar_wait(&bars[j % T::STAGES], (uint32_t)(j / T::STAGES) & 1u);
        const uint8_t *st = ring + (size_t)(j % T::STAGES) * T::STAGE;
        if (first + j < n_fast) tc_tile<D, KB, VB, true>(P, s, kvh, first + j, st, qb, qk, S, lane, mg);
        else tc_tile<D, KB, VB, false>(P, s, kvh, first + j, st, qb, qk, S, lane, mg);
        __syncwarp(); /* every lane is done with the stage before it is refilled */
    }
}

} // namespace kvt

template <int D, int KB, int VB>
static __global__ void __launch_bounds__(KVT_WARPS * 32, KVT_MIN_BLOCKS) kvattn_tc_kernel(const KvaParams P) {
    using T = TcShape<D, KB, VB>;
    using namespace kvt;
    KVT_DYN_SMEM(smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int b = blockIdx.z, kvh = blockIdx.y / P.hchunks, hc = blockIdx.y % P.hchunks;
    const kvq_seq_dev s = P.seqs[b];
    if (!seq_ok(P, s)) return; /* the combine kernel writes NaN */
    const int group = P.n_heads / P.n_kv, h0 = hc * KVA_HCHUNK;
    const int nh = min(KVA_HCHUNK, group - h0);
    const size_t row0 = (size_t)b * P.n_heads + (size_t)kvh * group + h0; /* first head's row */
    const int n_fast = kvattn_fast_tiles(s.kq, s.vq, KB, VB), n_tiles = (s.len + KVL_TILE - 1) / KVL_TILE;
    const int part = blockIdx.x;
    /* this warp's tiles: cost share wi of nw, a fast tile 1, a tail tile tail_cost */
    const long long cost = n_fast + (long long)(n_tiles - n_fast) * P.tail_cost;
    const long long nw = (long long)P.n_parts * KVT_WARPS, wi = (long long)part * KVT_WARPS + warp;
    auto tile_at = [&](long long c) { /* the first tile starting at or after cost c */
        return (int)(c <= n_fast ? c : n_fast + (c - n_fast + P.tail_cost - 1) / P.tail_cost);
    };
    const int first = tile_at(wi * cost / nw), last = tile_at((wi + 1) * cost / nw);

    /* q' = q * scale * log2(e) as fp16 B fragments of head g: k-step 2w + (h >> 1), register h & 1
     * holds physical channels 32w + 8t + 2h, +1 (logical 32w + 8h + 2t, +1: kvl_logical) */
    uint32_t qb[D / 16][2], qk[D / 16][2];
    {
        const bool ok = g < nh;
        const float *qr = P.q + (row0 + (ok ? g : 0)) * D;
#pragma unroll
        for (int w = 0; w < T::NCH; w++) {
            float4 x0 = *reinterpret_cast<const float4 *>(qr + 32 * w + 8 * t);
            float4 x1 = *reinterpret_cast<const float4 *>(qr + 32 * w + 8 * t + 4);
            if (!ok) x0 = x1 = make_float4(0.f, 0.f, 0.f, 0.f);
            const float qs = P.qscale;
            qb[2 * w][0] = pack_h2(x0.x * qs, x0.y * qs), qb[2 * w][1] = pack_h2(x0.z * qs, x0.w * qs);
            qb[2 * w + 1][0] = pack_h2(x1.x * qs, x1.y * qs), qb[2 * w + 1][1] = pack_h2(x1.z * qs, x1.w * qs);
        }
        if (T::HALF) {
            float4 x = *reinterpret_cast<const float4 *>(qr + 32 * T::NCH + 4 * t);
            if (!ok) x = make_float4(0.f, 0.f, 0.f, 0.f);
            qb[T::NKK - 1][0] = pack_h2(x.x * P.qscale, x.y * P.qscale);
            qb[T::NKK - 1][1] = pack_h2(x.z * P.qscale, x.w * P.qscale);
        }
#pragma unroll
        for (int kk = 0; kk < T::NKK; kk++) { /* 1-bit keys: / kappa (2 for b0, 2^-7 for b1) */
            qk[kk][0] = KB == 1 ? hmul2(qb[kk][0], H2_HALF) : qb[kk][0];
            qk[kk][1] = KB == 1 ? hmul2(qb[kk][1], H2_128) : qb[kk][1];
        }
    }

    uint64_t *bars = reinterpret_cast<uint64_t *>(smem) + warp * T::STAGES;
    uint8_t *ring = smem + KVT_BAR_BYTES + (size_t)warp * T::STAGES * T::STAGE;
    if (lane == 0) {
        for (int j = 0; j < T::STAGES; j++) mbar_init(&bars[j], 1);
        mbar_fence_init();
    }
    __syncwarp();
    TcState<D> S;
#pragma unroll
    for (int mt = 0; mt < T::NKK; mt++) S.o[mt][0] = S.o[mt][1] = S.o[mt][2] = S.o[mt][3] = 0.f;
    S.z[0] = S.z[1] = S.z[2] = S.z[3] = 0.f;
    S.m[0] = S.m[1] = -INFINITY;
    if (first < last) tc_run<D, KB, VB>(P, s, kvh, first, last, n_fast, ring, bars, qb, qk, S, lane);

    /* ---- the warp's state into shared memory (the rings are idle now): [warp][head][D + 2], out
     * channel c of head 2t + e = o + Z of c's group; then the block merges its warps ---- */
    float zj[T::NG > 0 ? T::NG : 1][2];
#pragma unroll
    for (int j = 0; j < T::NG; j++)
        zj[j][0] = __shfl_sync(0xffffffffu, S.z[0], 4 * j + t), zj[j][1] = __shfl_sync(0xffffffffu, S.z[1], 4 * j + t);
    const float l0 = __shfl_sync(0xffffffffu, S.z[0], 4 * T::ONES + t);
    const float l1 = __shfl_sync(0xffffffffu, S.z[1], 4 * T::ONES + t);
    __syncthreads(); /* every warp is done with its ring */
    float *mrg = reinterpret_cast<float *>(smem + KVT_BAR_BYTES);
#pragma unroll
    for (int mt = 0; mt < T::NKK; mt++)
#pragma unroll
        for (int rh = 0; rh < 2; rh++) {
            const int c = kvl_physical(16 * mt + 8 * rh + g, D);
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float zv = T::VQ ? zj[(mt >> 1) < (T::NG > 0 ? T::NG : 1) ? (mt >> 1) : 0][e] : 0.f;
                mrg[((size_t)warp * KVA_HCHUNK + 2 * t + e) * (D + 2) + c] = S.o[mt][2 * rh + e] + zv;
            }
        }
    if (g == 0) {
        mrg[((size_t)warp * KVA_HCHUNK + 2 * t) * (D + 2) + D] = S.m[0];
        mrg[((size_t)warp * KVA_HCHUNK + 2 * t) * (D + 2) + D + 1] = l0;
        mrg[((size_t)warp * KVA_HCHUNK + 2 * t + 1) * (D + 2) + D] = S.m[1];
        mrg[((size_t)warp * KVA_HCHUNK + 2 * t + 1) * (D + 2) + D + 1] = l1;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nh * D; i += KVT_WARPS * 32) {
        const int h = i / D, c = i % D;
        float mw[KVT_WARPS], mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < KVT_WARPS; w++) mx = fmaxf(mx, mw[w] = mrg[(w * KVA_HCHUNK + h) * (D + 2) + D]);
        const size_t rec = (row0 + h) * P.n_parts + part;
        if (mx == -INFINITY) { /* no tile in this block */
            if (c == 0) P.ml_part[2 * rec] = -INFINITY, P.ml_part[2 * rec + 1] = 0.0f;
            continue;
        }
        float acc = 0.0f, lsum = 0.0f;
#pragma unroll
        for (int w = 0; w < KVT_WARPS; w++) {
            if (mw[w] == -INFINITY) continue;
            const float f = exp2f(mw[w] - mx);
            const float *r = mrg + (w * KVA_HCHUNK + h) * (D + 2);
            acc += f * r[c];
            lsum += f * r[D + 1];
        }
        P.o_part[rec * D + c] = acc;
        if (c == 0) P.ml_part[2 * rec] = mx, P.ml_part[2 * rec + 1] = lsum;
    }
}
