/* test_ops.c — unit tests of the scalar reference kernels (kernels/<op>_ref.c) and of the
 * half-precision conversions in common.h, on hand-computed cases and seeded random data.
 * Run: cmake --build build --target test_ops && ./build/tests/test_ops */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"

/* Asserts |got - want| <= tol, naming the value that failed. */
static void expect_near(double got, double want, double tol, const char *what) {
    cr_assert(fabs(got - want) <= tol, "%s: got %.9g, want %.9g (tol %.3g)", what, got, want, tol);
}

static void expect_row(const float *got, const double *want, int n, double tol, const char *what) {
    for (int i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol, "%s[%d]: got %.9g, want %.9g (tol %.3g)", what,
                  i, got[i], want[i], tol);
}

#define TWO_PI 6.283185307179586476925 /* 2 * math.pi, without relying on M_PI */

/* Deterministic uniform floats in [-1, 1) (xorshift32), so failures reproduce. */
static void fill_random(float *x, size_t n, uint32_t *state) {
    for (size_t i = 0; i < n; i++) {
        uint32_t s = *state;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        *state = s;
        x[i] = (float)((s >> 8) * (1.0 / 8388608.0) - 1.0);
    }
}

/* ---- embedding, add, swiglu, argmax ---- */

Test(embedding, copies_rows_by_id) {
    const float table[3 * 2] = {1, 2, 3, 4, 5, 6};
    const int32_t ids[3] = {2, 0, 2};
    float out[3 * 2];
    embedding_ref(out, table, ids, 3, 2);
    const float want[6] = {5, 6, 1, 2, 5, 6};
    cr_assert(memcmp(out, want, sizeof want) == 0);
}

Test(add, residual) {
    float x[3] = {1.0f, 2.0f, 3.0f};
    const float y[3] = {0.5f, -2.0f, 10.0f};
    add_ref(x, y, 3);
    cr_assert_eq(x[0], 1.5f);
    cr_assert_eq(x[1], 0.0f);
    cr_assert_eq(x[2], 13.0f);
}

Test(swiglu, known_values) {
    float gate[3] = {0.0f, 1.0f, -2.0f};
    const float up[3] = {3.0f, 2.0f, 1.0f};
    float out[3];
    swiglu_ref(out, gate, up, 3);
    /* silu(0) = 0; silu(1) = 1 / (1 + e^-1) = 0.7310585786; silu(-2) = -2 / (1 + e^2). */
    const double want[3] = {0.0, 2 * 0.7310585786300049, -2.0 / (1.0 + 7.38905609893065)};
    expect_row(out, want, 3, 1e-6, "swiglu");
    swiglu_ref(gate, gate, up, 3); /* out may alias gate */
    expect_row(gate, want, 3, 1e-6, "swiglu aliased");
}

Test(argmax, first_index_on_ties) {
    const float a[4] = {1, 3, 2, 3};
    const float same[3] = {7, 7, 7};
    const float neg[3] = {-5, -2, -2};
    const float one[1] = {-1};
    cr_assert_eq(argmax_ref(a, 4), 1);
    cr_assert_eq(argmax_ref(same, 3), 0);
    cr_assert_eq(argmax_ref(neg, 3), 1);
    cr_assert_eq(argmax_ref(one, 1), 0);
}

/* ---- rmsnorm ---- */

Test(rmsnorm, hand_computed) {
    /* Row 0: x = [1,2,3,4]; mean(x^2) = 30/4 = 7.5; r = 1/sqrt(7.5 + 1e-5).
     * Row 1: x = [2,2,2,2]; mean = 4; r = 1/sqrt(4 + 1e-5). */
    const float x[8] = {1, 2, 3, 4, 2, 2, 2, 2};
    const float w[4] = {1.0f, 0.5f, 2.0f, -1.0f};
    float out[8];
    rmsnorm_ref(out, x, w, 2, 4, 1e-5f);
    double r0 = 1.0 / sqrt(7.5 + 1e-5), r1 = 1.0 / sqrt(4.0 + 1e-5);
    const double want[8] = {r0, 2 * r0 * 0.5, 3 * r0 * 2, -4 * r0,
                            2 * r1, 2 * r1 * 0.5, 2 * r1 * 2, -2 * r1};
    expect_row(out, want, 8, 1e-6, "rmsnorm");
    expect_near(want[0], 0.3651481, 1e-6, "r0 by hand"); /* 1/sqrt(7.5) = 0.36514837 */
}

