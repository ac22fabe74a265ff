/* test_tokenizer.c — the tokenizer against hand-made tokenizer.json files whose ids can be worked
 * out by hand (merge priority, added tokens, split behaviors, byte fallback, Metaspace), against
 * Hugging Face's ids in tests/data/tokenizers/ (made by tools/make_tokenizer_fixtures.py; skipped
 * while that folder is absent), streaming decode, 1 MB speed and the `tokenize` command. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"
#include "tokenizer.h"

/* ---- building tokenizer.json files ---- */

/* GPT-2's byte -> code point map, written independently of the library's. */
static unsigned gpt2_cp(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))) n++;
    return 256 + n;
}

static void put_cp(char *o, unsigned cp) {
    if (cp < 0x80) o[0] = (char)cp, o[1] = 0;
    else o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3F)), o[2] = 0;
}

/* Adds merges (pairs of token strings) to vocab and merges; merged tokens get the next ids
 * (or keep theirs when already present). */
static void add_merges(cJSON *vocab, cJSON *merges, const char *const (*pairs)[2], int n) {
    for (int i = 0; i < n; i++) {
        char m[128];
        snprintf(m, sizeof m, "%s%s", pairs[i][0], pairs[i][1]);
        if (!cJSON_GetObjectItemCaseSensitive(vocab, m))
            cJSON_AddNumberToObject(vocab, m, cJSON_GetArraySize(vocab));
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(pairs[i][0]));
        cJSON_AddItemToArray(pair, cJSON_CreateString(pairs[i][1]));
        cJSON_AddItemToArray(merges, pair);
    }
}

static cJSON *bpe_model(cJSON **vocab, cJSON **merges) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    *vocab = cJSON_AddObjectToObject(m, "vocab");
    *merges = cJSON_AddArrayToObject(m, "merges");
    return m;
}

static const char *const BL_MERGES[][2] = {
    {"\xC4\xA0", "t"}, {"h", "e"}, {"\xC4\xA0t", "he"}, {"l", "l"}, {"e", "ll"}, {"h", "ell"},
    {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "\xC4\xA0"}, {"\xC3\xB0", "\xC5\x81"}};
/* ids: bytes 0..255, then Ġt 256, he 257, Ġthe 258, ll 259, ell 260, hell 261, hello 262,
 * ĠĠ 263, ðŁ 264 (the first two bytes of a 4-byte emoji). Added: <|endoftext|> 300 (special),
 * <mask> 301 (lstrip, rstrip), ab 302 (single_word). */
