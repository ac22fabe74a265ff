/* sample.cu — sampling on the device: out[r] = sample_token (runtime/sampling.c) of row r of
 * logits fp32 [n_rows][vocab], with row r's settings, RNG state and slot history. One 1024-thread
 * block per row, the twin's order of operations, every decision taken from the same float values:
 *   penalty (once per distinct id), temperature, top-k (the k-th largest by a radix select over
 *   order-preserving keys, ties kept), unnormalized softmax exp(x - max) with glibc's expf
 *   algorithm, top-p (the largest probability t whose mass of entries >= t reaches top_p * z, by
 *   bisection over bit patterns), min-p, then one draw walking the row in index order.
 * Sums are in double like the twin's, reduced in a fixed order (so a run is reproducible), but not
 * the twin's order: a draw within ~1e-12 relative of a bucket edge may differ (sample_cuda.h).
 * Test: ./build-cuda/tests/gpu_sample (on a GPU machine). */
#include <stdint.h>

#include "cuda_check.h"
#include "sample_cuda.h"

#define SAMPLE_THREADS 1024
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define SAMPLE_MAX_VOCAB (1 << 30)
#define FULL_MASK 0xffffffffu
#define NO_INDEX 0x7fffffff

typedef struct sample_smem {
    double d[SAMPLE_WARPS];
    float f[SAMPLE_WARPS];
    int i[SAMPLE_WARPS];
    unsigned hist[256]; /* radix-select digit counts */
    unsigned digit, rank;
} sample_smem;

static __device__ __forceinline__ float neg_inf(void) { return -__int_as_float(0x7f800000); }

/* ---- glibc's expf (sysdeps/ieee754/flt-32/e_expf.c), as its x86-64 FMA build computes it:
 * exp(x) = 2^(k/32) * 2^(r/32) with a 32-entry table and a cubic, all in double. A C copy of
 * this function matched glibc 2.36's expf on all 2^32 inputs, so the probabilities (and every
 * top-p / min-p decision) are the twin's. __fma_rn / __dmul_rn / __dsub_rn: no contraction. ---- */
static __device__ const unsigned long long expf_table[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull};

static __device__ __forceinline__ float glibc_expf(float x) {
    const double inv_ln2_32 = 0x1.71547652b82fep+5, shift = 0x1.8p+52;
    const double c0 = 0x1.c6af84b912394p-20, c1 = 0x1.ebfce50fac4f3p-13, c2 = 0x1.62e42ff0c52d6p-6;
    const uint32_t bits = __float_as_uint(x), abstop = (bits >> 20) & 0x7ffu;
    if (abstop > 0x42au) { /* |x| >= 88, inf or NaN */
        if (bits == 0xff800000u) return 0.0f;
        if (abstop > 0x7f7u) return x + x;
        if (x > 0x1.62e42ep6f) return __int_as_float(0x7f800000);
        if (x < -0x1.9fe368p6f) return 0.0f;
        if (x < -0x1.9d1d9ep6f) return 0x1p-149f;
    }
    const double xd = (double)x;
    double kd = __fma_rn(inv_ln2_32, xd, shift); /* round(x * 32/ln2) in the low bits */
    const unsigned long long ki = (unsigned long long)__double_as_longlong(kd);
    kd = __dsub_rn(kd, shift);
    const double r = __fma_rn(inv_ln2_32, xd, -kd);
    const double s = __longlong_as_double((long long)(expf_table[ki & 31] + (ki << 47)));
    const double z = __fma_rn(r, c0, c1), r2 = __dmul_rn(r, r);
    const double y = __fma_rn(z, r2, __fma_rn(r, c2, 1.0));
    return __double2float_rn(__dmul_rn(y, s));
}

