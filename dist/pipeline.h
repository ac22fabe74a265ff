/* pipeline.h — inside dist/ only: the pipeline's message layout, the rank-0 scheduler that
 * decides what enters the pipeline each tick, and the per-rank tick loop. engine.h is the
 * public face; the layout and the protocol are described at the top of pipeline.c. */
#ifndef ASYMKV_PIPELINE_H
#define ASYMKV_PIPELINE_H

#include <stdint.h>

#include "common.h"

/* Item kinds (header word H_KIND). */
enum { PIPE_NONE = 0, PIPE_WORK = 1, PIPE_STOP = 2 };
/* Item flags (H_FLAGS). */
enum {
    PIPE_FRESH = 1,  /* a new sequence starts in slot seq[0]: every rank forgets the slot first */
    PIPE_SAMPLE = 2, /* last rank samples the last token of each run; ids go back to rank 0 */
    PIPE_LOGITS = 4, /* last rank keeps the logits of every token (engine_logits) */
};
/* Header words: kind, token count n, flags, item id (rank 0's tick), the prompt's index in
 * the job for a prefill item (-1 otherwise; the last rank keys sampling on it), then n slot
 * numbers. */
enum { H_KIND = 0, H_N, H_FLAGS, H_ID, H_PROMPT, H_SEQ };
#define PIPE_HDR_INTS(max_tokens) (H_SEQ + (max_tokens))
/* Result words (last rank -> rank 0): item id, count, then one sampled id per run. */
enum { R_ID = 0, R_N, R_IDS };
#define PIPE_RES_INTS(max_tokens) (R_IDS + (max_tokens))

/* ---- the scheduler (rank 0) ---- */

typedef enum sched_mode { SCHED_GENERATE = 0, SCHED_LOGITS = 1 } sched_mode;

typedef struct sched_opts {
    sched_mode mode;
    int n_slots; /* resident sequences (--batch) */
    int micro;   /* decode micro-batches; slot j belongs to micro-batch j % micro */
    int chunk;   /* prompt tokens per prefill item */
    int n_new;   /* generate: at most this many tokens per sequence */
    const int *eos;
    int n_eos;
    /* Called for every sampled token; non-zero ends that sequence. May be NULL. */
    int (*on_token)(void *user, int seq, int32_t token);
    void *user;
    int decode_from; /* logits mode: positions >= this are fed one token per item (the decode
                        path, so a quantized cache affects them); <= 0: none */
} sched_opts;

typedef struct sched_seq {
    const int32_t *prompt; /* [T] */
    int T;
    int32_t *out;          /* [n_new] generated ids (generate) */
    int n_out;
    int slot;              /* -1 until admitted */
    int fed;               /* prompt tokens issued */
    int32_t next;          /* token to feed at the next decode step */
    int state;             /* SEQ_* in schedule.c */
} sched_seq;

typedef struct sched {
    sched_opts o;
    sched_seq *seq;  /* [P] borrowed */
    int P, n_done, rr;
    int *slot_seq;   /* [n_slots] sequence in the slot, or -1 */
    int *mb_busy;    /* [micro] a decode item of the micro-batch is in flight */
    int *fifo;       /* [n_slots + 1][n_slots + 2] in-flight sampled items: mb, n, seqs */
    int fifo_head, fifo_len, fifo_cap, fifo_stride;
} sched_t;

akv_status sched_init(sched_t *s, const sched_opts *o, sched_seq *seq, int P, akv_err *err);
void sched_free(sched_t *s); /* NULL-safe, also on a half-built scheduler */

/* The next item: the next prefill chunk (prompts in order) first, else the decode step of the
 * next micro-batch with ready sequences (round robin), else NONE (a bubble), or STOP once every
 * sequence is done and nothing is in flight. Fills hdr (PIPE_HDR_INTS) and ids[n] (the
 * tokens rank 0 embeds); returns the kind. */
int sched_next(sched_t *s, int32_t *hdr, int32_t *ids);

/* The sampled ids of the oldest in-flight PIPE_SAMPLE item, one per run, in its order. */
akv_status sched_result(sched_t *s, const int32_t *ids, int n, akv_err *err);

int sched_in_flight(const sched_t *s);

#endif
