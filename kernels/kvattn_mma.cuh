/* kvattn_mma.cuh — the tensor-core split kernel of kvattn.cu (included there; uses its KvaParams,
 * seq_ok and KVA_* constants). It covers the 32-token tiles below min(kq, vq), where keys and
 * values are both quantized, reading the packed codes straight into mma.sync.m16n8k16 operands.
 *
 * Grid (mma_blocks + tail parts, n_kv * hchunks, n_batch), 128 threads. Blocks x >= mma_blocks
 * run the scalar kernel's tail part x - mma_blocks (kvattn.cu). In an MMA block, warp w takes
 * tiles x*mma_tiles + w, +4, ... of its row with its own online-softmax state; at the end the 4
 * warps' (m, l, o) meet in shared memory and the block writes part x. A warp's 16 MMA rows are the
 * (<= 8) query heads of its chunk twice: row g holds the high fp16 half of an operand of head g,
 * row g + 8 the low half (x - fp16(x)), so every non-integer operand keeps ~22 bits and the
 * two rows' fp32 results are added. Lane (g = lane / 4, t = lane % 4) thus serves head g.
 * Per tile (cp.async, 3-stage ring per warp: the tile's key words [D][KB code words + scale|zero]
 * and its 32 value rows [D*VB/32 code words][D/G scale|zero words]):
 *  - scores S = W . codes + beta: W[h][c] = q'_hc * scale_c (q' = q * scale * log2 e), split
 *    into hi/lo with an fp16 two-product (hi = q_hi*s, lo = fma(q_hi, s, -hi) + q_lo*s), A rows;
 *    B = the codes of 8 tokens x 16 channels, exact in fp16: a byte_perm pulls the byte holding
 *    token (8nt + g)'s code out of two channel words, a LOP3 ORs it under an exponent so the
 *    half is 2^(10-p) + code, one HSUB2 leaves the code. The lane's channels for k-step kk are
 *    16kk + 4t .. 16kk + 4t + 3 (a k permutation shared by A and B), read as (KB+1) 16-byte
 *    smem loads. beta_h = sum_c q'_hc zero_c comes from one more MMA per k-step (A = q' hi/lo,
 *    B = the zeros in every column).
 *  - online softmax in fp32 on the lane's 8 scores (row max over the 4 lanes of a head);
 *  - values O += (p * scale) . codes + Z: A = p * scale_{t, group} hi/lo (one two-product per
 *    group of G channels), B = codes of 16 tokens x 8 channels (same expansion, the byte of
 *    channel 8nt + g from the words of two tokens); Z_hj = sum_t p_ht zero_tj through one MMA
 *    per 16 tokens with B = the zeros (columns = groups), added once per part.
 * Accuracy: codes exact, operands ~2^-22 relative, fp32 accumulation: fp32-level. Limit: the fp16
 * halves need |q_c * scale * log2(e) * key_scale_c| < 65504 (real models stay near 1e3).
 * Checked on a CPU warp emulator (the kernel source run by one host thread per lane, mma and
 * f16x2 ops emulated bit-wise from the PTX fragment layouts) against kvattn_ref. */
#include <cuda_pipeline.h>

#include "attention_tile.cuh"

#define KVM_STAGES 3
#define KVM_WARPS 4
#ifndef KVM_MIN_BLOCKS
#define KVM_MIN_BLOCKS 3 /* blocks per SM the register allocation must allow (occupancy) */
#endif

template <int D, int KB, int VB> struct KvmShape {
    static constexpr int KWORDS = D * (KB + 1);     /* key words of a tile */
    static constexpr int CW = D * VB / 32;          /* code words of a value row */
    static constexpr int VRAW = CW + D / 32;        /* + scale|zero words (G = 32 at most) */
    static constexpr int VROW = VRAW + (12 - VRAW % 8) % 8; /* = 4 mod 8: conflict-free rows */
    static constexpr int STAGE = KWORDS + 32 * VROW; /* words */
};

static __device__ __forceinline__ __half2 as_h2(uint32_t x) {
    return *reinterpret_cast<const __half2 *>(&x);
}
static __device__ __forceinline__ uint32_t as_u32(__half2 x) {
    return *reinterpret_cast<const uint32_t *>(&x);
}
static __device__ __forceinline__ uint32_t h2_mul(uint32_t a, uint32_t b) {
    return as_u32(__hmul2(as_h2(a), as_h2(b)));
}
static __device__ __forceinline__ uint32_t h2_fma(uint32_t a, uint32_t b, uint32_t c) {
    return as_u32(__hfma2(as_h2(a), as_h2(b), as_h2(c)));
}
static __device__ __forceinline__ uint32_t h2_sub(uint32_t a, uint32_t b) {
    return as_u32(__hsub2(as_h2(a), as_h2(b)));
}

