/* test_kvquant.c — the AsymKV cache: bit layouts against hand-made cases, rounding and
 * constant groups, round-trip RMSE budgets (with outlier channels), fused attention on codes
 * == dequantize-then-attend for every width, KIVI flushing around multiples of G and R,
 * the --kv language, and the memory formula of design §4. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"
#include "kvcache.h"
#include "kvconfig.h"
#include "kvlayout.h"
#include "kvquant.h"

static double gauss(unsigned *s) {
    double u1 = (rand_r(s) + 1.0) / (RAND_MAX + 2.0), u2 = (rand_r(s) + 1.0) / (RAND_MAX + 2.0);
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A group quantized: codes, and the dequantized values through the fp16 scale / zero. */
typedef struct qgroup {
    uint8_t codes[128];
    uint16_t scale, zero;
} qgroup;

static qgroup quant(const float *x, size_t stride, int bits, int G) {
    qgroup q;
    kvq_quantize(x, stride, bits, G, q.codes, &q.scale, &q.zero);
    return q;
}

Test(kvquant, hand_made_codes) {
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i % 2);
    qgroup q = quant(x, 1, 1, 32);
    for (int i = 0; i < 32; i++) cr_expect_eq(q.codes[i], i % 2, "1-bit element %d", i);
    cr_expect_eq(q.scale, 0x3c00, "scale 1.0");
    cr_expect_eq(q.zero, 0x0000, "zero 0.0");
    for (int i = 0; i < 32; i++) x[i] = (float)(i % 4);
    q = quant(x, 1, 2, 32);
    for (int i = 0; i < 32; i++) cr_expect_eq(q.codes[i], i % 4);
    for (int i = 0; i < 32; i++) x[i] = (float)(i % 16) - 3.0f;
    q = quant(x, 1, 4, 32);
    for (int i = 0; i < 32; i++) cr_expect_eq(q.codes[i], i % 16);
    cr_expect_eq(q.zero, 0xc200, "zero -3.0");
    /* strided input: a key channel inside a [token][channel] matrix */
    float m[32 * 3];
    for (int t = 0; t < 32; t++) m[t * 3 + 1] = t < 16 ? -1.0f : 1.0f;
    q = quant(m + 1, 3, 1, 32);
    for (int t = 0; t < 32; t++) cr_expect_eq(q.codes[t], t >= 16);
}

Test(kvquant, round_half_to_even_and_constant_groups) {
    float x[32] = {0};
    x[1] = 2.0f;
    x[2] = 1.0f; /* exactly the 1-bit midpoint -> 0 */
    qgroup q = quant(x, 1, 1, 32);
    cr_expect_eq(q.codes[1], 1u);
    cr_expect_eq(q.codes[2], 0u);
    x[1] = 3.0f;
    x[2] = 1.5f; /* 2-bit u = 1.5 -> 2 */
    x[3] = 2.5f; /* u = 2.5 -> 2 */
    x[4] = 0.5f; /* u = 0.5 -> 0 */
    q = quant(x, 1, 2, 32);
    cr_expect_eq(q.codes[2], 2u);
    cr_expect_eq(q.codes[3], 2u);
    cr_expect_eq(q.codes[4], 0u);
    for (int b = 1; b <= 4; b *= 2) {
        for (int i = 0; i < 32; i++) x[i] = 0.3f;
        q = quant(x, 1, b, 32);
        for (int i = 0; i < 32; i++) {
            const float y = kvq_dequant(q.codes[i], q.scale, q.zero);
            cr_expect(y == akv_f16_to_f32(akv_f32_to_f16(0.3f)), "%d-bit constant -> %g", b, y);
        }
    }
}