Test(rmsnorm, in_place) {
    float x[4] = {1, 2, 3, 4};
    const float w[4] = {1, 1, 1, 1};
    float ref[4];
    rmsnorm_ref(ref, x, w, 1, 4, 0.0f);
    rmsnorm_ref(x, x, w, 1, 4, 0.0f);
    cr_assert(memcmp(x, ref, sizeof ref) == 0);
    expect_near(x[3], 4.0 / sqrt(7.5), 1e-6, "rmsnorm eps=0");
}

/* ---- matmul ---- */

Test(matmul, two_by_three_times_three_by_two) {
    const float x[2 * 3] = {1, 2, 3, 4, 5, 6};
    const float w[2 * 3] = {1, 0, -1, 2, 1, 0}; /* [m=2][k=3] */
    const float bias[2] = {0.5f, -1.0f};
    float out[4];
    matmul_ref(out, x, w, NULL, 2, 3, 2);
    /* [1-3, 2+2; 4-6, 8+5] */
    cr_assert_eq(out[0], -2.0f);
    cr_assert_eq(out[1], 4.0f);
    cr_assert_eq(out[2], -2.0f);
    cr_assert_eq(out[3], 13.0f);
    matmul_ref(out, x, w, bias, 2, 3, 2);
    cr_assert_eq(out[0], -1.5f);
    cr_assert_eq(out[1], 3.0f);
    cr_assert_eq(out[2], -1.5f);
    cr_assert_eq(out[3], 12.0f);
}

/* One random case against a double triple loop: error relative to sum |x_j w_j|. */
static void check_matmul_random(int n, int k, int m, uint32_t seed) {
    float *x = malloc(sizeof(float) * n * k), *w = malloc(sizeof(float) * m * k);
    float *b = malloc(sizeof(float) * m), *out = malloc(sizeof(float) * n * m);
    float *row = malloc(sizeof(float) * m);
    cr_assert(x && w && b && out && row);
    fill_random(x, (size_t)n * k, &seed);
    fill_random(w, (size_t)m * k, &seed);
    fill_random(b, (size_t)m, &seed);
    matmul_ref(out, x, w, b, n, k, m);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
            double s = b[j], mag = fabs(b[j]);
            for (int t = 0; t < k; t++) {
                s += (double)x[i * k + t] * w[j * k + t];
                mag += fabs((double)x[i * k + t] * w[j * k + t]);
            }
            cr_assert(fabs(out[i * m + j] - s) <= 1e-5 * mag + 1e-30,
                      "n=%d k=%d m=%d out[%d][%d] = %.9g, want %.9g", n, k, m, i, j,
                      out[i * m + j], s);
        }
        /* Deterministic and independent of n: the same row alone gives identical bits. */
        matmul_ref(row, x + (size_t)i * k, w, b, 1, k, m);
        cr_assert(memcmp(row, out + (size_t)i * m, sizeof(float) * m) == 0, "row %d differs", i);
        /* ... and so does each output alone (w rows grouped by four or not). */
        for (int j = 0; j < m; j++) {
            float one;
            matmul_ref(&one, x + (size_t)i * k, w + (size_t)j * k, b + j, 1, k, 1);
            cr_assert(memcmp(&one, &out[i * m + j], sizeof one) == 0, "out[%d][%d] alone", i, j);
        }
    }
    free(x);
    free(w);
    free(b);
    free(out);
    free(row);
}

Test(matmul, random_vs_double) {
    check_matmul_random(7, 133, 37, 1u);  /* k, m not multiples of 4 */
    check_matmul_random(5, 256, 70, 2u);  /* crosses the w block size */
    check_matmul_random(1, 1, 1, 3u);
    check_matmul_random(3, 3, 5, 4u);
}

/* ---- rope ---- */

Test(rope, default_inv_freq) {
    rope_params p = {.kind = ROPE_DEFAULT, .theta = 10000.0};
    float f[4];
    rope_inv_freq_ref(f, 8, &p);
    /* 10000^-(2i/8) = 1, 0.1, 0.01, 0.001 */
    const double want[4] = {1.0, 0.1, 0.01, 0.001};
    for (int i = 0; i < 4; i++) expect_near(f[i], want[i], want[i] * 1e-6, "inv_freq");
}

