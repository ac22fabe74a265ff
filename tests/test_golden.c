/* test_golden.c — asymkv against Hugging Face transformers: logits of every position and
 * greedy continuations recorded by tools/make_fixtures.py for the three architectures, plus
 * chunked-prefill / one-token-decode consistency and HF's rotary inv_freq. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kernels.h"
#include "testutil.h"

static const char *const FIXTURES[] = {"llama-gqa", "mistral-mqa", "qwen2-tied"};
#define N_FIX 3

/* Runs asymkv logits on the fixture's ids with the given extra flags; returns the array. */
static float *run_logits(const char *fx, const char *extra, const char *tmp, int64_t shape[4]) {
    char out[512];
    snprintf(out, sizeof out, "%s/%s.npy", tmp, fx);
    run_result r = tu_run("%s logits -q --model %s/%s --ids-file %s/%s/ids.txt --out %s %s",
                          tu_bin(), tu_data(), fx, tu_data(), fx, out, extra);
    cr_assert_eq(r.status, 0, "%s: asymkv logits failed (%d): %s", fx, r.status, r.err);
    tu_run_free(&r);
    int nd = 0;
    float *a = tu_read_npy(out, shape, &nd);
    cr_assert_not_null(a, "%s: cannot read %s", fx, out);
    cr_assert_eq(nd, 2);
    return a;
}

Test(golden, logits_match_transformers) {
    char *tmp = tu_tmpdir();
    for (int f = 0; f < N_FIX; f++) {
        char ref_path[512];
        snprintf(ref_path, sizeof ref_path, "%s/%s/logits.npy", tu_data(), FIXTURES[f]);
        int64_t rs[4], as[4];
        int nd;
        float *ref = tu_read_npy(ref_path, rs, &nd);
        cr_assert_not_null(ref, "missing fixture %s", ref_path);
        float *got = run_logits(FIXTURES[f], "--kv fp32", tmp, as);
        cr_assert(as[0] == rs[0] && as[1] == rs[1], "%s: shape [%lld,%lld] vs [%lld,%lld]",
                  FIXTURES[f], (long long)as[0], (long long)as[1], (long long)rs[0],
                  (long long)rs[1]);
        size_t n = (size_t)rs[0] * (size_t)rs[1];
        double max_ref = 0, max_d = 0;
        for (size_t i = 0; i < n; i++) {
            max_ref = fmax(max_ref, fabs(ref[i]));
            max_d = fmax(max_d, fabs((double)ref[i] - got[i]));
        }
        cr_log_info("%s: max|dlogit| = %.3g, max|logit| = %.3g, ratio %.3g", FIXTURES[f], max_d,
                    max_ref, max_d / max_ref);
        cr_expect(max_ref > 5.0, "%s: fixture logits too flat (%g)", FIXTURES[f], max_ref);
        cr_expect(max_d <= 1e-3 * max_ref, "%s: max|d| %.3g > 1e-3 * %.3g", FIXTURES[f], max_d,
                  max_ref);
        free(ref);
        free(got);
    }
    tu_rmdir(tmp);
    free(tmp);
}

Test(golden, greedy_tokens_match_transformers) {
    for (int f = 0; f < N_FIX; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s/greedy_out.txt", tu_data(), FIXTURES[f]);
        int n_ref = 0;
        int32_t *ref = tu_read_ids(path, &n_ref);
        cr_assert(ref && n_ref > 0, "missing %s", path);
        run_result r = tu_run("%s generate -q --model %s/%s --ids-file %s/%s/greedy_prompt.txt "
                              "-n 32", tu_bin(), tu_data(), FIXTURES[f], tu_data(), FIXTURES[f]);
        cr_assert_eq(r.status, 0, "%s: generate failed: %s", FIXTURES[f], r.err);
        char *p = r.out, *end;
        int n = 0;
        for (long v = strtol(p, &end, 10); end != p; v = strtol(p, &end, 10)) {
            cr_expect(n < n_ref && v == ref[n], "%s: token %d is %ld, transformers gave %d",
                      FIXTURES[f], n, v, n < n_ref ? ref[n] : -1);
            n++;
            p = end;
        }
        cr_expect_eq(n, n_ref, "%s: %d tokens generated, transformers gave %d", FIXTURES[f], n,
                     n_ref);
        tu_run_free(&r);
        free(ref);
    }
}

/* Prefill in chunks of 7 and token-by-token (chunk 1, the decode path) must give the same
 * bits as one 256-token chunk: each token's math does not depend on its batch. */
Test(golden, chunked_prefill_and_decode_path_are_bitwise_equal) {
    char *tmp = tu_tmpdir();
    for (int f = 0; f < N_FIX; f++) {
        int64_t s0[4], s1[4], s7[4];
        float *a = run_logits(FIXTURES[f], "", tmp, s0);
        float *b = run_logits(FIXTURES[f], "--prefill-chunk 1", tmp, s1);
        float *c = run_logits(FIXTURES[f], "--prefill-chunk 7", tmp, s7);
        size_t n = (size_t)s0[0] * (size_t)s0[1];
        cr_expect(memcmp(a, b, n * sizeof(float)) == 0, "%s: decode path differs", FIXTURES[f]);
        cr_expect(memcmp(a, c, n * sizeof(float)) == 0, "%s: chunk 7 differs", FIXTURES[f]);
        free(a);
        free(b);
        free(c);
    }
    tu_rmdir(tmp);
    free(tmp);
}

Test(golden, rope_inv_freq_matches_transformers) {
    for (int f = 0; f < N_FIX; f++) {
        char dir[512], path[600];
        snprintf(dir, sizeof dir, "%s/%s", tu_data(), FIXTURES[f]);
        model_config c;
        akv_err err = {0};
        cr_assert_eq(config_load(&c, dir, &err), AKV_OK, "%s", err.msg);
        snprintf(path, sizeof path, "%s/inv_freq.npy", dir);
        int64_t sh[4];
        int nd;
        float *ref = tu_read_npy(path, sh, &nd);
        cr_assert(ref && sh[0] == c.head_dim / 2);
        float got[512];
        rope_inv_freq_ref(got, c.head_dim, &c.rope);
        for (int i = 0; i < c.head_dim / 2; i++)
            cr_expect(fabsf(got[i] - ref[i]) <= 1e-6f * fabsf(ref[i]), "%s inv_freq[%d] %g vs %g",
                      FIXTURES[f], i, got[i], ref[i]);
        free(ref);
    }
}
