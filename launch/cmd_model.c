/* cmd_model.c — the commands that run a model on token ids: `logits` and `generate`, as one
 * process or as a pipeline of MPI ranks (the rank plumbing is in ranks.c). */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "engine.h"
#include "io.h"
#include "ranks.h"
#include "sampling.h"
#include "stage.h"
#include "textio.h"

akv_status check_common(const cli_settings *s, akv_err *err) {
    if (!s->model && !s->shape)
        return akv_fail(err, AKV_EINPUT, "--model DIR is required%s",
                        s->cmd && !strcmp(s->cmd->name, "bench") ? " (or --synthetic SHAPE)" : "");
    if (s->model && s->shape)
        return akv_fail(err, AKV_EINPUT, "give --model DIR or --synthetic SHAPE, not both");
    if (strcmp(s->backend, "auto") && strcmp(s->backend, "cpu") && strcmp(s->backend, "cuda"))
        return akv_fail(err, AKV_EINPUT, "--backend must be auto, cpu or cuda, not \"%s\"",
                        s->backend);
    if (!strcmp(s->backend, "cuda") && stage_cuda_devices() == 0)
        return akv_fail(err, AKV_EINPUT, "--backend cuda: %s (use --backend cpu or auto)",
#ifdef ASYMKV_HAVE_CUDA
                        "no GPU is visible to this process"
#else
                        "this build has no CUDA (rebuild where nvcc is installed)"
#endif
        );
    if (s->ctx < 0 || s->batch < 1 || s->prefill_chunk < 1)
        return akv_fail(err, AKV_EINPUT, "--ctx must be >= 0, --batch and --prefill-chunk >= 1");
    return AKV_OK;
}

akv_status open_engine(ranks_ctx *r, const cli_settings *s, const prompts *p, int n_new,
                       engine_t **e, cli_settings *res, akv_err *err) {
    akv_status st = AKV_OK;
    if (s->ctx && p->max_T + n_new > s->ctx)
        st = akv_fail(err, AKV_EINPUT, "prompt of %d tokens + %d new tokens exceeds --ctx %d "
                      "(raise --ctx)", p->max_T, n_new, s->ctx);
    if ((st = ranks_agree(r, st, err))) return st;
    if ((st = ranks_model(r, s, err))) return st;
    *res = *s;
    res->ctx = s->ctx ? s->ctx : p->max_T + n_new;
    if ((st = ranks_layers(r, s, res->ctx, err))) return st;
    engine_opts o = {.model_dir = s->model, .ctx = res->ctx, .batch = s->batch,
                     .prefill_chunk = s->prefill_chunk, .micro_batches = s->micro_batches,
                     .layers = r->layers, .comm = r->comm, .kv = &r->kv,
                     .diag = s->diag || s->search_kv,
                     .backend = r->on_device ? STAGE_CUDA : STAGE_CPU, .device = r->dev.device,
                     .synthetic = s->shape, .synth_seed = (uint64_t)s->seed,
                     .timing = s->cmd && !strcmp(s->cmd->name, "bench"),
                     .ignore_eos = s->cmd && !strcmp(s->cmd->name, "bench")};
    res->backend = r->on_device ? "cuda" : "cpu";
    if ((st = engine_open(e, &o, err))) return st;
    res->micro_batches = engine_micro_batches(*e);
    return engine_check(*e, p->seqs, p->P, n_new, err);
}

/* The writing rank checks that --out can be created and allocates the logits before
 * anything runs (agreed). */
static akv_status prepare_out(ranks_ctx *r, const cli_settings *s, engine_t *e, int T,
                              float **logits, akv_err *err) {
    akv_status st = AKV_OK;
    size_t V = (size_t)engine_config(e)->vocab_size;
    if (engine_rank(e) == engine_output_rank(e)) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", s->out);
        const char *d = dirname(dir);
        if (access(d, W_OK) != 0)
            st = akv_fail(err, AKV_EINPUT, "cannot write %s: folder %s does not exist or is not "
                          "writable", s->out, d);
        else if (!(*logits = malloc((size_t)T * V * sizeof(float))))
            st = akv_fail(err, AKV_ERUNTIME, "out of host memory for %d x %zu logits", T, V);
    }
    return ranks_agree(r, st, err);
}

/* The pipeline, then the writing rank writes the .npy (atomically: temp file + rename). */
static akv_status run_logits(const cli_settings *s, engine_t *e, const prompts *p,
                             float *logits, akv_err *err) {
    const int T = p->len[0], V = engine_config(e)->vocab_size;
    akv_status st = engine_logits(e, p->ids, T, logits, err);
    if (st || engine_rank(e) != engine_output_rank(e)) return st;
    int64_t shape[2] = {T, V};
    st = npy_write_f32(s->out, logits, shape, 2, err);
    if (!st && !s->quiet) fprintf(stderr, "asymkv logits: wrote %s [%d, %d]\n", s->out, T, V);
    return st;
}

int cmd_logits(const cli_settings *s) {
    akv_err err = {0};
    ranks_ctx r = {0};
    cli_settings res;
    prompts p = {0};
    engine_t *e = NULL;
    float *logits = NULL;
    ranks_how how = RANKS_SAME; /* flags: every rank sees the same */
    akv_status st = check_common(s, &err);
    if (!st && !s->out) st = akv_fail(&err, AKV_EINPUT, "--out FILE.npy is required");
    if (!st) {
        how = RANKS_LOCAL;
        st = ranks_open(&r, s, &err);
    }
    if (!st) {
        how = RANKS_AGREED;
        st = ranks_read_prompts(&r, s, 0, &p, &err);
    }
    if (!st) st = open_engine(&r, s, &p, 0, &e, &res, &err);
    if (!st) st = prepare_out(&r, s, e, p.len[0], &logits, &err);
    if (!st) st = ranks_print_settings(&r, &res, e, &err);
    if (!st) {
        how = RANKS_LOCAL; /* from here a failure is one rank's while the others wait */
        st = run_logits(s, e, &p, logits, &err);
    }
    free(logits);
    engine_close(e);
    prompts_free(&p);
    return ranks_finish(&r, s, st, &err, how);
}

