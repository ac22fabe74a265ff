/* tokenizer.c — loading tokenizer.json (the BPE model, added tokens, post-processor) and
 * tokenizer_config.json, and the encode driver: added tokens -> normalizer -> added tokens
 * (normalized) -> pre-tokenizer -> BPE -> post-processor. See tokenizer.h. */
#include <stdlib.h>
#include <sys/stat.h>

#include "io.h"
#include "tokenizer_impl.h"

#define TK_MAX_ID (1 << 24)

/* model.vocab -> id <-> string tables (strings in one arena). */
static akv_status load_vocab(tokenizer_t *t, const cJSON *vocab, akv_err *err) {
    if (!cJSON_IsObject(vocab)) return akv_fail(err, AKV_EINPUT, "model.vocab is not an object");
    size_t bytes = 0;
    int32_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= TK_MAX_ID ||
            e->valuedouble != (double)e->valueint)
            return akv_fail(err, AKV_EINPUT, "model.vocab: token \"%.40s\" has no valid id", e->string);
        bytes += strlen(e->string) + 1;
        if (e->valueint > max_id) max_id = e->valueint;
    }
    tk_vocab *v = &t->vocab;
    v->n_ids = max_id + 1;
    t->arena = malloc(bytes + 1);
    v->str = calloc((size_t)v->n_ids + 1, sizeof *v->str);
    v->len = calloc((size_t)v->n_ids + 1, sizeof *v->len);
    if (!t->arena || !v->str || !v->len) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    char *p = t->arena;
    cJSON_ArrayForEach(e, vocab) {
        size_t n = strlen(e->string);
        memcpy(p, e->string, n + 1);
        v->str[e->valueint] = p;
        v->len[e->valueint] = (uint32_t)n;
        p += n + 1;
    }
    return tk_vocab_build(v, err);
}

/* One merge: "a b" or ["a", "b"]; a, b and a+b must be in the vocabulary. */
static akv_status load_merge(tokenizer_t *t, const cJSON *m, int rank, tk_buf *tmp, akv_err *err) {
    const char *a = NULL, *b = NULL;
    size_t na = 0;
    if (cJSON_IsString(m) && (b = strchr(m->valuestring, ' '))) {
        a = m->valuestring;
        na = (size_t)(b++ - a);
    } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        a = cJSON_GetArrayItem(m, 0)->valuestring;
        b = cJSON_GetArrayItem(m, 1)->valuestring;
        na = strlen(a);
    } else {
        return akv_fail(err, AKV_EINPUT, "model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", rank);
    }
    tmp->n = 0;
    if (tk_buf_put(tmp, a, na) || tk_buf_put(tmp, b, strlen(b)))
        return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    int32_t ia = tk_vocab_find(&t->vocab, a, na), ib = tk_vocab_find(&t->vocab, b, strlen(b));
    int32_t im = tk_vocab_find(&t->vocab, tmp->p, tmp->n);
    if (ia < 0 || ib < 0 || im < 0)
        return akv_fail(err, AKV_EINPUT, "model.merges[%d] \"%.*s\" + \"%s\" uses a token that is "
                        "not in model.vocab", rank, (int)na, a, b);
    tk_merges_put(&t->merges, ia, ib, rank, im);
    return AKV_OK;
}

static akv_status check_model_options(const cJSON *model, akv_err *err) {
    const char *type = jstr(model, "type");
    if (type && strcmp(type, "BPE"))
        return akv_fail(err, AKV_EINPUT, "unsupported tokenizer.json feature: model \"%s\" "
                        "(asymkv supports BPE)", type);
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return akv_fail(err, AKV_EINPUT, "model has no \"type\" and no merges (asymkv supports BPE)");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(d) && d->valuedouble > 0)
        return akv_fail(err, AKV_EINPUT, "unsupported tokenizer.json feature: BPE dropout %g",
                        d->valuedouble);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s = jstr(model, affixes[i]);
        if (s && *s)
            return akv_fail(err, AKV_EINPUT, "unsupported tokenizer.json feature: BPE %s \"%s\"",
                            affixes[i], s);
    }
    return AKV_OK;
}

