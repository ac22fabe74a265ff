/* cmd_model.c — the commands that run a model on token ids: `logits` and `generate`. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "engine.h"
#include "io.h"

/* --ids or --ids-file (exactly one). */
static akv_status read_prompt(const cli_settings *s, int32_t **ids, int *n, akv_err *err) {
    if (!!s->ids == !!s->ids_file)
        return akv_fail(err, AKV_EINPUT, "give the prompt as exactly one of --ids \"1 2 3\" or "
                                         "--ids-file FILE");
    return s->ids ? ids_parse(s->ids, "--ids", ids, n, err) : ids_read_file(s->ids_file, ids, n, err);
}

static akv_status check_common(const cli_settings *s, akv_err *err) {
    if (!s->model) return akv_fail(err, AKV_EINPUT, "--model DIR is required");
    if (strcmp(s->backend, "auto") && strcmp(s->backend, "cpu") && strcmp(s->backend, "cuda"))
        return akv_fail(err, AKV_EINPUT, "--backend must be auto, cpu or cuda, not \"%s\"",
                        s->backend);
    if (!strcmp(s->backend, "cuda"))
        return akv_fail(err, AKV_EINPUT, "--backend cuda: this build has no CUDA model backend "
                                         "yet (use --backend cpu)");
    if (s->ctx < 0 || s->batch < 1 || s->prefill_chunk < 1)
        return akv_fail(err, AKV_EINPUT, "--ctx must be >= 0, --batch and --prefill-chunk >= 1");
    return AKV_OK;
}

/* Opens the model for a prompt of T ids plus n_new tokens, checking the request first;
 * the resolved settings are printed only once everything is known good, so a bad input stays
 * a one-line error. */
static akv_status open_engine(const cli_settings *s, const int32_t *ids, int T, int n_new,
                              engine_t **e, akv_err *err) {
    if (s->ctx && T + n_new > s->ctx)
        return akv_fail(err, AKV_EINPUT, "prompt of %d tokens + %d new tokens exceeds --ctx %d "
                        "(raise --ctx)", T, n_new, s->ctx);
    cli_settings r = *s;
    r.ctx = s->ctx ? s->ctx : T + n_new;
    engine_opts o = {s->model, r.ctx, s->batch, s->prefill_chunk};
    akv_status st = engine_open(e, &o, err);
    int V = st ? 0 : engine_config(*e)->vocab_size;
    for (int i = 0; !st && i < T; i++)
        if (ids[i] >= V)
            st = akv_fail(err, AKV_EINPUT, "token id %d is outside the vocabulary [0, %d)",
                          ids[i], V);
    if (!st && s->rank == 0 && !s->quiet) cli_print_settings(stderr, s->cmd, &r);
    return st;
}

int cmd_logits(const cli_settings *s) {
    akv_err err = {0};
    int32_t *ids = NULL;
    int T = 0;
    engine_t *e = NULL;
    float *logits = NULL;
    akv_status st = check_common(s, &err);
    if (!st && !s->out) st = akv_fail(&err, AKV_EINPUT, "--out FILE.npy is required");
    if (!st) st = read_prompt(s, &ids, &T, &err);
    if (!st) st = open_engine(s, ids, T, 0, &e, &err);
    if (!st) {
        size_t V = (size_t)engine_config(e)->vocab_size;
        logits = malloc((size_t)T * V * sizeof(float));
        if (!logits) st = akv_fail(&err, AKV_ERUNTIME, "out of host memory for %d x %zu logits", T, V);
        if (!st) st = engine_logits(e, ids, T, logits, &err);
        int64_t shape[2] = {T, (int64_t)V};
        if (!st) st = npy_write_f32(s->out, logits, shape, 2, &err);
    }
    if (st) fprintf(stderr, "asymkv logits: error: %s\n", err.msg);
    else if (!s->quiet) fprintf(stderr, "asymkv logits: wrote %s [%d, %d]\n", s->out, T, engine_config(e)->vocab_size);
    free(logits);
    free(ids);
    engine_close(e);
    return (int)st;
}

static int print_token(void *user, int32_t tok) {
    int *first = user;
    printf(*first ? "%d" : " %d", tok);
    *first = 0;
    fflush(stdout);
    return 0;
}

int cmd_generate(const cli_settings *s) {
    akv_err err = {0};
    int32_t *ids = NULL, *out = NULL;
    int T = 0, n_out = 0, first = 1;
    engine_t *e = NULL;
    engine_stats stats = {0};
    akv_status st = check_common(s, &err);
    if (!st && s->n_new < 1) st = akv_fail(&err, AKV_EINPUT, "-n must be >= 1");
    if (!st) st = read_prompt(s, &ids, &T, &err);
    if (!st) st = open_engine(s, ids, T, s->n_new, &e, &err);
    if (!st && !(out = malloc((size_t)s->n_new * sizeof *out)))
        st = akv_fail(&err, AKV_ERUNTIME, "out of host memory");
    if (!st) st = engine_generate(e, ids, T, s->n_new, out, &n_out, print_token, &first, &stats, &err);
    if (!st) printf("\n");
    fflush(stdout);
    if (st) {
        fprintf(stderr, "asymkv generate: error: %s\n", err.msg);
    } else if (!s->quiet) {
        fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tok/s); decode: %d tokens in %.3f s (%.1f tok/s)\n",
                stats.prompt_tokens, stats.prefill_s, stats.prompt_tokens / (stats.prefill_s + 1e-12),
                stats.new_tokens, stats.decode_s,
                stats.new_tokens > 1 ? (stats.new_tokens - 1) / (stats.decode_s + 1e-12) : 0.0);
    }
    free(out);
    free(ids);
    engine_close(e);
    return (int)st;
}
