/* commands.h — entry points of the subcommands (each returns the process exit code). */
#ifndef ASYMKV_COMMANDS_H
#define ASYMKV_COMMANDS_H

#include "cli.h"

int cmd_logits(const cli_settings *s);
int cmd_generate(const cli_settings *s);
int cmd_plan(const cli_settings *s);
int cmd_tokenize(const cli_settings *s);

#endif