Test(kvquant, roundtrip_rmse_budgets_with_outlier_channels) {
    unsigned seed = 7;
    const int T = 32, D = 64;
    float k[32 * 64];
    for (int f = 0; f < 3; f++) {
        const kvq_format *fmt = &KVQ_FORMATS[f];
        cr_expect_eq(kvq_format_index(fmt->bits), f);
        double se_plain = 0, se_scaled = 0;
        long n = 0;
        for (int rep = 0; rep < 200; rep++) {
            for (int t = 0; t < T; t++) /* channels 5 and 40 are x25 outliers */
                for (int c = 0; c < D; c++) k[t * D + c] = (float)gauss(&seed) * (c == 5 || c == 40 ? 25.0f : 1.0f);
            for (int c = 0; c < D; c++) { /* per channel, as keys are quantized */
                const qgroup q = quant(k + c, D, fmt->bits, 32);
                double sc = (c == 5 || c == 40) ? 25.0 : 1.0;
                for (int t = 0; t < T; t++) {
                    double e = (kvq_dequant(q.codes[t], q.scale, q.zero) - k[t * D + c]) / sc;
                    if (sc == 1.0) se_plain += e * e, n++;
                    else se_scaled += e * e;
                }
            }
        }
        double rmse = sqrt(se_plain / n), rmse_out = sqrt(se_scaled / (200.0 * 2 * T));
        cr_log_info("%d-bit: rmse %.4f (outlier channels, relative %.4f), budget %.3f", fmt->bits,
                    rmse, rmse_out, fmt->rmse_budget);
        cr_expect(rmse <= fmt->rmse_budget, "%d-bit rmse %.4f > %.3f", fmt->bits, rmse, fmt->rmse_budget);
        cr_expect(rmse_out <= fmt->rmse_budget, "%d-bit outlier rmse %.4f", fmt->bits, rmse_out);
    }
    cr_expect(KVQ_FORMATS[0].rmse_budget > KVQ_FORMATS[1].rmse_budget &&
              KVQ_FORMATS[1].rmse_budget > KVQ_FORMATS[2].rmse_budget);
}

/* ---- kvlayout.h: where codes, scales and zeros sit ---- */

/* Every code of a tile has its own bits, and together they fill the tile's D * bits words. */
static void check_code_places(int is_key, int bits, int D) {
    const int words = D * bits;
    uint32_t *seen = calloc((size_t)words, 4);
    int overlaps = 0;
    for (int tau = 0; tau < KVL_TILE; tau++)
        for (int c = 0; c < D; c++) {
            int w, b;
            if (is_key) kvl_key_code_loc(bits, D, tau, c, &w, &b);
            else kvl_value_code_loc(bits, D, tau, c, &w, &b);
            cr_assert(w >= 0 && w < words && b >= 0 && b + bits <= 32, "%s b%d D%d: (%d, %d) at word %d bit %d",
                      is_key ? "key" : "value", bits, D, tau, c, w, b);
            const uint32_t m = ((1u << bits) - 1u) << b;
            overlaps += (seen[w] & m) != 0;
            seen[w] |= m;
        }
    int full = 1;
    for (int i = 0; i < words; i++) full &= seen[i] == 0xffffffffu;
    cr_expect_eq(overlaps, 0, "%s b%d D%d: %d codes share bits", is_key ? "key" : "value", bits, D, overlaps);
    cr_expect(full, "%s b%d D%d: some bits of the tile belong to no code", is_key ? "key" : "value", bits, D);
    free(seen);
}

Test(kvlayout, every_code_has_its_own_bits) {
    const int Ds[] = {16, 32, 48, 64, 80, 96, 128, 256};
    for (int b = 1; b <= 4; b *= 2)
        for (size_t i = 0; i < sizeof Ds / sizeof Ds[0]; i++) {
            check_code_places(1, b, Ds[i]);
            if (Ds[i] % 32 == 0) check_code_places(0, b, Ds[i]); /* values: D % G == 0 */
        }
}

Test(kvlayout, channel_permutation_stays_in_its_chunk) {
    const int Ds[] = {16, 48, 80, 128};
    for (size_t i = 0; i < sizeof Ds / sizeof Ds[0]; i++)
        for (int c = 0; c < Ds[i]; c++) {
            const int l = kvl_logical(c, Ds[i]);
            cr_expect_eq(kvl_physical(l, Ds[i]), c, "D%d: channel %d", Ds[i], c);
            cr_expect_eq(l / 32, c / 32, "D%d: channel %d left its chunk", Ds[i], c);
        }
    /* lane t of a chunk reads physical channels 8t .. 8t+7: logical 2t, 2t+1 of each 8 */
    for (int t = 0; t < 4; t++)
        for (int h = 0; h < 4; h++)
            for (int e = 0; e < 2; e++) cr_expect_eq(kvl_logical(8 * t + 2 * h + e, 64), 8 * h + 2 * t + e);
}

