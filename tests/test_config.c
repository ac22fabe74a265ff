/* test_config.c — config.json parsing: Llama (llama3 rope), Mistral, Qwen2, the transformers 5
 * rope_parameters form, eos lists, and the malformed configs that must be AKV_EINPUT.
 * Run: ./build/tests/test_config */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testutil.h"

static model_config parse_ok(const char *json) {
    model_config c;
    akv_err err = {0};
    akv_status st = config_parse(&c, json, &err);
    cr_assert_eq(st, AKV_OK, "config_parse failed: %s", err.msg);
    return c;
}

/* Expects AKV_EINPUT with a one-line message that names config.json and contains keyword. */
static void parse_bad(const char *json, const char *keyword) {
    model_config c;
    akv_err err = {0};
    akv_status st = config_parse(&c, json, &err);
    cr_assert_eq(st, AKV_EINPUT, "expected AKV_EINPUT for %s, got %d", json, st);
    cr_assert(strstr(err.msg, "config.json"), "message \"%s\" lacks config.json", err.msg);
    cr_assert(strstr(err.msg, keyword), "message \"%s\" lacks \"%s\"", err.msg, keyword);
    cr_assert_null(strchr(err.msg, '\n'));
}

/* Llama 3.2 1B, as transformers 4.45 writes it. */
static const char *llama32 =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":128000,\"eos_token_id\":128001,\"head_dim\":64,\"hidden_act\":\"silu\","
    "\"hidden_size\":2048,\"initializer_range\":0.02,\"intermediate_size\":8192,"
    "\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":16,\"num_key_value_heads\":8,"
    "\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,\"rope_scaling\":{\"factor\":32.0,"
    "\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,\"original_max_position_embeddings\":8192,"
    "\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,\"tie_word_embeddings\":true,"
    "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.45.0\",\"use_cache\":true,"
    "\"vocab_size\":128256}";

Test(config, llama3_rope_scaling) {
    model_config c = parse_ok(llama32);
    cr_assert_eq(c.arch, ARCH_LLAMA);
    cr_assert_str_eq(c.arch_name, "LlamaForCausalLM");
    cr_assert_eq(c.vocab_size, 128256);
    cr_assert_eq(c.hidden, 2048);
    cr_assert_eq(c.intermediate, 8192);
    cr_assert_eq(c.n_layers, 16);
    cr_assert_eq(c.n_heads, 32);
    cr_assert_eq(c.n_kv_heads, 8);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_float_eq(c.rms_eps, 1e-5f, 1e-12f);
    cr_assert_eq(c.max_pos, 131072);
    cr_assert_eq(c.rope.kind, ROPE_LLAMA3);
    cr_assert_eq(c.rope.theta, 500000.0);
    cr_assert_eq(c.rope.factor, 32.0);
    cr_assert_eq(c.rope.low_freq_factor, 1.0);
    cr_assert_eq(c.rope.high_freq_factor, 4.0);
    cr_assert_eq(c.rope.original_max_pos, 8192);
    cr_assert_eq(c.tie_embeddings, 1);
    cr_assert_eq(c.qkv_bias, 0);
    cr_assert_eq(c.o_bias, 0);
    cr_assert_eq(c.sliding_window, 0);
    cr_assert_eq(c.bos_id, 128000);
    cr_assert_eq(c.n_eos, 1);
    cr_assert_eq(c.eos_ids[0], 128001);
}

