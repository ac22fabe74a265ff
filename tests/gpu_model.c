/* gpu_model.c — the whole model on the CUDA backend against the CPU backend (the scalar twins),
 * on the golden fixtures (Llama GQA, Mistral MQA, Qwen2 with biases and tied embeddings) and the
 * bundled reference model, for every kind of --kv config the model's head_dim allows.
 *
 * Each case runs the same ids through both backends with the same cache config: positions
 * [0, T/2) prefilled in chunks (the chunk boundaries fall off the group and window boundaries,
 * so prefill commits quantize key blocks and values), positions [T/2, T) one token at a time
 * through the decode path (fused compressed attention, device appends and flushes). A small
 * residual window (R = G = 32) makes most of the cache quantized. Then 16 greedy tokens.
 *
 * Tolerances: the CUDA backend rounds activations to bf16 in every GEMM (2^-9 relative per
 * input) and feeds attention fp16 Q/P; with the same bf16 weights that gives logits within
 * ~1% of the logit range on an unquantized cache (TOL_FP16). A quantized cache amplifies it:
 * a 1-bit code decides between the group's min and max, so a key lying on a rounding boundary
 * may take the other code on the GPU; TOL_QUANT allows for a few such flips. Greedy tokens must
 * be identical (a flip of a near-tie would show as a failure with its margin printed).
 * Every case prints its figures ("gpu_model: ...") for scripts/gpu-check.sh's table. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "gpu_util.h"
#include "kvconfig.h"
#include "testutil.h"

#define TOL_FP16 2e-2
#define TOL_QUANT 6e-2
#define N_GREEDY 16

typedef struct run_out {
    float *logits; /* [T][V] */
    int32_t greedy[N_GREEDY];
    int n_greedy;
} run_out;

static void run_backend(const char *dir, const kv_config *kv, stage_backend be, const int32_t *ids,
                        int T, const int32_t *prompt, int Tp, int V, run_out *o) {
    akv_err err = {0};
    engine_t *e = NULL;
    engine_opts opts = {.model_dir = dir, .ctx = T + N_GREEDY + 8, .batch = 2, .prefill_chunk = 13,
                        .micro_batches = 0, .layers = NULL, .comm = NULL, .kv = kv,
                        .diag = 0, .backend = be, .device = 0};
    cr_assert_eq(engine_open(&e, &opts, &err), AKV_OK, "%s: engine_open(%s): %s", dir,
                 be == STAGE_CUDA ? "cuda" : "cpu", err.msg);
    o->logits = xmalloc((size_t)T * V * sizeof(float));
    cr_assert_eq(engine_logits_ex(e, ids, T, T / 2, o->logits, &err), AKV_OK, "%s: logits: %s",
                 dir, err.msg);
    cr_assert_eq(engine_generate(e, prompt, Tp, N_GREEDY, o->greedy, &o->n_greedy, NULL, NULL,
                                 NULL, &err),
                 AKV_OK, "%s: generate: %s", dir, err.msg);
    engine_close(e);
}

/* Largest |gpu - cpu| over all logits relative to the largest |cpu| logit. */
static double rel_err(const float *a, const float *b, size_t n, double *max_abs) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(b[i]), "non-finite GPU logit at %zu", i);
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)a[i]));
    }
    *max_abs = d;
    return d / (m > 0 ? m : 1);
}

/* Runs every config of `specs` that the model's head_dim allows; returns how many ran. */
static int check_model(const char *name, const char *dir, const int32_t *ids, int T,
                       const int32_t *prompt, int Tp, const char *const *specs) {
    model_config cfg;
    akv_err err = {0};
    cr_assert_eq(config_load(&cfg, dir, &err), AKV_OK, "%s: %s", name, err.msg);
    const int V = cfg.vocab_size;
    int ran = 0;
    for (int i = 0; specs[i]; i++) {
        kv_config kv;
        cr_assert_eq(kvcfg_parse(&kv, specs[i], cfg.n_layers, 2, 32, 32, &err), AKV_OK,
                     "%s: --kv %s: %s", name, specs[i], err.msg);
        if (kvcfg_check_head_dim(&kv, cfg.head_dim, &err) != AKV_OK) continue; /* V needs D%G */
        run_out c = {0}, g = {0};
        run_backend(dir, &kv, STAGE_CPU, ids, T, prompt, Tp, V, &c);
        run_backend(dir, &kv, STAGE_CUDA, ids, T, prompt, Tp, V, &g);
        double abs_err;
        const double rel = rel_err(c.logits, g.logits, (size_t)T * V, &abs_err);
        int same = c.n_greedy == g.n_greedy, first_diff = -1;
        for (int t = 0; same && t < c.n_greedy; t++)
            if (c.greedy[t] != g.greedy[t]) same = 0, first_diff = t;
        const int quant = strcmp(specs[i], "fp16") != 0;
        printf("gpu_model: %-12s kv %-22s T %3d  max|dlogit| %.3e  rel %.3e (tol %.0e)  greedy "
               "%d/%d %s\n", name, specs[i], T, abs_err, rel, quant ? TOL_QUANT : TOL_FP16,
               same ? c.n_greedy : first_diff, c.n_greedy, same ? "equal" : "DIFFER");
        fflush(stdout);
        cr_expect(rel <= (quant ? TOL_QUANT : TOL_FP16),
                  "%s --kv %s: GPU logits differ from the CPU backend by %.3e of the range", name,
                  specs[i], rel);
        cr_expect(same, "%s --kv %s: greedy tokens differ at step %d (cpu %d, gpu %d)", name,
                  specs[i], first_diff, first_diff >= 0 ? c.greedy[first_diff] : -1,
                  first_diff >= 0 ? g.greedy[first_diff] : -1);
        free(c.logits);
        free(g.logits);
        ran++;
    }
    return ran;
}