Test(kvlayout, hand_made_places) {
    int w, b;
    /* 1-bit key (token 0, channel 0) of head_dim 128: lane 0's first word, bit 15 (register 0) */
    kvl_key_code_loc(1, 128, 0, 0, &w, &b);
    cr_expect(w == 0 && b == 15, "word %d bit %d", w, b);
    /* token 1: the high half of the same register */
    kvl_key_code_loc(1, 128, 1, 0, &w, &b);
    cr_expect(w == 4 * 4 && b == 15, "token 1 -> lane 4: word %d bit %d", w, b); /* g = 1: lane 4 */
    /* physical channel 1 is logical channel 1: the high half of lane 0's register 0 */
    kvl_key_code_loc(1, 128, 0, 1, &w, &b);
    cr_expect(w == 0 && b == 31, "word %d bit %d", w, b);
    /* token 8 (row g + 8): register 1 of lane 0, bits 13 / 29 (v = 1, class c8 = 0) */
    kvl_key_code_loc(1, 128, 8, 0, &w, &b);
    cr_expect(w == 0 && b == 13, "word %d bit %d", w, b);
    /* 2-bit value (token 0, channel 0): lane 0, word 0, field 0 */
    kvl_value_code_loc(2, 128, 0, 0, &w, &b);
    cr_expect(w == 0 && b == 0, "word %d bit %d", w, b);
    /* record sizes: the formula G*D*b/8 + 4D */
    cr_expect_eq(kvl_record_bytes(1, 128, 32), 1024);
    cr_expect_eq(kvl_record_bytes(2, 64, 64), 64 * 64 * 2 / 8 + 256);
    cr_expect_eq(KVQ_RECORD_BYTES(4, 128, 32), kvl_record_bytes(4, 128, 32));
}

Test(kvlayout, value_scales_have_their_own_halves) {
    const int Gs[] = {32, 64, 128};
    for (int gi = 0; gi < 3; gi++) {
        const int G = Gs[gi], D = 128;
        char seen[128] = {0};
        int bad = 0;
        for (int p = 0; p < G; p++)
            for (int j = 0; j < D / G; j++) {
                const int m = kvl_vmeta_index(D, G, p, j);
                bad += m < 0 || m >= D || seen[m]++;
            }
        cr_expect_eq(bad, 0, "G%d: value scale places collide", G);
    }
}

Test(kvlayout, flush_plan_follows_kivi) {
    /* R 64: the 64th key flushes the window; the 65th value pushes the oldest out */
    kvl_append_op op = kvl_append_plan(63, 0, 0, 2, 1, 64);
    cr_expect(op.k_flush == 0 && op.v_flush == -1);
    op = kvl_append_plan(64, 64, 0, 2, 1, 64);
    cr_expect(op.k_flush == -1 && op.v_flush == 0);
    op = kvl_append_plan(64, 0, 0, 16, 16, 64);
    cr_expect(op.k_flush == -1 && op.v_flush == -1, "16-bit tensors never flush");
    int kq = 0, vq = 0;
    kvl_advance(0, 200, 1, 1, 64, &kq, &vq);
    cr_expect(kq == 192 && vq == 136, "kq %d vq %d", kq, vq);
}

/* A cache of one layer with the given widths, filled with `len` random tokens appended in
 * chunks of `chunk`. */
