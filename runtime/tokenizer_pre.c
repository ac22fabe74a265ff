/* tokenizer_pre.c — everything between the text and the BPE model: normalizers, the added-token
 * split (leftmost-longest byte trie with lstrip / rstrip / single_word), and the pre-tokenizers
 * (regex split behaviors, ByteLevel's byte->unicode map, Metaspace), as tokenizers does them. */
#include <stdlib.h>

#include "tokenizer_impl.h"

#define TK_EREGEX (-3)

int tk_work_init(tk_work *w) {
    memset(w, 0, sizeof *w);
    w->md = pcre2_match_data_create(4, NULL);
    w->mctx = pcre2_match_context_create(NULL);
    w->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    w->bpe = tk_bpe_work_new();
    if (!w->md || !w->mctx || !w->bpe) return -1;
    if (w->jit) pcre2_jit_stack_assign(w->mctx, NULL, w->jit);
    return 0;
}

void tk_work_free(tk_work *w) {
    if (!w) return;
    tk_buf_free(&w->arena);
    tk_buf_free(&w->nbuf);
    tk_buf_free(&w->ntmp);
    tk_pieces_free(&w->a);
    tk_pieces_free(&w->b);
    tk_pieces_free(&w->spans);
    pcre2_match_data_free(w->md);
    pcre2_match_context_free(w->mctx);
    pcre2_jit_stack_free(w->jit);
    tk_bpe_work_free(w->bpe);
    memset(w, 0, sizeof *w);
}

static size_t char_len_at(const char *s, size_t n, size_t i) {
    if (i >= n) return 1;
    int k = tk_utf8_len((const unsigned char *)s + i, n - i);
    return k > 0 ? (size_t)k : 1;
}

/* Matches and the gaps between them, like tokenizers' Pattern::find_matches over Onig's
 * find_iter: an empty match right after the previous match is skipped (advance one char). */
int tk_find_spans(tk_work *w, const pcre2_code *re, const char *s, size_t n) {
    size_t last_end = 0, prev = 0, last_match_end = (size_t)-1;
    w->spans.n = 0;
    while (last_end <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, last_end, PCRE2_NO_UTF_CHECK, w->md, w->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return TK_EREGEX;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && me == last_match_end) {
            last_end += char_len_at(s, n, last_end);
            continue;
        }
        last_end = last_match_end = me;
        if (prev != ms && tk_pieces_push(&w->spans, prev, ms - prev, 0, 0)) return -1;
        if (tk_pieces_push(&w->spans, ms, me - ms, 1, 0)) return -1;
        prev = me;
    }
    if (prev != n && tk_pieces_push(&w->spans, prev, n - prev, 0, 0)) return -1;
    return 0;
}

/* ---- normalizers ---- */

static int replace_all(tk_work *w, const tk_step *st, const tk_buf *in, tk_buf *out) {
    int rc = tk_find_spans(w, st->re, in->p, in->n);
    for (size_t i = 0; !rc && i < w->spans.n; i++) {
        const tk_piece *sp = &w->spans.v[i];
        rc = sp->id ? tk_buf_put(out, st->b, st->b_len) : tk_buf_put(out, in->p + sp->off, sp->len);
    }
    return rc;
}

static int strip_white(const tk_step *st, const tk_buf *in, tk_buf *out) {
    const unsigned char *u = (const unsigned char *)in->p;
    size_t a = 0, b = in->n;
    while (st->left && a < b) {
        int k = tk_utf8_len(u + a, b - a);
        if (k < 1 || !tk_is_white_space(tk_utf8_cp(u + a, k))) break;
        a += (size_t)k;
    }
    while (st->right && b > a) {
        size_t c = b - 1;
        while (c > a && (u[c] & 0xC0) == 0x80) c--;
        int k = tk_utf8_len(u + c, b - c);
        if (k < 1 || !tk_is_white_space(tk_utf8_cp(u + c, k))) break;
        b = c;
    }
    return tk_buf_put(out, in->p + a, b - a);
}