/* hi/lo fp16 halves of (x, y): hi = fp16(x), lo = fp16(x - hi). */
static __device__ __forceinline__ void split2(float x, float y, uint32_t &hi, uint32_t &lo) {
    hi = akv_attn::pack_half2(x, y);
    const float2 h = __half22float2(as_h2(hi));
    lo = akv_attn::pack_half2(x - h.x, y - h.y);
}

/* (hi, lo) * s as hi/lo halves: hi' = hi*s, lo' = fma(hi, s, -hi') + lo*s. */
static __device__ __forceinline__ void mul_split(uint32_t hi, uint32_t lo, uint32_t s,
                                                 uint32_t &rhi, uint32_t &rlo) {
    rhi = h2_mul(hi, s);
    rlo = h2_fma(lo, s, h2_fma(hi, s, rhi ^ 0x80008000u));
}

/* Expansion constants of a lane: the code of element (g * bits) sits at bit p of its byte. */
struct KvmExpand {
    uint32_t mask, magic, sel[4]; /* sel[sub]: byte (sub + lane byte) of w0 -> byte 0, of w1 -> 2 */
    __device__ __forceinline__ KvmExpand(int g, int bits) {
        const int p = (g * bits) & 7;
        const uint32_t m = ((1u << bits) - 1u) << p;
        mask = m | (m << 16);
        const uint32_t e = (uint32_t)(25 - p) << 10; /* fp16 2^(10 - p) */
        magic = e | (e << 16);
        const uint32_t byte = (uint32_t)((g * bits) >> 3);
#pragma unroll
        for (int sub = 0; sub < 4; sub++) sel[sub] = (byte + sub) | ((byte + sub + 4) << 8);
    }
    /* The codes of byte (sub + lane byte) of w0 (low half) and w1 (high half), as fp16;
     * sub is a compile-time constant at every call (the unrolled n-tile loops). */
    __device__ __forceinline__ uint32_t operator()(uint32_t w0, uint32_t w1, int sub) const {
        const uint32_t x = __byte_perm(w0, w1, sel[sub]);
        return h2_sub((x & mask) | magic, magic);
    }
};

static __device__ __forceinline__ void cp_async4(void *dst, const void *src) {
    __pipeline_memcpy_async(dst, src, 4); /* cp.async.ca 4 bytes; committed with the rest */
}

/* Per-lane walk of a tile's value words (32 rows x wpt words, word i = lane + 32k at row i / wpt,
 * word i % wpt), set up once so that the per-tile copies need no division. */
struct KvmWalk {
    int r0, w0, dr, dw, wpt;
};

/* Issues the copies of tile `tile` (positions 32*tile ..) of kv head g into stage st. */
template <int D, int KB, int VB>
static __device__ __forceinline__ void kvm_load(uint32_t *st, const kvq_seq_dev &s, int tile,
                                                int g, int H, int G, int lg, const KvmWalk &wk,
                                                int lane) {
    using S = KvmShape<D, KB, VB>;
    const int blk = (tile * 32) >> lg, ti = (tile * 32 & (G - 1)) >> 5;
    const size_t uk = (size_t)G * KB / 8 + 4; /* key unit bytes */
    const uint8_t *kbase = s.k_quant + ((size_t)blk * H + g) * D * uk;
    if (G == 32) { /* the tile is the whole key block: one contiguous, 16-byte aligned run */
#pragma unroll
        for (int i = lane; i < S::KWORDS / 4; i += 32)
            akv_attn::cp_async16(st + 4 * i, kbase + 16 * (size_t)i, true);
    } else {
#pragma unroll 4
        for (int i = lane; i < S::KWORDS; i += 32) {
            const int c = i / (KB + 1), w = i % (KB + 1);
            const size_t off = (size_t)c * uk + (w < KB ? 4 * (ti * KB + w) : (size_t)G * KB / 8);
            cp_async4(st + i, kbase + off);
        }
    }
    uint32_t *vs = st + S::KWORDS;
    const int lcw = lg + (VB == 1 ? 0 : VB == 2 ? 1 : 2) - 5; /* log2 of code words per unit */
    const int ng = D >> lg;
    const size_t uv = (size_t)G * VB / 8 + 4;
    const uint8_t *vbase = s.v_quant + ((size_t)tile * 32 * H + g) * ng * uv;
    const size_t tok = (size_t)H * ng * uv; /* bytes between positions */
    int r = wk.r0, w = wk.w0;
    while (r < 32) {
        const size_t off = w < S::CW ? (size_t)(w >> lcw) * uv + 4 * (w & ((1 << lcw) - 1))
                                     : (size_t)(w - S::CW) * uv + uv - 4;
        cp_async4(vs + r * S::VROW + w, vbase + (size_t)r * tok + off);
        r += wk.dr, w += wk.dw;
        if (w >= wk.wpt) w -= wk.wpt, r++;
    }
}

