/* test_cli.c — the command line against bad input: every case exits 2 with exactly one line
 * on stderr naming the problem, and leaves no output file behind. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Runs the command, expects exit 2 and one stderr line containing want. */
static void expect_bad(const char *want, const char *fmt, const char *arg) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, arg);
    run_result r = tu_run("%s %s", tu_bin(), cmd);
    cr_expect_eq(r.status, 2, "`%s` exited %d, want 2 (stderr: %s)", cmd, r.status, r.err);
    cr_expect_eq(count_lines(r.err), 1, "`%s`: want one stderr line, got: %s", cmd, r.err);
    cr_expect(strstr(r.err, want) != NULL, "`%s`: stderr lacks \"%s\": %s", cmd, want, r.err);
    tu_run_free(&r);
}

/* A writable copy of a fixture folder. */
static char *copy_fixture(const char *name) {
    char *tmp = tu_tmpdir();
    run_result r = tu_run("cp -r %s/%s/. %s/", tu_data(), name, tmp);
    cr_assert_eq(r.status, 0);
    tu_run_free(&r);
    return tmp;
}

Test(cli, usage_and_help) {
    run_result r = tu_run("%s --help", tu_bin());
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "generate") && strstr(r.out, "logits"));
    tu_run_free(&r);
    r = tu_run("%s logits --help", tu_bin());
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "--ids-file") && strstr(r.out, "example"));
    tu_run_free(&r);
    r = tu_run("%s", tu_bin());
    cr_expect_eq(r.status, 2);
    tu_run_free(&r);
}

Test(cli, bad_flags) {
    char m[512];
    snprintf(m, sizeof m, "%s/llama-gqa", tu_data());
    expect_bad("unknown command", "frobnicate%s", "");
    expect_bad("unknown option --bogus", "generate --model %s --ids 1 --bogus", m);
    expect_bad("--model DIR is required", "generate --ids \"1 2\"%s", "");
    expect_bad("expects an integer", "generate --model %s --ids 1 -n ten", m);
    expect_bad("needs a value", "generate --model %s --ids", m);
    expect_bad("exactly one of --ids", "generate --model %s", m);
    expect_bad("is not a token id", "generate --model %s --ids \"1 x 3\"", m);
    expect_bad("outside the vocabulary", "generate --model %s --ids \"1 99999\"", m);
    expect_bad("--backend must be", "generate --model %s --ids 1 --backend tpu", m);
    expect_bad("--out FILE.npy is required", "logits --model %s --ids 1", m);
    expect_bad("cannot read", "generate --model %s --ids-file /nonexistent/ids.txt", m);
}

Test(cli, context_limits) {
    char m[512];
    snprintf(m, sizeof m, "%s/llama-gqa", tu_data());
    expect_bad("exceeds --ctx", "generate --model %s --ids \"1 2 3 4 5\" -n 10 --ctx 8", m);
    expect_bad("max_position_embeddings", "generate --model %s --ids 1 -n 5000", m);
}

Test(cli, bad_model_folders) {
    expect_bad("config.json", "generate --model %s --ids 1", "/nonexistent");
    char *d = copy_fixture("llama-gqa");
    /* truncated weights */
    run_result r = tu_run("truncate -s 300000 %s/model.safetensors", d);
    tu_run_free(&r);
    expect_bad("model.safetensors", "generate --model %s --ids 1", d);
    tu_rmdir(d);
    free(d);

    d = copy_fixture("llama-gqa"); /* config promises a 4th layer the file lacks */
    r = tu_run("sed -i 's/\"num_hidden_layers\": 3/\"num_hidden_layers\": 4/' %s/config.json", d);
    tu_run_free(&r);
    expect_bad("missing tensor model.layers.3", "generate --model %s --ids 1", d);
    tu_rmdir(d);
    free(d);

    d = copy_fixture("llama-gqa"); /* shape mismatch */
    r = tu_run("sed -i 's/\"intermediate_size\": 160/\"intermediate_size\": 128/' %s/config.json", d);
    tu_run_free(&r);
    expect_bad("shape", "generate --model %s --ids 1", d);
    tu_rmdir(d);
    free(d);

    d = copy_fixture("llama-gqa"); /* unknown architecture */
    r = tu_run("sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' %s/config.json", d);
    tu_run_free(&r);
    expect_bad("unsupported architecture", "generate --model %s --ids 1", d);
    tu_rmdir(d);
    free(d);

    d = copy_fixture("mistral-mqa"); /* a shard missing */
    r = tu_run("rm %s/model-00003-of-00008.safetensors", d);
    tu_run_free(&r);
    expect_bad("model-00003-of-00008", "generate --model %s --ids 1", d);
    tu_rmdir(d);
    free(d);
}