static kvcache *filled_cache(kv_config *cfg, int kb, int vb, int H, int D, int ctx, int len,
                             int chunk, int R, unsigned *seed) {
    akv_err err = {0};
    char spec[64];
    snprintf(spec, sizeof spec, "k=%dx1;v=%dx1", kb, vb);
    cr_assert_eq(kvcfg_parse(cfg, spec, 1, 2, 32, R, &err), AKV_OK, "%s", err.msg);
    kvcache_shape sh = {1, 0, 1, ctx, H, D, cfg};
    kvcache *kv;
    cr_assert_eq(kvcache_init(&kv, &sh, &err), AKV_OK, "%s", err.msg);
    float *k = malloc(sizeof(float) * chunk * H * D), *v = malloc(sizeof(float) * chunk * H * D);
    for (int p = 0; p < len; p += chunk) {
        int n = len - p < chunk ? len - p : chunk;
        for (int i = 0; i < n * H * D; i++) {
            k[i] = (float)gauss(seed) * ((i % D) == 3 ? 8.0f : 1.0f);
            v[i] = (float)gauss(seed);
        }
        kvq_round_f16(k, (size_t)n * H * D);
        kvq_round_f16(v, (size_t)n * H * D);
        cr_assert_eq(kvcache_append(kv, 0, 0, n, k, v, &err), AKV_OK, "%s", err.msg);
    }
    free(k);
    free(v);
    return kv;
}

static void check_fused(int kb, int vb, int H, int n_heads, int D, int len, int n_new, unsigned *seed) {
    kv_config cfg;
    kvcache *kv = filled_cache(&cfg, kb, vb, H, D, len + n_new + 8, len, 37, 64, seed);
    kvq_view view;
    kvcache_view(kv, 0, 0, &view);
    const int T = len + n_new, row = H * D;
    float *kd = malloc(sizeof(float) * T * row), *vd = malloc(sizeof(float) * T * row);
    float *q = malloc(sizeof(float) * n_new * n_heads * D), *o1 = malloc(sizeof(float) * n_new * n_heads * D);
    float *o2 = malloc(sizeof(float) * n_new * n_heads * D), *scratch = malloc(sizeof(float) * kvattn_scratch_floats(T, D));
    kvq_view_dequantize(&view, kd, vd);
    for (int i = 0; i < n_new * row; i++) {
        kd[len * row + i] = akv_f16_to_f32(akv_f32_to_f16((float)gauss(seed)));
        vd[len * row + i] = akv_f16_to_f32(akv_f32_to_f16((float)gauss(seed)));
    }
    for (int i = 0; i < n_new * n_heads * D; i++) q[i] = (float)gauss(seed);
    const float scale = 1.0f / sqrtf((float)D);
    kvattn_ref(o1, q, n_new, n_heads, &view, kd + len * row, vd + len * row, scale, scratch);
    attention_ref(o2, q, kd, vd, n_new, len, n_heads, H, D, scale, scratch);
    double md = 0, mref = 0;
    for (int i = 0; i < n_new * n_heads * D; i++) {
        md = fmax(md, fabs(o1[i] - o2[i]));
        mref = fmax(mref, fabs(o2[i]));
    }
    cr_expect(md <= 2e-5 * fmax(1.0, mref), "K%d/V%d H%d/%d D%d len %d: fused vs dequantized %.3g",
              kb, vb, n_heads, H, D, len, md);
    free(kd); free(vd); free(q); free(o1); free(o2); free(scratch);
    kvcache_free(kv);
}

Test(kvquant, fused_attention_equals_dequantize_then_attend) {
    unsigned seed = 11;
    const int widths[] = {32, 16, 4, 2, 1};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) {
            check_fused(widths[a], widths[b], 2, 8, 64, 300, 1, &seed);
            check_fused(widths[a], widths[b], 1, 4, 32, 129, 5, &seed);
        }
    check_fused(1, 1, 2, 2, 128, 640, 3, &seed);
}

/* After len tokens the split must follow KIVI: kq = floor(len/R)*R, vq = max(0, len-R). */
static void check_split(int len, int chunk, int R) {
    unsigned seed = (unsigned)len;
    kv_config cfg;
    kvcache *kv = filled_cache(&cfg, 2, 1, 1, 32, len + 1, len, chunk, R, &seed);
    kvq_view v;
    kvcache_view(kv, 0, 0, &v);
    cr_expect_eq(v.len, len);
    cr_expect_eq(v.kq, len / R * R, "len %d chunk %d R %d: kq %d", len, chunk, R, v.kq);
    cr_expect_eq(v.vq, len > R ? len - R : 0, "len %d chunk %d R %d: vq %d", len, chunk, R, v.vq);
    kvcache_free(kv);
}