Test(config, llama2_defaults_and_eos_list) {
    model_config c = parse_ok(
        "{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":4096,"
        "\"intermediate_size\":11008,\"num_hidden_layers\":32,\"num_attention_heads\":32,"
        "\"rope_scaling\":null,\"attention_bias\":true,\"eos_token_id\":[128001,128008,128009]}");
    cr_assert_eq(c.arch, ARCH_LLAMA);
    cr_assert_str_eq(c.arch_name, "LlamaForCausalLM");
    cr_assert_eq(c.n_kv_heads, 32);
    cr_assert_eq(c.head_dim, 128);
    cr_assert_float_eq(c.rms_eps, 1e-6f, 1e-12f);
    cr_assert_eq(c.rope.kind, ROPE_DEFAULT);
    cr_assert_eq(c.rope.theta, 10000.0);
    cr_assert_gt(c.max_pos, 0);
    cr_assert_eq(c.tie_embeddings, 0);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(c.o_bias, 1);
    cr_assert_eq(c.bos_id, -1);
    cr_assert_eq(c.n_eos, 3);
    cr_assert_eq(c.eos_ids[0], 128001);
    cr_assert_eq(c.eos_ids[2], 128009);
}

Test(config, mistral_head_dim_and_null_window) {
    model_config c = parse_ok(
        "{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":131072,\"hidden_size\":5120,"
        "\"intermediate_size\":14336,\"num_hidden_layers\":40,\"num_attention_heads\":32,"
        "\"num_key_value_heads\":8,\"head_dim\":128,\"sliding_window\":null,"
        "\"rope_theta\":1000000.0,\"max_position_embeddings\":1024000,\"hidden_act\":\"silu\","
        "\"bos_token_id\":1,\"eos_token_id\":2,\"tie_word_embeddings\":false}");
    cr_assert_eq(c.arch, ARCH_MISTRAL);
    cr_assert_eq(c.head_dim, 128); /* not 5120/32 = 160 */
    cr_assert_eq(c.sliding_window, 0);
    cr_assert_eq(c.rope.theta, 1e6);
    cr_assert_eq(c.qkv_bias, 0);
    cr_assert_eq(c.bos_id, 1);
    cr_assert_eq(c.eos_ids[0], 2);
}

Test(config, mistral_sliding_window) {
    model_config c = parse_ok(
        "{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":32000,\"hidden_size\":4096,"
        "\"intermediate_size\":14336,\"num_hidden_layers\":32,\"num_attention_heads\":32,"
        "\"num_key_value_heads\":8,\"sliding_window\":4096,\"head_dim\":null}");
    cr_assert_eq(c.sliding_window, 4096);
    cr_assert_eq(c.head_dim, 128);
}

Test(config, qwen2_tied_with_bias) {
    model_config c = parse_ok(
        "{\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":151936,\"hidden_size\":896,"
        "\"intermediate_size\":4864,\"num_hidden_layers\":24,\"num_attention_heads\":14,"
        "\"num_key_value_heads\":2,\"max_position_embeddings\":32768,\"rms_norm_eps\":1e-06,"
        "\"rope_theta\":1000000.0,\"sliding_window\":32768,\"use_sliding_window\":false,"
        "\"max_window_layers\":21,\"tie_word_embeddings\":true,\"bos_token_id\":151643,"
        "\"eos_token_id\":151643,\"hidden_act\":\"silu\",\"rope_scaling\":null}");
    cr_assert_eq(c.arch, ARCH_QWEN2);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.tie_embeddings, 1);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(c.o_bias, 0);
    cr_assert_eq(c.sliding_window, 0); /* use_sliding_window false */
    cr_assert_eq(c.n_kv_heads, 2);
}

Test(config, qwen2_use_sliding_window) {
    model_config c = parse_ok(
        "{\"model_type\":\"qwen2\",\"vocab_size\":1000,\"hidden_size\":64,"
        "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"use_sliding_window\":true,\"sliding_window\":256}");
    cr_assert_eq(c.arch, ARCH_QWEN2);
    cr_assert_str_eq(c.arch_name, "Qwen2ForCausalLM");
    cr_assert_eq(c.sliding_window, 256);
    cr_assert_eq(c.tie_embeddings, 0);
}

