/* kvconfig.c — parser for the --kv language, the per-layer widths, and the design §4 memory
 * formula; see kvconfig.h. */
#include "kvconfig.h"

#include <stdlib.h>

#include "kvlayout.h"

#define KV_FORMS                                                                              \
    "valid forms: fp16 | fp32 | kivi2 | kivi4 | asymkv:LK/LV (e.g. asymkv:16/0) | "           \
    "k=2x16,1x16;v=1x32 (widths 32,16,4,2,1; counts sum to the layer count)"

static int valid_bits(long b) { return b == 32 || b == 16 || b == 4 || b == 2 || b == 1; }

static void fill(uint8_t *dst, int n, int bits) {
    for (int i = 0; i < n; i++) dst[i] = (uint8_t)bits;
}

/* Parses "2x16,1x16" into dst[n_layers]. */
static akv_status parse_list(uint8_t *dst, const char *s, const char *end, int n_layers,
                             const char *spec, akv_err *err) {
    int at = 0;
    while (s < end) {
        char *p;
        long bits = strtol(s, &p, 10), count;
        if (p == s || *p != 'x' || !valid_bits(bits)) goto bad;
        s = p + 1;
        count = strtol(s, &p, 10);
        if (p == s || count < 1 || at + count > n_layers) goto bad;
        fill(dst + at, (int)count, (int)bits);
        at += (int)count;
        s = p;
        if (s < end && *s == ',') s++;
        else if (s < end) goto bad;
    }
    if (at == n_layers) return AKV_OK;
bad:
    return akv_fail(err, AKV_EINPUT, "--kv \"%s\": bad layer list for a %d-layer model (%s)",
                    spec, n_layers, KV_FORMS);
}

static akv_status parse_explicit(kv_config *c, const char *spec, akv_err *err) {
    const char *k = strstr(spec, "k="), *v = strstr(spec, "v="), *semi = strchr(spec, ';');
    if (k != spec || !semi || v != semi + 1)
        return akv_fail(err, AKV_EINPUT, "--kv \"%s\" is not a valid KV config (%s)", spec,
                        KV_FORMS);
    akv_status s = parse_list(c->k_bits, k + 2, semi, c->n_layers, spec, err);
    if (!s) s = parse_list(c->v_bits, v + 2, spec + strlen(spec), c->n_layers, spec, err);
    return s;
}

static akv_status parse_asym(kv_config *c, const char *spec, int hi, akv_err *err) {
    char *p;
    const char *s = spec + strlen("asymkv:");
    long lk = strtol(s, &p, 10), lv;
    if (p == s || *p != '/') goto bad;
    s = p + 1;
    lv = strtol(s, &p, 10);
    if (p == s || *p) goto bad;
    if (lk < 0 || lv < 0 || lk > c->n_layers || lv > c->n_layers)
        return akv_fail(err, AKV_EINPUT, "--kv \"%s\": LK and LV must be within 0..%d layers",
                        spec, c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        c->k_bits[l] = (uint8_t)(l < lk ? hi : 1);
        c->v_bits[l] = (uint8_t)(l < lv ? hi : 1);
    }
    return AKV_OK;
bad:
    return akv_fail(err, AKV_EINPUT, "--kv \"%s\" is not a valid KV config (%s)", spec, KV_FORMS);
}

akv_status kvcfg_parse(kv_config *c, const char *spec, int n_layers, int hi_bits, int group,
                       int residual, akv_err *err) {
    memset(c, 0, sizeof *c);
    if (n_layers < 1 || n_layers > KV_MAX_LAYERS)
        return akv_fail(err, AKV_EINPUT, "models of %d layers are not supported (1..%d)",
                        n_layers, KV_MAX_LAYERS);
    if (hi_bits != 2 && hi_bits != 4)
        return akv_fail(err, AKV_EINPUT, "--kv-hi-bits must be 2 or 4, not %d", hi_bits);
    if (group != 32 && group != 64 && group != 128)
        return akv_fail(err, AKV_EINPUT, "--kv-group must be 32, 64 or 128, not %d", group);
    if (residual < group || residual % group)
        return akv_fail(err, AKV_EINPUT, "--kv-residual must be a positive multiple of "
                        "--kv-group %d, not %d", group, residual);
    c->n_layers = n_layers;
    c->group = group;
    c->residual = residual;
    if (!spec) spec = "fp16";
    if (!strcmp(spec, "fp16") || !strcmp(spec, "fp32") || !strcmp(spec, "kivi2") ||
        !strcmp(spec, "kivi4")) {
        int b = !strcmp(spec, "fp16") ? 16 : !strcmp(spec, "fp32") ? 32 : spec[4] - '0';
        fill(c->k_bits, n_layers, b);
        fill(c->v_bits, n_layers, b);
        return AKV_OK;
    }
    if (!strncmp(spec, "asymkv:", 7)) return parse_asym(c, spec, hi_bits, err);
    return parse_explicit(c, spec, err);
}

akv_status kvcfg_check_head_dim(const kv_config *c, int head_dim, akv_err *err) {
    for (int l = 0; l < c->n_layers; l++) {
        if (c->v_bits[l] <= 4 && head_dim % c->group)
            return akv_fail(err, AKV_EINPUT,
                            "head_dim %d is not a multiple of --kv-group %d, so values cannot be "
                            "quantized per %d channels (use a smaller --kv-group, or 16-bit values)",
                            head_dim, c->group, c->group);
        if (c->k_bits[l] <= 4 && head_dim % 16)
            return akv_fail(err, AKV_EINPUT,
                            "head_dim %d is not a multiple of 16, which quantized keys need (their "
                            "codes are laid out in 16-channel steps); use 16-bit keys for this model",
                            head_dim);
    }
    return AKV_OK;
}

size_t kvcfg_token_bytes(const kv_config *c, int layer, int n_kv_heads, int head_dim) {
    return (kvl_token_bytes(c->k_bits[layer], head_dim, c->group) +
            kvl_token_bytes(c->v_bits[layer], head_dim, c->group)) * (size_t)n_kv_heads;
}

size_t kvcfg_layer_bytes(const kv_config *c, int layer, int n_kv_heads, int head_dim, int ctx,
                         int batch) {
    return kvl_layer_bytes(c->k_bits[layer], c->v_bits[layer], n_kv_heads, head_dim, c->group,
                           c->residual, ctx, batch);
}

double kvcfg_avg_bits(const kv_config *c, int head_dim) {
    double bytes = 0;
    for (int l = 0; l < c->n_layers; l++) bytes += (double)kvcfg_token_bytes(c, l, 1, head_dim);
    return bytes * 8.0 / (2.0 * head_dim * c->n_layers);
}

/* Appends the run-length form of bits[n] to buf at *off. */
static void format_runs(const uint8_t *bits, int n, char *buf, size_t size, size_t *off) {
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && bits[j] == bits[i]) j++;
        if (*off < size)
            *off += (size_t)snprintf(buf + *off, size - *off, "%s%dx%d", i ? "," : "", bits[i],
                                     j - i);
        i = j;
    }
}

void kvcfg_format(const kv_config *c, char *buf, size_t n) {
    size_t off = (size_t)snprintf(buf, n, "k=");
    format_runs(c->k_bits, c->n_layers, buf, n, &off);
    if (off < n) off += (size_t)snprintf(buf + off, n - off, ";v=");
    format_runs(c->v_bits, c->n_layers, buf, n, &off);
}
