/* pipeline.c — one rank's tick loop of the pipeline driver (design §2).
 *
 * Schedule: lock-step ticks. At tick t rank s computes the item rank s-1 computed at tick t-1
 * (rank 0 takes a new one from the scheduler), so the item rank 0 issues at tick t is on rank
 * s at tick t+s and its sampled ids reach rank 0 at the end of tick t+P-1, in time for tick
 * t+P: with M >= P micro-batches nobody idles in decode. Empty ticks carry a NONE item;
 * a STOP item (issued when nothing is in flight) ends each rank as it passes.
 *
 * Messages of one tick, in two grouped exchanges (comm_group_begin/end):
 *   1. control, int32 over MPI: header to s+1 [kind, n, flags, id, prompt, slot of each token];
 *      header from s-1; last rank -> rank 0 the result [id, n, one sampled id per run] of a
 *      PIPE_SAMPLE item (rank 0 knows when: the item it issued P-1 ticks ago);
 *   2. data: the n x hidden activations to s+1 / from s-1 (sizes known from the headers,
 *      exact as NCCL needs them). */
#include <signal.h>
#include <stdlib.h>

#include "engine_internal.h"
#include "kernels.h"

/* Test hooks (documented in engine_internal.h and README): fail or die at a given tick. */
static akv_status run_hooks(const engine_t *e, long t, akv_err *err) {
    if (t != e->hook_tick) return AKV_OK;
    if (e->hook_kill == e->rank) raise(SIGKILL);
    if (e->hook_fail == e->rank)
        return akv_fail(err, AKV_ERUNTIME, "simulated failure at pipeline tick %ld (test hook "
                        "ASYMKV_TEST_FAIL_RANK=%d)", t, e->rank);
    return AKV_OK;
}

/* Last rank: the sampler of a row. Its RNG state is sampler_rng(seed, prompt, step): the
 * prompt's index in the job and the token's step, which the last rank tracks per slot
 * (PIPE_FRESH items carry the prompt index), so a seed gives the same tokens for any number of
 * ranks or micro-batches. The repetition penalty's history (prompt + sampled ids) is the
 * stage's, per slot, set from the prompt when the sequence enters its slot. */
static const sampler_params *row_sampler(const engine_t *e, int prompt, int step,
                                         uint64_t *rng) {
    const engine_seq *q = e->gen && prompt >= 0 && prompt < e->gen_P ? &e->gen[prompt] : NULL;
    *rng = 0;
    if (!q || !q->sp || step >= e->gen_new) return NULL;
    *rng = sampler_rng(q->sp->seed, (uint64_t)prompt, (uint64_t)step);
    return q->sp;
}

/* Last rank: the head of the last token of each run of one sequence, then one id per run,
 * sampled by the stage (on the device for CUDA; only the ids come back). */
static akv_status sample_runs(engine_t *e, const int32_t *h, const float *x, akv_err *err) {
    const int n = h[H_N];
    const int32_t *seq = h + H_SEQ;
    int runs = 0;
    for (int i = 0; i < n; i++)
        if (i == n - 1 || seq[i + 1] != seq[i]) {
            const int slot = seq[i];
            e->srow[runs] = i;
            e->sslot[runs] = slot;
            e->ssp[runs] = row_sampler(e, e->slot_prompt[slot], e->slot_step[slot]++,
                                       &e->srng[runs]);
            runs++;
        }
    e->res[R_ID] = h[H_ID];
    e->res[R_N] = runs;
    return stage_sample(e->stage, runs, e->srow, e->sslot, e->ssp, e->srng, x, e->res + R_IDS,
                        err);
}

/* Last rank, engine_logits: the head of every token straight into the output rows. */
static akv_status keep_logits(engine_t *e, const int32_t *h, int pos0, const float *x,
                              akv_err *err) {
    const int n = h[H_N];
    if (!e->out_logits || pos0 < 0 || pos0 + n > e->out_rows || h[H_SEQ] != h[H_SEQ + n - 1])
        return akv_fail(err, AKV_ERUNTIME, "pipeline: logits item outside the output");
    return stage_head(e->stage, n, x, e->out_logits + (size_t)pos0 * e->cfg.vocab_size, err);
}

