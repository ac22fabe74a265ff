/* tokenizer_bpe.c — the BPE model: vocabulary and merge hash tables, and the merge loop of one
 * pre-token, the same algorithm as Hugging Face tokenizers (lowest rank first, leftmost on
 * ties, through a binary heap, so a word of n characters costs O(n log n)). */
#include <stdlib.h>

#include "tokenizer_impl.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 31);
}

static uint64_t hash_u64(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t table_size(size_t n) {
    uint32_t cap = 16;
    while (cap < 2 * n + 1) cap *= 2;
    return cap;
}

akv_status tk_vocab_build(tk_vocab *v, akv_err *err) {
    size_t n = 0;
    for (int32_t i = 0; i < v->n_ids; i++) n += v->str[i] != NULL;
    uint32_t cap = table_size(n);
    v->slot = malloc(cap * sizeof *v->slot);
    if (!v->slot) return akv_fail(err, AKV_ERUNTIME, "out of host memory for the vocabulary");
    memset(v->slot, 0xff, cap * sizeof *v->slot);
    v->mask = cap - 1;
    for (int32_t id = 0; id < v->n_ids; id++) {
        if (!v->str[id]) continue;
        uint32_t h = (uint32_t)hash_bytes(v->str[id], v->len[id]) & v->mask;
        for (;; h = (h + 1) & v->mask) {
            int32_t o = v->slot[h];
            if (o < 0 || (v->len[o] == v->len[id] && !memcmp(v->str[o], v->str[id], v->len[id])))
                break;
        }
        v->slot[h] = id; /* a repeated string keeps its last id, like a JSON map */
    }
    return AKV_OK;
}

int32_t tk_vocab_find(const tk_vocab *v, const char *s, size_t n) {
    if (!v->slot) return -1;
    for (uint32_t h = (uint32_t)hash_bytes(s, n) & v->mask;; h = (h + 1) & v->mask) {
        int32_t id = v->slot[h];
        if (id < 0) return -1;
        if (v->len[id] == n && !memcmp(v->str[id], s, n)) return id;
    }
}

void tk_vocab_free(tk_vocab *v) {
    if (!v) return;
    free(v->str);
    free(v->len);
    free(v->slot);
    memset(v, 0, sizeof *v);
}

akv_status tk_merges_init(tk_merges *m, int n, akv_err *err) {
    uint32_t cap = table_size((size_t)n);
    m->key = malloc(cap * sizeof *m->key);
    m->rank = malloc(cap * sizeof *m->rank);
    m->merged = malloc(cap * sizeof *m->merged);
    if (!m->key || !m->rank || !m->merged)
        return akv_fail(err, AKV_ERUNTIME, "out of host memory for %d merges", n);
    memset(m->key, 0xff, cap * sizeof *m->key);
    m->mask = cap - 1;
    return AKV_OK;
}

static int32_t merges_find(const tk_merges *m, int32_t a, int32_t b) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t h = (uint32_t)hash_u64(k) & m->mask;; h = (h + 1) & m->mask) {
        if (m->key[h] == k) return (int32_t)h;
        if (m->key[h] == UINT64_MAX) return -1;
    }
}

int tk_merges_put(tk_merges *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t h = (uint32_t)hash_u64(k) & m->mask;
    while (m->key[h] != UINT64_MAX && m->key[h] != k) h = (h + 1) & m->mask;
    m->key[h] = k; /* a repeated pair keeps its last rank, like tokenizers' HashMap */
    m->rank[h] = rank;
    m->merged[h] = merged;
    return 0;
}