static akv_status load_model(tokenizer_t *t, const cJSON *model, akv_err *err) {
    if (!cJSON_IsObject(model)) return akv_fail(err, AKV_EINPUT, "no \"model\" object");
    akv_status st = check_model_options(model, err);
    if (!st) st = load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), err);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!st && merges && !cJSON_IsArray(merges))
        st = akv_fail(err, AKV_EINPUT, "model.merges is not an array");
    if (!st) st = tk_merges_init(&t->merges, cJSON_GetArraySize(merges), err);
    tk_buf tmp = {0};
    int rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        if (st) break;
        st = load_merge(t, m, rank++, &tmp, err);
    }
    tk_buf_free(&tmp);
    if (st) return st;
    const char *unk = jstr(model, "unk_token");
    t->unk_id = unk ? tk_vocab_find(&t->vocab, unk, strlen(unk)) : -1;
    if (unk && t->unk_id < 0) t->unk_id = -2; /* an error only when an unknown char shows up */
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tk_vocab_find(&t->vocab, name, 6);
    }
    return AKV_OK;
}

static akv_status load_added_token(tokenizer_t *t, const cJSON *e, tk_added *a, akv_err *err) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    const char *content = jstr(e, "content");
    if (!cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= TK_MAX_ID || !content)
        return akv_fail(err, AKV_EINPUT, "added_tokens: an entry without a valid id and content");
    a->id = id->valueint;
    a->len = strlen(content);
    a->content = malloc(a->len + 1);
    if (!a->content) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    memcpy(a->content, content, a->len + 1);
    a->special = jbool(e, "special", 0);
    a->normalized = jbool(e, "normalized", !a->special);
    a->lstrip = jbool(e, "lstrip", 0);
    a->rstrip = jbool(e, "rstrip", 0);
    a->single_word = jbool(e, "single_word", 0);
    return AKV_OK;
}

static akv_status load_added(tokenizer_t *t, const cJSON *arr, akv_err *err) {
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    int32_t max_id = t->vocab.n_ids - 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        tk_added *a = &t->added[t->n_added];
        akv_status st = load_added_token(t, e, a, err);
        if (st) return st;
        t->n_added++;
        if (a->id > max_id) max_id = a->id;
    }
    t->n_ids = max_id + 1;
    t->added_of_id = malloc(((size_t)t->n_ids + 1) * sizeof *t->added_of_id);
    if (!t->added_of_id) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    for (int32_t i = 0; i < t->n_ids; i++) t->added_of_id[i] = -1;
    for (int i = 0; i < t->n_added; i++) t->added_of_id[t->added[i].id] = i;
    return AKV_OK;
}

/* Like tokenizers, decoding spells a normalized added token in its normalized form. */
static int keep_normalized(tk_added *a, const tk_buf *norm) {
    if (norm->n == a->len && !memcmp(norm->p, a->content, a->len)) return 0;
    if (!(a->dec = malloc(norm->n + 1))) return -1;
    memcpy(a->dec, norm->p ? norm->p : "", norm->n);
    a->dec[norm->n] = '\0';
    a->dec_len = norm->n;
    return 0;
}

/* Two tries: tokens matched in the raw text and (normalized through the normalizer) in the
 * normalized text. */
static akv_status build_tries(tokenizer_t *t, akv_err *err) {
    tk_work w;
    int rc = tk_work_init(&w);
    int need_word = 0;
    for (int i = 0; !rc && i < t->n_added; i++) {
        tk_added *a = &t->added[i];
        need_word |= a->single_word;
        if (!a->len) continue;
        if (!a->normalized) {
            rc = tk_trie_add(&t->raw_trie, a->content, a->len, i);
        } else {
            rc = tk_normalize(t, &w, a->content, a->len);
            if (!rc && w.nbuf.n) rc = tk_trie_add(&t->norm_trie, w.nbuf.p, w.nbuf.n, i);
            if (!rc) rc = keep_normalized(a, &w.nbuf);
        }
    }
    tk_work_free(&w);
    if (rc) return akv_fail(err, AKV_ERUNTIME, "cannot build the added-token tables (error %d)", rc);
    if (need_word) t->word_re = tk_regex_compile("\\w", 2, 0, err);
    return need_word && !t->word_re ? AKV_EINPUT : AKV_OK;
}

