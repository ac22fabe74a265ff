/* eval.h — the parts of `asymkv eval` beyond perplexity: the per-layer diagnostic table and
 * CSV, the width search, passkey retrieval, and tokenizing a text file for the model. */
#ifndef ASYMKV_EVAL_H
#define ASYMKV_EVAL_H

#include "cli.h"
#include "kvconfig.h"
#include "kvdiag.h"
#include "ranks.h"

/* Tokenizes a UTF-8 file with --tokenizer or MODEL/tokenizer.json (special tokens as the
 * tokenizer adds them, e.g. BOS). */
akv_status eval_tokenize_file(const cli_settings *s, const char *path, int32_t **ids, int *n,
                              akv_err *err);

/* Rank 0: the K-only vs V-only table on stdout and the CSV at --csv. */
akv_status eval_print_diag(const cli_settings *s, const kv_config *kv, const kvdiag_layer *rows,
                           akv_err *err);

#define EVAL_MAX_BUDGETS 8

/* Parses --budget "1.5,2" (each in 1..16) into b[*n] (b, n may be NULL: only check). */
akv_status eval_budgets(const char *list, double *b, int *n, akv_err *err);

/* Rank 0: the --search-kv result under each --budget, printed as a --kv list. */
akv_status eval_search(const cli_settings *s, const kv_config *kv, const kvdiag_layer *rows,
                       akv_err *err);

/* The whole --passkey run (opens its own engine); *how says how a failure was seen. */
akv_status eval_passkey(ranks_ctx *r, const cli_settings *s, ranks_how *how, akv_err *err);

#endif
