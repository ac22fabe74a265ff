/* schedule.c — rank 0's scheduler: which item enters the pipeline each tick. Sequences take
 * free slots in prompt order; prompts are prefilled chunk by chunk (the chunks of one prompt
 * follow each other tick after tick, so all ranks work on a long prompt at once), before any
 * decode item; decode runs one micro-batch per item (slot j in micro-batch j % micro), round
 * robin, each micro-batch at most once in flight, so with micro >= ranks every rank is busy
 * every tick. A finished sequence leaves its micro-batch and frees its slot for the next
 * prompt. Pure logic. */
#include <stdlib.h>

#include "pipeline.h"

enum { SEQ_WAITING = 0, SEQ_PREFILL, SEQ_BUSY, SEQ_READY, SEQ_DONE };

akv_status sched_init(sched_t *s, const sched_opts *o, sched_seq *seq, int P, akv_err *err) {
    memset(s, 0, sizeof *s);
    if (P < 1 || o->n_slots < 1 || o->micro < 1 || o->chunk < 1)
        return akv_fail(err, AKV_EINPUT, "scheduler: need prompts, slots, micro-batches, chunk");
    s->o = *o;
    s->seq = seq;
    s->P = P;
    s->fifo_cap = o->n_slots + 1; /* a sequence is in at most one in-flight sampled item */
    s->fifo_stride = o->n_slots + 2;
    s->slot_seq = malloc((size_t)o->n_slots * sizeof(int));
    s->mb_busy = calloc((size_t)o->micro, sizeof(int));
    s->fifo = malloc((size_t)s->fifo_cap * (size_t)s->fifo_stride * sizeof(int));
    if (!s->slot_seq || !s->mb_busy || !s->fifo) {
        sched_free(s);
        return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    }
    for (int j = 0; j < o->n_slots; j++) s->slot_seq[j] = -1;
    for (int i = 0; i < P; i++) {
        seq[i].slot = -1;
        seq[i].fed = 0;
        seq[i].n_out = 0;
        seq[i].state = SEQ_WAITING;
    }
    return AKV_OK;
}

void sched_free(sched_t *s) {
    if (!s) return;
    free(s->slot_seq);
    free(s->mb_busy);
    free(s->fifo);
    s->slot_seq = s->mb_busy = s->fifo = NULL;
}

int sched_in_flight(const sched_t *s) { return s->fifo_len; }

/* Waiting prompts take free slots, lowest first. */
static void admit(sched_t *s) {
    int j = 0;
    for (int i = 0; i < s->P; i++) {
        if (s->seq[i].state != SEQ_WAITING) continue;
        while (j < s->o.n_slots && s->slot_seq[j] >= 0) j++;
        if (j == s->o.n_slots) return;
        s->slot_seq[j] = i;
        s->seq[i].slot = j;
        s->seq[i].state = SEQ_PREFILL;
    }
}

static int *fifo_push(sched_t *s, int mb) {
    int *f = s->fifo + (size_t)((s->fifo_head + s->fifo_len) % s->fifo_cap) * s->fifo_stride;
    s->fifo_len++;
    f[0] = mb;
    f[1] = 0;
    return f;
}

static void put_header(int32_t *hdr, int n, int flags, int prompt) {
    hdr[H_KIND] = PIPE_WORK;
    hdr[H_N] = n;
    hdr[H_FLAGS] = flags;
    hdr[H_PROMPT] = prompt;
}

/* One token of every ready sequence of the first free micro-batch (round robin). */
static int try_decode(sched_t *s, int32_t *hdr, int32_t *ids) {
    for (int k = 0; k < s->o.micro; k++) {
        int m = (s->rr + k) % s->o.micro, n = 0;
        if (s->mb_busy[m]) continue;
        for (int j = m; j < s->o.n_slots; j += s->o.micro) {
            int i = s->slot_seq[j];
            if (i < 0 || s->seq[i].state != SEQ_READY) continue;
            hdr[H_SEQ + n] = j;
            ids[n++] = s->seq[i].next;
        }
        if (!n) continue;
        int *f = fifo_push(s, m);
        for (int t = 0; t < n; t++) {
            int i = s->slot_seq[hdr[H_SEQ + t]];
            s->seq[i].state = SEQ_BUSY;
            f[2 + f[1]++] = i;
        }
        put_header(hdr, n, PIPE_SAMPLE, -1);
        s->mb_busy[m] = 1;
        s->rr = (m + 1) % s->o.micro;
        return 1;
    }
    return 0;
}

