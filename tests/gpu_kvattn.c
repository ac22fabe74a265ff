/* gpu_kvattn.c — the compressed-cache kernels (kernels/kvattn.cu, kernels/kvattn_tc.cuh,
 * kernels/kvquant.cu) against their twins: caches are built on the host by runtime/kvcache
 * (kvcache_init / append / view) from seeded random fp16 data with outlier key channels, copied
 * to the device with every bit the view does not own poisoned (tests/kvview_util.h: NaN scales
 * and windows), and
 *  - kvattn_cuda (each impl) is compared with the fp64 function (and kvattn_ref), every width
 *    pair 16/4/2/1 x 16/4/2/1 but 16/16, G 32 and 64, GQA 1/4/8, head_dim 64/80/96/128, lengths
 *    around multiples of G and R (and R 32, 64, 512), plus Llama-3-8B-shaped rows of 100k-131k
 *    positions;
 *  - kvq_append_cuda is stepped beside kvcache_append and the caches must match bit for bit;
 *  - kvq_dense_cuda / kvq_commit_cuda (the CUDA stage's prefill path) against
 *    kvq_view_dequantize and kvcache_append of a chunk, bit for bit; the fp16 roundings.
 * Tolerances (attention), against the same function in fp64 (attend_f64; at 128k positions the
 * fp32 twin's own summation error reaches ~3e-3 relative L2 on these near-zero averages, so the
 * twin is printed beside, not judged against): the scalar impl is fp32 throughout: each output
 * within 1e-4 x (|exact| + 1) (values ~1). The tensor-core impl rounds q' * key scale and
 * p * value scale to fp16 (codes stay exact): max |d| <= 1e-3 x (|exact| + 1) and relative L2
 * <= 2e-3, stricter than bf16 SDPA meets (../shared/kvattn-design.md §5). NaN never passes.
 * Without a usable CUDA device every test is skipped. ASYMKV_GPU_QUICK=1 (memcheck) skips the
 * long rows, G 64 and head_dim 80/96 in the width sweep and two thirds of the append steps.
 * Run on the GPU machine:  ./build-gpu/tests/gpu_kvattn [--filter kvattn/matches_twin] */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cuda_check.h"
#include "kernels_cuda.h"
#include "kvcache.h"
#include "kvconfig.h"
#include "kvquant.h"
#include "gpu_util.h"
#include "kvview_util.h"

/* ---- random data (device helpers and the generator: gpu_util.h) ---- */

/* Per-channel key statistics: most channels ~U(-1, 1) around a small offset, one in 16 an
 * outlier channel (offset up to +-6, spread x4), as KIVI observes in real keys. */
typedef struct chan_stats {
    float *k_mu, *k_sd, *v_sd; /* [n_kv * D] */
} chan_stats;

static chan_stats make_stats(int row, uint32_t *seed) {
    chan_stats st = {xmalloc((size_t)row * 4), xmalloc((size_t)row * 4), xmalloc((size_t)row * 4)};
    for (int i = 0; i < row; i++) {
        const int outlier = rng_next(seed) % 16 == 0;
        st.k_mu[i] = rng_uniform(seed, -0.5f, 0.5f) + (outlier ? rng_uniform(seed, -6.0f, 6.0f) : 0);
        st.k_sd[i] = outlier ? 4.0f : 1.0f;
        st.v_sd[i] = rng_next(seed) % 32 == 0 ? 3.0f : 1.0f;
    }
    return st;
}

static void free_stats(chan_stats *st) {
    free(st->k_mu), free(st->k_sd), free(st->v_sd);
}

/* n rows of keys and values, fp16-rounded (what the cache stores and kvattn_ref expects). */
static void make_rows(float *k, float *v, int n, int row, const chan_stats *st, uint32_t *seed) {
    for (int t = 0; t < n; t++)
        for (int i = 0; i < row; i++) {
            k[(size_t)t * row + i] = st->k_mu[i] + st->k_sd[i] * rng_uniform(seed, -1.0f, 1.0f);
            v[(size_t)t * row + i] = st->v_sd[i] * rng_uniform(seed, -1.0f, 1.0f);
        }
    kvq_round_f16(k, (size_t)n * row);
    kvq_round_f16(v, (size_t)n * row);
}

/* ---- a host cache and its device copy ---- */

typedef struct cache_spec {
    int kb, vb, G, R, D, n_kv;
} cache_spec;

typedef struct dev_cache {
    kvcache *kv;
    int n_seq, ctx, row;
    uint8_t **dmem;      /* [n_seq] device copies of each sequence's regions */
    size_t *bytes;       /* [n_seq] */
    kvq_seq_dev *seqs;   /* [n_seq] host array with device pointers and the counts */
    kvq_seq_dev *d_seqs; /* the same on the device */
} dev_cache;

