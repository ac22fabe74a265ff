/* cli.c — option table, parser, --help and the settings table; see cli.h. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define S(field) offsetof(cli_settings, field)

static const opt_def OPTS[] = {
    {"model", 'm', OPT_STR, S(model), "DIR", NULL, "Hugging Face model folder (config.json + safetensors)"},
    {"ids", 0, OPT_STR, S(ids), "\"1 2 3\"", NULL, "prompt token ids, whitespace-separated"},
    {"ids-file", 0, OPT_STR, S(ids_file), "FILE", NULL, "file of whitespace-separated prompt token ids"},
    {"out", 'o', OPT_STR, S(out), "FILE.npy", NULL, "output file"},
    {"max-tokens", 'n', OPT_INT, S(n_new), "N", "32", "tokens to generate (stops early at EOS)"},
    {"ctx", 0, OPT_INT, S(ctx), "N", "0", "positions per sequence (0 = prompt + new tokens)"},
    {"batch", 0, OPT_INT, S(batch), "N", "1", "sequences resident at once"},
    {"prefill-chunk", 0, OPT_INT, S(prefill_chunk), "N", "256", "prompt tokens per forward pass"},
    {"kv", 0, OPT_STR, S(kv), "CONFIG", "fp16", "KV cache: fp16 | kivi2 | kivi4 | asymkv:LK/LV | k=2x16,1x16;v=1x32"},
    {"kv-hi-bits", 0, OPT_INT, S(kv_hi_bits), "2|4", "2", "high bit width of asymkv:LK/LV"},
    {"kv-group", 0, OPT_INT, S(kv_group), "G", "32", "KV quantization group (tokens per key group, channels per value group)"},
    {"kv-residual", 0, OPT_INT, S(kv_residual), "R", "128", "most recent tokens kept in full precision (a multiple of G)"},
    {"shape", 0, OPT_STR, S(shape), "NAME", NULL, "built-in model shape instead of --model (llama-2-7b, llama-2-13b, llama-3-8b, llama-3-70b, mistral-7b, qwen2-7b, tiny)"},
    {"synthetic", 0, OPT_STR, S(shape), "SHAPE", NULL, "bench: random weights of a built-in shape instead of --model (the --shape names)"},
    {"prompt-len", 0, OPT_INT, S(prompt_len), "N", "128", "bench: prompt tokens per sequence (random ids)"},
    {"json", 0, OPT_STR, S(json), "FILE", NULL, "bench: also write the results as one JSON object to FILE"},
    {"ranks", 0, OPT_INT, S(ranks), "N", "0", "pipeline stages (0 = the number of MPI ranks)"},
    {"mem-per-rank", 0, OPT_STR, S(mem_per_rank), "LIST", NULL, "usable GPU memory per rank: one size for all or one per rank, e.g. 80G,80G,40G (G = 2^30, GB = 10^9)"},
    {"layers-per-rank", 0, OPT_STR, S(layers_per_rank), "LIST", NULL, "layer counts per rank instead of the planner, e.g. 10,12,10"},
    {"micro-batches", 0, OPT_INT, S(micro_batches), "M", "0", "decode micro-batches in flight over the pipeline ranks (0 = one per rank)"},
    {"prompts-file", 0, OPT_STR, S(prompts_file), "FILE", NULL, "several prompts, one line of whitespace-separated ids each; one output line per prompt"},
    {"threads", 0, OPT_INT, S(threads), "N", "0", "CPU threads per rank for the CPU backend's matrix products (0 = OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else this rank's share of the node's cores, at most those it is bound to); results do not depend on it"},
    {"backend", 0, OPT_STR, S(backend), "auto|cpu|cuda", "auto", "where the model runs; auto = cuda when this rank sees a GPU (cpu for --diag/--search-kv and --kv fp32, which are CPU-only)"},
    {"tokenizer", 0, OPT_STR, S(tokenizer), "FILE", NULL, "tokenizer.json, or a model folder holding one"},
    {"text", 0, OPT_STR, S(text), "TEXT", NULL, "text to encode"},
    {"file", 0, OPT_STR, S(file), "FILE", NULL, "file whose text to encode (UTF-8)"},
    {"decode", 0, OPT_FLAG, S(decode), NULL, NULL, "decode --ids / --ids-file to text instead of encoding"},
    {"add-special", 0, OPT_FLAG, S(add_special), NULL, NULL, "add the special tokens the tokenizer adds (e.g. BOS)"},
    {"text-file", 0, OPT_STR, S(text_file), "FILE", NULL, "text to score, tokenized with the model's tokenizer.json (BOS added as the tokenizer does)"},
    {"prefix", 0, OPT_INT, S(prefix), "N", "0", "tokens of each window prefilled exactly; every later token goes through the decode path"},
    {"window", 0, OPT_INT, S(window), "N", "0", "tokens per scored window, each from a fresh cache (0 = --ctx, else the model's max_position_embeddings)"},
    {"diag", 0, OPT_FLAG, S(diag), NULL, NULL, "per-layer attention-output error with only K vs only V quantized (1/2/4 bits), as a table and CSV"},
    {"csv", 0, OPT_STR, S(csv), "FILE", "kv-diag.csv", "where --diag writes its CSV"},
    {"search-kv", 0, OPT_FLAG, S(search_kv), NULL, NULL, "choose per-layer K/V widths minimizing the measured error under --budget; prints the --kv list"},
    {"budget", 0, OPT_STR, S(budget), "BITS", "1.5", "--search-kv: average code bits per K/V value (1..4); a list like 1.5,2 searches each"},
    {"passkey", 0, OPT_FLAG, S(passkey), NULL, NULL, "passkey retrieval accuracy (prompts in the format of models/asymkv-ref/README.md)"},
    {"passkey-lengths", 0, OPT_STR, S(passkey_lengths), "LIST", "1024,2048", "prompt lengths in tokens (incl. 8 generated)"},
    {"passkey-depths", 0, OPT_STR, S(passkey_depths), "LIST", "0,0.25,0.5,0.75,1", "where the key sits in the filler (0 = start, 1 = end)"},
    {"passkey-trials", 0, OPT_INT, S(passkey_trials), "N", "4", "prompts per (length, depth)"},
    {"filler", 0, OPT_STR, S(filler), "FILE", NULL, "passkey filler text (default: MODEL/heldout.txt)"},
    {"seed", 0, OPT_INT, S(seed), "N", "1234", "random seed (sampling, passkey prompts)"},
    {"prompt", 'p', OPT_STR, S(prompt), "TEXT", NULL, "prompt text (tokenized with the model's tokenizer.json)"},
    {"prompt-file", 0, OPT_STR, S(prompt_file), "FILE", NULL, "prompt text from a file"},
    {"temp", 0, OPT_FLOAT, S(temp), "T", "0", "sampling temperature (0 = greedy)"},
    {"top-k", 0, OPT_INT, S(top_k), "K", "0", "keep the K most likely tokens (0 = all)"},
    {"top-p", 0, OPT_FLOAT, S(top_p), "P", "1", "nucleus sampling: smallest set with probability >= P"},
    {"min-p", 0, OPT_FLOAT, S(min_p), "P", "0", "drop tokens below P x the top probability"},
    {"repetition-penalty", 0, OPT_FLOAT, S(repetition_penalty), "R", "1", "divide positive (multiply negative) logits of seen tokens by R"},
    {"stop", 0, OPT_STR, S(stop), "TEXT", NULL, "stop when the generated text contains TEXT"},
    {"input", 'i', OPT_STR, S(input), "IN.jsonl", NULL, "batch: one JSON object per line (id, prompt, max_tokens, temperature, top_p, seed, stop)"},
    {"output", 0, OPT_STR, S(output), "OUT.jsonl", NULL, "batch: results, one JSON object per input line"},
    {"quiet", 'q', OPT_FLAG, S(quiet), NULL, NULL, "do not print the settings table and timings"},
    {"help", 'h', OPT_FLAG, S(help), NULL, NULL, "show this help"},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static const opt_def *find_opt(const cmd_def *cmd, const char *name, char short_name) {
    for (const char *const *o = cmd->opts; *o; o++)
        for (size_t i = 0; i < N_OPTS; i++)
            if (!strcmp(OPTS[i].name, *o) &&
                ((name && !strcmp(name, OPTS[i].name)) ||
                 (!name && short_name && OPTS[i].short_name == short_name)))
                return &OPTS[i];
    return NULL;
}

static akv_status set_value(const opt_def *d, const char *v, cli_settings *s, akv_err *err) {
    char *base = (char *)s;
    if (d->type == OPT_STR) {
        *(const char **)(base + d->offset) = v;
        return AKV_OK;
    }
    char *end;
    errno = 0;
    if (d->type == OPT_FLOAT) {
        double f = strtod(v, &end);
        if (errno || end == v || *end || f != f)
            return akv_fail(err, AKV_EINPUT, "--%s expects a number, got \"%s\"", d->name, v);
        *(double *)(base + d->offset) = f;
        return AKV_OK;
    }
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < INT_MIN || x > INT_MAX)
        return akv_fail(err, AKV_EINPUT, "--%s expects an integer, got \"%s\"", d->name, v);
    *(int *)(base + d->offset) = (int)x;
    return AKV_OK;
}

static void set_defaults(const cmd_def *cmd, cli_settings *s) {
    memset(s, 0, sizeof *s);
    for (const char *const *o = cmd->opts; *o; o++) {
        const opt_def *d = find_opt(cmd, *o, 0);
        if (d && d->def) set_value(d, d->def, s, NULL);
    }
}

akv_status cli_parse(const cmd_def *cmd, int argc, char **argv, cli_settings *s, akv_err *err) {
    set_defaults(cmd, s);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const opt_def *d = NULL;
        char name[64];
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), a + 2);
            d = find_opt(cmd, name, 0);
            if (eq) val = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            d = find_opt(cmd, NULL, a[1]);
            snprintf(name, sizeof name, "%s", a);
        } else {
            return akv_fail(err, AKV_EINPUT, "unexpected argument \"%s\" (see asymkv %s --help)",
                            a, cmd->name);
        }
        if (!d)
            return akv_fail(err, AKV_EINPUT, "unknown option %s for asymkv %s (see asymkv %s --help)",
                            a, cmd->name, cmd->name);
        if (d->type == OPT_FLAG) {
            if (val) return akv_fail(err, AKV_EINPUT, "--%s takes no value", d->name);
            *(int *)((char *)s + d->offset) = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return akv_fail(err, AKV_EINPUT, "--%s needs a value (%s)", d->name, d->metavar);
            val = argv[++i];
        }
        akv_status st = set_value(d, val, s, err);
        if (st) return st;
    }
    return AKV_OK;
}

void cli_print_help(FILE *f, const cmd_def *cmd) {
    fprintf(f, "asymkv %s — %s\n\nusage: asymkv %s %s\n\noptions:\n", cmd->name, cmd->summary,
            cmd->name, cmd->usage);
    for (const char *const *o = cmd->opts; *o; o++) {
        const opt_def *d = find_opt(cmd, *o, 0);
        if (!d) continue;
        char left[64];
        if (d->short_name)
            snprintf(left, sizeof left, "-%c, --%s %s", d->short_name, d->name, d->metavar ? d->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s %s", d->name, d->metavar ? d->metavar : "");
        fprintf(f, "  %-30s %s", left, d->help);
        if (d->def) fprintf(f, " [default: %s]", d->def);
        fputc('\n', f);
    }
    fprintf(f, "\nexample:\n  %s\n", cmd->example);
}

void cli_print_settings(FILE *f, const cmd_def *cmd, const cli_settings *s) {
    fprintf(f, "asymkv %s settings:\n", cmd->name);
    for (const char *const *o = cmd->opts; *o; o++) {
        const opt_def *d = find_opt(cmd, *o, 0);
        if (!d || !strcmp(d->name, "help") || !strcmp(d->name, "quiet")) continue;
        const char *base = (const char *)s;
        if (d->type == OPT_STR) {
            const char *v = *(const char *const *)(base + d->offset);
            if (v && strlen(v) > 60) fprintf(f, "  %-16s %.57s...\n", d->name, v);
            else fprintf(f, "  %-16s %s\n", d->name, v ? v : "-");
        } else if (d->type == OPT_FLOAT) {
            fprintf(f, "  %-16s %g\n", d->name, *(const double *)(base + d->offset));
        } else if (d->type == OPT_INT) {
            fprintf(f, "  %-16s %d\n", d->name, *(const int *)(base + d->offset));
        } else if (*(const int *)(base + d->offset)) {
            fprintf(f, "  %-16s on\n", d->name);
        }
    }
}

void cli_print_usage(FILE *f) {
    fprintf(f, "asymkv — long-context LLM inference with an asymmetric 1-bit KV cache\n\n"
               "usage: asymkv COMMAND [options]   (asymkv COMMAND --help for its options)\n\n"
               "commands:\n");
    for (const cmd_def *const *c = cli_commands; *c; c++)
        fprintf(f, "  %-10s %s\n", (*c)->name, (*c)->summary);
}
