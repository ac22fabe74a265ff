/* config.c — parses a Hugging Face config.json (Llama, Mistral, Qwen2) into model_config.
 * Accepts both the transformers 4.x rope form (rope_theta + rope_scaling) and the 5.x form
 * (rope_parameters). Every problem is one AKV_EINPUT line naming config.json and the key. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

typedef struct arch_info {
    const char *arch;       /* "architectures"[0] */
    const char *model_type; /* fallback when "architectures" is absent */
    model_arch id;
    int default_max_pos;    /* the transformers default of max_position_embeddings */
} arch_info;

static const arch_info archs[] = {
    {"LlamaForCausalLM", "llama", ARCH_LLAMA, 2048},
    {"MistralForCausalLM", "mistral", ARCH_MISTRAL, 32768},
    {"Qwen2ForCausalLM", "qwen2", ARCH_QWEN2, 32768},
};
#define N_ARCHS (sizeof archs / sizeof archs[0])

/* ---- typed getters: absent or null means "use the default" unless required ---- */

static int json_int(const cJSON *j, int *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (floor(d) != d || d < INT_MIN || d > INT_MAX) return 0;
    *v = (int)d;
    return 1;
}

static int absent(const cJSON *j) {
    return !j || cJSON_IsNull(j);
}

/* ctx prefixes the key in messages: "" for top-level keys, "rope_scaling." for nested ones. */
static akv_status get_int(const cJSON *o, const char *ctx, const char *key, int required,
                          int def, int *out, akv_err *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (absent(j)) {
        if (required)
            return akv_fail(err, AKV_EINPUT, "config.json: missing required key \"%s%s\"", ctx,
                            key);
        *out = def;
        return AKV_OK;
    }
    if (!json_int(j, out))
        return akv_fail(err, AKV_EINPUT, "config.json: \"%s%s\" must be an integer", ctx, key);
    return AKV_OK;
}

static akv_status get_pos_int(const cJSON *o, const char *ctx, const char *key, int required,
                              int def, int *out, akv_err *err) {
    akv_status st = get_int(o, ctx, key, required, def, out, err);
    if (st == AKV_OK && *out <= 0)
        return akv_fail(err, AKV_EINPUT, "config.json: \"%s%s\" must be positive (got %d)", ctx,
                        key, *out);
    return st;
}

static akv_status get_num(const cJSON *o, const char *ctx, const char *key, double def,
                          double *out, akv_err *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (absent(j)) {
        *out = def;
        return AKV_OK;
    }
    if (!cJSON_IsNumber(j))
        return akv_fail(err, AKV_EINPUT, "config.json: \"%s%s\" must be a number", ctx, key);
    *out = j->valuedouble;
    return AKV_OK;
}

static akv_status get_bool(const cJSON *o, const char *key, int def, int *out, akv_err *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (absent(j)) {
        *out = def;
        return AKV_OK;
    }
    if (!cJSON_IsBool(j))
        return akv_fail(err, AKV_EINPUT, "config.json: \"%s\" must be true or false", key);
    *out = cJSON_IsTrue(j);
    return AKV_OK;
}

/* ---- sections ---- */

static const arch_info *arch_lookup(const char *name, int by_model_type) {
    for (size_t i = 0; i < N_ARCHS; i++) {
        if (strcmp(name, by_model_type ? archs[i].model_type : archs[i].arch) == 0)
            return &archs[i];
    }
    return NULL;
}

