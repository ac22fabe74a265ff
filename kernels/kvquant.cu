/* kvquant.cu — the append path of the compressed KV cache on the device (kvquant.h arithmetic,
 * kvlayout.h layout and flush plan), bit-identical to runtime/kvcache.c's flushes.
 *  kvq_append_cuda: one decode token per sequence of a batch, planned on the host
 *    (kvl_append_plan; the host mirrors len/kq/vq):
 *    1. append_store_kernel, grid (n_batch, n_kv_heads), 128 threads: threads 0 .. D/G-1 first
 *       quantize one value group each of position v_flush (read from its window slot) and write
 *       its codes into the words of its block's record (a word never spans two groups, and only
 *       this position's bits change), then, after a barrier (the store may reuse that slot),
 *       every thread stores channels of the new k and v rows as fp16 into slot pos % cap;
 *    2. key_flush_kernel (only if some sequence flushes), grid (n_batch, R/G, n_kv_heads),
 *       128 threads: key block quantization (quantize_key_block).
 *  kvq_dense_cuda / kvq_commit_cuda: the prefill path of a compressed layer (kernels_cuda.h):
 *    a thread per element (dense rows, window rows); a block per key block (quantize_key_block)
 *    and per value block touched (commit_values_kernel).
 *  kvq_round_f16_cuda and f32_to_f16_cuda: a thread per element.
 * Every group is quantized by one thread, sequentially and in the twin's order (min/max ties,
 * the fp16 roundings of scale and zero, rintf on (x - zero) / scale with IEEE division), so the
 * bytes match kvq_quantize exactly. A key block: thread c quantizes channel c into shared codes,
 * then the tile's words are assembled in shared memory (atomicOr of each code at its place) and
 * written whole. Test: ./build-gpu/tests/gpu_kvattn --filter 'kvquant*' (on a GPU machine). */
#include <cuda_fp16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

#define KVQ_THREADS 128
#define KVQ_MAX_WORDS 1024 /* code words of one tile: 32 x D x b / 32 <= 256 x 4 */

/* Quantizes n = group elements load(i) (fp16 values as float), exactly as kvq_quantize: codes
 * through put(i, code), scale and zero returned as fp16 bits. */
template <typename Load, typename Put>
static __device__ void quantize_group(Load load, Put put, int bits, int group, uint16_t *scale,
                                      uint16_t *zero) {
    float mn = load(0), mx = mn;
    for (int i = 1; i < group; i++) {
        const float v = load(i);
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    const float maxq = (float)((1 << bits) - 1);
    const float range = (mx - mn) / maxq;
    const __half s16 = __float2half_rn(range > 65504.0f ? 65504.0f : range);
    const __half z16 = __float2half_rn(mn);
    const float s = __half2float(s16), z = __half2float(z16);
    for (int i = 0; i < group; i++) {
        uint32_t q = 0;
        if (s > 0.0f) {
            const float u = rintf((load(i) - z) / s); /* ties to even */
            q = u <= 0.0f ? 0u : u >= maxq ? (uint32_t)maxq : (uint32_t)u;
        }
        put(i, q);
    }
    *scale = __half_as_ushort(s16);
    *zero = __half_as_ushort(z16);
}

/* Key block blk of head g: the G keys of each channel from rows(p) (fp16 row of position p,
 * [n_kv][D]), into the record. Called by all KVQ_THREADS threads of a block. */
template <typename Rows>
static __device__ void quantize_key_block(uint8_t *k_quant, Rows rows, int blk, int g, int H,
                                          int D, int G, int bits) {
    __shared__ uint8_t codes[128 * 256];          /* [G][D] */
    __shared__ uint32_t words[KVQ_MAX_WORDS];
    uint8_t *rec = k_quant + kvl_record_off(bits, D, G, H, blk, g);
    uint16_t *sc = reinterpret_cast<uint16_t *>(rec + kvl_scale_off(bits, D, G));
    uint16_t *zr = reinterpret_cast<uint16_t *>(rec + kvl_zero_off(bits, D, G));
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        auto load = [&](int t) { return __half2float(rows(blk * G + t)[(size_t)g * D + c]); };
        auto put = [&](int t, uint32_t q) { codes[t * D + c] = (uint8_t)q; };
        quantize_group(load, put, bits, G, &sc[c], &zr[c]);
    }
    const int nw = D * bits; /* words of a tile */
    for (int tile = 0; tile < G / KVL_TILE; tile++) {
        __syncthreads(); /* codes written / the previous tile's words stored */
        for (int i = threadIdx.x; i < nw; i += blockDim.x) words[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < KVL_TILE * D; i += blockDim.x) {
            const int tau = i / D, c = i % D;
            int w, b;
            kvl_key_code_loc(bits, D, tau, c, &w, &b);
            atomicOr(&words[w], (uint32_t)codes[(tile * KVL_TILE + tau) * D + c] << b);
        }
        __syncthreads();
        uint32_t *dst = reinterpret_cast<uint32_t *>(rec + (size_t)tile * kvl_tile_code_bytes(bits, D));
        for (int i = threadIdx.x; i < nw; i += blockDim.x) dst[i] = words[i];
    }
}

