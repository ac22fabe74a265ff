/* tokenizer_nfc.c — Unicode NFC (canonical decomposition, canonical ordering, canonical
 * composition; UAX #15) for the NFC normalizer that Qwen2 tokenizers use. Text below U+0300 is
 * already NFC and is copied as is. Tables: tokenizer_nfc_data.h (Unicode 15.0). */
#include <stdlib.h>

#include "tokenizer_impl.h"
#include "tokenizer_nfc_data.h"

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21,
       TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

/* Row of a [n][3] table whose first column (or first two) equals the key, or NULL. */
static const uint32_t *find_row(const uint32_t (*t)[3], size_t n, uint32_t a, uint32_t b, int two) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int less = t[mid][0] < a || (two && t[mid][0] == a && t[mid][1] < b);
        int more = t[mid][0] > a || (two && t[mid][0] == a && t[mid][1] > b);
        if (less) lo = mid + 1;
        else if (more) hi = mid;
        else return t[mid];
    }
    return NULL;
}

static uint32_t ccc(uint32_t cp) {
    size_t lo = 0, hi = sizeof NFC_CCC / sizeof NFC_CCC[0];
    if (cp < 0x300) return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (NFC_CCC[mid][1] < cp) lo = mid + 1;
        else if (NFC_CCC[mid][0] > cp) hi = mid;
        else return NFC_CCC[mid][2];
    }
    return 0;
}

/* Full canonical decomposition of cp appended to out[*n] (at most 4 code points). */
static void decompose(uint32_t cp, uint32_t *out, size_t *n, int depth) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE, t = s % TCOUNT;
        out[(*n)++] = LBASE + s / NCOUNT;
        out[(*n)++] = VBASE + (s % NCOUNT) / TCOUNT;
        if (t) out[(*n)++] = TBASE + t;
        return;
    }
    const uint32_t *d = cp < 0xC0 || depth > 4 ? NULL
                      : find_row(NFC_DECOMP, sizeof NFC_DECOMP / sizeof NFC_DECOMP[0], cp, 0, 0);
    if (!d) {
        out[(*n)++] = cp;
        return;
    }
    decompose(d[1], out, n, depth + 1);
    if (d[2]) decompose(d[2], out, n, depth + 1);
}

/* The primary composite of a + b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    const uint32_t *r = find_row(NFC_COMP, sizeof NFC_COMP / sizeof NFC_COMP[0], a, b, 1);
    return r ? r[2] : 0;
}

/* Stable sort of each run of non-starters by combining class (runs are short). */
static void reorder(uint32_t *v, size_t n) {
    for (size_t i = 1; i < n; i++) {
        uint32_t c = ccc(v[i]);
        for (size_t j = i; c && j > 0 && ccc(v[j - 1]) > c; j--) {
            uint32_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    }
}

/* Canonical composition in place (UAX #15's algorithm); returns the new length. */
static size_t recompose(uint32_t *v, size_t n) {
    if (!n) return 0;
    size_t starter = 0, out = 1;
    uint32_t last = ccc(v[0]) ? 256 : 0;
    for (size_t i = 1; i < n; i++) {
        uint32_t c = ccc(v[i]), comp = compose(v[starter], v[i]);
        if (comp && (last < c || last == 0)) {
            v[starter] = comp;
            continue;
        }
        if (c == 0) starter = out;
        last = c;
        v[out++] = v[i];
    }
    return out;
}

int tk_nfc(const char *s, size_t n, tk_buf *out) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++; /* lead bytes < 0xCC: below U+0300 */
    if (i == n) return tk_buf_put(out, s, n);
    uint32_t *v = malloc((4 * n + 4) * sizeof *v);
    if (!v) return -1;
    size_t m = 0;
    for (i = 0; i < n;) {
        int k = tk_utf8_len((const unsigned char *)s + i, n - i);
        if (k < 1) k = 1; /* not reached: the text was validated */
        decompose(tk_utf8_cp((const unsigned char *)s + i, k), v, &m, 0);
        i += (size_t)k;
    }
    reorder(v, m);
    m = recompose(v, m);
    int rc = tk_buf_reserve(out, 4 * m);
    for (size_t j = 0; !rc && j < m; j++) out->n += (size_t)tk_utf8_put(out->p + out->n, v[j]);
    if (!rc) out->p[out->n] = '\0';
    free(v);
    return rc;
}