static kvcache *host_cache(const cache_spec *cs, int n_seq, int ctx, kv_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n_layers = 1, cfg->k_bits[0] = (uint8_t)cs->kb, cfg->v_bits[0] = (uint8_t)cs->vb;
    cfg->group = cs->G, cfg->residual = cs->R;
    const kvcache_shape shape = {1, 0, n_seq, ctx, cs->n_kv, cs->D, cfg};
    kvcache *kv = NULL;
    akv_err err = {0};
    cr_assert_eq(kvcache_init(&kv, &shape, &err), AKV_OK, "%s", err.msg);
    return kv;
}

/* Device pointers of a view copied to dmem. */
static kvq_seq_dev seq_dev(const kvq_view *w, uint8_t *dmem) {
    const uint8_t *base = w->k_quant;
    kvq_seq_dev s = {dmem, dmem + (w->v_quant - base),
                     (uint16_t *)(dmem + ((const uint8_t *)w->k_win - base)),
                     (uint16_t *)(dmem + ((const uint8_t *)w->v_win - base)), w->len, w->kq, w->vq,
                     w->k_cap, w->v_cap, 0};
    return s;
}

static void upload_cache(dev_cache *dc, cudaStream_t s) {
    for (int q = 0; q < dc->n_seq; q++) {
        kvq_view w;
        kvcache_view(dc->kv, 0, q, &w);
        uint8_t *h = kvview_poisoned_copy(&w);
        cr_assert(h, "out of host memory");
        dc->bytes[q] = kvview_bytes(&w);
        if (!dc->dmem[q]) dc->dmem[q] = dev_poisoned(dc->bytes[q], s);
        CUDA_CHECK_EXIT(cudaMemcpyAsync(dc->dmem[q], h, dc->bytes[q], cudaMemcpyHostToDevice, s));
        CUDA_CHECK_EXIT(cudaStreamSynchronize(s));
        free(h);
        dc->seqs[q] = seq_dev(&w, dc->dmem[q]);
    }
    CUDA_CHECK_EXIT(cudaMemcpyAsync(dc->d_seqs, dc->seqs, sizeof(kvq_seq_dev) * dc->n_seq,
                                    cudaMemcpyHostToDevice, s));
    CUDA_CHECK_EXIT(cudaStreamSynchronize(s));
}

/* A cache of n_seq sequences filled to lens[] with random rows; also uploaded. */
static dev_cache build_cache(const cache_spec *cs, const int *lens, int n_seq, int ctx,
                             kv_config *cfg, const chan_stats *st, uint32_t *seed,
                             cudaStream_t s) {
    dev_cache dc = {host_cache(cs, n_seq, ctx, cfg), n_seq, ctx, cs->n_kv * cs->D,
                    calloc((size_t)n_seq, sizeof(uint8_t *)), xmalloc(sizeof(size_t) * n_seq),
                    xmalloc(sizeof(kvq_seq_dev) * n_seq), NULL};
    dc.d_seqs = dev_poisoned(sizeof(kvq_seq_dev) * n_seq, s);
    akv_err err = {0};
    for (int q = 0; q < n_seq; q++) {
        float *k = xmalloc((size_t)lens[q] * dc.row * 4), *v = xmalloc((size_t)lens[q] * dc.row * 4);
        make_rows(k, v, lens[q], dc.row, st, seed);
        cr_assert_eq(kvcache_append(dc.kv, 0, q, lens[q], k, v, &err), AKV_OK, "%s", err.msg);
        free(k), free(v);
    }
    upload_cache(&dc, s);
    return dc;
}

static void free_cache(dev_cache *dc) {
    for (int q = 0; q < dc->n_seq; q++) cudaFree(dc->dmem[q]);
    cudaFree(dc->d_seqs);
    free(dc->dmem), free(dc->bytes), free(dc->seqs);
    kvcache_free(dc->kv);
}

/* ---- attention against kvattn_ref ---- */

#define TOL_SCALAR 1e-4 /* x (|want| + 1) */
#define TOL_TC 1e-3     /* x (|want| + 1) */
#define TOL_TC_L2 2e-3  /* relative L2 */

static const char *impl_name(int impl) {
    return impl == KVATTN_MMA ? "tc" : impl == KVATTN_SCALAR ? "scalar" : "auto";
}

/* Whether impl takes the shape (the auto impl picks the tensor cores when they do). */
static int impl_supported(const cache_spec *cs, int impl, int n_heads) {
    kvattn_args a = {.n_batch = 1, .max_len = 64, .n_heads = n_heads, .n_kv_heads = cs->n_kv,
                     .head_dim = cs->D, .group = cs->G, .k_bits = cs->kb, .v_bits = cs->vb,
                     .impl = impl};
    return kvattn_workspace_bytes(&a) > 0;
}