Test(cli, failed_logits_leave_no_file) {
    char *d = tu_tmpdir();
    char out[600];
    snprintf(out, sizeof out, "%s/x.npy", d);
    run_result r = tu_run("%s logits -q --model %s/llama-gqa --ids \"1 2 9999\" --out %s",
                          tu_bin(), tu_data(), out);
    cr_expect_eq(r.status, 2);
    cr_expect(access(out, F_OK) != 0, "partial output left behind");
    tu_run_free(&r);
    r = tu_run("ls %s | wc -l", d);
    cr_expect_eq(atoi(r.out), 0, "stray files: %s", r.out);
    tu_run_free(&r);
    tu_rmdir(d);
    free(d);
}

Test(cli, ids_file_and_inline_agree) {
    char *d = tu_tmpdir();
    run_result a = tu_run("%s generate -q --model %s/qwen2-tied --ids \"5 6 7 8\" -n 6", tu_bin(), tu_data());
    run_result w = tu_run("printf '5\\n6  7\\t8\\n' > %s/ids.txt", d);
    run_result b = tu_run("%s generate -q --model %s/qwen2-tied --ids-file %s/ids.txt -n 6", tu_bin(), tu_data(), d);
    cr_expect_eq(a.status, 0);
    cr_expect_eq(b.status, 0);
    cr_expect_str_eq(a.out, b.out);
    cr_expect_eq(count_lines(a.out), 1);
    tu_run_free(&a);
    tu_run_free(&w);
    tu_run_free(&b);
    tu_rmdir(d);
    free(d);
}

/* --threads splits the CPU backend's matrix products and attention rows over threads: logits
 * (chunked prefill, a quantized cache that flushes) and batched generation must not change by
 * a single bit; a bad count is refused. */
Test(cli, threads_do_not_change_results, .timeout = 300) {
    char *d = tu_tmpdir(), model[2048];
    snprintf(model, sizeof model, "%s/models/default", getenv("ASYMKV_SRC"));
    run_result w = tu_run("awk 'BEGIN { for (i = 0; i < 300; i++) "
                          "printf \"%%d \", (i * 37) %% 4000 + 5 }' > %s/ids.txt && "
                          "printf '1 2 3 4 5 6 7\\n40 41 42\\n9 8 7 6 5 4 3 2 1 10 11 12\\n' "
                          "> %s/p.txt", d, d);
    cr_assert_eq(w.status, 0, "%s", w.err);
    tu_run_free(&w);
    const char *kv = "--kv asymkv:2/0 --kv-residual 32";
    for (int t = 1; t <= 3; t += 2) {
        run_result r = tu_run("%s logits -q --backend cpu --model %s --ids-file %s/ids.txt "
                              "--prefill-chunk 160 %s --threads %d --out %s/logits%d.npy",
                              tu_bin(), model, d, kv, t, d, t);
        cr_assert_eq(r.status, 0, "logits --threads %d: %s", t, r.err);
        tu_run_free(&r);
        r = tu_run("%s generate -q --backend cpu --model %s --prompts-file %s/p.txt --batch 3 "
                   "-n 24 %s --threads %d > %s/gen%d.txt", tu_bin(), model, d, kv, t, d, t);
        cr_assert_eq(r.status, 0, "generate --threads %d: %s", t, r.err);
        tu_run_free(&r);
    }
    run_result c = tu_run("cmp %s/logits1.npy %s/logits3.npy && cmp %s/gen1.txt %s/gen3.txt && "
                          "wc -l < %s/gen1.txt", d, d, d, d, d);
    cr_expect_eq(c.status, 0, "results differ between --threads 1 and 3: %s", c.out);
    cr_expect_eq(atoi(c.out), 3, "want 3 generated lines, got: %s", c.out);
    tu_run_free(&c);
    expect_bad("--threads must be 0 (automatic) .. 4096", "logits --model x --ids 1 --out y "
               "--threads %s", "-2");
    tu_rmdir(d);
    free(d);
}