static akv_status parse_arch(model_config *c, const cJSON *root, const arch_info **ai,
                             akv_err *err) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsArray(a) && cJSON_GetArraySize(a) > 0) {
        const cJSON *a0 = cJSON_GetArrayItem(a, 0);
        if (!cJSON_IsString(a0))
            return akv_fail(err, AKV_EINPUT, "config.json: \"architectures\"[0] must be a string");
        if (!(*ai = arch_lookup(a0->valuestring, 0)))
            return akv_fail(err, AKV_EINPUT,
                            "unsupported architecture \"%.100s\" in config.json (supported: "
                            "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                            a0->valuestring);
    } else if (cJSON_IsString(mt)) {
        if (!(*ai = arch_lookup(mt->valuestring, 1)))
            return akv_fail(err, AKV_EINPUT,
                            "unsupported model_type \"%.100s\" in config.json (supported: llama, "
                            "mistral, qwen2)",
                            mt->valuestring);
    } else {
        return akv_fail(err, AKV_EINPUT,
                        "config.json has neither \"architectures\" nor \"model_type\" (is this a "
                        "Hugging Face model folder?)");
    }
    c->arch = (*ai)->id;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", (*ai)->arch);
    return AKV_OK;
}

static akv_status parse_heads(model_config *c, const cJSON *root, akv_err *err) {
    akv_status st = get_pos_int(root, "", "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads,
                                err);
    if (st != AKV_OK) return st;
    if (c->n_heads % c->n_kv_heads != 0)
        return akv_fail(err, AKV_EINPUT,
                        "config.json: \"num_attention_heads\" (%d) is not a multiple of "
                        "\"num_key_value_heads\" (%d)",
                        c->n_heads, c->n_kv_heads);
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (!absent(hd)) return get_pos_int(root, "", "head_dim", 1, 0, &c->head_dim, err);
    if (c->hidden % c->n_heads != 0)
        return akv_fail(err, AKV_EINPUT,
                        "config.json: \"hidden_size\" (%d) is not a multiple of "
                        "\"num_attention_heads\" (%d) and no \"head_dim\" is given",
                        c->hidden, c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
    return AKV_OK;
}

static akv_status parse_sizes(model_config *c, const cJSON *root, const arch_info *ai,
                              akv_err *err) {
    akv_status st = get_pos_int(root, "", "vocab_size", 1, 0, &c->vocab_size, err);
    if (st == AKV_OK) st = get_pos_int(root, "", "hidden_size", 1, 0, &c->hidden, err);
    if (st == AKV_OK) st = get_pos_int(root, "", "intermediate_size", 1, 0, &c->intermediate, err);
    if (st == AKV_OK) st = get_pos_int(root, "", "num_hidden_layers", 1, 0, &c->n_layers, err);
    if (st == AKV_OK) st = get_pos_int(root, "", "num_attention_heads", 1, 0, &c->n_heads, err);
    if (st == AKV_OK) st = parse_heads(c, root, err);
    if (st == AKV_OK)
        st = get_pos_int(root, "", "max_position_embeddings", 0, ai->default_max_pos, &c->max_pos,
                         err);
    double eps = 0;
    if (st == AKV_OK) st = get_num(root, "", "rms_norm_eps", 1e-6, &eps, err);
    if (st == AKV_OK && !(eps > 0 && eps < 1))
        st = akv_fail(err, AKV_EINPUT, "config.json: \"rms_norm_eps\" must be in (0, 1) (got %g)",
                      eps);
    c->rms_eps = (float)eps;
    return st;
}

/* The four llama3 fields; every one is required. */
static akv_status parse_llama3(rope_params *r, const cJSON *o, const char *name, akv_err *err) {
    static const char *const keys[] = {"factor", "low_freq_factor", "high_freq_factor",
                                       "original_max_position_embeddings"};
    double *dst[] = {&r->factor, &r->low_freq_factor, &r->high_freq_factor};
    char ctx[32];
    snprintf(ctx, sizeof ctx, "%s.", name);
    for (int i = 0; i < 4; i++) {
        if (absent(cJSON_GetObjectItemCaseSensitive(o, keys[i])))
            return akv_fail(err, AKV_EINPUT, "config.json: %s type \"llama3\" needs \"%s\"", name,
                            keys[i]);
    }
    for (int i = 0; i < 3; i++) {
        akv_status st = get_num(o, ctx, keys[i], 0, dst[i], err);
        if (st != AKV_OK) return st;
        if (!(*dst[i] > 0))
            return akv_fail(err, AKV_EINPUT, "config.json: \"%s%s\" must be positive", ctx,
                            keys[i]);
    }
    return get_pos_int(o, ctx, keys[3], 1, 0, &r->original_max_pos, err);
}

/* Applies the rope_scaling / rope_parameters object o (named `name` in messages). */
static akv_status parse_rope_type(rope_params *r, const cJSON *o, const char *name,
                                  akv_err *err) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "rope_type");
    if (absent(t)) t = cJSON_GetObjectItemCaseSensitive(o, "type");
    const char *type = "default";
    if (!absent(t)) {
        if (!cJSON_IsString(t))
            return akv_fail(err, AKV_EINPUT, "config.json: %s \"rope_type\" must be a string",
                            name);
        type = t->valuestring;
    } else if (cJSON_GetObjectItemCaseSensitive(o, "factor")) {
        return akv_fail(err, AKV_EINPUT,
                        "config.json: %s has a \"factor\" but no \"rope_type\" (supported: "
                        "default, llama3)",
                        name);
    }
    if (strcmp(type, "default") == 0) return AKV_OK;
    if (strcmp(type, "llama3") == 0) {
        r->kind = ROPE_LLAMA3;
        return parse_llama3(r, o, name, err);
    }
    return akv_fail(err, AKV_EINPUT,
                    "config.json: %s type \"%.60s\" is not supported (supported: default, llama3)",
                    name, type);
}

