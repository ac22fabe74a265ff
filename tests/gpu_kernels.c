/* gpu_kernels.c — every CUDA kernel of the full-precision path (kernels/<op>.cu, declared in
 * kernels_cuda.h) against its scalar twin (kernels.h) on seeded random data, never zeros. Outputs
 * are poisoned with NaN (0xff bytes) before each run, so an element the kernel did not write
 * fails; tolerances are written next to each test; the first mismatches are printed.
 * Without a usable CUDA device every test is skipped.
 * Run on the GPU machine:  ./build-gpu/tests/gpu_kernels [--filter attention_decode/matches_twin]
 * ASYMKV_GPU_QUICK=1 skips the long-context cases (scripts/gpu-check.sh sets it under
 * compute-sanitizer). */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cuda_check.h"
#include "kernels.h"
#include "kernels_cuda.h"
#include "gpu_util.h"

/* ---- data (device helpers and the generator: gpu_util.h) ---- */

static void fill(float *x, size_t n, float lo, float hi, uint32_t *s) {
    for (size_t i = 0; i < n; i++)
        x[i] = rng_uniform(s, lo, hi);
}

/* Random fp16 values in [-1, 1): bits for the device, the same values as fp32 for the twin. */
static void fill_f16(uint16_t *bits, float *f32, size_t n, uint32_t *s) {
    for (size_t i = 0; i < n; i++) {
        bits[i] = akv_f32_to_f16(rng_uniform(s, -1.0f, 1.0f));
        if (f32) f32[i] = akv_f16_to_f32(bits[i]);
    }
}

/* ---- comparison ---- */

/* Counts elements failing |got - want| <= tol (tol[i] if tol is given, else atol + rtol*|want|);
 * NaN and inf always fail. Prints the first 8 failures and the largest error. */
static size_t compare(const char *what, const float *got, const float *want, const float *tol,
                      size_t n, double atol, double rtol) {
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - (double)want[i]);
        const double t = tol ? (double)tol[i] : atol + rtol * fabs((double)want[i]);
        if (isfinite(d) && d > worst) worst = d;
        if (!(d <= t)) {
            if (bad < 8)
                fprintf(stderr, "  %s[%zu]: got %.9g, want %.9g (|diff| %.3g > tol %.3g)\n", what,
                        i, got[i], want[i], d, t);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu elements off, max |diff| %.3g\n", what, bad, n, worst);
    return bad;
}

