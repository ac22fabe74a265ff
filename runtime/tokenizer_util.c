/* tokenizer_util.c — small helpers of the tokenizer: growable buffers and lists, UTF-8
 * decoding / validation / lossy repair, Unicode White_Space and the GPT-2 byte<->unicode map. */
#include <stdlib.h>

#include "tokenizer_impl.h"

int tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (tk_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

void tk_buf_free(tk_buf *b) {
    if (!b) return;
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

int tk_pieces_push(tk_pieces *l, size_t off, size_t len, int32_t id, int at_start) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        tk_piece *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (tk_piece){off, len, id, at_start};
    return 0;
}

void tk_pieces_free(tk_pieces *l) {
    if (!l) return;
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int tk_ids_push(tk_ids *l, int32_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
    return 0;
}

/* Valid second-byte range of a lead byte (Unicode table 3-7), and the sequence length. */
static int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c == 0xE0) *lo = 0xA0;
    if (c == 0xED) *hi = 0x9F;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c == 0xF0) *lo = 0x90;
    if (c == 0xF4) *hi = 0x8F;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Number of bytes of s[0..n) that start a well-formed sequence (the maximal subpart when it
 * is not complete), and whether the sequence is complete. */
static int utf8_scan(const unsigned char *s, size_t n, int *complete) {
    unsigned char lo, hi;
    int len = utf8_lead(s[0], &lo, &hi);
    *complete = 0;
    if (len == 0) return 1;
    int k = 1;
    for (; k < len; k++) {
        if ((size_t)k >= n) return k;
        unsigned char c = s[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return k;
    }
    *complete = 1;
    return len;
}

int tk_utf8_len(const unsigned char *s, size_t n) {
    int complete;
    int k = utf8_scan(s, n, &complete);
    return complete ? k : 0;
}

uint32_t tk_utf8_cp(const unsigned char *s, int len) {
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

int tk_utf8_put(char *out, uint32_t cp) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tk_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int len = tk_utf8_len(u + i, n - i);
        if (!len) return i;
        i += (size_t)len;
    }
    return n;
}

int tk_utf8_lossy(tk_buf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    while (i < n) {
        int complete = 1, k = 1;
        if (u[i] >= 0x80) k = utf8_scan(u + i, n - i, &complete);
        if (complete) {
            i += (size_t)k;
            continue;
        }
        if (tk_buf_put(out, s + run, i - run) || tk_buf_put(out, "\xEF\xBF\xBD", 3)) return -1;
        i += (size_t)k;
        run = i;
    }
    return tk_buf_put(out, s + run, n - run);
}

int tk_is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order (0x00-0x20 -> 256.., 0x7F-0xA0 -> 289.., 0xAD -> 323). */
uint32_t tk_byte_to_cp(unsigned char b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 289u + (b - 0x7Fu);
    if (b == 0xAD) return 323u;
    return b;
}

int tk_cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 0x7F);
    if (cp == 323) return 0xAD;
    return -1;
}