/* Value of position p, head g, channel group j, from its fp16 row src ([D] of head g): codes
 * or-ed into the record's words in place (one thread per group: race-free, see the header). */
static __device__ void quantize_value_group(uint8_t *v_quant, const __half *src, int p, int g,
                                            int j, int H, int D, int G, int bits) {
    uint8_t *rec = v_quant + kvl_record_off(bits, D, G, H, p / G, g);
    uint16_t *sc = reinterpret_cast<uint16_t *>(rec + kvl_scale_off(bits, D, G));
    uint16_t *zr = reinterpret_cast<uint16_t *>(rec + kvl_zero_off(bits, D, G));
    const int m = kvl_vmeta_index(D, G, p % G, j);
    auto load = [&](int i) { return __half2float(src[(size_t)j * G + i]); };
    auto put = [&](int i, uint32_t q) { kvl_put_code(rec, 0, bits, D, p % G, j * G + i, q); };
    quantize_group(load, put, bits, G, &sc[m], &zr[m]);
}

static __global__ void __launch_bounds__(KVQ_THREADS)
    append_store_kernel(const kvq_seq_dev *seqs, const kvl_append_op *ops, const float *k,
                        const float *v, int H, int D, int G, int k_bits, int v_bits) {
    const int b = blockIdx.x, g = blockIdx.y;
    const kvq_seq_dev s = seqs[b];
    const kvl_append_op op = ops[b];
    if (kvl_is_quant(v_bits) && op.v_flush >= 0) {
        const __half *row = reinterpret_cast<const __half *>(s.v_win) +
                            ((size_t)(op.v_flush % s.v_cap) * H + g) * D;
        for (int j = threadIdx.x; j < D / G; j += blockDim.x)
            quantize_value_group(s.v_quant, row, op.v_flush, g, j, H, D, G, v_bits);
    }
    __syncthreads(); /* the value slot just quantized is the one the store overwrites */
    const size_t src = ((size_t)b * H + g) * D;
    __half *kw = reinterpret_cast<__half *>(s.k_win) + ((size_t)(op.pos % s.k_cap) * H + g) * D;
    __half *vw = reinterpret_cast<__half *>(s.v_win) + ((size_t)(op.pos % s.v_cap) * H + g) * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        kw[c] = __float2half_rn(k[src + c]);
        vw[c] = __float2half_rn(v[src + c]);
    }
}

static __global__ void __launch_bounds__(KVQ_THREADS)
    key_flush_kernel(const kvq_seq_dev *seqs, const kvl_append_op *ops, int H, int D, int G,
                     int bits) {
    const int b = blockIdx.x, g = blockIdx.z;
    const int k0 = ops[b].k_flush;
    if (k0 < 0) return;
    const kvq_seq_dev s = seqs[b];
    const __half *win = reinterpret_cast<const __half *>(s.k_win);
    auto rows = [&](int p) { return win + (size_t)(p % s.k_cap) * H * D; };
    quantize_key_block(s.k_quant, rows, k0 / G + blockIdx.y, g, H, D, G, bits);
}