static cJSON *bytelevel_json(int use_regex) {
    cJSON *root = cJSON_CreateObject(), *vocab, *merges;
    cJSON *model = bpe_model(&vocab, &merges);
    for (unsigned b = 0; b < 256; b++) {
        char s[4];
        put_cp(s, gpt2_cp(b));
        cJSON_AddNumberToObject(vocab, s, b);
    }
    add_merges(vocab, merges, BL_MERGES, 10);
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    const char *spec[][2] = {{"300", "<|endoftext|>"}, {"301", "<mask>"}, {"302", "ab"}};
    for (int i = 0; i < 3; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", atoi(spec[i][0]));
        cJSON_AddStringToObject(a, "content", spec[i][1]);
        cJSON_AddBoolToObject(a, "single_word", i == 2);
        cJSON_AddBoolToObject(a, "lstrip", i == 1);
        cJSON_AddBoolToObject(a, "rstrip", i == 1);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", i == 0);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "use_regex", use_regex);
    cJSON *post = cJSON_Parse("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                              "{\"id\":\"<|endoftext|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
                              "\"type_id\":0}}],\"special_tokens\":{\"<|endoftext|>\":{\"id\":"
                              "\"<|endoftext|>\",\"ids\":[300],\"tokens\":[\"<|endoftext|>\"]}}}");
    cJSON_AddItemToObject(root, "post_processor", post);
    cJSON_AddItemToObject(root, "decoder", cJSON_Parse("{\"type\":\"ByteLevel\"}"));
    cJSON_AddItemToObject(root, "model", model);
    return root;
}

static const char *const SP_CHARS[] = {"\xE2\x96\x81", "a", "b", "d", "e", "h", "i", "l",
                                       "o", "r", "w", "x"};
static const char *const SP_MERGES[][2] = {
    {"\xE2\x96\x81", "h"}, {"e", "l"}, {"l", "o"}, {"\xE2\x96\x81h", "el"},
    {"\xE2\x96\x81hel", "lo"}, {"\xE2\x96\x81", "w"}, {"o", "r"}, {"\xE2\x96\x81w", "or"},
    {"l", "d"}, {"\xE2\x96\x81wor", "ld"}};
/* ids: <unk> 0, <s> 1, </s> 2, <0x00>..<0xFF> 3..258, ▁ 259, a 260, b 261, d 262, e 263,
 * h 264, i 265, l 266, o 267, r 268, w 269, x 270, then ▁h 271, el 272, lo 273, ▁hel 274,
 * ▁hello 275, ▁w 276, or 277, ▁wor 278, ld 279, ▁world 280. Added: <unk> <s> </s>, and
 * "foo" 281 (normalized). Llama 2's normalizer, decoder and post-processor. */
static cJSON *sp_json(int byte_fallback, int metaspace) {
    cJSON *root = cJSON_CreateObject(), *vocab, *merges;
    cJSON *model = bpe_model(&vocab, &merges);
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddBoolToObject(model, "fuse_unk", 1);
    cJSON_AddBoolToObject(model, "byte_fallback", byte_fallback);
    cJSON_AddNumberToObject(vocab, "<unk>", 0);
    cJSON_AddNumberToObject(vocab, "<s>", 1);
    cJSON_AddNumberToObject(vocab, "</s>", 2);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        cJSON_AddNumberToObject(vocab, s, 3 + b);
    }
    for (int i = 0; i < 12; i++) cJSON_AddNumberToObject(vocab, SP_CHARS[i], 259 + i);
    add_merges(vocab, merges, SP_MERGES, 10);
    cJSON_AddItemToObject(root, "added_tokens", cJSON_Parse(
        "[{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
        "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
        "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"normalized\":false},"
        "{\"id\":281,\"content\":\"foo\",\"special\":false,\"normalized\":true}]"));
    cJSON_AddItemToObject(root, "normalizer", metaspace ? cJSON_CreateNull() : cJSON_Parse(
        "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]}"));
    cJSON_AddItemToObject(root, "pre_tokenizer", !metaspace ? cJSON_CreateNull() : cJSON_Parse(
        "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\","
        "\"split\":true}"));
    cJSON_AddItemToObject(root, "post_processor", cJSON_Parse(
        "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
        "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\","
        "\"ids\":[1],\"tokens\":[\"<s>\"]}}}"));
    cJSON_AddItemToObject(root, "decoder", cJSON_Parse(
        "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
        "\"\xE2\x96\x81\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
        "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}"));
    cJSON_AddItemToObject(root, "model", model);
    return root;
}

/* Writes json (and, when given, a tokenizer_config.json) into a fresh folder. */
static char *write_dir(cJSON *json, const char *config) {
    char *dir = tu_tmpdir(), path[512];
    char *text = cJSON_PrintUnformatted(json);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    if (config) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        cr_assert_eq(tu_write_file(path, config, strlen(config)), 0);
    }
    free(text);
    cJSON_Delete(json);
    return dir;
}

static tokenizer_t *load(cJSON *json, const char *config) {
    char *dir = write_dir(json, config);
    tokenizer_t *t = NULL;
    akv_err err = {0};
    akv_status st = tokenizer_load(&t, dir, &err);
    cr_assert_eq(st, AKV_OK, "tokenizer_load: %s", err.msg);
    tu_rmdir(dir);
    free(dir);
    return t;
}

/* Loading json must fail with AKV_EINPUT and a message containing want. */
static void expect_load_error(cJSON *json, const char *want) {
    char *dir = write_dir(json, NULL);
    tokenizer_t *t = NULL;
    akv_err err = {0};
    cr_expect_eq(tokenizer_load(&t, dir, &err), AKV_EINPUT, "loading should fail naming %s", want);
    cr_expect(strstr(err.msg, want) != NULL, "error \"%s\" lacks \"%s\"", err.msg, want);
    cr_expect_null(t);
    tu_rmdir(dir);
    free(dir);
}

static void expect_ids(const tokenizer_t *t, const char *text, int add_special, const int32_t *want,
                       int n_want) {
    int32_t *ids = NULL;
    int n = -1;
    akv_err err = {0};
    cr_assert_eq(tokenizer_encode(t, text, strlen(text), add_special, &ids, &n, &err), AKV_OK,
                 "%s", err.msg);
    int same = n == n_want;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    char got[512] = "", buf[16];
    for (int i = 0; i < n && strlen(got) < 480; i++) {
        snprintf(buf, sizeof buf, " %d", ids[i]);
        strcat(got, buf);
    }
    cr_expect(same, "encode(\"%s\"): got [%s ] (%d ids), want %d ids", text, got, n, n_want);
    free(ids);
}

