/* test_text.c — text in, text out on the bundled model: generate --prompt streams exactly the
 * decoded ids, --stop ends at the stop string, a seed reproduces a sampled run (also across
 * rank counts and batch sizes), and batch JSONL keeps order and reports malformed lines. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *model(void) {
    static char m[512];
    snprintf(m, sizeof m, "%s/models/asymkv-ref", getenv("ASYMKV_SRC") ? getenv("ASYMKV_SRC") : ".");
    return m;
}

Test(text, prompt_stream_equals_decoded_ids) {
    run_result a = tu_run("%s generate -q --model %s --prompt 'And God said' -n 24", tu_bin(), model());
    cr_assert_eq(a.status, 0, "%s", a.err);
    run_result ids = tu_run("%s tokenize --tokenizer %s --text 'And God said' --add-special", tu_bin(), model());
    cr_assert_eq(ids.status, 0, "%s", ids.err);
    char *list = ids.out + 1; /* "[0, 12, 34]" -> "0 12 34" */
    for (char *p = list; *p; p++)
        if (*p == ',' || *p == ']') *p = ' ';
    run_result g = tu_run("%s generate -q --model %s --ids '%s' -n 24", tu_bin(), model(), list);
    cr_assert_eq(g.status, 0, "%s", g.err);
    g.out[strcspn(g.out, "\n")] = '\0';
    run_result d = tu_run("%s tokenize --tokenizer %s --decode --ids '%s'", tu_bin(), model(), g.out);
    cr_assert_eq(d.status, 0, "%s", d.err);
    cr_expect(strlen(a.out) > 10, "no text: %s", a.out);
    size_t n = strlen(a.out);
    cr_assert(n > 0 && a.out[n - 1] == '\n');
    a.out[n - 1] = '\0';
    cr_expect_str_eq(a.out, d.out);
    tu_run_free(&a);
    tu_run_free(&ids);
    tu_run_free(&g);
    tu_run_free(&d);
}

Test(text, stop_string_ends_generation) {
    run_result a = tu_run("%s generate -q --model %s --prompt 'Zebra, n.' -n 80 --stop '.'", tu_bin(), model());
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_expect(strchr(a.out, '.') == NULL, "stop string printed: %s", a.out);
    run_result b = tu_run("%s generate -q --model %s --prompt 'Zebra, n.' -n 80", tu_bin(), model());
    cr_expect(strlen(b.out) > strlen(a.out), "did not stop early: %s | %s", a.out, b.out);
    a.out[strcspn(a.out, "\n")] = '\0';
    cr_expect(strncmp(a.out, b.out, strlen(a.out)) == 0, "stopped text is a prefix");
    tu_run_free(&a);
    tu_run_free(&b);
}

Test(text, seeded_sampling_is_reproducible_across_ranks) {
    const char *f = "-q --model %s --prompt 'The LORD' -n 30 --temp 0.9 --top-p 0.9 --seed %d";
    char c1[1024], c2[1024], c3[1024];
    snprintf(c1, sizeof c1, f, model(), 11);
    snprintf(c2, sizeof c2, f, model(), 12);
    snprintf(c3, sizeof c3, f, model(), 11);
    run_result a = tu_run("%s generate %s", tu_bin(), c1);
    run_result b = tu_run("%s generate %s", tu_bin(), c2);
    run_result c = tu_run("mpirun -np 2 %s generate %s", tu_bin(), c3);
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_assert_eq(c.status, 0, "%s", c.err);
    cr_expect_str_eq(a.out, c.out, "2 ranks changed the sample");
    cr_expect(strcmp(a.out, b.out) != 0, "seeds 11 and 12 gave the same text");
    tu_run_free(&a);
    tu_run_free(&b);
    tu_run_free(&c);
}

Test(text, batch_jsonl_order_errors_and_batch_size) {
    char *d = tu_tmpdir();
    char in[600];
    snprintf(in, sizeof in, "%s/in.jsonl", d);
    const char *lines =
        "{\"id\":\"a\",\"prompt\":\"In the beginning\",\"max_tokens\":12}\n"
        "{broken\n"
        "{\"id\":3,\"prompt\":\"Zebra, n.\",\"max_tokens\":30,\"temperature\":0.8,\"seed\":5,\"stop\":[\".\"]}\n"
        "{\"id\":\"x\",\"prompt\":\"The\",\"max_tokens\":0}\n"
        "{\"id\":\"b\",\"prompt\":\"And it came to pass\",\"max_tokens\":16}\n";
    tu_write_file(in, lines, strlen(lines));
    run_result r1 = tu_run("%s batch -q --model %s --input %s --output %s/o1.jsonl --batch 1", tu_bin(), model(), in, d);
    run_result r3 = tu_run("%s batch -q --model %s --input %s --output %s/o3.jsonl --batch 3", tu_bin(), model(), in, d);
    cr_assert_eq(r1.status, 0, "%s", r1.err);
    cr_assert_eq(r3.status, 0, "%s", r3.err);
    char p1[700], p3[700];
    snprintf(p1, sizeof p1, "%s/o1.jsonl", d);
    snprintf(p3, sizeof p3, "%s/o3.jsonl", d);
    char *o1 = tu_read_file(p1, NULL), *o3 = tu_read_file(p3, NULL);
    cr_assert(o1 && o3);
    int n = 0;
    for (char *p = o1; *p; p++) n += *p == '\n';
    cr_expect_eq(n, 5, "one output line per input line: %s", o1);
    cr_expect(strstr(o1, "{\"id\":\"a\",\"text\":") == o1, "order kept: %s", o1);
    cr_expect(strstr(o1, "{\"id\":2,\"error\":") != NULL, "malformed line reported: %s", o1);
    cr_expect(strstr(o1, "\"finish_reason\":\"stop\"") != NULL, "%s", o1);
    cr_expect(strstr(o1, "\"id\":\"x\",\"error\"") != NULL, "%s", o1);
    /* texts do not depend on how many sequences ran together (timings do) */
    char *t1 = strstr(o1, "\"id\":\"b\",\"text\":"), *t3 = strstr(o3, "\"id\":\"b\",\"text\":");
    cr_assert(t1 && t3);
    cr_expect(strncmp(t1, t3, strcspn(t1, ",") + strcspn(t1 + strcspn(t1, ",") + 1, ",")) == 0);
    char *s1 = strstr(o1, "\"id\":3,\"text\":"), *s3 = strstr(o3, "\"id\":3,\"text\":");
    cr_assert(s1 && s3);
    cr_expect(strncmp(s1, s3, strchr(s1 + 14, '"') - s1) == 0, "sampled text differs with --batch");
    free(o1);
    free(o3);
    tu_run_free(&r1);
    tu_run_free(&r3);
    tu_rmdir(d);
    free(d);
}
