/* test_plan.c — the placement planner (dist/plan.c) and `asymkv plan`: optimality against brute
 * force on random small instances, mixed capacities, tied embeddings, the not-fit error, the
 * --layers-per-rank override, the even-split comparison, the built-in shapes and the CLI. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvconfig.h"
#include "plan.h"
#include "shapes.h"
#include "testutil.h"

__extension__ typedef unsigned __int128 u128;

/* ---- brute force, written independently of plan.c from the documented cost model ---- */

typedef struct bf_best {
    size_t num, den; /* largest total / capacity */
    size_t tick;     /* largest per-tick bytes */
    int found;
} bf_best;

static size_t bf_extras(const plan_costs *c, int r, int P) {
    size_t x = 0;
    if (r == 0) x += c->embed;
    if (r == P - 1) x += c->norm + c->logits + (c->tied && P == 1 ? 0 : c->lm_head);
    return x;
}

/* Scores one composition counts[P] and keeps the lexicographic minimum. */
static void bf_score(const plan_costs *c, const size_t *cap, const int *counts, int P,
                     bf_best *b) {
    size_t num = 0, den = 1, tick = 0;
    for (int r = 0, at = 0; r < P; at += counts[r++]) {
        size_t layers = 0;
        for (int l = at; l < at + counts[r]; l++) layers += c->weights[l] + c->kv[l];
        size_t mem = layers + c->workspace + bf_extras(c, r, P);
        size_t t = layers + (r == P - 1 ? c->norm + c->lm_head : 0);
        if ((u128)mem * den > (u128)num * cap[r]) num = mem, den = cap[r];
        if (t > tick) tick = t;
    }
    u128 lhs = (u128)num * b->den, rhs = (u128)b->num * den;
    if (!b->found || lhs < rhs || (lhs == rhs && tick < b->tick))
        *b = (bf_best){num, den, tick, 1};
}

/* Every composition of L layers into P parts of at least lo layers each. */
static void bf_enum(const plan_costs *c, const size_t *cap, int *counts, int r, int P, int left,
                    int lo, bf_best *b) {
    if (r == P - 1) {
        if (left >= lo) {
            counts[r] = left;
            bf_score(c, cap, counts, P, b);
        }
        return;
    }
    for (int k = lo; k <= left - lo * (P - 1 - r); k++) {
        counts[r] = k;
        bf_enum(c, cap, counts, r + 1, P, left - k, lo, b);
    }
}

/* Small numbers make ties (in the fraction and in the tick) frequent, which is the point. */
static void random_instance(plan_costs *c, size_t *cap, int L, int P, unsigned *seed) {
    memset(c, 0, sizeof *c);
    c->n_layers = L;
    int small = rand_r(seed) % 2;
    for (int l = 0; l < L; l++) {
        c->weights[l] = 1 + (size_t)(rand_r(seed) % (small ? 4 : 1000));
        c->kv[l] = (size_t)(rand_r(seed) % (small ? 3 : 1000));
    }
    c->workspace = (size_t)(rand_r(seed) % 50);
    c->embed = (size_t)(rand_r(seed) % 800);
    c->norm = (size_t)(rand_r(seed) % 5);
    c->lm_head = (size_t)(rand_r(seed) % 800);
    c->logits = (size_t)(rand_r(seed) % 100);
    c->tied = rand_r(seed) % 2;
    if (c->tied) c->lm_head = c->embed;
    int mixed = rand_r(seed) % 2;
    for (int r = 0; r < P; r++) cap[r] = 500 + (size_t)(mixed ? rand_r(seed) % 4000 : 1500);
}

/* The result is a valid placement whose numbers agree with the costs. */
static void check_result(const plan_costs *c, const size_t *cap, int P, const plan_result *res) {
    cr_assert_eq(res->n_ranks, P);
    cr_assert_eq(res->begin[0], 0);
    cr_assert_eq(res->end[P - 1], c->n_layers);
    for (int r = 0; r < P; r++) {
        if (r) cr_assert_eq(res->begin[r], res->end[r - 1]);
        if (P <= c->n_layers) cr_assert_gt(res->end[r], res->begin[r], "empty span on rank %d", r);
        size_t mem = c->workspace + bf_extras(c, r, P);
        for (int l = res->begin[r]; l < res->end[r]; l++) mem += c->weights[l] + c->kv[l];
        cr_assert_eq(res->rank[r].total, mem);
        cr_assert_eq(res->rank[r].capacity, cap[r]);
    }
}