/* Ids of a TemplateProcessing special token, looked up in its special_tokens map. */
static akv_status template_ids(const cJSON *pp, const char *name, tk_ids *dst, akv_err *err) {
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(pp, "special_tokens"), name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(spec, "ids"), *e;
    if (!cJSON_IsArray(ids))
        return akv_fail(err, AKV_EINPUT, "post_processor: special token \"%s\" has no ids", name);
    cJSON_ArrayForEach(e, ids) {
        if (!cJSON_IsNumber(e) || e->valueint < 0)
            return akv_fail(err, AKV_EINPUT, "post_processor: bad id for \"%s\"", name);
        if (tk_ids_push(dst, e->valueint)) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    }
    return AKV_OK;
}

/* The single-sequence template: special tokens before $A go to pre, after it to post. */
static akv_status load_template(const cJSON *pp, tk_ids *pre, tk_ids *post, akv_err *err) {
    const cJSON *item;
    int seen_a = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(pp, "single")) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(item, "Sequence");
        const char *name = jstr(sp, "id");
        if (sq) {
            const char *which = jstr(sq, "id");
            if (!which || strcmp(which, "A"))
                return akv_fail(err, AKV_EINPUT, "post_processor: single template uses sequence "
                                "\"%s\" (only $A is possible)", which ? which : "?");
            seen_a = 1;
        } else if (name) {
            akv_status st = template_ids(pp, name, seen_a ? post : pre, err);
            if (st) return st;
        } else {
            return akv_fail(err, AKV_EINPUT, "post_processor: unreadable single template item");
        }
    }
    return AKV_OK;
}

/* [token, id] of RobertaProcessing / BertProcessing. */
static int32_t pair_id(const cJSON *pp, const char *key) {
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, key), 1);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static akv_status load_post_one(const cJSON *pp, tk_ids *pre, tk_ids *post, int depth,
                                akv_err *err);

/* Processors of a Sequence wrap one another: the later ones outermost. */
static akv_status load_post_seq(const cJSON *pp, tk_ids *pre, tk_ids *post, int depth,
                                akv_err *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
        tk_ids p2 = {0}, q2 = {0};
        akv_status st = load_post_one(e, &p2, &q2, depth + 1, err);
        for (size_t i = 0; !st && i < pre->n; i++)
            if (tk_ids_push(&p2, pre->v[i])) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        for (size_t i = 0; !st && i < q2.n; i++)
            if (tk_ids_push(post, q2.v[i])) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        free(pre->v);
        *pre = p2;
        free(q2.v);
        if (st) return st;
    }
    return AKV_OK;
}

static akv_status load_post_one(const cJSON *pp, tk_ids *pre, tk_ids *post, int depth,
                                akv_err *err) {
    const char *type = jstr(pp, "type");
    if (!type) return akv_fail(err, AKV_EINPUT, "a post_processor without a \"type\"");
    if (!strcmp(type, "ByteLevel")) return AKV_OK; /* only trims offsets */
    if (!strcmp(type, "TemplateProcessing")) return load_template(pp, pre, post, err);
    if (!strcmp(type, "Sequence") && depth < 8) return load_post_seq(pp, pre, post, depth, err);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        int32_t cls = pair_id(pp, "cls"), sep = pair_id(pp, "sep");
        if (cls < 0 || sep < 0)
            return akv_fail(err, AKV_EINPUT, "post_processor %s needs cls and sep", type);
        if (tk_ids_push(pre, cls) || tk_ids_push(post, sep))
            return akv_fail(err, AKV_ERUNTIME, "out of host memory");
        return AKV_OK;
    }
    return akv_fail(err, AKV_EINPUT, "unsupported tokenizer.json feature: post_processor \"%s\" "
                    "(supported: TemplateProcessing, ByteLevel, RobertaProcessing, "
                    "BertProcessing, Sequence)", type);
}

/* A tokenizer_config.json token field: "text" or {"content": "text"}. */
static int32_t config_token(const tokenizer_t *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    return s ? tokenizer_token_id(t, s) : -1;
}

/* DIR/tokenizer_config.json (optional): bos / eos ids, and add_bos_token / add_eos_token when
 * tokenizer.json has no post-processor. */
