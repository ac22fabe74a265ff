/* stage.c — the CPU forward pass of a layer span, built from the kernels/ twins:
 * RMSNorm -> q/k/v -> RoPE -> cache append + causal attention -> o_proj -> residual,
 * RMSNorm -> SwiGLU MLP -> residual. */
#include "stage.h"

#include <math.h>
#include <stdlib.h>

#include "kernels.h"

struct stage {
    const model_config *c;
    const stage_weights *w;
    stage_opts o;
    kvcache *kv;
    float *inv_freq;            /* [head_dim / 2] */
    float *xn, *q, *k, *v, *att, *tmp, *gate, *up;
    float *scores;              /* attention scratch: kvattn_scratch_floats(ctx, head_dim) */
    int32_t *pos;               /* [max_tokens] */
    int *seq_len;               /* [n_seq] positions stored per sequence */
    kvdiag *diag;               /* NULL unless opts.diag */
    float *diag_tmp;            /* [2][max_tokens][n_heads * head_dim] */
    int diag_measure;
};

akv_status stage_init(stage_t **out, const model_config *c, const stage_weights *w,
                      const stage_opts *o, akv_err *err) {
    *out = NULL;
    if (o->max_tokens <= 0) return akv_fail(err, AKV_EINPUT, "stage needs max_tokens >= 1");
    stage_t *s = calloc(1, sizeof *s);
    if (!s) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    s->c = c;
    s->w = w;
    s->o = *o;
    kvcache_shape ks = {w->layer_end - w->layer_begin, w->layer_begin, o->n_seq, o->ctx,
                        c->n_kv_heads, c->head_dim, o->kv};
    akv_status st = kvcache_init(&s->kv, &ks, err);
    if (st) goto fail;
    size_t T = (size_t)o->max_tokens, QD = (size_t)c->n_heads * c->head_dim;
    size_t KD = (size_t)c->n_kv_heads * c->head_dim, H = (size_t)c->hidden;
    size_t I = (size_t)c->intermediate;
    s->inv_freq = malloc((size_t)c->head_dim / 2 * sizeof(float) + 4);
    s->xn = malloc(T * H * sizeof(float));
    s->q = malloc(T * QD * sizeof(float));
    s->k = malloc(T * KD * sizeof(float));
    s->v = malloc(T * KD * sizeof(float));
    s->att = malloc(T * QD * sizeof(float));
    s->tmp = malloc(T * H * sizeof(float));
    s->gate = malloc(T * I * sizeof(float));
    s->up = malloc(T * I * sizeof(float));
    s->scores = malloc(kvattn_scratch_floats(o->ctx, c->head_dim) * sizeof(float));
    s->pos = malloc(T * sizeof(int32_t));
    s->seq_len = calloc((size_t)o->n_seq, sizeof(int));
    if (!s->inv_freq || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->tmp || !s->gate ||
        !s->up || !s->scores || !s->pos || !s->seq_len) {
        st = akv_fail(err, AKV_ERUNTIME, "out of host memory for stage scratch buffers");
        goto fail;
    }
    if (o->diag) {
        st = kvdiag_init(&s->diag, &ks, err);
        if (st) goto fail;
        s->diag_measure = 1;
        s->diag_tmp = malloc(2 * T * QD * sizeof(float));
        if (!s->diag_tmp) {
            st = akv_fail(err, AKV_ERUNTIME, "out of host memory for diagnostics");
            goto fail;
        }
    }
    rope_inv_freq_ref(s->inv_freq, c->head_dim, &c->rope);
    *out = s;
    return AKV_OK;
fail:
    stage_free(s);
    return st;
}

void stage_free(stage_t *s) {
    if (!s) return;
    kvcache_free(s->kv);
    float *p[] = {s->inv_freq, s->xn, s->q, s->k, s->v, s->att, s->tmp, s->gate, s->up,
                  s->scores};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    free(s->pos);
    free(s->seq_len);
    kvdiag_free(s->diag);
    free(s->diag_tmp);
    free(s);
}

akv_status stage_embed(stage_t *s, const int32_t *ids, int n, float *x, akv_err *err) {
    if (!s->w->embed) return akv_fail(err, AKV_ERUNTIME, "stage has no embedding");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->c->vocab_size)
            return akv_fail(err, AKV_EINPUT, "token id %d is outside the vocabulary [0, %d)",
                            ids[i], s->c->vocab_size);
    embedding_ref(x, s->w->embed, ids, n, s->c->hidden);
    return AKV_OK;
}

/* Checks the batch layout and derives each token's position from its sequence's cache. */
static akv_status assign_positions(stage_t *s, int n, const int32_t *seq, akv_err *err) {
    if (n > s->o.max_tokens)
        return akv_fail(err, AKV_EINPUT, "batch of %d tokens exceeds the stage's %d", n,
                        s->o.max_tokens);
    for (int i = 0; i < n; i++) {
        if (seq[i] < 0 || seq[i] >= s->o.n_seq)
            return akv_fail(err, AKV_EINPUT, "sequence slot %d outside --batch %d", seq[i],
                            s->o.n_seq);
        int first = i == 0 || seq[i - 1] != seq[i];
        for (int j = 0; first && j < i; j++)
            if (seq[j] == seq[i])
                return akv_fail(err, AKV_EINPUT, "tokens of sequence %d are not contiguous",
                                seq[i]);
        s->pos[i] = first ? stage_seq_len(s, seq[i]) : s->pos[i - 1] + 1;
        if (s->pos[i] >= s->o.ctx)
            return akv_fail(err, AKV_EINPUT,
                            "sequence %d reached --ctx %d tokens (raise --ctx)", seq[i],
                            s->o.ctx);
    }
    return AKV_OK;
}