static void expect_text(const tokenizer_t *t, const int32_t *ids, int n, const char *want) {
    char *text = NULL;
    size_t len = 0;
    akv_err err = {0};
    cr_assert_eq(tokenizer_decode(t, ids, n, 0, &text, &len, &err), AKV_OK, "%s", err.msg);
    cr_expect(len == strlen(want) && !memcmp(text, want, len), "decode: got \"%s\", want \"%s\"",
              text, want);
    free(text);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (int)(sizeof((const int32_t[]){__VA_ARGS__}) / 4)

Test(tokenizer, bytelevel_merge_priority) {
    tokenizer_t *t = load(bytelevel_json(1), NULL);
    /* h e l l o: he (rank 1) beats ell (rank 4), so hell comes from he+ll, then hello. */
    expect_ids(t, "hello the", 0, IDS(262, 258));
    /* GPT-2 regex: "\s+(?!\S)" leaves the last space to the word: "Ġ" + "Ġthe". */
    expect_ids(t, "  the", 0, IDS(32, 258));
    expect_ids(t, "the", 0, IDS(116, 257));
    expect_ids(t, "hello", 1, IDS(300, 262));
    expect_ids(t, "", 0, NULL, 0);
    expect_ids(t, "", 1, IDS(300));
    expect_ids(t, "a\r\n b", 0, IDS(97, 13, 10, 32, 98));
    expect_text(t, IDS(262, 258), "hello the");
    expect_text(t, IDS(300, 262, 263), "<|endoftext|>hello  ");
    cr_expect_eq(tokenizer_vocab_size(t), 303);
    cr_expect_eq(tokenizer_token_id(t, "<|endoftext|>"), 300);
    cr_expect_eq(tokenizer_token_id(t, "hello"), 262);
    tokenizer_free(t);
}

Test(tokenizer, added_tokens) {
    tokenizer_t *t = load(bytelevel_json(1), NULL);
    expect_ids(t, "hi<|endoftext|>the", 0, IDS(104, 105, 300, 116, 257));
    expect_ids(t, "<|endoftext|><|endoftext|>", 0, IDS(300, 300));
    /* lstrip + rstrip: the spaces around <mask> belong to it. */
    expect_ids(t, "a <mask> b", 0, IDS(97, 301, 98));
    /* single_word: "ab" inside "xab" is not the added token. */
    expect_ids(t, "ab ab xab", 0, IDS(302, 32, 302, 32, 120, 97, 98));
    /* a prefix of a special token is plain text */
    expect_ids(t, "<|endof", 0, IDS(60, 124, 101, 110, 100, 111, 102));
    tokenizer_free(t);
}

Test(tokenizer, bytelevel_no_regex_and_bad_input) {
    tokenizer_t *t = load(bytelevel_json(0), NULL);
    /* without the regex the whole text is one word: Ġthe still forms inside it */
    expect_ids(t, "hello the", 0, IDS(262, 258));
    int32_t *ids = NULL;
    int n = 0;
    akv_err err = {0};
    cr_expect_eq(tokenizer_encode(t, "a\xC3", 2, 0, &ids, &n, &err), AKV_EINPUT);
    cr_expect(strstr(err.msg, "UTF-8") != NULL, "%s", err.msg);
    akv_err_clear(&err);
    char *text = NULL;
    cr_expect_eq(tokenizer_decode(t, IDS(1, 999), 0, &text, NULL, &err), AKV_EINPUT);
    cr_expect(strstr(err.msg, "999") != NULL, "%s", err.msg);
    /* a lone continuation byte decodes to U+FFFD, like from_utf8_lossy */
    expect_text(t, IDS(104, 0x80, 105), "h\xEF\xBF\xBDi");
    tokenizer_free(t);
}

Test(tokenizer, sentencepiece_style) {
    tokenizer_t *t = load(sp_json(1, 0), NULL);
    expect_ids(t, "hello world", 0, IDS(275, 280));
    expect_ids(t, "hello world", 1, IDS(1, 275, 280));
    expect_ids(t, " hello", 0, IDS(259, 275));
    /* not in the vocabulary: byte fallback to <0xNN> (c = 0x63; 😀 = F0 9F 98 80) */
    expect_ids(t, "c\xF0\x9F\x98\x80", 0, IDS(259, 3 + 0x63, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80));
    /* special tokens are matched in the raw text; the normalizer prepends ▁ to each piece */
    expect_ids(t, "<s>hello</s>", 0, IDS(1, 275, 2));
    /* "foo" is normalized: it matches "▁foo" in the normalized text, not inside "afoo" */
    expect_ids(t, "a foo", 0, IDS(259, 260, 281));
    expect_ids(t, "afoo", 0, IDS(259, 260, 3 + 'f', 267, 267));
    /* decoding spells a normalized added token as normalized ("▁foo"), like tokenizers */
    expect_text(t, IDS(259, 260, 281), "a foo");
    expect_text(t, IDS(1, 275, 280), "<s> hello world");
    expect_text(t, IDS(275, 280), "hello world");
    expect_text(t, IDS(259, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80), "\xF0\x9F\x98\x80");
    /* an incomplete byte run becomes one U+FFFD per byte */
    expect_text(t, IDS(265, 3 + 0xF0, 3 + 0x9F, 265), "i\xEF\xBF\xBD\xEF\xBF\xBDi");
    tokenizer_free(t);
}

Test(tokenizer, unk_fused) {
    tokenizer_t *t = load(sp_json(0, 0), NULL);
    /* no byte fallback: unknown characters become <unk>, consecutive ones fused */
    expect_ids(t, "hi ccc a", 0, IDS(271, 265, 259, 0, 259, 260));
    tokenizer_free(t);
}

Test(tokenizer, metaspace_prepend_first) {
    tokenizer_t *t = load(sp_json(1, 1), NULL);
    expect_ids(t, "hello world", 0, IDS(275, 280));
    /* after a special token the piece does not start the text: no ▁ is prepended */
    expect_ids(t, "<s>hello world", 0, IDS(1, 264, 272, 273, 280));
    expect_ids(t, "hello  world", 0, IDS(275, 259, 280));
    tokenizer_free(t);
}

/* A vocabulary of whole pieces with ignore_merges: each pre-token that is a vocabulary entry
 * comes out as one id, so the ids show where a Split pre-tokenizer cut. */
static tokenizer_t *split_tokenizer(const char *behavior) {
    static const char *const pieces[] = {"H", "o", "w", " ", "a", "r", "e", "y", "u", "d", "i",
                                         "n", "g", "?", "How", "are", "you", "doing", "How ",
                                         "are ", "you ", " are", " you", " doing", "doing?"};
    cJSON *root = cJSON_CreateObject(), *vocab, *merges;
    cJSON *model = bpe_model(&vocab, &merges);
    cJSON_AddBoolToObject(model, "ignore_merges", 1);
    for (int i = 0; i < 25; i++) cJSON_AddNumberToObject(vocab, pieces[i], i);
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Split");
    cJSON_AddItemToObject(pre, "pattern", cJSON_Parse("{\"Regex\":\"\\\\w+|[^\\\\w\\\\s]+\"}"));
    cJSON_AddStringToObject(pre, "behavior", behavior);
    cJSON_AddBoolToObject(pre, "invert", 1);
    cJSON_AddItemToObject(root, "model", model);
    return load(root, NULL);
}

Test(tokenizer, split_behaviors) {
    const char *text = "How are you doing?";
    tokenizer_t *t = split_tokenizer("Removed");
    expect_ids(t, text, 0, IDS(14, 15, 16, 17, 13));
    tokenizer_free(t);
    t = split_tokenizer("Isolated");
    expect_ids(t, text, 0, IDS(14, 3, 15, 3, 16, 3, 17, 13));
    tokenizer_free(t);
    t = split_tokenizer("MergedWithPrevious");
    expect_ids(t, text, 0, IDS(18, 19, 20, 17, 13));
    tokenizer_free(t);
    t = split_tokenizer("MergedWithNext");
    expect_ids(t, text, 0, IDS(14, 21, 22, 23, 13));
    tokenizer_free(t);
    t = split_tokenizer("Contiguous");
    expect_ids(t, text, 0, IDS(14, 3, 15, 3, 16, 3, 24));
    tokenizer_free(t);
}

Test(tokenizer, config_add_bos_without_post_processor) {
    cJSON *j = sp_json(1, 0);
    cJSON_ReplaceItemInObject(j, "post_processor", cJSON_CreateNull());
    tokenizer_t *t = load(j, "{\"add_bos_token\": true, \"add_eos_token\": true, "
                             "\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}}");
    expect_ids(t, "hello", 1, IDS(1, 275, 2));
    expect_ids(t, "hello", 0, IDS(275));
    cr_expect_eq(tokenizer_bos_id(t), 1);
    cr_expect_eq(tokenizer_eos_id(t), 2);
    tokenizer_free(t);
}

Test(tokenizer, unsupported_features) {
    cJSON *j = bytelevel_json(1);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "type", cJSON_CreateString("WordPiece"));
    expect_load_error(j, "WordPiece");
    j = bytelevel_json(1);
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_Parse("{\"type\":\"Sequence\",\"normalizers\":"
                              "[{\"type\":\"Lowercase\"}]}"));
    expect_load_error(j, "Lowercase");
    j = bytelevel_json(1);
    cJSON_ReplaceItemInObject(j, "pre_tokenizer", cJSON_Parse("{\"type\":\"Whitespace\"}"));
    expect_load_error(j, "Whitespace");
    j = bytelevel_json(1);
    cJSON_ReplaceItemInObject(j, "decoder", cJSON_Parse("{\"type\":\"WordPiece\",\"prefix\":\"##\"}"));
    expect_load_error(j, "decoder \"WordPiece\"");
    j = bytelevel_json(1);
    cJSON_ReplaceItemInObject(j, "post_processor", cJSON_Parse("{\"type\":\"Frobnicate\"}"));
    expect_load_error(j, "Frobnicate");
    j = bytelevel_json(1);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "dropout", cJSON_CreateNumber(0.1));
    expect_load_error(j, "dropout");
    j = bytelevel_json(1);
    cJSON_AddItemToArray(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"),
                         cJSON_CreateString("q zz"));
    expect_load_error(j, "merges[10]");
    tokenizer_t *t = NULL;
    akv_err err = {0};
    cr_expect_eq(tokenizer_load(&t, "/nonexistent/tokenizer.json", &err), AKV_EINPUT);
    cr_expect(strstr(err.msg, "/nonexistent/tokenizer.json") != NULL, "%s", err.msg);
}