/* The exact function in double: sequence b's stored positions dequantized (kvq_view_dequantize:
 * each fp32 value is code * scale + zero rounded once), the new token appended, softmax and
 * weighted sum in fp64. out: [n_heads][D]. */
static void attend_f64(const dev_cache *dc, int b, int n_heads, const float *q, const float *kn,
                       const float *vn, float scale, double *out) {
    kvq_view w;
    kvcache_view(dc->kv, 0, b, &w);
    const int D = w.head_dim, H = w.n_kv_heads, per = n_heads / H, T = w.len + 1;
    const size_t row = (size_t)H * D;
    float *k = xmalloc((size_t)T * row * 4), *v = xmalloc((size_t)T * row * 4);
    double *lg = xmalloc((size_t)T * sizeof(double));
    kvq_view_dequantize(&w, k, v);
    memcpy(k + (size_t)w.len * row, kn, row * 4);
    memcpy(v + (size_t)w.len * row, vn, row * 4);
    for (int h = 0; h < n_heads; h++) {
        const int g = h / per;
        const float *qh = q + (size_t)h * D;
        double mx = -INFINITY, sum = 0.0;
        for (int p = 0; p < T; p++) {
            const float *kr = k + (size_t)p * row + (size_t)g * D;
            double d = 0.0;
            for (int c = 0; c < D; c++) d += (double)qh[c] * kr[c];
            lg[p] = d * scale;
            mx = lg[p] > mx ? lg[p] : mx;
        }
        for (int p = 0; p < T; p++) sum += (lg[p] = exp(lg[p] - mx));
        double *o = out + (size_t)h * D;
        for (int c = 0; c < D; c++) o[c] = 0.0;
        for (int p = 0; p < T; p++) {
            const float *vr = v + (size_t)p * row + (size_t)g * D;
            const double a = lg[p] / sum;
            for (int c = 0; c < D; c++) o[c] += a * vr[c];
        }
    }
    free(k), free(v), free(lg);
}

/* Runs kvattn_cuda with impl over the cache for n_heads query heads and judges it against the
 * fp64 function (attend_f64); the fp32 twin's own distance from it is printed beside. Returns 1
 * if it matched. */
static int attn_check(const dev_cache *dc, const cache_spec *cs, int n_heads, int impl,
                      uint32_t *seed, cudaStream_t s, const char *label) {
    const int B = dc->n_seq, D = cs->D, row = dc->row;
    const size_t qn = (size_t)B * n_heads * D;
    float *q = xmalloc(qn * 4), *got = xmalloc(qn * 4), *want = xmalloc(qn * 4);
    double *exact = xmalloc(qn * sizeof(double));
    float *kn = xmalloc((size_t)B * row * 4), *vn = xmalloc((size_t)B * row * 4);
    float *scratch = xmalloc(kvattn_scratch_floats(dc->ctx + 1, D) * sizeof(float));
    chan_stats st = make_stats(row, seed);
    make_rows(kn, vn, B, row, &st, seed);
    free_stats(&st);
    for (size_t i = 0; i < qn; i++) q[i] = rng_uniform(seed, -2.0f, 2.0f);
    const float scale = 1.0f / sqrtf((float)D);
    int max_len = 1, max_tail = 1;
    for (int b = 0; b < B; b++) {
        kvq_view w;
        kvcache_view(dc->kv, 0, b, &w);
        kvcache_attend(dc->kv, 0, b, 1, n_heads, q + (size_t)b * n_heads * D, kn + (size_t)b * row,
                       vn + (size_t)b * row, want + (size_t)b * n_heads * D, scale, scratch);
        attend_f64(dc, b, n_heads, q + (size_t)b * n_heads * D, kn + (size_t)b * row,
                   vn + (size_t)b * row, scale, exact + (size_t)b * n_heads * D);
        max_len = w.len + 1 > max_len ? w.len + 1 : max_len;
        const int tl = kvattn_tail_len(w.len, w.kq, w.vq, w.k_bits, w.v_bits);
        max_tail = tl > max_tail ? tl : max_tail;
    }
    kvattn_args a = {.q = dev_upload(q, qn * 4, s),
                     .k_new = dev_upload(kn, (size_t)B * row * 4, s),
                     .v_new = dev_upload(vn, (size_t)B * row * 4, s),
                     .seqs = dc->d_seqs,
                     .n_batch = B,
                     .max_len = max_len + 3,
                     .max_tail = max_tail,
                     .n_heads = n_heads,
                     .n_kv_heads = cs->n_kv,
                     .head_dim = D,
                     .group = cs->G,
                     .k_bits = cs->kb,
                     .v_bits = cs->vb,
                     .scale = scale,
                     .impl = impl};
    a.workspace_bytes = kvattn_workspace_bytes(&a);
    cr_assert(a.workspace_bytes > 0, "kvattn_workspace_bytes refused %s", label);
    a.workspace = dev_poisoned(a.workspace_bytes, s);
    a.out = dev_poisoned(qn * 4, s);
    CUDA_CHECK_EXIT(kvattn_cuda(&a, s));
    dev_download(got, a.out, qn * 4, s);
    const int tc = impl == KVATTN_MMA ||
                   (impl == KVATTN_AUTO && impl_supported(cs, KVATTN_MMA, n_heads));
    const double tol = tc ? TOL_TC : TOL_SCALAR;
    size_t bad = 0;
    double worst = 0.0, e2 = 0.0, r2 = 0.0, t_worst = 0.0, t2 = 0.0;
    for (size_t r = 0; r < (size_t)B * n_heads; r++) {
        for (int c = 0; c < D; c++) {
            const size_t i = r * D + c;
            const double d = fabs((double)got[i] - exact[i]), dt = fabs((double)want[i] - exact[i]);
            e2 += d * d, r2 += exact[i] * exact[i], t2 += dt * dt;
            if (isfinite(d) && d > worst) worst = d;
            if (dt > t_worst) t_worst = dt;
            if (!(d <= tol * (fabs(exact[i]) + 1.0))) {
                if (bad < 6)
                    fprintf(stderr, "  %s %s: seq %zu head %zu ch %d: got %.9g exact %.9g (twin %.9g)\n",
                            label, impl_name(impl), r / n_heads, r % n_heads, c, got[i], exact[i], want[i]);
                bad++;
            }
        }
    }
    const double rl = r2 > 0 ? sqrt(e2 / r2) : sqrt(e2), trl = r2 > 0 ? sqrt(t2 / r2) : sqrt(t2);
    const int l2_bad = tc && !(rl <= TOL_TC_L2);
    fprintf(stderr, "kvattn %s heads=%d impl=%s: vs fp64 max |diff| %.2e, rel_l2 %.2e (fp32 twin: "
            "%.2e, %.2e)%s\n", label, n_heads, impl_name(impl), worst, rl, t_worst, trl,
            bad || l2_bad ? " FAIL" : "");
    cudaFree(a.out), cudaFree((void *)a.q), cudaFree((void *)a.k_new), cudaFree((void *)a.v_new);
    cudaFree(a.workspace);
    free(q), free(got), free(want), free(exact), free(kn), free(vn), free(scratch);
    return bad == 0 && !l2_bad;
}

