/* cli.h — the table-driven command line: one option table builds the parser, each command's
 * --help text and the resolved-settings table printed at start, so the three never drift. */
#ifndef ASYMKV_CLI_H
#define ASYMKV_CLI_H

#include <stdio.h>

#include "common.h"

typedef enum opt_type { OPT_STR, OPT_INT, OPT_FLAG, OPT_FLOAT } opt_type;

/* Every setting of every command. Unset strings are NULL; ints carry their defaults. */
typedef struct cli_settings {
    const char *model;
    const char *ids;
    const char *ids_file;
    const char *out;
    const char *backend;
    int n_new;
    int ctx;
    int batch;
    int prefill_chunk;
    int threads;                 /* CPU threads per rank (0 = auto; resolved in main.c) */
    const char *kv;              /* --kv CONFIG (kvconfig.h) */
    int kv_hi_bits;              /* high width of asymkv:LK/LV */
    int kv_group;                /* G */
    int kv_residual;             /* R */
    const char *shape;           /* built-in model shape (dist/shapes.h); bench --synthetic */
    int prompt_len;              /* bench: prompt tokens per sequence */
    const char *json;            /* bench: results as JSON */
    int ranks;                   /* pipeline stages; 0 = the MPI world size */
    const char *mem_per_rank;    /* "80G" or "80G,80G,40G" */
    const char *layers_per_rank; /* "10,12,10" */
    int micro_batches;           /* decode micro-batches in flight; 0 = one per rank */
    const char *prompts_file;    /* generate: one prompt of ids per line */
    const char *tokenizer;       /* tokenizer.json or its folder */
    const char *text;            /* text to tokenize */
    const char *file;            /* file of text to tokenize */
    int decode;                  /* tokenize: ids -> text */
    int add_special;             /* tokenize: add the post-processor's special tokens */
    const char *text_file;       /* eval: text to score (tokenized with the model's tokenizer) */
    int prefix;                  /* eval: tokens of each window prefilled; the rest decoded */
    int window;                  /* eval: tokens per scored window (0 = --ctx or the model's max) */
    int diag;                    /* eval: per-layer K-only vs V-only attention error */
    const char *csv;             /* eval --diag: CSV output path */
    int search_kv;               /* eval: pick per-layer widths under --budget */
    const char *budget;          /* eval --search-kv: average code bits per K/V value, "1.5,2" */
    int passkey;                 /* eval: passkey retrieval */
    const char *passkey_lengths; /* "1024,2048" */
    const char *passkey_depths;  /* "0,0.25,0.5,0.75,1" */
    int passkey_trials;          /* per (length, depth) */
    const char *filler;          /* passkey filler text (default MODEL/heldout.txt) */
    int seed;                    /* sampling / passkey seed */
    const char *prompt;          /* generate: prompt text */
    const char *prompt_file;     /* generate: prompt text from a file */
    double temp;                 /* sampling temperature (0 = greedy) */
    int top_k;
    double top_p, min_p, repetition_penalty;
    const char *stop;            /* generate: stop string */
    const char *input;           /* batch: JSONL in */
    const char *output;          /* batch: JSONL out */
    int quiet;
    int help;
    const struct cmd_def *cmd; /* the command being run (set by main) */
    int rank;                  /* this process's MPI rank (set by main) */
    const struct comm_world *world; /* the MPI world (set by main) */
} cli_settings;

typedef struct opt_def {
    const char *name;    /* long name without "--" */
    char short_name;     /* 0 if none */
    opt_type type;
    size_t offset;       /* into cli_settings */
    const char *metavar;
    const char *def;     /* default as text (NULL: none) */
    const char *help;
} opt_def;

typedef struct cmd_def {
    const char *name;
    const char *summary;
    const char *usage;     /* after "asymkv NAME " */
    const char *example;
    const char *const *opts; /* NULL-terminated option names this command takes */
    int (*run)(const cli_settings *s);
} cmd_def;

/* Fills defaults, then parses argv (after the command name). Unknown options, missing values
 * and bad numbers are AKV_EINPUT naming the option and pointing to --help. */
akv_status cli_parse(const cmd_def *cmd, int argc, char **argv, cli_settings *s, akv_err *err);

void cli_print_help(FILE *f, const cmd_def *cmd);
void cli_print_settings(FILE *f, const cmd_def *cmd, const cli_settings *s);

/* The command table (launch/commands.c) and the top-level usage. */
extern const cmd_def *const cli_commands[];
void cli_print_usage(FILE *f);

#endif
