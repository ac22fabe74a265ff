/* tokenizer.h — Hugging Face tokenizer.json BPE tokenizers (byte-level: GPT-2, Llama 3, Qwen2;
 * SentencePiece-style: Llama 2, Mistral): encoding, decoding and streaming decoding that
 * reproduce the `tokenizers` library id for id. Tested in tests/test_tokenizer.c. */
#ifndef ASYMKV_TOKENIZER_H
#define ASYMKV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What is supported (anything else is AKV_EINPUT naming the unsupported feature):
 *   model          BPE (vocab, merges as "a b" strings or [a, b] pairs, unk_token, fuse_unk,
 *                  byte_fallback, ignore_merges; dropout must be null or 0)
 *   added_tokens   content, special, normalized, lstrip, rstrip, single_word; matched before
 *                  splitting, leftmost-longest, raw text first, then normalized text
 *   normalizer     Sequence, Prepend, Replace (String or Regex), Strip, NFC
 *   pre_tokenizer  Sequence, ByteLevel (add_prefix_space, use_regex), Split (String or
 *                  Regex; Removed / Isolated / MergedWithPrevious / MergedWithNext /
 *                  Contiguous; invert), Metaspace (prepend_scheme, split), Digits
 *   post_processor TemplateProcessing (single), ByteLevel, RobertaProcessing, BertProcessing,
 *                  Sequence; when absent, add_bos_token / add_eos_token of the
 *                  tokenizer_config.json beside tokenizer.json decide what --add-special adds
 *   decoder        Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace
 * Regexes (Onig syntax in tokenizer.json) run on PCRE2 with UTF and Unicode properties; the one
 * known difference is that PCRE2's \s also matches U+180E MONGOLIAN VOWEL SEPARATOR. NFC uses
 * Unicode 15.0 tables. truncation and padding (batch options) are ignored. */
typedef struct tokenizer tokenizer_t;

/* Loads PATH, a tokenizer.json file or a folder holding one (its tokenizer_config.json, when
 * present, is read too). The tokenizer is immutable afterwards: encode and decode may run
 * concurrently from several threads. Malformed or unsupported files are AKV_EINPUT. */
akv_status tokenizer_load(tokenizer_t **out, const char *path, akv_err *err);
void tokenizer_free(tokenizer_t *t); /* NULL-safe */

/* One past the largest id of the model vocabulary and the added tokens. */
int tokenizer_vocab_size(const tokenizer_t *t);
/* The id of a token given by its exact content (added tokens first), or -1. */
int32_t tokenizer_token_id(const tokenizer_t *t, const char *content);
/* The BOS / EOS ids named by tokenizer_config.json (bos_token / eos_token), or -1. */
int32_t tokenizer_bos_id(const tokenizer_t *t);
int32_t tokenizer_eos_id(const tokenizer_t *t);

/* Encodes len bytes of UTF-8 text. add_special adds what the post-processor adds (e.g. BOS),
 * like `tokenizer.encode(text, add_special_tokens=True)`. *ids is malloc'd (non-NULL even for
 * zero ids), *n its length. Invalid UTF-8 is AKV_EINPUT. O(n log n) in the text length. */
akv_status tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, int add_special,
                            int32_t **ids, int *n, akv_err *err);

/* Decodes ids like `tokenizer.decode(ids, skip_special_tokens)`. *text is malloc'd and
 * NUL-terminated, *len its byte length (the text may hold NUL bytes). An id that names no
 * token is AKV_EINPUT. */
akv_status tokenizer_decode(const tokenizer_t *t, const int32_t *ids, int n, int skip_special,
                            char **text, size_t *len, akv_err *err);

/* Streaming decoder (the algorithm of tokenizers' DecodeStream): feed one id at a time and get
 * the text it completes. A token that ends inside a UTF-8 sequence (or a byte-fallback run)
 * yields nothing until a later token completes it; leading-space stripping happens only at the
 * start of the stream. The chunks concatenate to tokenizer_decode of all the ids, except that
 * text still ending in U+FFFD (an incomplete sequence) is held back. Not thread-safe: one
 * stream per sequence. */
typedef struct tokenizer_stream tokenizer_stream;

akv_status tokenizer_stream_init(tokenizer_stream **out, const tokenizer_t *t, int skip_special,
                                 akv_err *err);
/* *text points into the stream (valid until the next call), *len may be 0. */
akv_status tokenizer_stream_step(tokenizer_stream *s, int32_t id, const char **text, size_t *len,
                                 akv_err *err);
void tokenizer_stream_free(tokenizer_stream *s); /* NULL-safe */

#ifdef __cplusplus
}
#endif
#endif