Test(plan, optimal_vs_brute_force) {
    unsigned seed = 12345;
    int n_fit = 0, n_nofit = 0, n_empty = 0;
    for (int t = 0; t < 240; t++) {
        plan_costs c;
        size_t cap[4];
        int L = 1 + rand_r(&seed) % 10, P = 1 + rand_r(&seed) % 4, counts[4];
        random_instance(&c, cap, L, P, &seed);
        bf_best b = {0};
        bf_enum(&c, cap, counts, 0, P, L, P > L ? 0 : 1, &b);
        cr_assert(b.found);
        plan_input in = {&c, P, cap, NULL};
        plan_result res;
        akv_err err = {0};
        akv_status st = plan_solve(&in, &res, &err);
        check_result(&c, cap, P, &res);
        const plan_rank *w = &res.rank[res.worst];
        cr_assert(((u128)w->total * b.den == (u128)b.num * w->capacity),
                  "instance %d (L=%d P=%d): planner %zu/%zu, brute force %zu/%zu", t, L, P,
                  w->total, w->capacity, b.num, b.den);
        cr_assert_eq(res.max_tick, b.tick, "instance %d: tick tie-break %zu vs brute force %zu",
                     t, res.max_tick, b.tick);
        int fits = b.num <= b.den;
        cr_assert_eq(st, fits ? AKV_OK : AKV_EINPUT, "instance %d: %s", t, err.msg);
        cr_assert_eq(res.fits, fits);
        n_fit += fits, n_nofit += !fits, n_empty += P > L;
    }
    cr_expect(n_fit > 20 && n_nofit > 20 && n_empty > 5, "coverage: %d fit, %d not, %d P>L",
              n_fit, n_nofit, n_empty);
}

/* A plan_costs with uniform layers, for hand-checked cases. */
static void uniform(plan_costs *c, int L, size_t layer, size_t embed, size_t head, int tied) {
    memset(c, 0, sizeof *c);
    c->n_layers = L;
    for (int l = 0; l < L; l++) c->weights[l] = layer;
    c->embed = embed;
    c->lm_head = tied ? embed : head;
    c->tied = tied;
}

Test(plan, mixed_capacities) {
    plan_costs c;
    uniform(&c, 12, 10, 0, 0, 0);
    size_t cap[3] = {200, 200, 100}; /* the small rank should get half as many layers */
    plan_input in = {&c, 3, cap, NULL};
    plan_result res;
    cr_assert_eq(plan_solve(&in, &res, NULL), AKV_OK);
    cr_expect_eq(res.end[0] - res.begin[0], 5);
    cr_expect_eq(res.end[1] - res.begin[1], 5);
    cr_expect_eq(res.end[2] - res.begin[2], 2);
    cr_expect_float_eq(res.max_frac, 0.25, 1e-12);
    int even[3];
    plan_result e;
    plan_even_counts(12, 3, even);
    cr_assert_eq(plan_evaluate(&in, even, &e, NULL), AKV_OK);
    cr_expect_float_eq(e.max_frac, 0.40, 1e-12);
    cr_expect_eq(e.worst, 2);
}

Test(plan, tied_embeddings) {
    plan_costs c;
    uniform(&c, 8, 100, 300, 0, 1);
    c.norm = 1;
    c.logits = 7;
    size_t cap[2] = {10000, 10000};
    plan_input in = {&c, 2, cap, NULL};
    plan_result res;
    cr_assert_eq(plan_solve(&in, &res, NULL), AKV_OK);
    cr_expect_eq(res.rank[0].extras, 300u);         /* embedding */
    cr_expect_eq(res.rank[1].extras, 300u + 1 + 7); /* its copy as the head + norm + logits */
    cr_expect_eq(res.rank[1].tick - res.rank[1].weights - res.rank[1].kv, 301u);
    /* the head costs as much as the embedding, so the cut stays in the middle */
    cr_expect_eq(res.end[0], 4);
    in.n_ranks = 1; /* one rank holds a single matrix for both ends */
    cr_assert_eq(plan_solve(&in, &res, NULL), AKV_OK);
    cr_expect_eq(res.rank[0].extras, 300u + 1 + 7);
    /* untied: a big head pushes layers to the first rank */
    uniform(&c, 8, 100, 0, 400, 0);
    in.n_ranks = 2;
    cr_assert_eq(plan_solve(&in, &res, NULL), AKV_OK);
    cr_expect_eq(res.end[0], 6);
    cr_expect_eq(res.rank[1].extras, 400u);
}

