/* kvquant.cu — the append path of the compressed KV cache on the device (kvquant.h formats,
 * runtime/kvcache.c's layout and KIVI flushing order), bit-identical to kvq_quantize_group.
 *  kvq_append_cuda: one decode token per sequence of a batch, planned on the host
 *    (kvq_append_plan, the host mirrors len/kq/vq):
 *    1. append_store_kernel, grid (n_batch, n_kv_heads), 128 threads: threads 0 .. D/G-1 first
 *       quantize one value group each of position v_flush (read from its window slot), then,
 *       after a barrier (the store may reuse that slot), every thread stores channels of the new
 *       k and v rows as fp16 into slot pos % cap;
 *    2. key_flush_kernel (only if some sequence flushes), grid (n_batch, R/G, n_kv_heads),
 *       128 threads: thread c quantizes the G keys of channel c of one key block.
 *  kvq_flush_cuda: a list of key-block / value jobs (prefill), grid (n_jobs, n_kv_heads):
 *    a thread per channel (keys) or per channel group (values).
 *  kvq_dense_cuda / kvq_commit_cuda: the prefill path of a compressed layer (kernels_cuda.h):
 *    a thread per element (dense rows, window rows), per channel (key blocks), per channel group
 *    (values); kvq_round_f16_cuda and f32_to_f16_cuda: a thread per element.
 * Every group is quantized by one thread, sequentially and in the twin's order (min/max ties,
 * the fp16 roundings of scale and zero, rintf on (x - zero) / scale with IEEE division), so the
 * bytes match kvq_quantize_group exactly. Test: ./build-gpu/tests/gpu_kvattn --filter
 * 'kvquant_append*' (on a GPU machine). */
#include <cuda_fp16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

#define KVQ_THREADS 128

/* Quantizes n = group elements x(i) into the storage unit at dst (4-byte aligned), exactly as
 * kvq_quantize_group. Load is called as load(i) -> float (an fp16 value). */
template <typename Load>
static __device__ void quantize_unit(uint8_t *dst, Load load, int bits, int group) {
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
    uint32_t *w = reinterpret_cast<uint32_t *>(dst);
    const int per_word = 32 / bits, words = group * bits / 32;
    for (int wi = 0; wi < words; wi++) {
        uint32_t acc = 0;
        for (int k = 0; s > 0.0f && k < per_word; k++) {
            const float u = rintf((load(wi * per_word + k) - z) / s); /* ties to even */
            const uint32_t q = u <= 0.0f ? 0u : u >= maxq ? (uint32_t)maxq : (uint32_t)u;
            acc |= q << (k * bits);
        }
        w[wi] = acc;
    }
    w[words] = (uint32_t)__half_as_ushort(s16) | ((uint32_t)__half_as_ushort(z16) << 16);
}

static __device__ __forceinline__ size_t unit_bytes(int bits, int group) {
    return (size_t)group * bits / 8 + 4;
}

/* Key block blk of (seq, head g, channel c): the G keys at positions p0 .. p0+G-1. */
static __device__ void quantize_key_group(const kvq_seq_dev &s, int p0, int g, int c, int H,
                                          int D, int G, int bits) {
    const size_t row = (size_t)H * D, off = (size_t)g * D + c;
    const __half *win = reinterpret_cast<const __half *>(s.k_win);
    const int cap = s.k_cap;
    auto load = [&](int i) { return __half2float(win[(size_t)((p0 + i) % cap) * row + off]); };
    uint8_t *dst = s.k_quant + (((size_t)(p0 / G) * H + g) * D + c) * unit_bytes(bits, G);
    quantize_unit(dst, load, bits, G);
}

/* Value of position p, head g, channel group j. */
static __device__ void quantize_value_group(const kvq_seq_dev &s, int p, int g, int j, int H,
                                            int D, int G, int bits) {
    const __half *src = reinterpret_cast<const __half *>(s.v_win) +
                        ((size_t)(p % s.v_cap) * H + g) * D + (size_t)j * G;
    auto load = [&](int i) { return __half2float(src[i]); };
    uint8_t *dst = s.v_quant + (((size_t)p * H + g) * (D / G) + j) * unit_bytes(bits, G);
    quantize_unit(dst, load, bits, G);
}