static akv_status parse_rope(model_config *c, const cJSON *root, akv_err *err) {
    rope_params *r = &c->rope;
    memset(r, 0, sizeof *r);
    r->kind = ROPE_DEFAULT;
    akv_status st = get_num(root, "", "rope_theta", 10000.0, &r->theta, err);
    if (st != AKV_OK) return st;
    const char *name = "rope_parameters"; /* transformers 5.x wins when both are written */
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, name);
    if (absent(o)) {
        name = "rope_scaling";
        o = cJSON_GetObjectItemCaseSensitive(root, name);
    }
    if (!absent(o)) {
        if (!cJSON_IsObject(o))
            return akv_fail(err, AKV_EINPUT, "config.json: \"%s\" must be an object or null", name);
        char ctx[32];
        snprintf(ctx, sizeof ctx, "%s.", name);
        st = get_num(o, ctx, "rope_theta", r->theta, &r->theta, err);
        if (st == AKV_OK) st = parse_rope_type(r, o, name, err);
        if (st != AKV_OK) return st;
    }
    if (!(r->theta > 0))
        return akv_fail(err, AKV_EINPUT, "config.json: \"rope_theta\" must be positive");
    return AKV_OK;
}

static akv_status parse_act_bias(model_config *c, const cJSON *root, akv_err *err) {
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (!absent(act) && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return akv_fail(err, AKV_EINPUT,
                        "config.json: \"hidden_act\" is \"%.60s\"; only \"silu\" is supported",
                        cJSON_IsString(act) ? act->valuestring : "(not a string)");
    int mlp_bias = 0, attn_bias = 0;
    akv_status st = get_bool(root, "mlp_bias", 0, &mlp_bias, err);
    if (st == AKV_OK && mlp_bias)
        st = akv_fail(err, AKV_EINPUT,
                      "config.json: \"mlp_bias\": true is not supported (MLP projections with "
                      "biases)");
    if (st == AKV_OK) st = get_bool(root, "attention_bias", 0, &attn_bias, err);
    if (st == AKV_OK) st = get_bool(root, "tie_word_embeddings", 0, &c->tie_embeddings, err);
    if (st != AKV_OK) return st;
    c->qkv_bias = c->arch == ARCH_QWEN2 ? 1 : attn_bias;
    c->o_bias = c->arch == ARCH_QWEN2 ? 0 : attn_bias;
    return AKV_OK;
}

static akv_status parse_window(model_config *c, const cJSON *root, akv_err *err) {
    int use = c->arch == ARCH_MISTRAL;
    akv_status st = AKV_OK;
    c->sliding_window = 0;
    if (c->arch == ARCH_QWEN2) st = get_bool(root, "use_sliding_window", 0, &use, err);
    if (st != AKV_OK || !use) return st;
    st = get_int(root, "", "sliding_window", 0, 0, &c->sliding_window, err);
    if (st == AKV_OK && c->sliding_window < 0)
        st = akv_fail(err, AKV_EINPUT, "config.json: \"sliding_window\" must not be negative");
    return st;
}

static akv_status parse_tokens(model_config *c, const cJSON *root, akv_err *err) {
    akv_status st = get_int(root, "", "bos_token_id", 0, -1, &c->bos_id, err);
    if (st != AKV_OK) return st;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    c->n_eos = 0;
    if (absent(e)) return AKV_OK;
    if (cJSON_IsNumber(e)) {
        c->n_eos = 1;
        return get_int(root, "", "eos_token_id", 1, 0, &c->eos_ids[0], err);
    }
    if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) > CONFIG_MAX_EOS)
        return akv_fail(err, AKV_EINPUT,
                        "config.json: \"eos_token_id\" must be an integer or a list of at most "
                        "%d integers",
                        CONFIG_MAX_EOS);
    const cJSON *id;
    cJSON_ArrayForEach(id, e) {
        if (!json_int(id, &c->eos_ids[c->n_eos++]))
            return akv_fail(err, AKV_EINPUT,
                            "config.json: \"eos_token_id\" list holds a non-integer");
    }
    return AKV_OK;
}

