/* tokenizer_parse.c — reads the normalizer, pre_tokenizer and decoder objects of tokenizer.json
 * into flat step lists (Sequences are flattened), compiling their regexes with PCRE2. Anything
 * not listed in tokenizer.h is an error naming the unsupported feature. */
#include <stdlib.h>

#include "tokenizer_impl.h"

/* GPT-2's split regex, the one ByteLevel uses when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

pcre2_code *tk_regex_compile(const char *pattern, size_t len, int literal, akv_err *err) {
    int code;
    PCRE2_SIZE at;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        akv_fail(err, AKV_EINPUT, "tokenizer regex \"%.80s\" does not compile at offset %zu: %s",
                 pattern, (size_t)at, (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter is the fallback */
    return re;
}

static int jint(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : def;
}

static tk_step *step_new(tk_steps *s, tk_kind kind, akv_err *err) {
    tk_step *v = realloc(s->v, (size_t)(s->n + 1) * sizeof *v);
    if (!v) {
        akv_fail(err, AKV_ERUNTIME, "out of host memory");
        return NULL;
    }
    s->v = v;
    tk_step *st = &v[s->n++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    return st;
}

static akv_status dup_str(const char *s, char **out, size_t *len, akv_err *err) {
    *len = strlen(s);
    *out = malloc(*len + 1);
    if (!*out) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    memcpy(*out, s, *len + 1);
    return AKV_OK;
}

/* A one-character string field (Metaspace replacement, Strip content). */
static akv_status one_char(const cJSON *j, const char *what, const char *key, uint32_t *cp,
                           akv_err *err) {
    const char *s = jstr(j, key);
    size_t n = s ? strlen(s) : 0;
    int len = n ? tk_utf8_len((const unsigned char *)s, n) : 0;
    if (!len || (size_t)len != n)
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: %s needs \"%s\" to be one character",
                        what, key);
    *cp = tk_utf8_cp((const unsigned char *)s, len);
    return AKV_OK;
}

/* {"String": s} or {"Regex": r} -> a literal in a/a_len (String) and a compiled regex. */
static akv_status parse_pattern(const cJSON *j, const char *what, tk_step *st, akv_err *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pattern");
    const char *lit = jstr(p, "String"), *rx = jstr(p, "Regex");
    if (!lit && !rx)
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: %s needs a pattern {\"String\": ...} "
                        "or {\"Regex\": ...}", what);
    akv_status s = dup_str(lit ? lit : rx, &st->a, &st->a_len, err);
    if (s) return s;
    st->re = tk_regex_compile(st->a, st->a_len, lit != NULL, err);
    return st->re ? AKV_OK : AKV_EINPUT;
}

static akv_status parse_replace(const cJSON *j, tk_step *st, const char *what, akv_err *err) {
    const char *content = jstr(j, "content");
    if (!content)
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: %s Replace needs a \"content\"", what);
    akv_status s = dup_str(content, &st->b, &st->b_len, err);
    return s ? s : parse_pattern(j, "Replace", st, err);
}

static akv_status parse_prepend_scheme(const cJSON *j, tk_step *st, akv_err *err) {
    const char *sch = jstr(j, "prepend_scheme");
    st->prepend = TK_PREPEND_ALWAYS;
    if (sch && !strcmp(sch, "first")) st->prepend = TK_PREPEND_FIRST;
    else if (sch && !strcmp(sch, "never")) st->prepend = TK_PREPEND_NEVER;
    else if (sch && strcmp(sch, "always"))
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: unsupported feature: Metaspace "
                        "prepend_scheme \"%s\"", sch);
    if (!jbool(j, "add_prefix_space", 1)) st->prepend = TK_PREPEND_NEVER; /* legacy field */
    return AKV_OK;
}

static const char *type_of(const cJSON *j, const char *what, akv_err *err) {
    const char *type = jstr(j, "type");
    if (!type) akv_fail(err, AKV_EINPUT, "tokenizer.json: a %s without a \"type\"", what);
    return type;
}

static akv_status parse_norm(const cJSON *j, tk_steps *out, int depth, akv_err *err) {
    const char *type = type_of(j, "normalizer", err);
    if (!type) return AKV_EINPUT;
    if (!strcmp(type, "Sequence") && depth < 8) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "normalizers")) {
            akv_status s = parse_norm(c, out, depth + 1, err);
            if (s) return s;
        }
        return AKV_OK;
    }
    tk_kind kind = !strcmp(type, "Prepend") ? TK_N_PREPEND : !strcmp(type, "Replace") ? TK_N_REPLACE
                 : !strcmp(type, "Strip") ? TK_N_STRIP : !strcmp(type, "NFC") ? TK_N_NFC : (tk_kind)-1;
    if ((int)kind < 0)
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: unsupported feature: normalizer \"%s\" "
                        "(supported: Sequence, Prepend, Replace, Strip, NFC)", type);
    tk_step *st = step_new(out, kind, err);
    if (!st) return AKV_ERUNTIME;
    if (kind == TK_N_PREPEND) {
        const char *p = jstr(j, "prepend");
        if (!p) return akv_fail(err, AKV_EINPUT, "tokenizer.json: Prepend needs \"prepend\"");
        return dup_str(p, &st->a, &st->a_len, err);
    }
    if (kind == TK_N_REPLACE) return parse_replace(j, st, "normalizer", err);
    st->left = jbool(j, "strip_left", 0);
    st->right = jbool(j, "strip_right", 0);
    return AKV_OK;
}