/* One item through this rank's stage: embed (first), layers, head (last). */
static akv_status compute(engine_t *e, const int32_t *h, float *x, akv_err *err) {
    const int n = h[H_N];
    const int32_t *seq = h + H_SEQ;
    akv_status st = AKV_OK;
    if (h[H_FLAGS] & PIPE_FRESH) {
        stage_seq_reset(e->stage, seq[0]);
        if (e->slot_prompt) { /* last rank: a new sequence's sampling state */
            const int p = h[H_PROMPT];
            e->slot_prompt[seq[0]] = p;
            e->slot_step[seq[0]] = 0;
            const engine_seq *q = e->gen && p >= 0 && p < e->gen_P ? &e->gen[p] : NULL;
            if (q && q->sp && q->prompt && (st = stage_hist_set(e->stage, seq[0], q->prompt, q->T,
                                                                err)))
                return st;
        }
    }
    if (e->rank == 0 && (st = stage_embed(e->stage, e->ids, n, x, err))) return st;
    int pos0 = stage_seq_len(e->stage, seq[0]);
    if ((st = stage_forward(e->stage, n, seq, x, err))) return st;
    if (e->rank != e->size - 1) return AKV_OK;
    if ((h[H_FLAGS] & PIPE_LOGITS) && (st = keep_logits(e, h, pos0, x, err))) return st;
    if (h[H_FLAGS] & PIPE_SAMPLE) st = sample_runs(e, h, x, err);
    return st;
}

/* A header from the previous rank must describe an item this rank can hold. */
static akv_status check_header(const engine_t *e, const int32_t *h, akv_err *err) {
    if (h[H_KIND] < PIPE_NONE || h[H_KIND] > PIPE_STOP || h[H_N] < 0 || h[H_N] > e->max_tokens ||
        (h[H_KIND] == PIPE_WORK && h[H_N] == 0))
        return akv_fail(err, AKV_ERUNTIME, "pipeline: malformed header from rank %d (kind %d, "
                        "n %d)", e->rank - 1, h[H_KIND], h[H_N]);
    for (int i = 0; h[H_KIND] == PIPE_WORK && i < h[H_N]; i++)
        if (h[H_SEQ + i] < 0 || h[H_SEQ + i] >= e->o.batch)
            return akv_fail(err, AKV_ERUNTIME, "pipeline: slot %d from rank %d outside --batch",
                            h[H_SEQ + i], e->rank - 1);
    return AKV_OK;
}

/* Exchange 1: headers down the chain, the result of a sampled item back to rank 0. */
static akv_status exchange_control(engine_t *e, const int32_t *hw, int32_t *hi, int expect,
                                   akv_err *err) {
    const int s = e->rank, L = e->size - 1;
    akv_status st = comm_group_begin(e->comm, err);
    if (!st && s < L) st = comm_send_ids(e->comm, s + 1, hw, H_SEQ + hw[H_N], err);
    if (!st && s > 0 && hw[H_KIND] != PIPE_STOP)
        st = comm_recv_ids(e->comm, s - 1, hi, PIPE_HDR_INTS(e->max_tokens), err);
    if (!st && s == L && hw[H_KIND] == PIPE_WORK && (hw[H_FLAGS] & PIPE_SAMPLE))
        st = comm_send_ids(e->comm, 0, e->res, R_IDS + e->res[R_N], err);
    if (!st && expect) st = comm_recv_ids(e->comm, L, e->res, PIPE_RES_INTS(e->max_tokens), err);
    akv_status se = comm_group_end(e->comm, err);
    return st ? st : se;
}

/* Exchange 2: the activations the headers announced, in the transport's memory: the stage's
 * buffers (host for the CPU backend, device for NCCL), or host copies xh when a CUDA stage
 * talks over MPI (ranks sharing a GPU). */