static akv_status load_config(tokenizer_t *t, const char *dir, int has_post, akv_err *err) {
    char path[4096 + 32];
    struct stat sb;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (stat(path, &sb) != 0) return AKV_OK;
    char *text = NULL;
    akv_status st = io_read_text(path, &text, NULL, err);
    cJSON *cfg = st ? NULL : cJSON_Parse(text);
    free(text);
    if (st) return st;
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return akv_fail(err, AKV_EINPUT, "%s is not a JSON object", path);
    }
    t->bos_id = config_token(t, cfg, "bos_token");
    t->eos_id = config_token(t, cfg, "eos_token");
    if (!has_post && jbool(cfg, "add_bos_token", 0) && t->bos_id >= 0 && tk_ids_push(&t->pre_ids, t->bos_id))
        st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!st && !has_post && jbool(cfg, "add_eos_token", 0) && t->eos_id >= 0 &&
        tk_ids_push(&t->post_ids, t->eos_id))
        st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    cJSON_Delete(cfg);
    return st;
}

static akv_status load_json(tokenizer_t *t, const cJSON *root, akv_err *err) {
    if (!cJSON_IsObject(root)) return akv_fail(err, AKV_EINPUT, "not a JSON object");
    akv_status st = load_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), err);
    if (!st) st = load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err);
    if (!st) st = tk_parse_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), &t->norm, err);
    if (!st) st = tk_parse_pre_tokenizer(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &t->pre, err);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    t->has_decoder = dec && !cJSON_IsNull(dec);
    if (!st) st = tk_parse_decoder(dec, &t->dec, err);
    if (!st) st = build_tries(t, err);
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    t->has_post = pp && !cJSON_IsNull(pp);
    if (!st && t->has_post) st = load_post_one(pp, &t->pre_ids, &t->post_ids, 0, err);
    return st;
}

/* PATH may be the file or its folder; dir gets the folder. */
static void resolve_path(const char *path, char *file, char *dir, size_t cap) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(file, cap, "%s/tokenizer.json", path);
        snprintf(dir, cap, "%s", path);
        return;
    }
    snprintf(file, cap, "%s", path);
    const char *slash = strrchr(path, '/');
    snprintf(dir, cap, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
}

akv_status tokenizer_load(tokenizer_t **out, const char *path, akv_err *err) {
    char file[4096], dir[4096], *text = NULL;
    akv_err e = {0};
    cJSON *root = NULL;
    tokenizer_t *t = calloc(1, sizeof *t);
    *out = NULL;
    resolve_path(path, file, dir, sizeof file);
    akv_status st = t ? io_read_text(file, &text, NULL, &e) : akv_fail(&e, AKV_ERUNTIME, "out of host memory");
    if (!st && !(root = cJSON_Parse(text))) st = akv_fail(&e, AKV_EINPUT, "not valid JSON");
    if (!st) {
        t->unk_id = t->bos_id = t->eos_id = -1;
        st = load_json(t, root, &e);
    }
    if (!st) st = load_config(t, dir, t->has_post, &e);
    cJSON_Delete(root);
    free(text);
    if (st) {
        tokenizer_free(t);
        if (strstr(e.msg, file) || strstr(e.msg, "tokenizer_config.json")) return akv_fail(err, st, "%s", e.msg);
        return akv_fail(err, st, "%s: %s", file, e.msg);
    }
    *out = t;
    return AKV_OK;
}

void tokenizer_free(tokenizer_t *t) {
    if (!t) return;
    tk_vocab_free(&t->vocab);
    tk_merges_free(&t->merges);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].dec);
    }
    free(t->added);
    free(t->added_of_id);
    tk_trie_free(&t->raw_trie);
    tk_trie_free(&t->norm_trie);
    pcre2_code_free(t->word_re);
    tk_steps_free(&t->norm);
    tk_steps_free(&t->pre);
    tk_steps_free(&t->dec);
    free(t->pre_ids.v);
    free(t->post_ids.v);
    free(t->arena);
    free(t);
}

int tokenizer_vocab_size(const tokenizer_t *t) { return t->n_ids; }
int32_t tokenizer_bos_id(const tokenizer_t *t) { return t->bos_id; }
int32_t tokenizer_eos_id(const tokenizer_t *t) { return t->eos_id; }