int tk_normalize(const tokenizer_t *t, tk_work *w, const char *s, size_t n) {
    w->nbuf.n = 0;
    if (tk_buf_put(&w->nbuf, s, n)) return -1;
    for (int i = 0; i < t->norm.n; i++) {
        const tk_step *st = &t->norm.v[i];
        int rc = 0;
        w->ntmp.n = 0;
        if (tk_buf_reserve(&w->ntmp, 0)) return -1;
        if (st->kind == TK_N_PREPEND) {
            if (w->nbuf.n) rc = tk_buf_put(&w->ntmp, st->a, st->a_len);
            if (!rc) rc = tk_buf_put(&w->ntmp, w->nbuf.p, w->nbuf.n);
        } else if (st->kind == TK_N_REPLACE) {
            rc = replace_all(w, st, &w->nbuf, &w->ntmp);
        } else if (st->kind == TK_N_STRIP) {
            rc = strip_white(st, &w->nbuf, &w->ntmp);
        } else { /* TK_N_NFC */
            rc = tk_nfc(w->nbuf.p, w->nbuf.n, &w->ntmp);
        }
        if (rc) return rc;
        tk_buf swap = w->nbuf;
        w->nbuf = w->ntmp;
        w->ntmp = swap;
    }
    return 0;
}

/* ---- added tokens ---- */

static int trie_root(tk_trie *tr) {
    tr->cap = 64;
    tr->v = malloc((size_t)tr->cap * sizeof *tr->v);
    if (!tr->v) return -1;
    tr->v[0] = (tk_trie_node){-1, -1, -1, 0};
    tr->n = 1;
    return 0;
}

int tk_trie_add(tk_trie *tr, const char *s, size_t n, int32_t token) {
    if (tr->n == 0 && trie_root(tr)) return -1;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t ch = tr->v[node].child;
        while (ch >= 0 && tr->v[ch].byte != c) ch = tr->v[ch].sibling;
        if (ch < 0) {
            if (tr->n == tr->cap) {
                int32_t cap = 2 * tr->cap;
                tk_trie_node *v = realloc(tr->v, (size_t)cap * sizeof *v);
                if (!v) return -1;
                tr->v = v;
                tr->cap = cap;
            }
            ch = tr->n++;
            tr->v[ch] = (tk_trie_node){-1, tr->v[node].child, -1, c};
            tr->v[node].child = ch;
        }
        node = ch;
    }
    if (n) tr->first[(unsigned char)s[0]] = 1;
    tr->v[node].token = token; /* a repeated content keeps its last token */
    return 0;
}

void tk_trie_free(tk_trie *tr) {
    if (!tr) return;
    free(tr->v);
    memset(tr, 0, sizeof *tr);
}

/* Longest token starting at s[0..n), or -1; *len gets its length. */
static int32_t trie_longest(const tk_trie *tr, const char *s, size_t n, size_t *len) {
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t ch = tr->v[node].child;
        while (ch >= 0 && tr->v[ch].byte != (unsigned char)s[i]) ch = tr->v[ch].sibling;
        if (ch < 0) break;
        node = ch;
        if (tr->v[node].token >= 0) {
            best = tr->v[node].token;
            *len = i + 1;
        }
    }
    return best;
}

/* Whether the character ending at s[i) (before) or starting at s[i] (after) is a \w. */
static int word_char(const tokenizer_t *t, tk_work *w, const char *s, size_t n, size_t i,
                     int before) {
    size_t a = i, b;
    if (before) {
        if (i == 0) return 0;
        a = i - 1;
        while (a > 0 && ((unsigned char)s[a] & 0xC0) == 0x80) a--;
        b = i;
    } else {
        if (i >= n) return 0;
        b = i + char_len_at(s, n, i);
    }
    return pcre2_match(t->word_re, (PCRE2_SPTR)s + a, b - a, 0, PCRE2_NO_UTF_CHECK |
                       PCRE2_ANCHORED, w->md, w->mctx) >= 0;
}

