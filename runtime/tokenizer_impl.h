/* tokenizer_impl.h — internals shared by the tokenizer files (not a public header): the
 * tokenizer struct, the pipeline steps parsed from tokenizer.json, byte buffers, piece lists,
 * UTF-8 helpers. tokenizer.c loads, tokenizer_pre.c normalizes / splits, tokenizer_bpe.c
 * merges, tokenizer_dec.c decodes. */
#ifndef ASYMKV_TOKENIZER_IMPL_H
#define ASYMKV_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>

#include "tokenizer.h"

/* JSON helpers shared by the loader files: a string member or NULL, a bool member or def. */
static inline const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static inline int jbool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* ---- growable byte buffer and piece lists (all return 0, or -1 when out of memory) ---- */

typedef struct tk_buf {
    char *p;
    size_t n, cap;
} tk_buf;

int tk_buf_reserve(tk_buf *b, size_t extra);
int tk_buf_put(tk_buf *b, const void *s, size_t n);
void tk_buf_free(tk_buf *b);

/* A slice [off, off+len) of an arena buffer; id >= 0 marks an added token already resolved;
 * at_start says the slice begins at offset 0 of the original text (Metaspace "first"). */
typedef struct tk_piece {
    size_t off, len;
    int32_t id;
    int at_start;
} tk_piece;

typedef struct tk_pieces {
    tk_piece *v;
    size_t n, cap;
} tk_pieces;

int tk_pieces_push(tk_pieces *l, size_t off, size_t len, int32_t id, int at_start);
void tk_pieces_free(tk_pieces *l);

typedef struct tk_ids {
    int32_t *v;
    size_t n, cap;
} tk_ids;

int tk_ids_push(tk_ids *l, int32_t id);

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when it is not valid. */
int tk_utf8_len(const unsigned char *s, size_t n);
/* Decodes the valid sequence at s (length from tk_utf8_len). */
uint32_t tk_utf8_cp(const unsigned char *s, int len);
int tk_utf8_put(char *out, uint32_t cp); /* returns bytes written (1..4) */
/* Index of the first invalid byte, or n when s is valid UTF-8. */
size_t tk_utf8_check(const char *s, size_t n);
/* Appends s with each maximal invalid subpart replaced by U+FFFD (Rust's from_utf8_lossy). */
int tk_utf8_lossy(tk_buf *out, const char *s, size_t n);
int tk_is_white_space(uint32_t cp); /* Unicode White_Space (Rust char::is_whitespace) */

/* ---- GPT-2 byte <-> unicode map ---- */
uint32_t tk_byte_to_cp(unsigned char b);
int tk_cp_to_byte(uint32_t cp); /* -1 when cp is not in the map */

/* ---- pipeline steps (Sequences are flattened at load time) ---- */

typedef enum tk_kind {
    /* normalizers */
    TK_N_PREPEND,
    TK_N_REPLACE,
    TK_N_STRIP,
    TK_N_NFC,
    /* pre-tokenizers */
    TK_P_BYTELEVEL,
    TK_P_SPLIT,
    TK_P_METASPACE,
    TK_P_DIGITS,
    /* decoders */
    TK_D_BYTELEVEL,
    TK_D_BYTEFALLBACK,
    TK_D_FUSE,
    TK_D_STRIP,
    TK_D_REPLACE,
    TK_D_METASPACE,
} tk_kind;

typedef enum tk_behavior {
    TK_REMOVED,
    TK_ISOLATED,
    TK_MERGED_PREV,
    TK_MERGED_NEXT,
    TK_CONTIGUOUS,
} tk_behavior;