/* ||got - want|| / ||want|| in double. */
static double rel_l2(const float *got, const float *want, size_t n) {
    double e = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - want[i];
        e += d * d;
        r += (double)want[i] * want[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static double max_abs_diff(const float *got, const float *want, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

/* Every element written (poison was NaN) and finite. */
static size_t count_unwritten(const char *what, const float *got, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(got[i])) {
            if (bad < 4)
                fprintf(stderr, "  %s[%zu] = %g: never written or not finite\n", what, i, got[i]);
            bad++;
        }
    return bad;
}

/* ---- elementwise and row kernels ---- */

Test(embedding, matches_twin) { /* exact: bf16 -> fp32 is lossless */
    REQUIRE_GPU();
    const struct {
        int vocab, dim, n;
    } cases[] = {{1000, 4096, 37}, {32000, 67, 5}, {50, 8, 1}, {7, 3, 130}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x1234567u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int V = cases[c].vocab, D = cases[c].dim, n = cases[c].n;
        uint16_t *tb = xmalloc((size_t)V * D * 2);
        float *tf = xmalloc((size_t)V * D * 4), *got = xmalloc((size_t)n * D * 4),
              *want = xmalloc((size_t)n * D * 4);
        int32_t *ids = xmalloc((size_t)n * 4);
        for (size_t i = 0; i < (size_t)V * D; i++) {
            tb[i] = akv_f32_to_bf16(rng_uniform(&seed, -2.0f, 2.0f));
            tf[i] = akv_bf16_to_f32(tb[i]);
        }
        for (int i = 0; i < n; i++)
            ids[i] = (int32_t)(rng_next(&seed) % (uint32_t)V);
        ids[0] = V - 1;
        ids[n - 1] = 0;
        uint16_t *d_t = dev_upload(tb, (size_t)V * D * 2, s);
        int32_t *d_ids = dev_upload(ids, (size_t)n * 4, s);
        float *d_out = dev_poisoned((size_t)n * D * 4, s);
        CUDA_CHECK_EXIT(embedding_cuda(d_out, d_t, V, d_ids, n, D, s));
        dev_download(got, d_out, (size_t)n * D * 4, s);
        embedding_ref(want, tf, ids, n, D);
        cr_expect(compare("embedding", got, want, NULL, (size_t)n * D, 0, 0) == 0,
                  "embedding vocab=%d dim=%d n=%d differs", V, D, n);
        cudaFree(d_t), cudaFree(d_ids), cudaFree(d_out);
        free(tb), free(tf), free(got), free(want), free(ids);
    }
    cudaStreamDestroy(s);
}

Test(embedding, out_of_range_id_gives_nan) {
    REQUIRE_GPU();
    cudaStream_t s = new_stream();
    const uint16_t table[2 * 8] = {0x3f80, 0x4000, 0x3f80, 0x4000, 0x3f80, 0x4000, 0x3f80, 0x4000,
                                   0x3f80, 0x4000, 0x3f80, 0x4000, 0x3f80, 0x4000, 0x3f80, 0x4000};
    const int32_t ids[2] = {1, 2};
    float got[2 * 8];
    uint16_t *d_t = dev_upload(table, sizeof table, s);
    int32_t *d_ids = dev_upload(ids, sizeof ids, s);
    float *d_out = dev_poisoned(sizeof got, s);
    CUDA_CHECK_EXIT(embedding_cuda(d_out, d_t, 2, d_ids, 2, 8, s));
    dev_download(got, d_out, sizeof got, s);
    cr_expect_eq(got[0], 1.0f);
    cr_expect_eq(got[1], 2.0f);
    for (int j = 8; j < 16; j++)
        cr_expect(isnan(got[j]), "row of id 2 (vocab 2) must be NaN");
    cudaFree(d_t), cudaFree(d_ids), cudaFree(d_out);
    cudaStreamDestroy(s);
}

Test(rmsnorm, matches_twin) { /* fp32 tree sum vs the twin's double sum: 1e-5 relative */
    REQUIRE_GPU();
    const struct {
        int n, dim;
        float eps;
    } cases[] = {
        {1, 4096, 1e-5f}, {3, 5120, 1e-6f}, {33, 67, 1e-5f}, {2, 1, 1e-6f}, {5, 8192, 1e-5f}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0xabcdef1u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int n = cases[c].n, D = cases[c].dim;
        const size_t N = (size_t)n * D;
        float *x = xmalloc(N * 4), *w = xmalloc((size_t)D * 4), *got = xmalloc(N * 4),
              *want = xmalloc(N * 4);
        fill(x, N, -2.0f, 2.0f, &seed);
        fill(w, D, -1.5f, 1.5f, &seed);
        float *d_x = dev_upload(x, N * 4, s), *d_w = dev_upload(w, (size_t)D * 4, s);
        float *d_out = dev_poisoned(N * 4, s);
        rmsnorm_ref(want, x, w, n, D, cases[c].eps);
        CUDA_CHECK_EXIT(rmsnorm_cuda(d_out, d_x, d_w, n, D, cases[c].eps, s));
        dev_download(got, d_out, N * 4, s);
        cr_expect(compare("rmsnorm", got, want, NULL, N, 1e-6, 1e-5) == 0, "rmsnorm n=%d dim=%d", n,
                  D);
        CUDA_CHECK_EXIT(rmsnorm_cuda(d_x, d_x, d_w, n, D, cases[c].eps, s)); /* in place */
        dev_download(got, d_x, N * 4, s);
        cr_expect(compare("rmsnorm in place", got, want, NULL, N, 1e-6, 1e-5) == 0,
                  "rmsnorm in place n=%d dim=%d", n, D);
        cudaFree(d_x), cudaFree(d_w), cudaFree(d_out);
        free(x), free(w), free(got), free(want);
    }
    cudaStreamDestroy(s);
}

Test(rope, matches_twin) { /* same fp32 angle, cos/sin rounded from double: ~1 ulp */
    REQUIRE_GPU();
    const rope_params sched[] = {{ROPE_DEFAULT, 10000.0, 1, 1, 1, 0},
                                 {ROPE_DEFAULT, 500000.0, 1, 1, 1, 0},
                                 {ROPE_LLAMA3, 500000.0, 8.0, 1.0, 4.0, 8192}};
    const struct {
        int n, heads, hd;
    } cases[] = {{1, 32, 128}, {7, 8, 64}, {129, 4, 96}, {3, 2, 2}, {5, 3, 80}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x5eed01u;
    for (size_t k = 0; k < sizeof sched / sizeof sched[0]; k++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const int n = cases[c].n, H = cases[c].heads, hd = cases[c].hd;
            const size_t N = (size_t)n * H * hd;
            float *x = xmalloc(N * 4), *want = xmalloc(N * 4), *inv = xmalloc((size_t)hd / 2 * 4);
            int32_t *pos = xmalloc((size_t)n * 4);
            fill(x, N, -1.0f, 1.0f, &seed);
            for (int i = 0; i < n; i++)
                pos[i] = (int32_t)(rng_next(&seed) % 131072u);
            pos[0] = n > 1 ? 131071 : 4097;
            if (n > 2) pos[n - 1] = 0;
            rope_inv_freq_ref(inv, hd, &sched[k]);
            float *d_x = dev_upload(x, N * 4, s), *d_inv = dev_upload(inv, (size_t)hd / 2 * 4, s);
            int32_t *d_pos = dev_upload(pos, (size_t)n * 4, s);
            memcpy(want, x, N * 4);
            rope_ref(want, pos, n, H, hd, inv);
            CUDA_CHECK_EXIT(rope_cuda(d_x, d_pos, n, H, hd, d_inv, s));
            dev_download(x, d_x, N * 4, s);
            cr_expect(compare("rope", x, want, NULL, N, 1e-6, 2e-6) == 0,
                      "rope schedule %zu n=%d heads=%d head_dim=%d", k, n, H, hd);
            cudaFree(d_x), cudaFree(d_inv), cudaFree(d_pos);
            free(x), free(want), free(inv), free(pos);
        }
    cudaStreamDestroy(s);
}

Test(swiglu, matches_twin) { /* expf within 2 ulp on the GPU: 4e-6 relative */
    REQUIRE_GPU();
    const size_t sizes[] = {1, 4097, 1000003};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x77u;
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        const size_t n = sizes[c];
        float *g = xmalloc((n + 1) * 4), *u = xmalloc((n + 1) * 4), *got = xmalloc(n * 4),
              *want = xmalloc(n * 4);
        fill(g, n + 1, -20.0f, 20.0f, &seed);
        fill(u, n + 1, -2.0f, 2.0f, &seed);
        swiglu_ref(want, g + 1, u + 1, n);
        float *d_g = dev_upload(g, (n + 1) * 4, s), *d_u = dev_upload(u, (n + 1) * 4, s);
        float *d_out = dev_poisoned((n + 1) * 4, s);
        /* offset by one float: the unaligned scalar path */
        CUDA_CHECK_EXIT(swiglu_cuda(d_out + 1, d_g + 1, d_u + 1, n, s));
        dev_download(got, d_out + 1, n * 4, s);
        cr_expect(compare("swiglu", got, want, NULL, n, 1e-7, 4e-6) == 0,
                  "swiglu n=%zu (unaligned)", n);
        /* aligned, in place (out aliases gate) */
        swiglu_ref(want, g, u, n);
        CUDA_CHECK_EXIT(swiglu_cuda(d_g, d_g, d_u, n, s));
        dev_download(got, d_g, n * 4, s);
        cr_expect(compare("swiglu in place", got, want, NULL, n, 1e-7, 4e-6) == 0, "swiglu n=%zu",
                  n);
        cudaFree(d_g), cudaFree(d_u), cudaFree(d_out);
        free(g), free(u), free(got), free(want);
    }
    cudaStreamDestroy(s);
}

Test(add, matches_twin) { /* exact */
    REQUIRE_GPU();
    const size_t sizes[] = {1, 5, 4096 * 37, 1000001};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x99u;
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        const size_t n = sizes[c];
        float *x = xmalloc((n + 1) * 4), *y = xmalloc((n + 1) * 4), *got = xmalloc((n + 1) * 4);
        fill(x, n + 1, -3.0f, 3.0f, &seed);
        fill(y, n + 1, -3.0f, 3.0f, &seed);
        for (int off = 0; off < 2; off++) { /* aligned, then one float off */
            float *d_x = dev_upload(x, (n + 1) * 4, s), *d_y = dev_upload(y, (n + 1) * 4, s);
            CUDA_CHECK_EXIT(add_cuda(d_x + off, d_y + off, n, s));
            dev_download(got, d_x + off, n * 4, s);
            float *want = xmalloc(n * 4);
            memcpy(want, x + off, n * 4);
            add_ref(want, y + off, n);
            cr_expect(compare("add", got, want, NULL, n, 0, 0) == 0, "add n=%zu offset %d", n, off);
            free(want);
            cudaFree(d_x), cudaFree(d_y);
        }
        free(x), free(y), free(got);
    }
    cudaStreamDestroy(s);
}

Test(argmax, matches_twin) { /* exact index, first one on ties */
    REQUIRE_GPU();
    const struct { int rows, n; } cases[] = {{1, 1}, {4, 33}, {3, 32000}, {2, 128256}, {2, 151937}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x4242u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int R = cases[c].rows, n = cases[c].n;
        float *x = xmalloc((size_t)R * n * 4);
        int32_t *got = xmalloc((size_t)R * 4);
        fill(x, (size_t)R * n, -10.0f, 10.0f, &seed);
        for (int r = 0; r < R; r++) {
            float *row = x + (size_t)r * n;
            if (r % 3 == 0 && n > 1) { /* a tie for the maximum: the first index must win */
                int a = (int)(rng_next(&seed) % (uint32_t)n),
                    b = (int)(rng_next(&seed) % (uint32_t)n);
                row[a] = row[b] = 20.0f;
            } else if (r % 3 == 1) {
                row[n - 1] = 30.0f; /* maximum at the very end */
            } else {
                for (int j = 0; j < n; j++)
                    row[j] = 7.0f; /* all equal: index 0 */
            }
        }
        float *d_x = dev_upload(x, (size_t)R * n * 4, s);
        int32_t *d_out = dev_poisoned((size_t)R * 4, s);
        CUDA_CHECK_EXIT(argmax_cuda(d_out, d_x, R, n, s));
        dev_download(got, d_out, (size_t)R * 4, s);
        for (int r = 0; r < R; r++) {
            int want = argmax_ref(x + (size_t)r * n, n);
            cr_expect_eq(got[r], want, "argmax rows=%d n=%d row %d: got %d, want %d", R, n, r,
                         got[r], want);
        }
        cudaFree(d_x), cudaFree(d_out);
        free(x), free(got);
    }
    cudaStreamDestroy(s);
}

/* ---- linear layer ---- */

/* Tolerance: x is rounded to bf16 (relative error <= 2^-8), so each output may differ from the
 * twin by up to 2^-8 * sum_j |x_j w_j|; we allow 0.0040 * that sum + 1e-5, and 4e-3 in norm. */
Test(matmul, matches_twin) {
    REQUIRE_GPU();
    const struct {
        int n, k, m, bias;
    } cases[] = {{1, 4096, 4096, 0},  {7, 64, 96, 1},      {33, 67, 129, 1},
                 {128, 512, 1000, 0}, {3, 4096, 14336, 0}, {17, 1000, 3, 1}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x31337u;
    akv_err err = {0};
    matmul_ctx *ctx = NULL;
    cr_assert(matmul_ctx_init(&ctx, (size_t)128 * 4096, &err) == AKV_OK, "%s", err.msg);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int n = cases[c].n, k = cases[c].k, m = cases[c].m;
        float *x = xmalloc((size_t)n * k * 4), *wf = xmalloc((size_t)m * k * 4),
              *bias = xmalloc((size_t)m * 4);
        float *got = xmalloc((size_t)n * m * 4), *want = xmalloc((size_t)n * m * 4),
              *tol = xmalloc((size_t)n * m * 4);
        uint16_t *wb = xmalloc((size_t)m * k * 2);
        fill(x, (size_t)n * k, -1.0f, 1.0f, &seed);
        fill(bias, m, -1.0f, 1.0f, &seed);
        for (size_t i = 0; i < (size_t)m * k; i++) {
            wb[i] = akv_f32_to_bf16(rng_uniform(&seed, -0.1f, 0.1f));
            wf[i] = akv_bf16_to_f32(wb[i]);
        }
        matmul_ref(want, x, wf, cases[c].bias ? bias : NULL, n, k, m);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) {
                double sum = 0.0;
                for (int t = 0; t < k; t++)
                    sum += fabs((double)x[(size_t)i * k + t] * wf[(size_t)j * k + t]);
                tol[(size_t)i * m + j] = (float)(0.0040 * sum + 1e-5);
            }
        float *d_x = dev_upload(x, (size_t)n * k * 4, s), *d_b = dev_upload(bias, (size_t)m * 4, s);
        uint16_t *d_w = dev_upload(wb, (size_t)m * k * 2, s);
        float *d_out = dev_poisoned((size_t)n * m * 4, s);
        cr_assert(matmul_cuda(ctx, d_out, d_x, d_w, cases[c].bias ? d_b : NULL, n, k, m, s, &err) ==
                      AKV_OK,
                  "%s", err.msg);
        dev_download(got, d_out, (size_t)n * m * 4, s);
        const double rl = rel_l2(got, want, (size_t)n * m);
        fprintf(stderr, "matmul n=%d k=%d m=%d bias=%d: rel_l2 %.2e, max |diff| %.2e\n", n, k, m,
                cases[c].bias, rl, max_abs_diff(got, want, (size_t)n * m));
        cr_expect(compare("matmul", got, want, tol, (size_t)n * m, 0, 0) == 0 && rl <= 4e-3,
                  "matmul n=%d k=%d m=%d bias=%d (rel_l2 %.2e)", n, k, m, cases[c].bias, rl);
        cudaFree(d_x), cudaFree(d_b), cudaFree(d_w), cudaFree(d_out);
        free(x), free(wf), free(bias), free(got), free(want), free(tol), free(wb);
    }
    matmul_ctx_free(ctx);
    cudaStreamDestroy(s);
}

