/* gpu_model.c — the whole model on the CUDA backend against the CPU backend (the scalar twins),
 * on the golden fixtures (Llama GQA, Mistral MQA, Qwen2 with biases and tied embeddings) and the
 * bundled reference model, for every kind of --kv config the model's head_dim allows
 * (tests/model_compare.h): positions [0, T/2) prefilled in chunks of 13 (off the group and
 * window boundaries, so prefill commits quantize key blocks and values), [T/2, T) one token at
 * a time through the decode path, then 16 greedy tokens.
 *
 * Tolerances: the CUDA backend rounds activations to bf16 in every GEMM (2^-9 relative per
 * input) and feeds attention fp16 Q/P; with the same bf16 weights that gives logits within
 * ~1% of the logit range on an unquantized cache (2e-2 allowed, greedy tokens equal; measured
 * on the H200: 1.7e-2 at most, on llama-gqa). A quantized cache is discontinuous in its inputs:
 * it is judged against the CPU's fp16-cache logits (model_compare.h, judge_fp16): the GPU's
 * argmax agreement with fp16 at most 0.1 below the CPU's, its mean error vs fp16 at most 1.25x
 * the CPU's + 0.02, its mean NLL within 0.05 nats + 4 standard errors of the CPU's, and where the
 * config is stable (the CPU agrees with fp16 at >= 90% of the positions) the same argmax as the
 * CPU at >= 75% of the positions with a mean error <= 0.2 of the range. A broken kernel misses
 * these by far (NLL off by nats, or NaN). The direct 75% bound for every config failed on the
 * H200 for 1-bit keys only (agreement 0.39 .. 0.68 while both NLLs stayed within 0.14 nats):
 * there two correct backends agree with each other less than each agrees with fp16. Every case
 * prints "gpu_model: ..." lines for scripts/gpu-check.sh. */
#include <unistd.h>

#include "gpu_util.h"
#include "model_compare.h"

static const cmp_opts GPU = {.tag = "gpu_model", .tol_fp16 = 2e-2, .tol_quant = 0,
                             .tol_quant_mean = 0.2, .min_agree = 0.75, .tol_nll = 0.05,
                             .greedy_quant = 0, .chunk = 13, .judge_fp16 = 1,
                             .agree_margin = 0.1, .rel_ratio = 1.25, .rel_slack = 0.02,
                             .nll_se_k = 4, .stable_agree = 0.9};

static void fixture(const char *fx) {
    REQUIRE_GPU();
    cmp_opts co = GPU;
    co.decode_from = 100; /* the fixtures' ids are 200 long */
    cr_expect(compare_fixture(fx, &co) >= 2, "%s: too few configs ran", fx);
}

Test(gpu_model, llama_gqa) { fixture("llama-gqa"); }
Test(gpu_model, mistral_mqa) { fixture("mistral-mqa"); }
Test(gpu_model, qwen2_tied) { fixture("qwen2-tied"); }

/* The bundled reference model on its held-out text. */
Test(gpu_model, reference_model, .timeout = 600) {
    REQUIRE_GPU();
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/models/default", getenv("ASYMKV_SRC"));
    int T = 0;
    int32_t *ids = reference_ids(dir, 1500, &T);
    cr_assert(T > 200, "only %d ids", T);
    cmp_opts co = GPU;
    co.decode_from = T / 2;
    cr_expect(compare_model("asymkv-ref", dir, ids, T, ids, 64, &co) == 8, "configs skipped");
    free(ids);
}
