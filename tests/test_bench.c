/* test_bench.c — `asymkv bench`: a synthetic model runs its warm-up and measured generation and
 * reports consistent figures (text and --json); the same weights come from --synthetic on every
 * run (same greedy work, same bytes); bad input is one line and exit 2. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static cJSON *bench_json(const char *extra, run_result *r) {
    char *dir = tu_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/b.json", dir);
    *r = tu_run("'%s' bench -q --synthetic tiny --batch 3 --prompt-len 40 -n 12 --json '%s' %s",
                tu_bin(), path, extra);
    cr_assert_eq(r->status, 0, "bench failed (%d): %s", r->status, r->err);
    size_t n = 0;
    char *text = tu_read_file(path, &n);
    cr_assert(text, "no JSON written");
    cJSON *o = cJSON_Parse(text);
    cr_assert(o, "JSON does not parse: %s", text);
    free(text);
    tu_rmdir(dir);
    free(dir);
    return o;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(f), "field %s missing", k);
    return f->valuedouble;
}

Test(bench, synthetic_report_is_consistent) {
    run_result r;
    cJSON *o = bench_json("--kv asymkv:2/0", &r);
    cr_expect(strstr(r.out, "asymkv bench: tiny (synthetic), 1 rank, backend cpu"), "%s", r.out);
    cr_expect(strstr(r.out, "decode:  33 tokens"), "3 x 12 new minus 3 first tokens: %s", r.out);
    cr_expect_eq(num(o, "ranks"), 1);
    cr_expect_eq(num(o, "batch"), 3);
    cr_expect(num(o, "ttft_s") > 0 && num(o, "decode_s") > 0);
    const double tok_s = num(o, "decode_tok_s"), tpot = num(o, "tpot_s");
    cr_expect(tok_s > 0 && tpot > 0);
    /* 11 decode steps of 3 sequences: tok/s x TPOT = 3 x 33/33 */
    cr_expect(tok_s * tpot > 2.9 && tok_s * tpot < 3.1, "tok/s %g x TPOT %g", tok_s, tpot);
    /* weights (fp32 on the CPU) of the tiny shape: 4 layers of 2 x 256 x 256 + 2 x 256 x 64 +
     * 3 x 256 x 768 params plus norms, and the tied 4096 x 256 embedding */
    const double params = 4.0 * (2 * 256 * 256 + 2 * 256 * 64 + 3 * 256 * 768 + 2 * 256) +
                          4096.0 * 256 + 256;
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(o, "per_rank");
    cr_assert(cJSON_GetArraySize(rows) == 1);
    const cJSON *r0 = cJSON_GetArrayItem(rows, 0);
    cr_expect_eq(num(r0, "weight_bytes"), 4 * params, "weights %g", num(r0, "weight_bytes"));
    cr_expect(num(r0, "bubble") >= 0 && num(r0, "bubble") < 0.5, "one rank: little idle time");
    cr_expect(num(r0, "busy_prefill_s") > 0 && num(r0, "busy_decode_s") > 0);
    cJSON_Delete(o);
    tu_run_free(&r);
}

Test(bench, bad_input_is_one_line) {
    const char *bad[] = {"--synthetic nope", "", "--synthetic tiny --model x",
                         "--synthetic tiny --prompt-len 0", "--synthetic tiny -n 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_result r = tu_run("'%s' bench -q %s", tu_bin(), bad[i]);
        cr_expect_eq(r.status, 2, "bench %s: exit %d", bad[i], r.status);
        int lines = 0;
        for (const char *c = r.err; *c; c++) lines += *c == '\n';
        cr_expect(strstr(r.err, "error:") && lines == 1, "bench %s: not one line: %s", bad[i],
                  r.err);
        tu_run_free(&r);
    }
}
