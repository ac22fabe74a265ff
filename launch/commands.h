/* commands.h — entry points of the subcommands (each returns the process exit code). */
#ifndef ASYMKV_COMMANDS_H
#define ASYMKV_COMMANDS_H

#include "cli.h"
#include "ranks.h"

int cmd_logits(const cli_settings *s);
int cmd_generate(const cli_settings *s);
int cmd_plan(const cli_settings *s);
int cmd_tokenize(const cli_settings *s);

/* Shared by the model commands (cmd_model.c). check_common: --model, --backend, sizes.
 * open_engine: opens the model for prompts of at most p->max_T ids plus n_new tokens
 * (collective, agreed; --kv resolved, placement planned); res gets the settings with defaults
 * resolved. The caller prints them (ranks_print_settings) once everything is known good, so a
 * bad input stays a one-line error. */
akv_status check_common(const cli_settings *s, akv_err *err);
akv_status open_engine(ranks_ctx *r, const cli_settings *s, const prompts *p, int n_new,
                       engine_t **e, cli_settings *res, akv_err *err);
int cmd_eval(const cli_settings *s);
int cmd_batch(const cli_settings *s);
int cmd_bench(const cli_settings *s);

#endif