static const int WIDTHS[4] = {16, 4, 2, 1};

Test(kvattn, matches_twin) {
    REQUIRE_GPU();
    const int lens[] = {0, 1, 31, 32, 33, 127, 128, 129, 300, 1000};
    const int n_seq = (int)(sizeof lens / sizeof lens[0]), gqa[3] = {1, 4, 8};
    const int dims[4] = {64, 128, 80, 96};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x5eedu;
    int failed = 0, runs = 0, tc_runs = 0;
    for (int wk = 0; wk < 4; wk++)
        for (int wv = 0; wv < 4; wv++)
            for (int gi = 0; gi < (quick_mode() ? 1 : 2); gi++) /* quick (memcheck): G 32 only */
                for (int di = 0; di < (quick_mode() ? 2 : 4); di++) {
                    const cache_spec cs = {WIDTHS[wk], WIDTHS[wv], 32 << gi, 128, dims[di], 2};
                    if (cs.kb == 16 && cs.vb == 16) continue; /* attention_decode's (gpu_kernels) */
                    if (cs.vb <= 4 && cs.D % cs.G) continue;  /* values cannot be quantized */
                    kv_config cfg;
                    chan_stats st = make_stats(cs.n_kv * cs.D, &seed);
                    dev_cache dc = build_cache(&cs, lens, n_seq, 1100, &cfg, &st, &seed, s);
                    char label[96];
                    snprintf(label, sizeof label, "k%d/v%d G%d D%d", cs.kb, cs.vb, cs.G, cs.D);
                    for (int gq = 0; gq < 3; gq++)
                        for (int impl = KVATTN_SCALAR; impl <= KVATTN_MMA; impl++) {
                            const int H = cs.n_kv * gqa[gq];
                            if (!impl_supported(&cs, impl, H)) continue;
                            runs++, tc_runs += impl == KVATTN_MMA;
                            if (!attn_check(&dc, &cs, H, impl, &seed, s, label)) failed++;
                        }
                    free_stats(&st);
                    free_cache(&dc);
                }
    cr_expect_eq(failed, 0, "%d of %d kvattn runs differ from kvattn_ref", failed, runs);
    cr_expect(tc_runs >= (quick_mode() ? 40 : 100), "only %d tensor-core runs", tc_runs);
    cudaStreamDestroy(s);
}

