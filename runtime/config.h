/* config.h — a model's config.json (Hugging Face) as a plain struct. Supported architectures:
 * LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM. */
#ifndef ASYMKV_CONFIG_H
#define ASYMKV_CONFIG_H

#include "common.h"
#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum model_arch { ARCH_LLAMA = 0, ARCH_MISTRAL, ARCH_QWEN2 } model_arch;

#define CONFIG_MAX_EOS 8

typedef struct model_config {
    model_arch arch;
    char arch_name[64];        /* as written in "architectures"[0] */
    int vocab_size;
    int hidden;                /* hidden_size */
    int intermediate;          /* intermediate_size */
    int n_layers;              /* num_hidden_layers */
    int n_heads;               /* num_attention_heads */
    int n_kv_heads;            /* num_key_value_heads (defaults to n_heads) */
    int head_dim;              /* head_dim if given (and not null), else hidden / n_heads */
    float rms_eps;             /* rms_norm_eps */
    rope_params rope;          /* rope_theta + rope_scaling / rope_parameters */
    int max_pos;               /* max_position_embeddings */
    int tie_embeddings;        /* tie_word_embeddings (default 0 for Llama/Mistral, Qwen2 per file) */
    int qkv_bias;              /* q/k/v projections have biases (Qwen2 always; Llama attention_bias) */
    int o_bias;                /* o_proj has a bias (Llama attention_bias) */
    int sliding_window;        /* 0 when none or disabled */
    int bos_id;                /* -1 when absent */
    int n_eos;
    int eos_ids[CONFIG_MAX_EOS];
} model_config;

/* Parses config.json text. Unknown architecture, missing or non-positive sizes, inconsistent
 * heads (n_heads % n_kv_heads), unsupported rope_scaling types, hidden_act other than silu and
 * mlp_bias=true are AKV_EINPUT with a one-line message. */
akv_status config_parse(model_config *c, const char *json_text, akv_err *err);

/* Reads DIR/config.json and parses it. */
akv_status config_load(model_config *c, const char *dir, akv_err *err);

#ifdef __cplusplus
}
#endif
#endif