/* sampler_uniform (runtime/sampling.c): splitmix64, 53 bits. */
static __device__ double uniform01(uint64_t state) {
    uint64_t z = state + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

/* ---- block reductions: every thread gets the result. A butterfly is symmetric (a + b == b + a),
 * so all lanes hold the same bits; the order is fixed, so results are reproducible. ---- */

static __device__ double block_sum(double v, sample_smem *sm) {
    for (int o = 16; o > 0; o >>= 1) v = __dadd_rn(v, __shfl_xor_sync(FULL_MASK, v, o));
    __syncthreads(); /* the previous reduction is done with sm */
    if ((threadIdx.x & 31) == 0) sm->d[threadIdx.x >> 5] = v;
    __syncthreads();
    v = sm->d[threadIdx.x & 31];
    for (int o = 16; o > 0; o >>= 1) v = __dadd_rn(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

static __device__ float block_max(float v, sample_smem *sm) { /* NaN ignored (fmaxf) */
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sm->f[threadIdx.x >> 5] = v;
    __syncthreads();
    v = sm->f[threadIdx.x & 31];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

static __device__ int block_min_max_int(int v, int want_max, sample_smem *sm) {
    for (int o = 16; o > 0; o >>= 1) {
        const int w = __shfl_xor_sync(FULL_MASK, v, o);
        v = want_max ? max(v, w) : min(v, w);
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sm->i[threadIdx.x >> 5] = v;
    __syncthreads();
    v = sm->i[threadIdx.x & 31];
    for (int o = 16; o > 0; o >>= 1) {
        const int w = __shfl_xor_sync(FULL_MASK, v, o);
        v = want_max ? max(v, w) : min(v, w);
    }
    return v;
}

/* A larger value wins, an equal one goes to the smaller index: a total order, so the butterfly
 * is symmetric. (-inf, NO_INDEX) loses to every real element, -inf ones included. */
static __device__ __forceinline__ void take_better(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

/* First index of the largest value of x[0..n); NaN never wins; 0 when all are NaN (argmax_nan). */
static __device__ int32_t argmax_row(const float *x, int n, sample_smem *sm) {
    float best = neg_inf();
    int bi = NO_INDEX;
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) {
        const float v = x[j];
        if (!isnan(v) && (bi == NO_INDEX || v > best)) {
            best = v;
            bi = j;
        }
    }
    for (int o = 16; o > 0; o >>= 1)
        take_better(best, bi, __shfl_xor_sync(FULL_MASK, best, o),
                    __shfl_xor_sync(FULL_MASK, bi, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) {
        sm->f[threadIdx.x >> 5] = best;
        sm->i[threadIdx.x >> 5] = bi;
    }
    __syncthreads();
    best = sm->f[threadIdx.x & 31];
    bi = sm->i[threadIdx.x & 31];
    for (int o = 16; o > 0; o >>= 1)
        take_better(best, bi, __shfl_xor_sync(FULL_MASK, best, o),
                    __shfl_xor_sync(FULL_MASK, bi, o));
    return bi == NO_INDEX ? 0 : bi;
}

/* Exclusive prefix sum of the threads' values in thread order, and the total. */
static __device__ void block_scan(double v, double *before, double *total, sample_smem *sm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double incl = v;
    for (int o = 1; o < 32; o <<= 1) {
        const double t = __shfl_up_sync(FULL_MASK, incl, o);
        if (lane >= o) incl = __dadd_rn(t, incl);
    }
    double excl = __shfl_up_sync(FULL_MASK, incl, 1);
    if (lane == 0) excl = 0.0;
    __syncthreads();
    if (lane == 31) sm->d[warp] = incl;
    __syncthreads();
    double base = 0.0, all = 0.0;
    for (int w = 0; w < SAMPLE_WARPS; w++) {
        if (w == warp) base = all;
        all = __dadd_rn(all, sm->d[w]);
    }
    *before = __dadd_rn(base, excl);
    *total = all;
}

/* ---- the steps of sample_token ---- */

/* x = logits with NaN -> -inf, then the CTRL penalty on the history's ids. Each id's new value
 * is computed from the untouched logits, so a duplicated id stores the same value again: once
 * per distinct id, as the twin's "already changed" rule gives. */
static __device__ void penalized_copy(float *x, const float *lg, int n, const int32_t *h,
                                      int n_hist, float rp) {
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) {
        const float v = lg[j];
        x[j] = isnan(v) ? neg_inf() : v;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < n_hist; j += SAMPLE_THREADS) {
        const int32_t id = h[j];
        if (id < 0 || id >= n) continue;
        const float v = lg[id];
        if (isnan(v)) continue;
        x[id] = v > 0 ? __fdiv_rn(v, rp) : __fmul_rn(v, rp);
    }
    __syncthreads();
}

/* Order-preserving key of a float (-0 keyed as +0, since the twin compares values). */
static __device__ __forceinline__ uint32_t order_key(float f) {
    const uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ float key_value(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* The k-th largest of x[0..n) (1 <= k <= n, ties counted): four 8-bit radix passes over the keys,
 * from the top byte; each pass keeps the digit whose bucket holds the rank still wanted. */
static __device__ float kth_largest(const float *x, int n, int k, sample_smem *sm) {
    uint32_t prefix = 0, mask = 0;
    unsigned rank = (unsigned)k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += SAMPLE_THREADS) sm->hist[b] = 0;
        __syncthreads();
        for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) {
            const uint32_t key = order_key(x[j]);
            if ((key & mask) == prefix) atomicAdd(&sm->hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) { /* the prefix's elements number >= rank, so b stays >= 0 */
            unsigned above = 0;
            int b = 255;
            while (above + sm->hist[b] < rank) above += sm->hist[b--];
            sm->digit = (unsigned)b;
            sm->rank = rank - above;
        }
        __syncthreads();
        prefix |= sm->digit << shift;
        mask |= 255u << shift;
        rank = sm->rank;
    }
    return key_value(prefix);
}

/* Sets x < (k-th largest) to -inf; k in (0, n). */
static __device__ void top_k_filter(float *x, int n, int k, sample_smem *sm) {
    const float thr = kth_largest(x, n, k, sm);
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS)
        if (x[j] < thr) x[j] = neg_inf();
}

/* p[j] = exp(x[j] - max x) (0 for -inf); returns the sum. */
static __device__ double softmax_unnorm(const float *x, float *p, int n, sample_smem *sm) {
    float m = neg_inf();
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) m = fmaxf(m, x[j]);
    m = block_max(m, sm);
    double z = 0.0;
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) {
        const float v = x[j] == neg_inf() ? 0.0f : glibc_expf(__fsub_rn(x[j], m));
        p[j] = v;
        z = __dadd_rn(z, (double)v);
    }
    return block_sum(z, sm);
}

static __device__ float positive_max(const float *p, int n, sample_smem *sm) {
    float m = 0.0f;
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) m = fmaxf(m, p[j]);
    return block_max(m, sm);
}

/* Mass of the positive p whose bit pattern is >= key (for positive floats, p >= value(key)). */
static __device__ double mass_from(const float *p, int n, uint32_t key, sample_smem *sm) {
    double s = 0.0;
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) {
        const float v = p[j];
        if (v > 0 && __float_as_uint(v) >= key) s = __dadd_rn(s, (double)v);
    }
    return block_sum(s, sm);
}