/* Feeds ids one by one; returns the concatenated chunks, records per-step lengths. */
static char *stream_all(const tokenizer_t *t, const int32_t *ids, int n, size_t *lens) {
    tokenizer_stream *s = NULL;
    akv_err err = {0};
    cr_assert_eq(tokenizer_stream_init(&s, t, 0, &err), AKV_OK);
    size_t cap = 4096, used = 0;
    char *all = calloc(1, cap);
    for (int i = 0; i < n; i++) {
        const char *chunk;
        size_t len;
        cr_assert_eq(tokenizer_stream_step(s, ids[i], &chunk, &len, &err), AKV_OK, "%s", err.msg);
        if (lens) lens[i] = len;
        while (used + len + 1 > cap) all = realloc(all, cap *= 2);
        memcpy(all + used, chunk, len);
        all[used += len] = '\0';
    }
    tokenizer_stream_free(s);
    return all;
}

Test(tokenizer, streaming_waits_for_complete_utf8) {
    tokenizer_t *t = load(bytelevel_json(1), NULL);
    /* "hi 😀!": 😀 is ðŁ + ĺ + Ģ, three tokens; nothing prints until the third */
    int32_t seq[] = {104, 105, 32, 264, 0x98, 0x80, 33};
    size_t lens[7];
    char *all = stream_all(t, seq, 7, lens);
    cr_expect_str_eq(all, "hi \xF0\x9F\x98\x80!");
    cr_expect(lens[3] == 0 && lens[4] == 0, "a partial emoji printed %zu/%zu bytes", lens[3], lens[4]);
    cr_expect_eq(lens[5], 4);
    free(all);
    tokenizer_free(t);
    /* SentencePiece style: byte-fallback pieces, and the leading space stripped only once */
    t = load(sp_json(1, 0), NULL);
    int32_t sp[] = {275, 280, 259, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80, 275};
    size_t sl[8];
    all = stream_all(t, sp, 8, sl);
    cr_expect_str_eq(all, "hello world \xF0\x9F\x98\x80 hello");
    cr_expect(sl[3] == 0 && sl[4] == 0 && sl[5] == 0 && sl[6] == 4, "emoji split wrongly");
    free(all);
    tokenizer_free(t);
}

