/* stage.c — the stage API over the backend table (CPU here, CUDA in stage_cuda.c): positions,
 * sequence lengths, sampling histories and batch checks are shared; the CPU backend's forward
 * pass is built from the kernels/ twins:
 * RMSNorm -> q/k/v -> RoPE -> cache append + causal attention -> o_proj -> residual,
 * RMSNorm -> SwiGLU MLP -> residual. */
#include "stage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "stage_cuda.h"

#define SAMPLE_ROWS 64 /* rows of logits the CPU head computes at once when sampling */

typedef struct cpu_stage {
    const model_config *c;
    const stage_weights *w;
    stage_opts o;
    kvcache *kv;
    float *inv_freq;            /* [head_dim / 2] */
    float *xn, *q, *k, *v, *att, *tmp, *gate, *up;
    float *scores;              /* attention scratch: kvattn_scratch_floats(ctx, head_dim) */
    int32_t *pos;               /* [max_tokens] */
    kvdiag *diag;               /* NULL unless opts.diag */
    float *diag_tmp;            /* [2][max_tokens][n_heads * head_dim] */
    int diag_measure;
    float *xg, *logits, *samp;  /* last stage: [SAMPLE_ROWS] rows, logits, sampler scratch */
} cpu_stage;

struct stage {
    stage_backend backend;
    stage_opts o;
    const model_config *c;
    cpu_stage *cpu;             /* STAGE_CPU */
    stage_cuda *cu;             /* STAGE_CUDA */
    int32_t *pos;               /* [max_tokens] positions of the current call */
    int *seq_len;               /* [n_seq] positions stored per sequence */
    int32_t *hist;              /* last stage, CPU: [n_seq][ctx] sampling histories */
    int *hist_len;              /* [n_seq] */
};

static void cpu_free(cpu_stage *s);

