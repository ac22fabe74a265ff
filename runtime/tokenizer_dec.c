/* tokenizer_dec.c — decoding: id -> token strings -> the decoder steps (ByteLevel, ByteFallback,
 * Fuse, Strip, Replace, Metaspace), and the streaming decoder that withholds text until a UTF-8
 * sequence is complete (the algorithm of tokenizers' DecodeStream). */
#include <stdlib.h>

#include "tokenizer_impl.h"

static const char FFFD[] = "\xEF\xBF\xBD";

/* Appends s as a new arena string and records it as a piece of list out. */
static int push_text(tk_buf *arena, tk_pieces *out, const char *s, size_t n) {
    size_t off = arena->n;
    if (tk_buf_put(arena, s, n)) return -1;
    return tk_pieces_push(out, off, n, -1, 0);
}

/* Byte value of a "<0xNN>" token, or -1. */
static int fallback_byte(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEFabcdef";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!s[3] || !s[4] || !h || !l) return -1;
    int hv = (int)(h - hex), lv = (int)(l - hex);
    return (hv > 15 ? hv - 6 : hv) * 16 + (lv > 15 ? lv - 6 : lv);
}

/* Joined bytes of all tokens through the unicode->byte map (a token with a character outside
 * the map keeps its UTF-8 bytes), then repaired into UTF-8 like from_utf8_lossy. */
static int dec_bytelevel(tk_work *w, tk_pieces *in, tk_pieces *out) {
    tk_buf *bytes = &w->ntmp;
    bytes->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const unsigned char *s = (const unsigned char *)w->arena.p + in->v[i].off;
        size_t n = in->v[i].len, start = bytes->n, j = 0;
        while (j < n) {
            int k = tk_utf8_len(s + j, n - j);
            int b = k > 0 ? tk_cp_to_byte(tk_utf8_cp(s + j, k)) : -1;
            if (b < 0) break;
            unsigned char c = (unsigned char)b;
            if (tk_buf_put(bytes, &c, 1)) return -1;
            j += (size_t)k;
        }
        if (j < n) { /* unmapped character: the whole token as it is */
            bytes->n = start;
            if (tk_buf_put(bytes, s, n)) return -1;
        }
    }
    w->nbuf.n = 0;
    if (tk_utf8_lossy(&w->nbuf, bytes->p ? bytes->p : "", bytes->n)) return -1;
    return push_text(&w->arena, out, w->nbuf.p, w->nbuf.n);
}

static int flush_bytes(tk_work *w, tk_buf *bytes, tk_pieces *out) {
    if (!bytes->n) return 0;
    int rc = 0;
    if (tk_utf8_check(bytes->p, bytes->n) == bytes->n) {
        rc = push_text(&w->arena, out, bytes->p, bytes->n);
    } else {
        for (size_t i = 0; !rc && i < bytes->n; i++) rc = push_text(&w->arena, out, FFFD, 3);
    }
    bytes->n = 0;
    return rc;
}

static int dec_bytefallback(tk_work *w, tk_pieces *in, tk_pieces *out) {
    tk_buf *bytes = &w->ntmp;
    bytes->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const tk_piece *p = &in->v[i];
        int b = fallback_byte(w->arena.p + p->off, p->len);
        if (b >= 0) {
            unsigned char c = (unsigned char)b;
            if (tk_buf_put(bytes, &c, 1)) return -1;
            continue;
        }
        if (flush_bytes(w, bytes, out) || tk_pieces_push(out, p->off, p->len, -1, 0)) return -1;
    }
    return flush_bytes(w, bytes, out);
}

static int dec_fuse(tk_work *w, tk_pieces *in, tk_pieces *out) {
    w->nbuf.n = 0;
    for (size_t i = 0; i < in->n; i++)
        if (tk_buf_put(&w->nbuf, w->arena.p + in->v[i].off, in->v[i].len)) return -1;
    return push_text(&w->arena, out, w->nbuf.p ? w->nbuf.p : "", w->nbuf.n);
}

/* Strip: up to `left` leading and `right` trailing copies of the character. */
static int dec_strip(const tk_step *st, tk_work *w, tk_pieces *in, tk_pieces *out) {
    char c[4];
    size_t nc = (size_t)tk_utf8_put(c, st->ch);
    for (size_t i = 0; i < in->n; i++) {
        tk_piece p = in->v[i];
        const char *s = w->arena.p + p.off;
        size_t a = 0, b = p.len;
        for (int k = 0; k < st->left && b - a >= nc && !memcmp(s + a, c, nc); k++) a += nc;
        for (int k = 0; k < st->right && b - a >= nc && !memcmp(s + b - nc, c, nc); k++) b -= nc;
        if (tk_pieces_push(out, p.off + a, b - a, -1, 0)) return -1;
    }
    return 0;
}