/* Dequantized code (fp32 q * scale + zero, as kvq_dequant: no FMA). */
static __device__ __forceinline__ float dequant(uint32_t q, uint16_t s16, uint16_t z16) {
    const float s = __half2float(__ushort_as_half(s16)), z = __half2float(__ushort_as_half(z16));
    return __fadd_rn(__fmul_rn((float)q, s), z);
}

static __global__ void dense_kernel(__half *k, __half *v, const kvq_seq_dev *seqp, int len, int H,
                                    int D, int G, int k_bits, int v_bits) {
    const kvq_seq_dev s = *seqp;
    const size_t row = (size_t)H * D, n = (size_t)len * row;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int p = (int)(i / row), e = (int)(i % row), g = e / D, c = e % D;
        if (kvl_is_quant(k_bits) && p < s.kq) {
            const uint8_t *rec = s.k_quant + kvl_record_off(k_bits, D, G, H, p / G, g);
            k[i] = __float2half_rn(dequant(kvl_get_code(rec, 1, k_bits, D, p % G, c),
                                           kvl_key_scale(rec, k_bits, D, G, c),
                                           kvl_key_zero(rec, k_bits, D, G, c)));
        } else {
            k[i] = reinterpret_cast<const __half *>(s.k_win)[(size_t)(p % s.k_cap) * row + e];
        }
        if (kvl_is_quant(v_bits) && p < s.vq) {
            const uint8_t *rec = s.v_quant + kvl_record_off(v_bits, D, G, H, p / G, g);
            v[i] = __float2half_rn(dequant(kvl_get_code(rec, 0, v_bits, D, p % G, c),
                                           kvl_value_scale(rec, v_bits, D, G, p % G, c / G),
                                           kvl_value_zero(rec, v_bits, D, G, p % G, c / G)));
        } else {
            v[i] = reinterpret_cast<const __half *>(s.v_win)[(size_t)(p % s.v_cap) * row + e];
        }
    }
}

/* Key blocks kb0 + blockIdx.x of head blockIdx.y, from the dense rows. */
static __global__ void __launch_bounds__(KVQ_THREADS)
    commit_keys_kernel(const kvq_seq_dev *seqp, const __half *k, int kb0, int H, int D, int G,
                       int bits) {
    const kvq_seq_dev s = *seqp;
    auto rows = [&](int p) { return k + (size_t)p * H * D; };
    quantize_key_block(s.k_quant, rows, kb0 + blockIdx.x, blockIdx.y, H, D, G, bits);
}

/* Values [v0, v1) of block (v0 / G + blockIdx.x), head blockIdx.y, from the dense rows: scales,
 * zeros and codes of those positions; the block's other positions keep their bits. */
static __global__ void __launch_bounds__(KVQ_THREADS)
    commit_values_kernel(const kvq_seq_dev *seqp, const __half *v, int v0, int v1, int H, int D,
                         int G, int bits) {
    __shared__ uint8_t codes[128 * 256]; /* [position in block][D] */
    __shared__ uint32_t words[KVQ_MAX_WORDS];
    const kvq_seq_dev s = *seqp;
    const int blk = v0 / G + blockIdx.x, g = blockIdx.y, ng = D / G;
    const int p0 = max(v0, blk * G), p1 = min(v1, (blk + 1) * G);
    uint8_t *rec = s.v_quant + kvl_record_off(bits, D, G, H, blk, g);
    uint16_t *sc = reinterpret_cast<uint16_t *>(rec + kvl_scale_off(bits, D, G));
    uint16_t *zr = reinterpret_cast<uint16_t *>(rec + kvl_zero_off(bits, D, G));
    for (int i = threadIdx.x; i < (p1 - p0) * ng; i += blockDim.x) {
        const int p = p0 + i / ng, j = i % ng, m = kvl_vmeta_index(D, G, p % G, j);
        const __half *src = v + ((size_t)p * H + g) * D + (size_t)j * G;
        auto load = [&](int e) { return __half2float(src[e]); };
        auto put = [&](int e, uint32_t q) { codes[(p % G) * D + j * G + e] = (uint8_t)q; };
        quantize_group(load, put, bits, G, &sc[m], &zr[m]);
    }
    const int nw = D * bits;
    for (int tile = (p0 % G) / KVL_TILE; tile * KVL_TILE < (p1 - 1) % G + 1; tile++) {
        uint32_t *dst = reinterpret_cast<uint32_t *>(rec + (size_t)tile * kvl_tile_code_bytes(bits, D));
        __syncthreads(); /* codes written / the previous tile stored */
        for (int i = threadIdx.x; i < nw; i += blockDim.x) words[i] = dst[i];
        __syncthreads();
        const int lo = max(p0 % G, tile * KVL_TILE), hi = min((p1 - 1) % G + 1, (tile + 1) * KVL_TILE);
        for (int i = threadIdx.x; i < (hi - lo) * D; i += blockDim.x) { /* clear, then set */
            int w, b;
            kvl_value_code_loc(bits, D, (lo + i / D) % KVL_TILE, i % D, &w, &b);
            atomicAnd(&words[w], ~(((1u << bits) - 1u) << b));
        }
        __syncthreads();
        for (int i = threadIdx.x; i < (hi - lo) * D; i += blockDim.x) {
            const int pb = lo + i / D, c = i % D;
            int w, b;
            kvl_value_code_loc(bits, D, pb % KVL_TILE, c, &w, &b);
            atomicOr(&words[w], (uint32_t)codes[pb * D + c] << b);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < nw; i += blockDim.x) dst[i] = words[i];
    }
}

