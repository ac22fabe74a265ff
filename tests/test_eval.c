/* test_eval.c — asymkv eval: fp16 perplexity equals the one computed from `asymkv logits`,
 * --diag prints its table and CSV, quantized configs cost perplexity in the expected order,
 * passkey prompts are well formed and seeded, and the bundled model scores its documented
 * perplexity. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passkey.h"
#include "testutil.h"
#include "tokenizer.h"

static double field(const char *out, const char *key) {
    const char *p = strstr(out, key);
    return p ? atof(p + strlen(key)) : -1.0;
}

/* NLL of ids[1..T-1] from a logits .npy, in double. */
static double npy_ppl(const char *npy, const int32_t *ids, int T) {
    int64_t sh[4];
    int nd;
    float *lg = tu_read_npy(npy, sh, &nd);
    cr_assert_not_null(lg);
    double nll = 0;
    for (int p = 1; p < T; p++) {
        const float *row = lg + (size_t)(p - 1) * sh[1];
        double mx = row[0], s = 0;
        for (int v = 1; v < sh[1]; v++) mx = fmax(mx, row[v]);
        for (int v = 0; v < sh[1]; v++) s += exp(row[v] - mx);
        nll += mx + log(s) - row[ids[p]];
    }
    free(lg);
    return exp(nll / (T - 1));
}

Test(eval, fp16_perplexity_equals_logits_perplexity) {
    char *tmp = tu_tmpdir(), ids_path[512], npy[600];
    snprintf(ids_path, sizeof ids_path, "%s/qwen2-tied/ids.txt", tu_data());
    snprintf(npy, sizeof npy, "%s/l.npy", tmp);
    run_result a = tu_run("%s logits -q --model %s/qwen2-tied --ids-file %s --out %s", tu_bin(),
                          tu_data(), ids_path, npy);
    cr_assert_eq(a.status, 0, "%s", a.err);
    run_result b = tu_run("%s eval -q --model %s/qwen2-tied --ids-file %s --kv fp16", tu_bin(),
                          tu_data(), ids_path);
    cr_assert_eq(b.status, 0, "%s", b.err);
    int T;
    int32_t *ids = tu_read_ids(ids_path, &T);
    double want = npy_ppl(npy, ids, T), got = field(b.out, "perplexity: ");
    cr_expect(fabs(got - want) <= 1e-4 * want, "eval %.6f vs logits %.6f", got, want);
    cr_expect_eq((int)field(b.out, "scored_tokens: "), T - 1);
    /* --prefix 50: positions 50.. are scored */
    run_result c = tu_run("%s eval -q --model %s/qwen2-tied --ids-file %s --prefix 50", tu_bin(),
                          tu_data(), ids_path);
    cr_expect_eq((int)field(c.out, "scored_tokens: "), T - 50, "%s", c.out);
    tu_run_free(&a);
    tu_run_free(&b);
    tu_run_free(&c);
    free(ids);
    tu_rmdir(tmp);
    free(tmp);
}

Test(eval, diag_table_and_csv) {
    char *tmp = tu_tmpdir(), csv[600];
    snprintf(csv, sizeof csv, "%s/d.csv", tmp);
    run_result r = tu_run("%s eval -q --model %s/mistral-mqa --ids-file %s/mistral-mqa/ids.txt "
                          "--kv asymkv:1/0 --kv-residual 32 --prefix 40 --diag --csv %s "
                          "--search-kv --budget 2", tu_bin(), tu_data(), tu_data(), csv);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "K/V@2bit") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "search-kv (budget 2") != NULL, "%s", r.out);
    size_t n;
    char *text = tu_read_file(csv, &n);
    cr_assert_not_null(text);
    int lines = 0;
    for (char *p = text; *p; p++) lines += *p == '\n';
    cr_expect_eq(lines, 3, "header + 2 layers: %s", text);
    /* every measured MSE is positive and 1-bit errors exceed 4-bit ones */
    char *row = strchr(text, '\n') + 1;
    double v[11];
    cr_assert_eq(sscanf(row, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2],
                        &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]), 11);
    cr_expect(v[3] > 0 && v[5] > v[7] && v[8] > v[10] && v[10] > 0, "%s", row);
    free(text);
    tu_run_free(&r);
    tu_rmdir(tmp);
    free(tmp);
}