/* ---- timing of the long cases: printed, never asserted ---- */

typedef cudaError_t (*launch_fn)(const void *args, cudaStream_t s);

/* Median of 9 timed runs after one warm-up, in ms (CUDA events on s). */
static double median_ms(launch_fn f, const void *args, cudaStream_t s) {
    cudaEvent_t e0, e1;
    float t[9];
    CUDA_CHECK_EXIT(cudaEventCreate(&e0));
    CUDA_CHECK_EXIT(cudaEventCreate(&e1));
    CUDA_CHECK_EXIT(f(args, s));
    for (int r = 0; r < 9; r++) {
        CUDA_CHECK_EXIT(cudaEventRecord(e0, s));
        CUDA_CHECK_EXIT(f(args, s));
        CUDA_CHECK_EXIT(cudaEventRecord(e1, s));
        CUDA_CHECK_EXIT(cudaEventSynchronize(e1));
        CUDA_CHECK_EXIT(cudaEventElapsedTime(&t[r], e0, e1));
    }
    for (int i = 1; i < 9; i++) /* insertion sort */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            float x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return t[4];
}

typedef struct prefill_args {
    float *out;
    const float *q;
    const uint16_t *k, *v;
    int n_q, pos0, heads, kv, hd;
} prefill_args;

static cudaError_t prefill_launch(const void *p, cudaStream_t s) {
    const prefill_args *a = p;
    return attention_prefill_cuda(a->out, a->q, a->k, a->v, a->n_q, a->pos0, a->heads, a->kv, a->hd,
                                  1.0f / sqrtf((float)a->hd), s);
}