/* ---- the reference BPE, the naive way: merge the lowest-ranked leftmost pair until none ---- */

static int naive_bpe(char toks[][64], int n, const char (*mg)[2][64], int nm) {
    for (;;) {
        int best = -1, at = -1;
        for (int i = 0; i + 1 < n; i++)
            for (int r = 0; r < nm && (best < 0 || r < best); r++)
                if (!strcmp(toks[i], mg[r][0]) && !strcmp(toks[i + 1], mg[r][1])) {
                    best = r, at = i;
                    break;
                }
        if (best < 0) return n;
        size_t la = strlen(toks[at]), lb = strlen(toks[at + 1]);
        memcpy(toks[at] + la, toks[at + 1], lb + 1);
        memmove(toks[at + 1], toks[at + 2], (size_t)(n - at - 2) * 64);
        n--;
    }
}

Test(tokenizer, heap_bpe_equals_naive_bpe) {
    srand(7);
    static char mg[120][2][64];
    int nm = 0;
    cJSON *root = bytelevel_json(0), *model = cJSON_GetObjectItem(root, "model");
    cJSON *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
    cJSON_DeleteItemFromObject(root, "added_tokens");
    const char *alpha[] = {"a", "b", "c"};
    /* random merges over {a, b, c}: each new token joins two existing ones */
    static char toks[200][64];
    int nt = 3;
    for (int i = 0; i < 3; i++) strcpy(toks[i], alpha[i]);
    for (int k = 0; k < 400 && nm < 120; k++) {
        const char *l = toks[rand() % nt], *r = toks[rand() % nt];
        char m[128];
        snprintf(m, sizeof m, "%s%s", l, r);
        if (strlen(m) > 12 || cJSON_GetObjectItemCaseSensitive(vocab, m)) continue;
        strcpy(mg[nm][0], l);
        strcpy(mg[nm][1], r);
        const char *const pair[1][2] = {{mg[nm][0], mg[nm][1]}};
        add_merges(vocab, merges, pair, 1);
        strcpy(toks[nt++], m);
        nm++;
    }
    tokenizer_t *t = load(root, NULL);
    for (int trial = 0; trial < 200; trial++) {
        char text[64], work[64][64];
        int len = 1 + rand() % 40;
        for (int i = 0; i < len; i++) text[i] = "abc"[rand() % 3];
        text[len] = 0;
        for (int i = 0; i < len; i++) work[i][0] = text[i], work[i][1] = 0;
        int n = naive_bpe(work, len, mg, nm);
        int32_t want[64];
        for (int i = 0; i < n; i++) want[i] = tokenizer_token_id(t, work[i]);
        expect_ids(t, text, 0, want, n);
    }
    tokenizer_free(t);
}

