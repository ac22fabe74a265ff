/* test_stage_emu.c — the CUDA backend's host logic (runtime/stage_cuda.c: the arena, the
 * per-call tables, the host mirror of every sequence's cache counts, prefill commits, decode
 * appends and flushes, device sampling plumbing) run on the CPU, with every CUDA launcher
 * replaced by the CPU twin its kernel is tested against (tests/emu/). CI has no GPU; this is
 * how the CUDA stage's own logic is tested there, against the CPU backend:
 *   - decode path (every position but the first fed one token at a time): the emulated launchers
 *     compute what the CPU backend computes: quantized configs agree to 1e-5 of the logit range
 *     (measured: exactly), greedy tokens equal; fp16 to 2e-4 (measured 2e-5 .. 6e-5: the
 *     emulated fp16 attention is attention_ref, the CPU backend's is kvattn_ref, whose
 *     exponentials and sums are ordered differently, and these random-weight models amplify it);
 *   - prefill commits (chunks of 13 up to position T/2, decode after): prefill over a compressed
 *     layer reads the stored positions dequantized to fp16 (2^-11 relative), where the CPU uses
 *     the exact dequantized values, so quantized configs get 1e-2; fp16 stays at 2e-4;
 *   - a decode step waits on the host only for the sampled ids;
 *   - a stage that does not fit the GPU is refused with the bytes needed and free. */
#include <unistd.h>

#include "cuda_runtime.h"
#include "model_compare.h"

/* The emulation computes what the CPU backend computes: everything must agree exactly (the
 * tolerances only allow for libm differences between the two paths' float operations). */
static const cmp_opts DECODE = {.tag = "stage_emu", .tol_fp16 = 1e-6, .tol_quant = 1e-6,
                                .tol_quant_mean = 1e-6, .min_agree = 1.0, .tol_nll = 1e-6,
                                .greedy_quant = 1, .chunk = 13, .decode_from = 1};
static const cmp_opts PREFILL = {.tag = "stage_emu", .tol_fp16 = 1e-6, .tol_quant = 1e-6,
                                 .tol_quant_mean = 1e-6, .min_agree = 1.0, .tol_nll = 1e-6,
                                 .greedy_quant = 1, .chunk = 13, .decode_from = 100};

Test(stage_emu, decode_path_matches_cpu, .timeout = 600) {
    const char *fx[] = {"llama-gqa", "mistral-mqa", "qwen2-tied"};
    for (int i = 0; i < 3; i++) cr_expect(compare_fixture(fx[i], &DECODE) >= 2, "%s", fx[i]);
}

Test(stage_emu, prefill_commits_match_cpu, .timeout = 600) {
    const char *fx[] = {"llama-gqa", "mistral-mqa", "qwen2-tied"};
    for (int i = 0; i < 3; i++) cr_expect(compare_fixture(fx[i], &PREFILL) >= 2, "%s", fx[i]);
}

/* The real kernel's input rounding (fp16 dense rows in prefill): how far two correct
 * implementations of a quantized cache drift apart, judged as tests/gpu_model.c judges the GPU
 * (against the fp16 cache; model_compare.h). */
Test(stage_emu, rounded_prefill_drift, .timeout = 900) {
    emu_rounded_dense = 1;
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/models/default", getenv("ASYMKV_SRC"));
    int T = 0;
    int32_t *ids = reference_ids(dir, 700, &T);
    cmp_opts co = {.tag = "stage_emu_rounded", .tol_fp16 = 1e-6, .tol_quant = 0,
                   .tol_quant_mean = 0.15, .min_agree = 0.8, .tol_nll = 0.05, .greedy_quant = 0,
                   .chunk = 37, .decode_from = T / 2, .judge_fp16 = 1, .agree_margin = 0.1,
                   .rel_ratio = 1.25, .rel_slack = 0.02, .nll_se_k = 4, .stable_agree = 0.9};
    cr_expect(compare_model("asymkv-ref", dir, ids, T, ids, 48, &co) == 8, "configs skipped");
    free(ids);
}