static cudaError_t decode_launch(const void *p, cudaStream_t s) {
    return attention_decode_cuda(p, s);
}

/* ---- attention ----
 * Tolerance: Q and P enter the tensor cores as fp16 (relative rounding 2^-11), everything else
 * is fp32. With V in [-1, 1) and scores of standard deviation ~1 (q in [-3, 3), k in [-1, 1)),
 * every output may differ from attention_ref by 2e-3, and by 3e-3 in relative norm; with peaked
 * scores (q in [-12, 12), std ~4: the fp16 rounding of q moves a score by up to ~4e-3) 6e-3. */

typedef struct attn_tol {
    double atol, rel;
} attn_tol;

static const attn_tol TOL_NORMAL = {2e-3, 3e-3}, TOL_PEAKED = {6e-3, 6e-3};

/* Reference output of query i (position pos0 + i) only, through the twin with n_q = 1. */
static void attention_row_ref(float *out, const float *q, const float *kf, const float *vf, int i,
                              int pos0, int H, int KV, int D, float *scratch) {
    const size_t row = (size_t)H * D;
    attention_ref(out + i * row, q + i * row, kf, vf, 1, pos0 + i, H, KV, D, 1.0f / sqrtf((float)D),
                  scratch);
}

typedef struct prefill_case {
    int n_q, pos0, heads, kv, hd;
    float q_amp;
} prefill_case;