static int dec_replace(const tk_step *st, tk_work *w, tk_pieces *in, tk_pieces *out) {
    for (size_t i = 0; i < in->n; i++) {
        tk_piece p = in->v[i];
        int rc = tk_find_spans(w, st->re, w->arena.p + p.off, p.len);
        w->nbuf.n = 0;
        for (size_t k = 0; !rc && k < w->spans.n; k++) {
            const tk_piece *sp = &w->spans.v[k];
            rc = sp->id ? tk_buf_put(&w->nbuf, st->b, st->b_len)
                        : tk_buf_put(&w->nbuf, w->arena.p + p.off + sp->off, sp->len);
        }
        if (rc || push_text(&w->arena, out, w->nbuf.p ? w->nbuf.p : "", w->nbuf.n)) return rc ? rc : -1;
    }
    return 0;
}

/* Metaspace: the replacement becomes ' ', except in the first token where it is dropped. */
static int dec_metaspace(const tk_step *st, tk_work *w, tk_pieces *in, tk_pieces *out) {
    char c[4];
    size_t nc = (size_t)tk_utf8_put(c, st->ch);
    for (size_t i = 0; i < in->n; i++) {
        tk_piece p = in->v[i];
        int drop = i == 0 && st->prepend != TK_PREPEND_NEVER;
        w->nbuf.n = 0;
        for (size_t j = 0; j < p.len;) {
            const char *s = w->arena.p + p.off + j;
            int rep = p.len - j >= nc && !memcmp(s, c, nc);
            if (rep && !drop && tk_buf_put(&w->nbuf, " ", 1)) return -1;
            if (!rep && tk_buf_put(&w->nbuf, s, 1)) return -1;
            j += rep ? nc : 1;
        }
        if (push_text(&w->arena, out, w->nbuf.p ? w->nbuf.p : "", w->nbuf.n)) return -1;
    }
    return 0;
}

int tk_decode_tokens(const tokenizer_t *t, tk_work *w, tk_buf *out) {
    if (!t->has_decoder) { /* tokenizers joins with spaces when there is no decoder */
        for (size_t i = 0; i < w->a.n; i++)
            if ((i && tk_buf_put(out, " ", 1)) || tk_buf_put(out, w->arena.p + w->a.v[i].off, w->a.v[i].len))
                return -1;
        return 0;
    }
    for (int s = 0; s < t->dec.n; s++) {
        const tk_step *st = &t->dec.v[s];
        int rc;
        w->b.n = 0;
        switch (st->kind) {
        case TK_D_BYTELEVEL: rc = dec_bytelevel(w, &w->a, &w->b); break;
        case TK_D_BYTEFALLBACK: rc = dec_bytefallback(w, &w->a, &w->b); break;
        case TK_D_FUSE: rc = dec_fuse(w, &w->a, &w->b); break;
        case TK_D_STRIP: rc = dec_strip(st, w, &w->a, &w->b); break;
        case TK_D_REPLACE: rc = dec_replace(st, w, &w->a, &w->b); break;
        default: rc = dec_metaspace(st, w, &w->a, &w->b); break;
        }
        if (rc) return rc;
        tk_pieces swap = w->a;
        w->a = w->b;
        w->b = swap;
    }
    for (size_t i = 0; i < w->a.n; i++)
        if (tk_buf_put(out, w->arena.p + w->a.v[i].off, w->a.v[i].len)) return -1;
    return 0;
}

/* Token strings of ids into w (added tokens first, like tokenizers), then the decoders. */
static akv_status decode_into(const tokenizer_t *t, tk_work *w, const int32_t *ids, size_t n,
                              int skip_special, tk_buf *out, akv_err *err) {
    w->arena.n = 0;
    w->a.n = 0;
    out->n = 0;
    if (tk_buf_reserve(out, 0)) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        int32_t ai = id >= 0 && id < t->n_ids ? t->added_of_id[id] : -1;
        const tk_added *a = ai >= 0 ? &t->added[ai] : NULL;
        const char *s = a ? (a->dec ? a->dec : a->content) : NULL;
        size_t len = a ? (a->dec ? a->dec_len : a->len) : 0;
        if (ai < 0 && id >= 0 && id < t->vocab.n_ids && t->vocab.str[id]) {
            s = t->vocab.str[id];
            len = t->vocab.len[id];
        }
        if (!s)
            return akv_fail(err, AKV_EINPUT, "token id %d is not in the vocabulary (ids are 0..%d)",
                            id, t->n_ids - 1);
        if (a && skip_special && a->special && !a->dec) continue; /* as tokenizers checks it */
        if (push_text(&w->arena, &w->a, s, len)) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    }
    int rc = tk_decode_tokens(t, w, out);
    if (rc == -1) return akv_fail(err, AKV_ERUNTIME, "out of host memory while decoding");
    if (rc) return akv_fail(err, AKV_ERUNTIME, "regex failure (PCRE2 error) while decoding");
    return AKV_OK;
}

