/* cmd_plan.c — `asymkv plan`: the placement table for a model folder (config.json only, no
 * weights) or a built-in shape, at a given --ranks, --ctx, --batch, --kv and per-rank memory,
 * compared with an even split. A job that cannot fit exits 2 with one line on stderr. */
#include <stdlib.h>
#include <string.h>

#ifdef ASYMKV_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include "cli.h"
#include "comm_check.h"
#include "commands.h"
#include "kvconfig.h"
#include "plan.h"
#include "shapes.h"

#define DEFAULT_MEM "80G"

typedef struct plan_job {
    model_config cfg;
    kv_config kv;
    plan_deploy dep;
    int ranks;
    size_t cap[PLAN_MAX_RANKS];
    char cap_note[160]; /* where the capacities came from */
    char name[256];     /* shape name or model folder */
    char kv_spec[128];  /* --kv as given */
} plan_job;

/* Ranks of the MPI job (1 for a plain process). */
static akv_status world_size(int *size, akv_err *err) {
    akv_status st = AKV_OK;
    int init = 0;
    *size = 1;
    MPI_CHECK(err, MPI_Initialized(&init));
    if (init) MPI_CHECK(err, MPI_Comm_size(MPI_COMM_WORLD, size));
fail:
    return st;
}

static akv_status load_model(const cli_settings *s, plan_job *j, akv_err *err) {
    if (!!s->model == !!s->shape)
        return akv_fail(err, AKV_EINPUT, "give exactly one of --model DIR or --shape NAME "
                        "(shapes: %s)", shape_names());
    snprintf(j->name, sizeof j->name, "%s", s->model ? s->model : s->shape);
    return s->model ? config_load(&j->cfg, s->model, err) : shape_lookup(s->shape, &j->cfg, err);
}

/* --ctx (0 = the model's maximum), --batch, --prefill-chunk, --backend, --kv*. */
static akv_status resolve_deploy(const cli_settings *s, plan_job *j, akv_err *err) {
    const model_config *c = &j->cfg;
    int ctx = s->ctx ? s->ctx : c->max_pos;
    if (s->ctx < 0 || s->batch < 1 || s->prefill_chunk < 1)
        return akv_fail(err, AKV_EINPUT, "--ctx must be >= 0, --batch and --prefill-chunk >= 1");
    if (ctx > c->max_pos)
        return akv_fail(err, AKV_EINPUT, "--ctx %d exceeds the model's max_position_embeddings "
                        "%d (lower --ctx)", ctx, c->max_pos);
    if (c->sliding_window > 0 && ctx > c->sliding_window)
        return akv_fail(err, AKV_EINPUT, "--ctx %d exceeds the model's sliding_window %d, which "
                        "asymkv does not implement (lower --ctx)", ctx, c->sliding_window);
    if (strcmp(s->backend, "auto") && strcmp(s->backend, "cpu") && strcmp(s->backend, "cuda"))
        return akv_fail(err, AKV_EINPUT, "--backend must be auto, cpu or cuda, not \"%s\"",
                        s->backend);
    j->dep.ctx = ctx;
    j->dep.batch = s->batch;
    j->dep.tokens = s->prefill_chunk > s->batch ? s->prefill_chunk : s->batch;
    j->dep.weight_bytes = strcmp(s->backend, "cpu") ? 2 : 4;
    snprintf(j->kv_spec, sizeof j->kv_spec, "%s", s->kv ? s->kv : "fp16");
    akv_status st = kvcfg_parse(&j->kv, s->kv, c->n_layers, s->kv_hi_bits, s->kv_group,
                                s->kv_residual, err);
    return st ? st : kvcfg_check_head_dim(&j->kv, c->head_dim, err);
}

#ifdef ASYMKV_HAVE_CUDA
/* Free bytes of GPU dev, 0 when it cannot be read. */
static size_t gpu_free(int dev) {
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(dev) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
        return 0;
    return free_b;
}

/* Free memory of this node's GPUs 0..ranks-1 (one process), or of each rank's own GPU (its
 * node-local rank modulo the GPU count) gathered over MPI: every rank reaches the gather, so a
 * rank without a GPU cannot hang the others. *ok = 0 when some rank has no reading. */
static akv_status measure_gpus(plan_job *j, int world, int *ok, akv_err *err) {
    akv_status st = AKV_OK;
    int ndev = 0, me = 0, local = 0;
    MPI_Comm node = MPI_COMM_NULL;
    *ok = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess) ndev = 0, cudaGetLastError();
    if (world == 1) {
        for (int r = 0; r < j->ranks; r++)
            if (r >= ndev || !(j->cap[r] = gpu_free(r))) return AKV_OK;
    } else {
        MPI_CHECK(err, MPI_Comm_rank(MPI_COMM_WORLD, &me));
        MPI_CHECK(err, MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, me,
                                           MPI_INFO_NULL, &node));
        MPI_CHECK(err, MPI_Comm_rank(node, &local));
        j->cap[me] = ndev > 0 ? gpu_free(local % ndev) : 0;
        MPI_CHECK(err, MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, j->cap, sizeof(size_t),
                                     MPI_BYTE, MPI_COMM_WORLD));
    }
    *ok = 1;
    for (int r = 0; r < j->ranks; r++) *ok &= j->cap[r] > 0;
    if (*ok) snprintf(j->cap_note, sizeof j->cap_note, "measured free memory of each rank's GPU");
fail:
    if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
    return st;
}
#endif