Test(kvattn, residual_32_64_and_512) { /* other windows, Llama-3-8B heads */
    REQUIRE_GPU();
    const int lens[] = {63, 64, 65, 600, 1025};
    const cache_spec specs[] = {{2, 1, 32, 64, 128, 8}, {1, 1, 32, 512, 128, 8},
                                {4, 2, 64, 512, 128, 8}, {2, 16, 32, 64, 64, 4},
                                {2, 2, 32, 32, 128, 8},  {16, 2, 32, 512, 96, 4}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x64512u;
    for (size_t c = 0; c < sizeof specs / sizeof specs[0]; c++) {
        kv_config cfg;
        chan_stats st = make_stats(specs[c].n_kv * specs[c].D, &seed);
        dev_cache dc = build_cache(&specs[c], lens, 5, 1100, &cfg, &st, &seed, s);
        char label[96];
        snprintf(label, sizeof label, "k%d/v%d G%d R%d D%d", specs[c].kb, specs[c].vb, specs[c].G,
                 specs[c].R, specs[c].D);
        for (int impl = KVATTN_AUTO; impl <= KVATTN_MMA; impl++)
            if (impl_supported(&specs[c], impl, 32))
                cr_expect(attn_check(&dc, &specs[c], 32, impl, &seed, s, label), "%s %s", label,
                          impl_name(impl));
        free_stats(&st);
        free_cache(&dc);
    }
    cudaStreamDestroy(s);
}

Test(kvattn, long_context) { /* up to 128k positions, Llama-3-8B heads (32 / 8, D 128) */
    REQUIRE_GPU();
    if (quick_mode()) cr_skip_test("ASYMKV_GPU_QUICK set");
    const int lens[2] = {131071, 100003};
    const cache_spec specs[] = {{2, 1, 32, 128, 128, 8}, {1, 1, 32, 128, 128, 8},
                                {2, 2, 32, 128, 128, 8}, {4, 4, 32, 512, 128, 8},
                                {16, 1, 32, 128, 128, 8}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x40000u;
    for (size_t c = 0; c < sizeof specs / sizeof specs[0]; c++) {
        kv_config cfg;
        chan_stats st = make_stats(specs[c].n_kv * specs[c].D, &seed);
        dev_cache dc = build_cache(&specs[c], lens, 2, 131072, &cfg, &st, &seed, s);
        char label[96];
        snprintf(label, sizeof label, "long k%d/v%d R%d", specs[c].kb, specs[c].vb, specs[c].R);
        for (int impl = KVATTN_SCALAR; impl <= KVATTN_MMA; impl++)
            if (impl_supported(&specs[c], impl, 32))
                cr_expect(attn_check(&dc, &specs[c], 32, impl, &seed, s, label), "%s %s", label,
                          impl_name(impl));
        free_stats(&st);
        free_cache(&dc);
    }
    cudaStreamDestroy(s);
}

Test(kvattn, bad_counts_give_nan) {
    REQUIRE_GPU();
    const cache_spec cs = {2, 1, 32, 128, 64, 2};
    const int lens[2] = {100, 300};
    cudaStream_t s = new_stream();
    uint32_t seed = 0xbadu;
    kv_config cfg;
    chan_stats st = make_stats(cs.n_kv * cs.D, &seed);
    dev_cache dc = build_cache(&cs, lens, 2, 400, &cfg, &st, &seed, s);
    dc.seqs[0].kq = 16; /* not a multiple of G */
    dc.seqs[1].len = 500; /* past max_len */
    CUDA_CHECK_EXIT(cudaMemcpyAsync(dc.d_seqs, dc.seqs, sizeof(kvq_seq_dev) * 2,
                                    cudaMemcpyHostToDevice, s));
    const size_t qn = 2 * 4 * 64;
    float q[2 * 4 * 64], got[2 * 4 * 64], kn[2 * 128] = {0};
    for (size_t i = 0; i < qn; i++) q[i] = rng_uniform(&seed, -1.0f, 1.0f);
    for (int impl = KVATTN_SCALAR; impl <= KVATTN_MMA; impl++) {
        kvattn_args a = {.q = dev_upload(q, sizeof q, s), .k_new = dev_upload(kn, sizeof kn, s),
                         .v_new = NULL, .seqs = dc.d_seqs, .n_batch = 2, .max_len = 400,
                         .max_tail = 400, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64,
                         .group = 32, .k_bits = 2, .v_bits = 1, .scale = 0.125f, .impl = impl};
        a.v_new = a.k_new;
        a.workspace_bytes = kvattn_workspace_bytes(&a);
        if (!a.workspace_bytes) continue;
        a.workspace = dev_poisoned(a.workspace_bytes, s);
        a.out = dev_poisoned(sizeof got, s);
        CUDA_CHECK_EXIT(cudaMemsetAsync(a.out, 0, sizeof got, s)); /* NaN must come from the kernel */
        CUDA_CHECK_EXIT(kvattn_cuda(&a, s));
        dev_download(got, a.out, sizeof got, s);
        for (size_t i = 0; i < qn; i++)
            cr_expect(isnan(got[i]), "%s out[%zu] = %g, want NaN", impl_name(impl), i, got[i]);
        cudaFree(a.out), cudaFree((void *)a.q), cudaFree((void *)a.k_new), cudaFree(a.workspace);
    }
    free_stats(&st);
    free_cache(&dc);
    cudaStreamDestroy(s);
}

Test(kvattn, preconditions) {
    REQUIRE_GPU();
    cudaStream_t s = new_stream();
    float *d = dev_poisoned(4096, s);
    kvattn_args a = {.out = d, .q = d, .k_new = d, .v_new = d, .seqs = (const kvq_seq_dev *)d,
                     .n_batch = 1, .max_len = 10, .n_heads = 4, .n_kv_heads = 4, .head_dim = 64,
                     .group = 32, .k_bits = 32, .v_bits = 2, .scale = 1.0f, .workspace = d,
                     .workspace_bytes = 4096};
    cr_expect_eq(kvattn_cuda(&a, s), cudaErrorInvalidValue, "32-bit keys must be refused");
    a.k_bits = 2, a.group = 48;
    cr_expect_eq(kvattn_cuda(&a, s), cudaErrorInvalidValue, "group 48");
    a.group = 32, a.workspace_bytes = 8;
    cr_expect_eq(kvattn_cuda(&a, s), cudaErrorInvalidValue, "workspace too small");
    CUDA_CHECK_EXIT(cudaStreamSynchronize(s));
    cudaFree(d);
    cudaStreamDestroy(s);
}

/* ---- append and flush, byte for byte ---- */

static void print_diff(const char *label, size_t i, int got, int want) {
    fprintf(stderr, "  %s: byte %zu got 0x%02x want 0x%02x (owned bits)\n", label, i, got, want);
}

/* Owned bits of the host view that differ in the device copy. */
static size_t compare_view(const kvq_view *w, const uint8_t *dev_copy, const char *label) {
    return kvview_diff(w, dev_copy, label, print_diff);
}

/* Steps host and device caches together; checks the device regions every `every` steps. */
static int append_check(const cache_spec *cs, const int *lens0, int n_seq, int steps, uint32_t *seed,
                        cudaStream_t s) {
    kv_config cfg;
    chan_stats st = make_stats(cs->n_kv * cs->D, seed);
    const int ctx = 1200;
    dev_cache dc = build_cache(cs, lens0, n_seq, ctx, &cfg, &st, seed, s);
    const int row = dc.row;
    float *k = xmalloc((size_t)n_seq * row * 4), *v = xmalloc((size_t)n_seq * row * 4);
    float *d_k = dev_poisoned((size_t)n_seq * row * 4, s), *d_v = dev_poisoned((size_t)n_seq * row * 4, s);
    kvl_append_op *ops = xmalloc(sizeof(kvl_append_op) * n_seq);
    kvl_append_op *d_ops = dev_poisoned(sizeof(kvl_append_op) * n_seq, s);
    akv_err err = {0};
    size_t bad = 0;
    int flushes = 0;
    for (int step = 0; step < steps && !bad; step++) {
        make_rows(k, v, n_seq, row, &st, seed);
        int any = 0;
        for (int q = 0; q < n_seq; q++) {
            kvq_view w;
            kvcache_view(dc.kv, 0, q, &w);
            ops[q] = kvl_append_plan(w.len, w.kq, w.vq, cs->kb, cs->vb, cs->R);
            any |= ops[q].k_flush >= 0;
            flushes += (ops[q].k_flush >= 0) + (ops[q].v_flush >= 0);
            cr_assert_eq(kvcache_append(dc.kv, 0, q, 1, k + (size_t)q * row, v + (size_t)q * row, &err),
                         AKV_OK, "%s", err.msg);
        }
        CUDA_CHECK_EXIT(cudaMemcpyAsync(d_k, k, (size_t)n_seq * row * 4, cudaMemcpyHostToDevice, s));
        CUDA_CHECK_EXIT(cudaMemcpyAsync(d_v, v, (size_t)n_seq * row * 4, cudaMemcpyHostToDevice, s));
        CUDA_CHECK_EXIT(cudaMemcpyAsync(d_ops, ops, sizeof(kvl_append_op) * n_seq,
                                        cudaMemcpyHostToDevice, s));
        const kvq_append_args a = {dc.d_seqs, d_ops, d_k, d_v, n_seq, cs->n_kv, cs->D, cs->G,
                                   cs->R, cs->kb, cs->vb, any};
        CUDA_CHECK_EXIT(kvq_append_cuda(&a, s));
        if (step % 37 == 36 || step == steps - 1) {
            for (int q = 0; q < n_seq; q++) {
                kvq_view w;
                kvcache_view(dc.kv, 0, q, &w);
                uint8_t *got = xmalloc(dc.bytes[q]);
                dev_download(got, dc.dmem[q], dc.bytes[q], s);
                char label[96];
                snprintf(label, sizeof label, "append k%d/v%d G%d R%d D%d seq %d step %d", cs->kb,
                         cs->vb, cs->G, cs->R, cs->D, q, step);
                bad += compare_view(&w, got, label);
                free(got);
            }
        }
        CUDA_CHECK_EXIT(cudaStreamSynchronize(s)); /* k, v, ops are rewritten next step */
    }
    fprintf(stderr, "kvquant append k%d/v%d G%d R%d D%d: %d steps, %d flushes, %zu bytes differ\n",
            cs->kb, cs->vb, cs->G, cs->R, cs->D, steps, flushes, bad);
    cudaFree(d_k), cudaFree(d_v), cudaFree(d_ops);
    free(k), free(v), free(ops);
    free_stats(&st);
    free_cache(&dc);
    return bad == 0;
}

Test(kvquant_append, matches_kvcache_append) {
    REQUIRE_GPU();
    const int lens0[3] = {0, 100, 250};
    cudaStream_t s = new_stream();
    uint32_t seed = 0xa99e4du;
    for (int wk = 0; wk < 4; wk++)
        for (int wv = 0; wv < 4; wv++)
            for (int gi = 0; gi < 2; gi++) {
                const cache_spec cs = {WIDTHS[wk], WIDTHS[wv], 32 << gi, gi ? 128 : 64, gi ? 128 : 64, 2};
                cr_expect(append_check(&cs, lens0, 3, quick_mode() ? 100 : 300, &seed, s), "append k%d/v%d G%d", cs.kb,
                          cs.vb, cs.G);
            }
    cudaStreamDestroy(s);
}

/* ---- the prefill path of a compressed layer (runtime/stage_cuda.c): kvq_dense_cuda must give
 * the fp16 rounding of kvq_view_dequantize bit for bit (the dequantization is not fused into an
 * FMA, as in the twin); kvq_commit_cuda, given the dense rows plus a chunk's new rows, must
 * leave the device cache byte-identical to kvcache_append of the same chunk (every byte the
 * host view owns afterwards, the rest poisoned). ---- */

static int dense_commit_check(const cache_spec *cs, int len0, int m, uint32_t *seed,
                              cudaStream_t s) {
    kv_config cfg;
    chan_stats st = make_stats(cs->n_kv * cs->D, seed);
    const int ctx = 800, row = cs->n_kv * cs->D;
    dev_cache dc = build_cache(cs, &len0, 1, ctx, &cfg, &st, seed, s);
    const size_t n0 = (size_t)len0 * row, n1 = (size_t)(len0 + m) * row;
    /* dense rows of the stored positions: device vs twin */
    kvq_view wa;
    kvcache_view(dc.kv, 0, 0, &wa);
    float *kf = xmalloc(n1 * 4), *vf = xmalloc(n1 * 4);
    kvq_view_dequantize(&wa, kf, vf);
    uint16_t *want = xmalloc(2 * n1 * 2), *got = xmalloc(2 * n1 * 2);
    for (size_t i = 0; i < n0; i++) want[i] = akv_f32_to_f16(kf[i]), want[n1 + i] = akv_f32_to_f16(vf[i]);
    uint16_t *d_dense = dev_poisoned(2 * n1 * 2, s);
    CUDA_CHECK_EXIT(kvq_dense_cuda(d_dense, d_dense + n1, dc.d_seqs, len0, cs->n_kv, cs->D, cs->G,
                                   cs->kb, cs->vb, s));
    dev_download(got, d_dense, 2 * n1 * 2, s);
    size_t dense_bad = 0;
    for (size_t i = 0; i < n0; i++) dense_bad += (got[i] != want[i]) + (got[n1 + i] != want[n1 + i]);
    /* the chunk: appended on the host, committed on the device from the dense rows */
    float *k = xmalloc((size_t)m * row * 4), *v = xmalloc((size_t)m * row * 4);
    make_rows(k, v, m, row, &st, seed);
    for (size_t i = 0; i < (size_t)m * row; i++)
        want[n0 + i] = akv_f32_to_f16(k[i]), want[n1 + n0 + i] = akv_f32_to_f16(v[i]);
    akv_err err = {0};
    cr_assert_eq(kvcache_append(dc.kv, 0, 0, m, k, v, &err), AKV_OK, "%s", err.msg);
    kvq_view wb;
    kvcache_view(dc.kv, 0, 0, &wb);
    CUDA_CHECK_EXIT(cudaMemcpyAsync(d_dense, want, 2 * n1 * 2, cudaMemcpyHostToDevice, s));
    const int kq = cs->kb <= 4 ? wa.kq : 0, kq1 = cs->kb <= 4 ? wb.kq : 0;
    const int vq = cs->vb <= 4 ? wa.vq : 0, vq1 = cs->vb <= 4 ? wb.vq : 0;
    const kvq_commit_args a = {dc.d_seqs, d_dense, d_dense + n1, kq, kq1, vq, vq1,
                               kq1 > len0 ? kq1 : len0, vq1 > len0 ? vq1 : len0, len0 + m,
                               cs->n_kv, cs->D, cs->G, cs->kb, cs->vb};
    CUDA_CHECK_EXIT(kvq_commit_cuda(&a, s));
    uint8_t *cache = xmalloc(dc.bytes[0]);
    dev_download(cache, dc.dmem[0], dc.bytes[0], s);
    char label[96];
    snprintf(label, sizeof label, "commit k%d/v%d G%d R%d D%d len %d + %d", cs->kb, cs->vb, cs->G,
             cs->R, cs->D, len0, m);
    const size_t commit_bad = compare_view(&wb, cache, label);
    fprintf(stderr, "kvquant dense+commit k%d/v%d G%d R%d D%d len %d + %d (kq %d->%d, vq %d->%d): "
            "%zu dense halves, %zu cache bytes differ\n", cs->kb, cs->vb, cs->G, cs->R, cs->D,
            len0, m, kq, kq1, vq, vq1, dense_bad, commit_bad);
    cudaFree(d_dense);
    free(kf), free(vf), free(want), free(got), free(k), free(v), free(cache);
    free_stats(&st);
    free_cache(&dc);
    return dense_bad == 0 && commit_bad == 0;
}

Test(kvquant_dense_commit, match_kvcache) {
    REQUIRE_GPU();
    const cache_spec specs[] = {{2, 1, 32, 128, 128, 2}, {1, 1, 32, 64, 64, 2},
                                {4, 16, 64, 128, 128, 1}, {16, 2, 32, 128, 64, 4},
                                {1, 4, 32, 32, 32, 2},   {2, 2, 128, 256, 128, 2},
                                {1, 16, 32, 64, 80, 2},  {4, 1, 32, 128, 96, 2}};
    const int chunks[][2] = {{0, 50}, {37, 200}, {130, 1}, {64, 64}, {250, 300}, {31, 2}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0xde5e1u;
    for (size_t c = 0; c < sizeof specs / sizeof specs[0]; c++)
        for (size_t j = 0; j < sizeof chunks / sizeof chunks[0]; j++)
            cr_expect(dense_commit_check(&specs[c], chunks[j][0], chunks[j][1], &seed, s),
                      "dense/commit spec %zu len %d + %d", c, chunks[j][0], chunks[j][1]);
    cudaStreamDestroy(s);
}

/* kvq_round_f16_cuda and f32_to_f16_cuda: bit-identical to the host roundings, over normal,
 * subnormal, overflowing and tie values. */
Test(kvquant_round, matches_twin) {
    REQUIRE_GPU();
    const size_t n = 1 << 16;
    float *x = xmalloc(n * 4), *want = xmalloc(n * 4), *got = xmalloc(n * 4);
    uint16_t *h16 = xmalloc(n * 2), *g16 = xmalloc(n * 2);
    uint32_t seed = 0x7e57u;
    for (size_t i = 0; i < n; i++) {
        const float e = rng_uniform(&seed, -30.0f, 18.0f); /* 2^-30 .. 2^18: past both ends */
        x[i] = (rng_next(&seed) & 1 ? -1.0f : 1.0f) * exp2f(e);
        if (i % 7 == 0) x[i] = ((float)(rng_next(&seed) % 4096) + 0.5f) / 1024.0f; /* ties */
    }
    memcpy(want, x, n * 4);
    kvq_round_f16(want, n);
    for (size_t i = 0; i < n; i++) h16[i] = akv_f32_to_f16(x[i]);
    cudaStream_t s = new_stream();
    float *d = dev_upload(x, n * 4, s);
    uint16_t *d16 = dev_poisoned(n * 2, s);
    CUDA_CHECK_EXIT(f32_to_f16_cuda(d16, d, n, s));
    CUDA_CHECK_EXIT(kvq_round_f16_cuda(d, n, s));
    dev_download(got, d, n * 4, s);
    dev_download(g16, d16, n * 2, s);
    size_t bad = 0, bad16 = 0;
    for (size_t i = 0; i < n; i++) {
        bad += memcmp(&got[i], &want[i], 4) != 0;
        bad16 += g16[i] != h16[i];
    }
    cr_expect_eq(bad, 0, "%zu of %zu rounded values differ", bad, n);
    cr_expect_eq(bad16, 0, "%zu of %zu fp16 conversions differ", bad16, n);
    cudaFree(d), cudaFree(d16);
    cudaStreamDestroy(s);
    free(x), free(want), free(got), free(h16), free(g16);
}
