/* ranks.c — the rank plumbing of the model commands: bootstrap of the transport, placement,
 * prompts read on rank 0 and broadcast, the settings and placement table, and failure
 * reporting; see ranks.h. */
#include "ranks.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "io.h"
#include "plan.h"
#include "shapes.h"
#include "textio.h"

static int world_rank(const ranks_ctx *r) { return r->world ? r->world->rank : 0; }
static int world_size(const ranks_ctx *r) { return r->world ? r->world->size : 1; }

/* --backend: cuda when asked, or auto with a GPU in sight (the K-vs-V diagnostic and the
 * --kv fp32 reference mode are CPU-only, so auto keeps them there). */
static int wants_cuda(const cli_settings *s) {
    if (!strcmp(s->backend, "cpu") || stage_cuda_devices() == 0) return 0;
    if (!strcmp(s->backend, "cuda")) return 1;
    return !s->diag && !s->search_kv && strcmp(s->kv, "fp32") != 0;
}

akv_status ranks_open(ranks_ctx *r, const cli_settings *s, akv_err *err) {
    memset(r, 0, sizeof *r);
    r->world = s->world;
    r->dev.device = -1;
    const int cuda = wants_cuda(s);
    if (!r->world || r->world->size == 1) { /* no transport needed */
        r->on_device = cuda;
        r->dev.device = cuda ? 0 : -1;
        return AKV_OK;
    }
    /* A CUDA stage keeps activations in device memory: NCCL carries them when every rank has
     * a GPU of its own, else MPI through host copies (ranks sharing a GPU). */
    akv_status st = comm_world_device(r->world, cuda, &r->dev, err);
    r->on_device = cuda && r->dev.device >= 0;
    if (!st) st = comm_choose(r->world, r->on_device, &r->dev, &r->kind, err);
    comm_opts o = {r->kind, NULL}; /* the stage's stream is set once it exists */
    if (!st) st = comm_open(&r->comm, r->world, &o, err);
    return st;
}

akv_status ranks_agree(ranks_ctx *r, akv_status mine, akv_err *err) {
    return r->comm ? comm_agree(r->comm, mine, err) : mine;
}

akv_status ranks_model(ranks_ctx *r, const cli_settings *s, akv_err *err) {
    akv_status st = s->shape ? shape_lookup(s->shape, &r->cfg, err)
                             : config_load(&r->cfg, s->model, err);
    if (!st)
        st = kvcfg_parse(&r->kv, s->kv, r->cfg.n_layers, s->kv_hi_bits, s->kv_group,
                         s->kv_residual, err);
    if (!st) st = kvcfg_check_head_dim(&r->kv, r->cfg.head_dim, err);
    return ranks_agree(r, st, err);
}

/* The planner's spans as layer counts (several ranks, no --layers-per-rank). */
static akv_status plan_layers(ranks_ctx *r, const cli_settings *s, int ctx, int n, akv_err *err) {
    plan_costs pc;
    plan_result res;
    size_t *cap = malloc((size_t)n * sizeof *cap);
    plan_deploy d = {ctx, s->batch, s->prefill_chunk > s->batch ? s->prefill_chunk : s->batch,
                     r->on_device ? 2 : 4}; /* bf16 weights on the GPU, fp32 on the CPU */
    akv_status st = cap ? plan_costs_init(&pc, &r->cfg, &r->kv, &d, err)
                        : akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!st && s->mem_per_rank) st = plan_parse_sizes(s->mem_per_rank, n, "--mem-per-rank", cap, err);
    else if (!st) /* unknown capacities: equal ones, so the plan minimizes the largest rank */
        for (int i = 0; i < n; i++) cap[i] = (size_t)1 << 60;
    plan_input in = {&pc, n, cap, NULL};
    if (!st) st = plan_solve(&in, &res, err);
    for (int i = 0; !st && i < n; i++) r->layers[i] = res.end[i] - res.begin[i];
    free(cap);
    return st;
}