Test(kvquant, flushing_follows_kivi_around_multiples_of_G_and_R) {
    const int lens[] = {1, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 255, 256, 257, 300};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        check_split(lens[i], lens[i], 64);  /* one-shot prefill */
        check_split(lens[i], 1, 64);        /* token-by-token decode */
        check_split(lens[i], 7, 64);        /* chunked */
        check_split(lens[i], lens[i], 128);
        check_split(lens[i], 1, 32);
    }
}

Test(kvquant, context_full_is_an_input_error) {
    kv_config cfg;
    akv_err err = {0};
    cr_assert_eq(kvcfg_parse(&cfg, "kivi2", 1, 2, 32, 64, &err), AKV_OK);
    kvcache_shape sh = {1, 0, 1, 40, 1, 32, &cfg};
    kvcache *kv;
    cr_assert_eq(kvcache_init(&kv, &sh, &err), AKV_OK);
    float k[41 * 32] = {0};
    cr_expect_eq(kvcache_append(kv, 0, 0, 41, k, k, &err), AKV_EINPUT);
    cr_expect(strstr(err.msg, "--ctx"));
    kvcache_free(kv);
}

Test(kvconfig, parse_forms) {
    kv_config c;
    akv_err err = {0};
    char buf[256];
    cr_assert_eq(kvcfg_parse(&c, "asymkv:2/0", 4, 2, 32, 128, &err), AKV_OK);
    kvcfg_format(&c, buf, sizeof buf);
    cr_expect_str_eq(buf, "k=2x2,1x2;v=1x4");
    cr_assert_eq(kvcfg_parse(&c, "asymkv:3/1", 4, 4, 32, 128, &err), AKV_OK);
    kvcfg_format(&c, buf, sizeof buf);
    cr_expect_str_eq(buf, "k=4x3,1x1;v=4x1,1x3");
    cr_assert_eq(kvcfg_parse(&c, "k=2x16,1x16;v=1x32", 32, 2, 32, 128, &err), AKV_OK);
    cr_expect(c.k_bits[15] == 2 && c.k_bits[16] == 1 && c.v_bits[0] == 1);
    cr_assert_eq(kvcfg_parse(&c, "kivi4", 3, 2, 64, 128, &err), AKV_OK);
    cr_expect(c.k_bits[2] == 4 && c.v_bits[0] == 4 && c.group == 64);
    cr_assert_eq(kvcfg_parse(&c, "fp16", 3, 2, 32, 128, &err), AKV_OK);
    cr_expect(c.k_bits[1] == 16);
    cr_assert_eq(kvcfg_parse(&c, "asymkv:0/0", 3, 2, 32, 128, &err), AKV_OK);
    cr_expect(c.k_bits[0] == 1 && c.v_bits[2] == 1);
    const char *bad[] = {"fp8", "asymkv:5/0", "asymkv:2", "asymkv:a/b", "k=2x3;v=1x2",
                         "k=3x4;v=1x4", "k=2x4", "v=1x4;k=1x4", "kivi3", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        akv_err e = {0};
        cr_expect_eq(kvcfg_parse(&c, bad[i], 4, 2, 32, 128, &e), AKV_EINPUT, "\"%s\" accepted", bad[i]);
        cr_expect(strstr(e.msg, "asymkv:") || strstr(e.msg, "0..4"), "\"%s\": %s", bad[i], e.msg);
    }
    akv_err e = {0};
    cr_expect_eq(kvcfg_parse(&c, "kivi2", 4, 3, 32, 128, &e), AKV_EINPUT);
    akv_err e2 = {0};
    cr_expect_eq(kvcfg_parse(&c, "kivi2", 4, 2, 32, 100, &e2), AKV_EINPUT);
}

