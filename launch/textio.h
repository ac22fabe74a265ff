/* textio.h — text in and out for the model commands: prompts tokenized with the model's
 * tokenizer.json, and a streaming printer that turns generated ids into UTF-8 text (nothing
 * printed inside an incomplete character) and ends a sequence at a stop string. */
#ifndef ASYMKV_TEXTIO_H
#define ASYMKV_TEXTIO_H

#include <stdio.h>

#include "cli.h"
#include "tokenizer.h"

/* --prompt TEXT or --prompt-file FILE, tokenized with --tokenizer or MODEL/tokenizer.json,
 * special tokens (e.g. BOS) as the tokenizer adds them. */
akv_status text_prompt_ids(const cli_settings *s, int32_t **ids, int *n, akv_err *err);

/* Loads --tokenizer or MODEL/tokenizer.json. */
akv_status text_tokenizer(const cli_settings *s, tokenizer_t **tok, akv_err *err);

/* Decodes one sequence's ids as they come, holding back what could be the start of the stop
 * string. */
#define TEXT_MAX_STOPS 4

typedef struct text_stream {
    tokenizer_stream *dec;
    const char *stop[TEXT_MAX_STOPS]; /* stop strings (non-empty) */
    int n_stop;
    char *text;          /* all decoded text so far */
    size_t len, cap, printed;
    int stopped;         /* the stop string was seen: text ends before it */
    FILE *out;           /* where text is streamed (NULL = keep only) */
} text_stream;

akv_status text_stream_init(text_stream *ts, const tokenizer_t *tok, const char *stop, FILE *out,
                            akv_err *err);
/* Adds a stop string (at most TEXT_MAX_STOPS; empty ones are ignored). */
akv_status text_stream_add_stop(text_stream *ts, const char *stop, akv_err *err);
/* Feeds one id; returns 1 when the sequence must end (stop string seen). */
int text_stream_push(text_stream *ts, int32_t id);
/* Prints what was held back (end of the sequence). */
void text_stream_finish(text_stream *ts);
void text_stream_free(text_stream *ts);

#endif