static int print_token(void *user, int seq, int32_t tok) {
    int *first = user;
    (void)seq;
    printf(*first ? "%d" : " %d", tok);
    *first = 0;
    fflush(stdout);
    return 0;
}

/* Rank 0: one line of ids per prompt (a single prompt was streamed already), then timings. */
static void print_outputs(const cli_settings *s, const prompts *p, const engine_stats *t) {
    for (int i = 0; p->P > 1 && i < p->P; i++) {
        for (int j = 0; j < p->seqs[i].n_out; j++) printf(j ? " %d" : "%d", p->seqs[i].out[j]);
        printf("\n");
    }
    if (p->P == 1) printf("\n");
    fflush(stdout);
    if (s->quiet) return;
    if (p->P > 1) { /* prefill and decode interleave: one rate over the whole run */
        double all = t->prefill_s + t->decode_s;
        fprintf(stderr, "%d prompts: %d prompt + %d new tokens in %.3f s (%.1f new tok/s)\n",
                p->P, t->prompt_tokens, t->new_tokens, all, t->new_tokens / (all + 1e-12));
        return;
    }
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tok/s); decode: %d tokens in %.3f s "
            "(%.1f tok/s)\n", t->prompt_tokens, t->prefill_s,
            t->prompt_tokens / (t->prefill_s + 1e-12), t->new_tokens, t->decode_s,
            t->new_tokens > p->P ? (t->new_tokens - p->P) / (t->decode_s + 1e-12) : 0.0);
}

/* Rank 0's text output of a --prompt run. */
typedef struct text_out {
    tokenizer_t *tok;
    text_stream ts;
    int started;
} text_out;

static int print_text(void *user, int seq, int32_t tok) {
    text_out *t = user;
    (void)seq;
    return text_stream_push(&t->ts, tok);
}

/* The sampler of this run (every rank builds it from the same flags); NULL = greedy. */
static akv_status make_sampler(const cli_settings *s, sampler_params *sp, int *use, akv_err *err) {
    *sp = sampler_params_default();
    sp->temperature = (float)s->temp;
    sp->top_k = s->top_k;
    sp->top_p = (float)s->top_p;
    sp->min_p = (float)s->min_p;
    sp->repetition_penalty = (float)s->repetition_penalty;
    sp->seed = (uint64_t)(int64_t)s->seed;
    *use = s->temp != 0 || s->repetition_penalty != 1;
    return sampler_params_check(sp, err);
}

static akv_status check_generate(const cli_settings *s, text_out *t, sampler_params *sp, int *use,
                                 akv_err *err) {
    akv_status st = check_common(s, err);
    if (!st && s->n_new < 1) st = akv_fail(err, AKV_EINPUT, "-n must be >= 1");
    if (!st) st = make_sampler(s, sp, use, err);
    int text = s->prompt || s->prompt_file;
    if (!st && s->stop && !text)
        st = akv_fail(err, AKV_EINPUT, "--stop needs a text prompt (--prompt or --prompt-file)");
    if (!st && text && s->rank == 0) st = text_tokenizer(s, &t->tok, err);
    if (!st && t->tok) st = text_stream_init(&t->ts, t->tok, s->stop, stdout, err);
    return st;
}

int cmd_generate(const cli_settings *s) {
    akv_err err = {0};
    ranks_ctx r = {0};
    cli_settings res;
    prompts p = {0};
    engine_t *e = NULL;
    engine_stats stats = {0};
    text_out t = {0};
    sampler_params sp;
    ranks_how how = RANKS_SAME; /* flags: every rank sees the same */
    int first = 1, use_sp = 0, rank = s->world ? s->world->rank : 0;
    akv_status st = check_generate(s, &t, &sp, &use_sp, &err);
    if (!st) {
        how = RANKS_LOCAL;
        st = ranks_open(&r, s, &err);
    }
    if (!st) {
        how = RANKS_AGREED;
        st = ranks_read_prompts(&r, s, s->n_new, &p, &err);
    }
    for (int i = 0; !st && use_sp && i < p.P; i++) p.seqs[i].sp = &sp;
    if (!st) st = open_engine(&r, s, &p, s->n_new, &e, &res, &err);
    if (!st) st = ranks_print_settings(&r, &res, e, &err);
    if (!st) {
        how = RANKS_LOCAL; /* from here a failure is one rank's while the others wait */
        engine_seq_fn fn = p.P != 1 ? NULL : t.tok ? print_text : print_token;
        void *user = t.tok ? (void *)&t : (void *)&first;
        st = engine_generate_batch(e, p.seqs, p.P, s->n_new, fn, user, &stats, &err);
    }
    if (!st && rank == 0 && t.tok) text_stream_finish(&t.ts);
    if (!st && rank == 0) print_outputs(s, &p, &stats);
    text_stream_free(&t.ts);
    tokenizer_free(t.tok);
    engine_close(e);
    prompts_free(&p);
    return ranks_finish(&r, s, st, &err, how);
}