/* Window rows: keys [k0, len_new), values [v0, len_new) into slot p % cap. */
static __global__ void commit_window_kernel(const kvq_seq_dev *seqp, const __half *k,
                                            const __half *v, int k0, int v0, int len_new,
                                            int row) {
    const kvq_seq_dev s = *seqp;
    const int first = k0 < v0 ? k0 : v0;
    const size_t n = (size_t)(len_new - first) * row;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int p = first + (int)(i / row), e = (int)(i % row);
        const size_t src = (size_t)p * row + e;
        if (p >= k0)
            reinterpret_cast<__half *>(s.k_win)[(size_t)(p % s.k_cap) * row + e] = k[src];
        if (p >= v0)
            reinterpret_cast<__half *>(s.v_win)[(size_t)(p % s.v_cap) * row + e] = v[src];
    }
}

static __global__ void round_f16_kernel(float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = __half2float(__float2half_rn(x[i]));
}

static __global__ void to_f16_kernel(__half *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

/* Blocks of 256 threads for n elements, capped (grid-stride loops cover the rest). */
static unsigned elem_blocks(size_t n) {
    const size_t b = (n + 255) / 256;
    return (unsigned)(b < 1 ? 1 : b > 8192 ? 8192 : b);
}

#ifndef KVA_EMULATE /* the CPU emulation runs the kernels itself */
static bool width_ok(int bits) {
    return bits == 16 || bits == 4 || bits == 2 || bits == 1;
}

/* The shape every compressed-cache launcher accepts (kvlayout.h's limits). */
static bool cache_shape_ok(int H, int D, int G, int k_bits, int v_bits) {
    return width_ok(k_bits) && width_ok(v_bits) && (G == 32 || G == 64 || G == 128) && H > 0 &&
           H <= 65535 && D > 0 && D <= 256 && (!kvl_is_quant(v_bits) || D % G == 0) &&
           (!kvl_is_quant(k_bits) || D % 16 == 0);
}

extern "C" cudaError_t kvq_append_cuda(const kvq_append_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->seqs && a->ops && a->k && a->v);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(cache_shape_ok(a->n_kv_heads, a->head_dim, a->group, a->k_bits, a->v_bits));
    AKV_REQUIRE(a->residual >= a->group && a->residual % a->group == 0);
    AKV_REQUIRE(a->n_batch >= 0 && a->n_batch <= 65535);
    if (a->n_batch == 0) return cudaSuccess;
    const int H = a->n_kv_heads, D = a->head_dim, G = a->group;
    append_store_kernel<<<dim3(a->n_batch, H), KVQ_THREADS, 0, stream>>>(
        a->seqs, a->ops, a->k, a->v, H, D, G, a->k_bits, a->v_bits);
    AKV_LAUNCH_CHECK();
    if (kvl_is_quant(a->k_bits) && a->any_key_flush) {
        key_flush_kernel<<<dim3(a->n_batch, a->residual / G, H), KVQ_THREADS, 0, stream>>>(
            a->seqs, a->ops, H, D, G, a->k_bits);
        AKV_LAUNCH_CHECK();
    }
    return cudaSuccess;
}