/* ---- Hugging Face's ids (tests/data/tokenizers/NAME: tokenizer.json + cases.jsonl) ---- */

static int same_ids(const int32_t *a, int n, const cJSON *want) {
    if (!cJSON_IsArray(want) || cJSON_GetArraySize(want) != n) return 0;
    for (int i = 0; i < n; i++)
        if (cJSON_GetArrayItem(want, i)->valueint != a[i]) return 0;
    return 1;
}

static int32_t *json_ids(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof *ids);
    for (int i = 0; i < *n; i++) ids[i] = cJSON_GetArrayItem(arr, i)->valueint;
    return ids;
}

/* Checks one case both ways; returns the number of mismatches (reported). */
static int check_case(const tokenizer_t *t, const cJSON *c, int line) {
    const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
    const char *decoded = cJSON_GetObjectItem(c, "decoded")->valuestring;
    int bad = 0, n, nw;
    int32_t *ids;
    akv_err err = {0};
    for (int special = 0; special < 2; special++) {
        cr_assert_eq(tokenizer_encode(t, text, strlen(text), special, &ids, &n, &err), AKV_OK, "%s", err.msg);
        const cJSON *want = cJSON_GetObjectItem(c, special ? "ids_special" : "ids");
        if (!same_ids(ids, n, want)) {
            char *w = cJSON_PrintUnformatted(want);
            cr_log_error("line %d encode(%s, special=%d): %d ids, want %s", line, text, special, n, w);
            free(w);
            bad++;
        }
        free(ids);
    }
    ids = json_ids(cJSON_GetObjectItem(c, "ids"), &nw);
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(tokenizer_decode(t, ids, nw, 0, &out, &len, &err), AKV_OK, "%s", err.msg);
    if (len != strlen(decoded) || memcmp(out, decoded, len)) {
        cr_log_error("line %d decode: got \"%s\", want \"%s\"", line, out, decoded);
        bad++;
    }
    size_t dl = strlen(decoded);
    char *streamed = stream_all(t, ids, nw, NULL);
    if (!(dl >= 3 && !strcmp(decoded + dl - 3, "\xEF\xBF\xBD")) && strcmp(streamed, decoded)) {
        cr_log_error("line %d streaming decode: got \"%s\", want \"%s\"", line, streamed, decoded);
        bad++;
    }
    free(streamed);
    free(out);
    free(ids);
    return bad;
}

static void compare_fixture(const char *name) {
    char dir[512], path[600];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", tu_data(), name);
    if (stat(dir, &sb) != 0)
        cr_skip_test("%s is absent: run tools/make_tokenizer_fixtures.py where tokenizers is", dir);
    tokenizer_t *t = NULL;
    akv_err err = {0};
    cr_assert_eq(tokenizer_load(&t, dir, &err), AKV_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/cases.jsonl", dir);
    char *all = tu_read_file(path, NULL);
    cr_assert_not_null(all, "cannot read %s", path);
    int line = 0, bad = 0, cases = 0;
    for (char *p = all, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) nl = p + strlen(p) - 1;
        else *nl = '\0';
        line++;
        cJSON *c = cJSON_Parse(p);
        if (!c) continue;
        bad += check_case(t, c, line);
        cases++;
        cJSON_Delete(c);
    }
    cr_expect(cases >= 20, "%s: only %d cases", path, cases);
    cr_expect_eq(bad, 0, "%s: %d mismatches with Hugging Face (see the log)", name, bad);
    free(all);
    tokenizer_free(t);
}