template <int D, int KB, int VB>
static __global__ void __launch_bounds__(KVM_WARPS * 32, KVM_MIN_BLOCKS) kvattn_mma_kernel(const KvaParams P) {
    using S = KvmShape<D, KB, VB>;
    extern __shared__ __align__(16) uint32_t kvm_smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int b = blockIdx.z, kvh = blockIdx.y / P.hchunks, hc = blockIdx.y % P.hchunks;
    if ((int)blockIdx.x >= P.mma_blocks) { /* a tail part: the scalar kernel's work */
        scalar_part(P, blockIdx.x - P.mma_blocks);
        return;
    }
    const kvq_seq_dev s = P.seqs[b];
    if (!seq_ok(P, s)) return;
    const int group = P.n_heads / P.n_kv, hl = hc * KVA_HCHUNK + g;
    const bool valid = hl < group;
    const size_t row = (size_t)b * P.n_heads + (size_t)kvh * group + hl;
    const int part = blockIdx.x;
    const int n_tiles = min(s.kq, s.vq) / 32;
    const int first = blockIdx.x * P.mma_tiles + warp;
    const int last = min(n_tiles, (blockIdx.x + 1) * P.mma_tiles);
    const int mine = first < last ? (last - first + KVM_WARPS - 1) / KVM_WARPS : 0;
    const int lg = P.G == 32 ? 5 : P.G == 64 ? 6 : 7;
    KvmWalk wk;
    wk.wpt = S::CW + (D >> lg);
    wk.r0 = lane / wk.wpt, wk.w0 = lane % wk.wpt, wk.dr = 32 / wk.wpt, wk.dw = 32 % wk.wpt;
    uint32_t *ring = kvm_smem + (size_t)warp * KVM_STAGES * S::STAGE;
    for (int j = 0; j < KVM_STAGES - 1; j++) { /* prologue */
        if (j < mine) kvm_load<D, KB, VB>(ring + j * S::STAGE, s, first + KVM_WARPS * j, kvh, P.n_kv, P.G, lg, wk, lane);
        akv_attn::cp_async_commit();
    }
    /* q' hi/lo as A fragments: k-step kk, lane channels 16kk + 4t + {0,1} and {2,3}. */
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (valid) x = *reinterpret_cast<const float4 *>(P.q + row * D + 16 * kk + 4 * t);
        split2(x.x * P.qscale, x.y * P.qscale, qa[kk][0], qa[kk][1]);
        split2(x.z * P.qscale, x.w * P.qscale, qa[kk][2], qa[kk][3]);
    }
    const KvmExpand kx(g, KB), vx(g, VB);
    const int ng = D >> lg, g_shift = lg;
    float o[D / 8][4], zc[4] = {0.f, 0.f, 0.f, 0.f}, m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int nt = 0; nt < D / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;

    for (int j = 0; j < mine; j++) {
        if (j + KVM_STAGES - 1 < mine)
            kvm_load<D, KB, VB>(ring + (j + KVM_STAGES - 1) % KVM_STAGES * S::STAGE, s,
                                first + KVM_WARPS * (j + KVM_STAGES - 1), kvh, P.n_kv, P.G, lg, wk, lane);
        akv_attn::cp_async_commit();
        akv_attn::cp_async_wait<KVM_STAGES - 1>();
        __syncwarp();
        const uint32_t *ks = ring + j % KVM_STAGES * S::STAGE, *vs = ks + S::KWORDS;

        /* ---- scores of the tile's 32 tokens (n-tile nt: tokens 8nt .. 8nt+7) ---- */
        float sc[4][4], cb[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int nt = 0; nt < 4; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t kw[4 * (KB + 1)];
#pragma unroll
            for (int i = 0; i < KB + 1; i++) {
                const uint4 u = reinterpret_cast<const uint4 *>(ks + (16 * kk + 4 * t) * (KB + 1))[i];
                kw[4 * i] = u.x, kw[4 * i + 1] = u.y, kw[4 * i + 2] = u.z, kw[4 * i + 3] = u.w;
            }
            const uint32_t sz0 = kw[KB], sz1 = kw[2 * KB + 1], sz2 = kw[3 * KB + 2], sz3 = kw[4 * KB + 3];
            const uint32_t s01 = __byte_perm(sz0, sz1, 0x5410), s23 = __byte_perm(sz2, sz3, 0x5410);
            const uint32_t z01 = __byte_perm(sz0, sz1, 0x7632), z23 = __byte_perm(sz2, sz3, 0x7632);
            uint32_t aw[4];
            mul_split(qa[kk][0], qa[kk][1], s01, aw[0], aw[1]);
            mul_split(qa[kk][2], qa[kk][3], s23, aw[2], aw[3]);
            akv_attn::mma16816(cb, qa[kk], z01, z23);
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const int w = nt * KB / 4, sub = (nt * KB) & 3;
                const uint32_t b0 = kx(kw[w], kw[KB + 1 + w], sub);
                const uint32_t b1 = kx(kw[2 * (KB + 1) + w], kw[3 * (KB + 1) + w], sub);
                akv_attn::mma16816(sc[nt], aw, b0, b1);
            }
        }
        /* ---- online softmax (head g; tokens 8nt + 2t + e) ---- */
        const float beta = cb[0] + cb[2];
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            sc[nt][0] = sc[nt][0] + sc[nt][2] + beta;
            sc[nt][1] = sc[nt][1] + sc[nt][3] + beta;
            mx = fmaxf(mx, fmaxf(sc[nt][0], sc[nt][1]));
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m, mx), alpha = exp2f(m - m_new);
        m = m_new;
        float psum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            sc[nt][0] = exp2f(sc[nt][0] - m_new);
            sc[nt][1] = exp2f(sc[nt][1] - m_new);
            psum += sc[nt][0] + sc[nt][1];
        }
        l = l * alpha + psum;
        if (__any_sync(0xffffffffu, alpha != 1.0f)) {
#pragma unroll
            for (int nt = 0; nt < D / 8; nt++)
                o[nt][0] *= alpha, o[nt][1] *= alpha, o[nt][2] *= alpha, o[nt][3] *= alpha;
            zc[0] *= alpha, zc[1] *= alpha, zc[2] *= alpha, zc[3] *= alpha;
        }
        /* ---- values: 16 tokens per k-step, tokens 16kc + 2t, +1, +8, +9 ---- */