static __global__ void __launch_bounds__(KVQ_THREADS)
    append_store_kernel(const kvq_seq_dev *seqs, const kvq_append_op *ops, const float *k,
                        const float *v, int H, int D, int G, int k_bits, int v_bits) {
    const int b = blockIdx.x, g = blockIdx.y;
    const kvq_seq_dev s = seqs[b];
    const kvq_append_op op = ops[b];
    if (v_bits <= 4 && op.v_flush >= 0)
        for (int j = threadIdx.x; j < D / G; j += blockDim.x)
            quantize_value_group(s, op.v_flush, g, j, H, D, G, v_bits);
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
    key_flush_kernel(const kvq_seq_dev *seqs, const kvq_append_op *ops, int H, int D, int G,
                     int bits) {
    const int b = blockIdx.x, blk = blockIdx.y, g = blockIdx.z;
    const int k0 = ops[b].k_flush;
    if (k0 < 0) return;
    const kvq_seq_dev s = seqs[b];
    for (int c = threadIdx.x; c < D; c += blockDim.x)
        quantize_key_group(s, k0 + blk * G, g, c, H, D, G, bits);
}

static __global__ void __launch_bounds__(KVQ_THREADS)
    flush_jobs_kernel(const kvq_seq_dev *seqs, const kvq_flush_job *jobs, int H, int D, int G,
                      int k_bits, int v_bits) {
    const kvq_flush_job job = jobs[blockIdx.x];
    const int g = blockIdx.y;
    const kvq_seq_dev s = seqs[job.seq];
    if (job.kind == KVQ_JOB_KEYS) { /* jobs of a 16-bit tensor have nothing to do */
        if (k_bits > 4) return;
        for (int c = threadIdx.x; c < D; c += blockDim.x)
            quantize_key_group(s, job.pos, g, c, H, D, G, k_bits);
    } else if (v_bits <= 4) {
        for (int j = threadIdx.x; j < D / G; j += blockDim.x)
            quantize_value_group(s, job.pos, g, j, H, D, G, v_bits);
    }
}

/* Dequantized element i of a storage unit (fp32 q * scale + zero, as kvq_dequantize_group). */
static __device__ __forceinline__ float unit_load(const uint8_t *unit, int bits, int group, int i) {
    const uint32_t *w = reinterpret_cast<const uint32_t *>(unit);
    const int bit = i * bits;
    const uint32_t q = (w[bit >> 5] >> (bit & 31)) & ((1u << bits) - 1u);
    const uint32_t sz = w[group * bits / 32];
    const float s = __half2float(__ushort_as_half((unsigned short)(sz & 0xffffu)));
    const float z = __half2float(__ushort_as_half((unsigned short)(sz >> 16)));
    return __fadd_rn(__fmul_rn((float)q, s), z); /* no FMA: the twin rounds both steps */
}

static __global__ void dense_kernel(__half *k, __half *v, const kvq_seq_dev *seqp, int len, int H,
                                    int D, int G, int k_bits, int v_bits) {
    const kvq_seq_dev s = *seqp;
    const size_t row = (size_t)H * D, n = (size_t)len * row;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int p = (int)(i / row), e = (int)(i % row), g = e / D, c = e % D;
        if (k_bits <= 4 && p < s.kq) {
            const uint8_t *u = s.k_quant + (((size_t)(p / G) * H + g) * D + c) * unit_bytes(k_bits, G);
            k[i] = __float2half_rn(unit_load(u, k_bits, G, p % G));
        } else {
            k[i] = reinterpret_cast<const __half *>(s.k_win)[(size_t)(p % s.k_cap) * row + e];
        }
        if (v_bits <= 4 && p < s.vq) {
            const uint8_t *u = s.v_quant + (((size_t)p * H + g) * (D / G) + c / G) * unit_bytes(v_bits, G);
            v[i] = __float2half_rn(unit_load(u, v_bits, G, c % G));
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
    const int blk = kb0 + blockIdx.x, g = blockIdx.y, p0 = blk * G;
    const size_t row = (size_t)H * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        const __half *src = k + (size_t)p0 * row + (size_t)g * D + c;
        auto load = [&](int i) { return __half2float(src[(size_t)i * row]); };
        quantize_unit(s.k_quant + (((size_t)blk * H + g) * D + c) * unit_bytes(bits, G), load, bits,
                      G);
    }
}

/* Value of position v0 + blockIdx.x, head blockIdx.y, from the dense rows. */
static __global__ void __launch_bounds__(KVQ_THREADS)
    commit_values_kernel(const kvq_seq_dev *seqp, const __half *v, int v0, int H, int D, int G,
                         int bits) {
    const kvq_seq_dev s = *seqp;
    const int p = v0 + blockIdx.x, g = blockIdx.y;
    for (int j = threadIdx.x; j < D / G; j += blockDim.x) {
        const __half *src = v + ((size_t)p * H + g) * D + (size_t)j * G;
        auto load = [&](int i) { return __half2float(src[i]); };
        quantize_unit(s.v_quant + (((size_t)p * H + g) * (D / G) + j) * unit_bytes(bits, G), load,
                      bits, G);
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

extern "C" cudaError_t kvq_append_cuda(const kvq_append_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->seqs && a->ops && a->k && a->v);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(width_ok(a->k_bits) && width_ok(a->v_bits)); /* 32-bit: CPU reference only */
    AKV_REQUIRE(a->group == 32 || a->group == 64 || a->group == 128);
    AKV_REQUIRE(a->head_dim > 0 && a->n_kv_heads > 0 && a->n_kv_heads <= 65535);
    AKV_REQUIRE(a->v_bits == 16 || a->head_dim % a->group == 0);
    AKV_REQUIRE(a->residual >= a->group && a->residual % a->group == 0);
    AKV_REQUIRE(a->n_batch >= 0 && a->n_batch <= 65535);
    if (a->n_batch == 0) return cudaSuccess;
    const int H = a->n_kv_heads, D = a->head_dim, G = a->group;
    append_store_kernel<<<dim3(a->n_batch, H), KVQ_THREADS, 0, stream>>>(
        a->seqs, a->ops, a->k, a->v, H, D, G, a->k_bits, a->v_bits);
    AKV_LAUNCH_CHECK();
    if (a->k_bits <= 4 && a->any_key_flush) {
        key_flush_kernel<<<dim3(a->n_batch, a->residual / G, H), KVQ_THREADS, 0, stream>>>(
            a->seqs, a->ops, H, D, G, a->k_bits);
        AKV_LAUNCH_CHECK();
    }
    return cudaSuccess;
}

extern "C" cudaError_t kvq_flush_cuda(const kvq_flush_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->seqs && (a->jobs || a->n_jobs == 0));
    AKV_REQUIRE(stream != nullptr);
    AKV_REQUIRE(a->k_bits == 4 || a->k_bits == 2 || a->k_bits == 1 || a->k_bits == 16);
    AKV_REQUIRE(a->v_bits == 4 || a->v_bits == 2 || a->v_bits == 1 || a->v_bits == 16);
    AKV_REQUIRE(a->group == 32 || a->group == 64 || a->group == 128);
    AKV_REQUIRE(a->head_dim > 0 && a->n_kv_heads > 0 && a->n_kv_heads <= 65535);
    AKV_REQUIRE(a->v_bits == 16 || a->head_dim % a->group == 0);
    AKV_REQUIRE(a->n_jobs >= 0);
    if (a->n_jobs == 0) return cudaSuccess;
    flush_jobs_kernel<<<dim3(a->n_jobs, a->n_kv_heads), KVQ_THREADS, 0, stream>>>(
        a->seqs, a->jobs, a->n_kv_heads, a->head_dim, a->group, a->k_bits, a->v_bits);
    AKV_LAUNCH_CHECK();
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
    AKV_REQUIRE(width_ok(k_bits) && width_ok(v_bits));
    AKV_REQUIRE(group == 32 || group == 64 || group == 128);
    AKV_REQUIRE(head_dim > 0 && n_kv_heads > 0 && (v_bits == 16 || head_dim % group == 0));
    if (len == 0) return cudaSuccess;
    const size_t n = (size_t)len * n_kv_heads * head_dim;
    dense_kernel<<<elem_blocks(n), 256, 0, stream>>>((__half *)k, (__half *)v, seq, len,
                                                     n_kv_heads, head_dim, group, k_bits, v_bits);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}

extern "C" cudaError_t kvq_commit_cuda(const kvq_commit_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a && a->seq && a->k && a->v && stream != nullptr);
    AKV_REQUIRE(width_ok(a->k_bits) && width_ok(a->v_bits));
    AKV_REQUIRE(a->group == 32 || a->group == 64 || a->group == 128);
    AKV_REQUIRE(a->head_dim > 0 && a->n_kv_heads > 0 && a->n_kv_heads <= 65535);
    AKV_REQUIRE(a->v_bits == 16 || a->head_dim % a->group == 0);
    AKV_REQUIRE(0 <= a->kq && a->kq <= a->kq_new && a->kq % a->group == 0 &&
                a->kq_new % a->group == 0 && a->kq_new <= a->len_new);
    AKV_REQUIRE(0 <= a->vq && a->vq <= a->vq_new && a->vq_new <= a->len_new);
    AKV_REQUIRE(0 <= a->k_win0 && a->k_win0 <= a->len_new && 0 <= a->v_win0 &&
                a->v_win0 <= a->len_new);
    const int H = a->n_kv_heads, D = a->head_dim, G = a->group;
    const __half *k = (const __half *)a->k, *v = (const __half *)a->v;
    if (a->k_bits <= 4 && a->kq_new > a->kq) {
        commit_keys_kernel<<<dim3((a->kq_new - a->kq) / G, H), KVQ_THREADS, 0, stream>>>(
            a->seq, k, a->kq / G, H, D, G, a->k_bits);
        AKV_LAUNCH_CHECK();
    }
    if (a->v_bits <= 4 && a->vq_new > a->vq) {
        commit_values_kernel<<<dim3(a->vq_new - a->vq, H), KVQ_THREADS, 0, stream>>>(
            a->seq, v, a->vq, H, D, G, a->v_bits);
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