akv_status tokenizer_decode(const tokenizer_t *t, const int32_t *ids, int n, int skip_special,
                            char **text, size_t *len, akv_err *err) {
    tk_work w;
    tk_buf out = {0};
    *text = NULL;
    akv_status st = tk_work_init(&w) ? akv_fail(err, AKV_ERUNTIME, "out of host memory") : AKV_OK;
    if (!st) st = decode_into(t, &w, ids, n > 0 ? (size_t)n : 0, skip_special, &out, err);
    tk_work_free(&w);
    if (st) {
        tk_buf_free(&out);
        return st;
    }
    *text = out.p;
    if (len) *len = out.n;
    return AKV_OK;
}

/* ---- streaming ---- */

struct tokenizer_stream {
    const tokenizer_t *t;
    int skip_special;
    tk_work w;
    tk_ids ids;          /* the window of ids still needed to decode the next chunk */
    size_t prefix_index; /* ids[0..prefix_index) decode to prefix */
    tk_buf prefix, text, chunk;
};

akv_status tokenizer_stream_init(tokenizer_stream **out, const tokenizer_t *t, int skip_special,
                                 akv_err *err) {
    tokenizer_stream *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s || tk_work_init(&s->w)) {
        tokenizer_stream_free(s);
        return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    }
    s->t = t;
    s->skip_special = skip_special;
    *out = s;
    return AKV_OK;
}

static int ends_fffd(const tk_buf *b) {
    return b->n >= 3 && !memcmp(b->p + b->n - 3, FFFD, 3);
}

/* Keeps ids[from..) as the window. */
static void window_drop(tokenizer_stream *s, size_t from) {
    memmove(s->ids.v, s->ids.v + from, (s->ids.n - from) * sizeof *s->ids.v);
    s->ids.n -= from;
}

akv_status tokenizer_stream_step(tokenizer_stream *s, int32_t id, const char **text, size_t *len,
                                 akv_err *err) {
    akv_status st = AKV_OK;
    *text = "";
    *len = 0;
    if (s->prefix.n == 0 && s->ids.n > 0) {
        st = decode_into(s->t, &s->w, s->ids.v, s->ids.n, s->skip_special, &s->text, err);
        if (!st && !ends_fffd(&s->text)) {
            tk_buf swap = s->prefix;
            s->prefix = s->text;
            s->text = swap;
            s->prefix_index = s->ids.n;
        }
    }
    if (!st && tk_ids_push(&s->ids, id)) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!st) st = decode_into(s->t, &s->w, s->ids.v, s->ids.n, s->skip_special, &s->text, err);
    if (st) {
        s->ids.n -= s->ids.n && st == AKV_EINPUT; /* a bad id leaves the stream as it was */
        return st;
    }
    if (s->text.n <= s->prefix.n || ends_fffd(&s->text)) return AKV_OK;
    if (memcmp(s->text.p, s->prefix.p ? s->prefix.p : "", s->prefix.n))
        return akv_fail(err, AKV_ERUNTIME, "streaming decode: token %d changed text already printed",
                        id);
    s->chunk.n = 0;
    if (tk_buf_put(&s->chunk, s->text.p + s->prefix.n, s->text.n - s->prefix.n))
        return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    size_t new_index = s->ids.n - s->prefix_index;
    window_drop(s, s->prefix_index);
    st = decode_into(s->t, &s->w, s->ids.v, s->ids.n, s->skip_special, &s->prefix, err);
    s->prefix_index = new_index;
    *text = s->chunk.p;
    *len = s->chunk.n;
    return st;
}

void tokenizer_stream_free(tokenizer_stream *s) {
    if (!s) return;
    tk_work_free(&s->w);
    free(s->ids.v);
    tk_buf_free(&s->prefix);
    tk_buf_free(&s->text);
    tk_buf_free(&s->chunk);
    free(s);
}