/* Start of the run of white space that ends at s[i). */
static size_t white_before(const char *s, size_t i) {
    while (i > 0) {
        size_t a = i - 1;
        while (a > 0 && ((unsigned char)s[a] & 0xC0) == 0x80) a--;
        int k = tk_utf8_len((const unsigned char *)s + a, i - a);
        if (k < 1 || !tk_is_white_space(tk_utf8_cp((const unsigned char *)s + a, k))) break;
        i = a;
    }
    return i;
}

static size_t white_after(const char *s, size_t n, size_t i) {
    while (i < n) {
        int k = tk_utf8_len((const unsigned char *)s + i, n - i);
        if (k < 1 || !tk_is_white_space(tk_utf8_cp((const unsigned char *)s + i, k))) break;
        i += (size_t)k;
    }
    return i;
}

int tk_split_added(const tokenizer_t *t, const tk_trie *trie, tk_work *w, size_t off, size_t n,
                   int at_start, tk_pieces *out) {
    const char *s = w->arena.p + off;
    size_t i = 0, done = 0; /* done: end of the last piece emitted */
    while (trie->n && i < n) {
        size_t len = 0;
        int32_t k = trie->first[(unsigned char)s[i]] ? trie_longest(trie, s + i, n - i, &len) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const tk_added *a = &t->added[k];
        size_t ms = i, me = i + len;
        i = me; /* the search resumes after the match, whatever strip does */
        if (a->single_word && (word_char(t, w, s, n, ms, 1) || word_char(t, w, s, n, me, 0)))
            continue;
        if (me <= done) continue; /* inside white space an rstrip token already took */
        if (a->lstrip) ms = white_before(s, ms);
        if (ms < done) ms = done;
        if (a->rstrip) me = white_after(s, n, me);
        if (done < ms && tk_pieces_push(out, off + done, ms - done, -1, at_start && done == 0))
            return -1;
        if (tk_pieces_push(out, off + ms, me - ms, a->id, 0)) return -1;
        done = me;
    }
    if (done < n && tk_pieces_push(out, off + done, n - done, -1, at_start && done == 0)) return -1;
    return 0;
}

/* ---- pre-tokenizers ---- */

/* Emits [a, b) of piece p (if not empty) into out. */
static int emit(tk_pieces *out, const tk_piece *p, size_t a, size_t b) {
    if (b <= a) return 0;
    return tk_pieces_push(out, p->off + a, b - a, -1, p->at_start && a == 0);
}

/* Applies a split behavior to the spans of piece p (the folds of NormalizedString::split). */
static int split_piece(tk_work *w, const tk_piece *p, tk_behavior bh, int invert, tk_pieces *out) {
    size_t pa = 0, pb = 0; /* pending piece */
    int have = 0, pend_match = 0, rc = 0;
    for (size_t i = 0; !rc && i < w->spans.n; i++) {
        const tk_piece *sp = &w->spans.v[i];
        size_t a = sp->off, b = sp->off + sp->len;
        int m = invert ? !sp->id : sp->id;
        if (bh == TK_ISOLATED || (bh == TK_REMOVED && !m)) {
            rc = emit(out, p, a, b);
        } else if (bh == TK_REMOVED) {
            continue;
        } else if (bh == TK_MERGED_PREV && have && m && !pend_match) {
            pb = b;
        } else if (bh == TK_MERGED_NEXT && have && !m) {
            rc = emit(out, p, pa, b);
            have = 0;
            continue;
        } else if (bh == TK_CONTIGUOUS && have && m == pend_match) {
            pb = b;
        } else if (bh == TK_MERGED_NEXT && !m) {
            rc = emit(out, p, a, b);
        } else {
            if (have) rc = emit(out, p, pa, pb);
            pa = a, pb = b, have = 1;
        }
        pend_match = m;
    }
    if (!rc && have) rc = emit(out, p, pa, pb);
    return rc;
}

static int split_step(tk_work *w, const tk_piece *p, const pcre2_code *re, tk_behavior bh,
                      int invert, tk_pieces *out) {
    int rc = tk_find_spans(w, re, w->arena.p + p->off, p->len);
    return rc ? rc : split_piece(w, p, bh, invert, out);
}

