/* commands.c — the command table: names, summaries, usage, examples and accepted options. */
#include "commands.h"


static const char *const LOGITS_OPTS[] = {"model", "ids", "ids-file", "out", "ctx", "batch",
                                          "prefill-chunk", "micro-batches", "layers-per-rank",
                                          "mem-per-rank", "kv", "kv-hi-bits", "kv-group",
                                          "kv-residual", "threads", "backend", "quiet", "help",
                                          NULL};
static const char *const GENERATE_OPTS[] = {"model", "prompt", "prompt-file", "tokenizer",
                                            "ids", "ids-file", "prompts-file", "max-tokens",
                                            "temp", "top-k", "top-p", "min-p",
                                            "repetition-penalty", "seed", "stop", "ctx", "batch", "prefill-chunk",
                                            "micro-batches", "layers-per-rank", "mem-per-rank",
                                            "kv", "kv-hi-bits", "kv-group", "kv-residual",
                                            "threads", "backend", "quiet", "help", NULL};

static const char *const PLAN_OPTS[] = {"model", "shape", "ranks", "ctx", "batch",
                                        "prefill-chunk", "kv", "kv-hi-bits", "kv-group",
                                        "kv-residual", "mem-per-rank", "layers-per-rank",
                                        "backend", "help", NULL};

static const cmd_def CMD_GENERATE = {
    "generate", "text (or token ids) in, streamed text (or ids) out; timings on stderr",
    "--model DIR (--prompt TEXT | --prompt-file F | --ids \"1 2 3\" | --ids-file F | "
    "--prompts-file F) [-n N] [--temp T --top-p P --seed S] [--stop TEXT] [options]",
    "asymkv generate --model models/default --prompt \"In the beginning\" -n 48 --kv asymkv:4/0",
    GENERATE_OPTS,
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

static const char *const BENCH_OPTS[] = {"model", "synthetic", "prompt-len", "max-tokens", "batch",
                                         "ctx", "prefill-chunk", "micro-batches",
                                         "layers-per-rank", "mem-per-rank", "kv", "kv-hi-bits",
                                         "kv-group", "kv-residual", "threads", "backend", "seed",
                                         "json", "quiet", "help", NULL};

static const cmd_def CMD_BENCH = {
    "bench", "TTFT, decode tok/s and TPOT, per-rank memory and pipeline bubbles (random prompts)",
    "(--model DIR | --synthetic SHAPE) [--batch B] [--prompt-len T] [-n N] [--kv CONFIG] "
    "[--micro-batches M] [--json FILE] [options]\n  (under mpirun: N ranks = N pipeline stages; "
    "greedy, EOS ignored, one 2-token warm-up run first)",
    "mpirun -np 2 asymkv bench --synthetic tiny --batch 8 --prompt-len 256 -n 64 --kv asymkv:2/0",
    BENCH_OPTS, cmd_bench};

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
                                        "kv-residual", "threads", "backend", "quiet", "help",
                                        NULL};

static const cmd_def CMD_EVAL = {
    "eval", "perplexity under a --kv config, the per-layer K-vs-V diagnostic, --search-kv, passkey retrieval",
    "--model DIR (--text-file F | --ids-file F) [--kv CONFIG] [--prefix N] [--window N] "
    "[--diag] [--search-kv --budget 1.5,2]\n       asymkv eval --model DIR --passkey "
    "[--passkey-lengths 1024,2048] [--kv CONFIG]",
    "asymkv eval --model models/default --text-file models/default/heldout.txt --kv asymkv:4/0 "
    "--prefix 512 --diag", EVAL_OPTS, cmd_eval};

static const char *const BATCH_OPTS[] = {"model", "input", "output", "tokenizer", "max-tokens",
                                         "temp", "top-k", "top-p", "min-p",
                                         "repetition-penalty", "seed", "ctx", "batch",
                                         "prefill-chunk", "micro-batches", "layers-per-rank",
                                         "mem-per-rank", "kv", "kv-hi-bits", "kv-group",
                                         "kv-residual", "threads", "backend", "quiet", "help",
                                        NULL};

static const cmd_def CMD_BATCH = {
    "batch", "JSONL prompts in, JSONL completions out; sequences of different lengths run together",
    "--model DIR --input IN.jsonl --output OUT.jsonl [--batch N] [-n N] [options]\n  input "
    "lines: {\"id\", \"prompt\", \"max_tokens\", \"temperature\", \"top_p\", \"seed\", \"stop\"}; "
    "output lines: {\"id\", \"text\", \"tokens\", \"prompt_tokens\", \"finish_reason\", "
    "\"time_to_first_token_s\", \"time_s\"} or {\"id\", \"error\"}",
    "asymkv batch --model models/default --input prompts.jsonl --output out.jsonl --batch 8",
    BATCH_OPTS, cmd_batch};

const cmd_def *const cli_commands[] = {&CMD_GENERATE, &CMD_BATCH, &CMD_LOGITS, &CMD_EVAL,
                                       &CMD_BENCH, &CMD_PLAN, &CMD_TOKENIZE, NULL};