akv_status tk_parse_normalizer(const cJSON *j, tk_steps *out, akv_err *err) {
    return cJSON_IsNull(j) || !j ? AKV_OK : parse_norm(j, out, 0, err);
}

static akv_status parse_split(const cJSON *j, tk_step *st, akv_err *err) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const char *b = jstr(j, "behavior");
    int k = 0;
    while (k < 5 && !(b && !strcmp(b, names[k]))) k++;
    if (k == 5)
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: unsupported feature: Split behavior "
                        "\"%s\"", b ? b : "(missing)");
    st->behavior = (tk_behavior)k;
    st->invert = jbool(j, "invert", 0);
    return parse_pattern(j, "Split", st, err);
}

static akv_status parse_metaspace(const cJSON *j, tk_step *st, akv_err *err) {
    char rep[5] = {0};
    akv_status s = one_char(j, "Metaspace", "replacement", &st->ch, err);
    if (!s) s = parse_prepend_scheme(j, st, err);
    if (s) return s;
    st->flag = jbool(j, "split", 1);
    int n = tk_utf8_put(rep, st->ch);
    st->re = tk_regex_compile(rep, (size_t)n, 1, err);
    return st->re ? AKV_OK : AKV_EINPUT;
}

static akv_status parse_pre(const cJSON *j, tk_steps *out, int depth, akv_err *err) {
    const char *type = type_of(j, "pre_tokenizer", err);
    if (!type) return AKV_EINPUT;
    if (!strcmp(type, "Sequence") && depth < 8) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "pretokenizers")) {
            akv_status s = parse_pre(c, out, depth + 1, err);
            if (s) return s;
        }
        return AKV_OK;
    }
    tk_kind kind = !strcmp(type, "ByteLevel") ? TK_P_BYTELEVEL : !strcmp(type, "Split") ? TK_P_SPLIT
                 : !strcmp(type, "Metaspace") ? TK_P_METASPACE : !strcmp(type, "Digits") ? TK_P_DIGITS
                 : (tk_kind)-1;
    if ((int)kind < 0)
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: unsupported feature: pre_tokenizer \"%s\" "
                        "(supported: Sequence, ByteLevel, Split, Metaspace, Digits)", type);
    tk_step *st = step_new(out, kind, err);
    if (!st) return AKV_ERUNTIME;
    if (kind == TK_P_SPLIT) return parse_split(j, st, err);
    if (kind == TK_P_METASPACE) return parse_metaspace(j, st, err);
    if (kind == TK_P_DIGITS) {
        st->flag = jbool(j, "individual_digits", 0);
        st->re = tk_regex_compile("\\p{N}", 5, 0, err);
        return st->re ? AKV_OK : AKV_EINPUT;
    }
    st->flag = jbool(j, "add_prefix_space", 1);
    st->use_regex = jbool(j, "use_regex", 1);
    if (!st->use_regex) return AKV_OK;
    st->re = tk_regex_compile(GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0, err);
    return st->re ? AKV_OK : AKV_EINPUT;
}

akv_status tk_parse_pre_tokenizer(const cJSON *j, tk_steps *out, akv_err *err) {
    return cJSON_IsNull(j) || !j ? AKV_OK : parse_pre(j, out, 0, err);
}

static tk_kind decoder_kind(const char *type) {
    static const struct { const char *name; tk_kind kind; } map[] = {
        {"ByteLevel", TK_D_BYTELEVEL}, {"ByteFallback", TK_D_BYTEFALLBACK}, {"Fuse", TK_D_FUSE},
        {"Strip", TK_D_STRIP}, {"Replace", TK_D_REPLACE}, {"Metaspace", TK_D_METASPACE}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(type, map[i].name)) return map[i].kind;
    return (tk_kind)-1;
}

static akv_status parse_dec(const cJSON *j, tk_steps *out, int depth, akv_err *err) {
    const char *type = type_of(j, "decoder", err);
    if (!type) return AKV_EINPUT;
    if (!strcmp(type, "Sequence") && depth < 8) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "decoders")) {
            akv_status s = parse_dec(c, out, depth + 1, err);
            if (s) return s;
        }
        return AKV_OK;
    }
    tk_kind kind = decoder_kind(type);
    if ((int)kind < 0)
        return akv_fail(err, AKV_EINPUT, "tokenizer.json: unsupported feature: decoder \"%s\" "
                        "(supported: Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, "
                        "Metaspace)", type);
    tk_step *st = step_new(out, kind, err);
    if (!st) return AKV_ERUNTIME;
    if (kind == TK_D_REPLACE) return parse_replace(j, st, "decoder", err);
    if (kind == TK_D_METASPACE) {
        akv_status s = one_char(j, "Metaspace", "replacement", &st->ch, err);
        return s ? s : parse_prepend_scheme(j, st, err);
    }
    if (kind == TK_D_STRIP) {
        st->left = jint(j, "start", 0);
        st->right = jint(j, "stop", 0);
        return one_char(j, "Strip", "content", &st->ch, err);
    }
    return AKV_OK;
}

akv_status tk_parse_decoder(const cJSON *j, tk_steps *out, akv_err *err) {
    return cJSON_IsNull(j) || !j ? AKV_OK : parse_dec(j, out, 0, err);
}

void tk_steps_free(tk_steps *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->v[i].a);
        free(s->v[i].b);
        pcre2_code_free(s->v[i].re);
    }
    free(s->v);
    s->v = NULL;
    s->n = 0;
}