/* Runs one prefill case; returns 1 if it passed. Long cases check a sample of rows. */
static int prefill_check(const prefill_case *pc, attn_tol tol, int timed, uint32_t *seed,
                         cudaStream_t s) {
    const int n_q = pc->n_q, H = pc->heads, KV = pc->kv, D = pc->hd, T = pc->pos0 + pc->n_q;
    const size_t row = (size_t)H * D, qn = (size_t)n_q * row, kvn = (size_t)(T + 3) * KV * D;
    float *q = xmalloc(qn * 4), *got = xmalloc(qn * 4), *want = xmalloc(qn * 4);
    float *kf = xmalloc(kvn * 4), *vf = xmalloc(kvn * 4), *scratch = xmalloc((size_t)T * 4);
    uint16_t *kb = xmalloc(kvn * 2), *vb = xmalloc(kvn * 2);
    fill(q, qn, -pc->q_amp, pc->q_amp, seed);
    fill_f16(kb, kf, kvn, seed);
    fill_f16(vb, vf, kvn, seed);
    for (size_t i = (size_t)T * KV * D; i < kvn; i++)
        kb[i] = vb[i] = 0x7e00; /* NaN past the end */
    float *d_q = dev_upload(q, qn * 4, s), *d_out = dev_poisoned(qn * 4, s);
    uint16_t *d_k = dev_upload(kb, kvn * 2, s), *d_v = dev_upload(vb, kvn * 2, s);
    const prefill_args pa = {d_out, d_q, d_k, d_v, n_q, pc->pos0, H, KV, D};
    CUDA_CHECK_EXIT(prefill_launch(&pa, s));
    dev_download(got, d_out, qn * 4, s);
    size_t bad = count_unwritten("prefill out", got, qn), checked = 0;
    /* Rows checked: all of a short chunk; else the first and last 80, tile edges, every 37th. */
    float *g2 = xmalloc(qn * 4), *w2 = xmalloc(qn * 4);
    for (int i = 0; i < n_q; i++) {
        const int edge = i % 64 == 0 || i % 64 == 63 || i % 128 == 1;
        if (n_q > 512 && !(i < 80 || i >= n_q - 80 || edge || i % 37 == 0)) continue;
        attention_row_ref(want, q, kf, vf, i, pc->pos0, H, KV, D, scratch);
        memcpy(g2 + checked * row, got + i * row, row * 4);
        memcpy(w2 + checked * row, want + i * row, row * 4);
        checked++;
    }
    const double rl = rel_l2(g2, w2, checked * row), mx = max_abs_diff(g2, w2, checked * row);
    fprintf(stderr,
            "prefill n_q=%d pos0=%d heads=%d/%d hd=%d q_amp=%g: %zu rows, max |diff| %.2e, rel_l2 "
            "%.2e\n",
            n_q, pc->pos0, H, KV, D, pc->q_amp, checked, mx, rl);
    bad += compare("prefill", g2, w2, NULL, checked * row, tol.atol, 0);
    if (timed) {
        const double ms = median_ms(prefill_launch, &pa, s);
        const double pairs = (double)n_q * pc->pos0 + (double)n_q * (n_q + 1) / 2;
        fprintf(stderr, "  prefill time %.3f ms: %.1f TFLOP/s (4*hd*heads per query-key pair)\n",
                ms, 4.0 * D * H * pairs / ms / 1e9);
    }
    cudaFree(d_q), cudaFree(d_out), cudaFree(d_k), cudaFree(d_v);
    free(q), free(got), free(want), free(kf), free(vf), free(scratch), free(kb), free(vb), free(g2),
        free(w2);
    return bad == 0 && rl <= tol.rel;
}

