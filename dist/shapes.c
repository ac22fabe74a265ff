/* shapes.c — the built-in model shapes: sizes, rope and token ids copied from each
 * checkpoint's config.json on the Hugging Face hub (named in the table); see shapes.h. */
#include "shapes.h"

#include <string.h>

typedef struct shape_def {
    const char *name;
    model_config c;
} shape_def;

/* rope_params: kind, theta, factor, low_freq_factor, high_freq_factor, original_max_pos. */
#define ROPE_PLAIN(theta) {ROPE_DEFAULT, theta, 0, 0, 0, 0}
#define ROPE_L31 {ROPE_LLAMA3, 500000.0, 8.0, 1.0, 4.0, 8192}

/* Fields in model_config order: arch, arch_name, vocab, hidden, intermediate, n_layers,
 * n_heads, n_kv_heads, head_dim, rms_eps, rope, max_pos, tie, qkv_bias, o_bias,
 * sliding_window, bos, n_eos, eos_ids. */
static const shape_def SHAPES[] = {
    /* meta-llama/Llama-2-7b-hf */
    {"llama-2-7b", {ARCH_LLAMA, "LlamaForCausalLM", 32000, 4096, 11008, 32, 32, 32, 128, 1e-5f,
                    ROPE_PLAIN(10000.0), 4096, 0, 0, 0, 0, 1, 1, {2}}},
    /* meta-llama/Llama-2-13b-hf */
    {"llama-2-13b", {ARCH_LLAMA, "LlamaForCausalLM", 32000, 5120, 13824, 40, 40, 40, 128, 1e-5f,
                     ROPE_PLAIN(10000.0), 4096, 0, 0, 0, 0, 1, 1, {2}}},
    /* meta-llama/Llama-3.1-8B (Llama-3-8B's shapes, 128k context) */
    {"llama-3-8b", {ARCH_LLAMA, "LlamaForCausalLM", 128256, 4096, 14336, 32, 32, 8, 128, 1e-5f,
                    ROPE_L31, 131072, 0, 0, 0, 0, 128000, 1, {128001}}},
    /* meta-llama/Llama-3.1-70B */
    {"llama-3-70b", {ARCH_LLAMA, "LlamaForCausalLM", 128256, 8192, 28672, 80, 64, 8, 128, 1e-5f,
                     ROPE_L31, 131072, 0, 0, 0, 0, 128000, 1, {128001}}},
    /* mistralai/Mistral-7B-v0.2 (no sliding window; v0.1 has the same shapes) */
    {"mistral-7b", {ARCH_MISTRAL, "MistralForCausalLM", 32000, 4096, 14336, 32, 32, 8, 128,
                    1e-5f, ROPE_PLAIN(1000000.0), 32768, 0, 0, 0, 0, 1, 1, {2}}},
    /* Qwen/Qwen2-7B (q/k/v biases, untied head) */
    {"qwen2-7b", {ARCH_QWEN2, "Qwen2ForCausalLM", 152064, 3584, 18944, 28, 28, 4, 128, 1e-6f,
                  ROPE_PLAIN(1000000.0), 131072, 0, 1, 0, 0, 151643, 1, {151643}}},
    /* not a checkpoint: a small Llama for tests and smoke runs of `asymkv bench --synthetic`
     * (the bundled reference model's shape with 4 layers) */
    {"tiny", {ARCH_LLAMA, "LlamaForCausalLM", 4096, 256, 768, 4, 8, 2, 32, 1e-5f,
              ROPE_PLAIN(10000.0), 4096, 1, 0, 0, 0, 1, 1, {2}}},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

const char *shape_names(void) {
    return "llama-2-7b, llama-2-13b, llama-3-8b, llama-3-70b, mistral-7b, qwen2-7b, tiny";
}

akv_status shape_lookup(const char *name, model_config *c, akv_err *err) {
    for (size_t i = 0; name && i < N_SHAPES; i++) {
        if (!strcmp(SHAPES[i].name, name)) {
            *c = SHAPES[i].c;
            return AKV_OK;
        }
    }
    return akv_fail(err, AKV_EINPUT, "unknown model shape \"%.80s\" (valid shapes: %s)",
                    name ? name : "", shape_names());
}