akv_status ranks_layers(ranks_ctx *r, const cli_settings *s, int ctx, akv_err *err) {
    akv_status st = AKV_OK;
    int n = world_size(r);
    if (s->layers_per_rank || n > 1) {
        if (!(r->layers = malloc((size_t)n * sizeof(int))))
            st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        else if (s->layers_per_rank)
            st = plan_parse_counts(s->layers_per_rank, n, r->cfg.n_layers, "--layers-per-rank",
                                   r->layers, err);
        else
            st = plan_layers(r, s, ctx, n, err);
    }
    return ranks_agree(r, st, err);
}

/* Appends one prompt line to p (total: ids so far). */
static akv_status add_line(prompts *p, const char *line, const char *path, int *total,
                           akv_err *err) {
    char what[600];
    int32_t *ids = NULL;
    int T = 0;
    snprintf(what, sizeof what, "%.500s, prompt %d", path, p->P + 1);
    akv_status st = ids_parse(line, what, &ids, &T, err);
    if (st) return st;
    int32_t *all = realloc(p->ids, (size_t)(*total + T) * sizeof *all);
    if (all) p->ids = all;
    int *lens = all ? realloc(p->len, (size_t)(p->P + 1) * sizeof *lens) : NULL;
    if (lens) p->len = lens;
    if (all && lens) {
        memcpy(p->ids + *total, ids, (size_t)T * sizeof *ids);
        p->len[p->P++] = T;
        *total += T;
    }
    free(ids);
    return all && lens ? AKV_OK : akv_fail(err, AKV_ERUNTIME, "out of host memory");
}

/* --prompts-file: one prompt per non-blank line. */
static akv_status read_lines(const char *path, prompts *p, akv_err *err) {
    char *text = NULL;
    size_t n = 0;
    int total = 0;
    akv_status st = io_read_text(path, &text, &n, err);
    for (char *line = text, *nl = NULL; !st && line; line = nl ? nl + 1 : NULL) {
        if ((nl = strchr(line, '\n'))) *nl = '\0';
        if (strspn(line, " \t\r,") < strlen(line)) st = add_line(p, line, path, &total, err);
    }
    if (!st && p->P == 0) st = akv_fail(err, AKV_EINPUT, "%s holds no prompt", path);
    free(text);
    return st;
}

/* Rank 0: exactly one of --ids, --ids-file, --prompts-file (generate: or --prompt /
 * --prompt-file text, tokenized with the model's tokenizer). */
static akv_status read_local(const cli_settings *s, prompts *p, akv_err *err) {
    int given = !!s->ids + !!s->ids_file + !!s->prompts_file + !!s->prompt + !!s->prompt_file;
    int gen = s->cmd && !strcmp(s->cmd->name, "generate");
    if (given != 1)
        return akv_fail(err, AKV_EINPUT, "give the prompt as exactly one of --ids \"1 2 3\" or "
                        "--ids-file FILE%s", gen ? ", --prompt TEXT, --prompt-file FILE (or "
                        "several id prompts with --prompts-file FILE)" : "");
    if (s->prompts_file) return read_lines(s->prompts_file, p, err);
    int T = 0;
    akv_status st;
    if (s->prompt || s->prompt_file) st = text_prompt_ids(s, &p->ids, &T, err);
    else if (s->ids) st = ids_parse(s->ids, "--ids", &p->ids, &T, err);
    else st = ids_read_file(s->ids_file, &p->ids, &T, err);
    if (!st && !(p->len = malloc(sizeof *p->len))) st = akv_fail(err, AKV_ERUNTIME, "no memory");
    if (!st) p->len[p->P++] = T;
    return st;
}