/* Re-spells a piece through the byte->unicode map as a new arena string. */
static int byte_map(tk_buf *arena, tk_piece *p) {
    if (tk_buf_reserve(arena, 2 * p->len)) return -1;
    const unsigned char *s = (const unsigned char *)arena->p + p->off;
    char *o = arena->p + arena->n;
    size_t k = 0;
    for (size_t i = 0; i < p->len; i++) k += (size_t)tk_utf8_put(o + k, tk_byte_to_cp(s[i]));
    p->off = arena->n;
    p->len = k;
    arena->n += k;
    return 0;
}

/* Copies piece p into the arena with `prefix` before it (and ' ' replaced by rep if given). */
static int respell(tk_buf *arena, tk_piece *p, const char *prefix, size_t np, const char *rep,
                   size_t nr) {
    if (tk_buf_reserve(arena, np + p->len * (nr ? nr : 1))) return -1;
    const char *s = arena->p + p->off;
    char *o = arena->p + arena->n;
    size_t k = 0;
    memcpy(o, prefix, np);
    k += np;
    for (size_t i = 0; i < p->len; i++) {
        if (nr && s[i] == ' ') {
            memcpy(o + k, rep, nr);
            k += nr;
        } else {
            o[k++] = s[i];
        }
    }
    p->off = arena->n;
    p->len = k;
    arena->n += k;
    return 0;
}

static int bytelevel(tk_work *w, const tk_step *st, tk_piece p, tk_pieces *out) {
    if (st->flag && w->arena.p[p.off] != ' ' && respell(&w->arena, &p, " ", 1, NULL, 0)) return -1;
    size_t first = out->n;
    int rc = st->use_regex ? split_step(w, &p, st->re, TK_ISOLATED, 0, out)
                           : tk_pieces_push(out, p.off, p.len, -1, p.at_start);
    for (size_t i = first; !rc && i < out->n; i++) rc = byte_map(&w->arena, &out->v[i]);
    return rc;
}

static int metaspace(tk_work *w, const tk_step *st, tk_piece p, tk_pieces *out) {
    char rep[4];
    size_t nr = (size_t)tk_utf8_put(rep, st->ch);
    int starts = p.len >= nr && !memcmp(w->arena.p + p.off, rep, nr);
    if (respell(&w->arena, &p, rep, 0, rep, nr)) return -1;
    starts = starts || (p.len >= nr && !memcmp(w->arena.p + p.off, rep, nr));
    int prepend = !starts && (st->prepend == TK_PREPEND_ALWAYS ||
                              (st->prepend == TK_PREPEND_FIRST && p.at_start));
    if (prepend && respell(&w->arena, &p, rep, nr, NULL, 0)) return -1;
    if (!st->flag) return tk_pieces_push(out, p.off, p.len, -1, p.at_start);
    return split_step(w, &p, st->re, TK_MERGED_NEXT, 0, out);
}

int tk_pre_tokenize(const tokenizer_t *t, tk_work *w) {
    for (int s = 0; s < t->pre.n; s++) {
        const tk_step *st = &t->pre.v[s];
        w->b.n = 0;
        for (size_t i = 0; i < w->a.n; i++) {
            tk_piece p = w->a.v[i];
            int rc;
            if (st->kind == TK_P_BYTELEVEL) rc = bytelevel(w, st, p, &w->b);
            else if (st->kind == TK_P_METASPACE) rc = metaspace(w, st, p, &w->b);
            else if (st->kind == TK_P_DIGITS)
                rc = split_step(w, &p, st->re, st->flag ? TK_ISOLATED : TK_CONTIGUOUS, 0, &w->b);
            else rc = split_step(w, &p, st->re, st->behavior, st->invert, &w->b);
            if (rc) return rc;
        }
        tk_pieces swap = w->a;
        w->a = w->b;
        w->b = swap;
    }
    return 0;
}