Test(plan, shapes_tied_head) {
    model_config m;
    kv_config kv;
    cr_assert_eq(shape_lookup("llama-2-7b", &m, NULL), AKV_OK);
    m.tie_embeddings = 1;
    cr_assert_eq(kvcfg_parse(&kv, "fp16", m.n_layers, 2, 32, 128, NULL), AKV_OK);
    plan_deploy d = {4096, 1, 1, 2};
    plan_costs c;
    cr_assert_eq(plan_costs_init(&c, &m, &kv, &d, NULL), AKV_OK);
    size_t embed = 32000u * 4096u * 2u;
    cr_expect_eq(c.lm_head, embed);
    /* the GPU head: norm, the logits of its rows and the sampler's workspace as big */
    cr_expect_eq(plan_extras(&c, 1, 2), embed + 4096 * 2 + 2 * 32000 * 4);
    cr_expect_eq(plan_extras(&c, 0, 1), embed + 4096 * 2 + 2 * 32000 * 4);
}

Test(plan, not_fit_names_rank_and_bytes) {
    plan_costs c;
    uniform(&c, 4, 100, 50, 0, 0);
    size_t cap[2] = {1000, 180}; /* rank 1 needs at least one layer: 100 bytes, fits; 2: 200 */
    plan_input in = {&c, 2, cap, NULL};
    plan_result res;
    akv_err err = {0};
    cr_assert_eq(plan_solve(&in, &res, &err), AKV_OK, "%s", err.msg);
    cr_expect_eq(res.end[0], 3);
    cap[1] = 90; /* now rank 1 cannot hold its one layer */
    cr_assert_eq(plan_solve(&in, &res, &err), AKV_EINPUT);
    cr_expect_eq(res.worst, 1);
    cr_expect(strstr(err.msg, "rank 1 needs") && strstr(err.msg, "(100 bytes)") &&
              strstr(err.msg, "(90 bytes) available"), "%s", err.msg);
}

Test(plan, layers_override) {
    plan_costs c;
    uniform(&c, 6, 10, 0, 0, 0);
    size_t cap[3] = {100, 100, 100};
    int counts[3];
    akv_err err = {0};
    cr_assert_eq(plan_parse_counts("1,3,2", 3, 6, "--layers-per-rank", counts, &err), AKV_OK);
    plan_input in = {&c, 3, cap, counts};
    plan_result res;
    cr_assert_eq(plan_solve(&in, &res, &err), AKV_OK);
    cr_expect(res.begin[1] == 1 && res.end[1] == 4 && res.end[2] == 6);
    cr_expect_eq(plan_parse_counts("1,3,3", 3, 6, "--layers-per-rank", counts, &err), AKV_EINPUT);
    cr_expect(strstr(err.msg, "sum to 7") && strstr(err.msg, "6 layers"), "%s", err.msg);
    akv_err_clear(&err);
    cr_expect_eq(plan_parse_counts("3,3", 3, 6, "--layers-per-rank", counts, &err), AKV_EINPUT);
    akv_err_clear(&err);
    cr_expect_eq(plan_parse_counts("0,3,3", 3, 6, "--layers-per-rank", counts, &err), AKV_EINPUT);
    cap[0] = 5; /* an override that does not fit says so */
    in.layers = (int[]){1, 3, 2};
    akv_err_clear(&err);
    cr_expect_eq(plan_solve(&in, &res, &err), AKV_EINPUT);
    cr_expect(strstr(err.msg, "rank 0 needs") && strstr(err.msg, "given layer counts"), "%s",
              err.msg);
}

Test(plan, more_ranks_than_layers) {
    plan_costs c;
    uniform(&c, 2, 10, 0, 0, 0);
    size_t cap[4] = {100, 100, 100, 100};
    plan_input in = {&c, 4, cap, NULL};
    plan_result res;
    cr_assert_eq(plan_solve(&in, &res, NULL), AKV_OK);
    int used = 0;
    for (int r = 0; r < 4; r++) used += res.end[r] > res.begin[r];
    cr_expect_eq(used, 2);
}