Test(tokenizer_fixtures, bytelevel_gpt2) { compare_fixture("bytelevel-gpt2"); }
Test(tokenizer_fixtures, bytelevel_llama3) { compare_fixture("bytelevel-llama3"); }
Test(tokenizer_fixtures, bytelevel_qwen2) { compare_fixture("bytelevel-qwen2"); }
Test(tokenizer_fixtures, sp_llama2) { compare_fixture("sp-llama2"); }
Test(tokenizer_fixtures, sp_metaspace) { compare_fixture("sp-metaspace"); }

/* ---- 1 MB of text ---- */

static char *big_text(size_t size) {
    static const char *const words[] = {
        "the", "hello", "world", "tokenizer", "don't", "we'll", "2024", "3.14159", "café",
        "naïve", "Привет", "мир", "日本語", "中文", "😀", "👍🏽", "👨‍👩‍👧", "\t", "\n", "\r\n",
        "  ", "a", "b", "(x+y)", "—", "«quote»", "NBSP\xC2\xA0here", "ab", "whitespace   "};
    char *s = malloc(size + 64);
    size_t n = 0;
    unsigned x = 12345;
    while (n < size) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 8) % (sizeof words / sizeof words[0])];
        size_t k = strlen(w);
        memcpy(s + n, w, k);
        n += k;
        s[n++] = (x >> 20) % 5 ? ' ' : '.';
    }
    s[n] = '\0';
    return s;
}

/* Encodes and decodes text; the decoded text must equal it. */
static void speed_round_trip(const tokenizer_t *t, const char *what, const char *text) {
    size_t len = strlen(text), dl = 0;
    int32_t *ids = NULL;
    int n = 0;
    char *back = NULL;
    akv_err err = {0};
    double t0 = akv_now_s();
    cr_assert_eq(tokenizer_encode(t, text, len, 0, &ids, &n, &err), AKV_OK, "%s", err.msg);
    double t1 = akv_now_s();
    cr_assert_eq(tokenizer_decode(t, ids, n, 0, &back, &dl, &err), AKV_OK, "%s", err.msg);
    double t2 = akv_now_s();
    cr_expect(dl == len && !memcmp(back, text, len), "%s: decode(encode(1 MB)) differs", what);
    cr_log_info("%s: encoded %.2f MB into %d ids in %.3f s (%.1f MB/s); decoded in %.3f s", what,
                len / 1e6, n, t1 - t0, len / 1e6 / (t1 - t0), t2 - t1);
    free(ids);
    free(back);
}

Test(tokenizer, one_megabyte_encodes_fast, .timeout = 300) {
    char *text = big_text(1 << 20);
    tokenizer_t *t = load(bytelevel_json(1), NULL);
    speed_round_trip(t, "hand byte-level (GPT-2 regex)", text);
    tokenizer_free(t);
    t = load(sp_json(1, 0), NULL); /* no pre-tokenizer: the whole text is one BPE word */
    speed_round_trip(t, "hand SentencePiece-style (one 1 MB word)", text);
    tokenizer_free(t);
    const char *fixtures[] = {"bytelevel-gpt2", "bytelevel-llama3", "bytelevel-qwen2", "sp-llama2",
                              "sp-metaspace"};
    for (int i = 0; i < 5; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", tu_data(), fixtures[i]);
        akv_err err = {0};
        if (tokenizer_load(&t, dir, &err)) continue;
        speed_round_trip(t, fixtures[i], text);
        tokenizer_free(t);
    }
    free(text);
}

/* ---- the command ---- */

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void expect_cli_error(const char *want, const char *args) {
    run_result r = tu_run("%s tokenize %s", tu_bin(), args);
    cr_expect_eq(r.status, 2, "`tokenize %s` exited %d, want 2 (stderr: %s)", args, r.status, r.err);
    cr_expect_eq(count_lines(r.err), 1, "`tokenize %s`: want one stderr line, got: %s", args, r.err);
    cr_expect(strstr(r.err, want) != NULL, "`tokenize %s`: stderr lacks \"%s\": %s", args, want, r.err);
    tu_run_free(&r);
}

