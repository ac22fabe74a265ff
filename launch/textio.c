/* textio.c — prompt tokenization and the streaming text printer; see textio.h. */
#include "textio.h"

#include <stdlib.h>
#include <string.h>

#include "io.h"

akv_status text_tokenizer(const cli_settings *s, tokenizer_t **tok, akv_err *err) {
    return tokenizer_load(tok, s->tokenizer ? s->tokenizer : s->model, err);
}

akv_status text_prompt_ids(const cli_settings *s, int32_t **ids, int *n, akv_err *err) {
    tokenizer_t *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    akv_status st = text_tokenizer(s, &tok, err);
    if (!st && s->prompt_file) st = io_read_text(s->prompt_file, &text, &len, err);
    const char *t = s->prompt_file ? text : s->prompt;
    if (!st) st = tokenizer_encode(tok, t, s->prompt_file ? len : strlen(t), 1, ids, n, err);
    if (!st && *n == 0) st = akv_fail(err, AKV_EINPUT, "the prompt encodes to no token");
    free(text);
    tokenizer_free(tok);
    return st;
}

akv_status text_stream_init(text_stream *ts, const tokenizer_t *tok, const char *stop, FILE *out,
                            akv_err *err) {
    memset(ts, 0, sizeof *ts);
    ts->out = out;
    ts->cap = 256;
    ts->text = malloc(ts->cap);
    if (!ts->text) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    ts->text[0] = '\0';
    akv_status st = text_stream_add_stop(ts, stop, err);
    return st ? st : tokenizer_stream_init(&ts->dec, tok, 1, err);
}

akv_status text_stream_add_stop(text_stream *ts, const char *stop, akv_err *err) {
    if (!stop || !*stop) return AKV_OK;
    if (ts->n_stop == TEXT_MAX_STOPS)
        return akv_fail(err, AKV_EINPUT, "at most %d stop strings", TEXT_MAX_STOPS);
    ts->stop[ts->n_stop++] = stop;
    return AKV_OK;
}

/* The earliest stop string in text[from..], or NULL. */
static char *find_stop(const text_stream *ts, size_t from) {
    char *best = NULL;
    for (int i = 0; i < ts->n_stop; i++) {
        char *at = strstr(ts->text + from, ts->stop[i]);
        if (at && (!best || at < best)) best = at;
    }
    return best;
}

/* Prints text[printed, upto). */
static void emit(text_stream *ts, size_t upto) {
    if (ts->out && upto > ts->printed) {
        fwrite(ts->text + ts->printed, 1, upto - ts->printed, ts->out);
        fflush(ts->out);
    }
    if (upto > ts->printed) ts->printed = upto;
}

int text_stream_push(text_stream *ts, int32_t id) {
    const char *piece = NULL;
    size_t n = 0;
    akv_err err = {0};
    if (ts->stopped || tokenizer_stream_step(ts->dec, id, &piece, &n, &err) || !n) return ts->stopped;
    if (ts->len + n + 1 > ts->cap) {
        while (ts->len + n + 1 > ts->cap) ts->cap *= 2;
        char *nt = realloc(ts->text, ts->cap);
        if (!nt) return 1;
        ts->text = nt;
    }
    memcpy(ts->text + ts->len, piece, n);
    ts->len += n;
    ts->text[ts->len] = '\0';
    size_t hold = 0;
    for (int i = 0; i < ts->n_stop; i++)
        if (strlen(ts->stop[i]) - 1 > hold) hold = strlen(ts->stop[i]) - 1;
    if (ts->n_stop) {
        size_t from = ts->printed > hold ? ts->printed - hold : 0;
        char *at = find_stop(ts, from);
        if (at) {
            ts->len = (size_t)(at - ts->text);
            ts->text[ts->len] = '\0';
            ts->stopped = 1;
            emit(ts, ts->len);
            return 1;
        }
    }
    emit(ts, ts->len > hold ? ts->len - hold : 0);
    return 0;
}

void text_stream_finish(text_stream *ts) {
    emit(ts, ts->len);
}

void text_stream_free(text_stream *ts) {
    tokenizer_stream_free(ts->dec);
    free(ts->text);
    memset(ts, 0, sizeof *ts);
}