/* Sizes, then lengths and ids, from rank 0 to everybody. */
static akv_status share_prompts(ranks_ctx *r, prompts *p, akv_err *err) {
    int total = 0;
    for (int i = 0; i < p->P; i++) total += p->len[i];
    int32_t head[2] = {p->P, total};
    akv_status st = comm_bcast_i32(r->comm, head, 2, 0, err);
    if (st) return st;
    if (world_rank(r) != 0) {
        p->P = head[0];
        p->len = malloc((size_t)head[0] * sizeof *p->len);
        p->ids = malloc((size_t)head[1] * sizeof *p->ids);
        if (!p->len || !p->ids) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    }
    st = comm_bcast_i32(r->comm, p->len, head[0], 0, err);
    if (!st) st = comm_bcast_i32(r->comm, p->ids, head[1], 0, err);
    return st;
}

/* Per-sequence views and output room. */
static akv_status make_seqs(prompts *p, int n_new, akv_err *err) {
    p->seqs = calloc((size_t)p->P, sizeof *p->seqs);
    p->out = malloc((size_t)p->P * (size_t)(n_new > 0 ? n_new : 1) * sizeof *p->out);
    if (!p->seqs || !p->out) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    p->max_T = 0;
    for (int i = 0, off = 0; i < p->P; off += p->len[i++]) {
        p->seqs[i].prompt = p->ids + off;
        p->seqs[i].T = p->len[i];
        p->seqs[i].out = p->out + (size_t)i * (size_t)(n_new > 0 ? n_new : 1);
        if (p->len[i] > p->max_T) p->max_T = p->len[i];
    }
    return AKV_OK;
}

akv_status ranks_read_prompts(ranks_ctx *r, const cli_settings *s, int n_new, prompts *p,
                              akv_err *err) {
    memset(p, 0, sizeof *p);
    akv_status st = world_rank(r) == 0 ? read_local(s, p, err) : AKV_OK;
    if ((st = ranks_agree(r, st, err))) return st; /* rank 0's error, agreed */
    /* A failure while broadcasting leaves peers inside it: end the job. */
    if (r->comm && (st = share_prompts(r, p, err))) return ranks_finish(r, s, st, err, RANKS_LOCAL);
    st = make_seqs(p, n_new, err);
    return ranks_agree(r, st, err);
}

void prompts_free(prompts *p) {
    free(p->ids);
    free(p->len);
    free(p->seqs);
    free(p->out);
    memset(p, 0, sizeof *p);
}

/* The job line and one row per rank (rank 0). */
static void print_placement(const ranks_ctx *r, const engine_rank_info *rows, const int *dev,
                            int n) {
    fprintf(stderr, "pipeline: %d rank%s (%s), transport %s\n", n, n > 1 ? "s" : "",
            r->world ? r->world->launcher : "singleton",
            r->comm ? comm_kind_name(r->kind) : "none");
    fprintf(stderr, "  %4s  %-16s %-8s %-10s %12s %12s  %s\n", "rank", "host", "layers", "extras",
            "weights", "KV cache", "device");
    for (int i = 0; i < n; i++) {
        const engine_rank_info *w = &rows[i];
        char layers[32], wb[32], kb[32], device[16];
        if (w->layer_end - w->layer_begin > 1)
            snprintf(layers, sizeof layers, "%d-%d", w->layer_begin, w->layer_end - 1);
        else if (w->layer_end > w->layer_begin)
            snprintf(layers, sizeof layers, "%d", w->layer_begin);
        else
            snprintf(layers, sizeof layers, "-");
        plan_format_bytes(wb, sizeof wb, (size_t)w->weight_bytes);
        plan_format_bytes(kb, sizeof kb, (size_t)w->kv_bytes);
        if (dev[i] >= 0) snprintf(device, sizeof device, "cuda:%d", dev[i]);
        else snprintf(device, sizeof device, "cpu");
        fprintf(stderr, "  %4d  %-16.16s %-8s %-10s %12s %12s  %s\n", i, w->host, layers,
                w->embed && w->head ? "embed+head" : w->embed ? "embed" : w->head ? "head" : "",
                wb, kb, device);
    }
}

/* The KV cache per layer (runs of equal widths): what each rank's cache allocated for them
 * (engine_open checks its allocation equals this formula), and bytes per token. */