/* ---- public ---- */

akv_status config_parse(model_config *c, const char *json_text, akv_err *err) {
    memset(c, 0, sizeof *c);
    const char *at = NULL;
    cJSON *root = cJSON_ParseWithOpts(json_text, &at, 1);
    akv_status st = AKV_OK;
    const arch_info *ai = NULL;
    if (!root) {
        st = akv_fail(err, AKV_EINPUT, "config.json is not valid JSON (error near byte %ld)",
                      at ? (long)(at - json_text) : -1L);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        st = akv_fail(err, AKV_EINPUT, "config.json is not a JSON object");
        goto fail;
    }
    st = parse_arch(c, root, &ai, err);
    if (st == AKV_OK) st = parse_sizes(c, root, ai, err);
    if (st == AKV_OK) st = parse_rope(c, root, err);
    if (st == AKV_OK) st = parse_act_bias(c, root, err);
    if (st == AKV_OK) st = parse_window(c, root, err);
    if (st == AKV_OK) st = parse_tokens(c, root, err);
fail:
    cJSON_Delete(root);
    return st;
}

/* Whole file as a NUL-terminated string (malloc'd). */
static akv_status slurp(char **out, const char *path, akv_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return akv_fail(err, AKV_EINPUT, "cannot read %s: %s", path, strerror(errno));
    akv_status st = AKV_OK;
    size_t len = 0, cap = 1 << 14;
    char *buf = malloc(cap);
    while (buf) {
        if (cap - len < 2) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
            if (!buf) break;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        if (got == 0) break;
        len += got;
    }
    if (!buf || ferror(f)) {
        st = akv_fail(err, AKV_EINPUT, "cannot read %s: %s", path,
                      buf ? strerror(errno) : "out of memory");
        free(buf);
        goto fail;
    }
    buf[len] = '\0';
    *out = buf;
fail:
    fclose(f);
    return st;
}

akv_status config_load(model_config *c, const char *dir, akv_err *err) {
    size_t n = strlen(dir) + sizeof "/config.json";
    char *path = malloc(n);
    char *text = NULL;
    if (!path) return akv_fail(err, AKV_ERUNTIME, "out of memory");
    snprintf(path, n, "%s/config.json", dir);
    akv_status st = slurp(&text, path, err);
    if (st == AKV_OK) st = config_parse(c, text, err);
    free(text);
    free(path);
    return st;
}