void tk_merges_free(tk_merges *m) {
    if (!m) return;
    free(m->key);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* ---- one word ---- */

typedef struct tk_sym {
    int32_t id, prev, next;
    uint32_t len; /* bytes of text covered; 0 = merged into its left neighbour */
} tk_sym;

typedef struct tk_cand { /* a possible merge of sym[pos] with its right neighbour */
    int32_t rank, pos, merged;
} tk_cand;

struct tk_bpe_work {
    tk_sym *sym;
    size_t n_sym, cap_sym;
    tk_cand *heap;
    size_t n_heap, cap_heap;
};

tk_bpe_work *tk_bpe_work_new(void) { return calloc(1, sizeof(tk_bpe_work)); }

void tk_bpe_work_free(tk_bpe_work *w) {
    if (!w) return;
    free(w->sym);
    free(w->heap);
    free(w);
}

static int sym_push(tk_bpe_work *w, int32_t id, size_t len) {
    if (w->n_sym == w->cap_sym) {
        size_t cap = w->cap_sym ? 2 * w->cap_sym : 256;
        tk_sym *v = realloc(w->sym, cap * sizeof *v);
        if (!v) return -1;
        w->sym = v;
        w->cap_sym = cap;
    }
    int32_t i = (int32_t)w->n_sym++;
    w->sym[i] = (tk_sym){id, i - 1, -1, (uint32_t)len};
    if (i > 0) w->sym[i - 1].next = i;
    return 0;
}

static int cand_less(const tk_cand *a, const tk_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(tk_bpe_work *w, tk_cand c) {
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? 2 * w->cap_heap : 256;
        tk_cand *v = realloc(w->heap, cap * sizeof *v);
        if (!v) return -1;
        w->heap = v;
        w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0 && cand_less(&c, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = c;
    return 0;
}

static tk_cand heap_pop(tk_bpe_work *w) {
    tk_cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Queues the merge of sym[pos] with its right neighbour, if the merge table has one. */
static int queue_pair(const tokenizer_t *t, tk_bpe_work *w, int32_t pos) {
    if (pos < 0) return 0;
    int32_t nx = w->sym[pos].next;
    if (nx < 0) return 0;
    int32_t m = merges_find(&t->merges, w->sym[pos].id, w->sym[nx].id);
    if (m < 0) return 0;
    return heap_push(w, (tk_cand){t->merges.rank[m], pos, t->merges.merged[m]});
}

/* Initial symbols: one per character, else its <0xNN> bytes, else unk (fused when asked).
 * Returns 0, -1 out of memory, -2 when unk is needed but not in the vocabulary. */
static int word_init(const tokenizer_t *t, tk_bpe_work *w, const char *s, size_t n) {
    int32_t unk = -1;
    size_t unk_len = 0, i = 0;
    w->n_sym = 0;
    while (i < n) {
        int cl = tk_utf8_len((const unsigned char *)s + i, n - i);
        if (cl < 1) cl = 1;
        int32_t id = tk_vocab_find(&t->vocab, s + i, (size_t)cl);
        int bytes_ok = t->byte_fallback;
        for (int k = 0; id < 0 && bytes_ok && k < cl; k++) bytes_ok = t->byte_id[(unsigned char)s[i + k]] >= 0;
        if (id >= 0) {
            if (unk >= 0 && sym_push(w, unk, unk_len)) return -1;
            unk = -1;
            if (sym_push(w, id, (size_t)cl)) return -1;
        } else if (bytes_ok) { /* tokenizers does not flush a pending unk here either */
            for (int k = 0; k < cl; k++)
                if (sym_push(w, t->byte_id[(unsigned char)s[i + k]], 1)) return -1;
        } else if (t->unk_id != -1) {
            if (t->unk_id < 0) return -2;
            if (unk >= 0 && t->fuse_unk) {
                unk_len += (size_t)cl;
            } else {
                if (unk >= 0 && sym_push(w, unk, unk_len)) return -1;
                unk = t->unk_id;
                unk_len = (size_t)cl;
            }
        } /* no unk token: the character is dropped, as tokenizers does */
        i += (size_t)cl;
    }
    if (unk >= 0 && sym_push(w, unk, unk_len)) return -1;
    return 0;
}

static int merge_all(const tokenizer_t *t, tk_bpe_work *w) {
    w->n_heap = 0;
    for (int32_t i = 0; i + 1 < (int32_t)w->n_sym; i++)
        if (queue_pair(t, w, i)) return -1;
    while (w->n_heap) {
        tk_cand c = heap_pop(w);
        tk_sym *l = &w->sym[c.pos];
        if (l->len == 0 || l->next < 0) continue;
        tk_sym *r = &w->sym[l->next];
        int32_t m = merges_find(&t->merges, l->id, r->id);
        if (m < 0 || t->merges.merged[m] != c.merged) continue; /* stale entry */
        l->id = c.merged;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (l->next >= 0) w->sym[l->next].prev = c.pos;
        if (queue_pair(t, w, l->prev) || queue_pair(t, w, c.pos)) return -1;
    }
    return 0;
}

int tk_bpe_word(const tokenizer_t *t, tk_bpe_work *w, const char *s, size_t n, tk_ids *out) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int32_t id = tk_vocab_find(&t->vocab, s, n);
        if (id >= 0) return tk_ids_push(out, id);
    }
    int rc = word_init(t, w, s, n);
    if (!rc) rc = merge_all(t, w);
    for (size_t i = 0; !rc && i < w->n_sym; i++)
        if (w->sym[i].len) rc = tk_ids_push(out, w->sym[i].id);
    return rc;
}