static void print_kv_layers(const ranks_ctx *r, const cli_settings *s) {
    const kv_config *kv = &r->kv;
    const model_config *c = &r->cfg;
    size_t total = 0, per_token = 0;
    fprintf(stderr, "kv cache (ctx %d x batch %d, group %d, residual %d):\n", s->ctx, s->batch,
            kv->group, kv->residual);
    for (int l = 0; l < kv->n_layers;) {
        int j = l;
        while (j < kv->n_layers && kv->k_bits[j] == kv->k_bits[l] && kv->v_bits[j] == kv->v_bits[l]) j++;
        size_t b = kvcfg_layer_bytes(kv, l, c->n_kv_heads, c->head_dim, s->ctx, s->batch);
        char buf[32];
        plan_format_bytes(buf, sizeof buf, b);
        fprintf(stderr, "  layers %d-%d: K %d-bit, V %d-bit: %s (%zu bytes) each, %zu bytes/token\n",
                l, j - 1, kv->k_bits[l], kv->v_bits[l], buf, b,
                kvcfg_token_bytes(kv, l, c->n_kv_heads, c->head_dim));
        for (int i = l; i < j; i++) {
            total += kvcfg_layer_bytes(kv, i, c->n_kv_heads, c->head_dim, s->ctx, s->batch);
            per_token += kvcfg_token_bytes(kv, i, c->n_kv_heads, c->head_dim);
        }
        l = j;
    }
    char buf[32];
    plan_format_bytes(buf, sizeof buf, total);
    fprintf(stderr, "  total %s (%zu bytes), %zu bytes/token over all layers, %.3f bits/value\n",
            buf, total, per_token, kvcfg_avg_bits(kv, c->head_dim));
}

akv_status ranks_print_settings(ranks_ctx *r, const cli_settings *resolved, engine_t *e,
                                akv_err *err) {
    if (resolved->quiet) return AKV_OK; /* the same on every rank: nobody gathers */
    const int n = world_size(r), root = world_rank(r) == 0;
    engine_rank_info *rows = root ? calloc((size_t)n, sizeof *rows) : NULL;
    int *dev = root ? calloc((size_t)n, sizeof *dev) : NULL;
    akv_status st = root && (!rows || !dev) ? akv_fail(err, AKV_ERUNTIME, "no memory") : AKV_OK;
    if (!st) st = engine_placement(e, rows, err);
    int mine = r->on_device ? r->dev.device : -1;
    if (!st && r->comm) st = comm_gather(r->comm, &mine, sizeof mine, dev, 0, err);
    else if (!st) dev[0] = mine;
    if (!st && root) {
        cli_print_settings(stderr, resolved->cmd, resolved);
        print_placement(r, rows, dev, n);
        print_kv_layers(r, resolved);
    }
    free(rows);
    free(dev);
    /* A failed gather leaves peers inside it: not something ranks can agree on. */
    return st ? (akv_status)ranks_finish(r, resolved, st, err, RANKS_LOCAL) : AKV_OK;
}

int ranks_finish(ranks_ctx *r, const cli_settings *s, akv_status st, const akv_err *err,
                 ranks_how how) {
    const char *name = s->cmd ? s->cmd->name : "?";
    const int rank = s->world ? s->world->rank : 0, size = s->world ? s->world->size : 1;
    if (st && err->msg[0] && (how != RANKS_SAME || rank == 0)) {
        if (size > 1) fprintf(stderr, "asymkv %s: rank %d: error: %s\n", name, rank, err->msg);
        else fprintf(stderr, "asymkv %s: error: %s\n", name, err->msg);
    }
    if (st && how == RANKS_LOCAL && size > 1) {
        if (r->comm) comm_abort(r->comm, (int)st); /* never returns */
        comm_world_abort((int)st);
    }
    comm_close(r->comm);
    free(r->layers);
    memset(r, 0, sizeof *r);
    return (int)st;
}