Test(plan, parse_sizes) {
    size_t b[3];
    akv_err err = {0};
    cr_assert_eq(plan_parse_sizes("80G", 3, "--mem-per-rank", b, &err), AKV_OK);
    cr_expect(b[0] == (80ull << 30) && b[2] == (80ull << 30));
    cr_assert_eq(plan_parse_sizes("141GB,40000M,123", 3, "--mem-per-rank", b, &err), AKV_OK);
    cr_expect(b[0] == 141000000000ull && b[1] == 40000ull << 20 && b[2] == 123);
    cr_assert_eq(plan_parse_sizes("1.5GiB", 1, "--mem-per-rank", b, &err), AKV_OK);
    cr_expect_eq(b[0], 3ull << 29);
    const char *bad[] = {"80X", "", "0", "-5G", "80G,80G", "G", "80G,,80G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        akv_err_clear(&err);
        cr_expect_eq(plan_parse_sizes(bad[i], 3, "--mem-per-rank", b, &err), AKV_EINPUT, "%s",
                     bad[i]);
        cr_expect(strstr(err.msg, "--mem-per-rank"), "%s", err.msg);
    }
}

/* Published parameter counts of each checkpoint: weights + embedding + head + norm. */
Test(plan, shapes_match_published_sizes) {
    static const struct { const char *name; size_t params; } S[] = {
        {"llama-2-7b", 6738415616ull}, {"llama-2-13b", 13015864320ull},
        {"llama-3-8b", 8030261248ull}, {"llama-3-70b", 70553706496ull},
        {"mistral-7b", 7241732096ull}, {"qwen2-7b", 7615616512ull}};
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
        model_config m;
        kv_config kv;
        plan_costs c;
        cr_assert_eq(shape_lookup(S[i].name, &m, NULL), AKV_OK);
        cr_assert(strstr(shape_names(), S[i].name));
        cr_assert_eq(kvcfg_parse(&kv, "fp16", m.n_layers, 2, 32, 128, NULL), AKV_OK);
        plan_deploy d = {1024, 1, 1, 1};
        cr_assert_eq(plan_costs_init(&c, &m, &kv, &d, NULL), AKV_OK);
        size_t p = c.embed + c.lm_head + c.norm;
        for (int l = 0; l < c.n_layers; l++) p += c.weights[l];
        cr_expect_eq(p, S[i].params, "%s: %zu params, published %zu", S[i].name, p, S[i].params);
    }
    model_config m;
    akv_err err = {0};
    cr_expect_eq(shape_lookup("llama-9", &m, &err), AKV_EINPUT);
    cr_expect(strstr(err.msg, "llama-3-70b") && strstr(err.msg, "qwen2-7b"), "%s", err.msg);
}

/* Design §4: Llama-2-7B fp16 costs 512 KiB per token; kvcfg_layer_bytes is what is placed. */
Test(plan, kv_bytes_follow_kvconfig) {
    model_config m;
    kv_config kv;
    plan_costs c;
    cr_assert_eq(shape_lookup("llama-2-7b", &m, NULL), AKV_OK);
    cr_assert_eq(kvcfg_parse(&kv, "fp16", 32, 2, 32, 128, NULL), AKV_OK);
    plan_deploy d = {4096, 3, 256, 2};
    cr_assert_eq(plan_costs_init(&c, &m, &kv, &d, NULL), AKV_OK);
    size_t total = 0;
    for (int l = 0; l < 32; l++) total += c.kv[l];
    cr_expect_eq(total, 512ull * 1024 * 4096 * 3);
}

/* Solves a shape at a deployment; returns plan_solve's status. */
static akv_status solve_shape(const char *shape, const char *spec, int P, size_t cap_each,
                              int ctx, int batch, plan_result *res) {
    model_config m;
    kv_config kv;
    static plan_costs c;
    size_t cap[PLAN_MAX_RANKS];
    cr_assert_eq(shape_lookup(shape, &m, NULL), AKV_OK);
    cr_assert_eq(kvcfg_parse(&kv, spec, m.n_layers, 2, 32, 128, NULL), AKV_OK);
    plan_deploy d = {ctx, batch, batch > 256 ? batch : 256, 2};
    cr_assert_eq(plan_costs_init(&c, &m, &kv, &d, NULL), AKV_OK);
    for (int r = 0; r < P; r++) cap[r] = cap_each;
    plan_input in = {&c, P, cap, NULL};
    return plan_solve(&in, res, NULL);
}