/* The next chunk of the first prompt still being prefilled. */
static int try_prefill(sched_t *s, int32_t *hdr, int32_t *ids) {
    for (int i = 0; i < s->P; i++) {
        sched_seq *q = &s->seq[i];
        if (q->state != SEQ_PREFILL) continue;
        int n = q->T - q->fed < s->o.chunk ? q->T - q->fed : s->o.chunk;
        const int df = s->o.decode_from;
        if (df > 0 && q->fed >= df) n = 1; /* teacher-forced decode steps */
        else if (df > 0 && q->fed + n > df) n = df - q->fed;
        int last = q->fed + n == q->T, gen = s->o.mode == SCHED_GENERATE;
        int flags = (q->fed == 0 ? PIPE_FRESH : 0) | (gen ? (last ? PIPE_SAMPLE : 0) : PIPE_LOGITS);
        memcpy(ids, q->prompt + q->fed, (size_t)n * sizeof *ids);
        for (int t = 0; t < n; t++) hdr[H_SEQ + t] = q->slot;
        put_header(hdr, n, flags, i);
        q->fed += n;
        if (last && gen) {
            int *f = fifo_push(s, -1);
            f[2 + f[1]++] = i;
            q->state = SEQ_BUSY;
        } else if (last) { /* logits: nothing comes back */
            q->state = SEQ_DONE;
            s->slot_seq[q->slot] = -1;
            s->n_done++;
        }
        return 1;
    }
    return 0;
}

int sched_next(sched_t *s, int32_t *hdr, int32_t *ids) {
    admit(s);
    /* Prefill first: a sequence still prefilling would otherwise be starved by the decode
     * items of the others and join its micro-batch late, leaving the micro-batches half empty
     * (measured in tests/test_schedule.c: twice the ticks for the same tokens). */
    if (try_prefill(s, hdr, ids) || try_decode(s, hdr, ids)) return PIPE_WORK;
    hdr[H_KIND] = s->n_done == s->P && !s->fifo_len ? PIPE_STOP : PIPE_NONE;
    hdr[H_N] = 0;
    hdr[H_FLAGS] = 0;
    hdr[H_PROMPT] = -1;
    return hdr[H_KIND];
}

static int is_eos(const sched_t *s, int32_t t) {
    for (int i = 0; i < s->o.n_eos; i++)
        if (s->o.eos[i] == t) return 1;
    return 0;
}

/* A sampled token for sequence i: record it, then finish or queue the next step. */
static void take_token(sched_t *s, int i, int32_t tok) {
    sched_seq *q = &s->seq[i];
    q->out[q->n_out++] = tok;
    int stop = s->o.on_token && s->o.on_token(s->o.user, i, tok);
    if (stop || is_eos(s, tok) || q->n_out >= s->o.n_new) {
        q->state = SEQ_DONE;
        s->slot_seq[q->slot] = -1;
        s->n_done++;
    } else {
        q->next = tok;
        q->state = SEQ_READY;
    }
}

akv_status sched_result(sched_t *s, const int32_t *ids, int n, akv_err *err) {
    if (!s->fifo_len) return akv_fail(err, AKV_ERUNTIME, "pipeline: a result nobody waits for");
    int *f = s->fifo + (size_t)s->fifo_head * s->fifo_stride;
    if (n != f[1])
        return akv_fail(err, AKV_ERUNTIME, "pipeline: %d sampled ids for an item of %d", n, f[1]);
    s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
    s->fifo_len--;
    if (f[0] >= 0) s->mb_busy[f[0]] = 0;
    for (int t = 0; t < n; t++) take_token(s, f[2 + t], ids[t]);
    return AKV_OK;
}