/* The llama3 formula of transformers, in double, for the test's expected values. */
static double llama3_expected(double f, const rope_params *p) {
    double lo_wl = p->original_max_pos / p->low_freq_factor;
    double hi_wl = p->original_max_pos / p->high_freq_factor;
    double wl = TWO_PI / f;
    if (wl > lo_wl) return f / p->factor;
    if (wl < hi_wl) return f;
    double smooth = (p->original_max_pos / wl - p->low_freq_factor) /
                    (p->high_freq_factor - p->low_freq_factor);
    return (1 - smooth) * f / p->factor + smooth * f;
}

Test(rope, llama3_inv_freq_small) {
    /* head_dim 8, theta 1e4: wavelengths 2*pi*{1,10,100,1000}; with old context 1024 and
     * factors 1 / 4 the bands are [<256 keep], [256..1024 smooth], [>1024 divide by 8], so
     * i = 0,1 keep, i = 2 is smoothed, i = 3 is divided. */
    rope_params p = {ROPE_LLAMA3, 10000.0, 8.0, 1.0, 4.0, 1024};
    float f[4];
    rope_inv_freq_ref(f, 8, &p);
    double smooth = (1024.0 / (TWO_PI * 100) - 1.0) / 3.0; /* 0.2099... */
    const double want[4] = {1.0, 0.1, (1 - smooth) * 0.01 / 8 + smooth * 0.01, 0.001 / 8};
    for (int i = 0; i < 4; i++) {
        expect_near(f[i], want[i], want[i] * 1e-6, "llama3 inv_freq");
        expect_near(want[i], llama3_expected(pow(1e4, -i / 4.0), &p), want[i] * 1e-12, "formula");
    }
    expect_near(smooth, 0.20992, 1e-5, "smooth by hand");
}

Test(rope, llama3_inv_freq_llama31_config) {
    rope_params p = {ROPE_LLAMA3, 500000.0, 8.0, 1.0, 4.0, 8192}; /* Llama 3.1 8B */
    float f[64];
    rope_inv_freq_ref(f, 128, &p);
    for (int i = 0; i < 64; i++) {
        double want = llama3_expected(pow(500000.0, -2.0 * i / 128), &p);
        cr_assert(fabs(f[i] - want) <= want * 2e-6, "i=%d got %.9g want %.9g", i, f[i], want);
    }
}

Test(rope, position_zero_is_identity) {
    rope_params p = {.kind = ROPE_DEFAULT, .theta = 500000.0};
    float f[8], x[2 * 16], orig[2 * 16];
    uint32_t seed = 7u;
    rope_inv_freq_ref(f, 16, &p);
    fill_random(x, 32, &seed);
    memcpy(orig, x, sizeof x);
    const int32_t pos[1] = {0};
    rope_ref(x, pos, 1, 2, 16, f);
    cr_assert(memcmp(x, orig, sizeof x) == 0);
}

Test(rope, known_rotation) {
    /* head_dim 4, theta 1e4: inv_freq = [1, 0.01]. Pairs (0,2) and (1,3).
     * Row 0 at pos 3 (two heads), row 1 at pos 1 (two heads). */
    const float f[2] = {1.0f, 0.01f};
    float x[2 * 2 * 4] = {1, 2, 3, 4, -1, 0.5f, 2, 0, 1, 2, 3, 4, 0, 0, 1, 1};
    const int32_t pos[2] = {3, 1};
    rope_ref(x, pos, 2, 2, 4, f);
    double want[16];
    const float src[16] = {1, 2, 3, 4, -1, 0.5f, 2, 0, 1, 2, 3, 4, 0, 0, 1, 1};
    for (int r = 0; r < 2; r++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 2; i++) {
                int b = r * 8 + h * 4;
                double a = pos[r] * (i == 0 ? 1.0 : 0.01);
                double x0 = src[b + i], x1 = src[b + i + 2];
                want[b + i] = x0 * cos(a) - x1 * sin(a);
                want[b + i + 2] = x1 * cos(a) + x0 * sin(a);
            }
    expect_row(x, want, 16, 2e-6, "rope");
    /* By hand: pos 3, channel 0: 1*cos3 - 3*sin3 = -0.989992 - 0.423360 = -1.413352. */
    expect_near(x[0], -1.4133525, 1e-5, "rope by hand");
}

