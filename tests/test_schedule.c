/* test_schedule.c — rank 0's pipeline scheduler (dist/schedule.c) against a simulated pipeline
 * of D ranks: chunked prefill items, decode micro-batches, early stops, slot reuse, STOP, and
 * that with micro-batches >= ranks decode has no bubbles. Pure logic, no MPI. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "pipeline.h"

#define MAXT 64

/* A fake model: the k-th token of sequence i is 1000 + 50 i + k. */
static int32_t fake_token(int seq, int k) { return 1000 + 50 * seq + k; }

typedef struct sim {
    sched_t s;
    int D;                         /* pipeline depth (ranks) */
    int32_t hdr[64][PIPE_HDR_INTS(MAXT)];
    int ticks, bubbles, work;
    int fresh[16];                 /* FRESH items per sequence */
} sim;

/* One item's result: the sampled id of each run's sequence. */
static void answer(sim *m, const int32_t *h) {
    int32_t ids[MAXT];
    int n = 0;
    for (int i = 0; i < h[H_N]; i++)
        if (i == h[H_N] - 1 || h[H_SEQ + i + 1] != h[H_SEQ + i]) {
            int q = m->s.slot_seq[h[H_SEQ + i]];
            cr_assert(q >= 0, "result for an empty slot %d", h[H_SEQ + i]);
            ids[n++] = fake_token(q, m->s.seq[q].n_out);
        }
    akv_err err = {0};
    cr_assert_eq(sched_result(&m->s, ids, n, &err), AKV_OK, "%s", err.msg);
}

/* Checks an item: one micro-batch per decode item, prompt tokens in order. */
static void check_item(sim *m, const int32_t *h, const int32_t *ids, int *fed) {
    int n = h[H_N], micro = m->s.o.micro;
    if (h[H_FLAGS] & PIPE_FRESH) m->fresh[m->s.slot_seq[h[H_SEQ]]]++;
    int prefill = h[H_SEQ] == h[H_SEQ + n - 1] && n > 1;
    for (int i = 1; i < n && !prefill; i++)
        cr_assert_eq(h[H_SEQ + i] % micro, h[H_SEQ] % micro, "decode item spans micro-batches");
    int q = m->s.slot_seq[h[H_SEQ]];
    if (q >= 0 && fed[q] < m->s.seq[q].T)
        for (int i = 0; i < n; i++) cr_assert_eq(ids[i], m->s.seq[q].prompt[fed[q]++]);
}

/* Runs to STOP: the item issued at tick t is answered at the end of tick t + D - 1. */
static void run(sim *m) {
    int32_t ids[MAXT];
    int fed[16] = {0};
    for (int t = 0; t < 100000; t++) {
        int32_t *h = m->hdr[t % 64];
        int kind = sched_next(&m->s, h, ids);
        m->ticks++;
        if (kind == PIPE_STOP) return;
        if (kind == PIPE_NONE) m->bubbles++;
        if (kind == PIPE_WORK) {
            m->work++;
            check_item(m, h, ids, fed);
        }
        int done = t - m->D + 1;
        if (done >= 0 && m->hdr[done % 64][H_KIND] == PIPE_WORK &&
            (m->hdr[done % 64][H_FLAGS] & PIPE_SAMPLE))
            answer(m, m->hdr[done % 64]);
    }
    cr_assert_fail("no STOP after 100000 ticks");
}

static void setup(sim *m, sched_seq *q, int P, const int32_t *prompt, const int *T,
                  int32_t (*out)[MAXT], sched_opts o) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < P; i++) {
        memset(&q[i], 0, sizeof q[i]);
        q[i].prompt = prompt;
        q[i].T = T[i];
        q[i].out = out[i];
    }
    akv_err err = {0};
    cr_assert_eq(sched_init(&m->s, &o, q, P, &err), AKV_OK, "%s", err.msg);
}

Test(schedule, logits_chunks) {
    int32_t prompt[20], ids[MAXT], h[PIPE_HDR_INTS(MAXT)];
    for (int i = 0; i < 20; i++) prompt[i] = i + 5;
    sched_seq q = {prompt, 20, NULL, 0, 0, 0, 0, 0};
    sched_opts o = {SCHED_LOGITS, 1, 2, 7, 0, NULL, 0, NULL, NULL, 0};
    sched_t s;
    cr_assert_eq(sched_init(&s, &o, &q, 1, NULL), AKV_OK);
    const int want_n[] = {7, 7, 6}, want_f[] = {PIPE_FRESH | PIPE_LOGITS, PIPE_LOGITS, PIPE_LOGITS};
    for (int c = 0; c < 3; c++) {
        cr_assert_eq(sched_next(&s, h, ids), PIPE_WORK);
        cr_assert_eq(h[H_N], want_n[c]);
        cr_assert_eq(h[H_FLAGS], want_f[c]);
        cr_assert_eq(ids[0], prompt[7 * c]);
        cr_assert_eq(h[H_SEQ], 0);
    }
    cr_assert_eq(sched_next(&s, h, ids), PIPE_STOP, "STOP right after the last chunk");
    sched_free(&s);
}