static akv_status cpu_init(cpu_stage **out, const model_config *c, const stage_weights *w,
                           const stage_opts *o, akv_err *err) {
    *out = NULL;
    cpu_stage *s = calloc(1, sizeof *s);
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
    if (!s->inv_freq || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->tmp || !s->gate ||
        !s->up || !s->scores || !s->pos) {
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
    if (w->lm_head) {
        s->xg = malloc((size_t)SAMPLE_ROWS * H * sizeof(float));
        s->logits = malloc((size_t)SAMPLE_ROWS * c->vocab_size * sizeof(float));
        s->samp = malloc(sampler_scratch_floats(c->vocab_size) * sizeof(float));
        if (!s->xg || !s->logits || !s->samp) {
            st = akv_fail(err, AKV_ERUNTIME, "out of host memory for the LM head's buffers");
            goto fail;
        }
    }
    rope_inv_freq_ref(s->inv_freq, c->head_dim, &c->rope);
    *out = s;
    return AKV_OK;
fail:
    cpu_free(s);
    return st;
}

static void cpu_free(cpu_stage *s) {
    if (!s) return;
    kvcache_free(s->kv);
    float *p[] = {s->inv_freq, s->xn, s->q, s->k, s->v, s->att, s->tmp, s->gate, s->up,
                  s->scores, s->xg, s->logits, s->samp};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    free(s->pos);
    kvdiag_free(s->diag);
    free(s->diag_tmp);
    free(s);
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
static akv_status attention_block(cpu_stage *s, int l, int n, const int32_t *seq, float *x,
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
static void mlp_block(cpu_stage *s, int l, int n, float *x) {
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

static akv_status cpu_forward(cpu_stage *s, int n, const int32_t *seq, const int32_t *pos,
                              float *x, akv_err *err) {
    memcpy(s->pos, pos, (size_t)n * sizeof *pos);
    int nl = s->w->layer_end - s->w->layer_begin;
    for (int l = 0; l < nl; l++) {
        akv_status st = attention_block(s, l, n, seq, x, err);
        if (st) return st;
        mlp_block(s, l, n, x);
    }
    return AKV_OK;
}

static void cpu_head(cpu_stage *s, int n, const float *x, float *logits) {
    const int H = s->c->hidden;
    for (int i0 = 0; i0 < n; i0 += s->o.max_tokens) {
        int m = n - i0 < s->o.max_tokens ? n - i0 : s->o.max_tokens;
        rmsnorm_ref(s->xn, x + (size_t)i0 * H, s->w->final_norm, m, H, s->c->rms_eps);
        matmul_ref(logits + (size_t)i0 * s->c->vocab_size, s->xn, s->w->lm_head, NULL, m, H,
                   s->c->vocab_size);
    }
}

/* ---- the stage API over the backend table ---- */

int stage_cuda_devices(void) { return scu_devices(); }

akv_status stage_init(stage_t **out, const model_config *c, const stage_weights *w,
                      const stage_opts *o, akv_err *err) {
    *out = NULL;
    if (o->max_tokens <= 0) return akv_fail(err, AKV_EINPUT, "stage needs max_tokens >= 1");
    if (o->src && o->backend != STAGE_CUDA)
        return akv_fail(err, AKV_EINPUT, "internal: only the CUDA stage reads a checkpoint itself");
    if (o->backend == STAGE_CUDA && o->diag)
        return akv_fail(err, AKV_EINPUT, "the K-vs-V diagnostic (--diag, --search-kv) runs on "
                        "the CPU backend only (add --backend cpu)");
    stage_t *s = calloc(1, sizeof *s);
    if (!s) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    s->backend = o->backend;
    s->o = *o;
    s->c = c;
    akv_status st = AKV_OK;
    s->pos = malloc((size_t)o->max_tokens * sizeof(int32_t));
    s->seq_len = calloc((size_t)o->n_seq, sizeof(int));
    if (!s->pos || !s->seq_len) st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
    if (!st && o->backend == STAGE_CUDA) {
        st = scu_init(&s->cu, c, w, o, err);
    } else if (!st) {
        st = cpu_init(&s->cpu, c, w, o, err);
        if (!st && w->lm_head) {
            s->hist = malloc((size_t)o->n_seq * (size_t)o->ctx * sizeof(int32_t));
            s->hist_len = calloc((size_t)o->n_seq, sizeof(int));
            if (!s->hist || !s->hist_len)
                st = akv_fail(err, AKV_ERUNTIME, "out of host memory for sampling histories");
        }
    }
    if (st) {
        stage_free(s);
        return st;
    }
    *out = s;
    return AKV_OK;
}

void stage_free(stage_t *s) {
    if (!s) return;
    cpu_free(s->cpu);
    scu_free(s->cu);
    free(s->pos);
    free(s->seq_len);
    free(s->hist);
    free(s->hist_len);
    free(s);
}

stage_backend stage_get_backend(const stage_t *s) { return s->backend; }
void *stage_stream(const stage_t *s) { return s->cu ? scu_stream(s->cu) : NULL; }

akv_status stage_act_alloc(stage_t *s, size_t n_floats, float **out, akv_err *err) {
    if (s->cu) return scu_act_alloc(s->cu, n_floats, out, err);
    *out = malloc((n_floats ? n_floats : 1) * sizeof(float));
    return *out ? AKV_OK : akv_fail(err, AKV_ERUNTIME, "out of host memory for activations");
}

void stage_act_free(stage_t *s, float *x) {
    if (s && s->cu) scu_act_free(s->cu, x);
    else free(x);
}

akv_status stage_act_to_host(stage_t *s, float *host, const float *x, size_t n, akv_err *err) {
    if (s->cu) return scu_copy(s->cu, host, x, n, 0, err);
    memcpy(host, x, n * sizeof(float));
    return AKV_OK;
}

akv_status stage_act_from_host(stage_t *s, float *x, const float *host, size_t n,
                               akv_err *err) {
    if (s->cu) return scu_copy(s->cu, x, host, n, 1, err);
    memcpy(x, host, n * sizeof(float));
    return AKV_OK;
}

akv_status stage_embed(stage_t *s, const int32_t *ids, int n, float *x, akv_err *err) {
    const int has = s->cu ? scu_has_embed(s->cu) : s->cpu->w->embed != NULL;
    if (!has) return akv_fail(err, AKV_ERUNTIME, "stage has no embedding");
    if (n > s->o.max_tokens)
        return akv_fail(err, AKV_EINPUT, "batch of %d tokens exceeds the stage's %d", n,
                        s->o.max_tokens);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->c->vocab_size)
            return akv_fail(err, AKV_EINPUT, "token id %d is outside the vocabulary [0, %d)",
                            ids[i], s->c->vocab_size);
    if (s->cu) return scu_embed(s->cu, ids, n, x, err);
    embedding_ref(x, s->cpu->w->embed, ids, n, s->c->hidden);
    return AKV_OK;
}

akv_status stage_forward(stage_t *s, int n, const int32_t *seq, float *x, akv_err *err) {
    akv_status st = assign_positions(s, n, seq, err);
    if (st) return st;
    st = s->cu ? scu_forward(s->cu, n, seq, s->pos, x, err)
               : cpu_forward(s->cpu, n, seq, s->pos, x, err);
    if (st) return st;
    for (int i = 0; i < n; i++) s->seq_len[seq[i]] = s->pos[i] + 1;
    return AKV_OK;
}

akv_status stage_head(stage_t *s, int n, const float *x, float *logits, akv_err *err) {
    const int has = s->cu ? scu_has_head(s->cu) : s->cpu->w->lm_head != NULL;
    if (!has) return akv_fail(err, AKV_ERUNTIME, "stage has no LM head");
    if (s->cu) return scu_head(s->cu, n, x, logits, err);
    cpu_head(s->cpu, n, x, logits);
    return AKV_OK;
}

akv_status stage_hist_set(stage_t *s, int slot, const int32_t *ids, int n, akv_err *err) {
    if (slot < 0 || slot >= s->o.n_seq || n < 0 || n > s->o.ctx)
        return akv_fail(err, AKV_ERUNTIME, "sampling history of %d ids for slot %d does not "
                        "fit (--ctx %d, --batch %d)", n, slot, s->o.ctx, s->o.n_seq);
    if (s->cu) return scu_hist_set(s->cu, slot, ids, n, err);
    if (!s->hist) return akv_fail(err, AKV_ERUNTIME, "stage has no LM head");
    memcpy(s->hist + (size_t)slot * s->o.ctx, ids, (size_t)n * sizeof *ids);
    s->hist_len[slot] = n;
    return AKV_OK;
}

akv_status stage_sample(stage_t *s, int n_rows, const int32_t *rows, const int32_t *slots,
                        const sampler_params *const *sp, const uint64_t *rng, const float *x,
                        int32_t *ids_out, akv_err *err) {
    for (int r = 0; r < n_rows; r++)
        if (slots[r] < 0 || slots[r] >= s->o.n_seq || rows[r] < 0 || rows[r] >= s->o.max_tokens)
            return akv_fail(err, AKV_ERUNTIME, "sample row %d (slot %d) outside the stage",
                            rows[r], slots[r]);
    if (s->cu) return scu_sample(s->cu, n_rows, rows, slots, sp, rng, x, ids_out, err);
    cpu_stage *c = s->cpu;
    if (!c->w->lm_head) return akv_fail(err, AKV_ERUNTIME, "stage has no LM head");
    const int H = s->c->hidden, V = s->c->vocab_size;
    for (int r0 = 0; r0 < n_rows; r0 += SAMPLE_ROWS) {
        const int m = n_rows - r0 < SAMPLE_ROWS ? n_rows - r0 : SAMPLE_ROWS;
        for (int r = 0; r < m; r++)
            memcpy(c->xg + (size_t)r * H, x + (size_t)rows[r0 + r] * H, (size_t)H * sizeof(float));
        cpu_head(c, m, c->xg, c->logits);
        for (int r = 0; r < m; r++) {
            const float *row = c->logits + (size_t)r * V;
            const int slot = slots[r0 + r];
            int32_t *h = s->hist + (size_t)slot * s->o.ctx;
            int32_t t;
            if (!sp[r0 + r]) {
                t = argmax_ref(row, V);
            } else {
                uint64_t st = rng[r0 + r];
                t = sample_token(row, V, sp[r0 + r], h, s->hist_len[slot], &st, c->samp);
            }
            if (s->hist_len[slot] < s->o.ctx) h[s->hist_len[slot]++] = t;
            ids_out[r0 + r] = t;
        }
    }
    return AKV_OK;
}

akv_status stage_bandwidth(stage_t *s, double *bytes_per_s, akv_err *err) {
    if (s->cu) return scu_bandwidth(s->cu, bytes_per_s, err);
    const size_t n = (size_t)256 << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) {
        free(a), free(b);
        return akv_fail(err, AKV_ERUNTIME, "out of host memory measuring bandwidth");
    }
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 1e30;
    for (int i = 0; i < 3; i++) {
        const double t0 = akv_now_s();
        memcpy(i & 1 ? a : b, i & 1 ? b : a, n);
        const double t = akv_now_s() - t0;
        best = t < best ? t : best;
    }
    *bytes_per_s = 2.0 * (double)n / best;
    free(a), free(b);
    return AKV_OK;
}

akv_status stage_sync(stage_t *s, akv_err *err) {
    return s->cu ? scu_sync(s->cu, err) : AKV_OK;
}

int stage_seq_len(const stage_t *s, int seq) { return s->seq_len[seq]; }

void stage_seq_reset(stage_t *s, int seq) {
    if (s->cpu) {
        if (s->cpu->diag) kvdiag_reset(s->cpu->diag, seq);
        kvcache_reset(s->cpu->kv, seq);
    }
    if (s->cu) scu_seq_reset(s->cu, seq);
    if (s->hist_len) s->hist_len[seq] = 0;
    s->seq_len[seq] = 0;
}

int stage_kv_dump(stage_t *s, int layer, int seq, uint16_t *k, uint16_t *v, akv_err *err) {
    if (s->cu) return scu_kv_dump(s->cu, layer, seq, k, v, err);
    kvq_view view;
    kvcache_view(s->cpu->kv, layer, seq, &view);
    const size_t n = (size_t)view.len * view.n_kv_heads * view.head_dim;
    float *kf = malloc((n ? n : 1) * sizeof(float)), *vf = malloc((n ? n : 1) * sizeof(float));
    if (!kf || !vf) {
        free(kf), free(vf);
        akv_fail(err, AKV_ERUNTIME, "out of host memory");
        return -1;
    }
    kvq_view_dequantize(&view, kf, vf);
    for (size_t i = 0; i < n; i++) k[i] = akv_f32_to_f16(kf[i]), v[i] = akv_f32_to_f16(vf[i]);
    free(kf), free(vf);
    return view.len;
}

size_t stage_device_bytes(const stage_t *s) { return s->cu ? scu_device_bytes(s->cu) : 0; }

size_t stage_weight_bytes(const stage_t *s) {
    return s->cu ? scu_weight_bytes(s->cu) : s->cpu->w->bytes;
}

size_t stage_kv_layer_bytes(const stage_t *s, int layer) {
    return s->cu ? scu_kv_layer_bytes(s->cu, layer) : kvcache_layer_bytes(s->cpu->kv, layer);
}

size_t stage_kv_bytes(const stage_t *s) {
    return s->cu ? scu_kv_bytes(s->cu) : kvcache_bytes(s->cpu->kv);
}

void stage_diag_measure(stage_t *s, int on) {
    if (s->cpu) s->cpu->diag_measure = on;
}

const kvdiag *stage_diag(const stage_t *s) { return s->cpu ? s->cpu->diag : NULL; }