Test(rope, default_inv_freq_exact_small) {
    rope_params p = {.kind = ROPE_DEFAULT, .theta = 10000.0};
    float f[2];
    rope_inv_freq_ref(f, 4, &p);
    cr_assert_eq(f[0], 1.0f);
    cr_assert_eq(f[1], 0.01f); /* 1 / 10000^(2/4) = 1/100 in fp32 */
}

/* ---- attention ---- */

Test(attention, one_key_returns_value) {
    /* 2 heads sharing 1 kv head, head_dim 4, a single cached position. */
    const float q[8] = {1, -2, 3, 0.5f, 4, 4, -1, 2};
    const float k[4] = {0.3f, 0.1f, -2, 1};
    const float v[4] = {1.5f, -2.5f, 3, 7};
    float out[8], scratch[1];
    attention_ref(out, q, k, v, 1, 0, 2, 1, 4, 0.5f, scratch);
    for (int h = 0; h < 2; h++)
        for (int d = 0; d < 4; d++) cr_assert_eq(out[h * 4 + d], v[d]);
}

Test(attention, two_keys_hand_softmax) {
    /* Decode at pos 1: q = [1,0], k0 = [1,0], k1 = [0,1], scale 1 -> scores [1, 0];
     * p0 = e/(e+1) = 0.7310585786, p1 = 0.2689414214. v0 = [1,2], v1 = [3,-1]. */
    const float q[2] = {1, 0};
    const float k[4] = {1, 0, 0, 1};
    const float v[4] = {1, 2, 3, -1};
    float out[2], scratch[2];
    attention_ref(out, q, k, v, 1, 1, 1, 1, 2, 1.0f, scratch);
    double p0 = 0.7310585786300049, p1 = 0.2689414213699951;
    const double want[2] = {p0 * 1 + p1 * 3, p0 * 2 - p1}; /* 1.5378828, 1.1931757 */
    expect_row(out, want, 2, 1e-6, "attention");
    expect_near(want[0], 1.5378828, 1e-6, "by hand");
}

Test(attention, gqa_head_mapping) {
    /* 4 heads, 2 kv heads: heads 0,1 -> kv 0, heads 2,3 -> kv 1. Two cached positions.
     * kv 0 makes key 0 win (score 20 vs 0), kv 1 makes key 1 win; values differ too. */
    float q[4 * 2];
    for (int h = 0; h < 4; h++) {
        q[h * 2] = 1;
        q[h * 2 + 1] = 0;
    }
    const float k[2 * 2 * 2] = {20, 0, 0, 0, /* pos 0: kv0, kv1 */ 0, 0, 20, 0 /* pos 1 */};
    const float v[2 * 2 * 2] = {1, 2, 10, 20, /* pos 0 */ 3, 4, 30, 40 /* pos 1 */};
    float out[8], scratch[2];
    attention_ref(out, q, k, v, 1, 1, 4, 2, 2, 1.0f, scratch);
    double e = exp(-20.0); /* weight of the losing key, relative */
    double a = 1 / (1 + e), b = e / (1 + e);
    const double want[8] = {a * 1 + b * 3, a * 2 + b * 4, a * 1 + b * 3, a * 2 + b * 4,
                            b * 10 + a * 30, b * 20 + a * 40, b * 10 + a * 30, b * 20 + a * 40};
    expect_row(out, want, 8, 1e-5, "gqa");
}

Test(attention, causal_prefill_masks_future) {
    /* 3-token prefill, 1 head, head_dim 2, q = [1,0] everywhere. Keys 1 and 2 are huge, so
     * any leak into query 0 would dominate it: query 0 must return v0 exactly, query 1 (keys
     * 0,1) gives v1, query 2 splits evenly between the equal keys 1 and 2. */
    const float q[3 * 2] = {1, 0, 1, 0, 1, 0};
    const float k[3 * 2] = {0, 0, 1000, 0, 1000, 0};
    const float v[3 * 2] = {1, 2, 100, 200, 300, 400};
    float out[6], scratch[3];
    attention_ref(out, q, k, v, 3, 0, 1, 1, 2, 1.0f, scratch);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], 2.0f);
    const double want[4] = {100, 200, 200, 300};
    expect_row(out + 2, want, 4, 1e-3, "causal");
}