Test(schedule, generate_all_tokens_in_order) {
    int32_t prompt[40], out[7][MAXT];
    for (int i = 0; i < 40; i++) prompt[i] = i;
    const int T[7] = {5, 23, 1, 40, 12, 9, 31};
    sched_seq q[7];
    sim m;
    for (int D = 1; D <= 4; D++) {
        sched_opts o = {SCHED_GENERATE, 3, D, 7, 10, NULL, 0, NULL, NULL, 0};
        setup(&m, q, 7, prompt, T, out, o);
        m.D = D;
        run(&m);
        for (int i = 0; i < 7; i++) {
            cr_assert_eq(q[i].n_out, 10, "D %d seq %d: %d tokens", D, i, q[i].n_out);
            for (int k = 0; k < 10; k++) cr_assert_eq(out[i][k], fake_token(i, k));
            cr_assert_eq(m.fresh[i], 1, "seq %d started %d times", i, m.fresh[i]);
        }
        cr_assert_eq(sched_in_flight(&m.s), 0);
        sched_free(&m.s);
    }
}

Test(schedule, eos_frees_slot_for_waiting_prompt) {
    int32_t prompt[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[3][MAXT];
    const int T[3] = {4, 8, 3};
    const int eos[1] = {1000 + 50 * 0 + 1}; /* sequence 0's second token */
    sched_seq q[3];
    sim m;
    sched_opts o = {SCHED_GENERATE, 2, 2, 3, 6, eos, 1, NULL, NULL, 0};
    setup(&m, q, 3, prompt, T, out, o);
    m.D = 3;
    run(&m);
    cr_assert_eq(q[0].n_out, 2, "EOS is included and ends the sequence");
    cr_assert_eq(q[1].n_out, 6);
    cr_assert_eq(q[2].n_out, 6, "the waiting prompt got the freed slot");
    cr_assert_eq(q[2].slot, 0);
    sched_free(&m.s);
}

static int stop_third(void *user, int seq, int32_t tok) {
    (void)user;
    (void)tok;
    return seq == 1 && tok == fake_token(1, 2);
}

Test(schedule, callback_stops_a_sequence) {
    int32_t prompt[4] = {9, 8, 7, 6}, out[2][MAXT];
    const int T[2] = {4, 2};
    sched_seq q[2];
    sim m;
    sched_opts o = {SCHED_GENERATE, 2, 1, 4, 8, NULL, 0, stop_third, NULL, 0};
    setup(&m, q, 2, prompt, T, out, o);
    m.D = 2;
    run(&m);
    cr_assert_eq(q[0].n_out, 8);
    cr_assert_eq(q[1].n_out, 3);
    sched_free(&m.s);
}

Test(schedule, micro_batches_fill_the_pipeline) {
    int32_t prompt[4] = {1, 2, 3, 4}, out[8][MAXT];
    const int T[8] = {4, 4, 4, 4, 4, 4, 4, 4};
    sched_seq q[8];
    sim m;
    for (int micro = 1; micro <= 4; micro++) {
        sched_opts o = {SCHED_GENERATE, 8, micro, 4, 50, NULL, 0, NULL, NULL, 0};
        setup(&m, q, 8, prompt, T, out, o);
        m.D = 4;
        run(&m);
        /* decode: 8 x 49 tokens in items of 8 / micro sequences, one item per tick at best */
        cr_log_info("micro %d over 4 ranks: %d ticks, %d work, %d bubbles", micro, m.ticks, m.work,
                    m.bubbles);
        if (micro == 4) {
            cr_assert_leq(m.bubbles, 8, "%d bubbles with micro = ranks", m.bubbles);
            cr_assert_leq(m.work, 8 + 49 * 4, "%d items: micro-batches left half empty", m.work);
        }
        if (micro == 1) cr_assert_geq(m.bubbles, 49 * 3, "one micro-batch cannot fill 4 ranks");
        sched_free(&m.s);
    }
}
