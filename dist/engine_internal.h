/* engine_internal.h — the inside of engine_t, shared by engine.c (open, checks, public calls)
 * and pipeline.c (the per-rank tick loop). dist/ only. */
#ifndef ASYMKV_ENGINE_INTERNAL_H
#define ASYMKV_ENGINE_INTERNAL_H

#include "engine.h"
#include "pipeline.h"
#include "safetensors.h"
#include "stage.h"

struct engine {
    engine_opts o;
    model_config cfg;
    st_model *st;
    stage_weights w;
    stage_t *stage;
    comm_t *comm;        /* NULL: one process */
    int rank, size;      /* size - 1 is the last rank */
    int micro;           /* resolved micro-batches */
    int max_tokens;      /* most tokens of one item: max(prefill chunk, batch) */
    int *begin, *end;    /* [size] layer spans of every rank */
    float *x[2];         /* [max_tokens][hidden] the item computed / the one arriving, in the
                            stage's memory (device for the CUDA backend) */
    float *xh[2];        /* host copies of x for a host transport (CUDA stage + MPI), else NULL */
    int32_t *hdr[2];     /* [PIPE_HDR_INTS] their headers */
    int32_t *ids;        /* [max_tokens] token ids rank 0 embeds */
    int32_t *res;        /* [PIPE_RES_INTS] sampled ids, last rank -> rank 0 */
    int32_t *srow, *sslot; /* [max_tokens] rows / slots sampled (last rank) */
    const sampler_params **ssp; /* [max_tokens] their samplers (NULL = greedy) */
    uint64_t *srng;      /* [max_tokens] their RNG states */
    int has_embed, has_head; /* this rank's extras */
    engine_timing timing; /* opts.timing: this rank's measurements */
    size_t weight_bytes; /* this rank's weights as the stage holds them */
    int *slot_prompt;    /* [batch] prompt index in each slot (last rank, for sampling) */
    int *slot_step;      /* [batch] tokens sampled so far in each slot (last rank) */
    const engine_seq *gen; /* generate: the sequences (last rank: their sampling params) */
    int gen_P, gen_new;
    float *out_logits;   /* engine_logits' [out_rows][vocab] output (last rank) */
    int out_rows;
    /* Test hooks (ASYMKV_TEST_FAIL_RANK / ASYMKV_TEST_KILL_RANK / ASYMKV_TEST_FAIL_TICK):
     * this rank fails (or raises SIGKILL) at pipeline tick hook_tick; -1 = in engine_open. */
    int hook_fail, hook_kill;
    long hook_tick;
};

/* Runs this rank's part of a pipeline until the STOP item passes. sc: rank 0's scheduler
 * (NULL elsewhere). A failure is local (see engine.h). */
akv_status pipe_run(engine_t *e, sched_t *sc, akv_err *err);

#endif