Test(eval, bad_input) {
    run_result r = tu_run("%s eval --model %s/mistral-mqa", tu_bin(), tu_data());
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--ids-file") != NULL, "%s", r.err);
    tu_run_free(&r);
    r = tu_run("%s eval --model %s/llama-gqa --ids-file %s/llama-gqa/ids.txt --kv kivi2",
               tu_bin(), tu_data(), tu_data());
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "head_dim 16") != NULL, "%s", r.err);
    tu_run_free(&r);
    r = tu_run("%s eval --model %s/mistral-mqa --ids-file %s/mistral-mqa/ids.txt --kv 'k=9x2;v=1x2'",
               tu_bin(), tu_data(), tu_data());
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "asymkv:LK/LV") != NULL, "%s", r.err);
    tu_run_free(&r);
}

static tokenizer_t *ref_tokenizer(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/asymkv-ref", getenv("ASYMKV_SRC") ? getenv("ASYMKV_SRC") : ".");
    tokenizer_t *t = NULL;
    akv_err err = {0};
    cr_assert_eq(tokenizer_load(&t, path, &err), AKV_OK, "%s", err.msg);
    return t;
}

Test(passkey, prompts_are_well_formed_and_seeded) {
    tokenizer_t *tok = ref_tokenizer();
    const char *filler = "The quick brown fox jumps over the lazy dog. It was a bright cold day, "
                         "and the clocks were striking thirteen.\nCall me Ishmael; some years ago, "
                         "never mind how long precisely, having little money in my purse.\n";
    char big[40000] = "";
    for (int i = 0; i < 100; i++) strcat(big, filler);
    passkey_gen *g;
    akv_err err = {0};
    cr_assert_eq(passkey_init(&g, tok, big, &err), AKV_OK, "%s", err.msg);
    const int lens[] = {256, 1024};
    const double depths[] = {0.0, 0.5, 1.0};
    for (int li = 0; li < 2; li++)
        for (int di = 0; di < 3; di++) {
            uint64_t rng = 42, rng2 = 42;
            int32_t *ids, *ids2;
            int n, n2;
            char key[6], key2[6];
            cr_assert_eq(passkey_build(g, &rng, lens[li], depths[di], &ids, &n, key, &err), AKV_OK);
            cr_assert_eq(passkey_build(g, &rng2, lens[li], depths[di], &ids2, &n2, key2, &err), AKV_OK);
            cr_expect(n == n2 && !memcmp(ids, ids2, n * sizeof *ids) && !strcmp(key, key2), "seeded");
            cr_expect(n <= lens[li] - PASSKEY_GEN_TOKENS && n > lens[li] - 64, "length %d for %d", n, lens[li]);
            cr_expect_eq(ids[0], tokenizer_bos_id(tok));
            char *text;
            size_t tl;
            cr_assert_eq(tokenizer_decode(tok, ids, n, 1, &text, &tl, &err), AKV_OK);
            char needle[80];
            snprintf(needle, sizeof needle, "The pass key is %s. Remember it. %s is the pass key.", key, key);
            char *at = strstr(text, needle);
            cr_expect(at != NULL, "needle missing: %s", text);
            const char *q = "\nWhat is the pass key? The pass key is";
            cr_expect(tl >= strlen(q) && !strcmp(text + tl - strlen(q), q), "question at the end");
            double where = at ? (double)(at - text) / (double)tl : -1;
            if (depths[di] == 0.0) cr_expect(where < 0.1, "depth 0 at %.2f", where);
            if (depths[di] == 1.0) cr_expect(where > 0.8, "depth 1 at %.2f", where);
            free(text);
            free(ids);
            free(ids2);
        }
    cr_expect(passkey_check(" 48213.", "48213"));
    cr_expect(!passkey_check(" 482135", "48213"));
    cr_expect(!passkey_check(" 4821", "48213"));
    cr_expect(!passkey_check("no digits", "48213"));
    passkey_free(g);
    tokenizer_free(tok);
}