int32_t tokenizer_token_id(const tokenizer_t *t, const char *content) {
    size_t n = strlen(content);
    for (int i = t->n_added - 1; i >= 0; i--)
        if (t->added[i].len == n && !memcmp(t->added[i].content, content, n)) return t->added[i].id;
    return tk_vocab_find(&t->vocab, content, n);
}

/* ---- encoding ---- */

/* One piece of text that is not an added token: pre-tokenizer, then BPE per pre-token. */
static int encode_piece(const tokenizer_t *t, tk_work *w, tk_piece p, tk_ids *out) {
    w->a.n = 0;
    if (tk_pieces_push(&w->a, p.off, p.len, -1, p.at_start)) return -1;
    int rc = tk_pre_tokenize(t, w);
    for (size_t i = 0; !rc && i < w->a.n; i++)
        rc = tk_bpe_word(t, w->bpe, w->arena.p + w->a.v[i].off, w->a.v[i].len, out);
    return rc;
}

/* A raw-text segment between added tokens: normalize, split on normalized added tokens. */
static int encode_segment(const tokenizer_t *t, tk_work *w, tk_piece seg, tk_pieces *sub,
                          tk_ids *out) {
    int rc = tk_normalize(t, w, w->arena.p + seg.off, seg.len);
    size_t off = w->arena.n;
    if (!rc) rc = tk_buf_put(&w->arena, w->nbuf.p, w->nbuf.n);
    sub->n = 0;
    if (!rc) rc = tk_split_added(t, &t->norm_trie, w, off, w->nbuf.n, seg.at_start, sub);
    for (size_t i = 0; !rc && i < sub->n; i++)
        rc = sub->v[i].id >= 0 ? tk_ids_push(out, sub->v[i].id) : encode_piece(t, w, sub->v[i], out);
    return rc;
}

static int encode_all(const tokenizer_t *t, tk_work *w, const char *text, size_t len,
                      int add_special, tk_ids *out) {
    tk_pieces segs = {0}, sub = {0};
    int rc = tk_buf_put(&w->arena, text, len);
    for (size_t i = 0; !rc && add_special && i < t->pre_ids.n; i++) rc = tk_ids_push(out, t->pre_ids.v[i]);
    if (!rc) rc = tk_split_added(t, &t->raw_trie, w, 0, len, 1, &segs);
    for (size_t i = 0; !rc && i < segs.n; i++)
        rc = segs.v[i].id >= 0 ? tk_ids_push(out, segs.v[i].id) : encode_segment(t, w, segs.v[i], &sub, out);
    for (size_t i = 0; !rc && add_special && i < t->post_ids.n; i++) rc = tk_ids_push(out, t->post_ids.v[i]);
    tk_pieces_free(&segs);
    tk_pieces_free(&sub);
    return rc;
}

akv_status tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, int add_special,
                            int32_t **ids, int *n, akv_err *err) {
    *ids = NULL;
    *n = 0;
    size_t bad = tk_utf8_check(text, len);
    if (bad < len)
        return akv_fail(err, AKV_EINPUT, "text is not valid UTF-8 (byte %zu of %zu)", bad, len);
    tk_work w;
    tk_ids out = {0};
    int rc = tk_work_init(&w);
    if (!rc) rc = tk_ids_push(&out, 0); /* so that an empty result is still allocated */
    out.n = 0;
    if (!rc) rc = encode_all(t, &w, text, len, add_special, &out);
    tk_work_free(&w);
    if (rc) {
        free(out.v);
        if (rc == -2) return akv_fail(err, AKV_EINPUT, "the text has a character the vocabulary "
                                      "lacks, and the model's unk_token is not in the vocabulary");
        if (rc == -3) return akv_fail(err, AKV_ERUNTIME, "a tokenizer regex failed to run (PCRE2)");
        return akv_fail(err, AKV_ERUNTIME, "out of host memory while encoding %zu bytes", len);
    }
    if (out.n > (size_t)INT32_MAX) {
        free(out.v);
        return akv_fail(err, AKV_EINPUT, "text too long: more than 2^31 tokens");
    }
    *ids = out.v;
    *n = (int)out.n;
    return AKV_OK;
}