/* Attention block of local layer l: x += o_proj(attn(rope(q), rope(k), v)). */
static akv_status attention_block(stage_t *s, int l, int n, const int32_t *seq, float *x,
                                  akv_err *err) {
    const model_config *c = s->c;
    const layer_weights *L = &s->w->layers[l];
    const int H = c->hidden, QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
    rmsnorm_ref(s->xn, x, L->attn_norm, n, H, c->rms_eps);
    matmul_ref(s->q, s->xn, L->wq, L->bq, n, H, QD);
    matmul_ref(s->k, s->xn, L->wk, L->bk, n, H, KD);
    matmul_ref(s->v, s->xn, L->wv, L->bv, n, H, KD);
    rope_ref(s->q, s->pos, n, c->n_heads, c->head_dim, s->inv_freq);
    rope_ref(s->k, s->pos, n, c->n_kv_heads, c->head_dim, s->inv_freq);
    /* The cache stores fp16 K/V (fp32 at width 32): round first so a token's key is the same
     * whether it comes from this call or from the cache (chunking never changes results). */
    if (kvcache_k_bits(s->kv, l) != 32) kvq_round_f16(s->k, (size_t)n * KD);
    if (kvcache_v_bits(s->kv, l) != 32) kvq_round_f16(s->v, (size_t)n * KD);
    const float scale = 1.0f / sqrtf((float)c->head_dim);
    for (int i = 0; i < n;) { /* one run of consecutive tokens of one sequence */
        int j = i;
        while (j < n && seq[j] == seq[i]) j++;
        const float *k = s->k + (size_t)i * KD, *v = s->v + (size_t)i * KD;
        kvcache_attend(s->kv, l, seq[i], j - i, c->n_heads, s->q + (size_t)i * QD, k, v,
                       s->att + (size_t)i * QD, scale, s->scores);
        akv_status st = kvcache_append(s->kv, l, seq[i], j - i, k, v, err);
        if (!st && s->diag)
            st = kvdiag_observe(s->diag, l, seq[i], j - i, c->n_heads, s->q + (size_t)i * QD, k,
                                v, scale, s->diag_measure && j - i == 1, s->scores,
                                s->diag_tmp, err); /* measured on decode steps */
        if (st) return st;
        i = j;
    }
    matmul_ref(s->tmp, s->att, L->wo, L->bo, n, QD, H);
    add_ref(x, s->tmp, (size_t)n * H);
    return AKV_OK;
}

/* MLP block: x += down(silu(gate(xn)) * up(xn)). */
static void mlp_block(stage_t *s, int l, int n, float *x) {
    const model_config *c = s->c;
    const layer_weights *L = &s->w->layers[l];
    const int H = c->hidden, I = c->intermediate;
    rmsnorm_ref(s->xn, x, L->mlp_norm, n, H, c->rms_eps);
    matmul_ref(s->gate, s->xn, L->w_gate, NULL, n, H, I);
    matmul_ref(s->up, s->xn, L->w_up, NULL, n, H, I);
    swiglu_ref(s->gate, s->gate, s->up, (size_t)n * I);
    matmul_ref(s->tmp, s->gate, L->w_down, NULL, n, I, H);
    add_ref(x, s->tmp, (size_t)n * H);
}

akv_status stage_forward(stage_t *s, int n, const int32_t *seq, float *x, akv_err *err) {
    akv_status st = assign_positions(s, n, seq, err);
    if (st) return st;
    int nl = s->w->layer_end - s->w->layer_begin;
    for (int l = 0; l < nl; l++) {
        st = attention_block(s, l, n, seq, x, err);
        if (st) return st;
        mlp_block(s, l, n, x);
    }
    for (int i = 0; i < n; i++) s->seq_len[seq[i]] = s->pos[i] + 1;
    return AKV_OK;
}

akv_status stage_head(stage_t *s, int n, const float *x, float *logits, akv_err *err) {
    if (!s->w->lm_head) return akv_fail(err, AKV_ERUNTIME, "stage has no LM head");
    const int H = s->c->hidden;
    for (int i0 = 0; i0 < n; i0 += s->o.max_tokens) {
        int m = n - i0 < s->o.max_tokens ? n - i0 : s->o.max_tokens;
        rmsnorm_ref(s->xn, x + (size_t)i0 * H, s->w->final_norm, m, H, s->c->rms_eps);
        matmul_ref(logits + (size_t)i0 * s->c->vocab_size, s->xn, s->w->lm_head, NULL, m, H,
                   s->c->vocab_size);
    }
    return AKV_OK;
}

int stage_seq_len(const stage_t *s, int seq) {
    return s->seq_len[seq];
}

void stage_diag_measure(stage_t *s, int on) { s->diag_measure = on; }
const kvdiag *stage_diag(const stage_t *s) { return s->diag; }

void stage_seq_reset(stage_t *s, int seq) {
    if (s->diag) kvdiag_reset(s->diag, seq);
    kvcache_reset(s->kv, seq);
    s->seq_len[seq] = 0;
}

const kvcache *stage_kvcache(const stage_t *s) {
    return s->kv;
}