Test(config, transformers5_rope_parameters) {
    model_config c = parse_ok(
        "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":128256,\"hidden_size\":4096,"
        "\"intermediate_size\":14336,\"num_hidden_layers\":32,\"num_attention_heads\":32,"
        "\"num_key_value_heads\":8,\"rope_parameters\":{\"rope_type\":\"llama3\","
        "\"rope_theta\":500000.0,\"factor\":8.0,\"low_freq_factor\":1.0,"
        "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}");
    cr_assert_eq(c.rope.kind, ROPE_LLAMA3);
    cr_assert_eq(c.rope.theta, 500000.0);
    cr_assert_eq(c.rope.factor, 8.0);
    cr_assert_eq(c.rope.original_max_pos, 8192);

    c = parse_ok("{\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":100,"
                 "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                 "\"num_attention_heads\":4,\"rope_parameters\":{\"rope_type\":\"default\","
                 "\"rope_theta\":1000000.0}}");
    cr_assert_eq(c.rope.kind, ROPE_DEFAULT);
    cr_assert_eq(c.rope.theta, 1e6);
}

/* ---- malformed ---- */

#define BASE                                                                                  \
    "\"vocab_size\":100,\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2," \
    "\"num_attention_heads\":4"

Test(config, unknown_architecture) {
    parse_bad("{\"architectures\":[\"GPT2LMHeadModel\"]," BASE "}",
              "unsupported architecture \"GPT2LMHeadModel\"");
    parse_bad("{\"architectures\":[\"GPT2LMHeadModel\"]," BASE "}", "LlamaForCausalLM");
    parse_bad("{\"model_type\":\"gpt2\"," BASE "}", "model_type");
    parse_bad("{" BASE "}", "architectures");
}

Test(config, missing_hidden_size) {
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":100,"
              "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}",
              "hidden_size");
    /* cJSON returns the first of duplicate keys, so these come before BASE */
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":0," BASE "}",
              "vocab_size");
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":\"2\"," BASE "}",
              "num_hidden_layers");
}

Test(config, heads_not_divisible) {
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"num_key_value_heads\":3}",
              "num_key_value_heads");
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":100,\"hidden_size\":66,"
              "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}",
              "head_dim");
}

Test(config, rope_yarn_unsupported) {
    parse_bad("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE
              ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0,"
              "\"original_max_position_embeddings\":32768}}",
              "rope_scaling type \"yarn\" is not supported (supported: default, llama3)");
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"]," BASE
              ",\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":2.0}}",
              "\"linear\" is not supported");
}

Test(config, llama3_missing_field) {
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"]," BASE
              ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
              "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}",
              "low_freq_factor");
}

Test(config, mlp_bias_and_activation) {
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"mlp_bias\":true}",
              "mlp_bias");
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"hidden_act\":\"gelu\"}",
              "hidden_act");
}

Test(config, bad_eos) {
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"]," BASE
              ",\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}",
              "eos_token_id");
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"eos_token_id\":[1,\"x\"]}",
              "eos_token_id");
}

Test(config, invalid_json) {
    parse_bad("{\"architectures\":[\"LlamaForCausalLM\"], \"vocab_size\": 100,", "not valid JSON");
    parse_bad("[1, 2, 3]", "not a JSON object");
    parse_bad("", "not valid JSON");
}

Test(config, load_from_dir) {
    char *dir = tu_tmpdir();
    model_config c;
    akv_err err = {0};
    cr_assert_eq(config_load(&c, dir, &err), AKV_EINPUT);
    cr_assert(strstr(err.msg, "cannot read"), "%s", err.msg);
    cr_assert(strstr(err.msg, "config.json"), "%s", err.msg);

    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(tu_write_file(path, llama32, strlen(llama32)), 0);
    akv_err_clear(&err);
    cr_assert_eq(config_load(&c, dir, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(c.rope.kind, ROPE_LLAMA3);
    cr_assert_eq(c.n_layers, 16);
    tu_rmdir(dir);
    free(dir);
}