Test(tokenize_cli, encode_and_decode) {
    char *dir = write_dir(bytelevel_json(1), NULL), file[600];
    run_result r = tu_run("%s tokenize -q --tokenizer %s/tokenizer.json --text 'hello the'", tu_bin(), dir);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "[262, 258]\n");
    tu_run_free(&r);
    r = tu_run("%s tokenize -q --tokenizer %s --text hello --add-special", tu_bin(), dir);
    cr_expect_str_eq(r.out, "[300, 262]\n");
    tu_run_free(&r);
    r = tu_run("%s tokenize -q --tokenizer %s --text ''", tu_bin(), dir);
    cr_expect_str_eq(r.out, "[]\n");
    tu_run_free(&r);
    snprintf(file, sizeof file, "%s/in.txt", dir);
    tu_write_file(file, "hello the\n", 10);
    r = tu_run("%s tokenize --tokenizer %s --file %s", tu_bin(), dir, file);
    cr_expect_str_eq(r.out, "[262, 258, 10]\n");
    cr_expect(strstr(r.err, "tokenizer") != NULL, "no settings table: %s", r.err);
    tu_run_free(&r);
    r = tu_run("%s tokenize -q --tokenizer %s --decode --ids '262 258 10'", tu_bin(), dir);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "hello the\n");
    tu_run_free(&r);
    r = tu_run("%s tokenize -q --tokenizer %s --decode --ids '[262, 258]'", tu_bin(), dir);
    cr_expect_str_eq(r.out, "hello the");
    tu_run_free(&r);
    tu_rmdir(dir);
    free(dir);
}

Test(tokenize_cli, bad_input) {
    cJSON *bad = bytelevel_json(1);
    cJSON_ReplaceItemInObject(bad, "pre_tokenizer", cJSON_Parse("{\"type\":\"Whitespace\"}"));
    char *dir = write_dir(bytelevel_json(1), NULL), *bdir = write_dir(bad, NULL);
    char a[1400], file[600];
    snprintf(file, sizeof file, "%s/bad.txt", dir);
    tu_write_file(file, "ok \xFF\xFE", 5);
    expect_cli_error("--tokenizer FILE is required", "--text hi");
    snprintf(a, sizeof a, "--tokenizer %s", dir);
    expect_cli_error("exactly one of --text", a);
    snprintf(a, sizeof a, "--tokenizer %s --text hi --file %s", dir, file);
    expect_cli_error("exactly one of --text", a);
    snprintf(a, sizeof a, "--tokenizer %s --decode", dir);
    expect_cli_error("--decode needs exactly one of --ids", a);
    snprintf(a, sizeof a, "--tokenizer %s --ids 1", dir);
    expect_cli_error("are for --decode", a);
    expect_cli_error("cannot read", "--tokenizer /nonexistent/tok.json --text hi");
    snprintf(a, sizeof a, "--tokenizer %s --text hi", bdir);
    expect_cli_error("pre_tokenizer \"Whitespace\"", a);
    snprintf(a, sizeof a, "--tokenizer %s --file %s", dir, file);
    expect_cli_error("not valid UTF-8", a);
    snprintf(a, sizeof a, "--tokenizer %s --decode --ids '1 99999'", dir);
    expect_cli_error("99999 is not in the vocabulary", a);
    snprintf(a, sizeof a, "--tokenizer %s --decode --ids '1 x'", dir);
    expect_cli_error("is not a token id", a);
    tu_rmdir(dir);
    tu_rmdir(bdir);
    free(dir);
    free(bdir);
}

/* A byte-level tokenizer behind an NFC normalizer: decode(encode(x)) shows NFC(x). */
static void expect_nfc(const tokenizer_t *t, const char *in, const char *want) {
    int32_t *ids = NULL;
    int n = 0;
    char *out = NULL;
    akv_err err = {0};
    cr_assert_eq(tokenizer_encode(t, in, strlen(in), 0, &ids, &n, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(tokenizer_decode(t, ids, n, 0, &out, NULL, &err), AKV_OK, "%s", err.msg);
    cr_expect_str_eq(out, want, "NFC(\"%s\")", in);
    free(out);
    free(ids);
}

Test(tokenizer, nfc_normalizer) {
    cJSON *j = bytelevel_json(0);
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_Parse("{\"type\":\"NFC\"}"));
    tokenizer_t *t = load(j, NULL);
    expect_nfc(t, "plain ASCII", "plain ASCII");
    expect_nfc(t, "e\xCC\x81", "\xC3\xA9");                          /* e + U+0301 -> é */
    expect_nfc(t, "\xE2\x84\xAB", "\xC3\x85");                       /* Angstrom sign -> Å */
    expect_nfc(t, "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"); /* jamo -> 각 */
    expect_nfc(t, "\xE1\xB8\x8B\xCC\xA3", "\xE1\xB8\x8D\xCC\x87");   /* ḋ + dot below -> ḍ + dot above */
    expect_nfc(t, "q\xCC\x87\xCC\xA3", "q\xCC\xA3\xCC\x87");         /* reordered by class */
    expect_nfc(t, "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80", "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80");
    tokenizer_free(t);
}