/* The twin sorts the positive p in decreasing order and keeps those >= the first one at which
 * the running mass reaches top_p * z: that is the largest t with mass(p >= t) >= top_p * z,
 * always one of the p, found here by bisection over bit patterns in [1, bits(max p)]. When no t
 * qualifies (rounding) the twin keeps everything, and so does this. */
static __device__ void top_p_filter(float *p, int n, double z, float top_p, sample_smem *sm) {
    const double want = __dmul_rn((double)top_p, z);
    const float pmax = positive_max(p, n, sm);
    if (!(pmax > 0)) return;
    uint32_t lo = 1, hi = __float_as_uint(pmax) + 1; /* mass_from(lo) >= want > mass_from(hi) */
    if (!(mass_from(p, n, lo, sm) >= want)) return;
    while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (mass_from(p, n, mid, sm) >= want)
            lo = mid;
        else
            hi = mid;
    }
    const float thr = __uint_as_float(lo);
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS)
        if (p[j] < thr) p[j] = 0.0f;
}

static __device__ void min_p_filter(float *p, int n, float min_p, sample_smem *sm) {
    const float thr = __fmul_rn(min_p, positive_max(p, n, sm));
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS)
        if (p[j] < thr) p[j] = 0.0f;
}

/* One draw in index order: thread t walks the contiguous chunk t of the row from the mass of
 * the chunks before it; the first index whose running mass exceeds u wins, else the last
 * positive one (rounding left u at the top). As in the twin, p <= 0 is skipped, NaN is not. */