Test(attention_prefill, matches_twin) {
    REQUIRE_GPU();
    const prefill_case cases[] = {
        {1, 0, 4, 4, 64, 3},    {37, 0, 8, 2, 128, 3},   {64, 0, 8, 1, 64, 3},
        {65, 0, 8, 8, 128, 3},  {100, 300, 8, 2, 64, 3}, {129, 64, 4, 4, 96, 3},
        {200, 33, 4, 1, 80, 3}, {255, 1, 2, 2, 128, 3},  {127, 0, 4, 4, 128, 3},
        {33, 31, 8, 8, 64, 3},  {1, 999, 8, 1, 128, 3},  {70, 0, 8, 2, 32, 3},
        {45, 20, 4, 4, 16, 3},  {130, 64, 8, 1, 32, 3}}; /* the fixtures' head_dims 16, 32 */
    cudaStream_t s = new_stream();
    uint32_t seed = 0xa77e1u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_expect(prefill_check(&cases[c], TOL_NORMAL, 0, &seed, s),
                  "prefill case %zu (n_q=%d pos0=%d) failed", c, cases[c].n_q, cases[c].pos0);
    const prefill_case peaked[] = {{130, 70, 8, 2, 128, 12}, {96, 0, 4, 1, 64, 12}};
    for (size_t c = 0; c < sizeof peaked / sizeof peaked[0]; c++)
        cr_expect(prefill_check(&peaked[c], TOL_PEAKED, 0, &seed, s),
                  "peaked prefill case %zu failed", c);
    cudaStreamDestroy(s);
}

