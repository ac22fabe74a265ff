/* commands.c — the command table: names, summaries, usage, examples and accepted options. */
#include "commands.h"


static const char *const LOGITS_OPTS[] = {"model", "ids", "ids-file", "out", "ctx", "batch",
                                          "prefill-chunk", "micro-batches", "layers-per-rank",
                                          "mem-per-rank", "kv", "kv-hi-bits", "kv-group",
                                          "kv-residual", "backend", "quiet", "help", NULL};
static const char *const GENERATE_OPTS[] = {"model", "ids", "ids-file", "prompts-file",
                                            "max-tokens", "ctx", "batch", "prefill-chunk",
                                            "micro-batches", "layers-per-rank", "mem-per-rank",
                                            "kv", "kv-hi-bits", "kv-group", "kv-residual",
                                            "backend", "quiet", "help", NULL};

static const char *const PLAN_OPTS[] = {"model", "shape", "ranks", "ctx", "batch",
                                        "prefill-chunk", "kv", "kv-hi-bits", "kv-group",
                                        "kv-residual", "mem-per-rank", "layers-per-rank",
                                        "backend", "help", NULL};

static const cmd_def CMD_GENERATE = {
    "generate", "greedy generation from prompt token ids; ids on stdout, timings on stderr",
    "--model DIR (--ids \"1 2 3\" | --ids-file FILE | --prompts-file FILE) [-n N] [options]",
    "asymkv generate --model models/default --ids \"1 17 42 7\" -n 16", GENERATE_OPTS,
    cmd_generate};

static const cmd_def CMD_LOGITS = {
    "logits", "float32 logits [T, vocab] of every prompt position, as a NumPy .npy file",
    "--model DIR (--ids \"1 2 3\" | --ids-file FILE) --out FILE.npy [options]",
    "asymkv logits --model models/default --ids-file prompt.txt --out logits.npy", LOGITS_OPTS,
    cmd_logits};

static const cmd_def CMD_PLAN = {
    "plan", "placement of layers on pipeline ranks and per-rank memory, without loading weights",
    "(--model DIR | --shape NAME) [--ranks N] [--ctx N] [--batch N] [--kv CONFIG] "
    "[--mem-per-rank LIST] [options]\n  (--ctx 0 = the model's max_position_embeddings; "
    "weights are sized as bf16, or fp32 with --backend cpu)",
    "asymkv plan --shape llama-3-70b --ranks 4 --mem-per-rank 140G --ctx 131072 --batch 16 "
    "--kv asymkv:80/0", PLAN_OPTS, cmd_plan};

static const char *const TOKENIZE_OPTS[] = {"tokenizer", "text", "file", "add-special", "decode",
                                            "ids", "ids-file", "quiet", "help", NULL};

static const cmd_def CMD_TOKENIZE = {
    "tokenize", "text -> JSON array of token ids, or ids -> text with --decode",
    "--tokenizer FILE (--text TEXT | --file F) [--add-special]\n"
    "       asymkv tokenize --tokenizer FILE --decode (--ids \"1 2 3\" | --ids-file F)",
    "asymkv tokenize --tokenizer tests/data/tokenizers/bytelevel-llama3 --text \"Hello world\"",
    TOKENIZE_OPTS, cmd_tokenize};

static const char *const EVAL_OPTS[] = {"model", "ids-file", "text-file", "tokenizer", "prefix",
                                        "window", "diag", "csv", "search-kv", "budget",
                                        "passkey", "passkey-lengths", "passkey-depths",
                                        "passkey-trials", "filler", "seed", "ctx", "batch",
                                        "prefill-chunk", "micro-batches", "layers-per-rank",
                                        "mem-per-rank", "kv", "kv-hi-bits", "kv-group",
                                        "kv-residual", "backend", "quiet", "help", NULL};

static const cmd_def CMD_EVAL = {
    "eval", "perplexity under a --kv config, the per-layer K-vs-V diagnostic, --search-kv, passkey retrieval",
    "--model DIR (--text-file F | --ids-file F) [--kv CONFIG] [--prefix N] [--window N] "
    "[--diag] [--search-kv --budget B]\n       asymkv eval --model DIR --passkey "
    "[--passkey-lengths 1024,2048] [--kv CONFIG]",
    "asymkv eval --model models/default --text-file models/default/heldout.txt --kv asymkv:4/0 "
    "--prefix 512 --diag", EVAL_OPTS, cmd_eval};

const cmd_def *const cli_commands[] = {&CMD_GENERATE, &CMD_LOGITS, &CMD_EVAL, &CMD_PLAN,
                                       &CMD_TOKENIZE, NULL};