#pragma unroll
        for (int kc = 0; kc < 2; kc++) {
            uint32_t ph[4];
            split2(sc[2 * kc][0], sc[2 * kc][1], ph[0], ph[1]);
            split2(sc[2 * kc + 1][0], sc[2 * kc + 1][1], ph[2], ph[3]);
            const uint32_t *r0 = vs + (16 * kc + 2 * t) * S::VROW, *r1 = r0 + S::VROW;
            const uint32_t *r2 = r0 + 8 * S::VROW, *r3 = r2 + S::VROW;
            {   /* Z: columns are the channel groups */
                const int gz = g < ng ? g : 0;
                uint32_t zb0 = __byte_perm(r0[S::CW + gz], r1[S::CW + gz], 0x7632);
                uint32_t zb1 = __byte_perm(r2[S::CW + gz], r3[S::CW + gz], 0x7632);
                if (g >= ng) zb0 = zb1 = 0u;
                akv_attn::mma16816(zc, ph, zb0, zb1);
            }
            uint32_t ap[4] = {0u, 0u, 0u, 0u};
#pragma unroll
            for (int w = 0; w < S::CW; w++) { /* code word w of the 4 rows: n-tiles w*4/VB .. */
                const uint32_t c0 = r0[w], c1 = r1[w], c2 = r2[w], c3 = r3[w];
#pragma unroll
                for (int sub = 0; sub < 4; sub += VB) {
                    const int nt = w * (4 / VB) + sub / VB;
                    if (((8 * nt) & (P.G - 1)) == 0) { /* first n-tile of group 8nt / G */
                        const int jg = (8 * nt) >> g_shift;
                        const uint32_t s01 = __byte_perm(r0[S::CW + jg], r1[S::CW + jg], 0x5410);
                        const uint32_t s23 = __byte_perm(r2[S::CW + jg], r3[S::CW + jg], 0x5410);
                        mul_split(ph[0], ph[1], s01, ap[0], ap[1]);
                        mul_split(ph[2], ph[3], s23, ap[2], ap[3]);
                    }
                    akv_attn::mma16816(o[nt], ap, vx(c0, c1, sub), vx(c2, c3, sub));
                }
            }
        }
        __syncwarp(); /* the stage is refilled next iteration but one */
    }
    akv_attn::cp_async_wait<0>();

    /* ---- the warp's state (o + Z: channel 8nt + 2t + e is in group 8nt / G; m; l) into shared
     * memory (the ring is idle now), then the block merges its 4 warps into part blockIdx.x ---- */
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float z0 = zc[0] + zc[2], z1 = zc[1] + zc[3]; /* groups 2t, 2t + 1 of head g */
    __syncthreads(); /* every warp is done with its ring */
    float *mrg = reinterpret_cast<float *>(kvm_smem); /* [warp][head][D + 2] */
    float *mine_rec = mrg + ((size_t)warp * KVA_HCHUNK + g) * (D + 2);