Test(attention_prefill, long_context) {
    REQUIRE_GPU();
    if (quick_mode()) cr_skip_test("ASYMKV_GPU_QUICK set");
    const prefill_case cases[] = {{4096, 0, 8, 1, 128, 3}, {1000, 3000, 4, 4, 64, 3}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0xb16u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_expect(prefill_check(&cases[c], TOL_NORMAL, 1, &seed, s), "long prefill case %zu failed",
                  c);
    cudaStreamDestroy(s);
}

typedef struct decode_case {
    int n_batch, lens[6], heads, kv, hd;
    float q_amp;
} decode_case;

/* Runs one decode case over a cache of n_batch (+2 spare) slots used in reverse order, with NaN
 * at every position a sequence does not own; returns 1 if it passed. */
static int decode_check(const decode_case *dc, attn_tol tol, int timed, uint32_t *seed,
                        cudaStream_t s) {
    const int B = dc->n_batch, H = dc->heads, KV = dc->kv, D = dc->hd;
    int max_len = 1;
    for (int b = 0; b < B; b++)
        max_len = dc->lens[b] > max_len ? dc->lens[b] : max_len;
    const int spare = max_len > 10000 ? 0 : 2, n_slots = B + spare, ctx = max_len + 5;
    const size_t kvrow = (size_t)KV * D, stride = (size_t)ctx * kvrow, row = (size_t)H * D;
    uint16_t *kb = xmalloc(stride * n_slots * 2), *vb = xmalloc(stride * n_slots * 2);
    float *q = xmalloc(B * row * 4), *got = xmalloc(B * row * 4), *want = xmalloc(B * row * 4);
    float *kf = xmalloc((size_t)max_len * kvrow * 4), *vf = xmalloc((size_t)max_len * kvrow * 4);
    float *scratch = xmalloc((size_t)max_len * 4);
    int32_t slots[6], lens[6];
    for (size_t i = 0; i < stride * n_slots; i++)
        kb[i] = vb[i] = 0x7e00; /* NaN */
    fill(q, B * row, -dc->q_amp, dc->q_amp, seed);
    for (int b = 0; b < B; b++) {
        slots[b] = n_slots - 1 - b;
        lens[b] = dc->lens[b];
        const size_t n = (size_t)lens[b] * kvrow;
        fill_f16(kb + slots[b] * stride, kf, n, seed);
        fill_f16(vb + slots[b] * stride, vf, n, seed);
        attention_ref(want + b * row, q + b * row, kf, vf, 1, lens[b] - 1, H, KV, D,
                      1.0f / sqrtf((float)D), scratch);
    }
    const size_t ws = attention_decode_workspace_bytes(B, H, KV, D, max_len + 3);
    attention_decode_args a = {.out = dev_poisoned(B * row * 4, s),
                               .q = dev_upload(q, B * row * 4, s),
                               .k = dev_upload(kb, stride * n_slots * 2, s),
                               .v = dev_upload(vb, stride * n_slots * 2, s),
                               .seq_stride = stride,
                               .slots = dev_upload(slots, (size_t)B * 4, s),
                               .lens = dev_upload(lens, (size_t)B * 4, s),
                               .n_batch = B,
                               .max_len = max_len + 3,
                               .n_heads = H,
                               .n_kv_heads = KV,
                               .head_dim = D,
                               .scale = 1.0f / sqrtf((float)D),
                               .workspace = dev_poisoned(ws, s),
                               .workspace_bytes = ws};
    CUDA_CHECK_EXIT(attention_decode_cuda(&a, s));
    dev_download(got, a.out, B * row * 4, s);
    const double rl = rel_l2(got, want, B * row), mx = max_abs_diff(got, want, B * row);
    fprintf(stderr,
            "decode batch=%d max_len=%d heads=%d/%d hd=%d q_amp=%g: max |diff| %.2e, rel_l2 %.2e\n",
            B, max_len, H, KV, D, dc->q_amp, mx, rl);
    size_t bad = count_unwritten("decode out", got, B * row);
    bad += compare("decode", got, want, NULL, B * row, tol.atol, 0);
    if (timed) {
        double bytes = 0;
        for (int b = 0; b < B; b++)
            bytes += (double)lens[b] * kvrow * 2 * 2;
        const double ms = median_ms(decode_launch, &a, s);
        fprintf(stderr, "  decode time %.3f ms: %.0f GB/s of K/V read\n", ms, bytes / ms / 1e6);
    }
    cudaFree(a.out), cudaFree((void *)a.q), cudaFree((void *)a.k), cudaFree((void *)a.v);
    cudaFree((void *)a.slots), cudaFree((void *)a.lens), cudaFree(a.workspace);
    free(kb), free(vb), free(q), free(got), free(want), free(kf), free(vf), free(scratch);
    return bad == 0 && rl <= tol.rel;
}

Test(attention_decode, matches_twin) {
    REQUIRE_GPU();
    const decode_case cases[] = {
        {1, {1}, 4, 4, 64, 3},                                /* one key */
        {3, {1, 64, 129}, 8, 2, 128, 3},                      /* tile edges, GQA 4 */
        {4, {33, 128, 200, 257}, 32, 8, 128, 3},              /* Llama-3-8B heads */
        {5, {7, 1000, 64, 65, 511}, 8, 1, 64, 3},             /* MQA, GQA 8 */
        {2, {300, 77}, 32, 1, 96, 3},                         /* group of 32: two 16-head chunks */
        {3, {500, 1, 129}, 10, 2, 80, 3},                     /* group of 5 */
        {3, {1, 97, 300}, 8, 2, 32, 3},                       /* head_dim 32 (bundled model) */
        {2, {64, 33}, 4, 4, 16, 3},                           /* head_dim 16 (fixtures) */
        {6, {2048, 4097, 3, 128, 129, 1023}, 16, 16, 128, 3}, /* GQA 1 */
    };
    cudaStream_t s = new_stream();
    uint32_t seed = 0xdec0deu;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_expect(decode_check(&cases[c], TOL_NORMAL, 0, &seed, s), "decode case %zu failed", c);
    const decode_case peaked = {2, {700, 65}, 8, 2, 128, 12};
    cr_expect(decode_check(&peaked, TOL_PEAKED, 0, &seed, s), "peaked decode case failed");
    cudaStreamDestroy(s);
}

Test(attention_decode, long_context) {
    REQUIRE_GPU();
    if (quick_mode()) cr_skip_test("ASYMKV_GPU_QUICK set");
    const decode_case cases[] = {{2, {40000, 39999}, 32, 8, 128, 3}, {1, {40960}, 32, 4, 64, 3}};
    cudaStream_t s = new_stream();
    uint32_t seed = 0x10c0u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_expect(decode_check(&cases[c], TOL_NORMAL, 1, &seed, s), "long decode case %zu failed",
                  c);
    cudaStreamDestroy(s);
}

/* ---- contract checks ---- */

Test(preconditions, rejected_with_invalid_value) {
    REQUIRE_GPU();
    cudaStream_t s = new_stream();
    float *d = dev_poisoned(4096, s);
    cr_expect_eq(rope_cuda(d, (const int32_t *)d, 1, 1, 7, d, s), cudaErrorInvalidValue,
                 "odd head_dim");
    cr_expect_eq(attention_prefill_cuda(d, d, (const uint16_t *)d, (const uint16_t *)d, 1, 0, 6, 4,
                                        128, 1.0f, s),
                 cudaErrorInvalidValue, "n_heads not a multiple of n_kv_heads");
    cr_expect_eq(attention_prefill_cuda(d, d, (const uint16_t *)d, (const uint16_t *)d, 1, 0, 4, 4,
                                        256, 1.0f, s),
                 cudaErrorInvalidValue, "head_dim 256 unsupported");
    attention_decode_args a = {.out = d,
                               .q = d,
                               .k = (const uint16_t *)d,
                               .v = (const uint16_t *)d,
                               .lens = (const int32_t *)d,
                               .n_batch = 1,
                               .max_len = 4096,
                               .n_heads = 4,
                               .n_kv_heads = 4,
                               .head_dim = 64,
                               .scale = 1.0f,
                               .workspace = d,
                               .workspace_bytes = 16};
    cr_expect_eq(attention_decode_cuda(&a, s), cudaErrorInvalidValue, "workspace too small");
    CUDA_CHECK_EXIT(cudaStreamSynchronize(s));
    cudaFree(d);
    cudaStreamDestroy(s);
}

Test(attention_decode, bad_length_gives_nan) {
    REQUIRE_GPU();
    cudaStream_t s = new_stream();
    const int H = 4, D = 64, max_len = 100;
    const int32_t lens[2] = {0, 101};
    uint32_t seed = 5;
    float q[2 * 4 * 64], got[2 * 4 * 64];
    uint16_t kv[100 * 4 * 64];
    fill(q, sizeof q / 4, -1.0f, 1.0f, &seed);
    fill_f16(kv, NULL, sizeof kv / 2, &seed);
    const size_t ws = attention_decode_workspace_bytes(2, H, H, D, max_len);
    attention_decode_args a = {.out = dev_poisoned(sizeof got, s),
                               .q = dev_upload(q, sizeof q, s),
                               .k = dev_upload(kv, sizeof kv, s),
                               .seq_stride = 0,
                               .lens = dev_upload(lens, sizeof lens, s),
                               .n_batch = 2,
                               .max_len = max_len,
                               .n_heads = H,
                               .n_kv_heads = H,
                               .head_dim = D,
                               .scale = 0.125f,
                               .workspace = dev_poisoned(ws, s),
                               .workspace_bytes = ws};
    a.v = a.k;
    CUDA_CHECK_EXIT(cudaMemsetAsync(a.out, 0, sizeof got, s)); /* NaN must come from the kernel */
    CUDA_CHECK_EXIT(attention_decode_cuda(&a, s));
    dev_download(got, a.out, sizeof got, s);
    for (size_t i = 0; i < sizeof got / 4; i++)
        cr_expect(isnan(got[i]), "out[%zu] = %g, want NaN", i, got[i]);
    cudaFree(a.out), cudaFree((void *)a.q), cudaFree((void *)a.k), cudaFree((void *)a.lens),
        cudaFree(a.workspace);
    cudaStreamDestroy(s);
}