static __device__ int32_t draw(const float *p, int n, uint64_t rng, sample_smem *sm) {
    const int chunk = (n + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int begin = min((int)threadIdx.x * chunk, n), end = min(begin + chunk, n);
    double own = 0.0, acc, z;
    for (int j = begin; j < end; j++)
        if (!(p[j] <= 0)) own = __dadd_rn(own, (double)p[j]);
    block_scan(own, &acc, &z, sm);
    const double u = __dmul_rn(uniform01(rng), z);
    int first = NO_INDEX, last = -1;
    for (int j = begin; j < end; j++) {
        if (p[j] <= 0) continue;
        acc = __dadd_rn(acc, (double)p[j]);
        last = j;
        if (acc > u) {
            first = j;
            break;
        }
    }
    first = block_min_max_int(first, 0, sm);
    return first != NO_INDEX ? first : block_min_max_int(last, 1, sm);
}

/* Every path of sample_token but greedy without penalty. lg: the row's logits, overwritten with
 * its probabilities; x: the row's workspace. */
static __device__ int32_t sample_row(float *lg, float *x, int n, const sample_params_dev *p,
                                     const int32_t *h, int n_hist, const uint64_t *rng,
                                     sample_smem *sm) {
    penalized_copy(x, lg, n, h, n_hist, p->repetition_penalty);
    if (p->temperature <= 0) return argmax_row(x, n, sm);
    float m = neg_inf();
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) m = fmaxf(m, x[j]);
    if (block_max(m, sm) == neg_inf()) return 0; /* nothing to sample from: the twin's argmax */
    for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) x[j] = __fdiv_rn(x[j], p->temperature);
    if (p->top_k > 0 && p->top_k < n) top_k_filter(x, n, p->top_k, sm);
    __syncthreads();
    const double z = softmax_unnorm(x, lg, n, sm); /* from here on lg holds probabilities */
    if (p->top_p < 1.0f) top_p_filter(lg, n, z, p->top_p, sm);
    if (p->min_p > 0) min_p_filter(lg, n, p->min_p, sm);
    __syncthreads(); /* the draw reads the row by chunks */
    return draw(lg, n, *rng, sm);
}

static __global__ void __launch_bounds__(SAMPLE_THREADS) sample_kernel(const sample_cuda_args a) {
    __shared__ sample_smem sm;
    const int r = blockIdx.x, n = a.vocab;
    const sample_params_dev p = a.params[r];
    float *lg = a.logits + (size_t)r * n;
    int32_t *h = NULL;
    int n_hist = 0;
    if (a.hist) {
        const int slot = a.row_slot ? a.row_slot[r] : r;
        h = a.hist + (size_t)slot * a.hist_cap;
        n_hist = min(max(a.hist_len[slot], 0), a.hist_cap);
    }
    const int penal = p.repetition_penalty != 1.0f && n_hist > 0;
    int32_t tok;
    if (p.temperature <= 0 && !penal)
        tok = argmax_row(lg, n, &sm);
    else
        tok = sample_row(lg, (float *)a.workspace + (size_t)r * n, n, &p, h, penal ? n_hist : 0,
                         a.rng + r, &sm);
    __syncthreads(); /* every thread is done reading the history */
    if (threadIdx.x != 0) return;
    a.out[r] = tok;
    if (h && n_hist < a.hist_cap) {
        h[n_hist] = tok;
        a.hist_len[a.row_slot ? a.row_slot[r] : r] = n_hist + 1;
    }
}

extern "C" size_t sample_cuda_workspace_bytes(int n_rows, int vocab) {
    return n_rows > 0 && vocab > 0 ? (size_t)n_rows * (size_t)vocab * sizeof(float) : 0;
}

extern "C" cudaError_t sample_cuda(const sample_cuda_args *a, cudaStream_t stream) {
    AKV_REQUIRE(a != nullptr);
    AKV_REQUIRE(stream != nullptr); /* never the legacy default stream */
    AKV_REQUIRE(a->n_rows >= 0 && a->vocab > 0 && a->vocab <= SAMPLE_MAX_VOCAB);
    if (a->n_rows == 0) return cudaSuccess;
    AKV_REQUIRE(a->out && a->logits && a->params && a->rng);
    AKV_REQUIRE(a->workspace &&
                a->workspace_bytes >= sample_cuda_workspace_bytes(a->n_rows, a->vocab));
    AKV_REQUIRE(!a->hist || (a->hist_len && a->hist_cap > 0));
    sample_kernel<<<a->n_rows, SAMPLE_THREADS, 0, stream>>>(*a);
    AKV_LAUNCH_CHECK();
    return cudaSuccess;
}