/* Greedy continuation of a 394-token held-out prompt with a 32-token residual window, so the
 * cache is mostly quantized: measured (2026-11-29) kivi4 45/48 tokens position-wise equal to
 * fp16 (first difference at token 4, then back in step), kivi2 14/48, asymkv:8/0 10/48,
 * all-1-bit 0/48. The test holds kivi4 to >= 40/48 and the 1-bit cache below it. */
/* Position-wise agreement of the greedy ids under kv with the fp16 ones. */
static int agree_with_fp16(const char *kv, const char *ids_file) {
    const char *src = getenv("ASYMKV_SRC") ? getenv("ASYMKV_SRC") : ".";
    run_result a = tu_run("%s generate -q --model %s/models/asymkv-ref --ids-file %s -n 48 "
                          "--kv-residual 32", tu_bin(), src, ids_file);
    run_result b = tu_run("%s generate -q --model %s/models/asymkv-ref --ids-file %s -n 48 "
                          "--kv-residual 32 --kv %s", tu_bin(), src, ids_file, kv);
    cr_assert(a.status == 0 && b.status == 0, "%s %s", a.err, b.err);
    int same = 0;
    char *p = a.out, *q = b.out, *e1, *e2;
    for (;;) {
        long x = strtol(p, &e1, 10), y = strtol(q, &e2, 10);
        if (e1 == p || e2 == q) break;
        same += x == y;
        p = e1;
        q = e2;
    }
    tu_run_free(&a);
    tu_run_free(&b);
    return same;
}

Test(eval, kivi4_greedy_stays_close_to_fp16, .timeout = 300) {
    const char *src = getenv("ASYMKV_SRC") ? getenv("ASYMKV_SRC") : ".";
    char *d = tu_tmpdir();
    run_result t = tu_run("head -c 1200 %s/models/asymkv-ref/heldout.txt > %s/p.txt && %s tokenize "
                          "-q --tokenizer %s/models/asymkv-ref --file %s/p.txt --add-special | "
                          "tr -d '[],' > %s/p.ids", src, d, tu_bin(), src, d, d);
    cr_assert_eq(t.status, 0, "%s", t.err);
    char ids[600];
    snprintf(ids, sizeof ids, "%s/p.ids", d);
    int k4 = agree_with_fp16("kivi4", ids), b1 = agree_with_fp16("asymkv:0/0", ids);
    cr_log_info("greedy tokens equal to fp16 (of 48): kivi4 %d, all-1-bit %d", k4, b1);
    cr_expect(k4 >= 40, "kivi4: only %d/48 tokens equal to fp16", k4);
    cr_expect(b1 < k4, "the 1-bit cache (%d) should not track fp16 better than kivi4 (%d)", b1, k4);
    tu_run_free(&t);
    tu_rmdir(d);
    free(d);
}

/* The bundled model's documented fp16 perplexity (models/asymkv-ref/README.md, "Measured with
 * asymkv": 11.6688 over 2511 tokens of the first 8192 bytes of heldout.txt, --window 1024). */
Test(eval, bundled_model_scores_its_documented_perplexity, .timeout = 300) {
    const char *src = getenv("ASYMKV_SRC") ? getenv("ASYMKV_SRC") : ".";
    char *d = tu_tmpdir();
    run_result r = tu_run("head -c 8192 %s/models/asymkv-ref/heldout.txt > %s/h.txt && %s eval -q "
                          "--model %s/models/asymkv-ref --text-file %s/h.txt --window 1024 --kv fp16",
                          src, d, tu_bin(), src, d);
    cr_assert_eq(r.status, 0, "%s", r.err);
    double ppl = field(r.out, "perplexity: ");
    cr_expect(fabs(ppl - 11.6688) <= 0.01 * 11.6688, "perplexity %.4f, documented 11.6688", ppl);
    cr_expect_eq((int)field(r.out, "scored_tokens: "), 2511);
    tu_run_free(&r);
    tu_rmdir(d);
    free(d);
}
