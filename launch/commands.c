/* commands.c — the command table: names, summaries, usage, examples and accepted options. */
#include "commands.h"


static const char *const LOGITS_OPTS[] = {"model", "ids", "ids-file", "out", "ctx", "batch",
                                          "prefill-chunk", "backend", "quiet", "help", NULL};
static const char *const GENERATE_OPTS[] = {"model", "ids", "ids-file", "max-tokens", "ctx",
                                            "batch", "prefill-chunk", "backend", "quiet", "help",
                                            NULL};

static const cmd_def CMD_GENERATE = {
    "generate", "greedy generation from prompt token ids; ids on stdout, timings on stderr",
    "--model DIR (--ids \"1 2 3\" | --ids-file FILE) [-n N] [options]",
    "asymkv generate --model models/default --ids \"1 17 42 7\" -n 16", GENERATE_OPTS,
    cmd_generate};

static const cmd_def CMD_LOGITS = {
    "logits", "float32 logits [T, vocab] of every prompt position, as a NumPy .npy file",
    "--model DIR (--ids \"1 2 3\" | --ids-file FILE) --out FILE.npy [options]",
    "asymkv logits --model models/default --ids-file prompt.txt --out logits.npy", LOGITS_OPTS,
    cmd_logits};

const cmd_def *const cli_commands[] = {&CMD_GENERATE, &CMD_LOGITS, NULL};