static akv_status exchange_data(engine_t *e, int cur, const int32_t *hw, const int32_t *hi,
                                akv_err *err) {
    const int s = e->rank, L = e->size - 1;
    const size_t H = (size_t)e->cfg.hidden;
    int recv = s > 0 && hw[H_KIND] != PIPE_STOP;
    int send = s < L && hw[H_KIND] == PIPE_WORK;
    const size_t n_out = send ? (size_t)hw[H_N] * H : 0;
    float *xw = e->xh[cur] ? e->xh[cur] : e->x[cur], *xi = e->xh[cur ^ 1] ? e->xh[cur ^ 1] : e->x[cur ^ 1];
    akv_status st = recv ? check_header(e, hi, err) : AKV_OK;
    if (!st && send && e->xh[cur]) st = stage_act_to_host(e->stage, xw, e->x[cur], n_out, err);
    if (st || (st = comm_group_begin(e->comm, err))) return st;
    if (send) st = comm_send_act(e->comm, s + 1, xw, n_out, err);
    recv = recv && hi[H_KIND] == PIPE_WORK;
    if (!st && recv) st = comm_recv_act(e->comm, s - 1, xi, (size_t)hi[H_N] * H, err);
    akv_status se = comm_group_end(e->comm, err); /* closes the group after a failed post too */
    if (!st && !se && recv && e->xh[cur ^ 1])
        st = stage_act_from_host(e->stage, e->x[cur ^ 1], xi, (size_t)hi[H_N] * H, err);
    return st ? st : se;
}

/* Rank 0 applies a result: it must be the item issued P-1 ticks ago. */
static akv_status take_result(engine_t *e, sched_t *sc, long issued, akv_err *err) {
    if (e->res[R_ID] != (int32_t)issued || e->res[R_N] < 0 || e->res[R_N] > e->max_tokens)
        return akv_fail(err, AKV_ERUNTIME, "pipeline: result for item %d, expected %ld",
                        e->res[R_ID], issued);
    return sched_result(sc, e->res + R_IDS, e->res[R_N], err);
}

/* A prefill item: some run of several tokens, or a sequence's first token. */
static int is_prefill(const int32_t *h) {
    if (h[H_FLAGS] & PIPE_FRESH) return 1;
    for (int i = 1; i < h[H_N]; i++)
        if (h[H_SEQ + i] == h[H_SEQ + i - 1]) return 1;
    return 0;
}

/* One tick of this rank: the item in slot cur, then the exchanges. */
static akv_status tick(engine_t *e, sched_t *sc, long t, int cur, uint8_t *expect,
                       akv_err *err) {
    const int s = e->rank, L = e->size - 1;
    int32_t *hw = e->hdr[cur];
    akv_status st = run_hooks(e, t, err);
    if (!st && s == 0) {
        sched_next(sc, hw, e->ids);
        hw[H_ID] = (int32_t)t;
        expect[t % e->size] = hw[H_KIND] == PIPE_WORK && (hw[H_FLAGS] & PIPE_SAMPLE);
    }
    const double t0 = e->o.timing ? akv_now_s() : 0;
    const int work = hw[H_KIND] == PIPE_WORK;
    if (!st && work) st = compute(e, hw, e->x[cur], err);
    if (!st && work && e->o.timing) st = stage_sync(e->stage, err);
    if (st) return st;
    const double t1 = e->o.timing ? akv_now_s() : 0;
    if (e->o.timing) {
        e->timing.ticks++;
        e->timing.work_ticks += work;
        if (work && is_prefill(hw)) e->timing.busy_prefill_s += t1 - t0;
        else if (work) e->timing.busy_decode_s += t1 - t0;
    }
    if (L == 0) /* one rank: the result is here already */
        return expect[0] ? take_result(e, sc, t, err) : AKV_OK;
    int want = s == 0 && t >= L && expect[(t - L) % e->size];
    st = exchange_control(e, hw, e->hdr[cur ^ 1], want, err);
    if (!st) st = exchange_data(e, cur, hw, e->hdr[cur ^ 1], err);
    if (!st && want) st = take_result(e, sc, t - L, err);
    if (e->o.timing) e->timing.comm_s += akv_now_s() - t1;
    return st;
}

akv_status pipe_run(engine_t *e, sched_t *sc, akv_err *err) {
    uint8_t *expect = calloc((size_t)e->size, 1); /* rank 0: item of tick t wants a result */
    if (!expect) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    akv_status st = AKV_OK;
    const double t0 = akv_now_s();
    e->hdr[0][H_KIND] = e->hdr[1][H_KIND] = PIPE_NONE;
    e->hdr[0][H_N] = e->hdr[1][H_N] = 0;
    for (long t = 0;; t++) {
        int cur = (int)(t & 1); /* the item received in tick t-1 sits in slot t & 1 */
        if ((st = tick(e, sc, t, cur, expect, err))) break;
        if (e->hdr[cur][H_KIND] == PIPE_STOP) break;
    }
    free(expect);
    e->timing.wall_s += akv_now_s() - t0;
    return st;
}