extern "C" cudaError_t kvq_round_f16_cuda(float *x, size_t n, cudaStream_t stream) {
    AKV_REQUIRE((x || n == 0) && stream != nullptr);
    if (n == 0) return cudaSuccess;
    round_f16_kernel<<<elem_blocks(n), 256, 0, stream>>>(x, n);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}

extern "C" cudaError_t f32_to_f16_cuda(uint16_t *dst, const float *src, size_t n,
                                       cudaStream_t stream) {
    AKV_REQUIRE(((dst && src) || n == 0) && stream != nullptr);
    if (n == 0) return cudaSuccess;
    to_f16_kernel<<<elem_blocks(n), 256, 0, stream>>>((__half *)dst, src, n);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}

extern "C" cudaError_t kvq_dense_cuda(uint16_t *k, uint16_t *v, const kvq_seq_dev *seq, int len,
                                      int n_kv_heads, int head_dim, int group, int k_bits,
                                      int v_bits, cudaStream_t stream) {
    AKV_REQUIRE(k && v && seq && len >= 0 && stream != nullptr);
    AKV_REQUIRE(cache_shape_ok(n_kv_heads, head_dim, group, k_bits, v_bits));
    if (len == 0) return cudaSuccess;
    const size_t n = (size_t)len * n_kv_heads * head_dim;
    dense_kernel<<<elem_blocks(n), 256, 0, stream>>>((__half *)k, (__half *)v, seq, len,
                                                     n_kv_heads, head_dim, group, k_bits, v_bits);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}

extern "C" cudaError_t kvq_commit_cuda(const kvq_commit_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->seq && a->k && a->v && stream != nullptr);
    AKV_REQUIRE(cache_shape_ok(a->n_kv_heads, a->head_dim, a->group, a->k_bits, a->v_bits));
    AKV_REQUIRE(0 <= a->kq && a->kq <= a->kq_new && a->kq % a->group == 0 &&
                a->kq_new % a->group == 0 && a->kq_new <= a->len_new);
    AKV_REQUIRE(0 <= a->vq && a->vq <= a->vq_new && a->vq_new <= a->len_new);
    AKV_REQUIRE(0 <= a->k_win0 && a->k_win0 <= a->len_new && 0 <= a->v_win0 &&
                a->v_win0 <= a->len_new);
    const int H = a->n_kv_heads, D = a->head_dim, G = a->group;
    const __half *k = (const __half *)a->k, *v = (const __half *)a->v;
    if (kvl_is_quant(a->k_bits) && a->kq_new > a->kq) {
        commit_keys_kernel<<<dim3((a->kq_new - a->kq) / G, H), KVQ_THREADS, 0, stream>>>(
            a->seq, k, a->kq / G, H, D, G, a->k_bits);
        AKV_LAUNCH_CHECK();
    }
    if (kvl_is_quant(a->v_bits) && a->vq_new > a->vq) {
        const int blocks = (a->vq_new - 1) / G - a->vq / G + 1;
        commit_values_kernel<<<dim3(blocks, H), KVQ_THREADS, 0, stream>>>(a->seq, v, a->vq,
                                                                          a->vq_new, H, D, G,
                                                                          a->v_bits);
        AKV_LAUNCH_CHECK();
    }
    const int first = a->k_win0 < a->v_win0 ? a->k_win0 : a->v_win0;
    if (first < a->len_new) {
        const size_t n = (size_t)(a->len_new - first) * H * D;
        commit_window_kernel<<<elem_blocks(n), 256, 0, stream>>>(a->seq, k, v, a->k_win0,
                                                                 a->v_win0, a->len_new, H * D);
        AKV_LAUNCH_CHECK();
    }
    return cudaSuccess;
}
#endif
