/* cmd_tokenize.c — `asymkv tokenize`: text -> JSON array of token ids on stdout, or with
 * --decode, ids -> the decoded text exactly (no newline added). Only rank 0 prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "io.h"
#include "tokenizer.h"

static akv_status check_args(const cli_settings *s, akv_err *err) {
    if (!s->tokenizer)
        return akv_fail(err, AKV_EINPUT, "--tokenizer FILE is required (a tokenizer.json or a "
                                         "model folder holding one)");
    if (s->decode) {
        if (s->text || s->file)
            return akv_fail(err, AKV_EINPUT, "--decode reads --ids or --ids-file, not --text / --file");
        if (s->add_special)
            return akv_fail(err, AKV_EINPUT, "--add-special applies to encoding, not to --decode");
        if (!!s->ids == !!s->ids_file)
            return akv_fail(err, AKV_EINPUT, "--decode needs exactly one of --ids \"1 2 3\" or "
                                             "--ids-file FILE");
        return AKV_OK;
    }
    if (s->ids || s->ids_file)
        return akv_fail(err, AKV_EINPUT, "--ids / --ids-file are for --decode; to encode give "
                                         "--text TEXT or --file FILE");
    if (!!s->text == !!s->file)
        return akv_fail(err, AKV_EINPUT, "give the text as exactly one of --text TEXT or --file FILE");
    return AKV_OK;
}

/* The ids to decode. The JSON array that encoding prints is accepted too; no ids is fine. */
static akv_status read_ids(const cli_settings *s, int32_t **ids, int *n, akv_err *err) {
    char *text = NULL;
    akv_status st = AKV_OK;
    *ids = NULL;
    *n = 0;
    if (s->ids && !(text = strdup(s->ids))) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!s->ids) st = io_read_text(s->ids_file, &text, NULL, err);
    if (st) return st;
    int blank = 1;
    for (char *p = text; *p; p++) {
        if (*p == '[' || *p == ']') *p = ' ';
        if (!strchr(" \t\r\n,", *p)) blank = 0;
    }
    if (!blank) st = ids_parse(text, s->ids ? "--ids" : s->ids_file, ids, n, err);
    free(text);
    return st;
}

/* Text -> "[1, 2, 3]\n" into out. */
static akv_status run_encode(const cli_settings *s, const tokenizer_t *t, char **out, size_t *len,
                             akv_err *err) {
    char *text = NULL;
    size_t n_text = 0;
    int32_t *ids = NULL;
    int n = 0;
    akv_status st = AKV_OK;
    if (s->file) st = io_read_text(s->file, &text, &n_text, err);
    if (!st) st = tokenizer_encode(t, s->file ? text : s->text, s->file ? n_text : strlen(s->text),
                                   s->add_special, &ids, &n, err);
    size_t cap = 16 * (size_t)n + 4;
    if (!st && !(*out = malloc(cap))) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!st) {
        size_t k = 0;
        (*out)[k++] = '[';
        for (int i = 0; i < n; i++) k += (size_t)snprintf(*out + k, cap - k, i ? ", %d" : "%d", ids[i]);
        k += (size_t)snprintf(*out + k, cap - k, "]\n");
        *len = k;
    }
    free(ids);
    free(text);
    return st;
}

static akv_status run_decode(const cli_settings *s, const tokenizer_t *t, char **out, size_t *len,
                             akv_err *err) {
    int32_t *ids = NULL;
    int n = 0;
    akv_status st = read_ids(s, &ids, &n, err);
    if (!st) st = tokenizer_decode(t, ids, n, 0, out, len, err);
    free(ids);
    return st;
}

/* The settings table is printed only once the result is known good, so that a bad input stays
 * a one-line error. */
int cmd_tokenize(const cli_settings *s) {
    akv_err err = {0};
    tokenizer_t *t = NULL;
    char *out = NULL;
    size_t len = 0;
    akv_status st = check_args(s, &err);
    if (!st) st = tokenizer_load(&t, s->tokenizer, &err);
    if (!st) st = s->decode ? run_decode(s, t, &out, &len, &err) : run_encode(s, t, &out, &len, &err);
    if (!st && s->rank == 0) {
        if (!s->quiet) cli_print_settings(stderr, s->cmd, s);
        fwrite(out, 1, len, stdout);
        if (fflush(stdout) || ferror(stdout))
            st = akv_fail(&err, AKV_ERUNTIME, "cannot write to standard output");
    }
    if (st) fprintf(stderr, "asymkv tokenize: error: %s\n", err.msg);
    free(out);
    tokenizer_free(t);
    return (int)st;
}