/* Every config, spelled for a model of L layers: fp16, KIVI 4/2, AsymKV l_k = 1, all 1-bit, keys
 * only 1-bit, values only 1-bit, and a per-layer mix. */
static void specs_for(int L, char buf[8][64], const char *out[9]) {
    snprintf(buf[0], 64, "fp16");
    snprintf(buf[1], 64, "kivi4");
    snprintf(buf[2], 64, "kivi2");
    snprintf(buf[3], 64, "asymkv:1/0");
    snprintf(buf[4], 64, "k=1x%d;v=1x%d", L, L);
    snprintf(buf[5], 64, "k=1x%d;v=16x%d", L, L);
    snprintf(buf[6], 64, "k=16x%d;v=1x%d", L, L);
    snprintf(buf[7], 64, "k=4x1,16x%d;v=2x1,1x%d", L - 1, L - 1);
    for (int i = 0; i < 8; i++) out[i] = buf[i];
    out[8] = NULL;
}

static void fixture(const char *fx) {
    REQUIRE_GPU();
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/%s", tu_data(), fx);
    int T = 0, Tp = 0;
    snprintf(path, sizeof path, "%s/ids.txt", dir);
    int32_t *ids = tu_read_ids(path, &T);
    snprintf(path, sizeof path, "%s/greedy_prompt.txt", dir);
    int32_t *prompt = tu_read_ids(path, &Tp);
    cr_assert(ids && prompt && T > 64 && Tp > 0, "%s: fixture ids missing", fx);
    model_config cfg;
    akv_err err = {0};
    cr_assert_eq(config_load(&cfg, dir, &err), AKV_OK, "%s", err.msg);
    char buf[8][64];
    const char *specs[9];
    specs_for(cfg.n_layers, buf, specs);
    cr_expect(check_model(fx, dir, ids, T, prompt, Tp, specs) >= 2, "%s: too few configs ran", fx);
    free(ids);
    free(prompt);
}

Test(gpu_model, llama_gqa) { fixture("llama-gqa"); }
Test(gpu_model, mistral_mqa) { fixture("mistral-mqa"); }
Test(gpu_model, qwen2_tied) { fixture("qwen2-tied"); }

/* The bundled reference model on its held-out text (tokenized by asymkv itself). */
Test(gpu_model, reference_model, .timeout = 600) {
    REQUIRE_GPU();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/default", getenv("ASYMKV_SRC"));
    run_result r = tu_run("head -c 1500 '%s/heldout.txt' > /tmp/gpu_model_text.txt && '%s' "
                          "tokenize --tokenizer '%s' --file /tmp/gpu_model_text.txt", dir,
                          tu_bin(), dir);
    cr_assert_eq(r.status, 0, "tokenize failed: %s", r.err);
    int32_t *ids = xmalloc(4096 * sizeof(int32_t));
    int T = 0;
    for (char *p = r.out; *p && T < 4096;) {
        while (*p && (*p < '0' || *p > '9')) p++;
        if (!*p) break;
        ids[T++] = (int32_t)strtol(p, &p, 10);
    }
    tu_run_free(&r);
    cr_assert(T > 200, "only %d ids", T);
    model_config cfg;
    akv_err err = {0};
    cr_assert_eq(config_load(&cfg, dir, &err), AKV_OK, "%s", err.msg);
    char buf[8][64];
    const char *specs[9];
    specs_for(cfg.n_layers, buf, specs);
    cr_expect(check_model("asymkv-ref", dir, ids, T, ids, 64, specs) == 8, "configs skipped");
    free(ids);
}