Test(kvconfig, memory_formula_llama2_7b) {
    /* design §4: Llama-2-7B (32 layers, H 32, D 128), per token over all layers */
    const char *spec[] = {"fp16", "kivi2", "asymkv:16/0", "asymkv:0/0"};
    const size_t kib[] = {512, 96, 72, 64};
    for (int i = 0; i < 4; i++) {
        kv_config c;
        akv_err err = {0};
        cr_assert_eq(kvcfg_parse(&c, spec[i], 32, 2, 32, 128, &err), AKV_OK);
        size_t total = 0;
        for (int l = 0; l < 32; l++) total += kvcfg_token_bytes(&c, l, 32, 128);
        cr_expect_eq(total, kib[i] * 1024, "%s: %zu bytes/token", spec[i], total);
    }
}

Test(kvconfig, allocation_equals_formula) {
    const char *spec[] = {"fp16", "fp32", "kivi2", "kivi4", "asymkv:2/1", "k=1x1,4x1,16x1;v=2x1,1x1,32x1"};
    for (int i = 0; i < 6; i++) {
        kv_config c;
        akv_err err = {0};
        cr_assert_eq(kvcfg_parse(&c, spec[i], 3, 2, 32, 64, &err), AKV_OK, "%s", err.msg);
        kvcache_shape sh = {3, 0, 3, 1000, 2, 64, &c};
        kvcache *kv;
        cr_assert_eq(kvcache_init(&kv, &sh, &err), AKV_OK);
        size_t want = 0;
        for (int l = 0; l < 3; l++) {
            /* by hand: ctx 1000 -> 1024 (multiple of 32), H*D = 128, window 64 tokens */
            size_t hd = 128, ctx = 1024, w = 64 * hd * 2, b = 0;
            int kb = c.k_bits[l], vb = c.v_bits[l];
            b += kb >= 16 ? ctx * hd * kb / 8 : ctx * (hd * kb / 8 + hd * 4 / 32) + w;
            b += vb >= 16 ? ctx * hd * vb / 8 : ctx * (hd * vb / 8 + (hd / 32) * 4) + w;
            cr_expect_eq(kvcache_layer_bytes(kv, l), 3 * b, "%s layer %d", spec[i], l);
            cr_expect_eq(kvcfg_layer_bytes(&c, l, 2, 64, 1000, 3), 3 * b);
            want += 3 * b;
        }
        cr_expect_eq(kvcache_bytes(kv), want);
        kvcache_free(kv);
    }
}

Test(kvconfig, average_bits) {
    kv_config c;
    akv_err err = {0};
    kvcfg_parse(&c, "asymkv:0/0", 4, 2, 32, 128, &err);
    cr_expect_float_eq(kvcfg_avg_bits(&c, 128), 2.0, 1e-9);
    kvcfg_parse(&c, "kivi2", 4, 2, 32, 128, &err);
    cr_expect_float_eq(kvcfg_avg_bits(&c, 128), 3.0, 1e-9);
    kvcfg_parse(&c, "fp16", 4, 2, 32, 128, &err);
    cr_expect_float_eq(kvcfg_avg_bits(&c, 128), 16.0, 1e-9);
}

Test(kvconfig, head_dim_the_layout_needs) {
    kv_config c;
    akv_err err = {0};
    cr_assert_eq(kvcfg_parse(&c, "k=2x1;v=16x1", 1, 2, 32, 128, &err), AKV_OK);
    cr_expect_eq(kvcfg_check_head_dim(&c, 80, &err), AKV_OK, "80 = 5 x 16 takes quantized keys");
    akv_err e = {0};
    cr_expect_eq(kvcfg_check_head_dim(&c, 40, &e), AKV_EINPUT);
    cr_expect(strstr(e.msg, "multiple of 16") && strstr(e.msg, "16-bit keys"), "%s", e.msg);
    cr_assert_eq(kvcfg_parse(&c, "kivi2", 1, 2, 32, 128, &err), AKV_OK);
    akv_err e2 = {0};
    cr_expect_eq(kvcfg_check_head_dim(&c, 80, &e2), AKV_EINPUT, "values need D %% G == 0");
}