Test(plan, kv_config_changes_the_plan) {
    plan_result res;
    size_t G = 1ull << 30;
    /* llama-3-70b, 4 x 140G, ctx 128k x 16: fp16 needs ~194 GiB per rank, asymkv:80/0 ~59 */
    cr_expect_eq(solve_shape("llama-3-70b", "fp16", 4, 140 * G, 131072, 16, &res), AKV_EINPUT);
    cr_expect_gt(res.max_frac, 1.3);
    cr_expect_eq(solve_shape("llama-3-70b", "asymkv:80/0", 4, 140 * G, 131072, 16, &res),
                 AKV_OK);
    cr_expect_lt(res.max_frac, 0.5);
    /* 2-bit keys on the first 16 layers only: those carry more KV, so rank 0 takes fewer */
    cr_assert_eq(solve_shape("llama-3-8b", "fp16", 2, 80 * G, 131072, 8, &res), AKV_OK);
    int fp16_rank0 = res.end[0];
    cr_assert_eq(solve_shape("llama-3-8b", "asymkv:16/0", 2, 80 * G, 131072, 8, &res), AKV_OK);
    cr_expect_lt(res.end[0], fp16_rank0, "asymkv:16/0 rank 0 holds %d layers, fp16 %d",
                 res.end[0], fp16_rank0);
}

/* ---- the command ---- */

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void expect_exit2(const char *want, const char *args) {
    run_result r = tu_run("%s plan %s", tu_bin(), args);
    cr_expect_eq(r.status, 2, "`plan %s` exited %d (stderr: %s)", args, r.status, r.err);
    cr_expect_eq(count_lines(r.err), 1, "`plan %s`: want one stderr line: %s", args, r.err);
    cr_expect(strstr(r.err, want), "`plan %s`: stderr lacks \"%s\": %s", args, want, r.err);
    tu_run_free(&r);
}

Test(plan_cli, table_for_two_ranks) {
    run_result r = tu_run("%s plan --shape llama-3-8b --ranks 2 --ctx 8192 --batch 4", tu_bin());
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strstr(r.out, "\n   0  0-") && strstr(r.out, "\n   1  "), "%s", r.out);
    cr_expect(strstr(r.out, "-31 "), "the last rank ends at layer 31: %s", r.out);
    cr_expect(strstr(r.out, "even split") && strstr(r.out, "planned"), "%s", r.out);
    cr_expect(strstr(r.out, "16.00 bits/value") && strstr(r.out, "128.00 KiB"), "%s", r.out);
    cr_expect(strstr(r.out, "default 80G"), "%s", r.out);
    tu_run_free(&r);
}

Test(plan_cli, config_only_model_folder) {
    char *d = tu_tmpdir();
    run_result r = tu_run("cp %s/llama-gqa/config.json %s/", tu_data(), d);
    cr_assert_eq(r.status, 0);
    tu_run_free(&r);
    r = tu_run("%s plan --model %s --ranks 3 --ctx 64 --mem-per-rank 1G", tu_bin(), d);
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(strstr(r.out, "\n   2  "), "%s", r.out);
    tu_run_free(&r);
    tu_rmdir(d);
    free(d);
}

Test(plan_cli, bad_input_exits_2) {
    expect_exit2("unknown model shape", "--shape llama-9b --ranks 2");
    expect_exit2("--mem-per-rank", "--shape llama-3-8b --ranks 2 --mem-per-rank 80X");
    expect_exit2("one per rank", "--shape llama-3-8b --ranks 3 --mem-per-rank 80G,40G");
    expect_exit2("exactly one of --model", "--ranks 2");
    expect_exit2("sum to 30", "--shape llama-3-8b --ranks 3 --layers-per-rank 10,10,10");
    expect_exit2("max_position_embeddings", "--shape llama-2-7b --ctx 8192");
    expect_exit2("--kv", "--shape llama-2-7b --kv kivi3");
}

Test(plan_cli, job_that_cannot_fit) {
    const char *a = "--shape llama-3-70b --ranks 4 --mem-per-rank 140G --ctx 131072 --batch 16";
    run_result r = tu_run("%s plan %s --kv fp16", tu_bin(), a);
    cr_expect_eq(r.status, 2);
    cr_expect_eq(count_lines(r.err), 1, "%s", r.err);
    cr_expect(strstr(r.err, "does not fit: rank ") && strstr(r.err, "bytes) available"), "%s",
              r.err);
    cr_expect(strstr(r.out, "does not fit"), "the table still shows the best placement");
    tu_run_free(&r);
    r = tu_run("%s plan %s --kv asymkv:80/0", tu_bin(), a);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(!strstr(r.out, "does not fit"), "%s", r.out);
    tu_run_free(&r);
}