Test(stage_emu, reference_model, .timeout = 900) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/models/default", getenv("ASYMKV_SRC"));
    int T = 0;
    int32_t *ids = reference_ids(dir, 700, &T);
    cr_assert(T > 150, "only %d ids", T);
    cmp_opts co = PREFILL;
    co.decode_from = T / 2;
    co.chunk = 37;
    cr_expect(compare_model("asymkv-ref", dir, ids, T, ids, 48, &co) == 8, "configs skipped");
    free(ids);
}

static engine_t *open_emu(const char *fx, const char *kv_spec, kv_config *kv, akv_err *err,
                          akv_status *st) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/%s", tu_data(), fx);
    model_config cfg;
    cr_assert_eq(config_load(&cfg, dir, err), AKV_OK, "%s", err->msg);
    cr_assert_eq(kvcfg_parse(kv, kv_spec, cfg.n_layers, 2, 32, 32, err), AKV_OK, "%s", err->msg);
    engine_opts o = {.model_dir = strdup(dir), .ctx = 300, .batch = 3, .prefill_chunk = 16,
                     .kv = kv, .backend = STAGE_CUDA, .device = 0};
    engine_t *e = NULL;
    *st = engine_open(&e, &o, err);
    return e;
}

/* Greedy generation: the only host waits are one per sampled token (the ids coming back). */
Test(stage_emu, decode_waits_only_for_ids) {
    kv_config kv;
    akv_err err = {0};
    akv_status st;
    engine_t *e = open_emu("mistral-mqa", "asymkv:1/0", &kv, &err, &st);
    cr_assert_eq(st, AKV_OK, "%s", err.msg);
    int32_t prompt[40], out[64];
    for (int i = 0; i < 40; i++) prompt[i] = (i * 37 + 11) % 250;
    int n_out = 0;
    const long before = emu_host_syncs;
    cr_assert_eq(engine_generate(e, prompt, 40, 64, out, &n_out, NULL, NULL, NULL, &err), AKV_OK,
                 "%s", err.msg);
    const long waits = emu_host_syncs - before;
    printf("stage_emu: %d tokens generated with %ld host waits\n", n_out, waits);
    cr_expect_eq(waits, n_out, "%ld host waits for %d sampled tokens", waits, n_out);
    cr_expect_eq(engine_backend(e), STAGE_CUDA);
    size_t want = 0;
    for (int l = 0; l < kv.n_layers; l++)
        want += kvcfg_layer_bytes(&kv, l, engine_config(e)->n_kv_heads, engine_config(e)->head_dim,
                                  300, 3);
    cr_expect_eq(engine_kv_bytes(e), want, "KV bytes %zu, formula %zu", engine_kv_bytes(e), want);
    engine_close(e);
}

Test(stage_emu, too_big_for_the_gpu_is_refused) {
    kv_config kv;
    akv_err err = {0};
    akv_status st;
    const size_t saved = emu_free_bytes;
    emu_free_bytes = 64 << 10;
    engine_t *e = open_emu("llama-gqa", "fp16", &kv, &err, &st);
    emu_free_bytes = saved;
    cr_expect_neq(st, AKV_OK);
    cr_expect(e == NULL);
    cr_expect(strstr(err.msg, "free") && strstr(err.msg, "lower --ctx"), "message: %s", err.msg);
}

/* ---- the caches themselves: layer 0 sees identical keys and values on both backends (its
 * inputs are the embeddings), so its stored cache must be bit-identical after any mix of
 * prefill chunks and decode steps over several sequences: every key-block flush, value flush and
 * window write of the CUDA stage's prefill commits and decode appends is checked here. ---- */

#include "safetensors.h"
#include "stage.h"

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