typedef enum tk_prepend { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend;

typedef struct tk_step {
    tk_kind kind;
    char *a, *b;           /* Prepend text / Replace pattern (literal) and content */
    size_t a_len, b_len;
    pcre2_code *re;        /* Split / Replace regex; ByteLevel's GPT-2 regex */
    tk_behavior behavior;  /* Split */
    int invert;            /* Split */
    int flag;              /* ByteLevel add_prefix_space; Metaspace split; Digits individual */
    int use_regex;         /* ByteLevel */
    tk_prepend prepend;    /* Metaspace */
    uint32_t ch;           /* Strip / Metaspace character */
    int left, right;       /* Strip: counts (decoder) or booleans (normalizer) */
} tk_step;

typedef struct tk_steps {
    tk_step *v;
    int n;
} tk_steps;

/* ---- hash tables ---- */

typedef struct tk_vocab {     /* model vocabulary: id <-> string */
    char **str;               /* [n_ids] NUL-terminated, NULL where the id is unused */
    uint32_t *len;            /* [n_ids] */
    int32_t n_ids;
    int32_t *slot;            /* [mask+1] open addressing, -1 = empty */
    uint32_t mask;
} tk_vocab;

typedef struct tk_merges {    /* (left id, right id) -> (rank, merged id) */
    uint64_t *key;            /* [mask+1], UINT64_MAX = empty */
    int32_t *rank, *merged;
    uint32_t mask;
} tk_merges;

/* Added tokens are found with a byte trie (leftmost-longest, like aho-corasick). */
typedef struct tk_trie_node {
    int32_t child, sibling, token; /* token: index into tokenizer.added, or -1 */
    unsigned char byte;
} tk_trie_node;

typedef struct tk_trie {
    tk_trie_node *v;         /* v[0] is the root */
    int32_t n, cap;
    unsigned char first[256]; /* bytes that start some token */
} tk_trie;

typedef struct tk_added {
    int32_t id;
    char *content;            /* as written in tokenizer.json */
    size_t len;
    char *dec;                /* what decoding sees: the normalized content of a normalized
                                 token when the normalizer changes it, else NULL (content) */
    size_t dec_len;
    int special, normalized, lstrip, rstrip, single_word;
} tk_added;

struct tokenizer {
    tk_vocab vocab;
    tk_merges merges;
    int32_t unk_id;           /* -1: none */
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256];     /* <0xNN> token ids for byte fallback, -1 when absent */

    tk_added *added;
    int n_added;
    int32_t *added_of_id;     /* [n_ids] index into added, or -1 */
    int32_t n_ids;            /* one past the largest id, model and added */
    tk_trie raw_trie, norm_trie;
    pcre2_code *word_re;      /* \w, for single_word tokens */

    tk_steps norm, pre, dec;
    int has_decoder;
    int has_post;             /* tokenizer.json has a post_processor */
    tk_ids pre_ids, post_ids; /* what add_special puts before / after */
    int32_t bos_id, eos_id;
    char *arena;              /* vocab strings */
};

/* Per-call scratch of encode / decode (a tokenizer itself is never written after load). */
typedef struct tk_bpe_work tk_bpe_work;
typedef struct tk_work {
    tk_buf arena;          /* normalized text and the pieces derived from it */
    tk_buf nbuf, ntmp;     /* normalizer input / output */
    tk_pieces a, b, spans; /* piece lists; spans: regex matches (id 1) and gaps (id 0) */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    tk_bpe_work *bpe;
} tk_work;

int tk_work_init(tk_work *w);
void tk_work_free(tk_work *w);

/* tokenizer_parse.c: JSON -> steps (Sequences flattened). Unsupported types are AKV_EINPUT. */
akv_status tk_parse_normalizer(const cJSON *j, tk_steps *out, akv_err *err);
akv_status tk_parse_pre_tokenizer(const cJSON *j, tk_steps *out, akv_err *err);
akv_status tk_parse_decoder(const cJSON *j, tk_steps *out, akv_err *err);
void tk_steps_free(tk_steps *s);
/* Compiles an Onig-syntax pattern (or a literal) for UTF-8 with Unicode properties. */
pcre2_code *tk_regex_compile(const char *pattern, size_t len, int literal, akv_err *err);

/* tokenizer_pre.c. The int functions return 0, -1 out of memory, -3 regex failure. */
/* Normalizes s[0..n) into w->nbuf. */
int tk_normalize(const tokenizer_t *t, tk_work *w, const char *s, size_t n);
/* Splits w->arena[off, off+n) on the added tokens of trie, appending pieces to out. */
int tk_split_added(const tokenizer_t *t, const tk_trie *trie, tk_work *w, size_t off, size_t n,
                   int at_start, tk_pieces *out);
/* Runs the pre-tokenizer steps over the pieces in w->a (arena slices); result in w->a. */
int tk_pre_tokenize(const tokenizer_t *t, tk_work *w);
/* Regex matches and gaps of s[0..n) into w->spans, iterated like Onig's find_iter. */
int tk_find_spans(tk_work *w, const pcre2_code *re, const char *s, size_t n);
int tk_trie_add(tk_trie *tr, const char *s, size_t n, int32_t token);
void tk_trie_free(tk_trie *tr);

/* tokenizer_nfc.c: Unicode NFC of valid UTF-8 s[0..n), appended to out (0, -1 out of memory). */
int tk_nfc(const char *s, size_t n, tk_buf *out);

/* tokenizer_bpe.c */
akv_status tk_vocab_build(tk_vocab *v, akv_err *err);
int32_t tk_vocab_find(const tk_vocab *v, const char *s, size_t n);
void tk_vocab_free(tk_vocab *v);
akv_status tk_merges_init(tk_merges *m, int n, akv_err *err);
int tk_merges_put(tk_merges *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
void tk_merges_free(tk_merges *m);
tk_bpe_work *tk_bpe_work_new(void);
void tk_bpe_work_free(tk_bpe_work *w);
/* Appends the BPE ids of one pre-token to out: 0, -1 out of memory, -2 unk token missing. */
int tk_bpe_word(const tokenizer_t *t, tk_bpe_work *w, const char *s, size_t n, tk_ids *out);

/* tokenizer_dec.c: runs the decoder steps over the tokens in w->a (arena slices) and appends
 * the text to out. */
int tk_decode_tokens(const tokenizer_t *t, tk_work *w, tk_buf *out);

#endif