Test(attention, chunked_prefill_matches_full) {
    /* Queries 1..2 run as a chunk with pos0 = 1 equal rows 1..2 of the full prefill. */
    enum { T = 3, H = 4, KV = 2, D = 8 };
    float q[T * H * D], k[T * KV * D], v[T * KV * D], full[T * H * D], part[2 * H * D], sc[T];
    uint32_t seed = 11u;
    fill_random(q, sizeof q / sizeof q[0], &seed);
    fill_random(k, sizeof k / sizeof k[0], &seed);
    fill_random(v, sizeof v / sizeof v[0], &seed);
    float scale = 1.0f / sqrtf((float)D);
    attention_ref(full, q, k, v, T, 0, H, KV, D, scale, sc);
    attention_ref(part, q + H * D, k, v, 2, 1, H, KV, D, scale, sc);
    cr_assert(memcmp(part, full + H * D, sizeof part) == 0);
}

/* ---- half precision (common.h) ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(half, bf16_round_trip_and_ties) {
    const float exact[5] = {1.0f, -3.0f, 0.15625f, 65536.0f, -0.0f};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(f32_bits(akv_bf16_to_f32(akv_f32_to_bf16(exact[i]))), f32_bits(exact[i]));
    cr_assert_eq(akv_f32_to_bf16(bits_f32(0x3f808000u)), 0x3f80); /* tie, even stays */
    cr_assert_eq(akv_f32_to_bf16(bits_f32(0x3f818000u)), 0x3f82); /* tie, odd rounds up */
    cr_assert_eq(akv_f32_to_bf16(bits_f32(0x3f808001u)), 0x3f81); /* above half */
    cr_assert_eq(akv_f32_to_bf16(bits_f32(0x3f807fffu)), 0x3f80); /* below half */
    cr_assert(isnan(akv_bf16_to_f32(akv_f32_to_bf16(NAN))));
}

Test(half, f16_values) {
    const float exact[5] = {1.0f, -2.5f, 0.15625f, 65504.0f, -0.0f};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(f32_bits(akv_f16_to_f32(akv_f32_to_f16(exact[i]))), f32_bits(exact[i]));
    cr_assert_eq(akv_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(akv_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(akv_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(akv_f32_to_f16(65520.0f), 0x7c00); /* tie to even = 65536, overflows to inf */
    cr_assert_eq(akv_f32_to_f16(-65520.0f), 0xfc00);
    cr_assert(isinf(akv_f16_to_f32(0x7c00)));
    cr_assert_eq(akv_f32_to_f16(1e-8f), 0x0000); /* below half of the smallest subnormal */
    cr_assert_eq(akv_f32_to_f16(-1e-8f), 0x8000);
    cr_assert(isnan(akv_f16_to_f32(akv_f32_to_f16(NAN))));
}

Test(half, f16_subnormals) {
    const double tiny = ldexp(1.0, -24); /* smallest f16 subnormal */
    cr_assert_eq(akv_f16_to_f32(0x0001), (float)tiny);
    cr_assert_eq(akv_f16_to_f32(0x03ff), (float)(1023 * tiny));
    cr_assert_eq(akv_f16_to_f32(0x8200), (float)(-512 * tiny));
    const uint16_t sub[4] = {0x0001, 0x03ff, 0x8200, 0x0155};
    for (int i = 0; i < 4; i++) cr_assert_eq(akv_f32_to_f16(akv_f16_to_f32(sub[i])), sub[i]);
    cr_assert_eq(akv_f32_to_f16((float)(0.5 * tiny)), 0x0000); /* tie to even 0 */
    cr_assert_eq(akv_f32_to_f16((float)(1.5 * tiny)), 0x0002); /* tie to even 2 */
    cr_assert_eq(akv_f32_to_f16((float)(2.5 * tiny)), 0x0002);
    cr_assert_eq(akv_f32_to_f16((float)(0.75 * tiny)), 0x0001);
}