#pragma unroll
    for (int nt = 0; nt < D / 8; nt++) {
        const int jg = (8 * nt) >> g_shift;
        const float zj = __shfl_sync(0xffffffffu, (jg & 1) ? z1 : z0, 4 * g + (jg >> 1));
        mine_rec[8 * nt + 2 * t] = o[nt][0] + o[nt][2] + zj;
        mine_rec[8 * nt + 2 * t + 1] = o[nt][1] + o[nt][3] + zj;
    }
    if (t == 0) mine_rec[D] = m, mine_rec[D + 1] = l;
    __syncthreads();
    const int heads = min(KVA_HCHUNK, group - hc * KVA_HCHUNK);
    const size_t row0 = (size_t)b * P.n_heads + (size_t)kvh * group + hc * KVA_HCHUNK;
    for (int i = threadIdx.x; i < heads * D; i += KVM_WARPS * 32) {
        const int h = i / D, c = i % D;
        float mw[KVM_WARPS], mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < KVM_WARPS; w++) mx = fmaxf(mx, mw[w] = mrg[(w * KVA_HCHUNK + h) * (D + 2) + D]);
        const size_t rec = (row0 + h) * P.n_parts + part;
        if (mx == -INFINITY) { /* no tile in this block */
            if (c == 0) P.ml_part[2 * rec] = -INFINITY, P.ml_part[2 * rec + 1] = 0.0f;
            continue;
        }
        float acc = 0.0f, lsum = 0.0f;
#pragma unroll
        for (int w = 0; w < KVM_WARPS; w++) {
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

static bool kva_mma_supported(int D, int k_bits, int v_bits) {
    auto q = [](int bits) { return bits == 1 || bits == 2 || bits == 4; };
    return (D == 64 || D == 128) && q(k_bits) && q(v_bits);
}

#ifndef KVA_EMULATE /* the CPU emulation (tools, not built here) runs the kernels itself */
template <int D, int KB, int VB>
static cudaError_t kvm_launch(const KvaParams &P, int blocks, cudaStream_t stream) {
    const size_t ring = (size_t)KVM_WARPS * KVM_STAGES * KvmShape<D, KB, VB>::STAGE * 4;
    const size_t merge = (size_t)KVM_WARPS * KVA_HCHUNK * (D + 2) * 4;
    const size_t smem = ring > merge ? ring : merge;
    static bool raised = false; /* once per instantiation: the tail's static smem counts too */
    if (!raised) {
        cudaError_t e = cudaFuncSetAttribute(kvattn_mma_kernel<D, KB, VB>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem);
        /* the largest shared-memory carveout, so KVM_MIN_BLOCKS blocks fit per SM */
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(kvattn_mma_kernel<D, KB, VB>,
                                     cudaFuncAttributePreferredSharedMemoryCarveout, 100);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    kvattn_mma_kernel<D, KB, VB><<<dim3(blocks, P.n_kv * P.hchunks, P.n_batch),
                                   KVM_WARPS * 32, smem, stream>>>(P);
    return cudaGetLastError();
}

template <int D, int KB>
static cudaError_t kvm_launch_v(const KvaParams &P, int blocks, cudaStream_t stream) {
    switch (P.v_bits) {
    case 1: return kvm_launch<D, KB, 1>(P, blocks, stream);
    case 2: return kvm_launch<D, KB, 2>(P, blocks, stream);
    default: return kvm_launch<D, KB, 4>(P, blocks, stream);
    }
}

template <int D>
static cudaError_t kvm_launch_k(const KvaParams &P, int blocks, cudaStream_t stream) {
    switch (P.k_bits) {
    case 1: return kvm_launch_v<D, 1>(P, blocks, stream);
    case 2: return kvm_launch_v<D, 2>(P, blocks, stream);
    default: return kvm_launch_v<D, 4>(P, blocks, stream);
    }
}

static cudaError_t kva_mma_launch(const KvaParams &P, int blocks, cudaStream_t stream) {
    return P.D == 64 ? kvm_launch_k<64>(P, blocks, stream) : kvm_launch_k<128>(P, blocks, stream);
}
#endif