/* Feeds the same tokens to both stages: n tokens of the given slots (contiguous runs). */
static void feed(stage_t *a, stage_t *b, int n, const int32_t *seq, uint32_t *rng, int vocab,
                 int hidden, float *xa, float *xb) {
    akv_err err = {0};
    int32_t ids[64];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(lcg(rng) >> 8) % vocab;
    cr_assert_eq(stage_embed(a, ids, n, xa, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(stage_embed(b, ids, n, xb, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(stage_forward(a, n, seq, xa, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(stage_forward(b, n, seq, xb, &err), AKV_OK, "%s", err.msg);
    (void)hidden;
}

static void check_caches(const char *model, const char *spec) {
    char dir[2048];
    if (!strcmp(model, "default")) snprintf(dir, sizeof dir, "%s/models/default", getenv("ASYMKV_SRC"));
    else snprintf(dir, sizeof dir, "%s/%s", tu_data(), model);
    akv_err err = {0};
    model_config cfg;
    cr_assert_eq(config_load(&cfg, dir, &err), AKV_OK, "%s", err.msg);
    kv_config kv;
    cr_assert_eq(kvcfg_parse(&kv, spec, cfg.n_layers, 2, 32, 32, &err), AKV_OK, "%s", err.msg);
    st_model *st = NULL;
    cr_assert_eq(st_open_dir(&st, dir, &err), AKV_OK, "%s", err.msg);
    stage_weights w;
    memset(&w, 0, sizeof w);
    cr_assert_eq(weights_load(&w, &cfg, st, 0, cfg.n_layers, 1, 1, &err), AKV_OK, "%s", err.msg);
    const int S = 3, ctx = 300, T = 40, H = cfg.hidden;
    stage_opts o = {.n_seq = S, .ctx = ctx, .max_tokens = T, .kv = &kv, .backend = STAGE_CPU};
    stage_t *cpu = NULL, *gpu = NULL;
    cr_assert_eq(stage_init(&cpu, &cfg, &w, &o, &err), AKV_OK, "%s", err.msg);
    o.backend = STAGE_CUDA;
    cr_assert_eq(stage_init(&gpu, &cfg, &w, &o, &err), AKV_OK, "%s", err.msg);
    float *xa = NULL, *xb = NULL;
    cr_assert_eq(stage_act_alloc(cpu, (size_t)T * H, &xa, &err), AKV_OK);
    cr_assert_eq(stage_act_alloc(gpu, (size_t)T * H, &xb, &err), AKV_OK);
    uint32_t rng = 12345;
    /* prefill: slot 0 in chunks of 13 and 40 (crossing R = 32 mid-chunk), slot 1 one chunk of
     * 7, slot 2 chunks of 31, 33, 1 and 29; a mixed call (a chunk of slot 1 then a decode token
     * of slot 0 and of slot 2); then 120 decode steps of all three */
    const int plan[][2] = {{0, 13}, {0, 40}, {1, 7}, {2, 31}, {2, 33}, {2, 1}, {0, 40}, {2, 29}};
    int32_t seq[64];
    for (size_t p = 0; p < sizeof plan / sizeof plan[0]; p++) {
        for (int i = 0; i < plan[p][1]; i++) seq[i] = plan[p][0];
        feed(cpu, gpu, plan[p][1], seq, &rng, cfg.vocab_size, H, xa, xb);
    }
    for (int i = 0; i < 5; i++) seq[i] = 1;
    seq[5] = 0, seq[6] = 2;
    feed(cpu, gpu, 7, seq, &rng, cfg.vocab_size, H, xa, xb);
    for (int step = 0; step < 120; step++) {
        seq[0] = 0, seq[1] = 1, seq[2] = 2;
        feed(cpu, gpu, 3, seq, &rng, cfg.vocab_size, H, xa, xb);
    }
    const size_t KD = (size_t)cfg.n_kv_heads * cfg.head_dim;
    uint16_t *ka = malloc((size_t)ctx * KD * 2), *va = malloc((size_t)ctx * KD * 2);
    uint16_t *kb = malloc((size_t)ctx * KD * 2), *vb = malloc((size_t)ctx * KD * 2);
    for (int l = 0; l < cfg.n_layers; l++)
        for (int q = 0; q < S; q++) {
            const int la = stage_kv_dump(cpu, l, q, ka, va, &err);
            const int lb = stage_kv_dump(gpu, l, q, kb, vb, &err);
            cr_assert(la > 0 && la == lb, "layer %d slot %d: lengths %d / %d", l, q, la, lb);
            long diff = 0;
            double worst = 0;
            for (size_t i = 0; i < (size_t)la * KD; i++) {
                diff += (ka[i] != kb[i]) + (va[i] != vb[i]);
                worst = fmax(worst, fabs(akv_f16_to_f32(ka[i]) - akv_f16_to_f32(kb[i])));
                worst = fmax(worst, fabs(akv_f16_to_f32(va[i]) - akv_f16_to_f32(vb[i])));
            }
            if (q == 0 || diff)
                printf("stage_emu: %s --kv %s layer %d slot %d (len %d): %ld of %zu cached "
                       "values differ (max %.3g)\n", model, spec, l, q, la, diff,
                       2 * (size_t)la * KD, worst);
            if (l == 0)
                cr_expect_eq(diff, 0, "%s --kv %s: layer 0 slot %d: %ld cached values differ",
                             model, spec, q, diff);
        }
    free(ka), free(va), free(kb), free(vb);
    stage_act_free(cpu, xa);
    stage_act_free(gpu, xb);
    stage_free(cpu);
    stage_free(gpu);
    weights_free(&w);
    st_close(st);
}

Test(stage_emu, caches_bit_identical, .timeout = 600) {
    const char *specs[] = {"fp16", "kivi4", "kivi2", "asymkv:1/0", "k=1x2;v=1x2", "k=1x2;v=16x2",
                           "k=16x2;v=1x2", "k=4x1,2x1;v=2x1,4x1"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) check_caches("mistral-mqa", specs[i]);
    check_caches("default", "asymkv:2/0");
    check_caches("default", "kivi2");
}

/* What the planner counts for a GPU rank (weights + KV + workspace + extras) covers what the
 * CUDA stage's arena takes, so a plan that fits is not refused at allocation. */
#include "plan.h"

Test(stage_emu, arena_within_the_plan) {
    const char *specs[] = {"fp16", "asymkv:2/0", "kivi4"};
    const int shapes[][3] = {{2048, 8, 256}, {2048, 1, 512}, {300, 16, 16}}; /* ctx, batch, chunk */
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/models/default", getenv("ASYMKV_SRC"));
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++) {
            akv_err err = {0};
            model_config cfg;
            kv_config kv;
            cr_assert_eq(config_load(&cfg, dir, &err), AKV_OK, "%s", err.msg);
            cr_assert_eq(kvcfg_parse(&kv, specs[i], cfg.n_layers, 2, 32, 128, &err), AKV_OK);
            const int ctx = shapes[j][0], batch = shapes[j][1], chunk = shapes[j][2];
            engine_opts o = {.model_dir = dir, .ctx = ctx, .batch = batch, .prefill_chunk = chunk,
                             .kv = &kv, .backend = STAGE_CUDA};
            engine_t *e = NULL;
            cr_assert_eq(engine_open(&e, &o, &err), AKV_OK, "%s", err.msg);
            plan_costs pc;
            plan_deploy d = {ctx, batch, chunk > batch ? chunk : batch, 2};
            cr_assert_eq(plan_costs_init(&pc, &cfg, &kv, &d, &err), AKV_OK);
            size_t cap = (size_t)1 << 60;
            int counts[1] = {cfg.n_layers};
            plan_input in = {&pc, 1, &cap, NULL};
            plan_result pr;
            cr_assert_eq(plan_evaluate(&in, counts, &pr, &err), AKV_OK);
            const size_t arena = engine_device_bytes(e);
            printf("stage_emu: --kv %s ctx %d batch %d chunk %d: arena %zu bytes, planned %zu "
                   "(weights %zu + KV %zu + workspace %zu + extras %zu)\n", specs[i], ctx, batch,
                   chunk, arena, pr.rank[0].total, pr.rank[0].weights, pr.rank[0].kv,
                   pr.rank[0].workspace, pr.rank[0].extras);
            cr_expect(arena > 0 && arena <= pr.rank[0].total,
                      "--kv %s ctx %d batch %d: the arena (%zu) exceeds the plan (%zu)", specs[i],
                      ctx, batch, arena, pr.rank[0].total);
            engine_close(e);
        }
}