/* --ranks and the capacities: --mem-per-rank, else measured free GPU memory, else 80G. */
static akv_status resolve_ranks(const cli_settings *s, plan_job *j, akv_err *err) {
    int world = 1, measured = 0;
    akv_status st = world_size(&world, err);
    if (st) return st;
    j->ranks = s->ranks ? s->ranks : world;
    if (j->ranks < 1 || j->ranks > PLAN_MAX_RANKS)
        return akv_fail(err, AKV_EINPUT, "--ranks must be in 1..%d, not %d", PLAN_MAX_RANKS,
                        j->ranks);
    if (s->mem_per_rank) {
        snprintf(j->cap_note, sizeof j->cap_note, "--mem-per-rank %.120s", s->mem_per_rank);
        return plan_parse_sizes(s->mem_per_rank, j->ranks, "--mem-per-rank", j->cap, err);
    }
#ifdef ASYMKV_HAVE_CUDA
    if (world == 1 || world == j->ranks) st = measure_gpus(j, world, &measured, err);
#endif
    if (st || measured) return st;
    snprintf(j->cap_note, sizeof j->cap_note, "default %s per rank: no GPU information here, "
             "give --mem-per-rank", DEFAULT_MEM);
    return plan_parse_sizes(DEFAULT_MEM, j->ranks, "--mem-per-rank", j->cap, err);
}

static void print_header(FILE *f, const plan_job *j) {
    const model_config *c = &j->cfg;
    char spec[1024], tok[32];
    size_t per_token = 0;
    for (int l = 0; l < c->n_layers; l++)
        per_token += kvcfg_token_bytes(&j->kv, l, c->n_kv_heads, c->head_dim);
    kvcfg_format(&j->kv, spec, sizeof spec);
    plan_format_bytes(tok, sizeof tok, per_token);
    fprintf(f, "model:    %s (%s): %d layers, hidden %d, heads %d/%d x %d, intermediate %d, "
            "vocab %d, %s head\n", j->name, c->arch_name, c->n_layers, c->hidden, c->n_heads,
            c->n_kv_heads, c->head_dim, c->intermediate, c->vocab_size,
            c->tie_embeddings ? "tied" : "untied");
    fprintf(f, "job:      %d ranks, ctx %d x batch %d, %d tokens per forward, weights "
            "%s (%d bytes/param)\n", j->ranks, j->dep.ctx, j->dep.batch, j->dep.tokens,
            j->dep.weight_bytes == 2 ? "bf16" : "fp32", j->dep.weight_bytes);
    fprintf(f, "kv cache: %s = %s, %.2f bits/value, %s (%zu bytes) per token over all layers, "
            "group %d, residual %d\n", j->kv_spec, spec, kvcfg_avg_bits(&j->kv, c->head_dim),
            tok, per_token, j->kv.group, j->kv.residual);
    fprintf(f, "capacity: %s\n\n", j->cap_note);
}

/* The table of the chosen placement, then the even split and (for an override) the optimum. */
static void print_plan(FILE *f, const plan_job *j, const plan_input *in, const plan_result *r) {
    int even_counts[PLAN_MAX_RANKS];
    plan_result even, best;
    plan_input opt = *in;
    opt.layers = NULL;
    plan_even_counts(j->cfg.n_layers, j->ranks, even_counts);
    print_header(f, j);
    plan_format_table(f, r);
    fputc('\n', f);
    int have_even = !plan_evaluate(in, even_counts, &even, NULL);
    if (have_even) plan_format_summary(f, "even split", &even);
    plan_format_summary(f, in->layers ? "--layers-per-rank" : "planned", r);
    best.n_ranks = 0;
    if (in->layers) plan_solve(&opt, &best, NULL); /* fills best even when it does not fit */
    if (best.n_ranks) plan_format_summary(f, "planner's optimum", &best);
    if (have_even)
        fprintf(f, "vs even split: largest rank at %.1f%% instead of %.1f%% of capacity (%+.1f "
                "points)\n", 100.0 * r->max_frac, 100.0 * even.max_frac,
                100.0 * (r->max_frac - even.max_frac));
}

int cmd_plan(const cli_settings *s) {
    akv_err err = {0};
    plan_job *j = calloc(1, sizeof *j);
    plan_costs *pc = calloc(1, sizeof *pc);
    plan_result *r = calloc(1, sizeof *r);
    int counts[PLAN_MAX_RANKS];
    akv_status st = j && pc && r ? AKV_OK : akv_fail(&err, AKV_ERUNTIME, "out of host memory");
    if (!st) st = load_model(s, j, &err);
    if (!st) st = resolve_deploy(s, j, &err);
    if (!st) st = resolve_ranks(s, j, &err);
    if (!st && s->layers_per_rank)
        st = plan_parse_counts(s->layers_per_rank, j->ranks, j->cfg.n_layers,
                               "--layers-per-rank", counts, &err);
    if (!st) st = plan_costs_init(pc, &j->cfg, &j->kv, &j->dep, &err);
    plan_input in = {pc, j ? j->ranks : 0, j ? j->cap : NULL, s->layers_per_rank ? counts : NULL};
    if (!st) st = plan_solve(&in, r, &err);
    if (s->rank == 0 && r && r->n_ranks > 0) print_plan(stdout, j, &in, r); /* also not-fit */
    fflush(stdout);
    if (st && s->rank == 0) fprintf(stderr, "asymkv plan: error: %s\n", err.msg);
    free(r);
    free(pc);
    free(j);
    return (int)st;
}
