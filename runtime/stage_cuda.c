/* stage_cuda.c — the CUDA backend of a stage (design §1 backend table, issue "CUDA backend"):
 * the forward pass of a layer span on one GPU, built from the CUDA launchers of kernels/
 * (kernels_cuda.h, sample_cuda.h).
 *
 * Memory: one device arena, sized at init from the model, --ctx, --batch and the prefill chunk
 * (dist/plan.c counts the same regions, and tests/emu checks the arena fits the plan): bf16
 * weights (uploaded once, straight from the checkpoint or from fp32 host arrays; norms and
 * biases fp32), the KV cache of every local layer at its --kv widths (exactly
 * kvcfg_layer_bytes per layer), activation scratch, attention workspaces, the dense prefill
 * scratch and the sampler's histories. Plus cuBLASLt's context and pinned host blocks for the
 * small per-call tables. Nothing is allocated per call.
 *
 * Tested without a GPU by tests/emu (this file over a stand-in runtime whose launchers are the
 * CPU twins: it must reproduce the CPU backend bit for bit), on the GPU by tests/gpu_model.c.
 *
 * Per call: the host (which mirrors every sequence's len / kq / vq, as runtime/kvcache.c keeps
 * them) packs the call's ids, positions, cache descriptors (kvq_seq_dev) and append plans into
 * one of STAGE_RING pinned blocks and uploads it with one copy; the layers then run on the
 * stage's stream. The host waits for the device only to reuse a block (uploaded three calls
 * earlier, so normally already read) and for returned results: logits (stage_head), sampled
 * ids (stage_sample) and activations copied out for a host transport.
 *
 * Attention per layer and run of tokens of one sequence:
 *   - decode rows (runs of one token, batched): fp16 layers append the token then run
 *     attention_decode over the fp16 cache; compressed layers run kvattn (codes read directly,
 *     the new token exact) then kvq_append (value / key-block flushes on the device);
 *   - prefill runs (several tokens): fp16 layers store the rows and run attention_prefill on the
 *     cache; compressed layers expand the stored positions into the dense fp16 scratch
 *     (kvq_dense), add the new rows, run attention_prefill over it, then kvq_commit quantizes
 *     the flushed key blocks / values from it and writes the windows. */
#include "stage_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef ASYMKV_HAVE_CUDA

#include <cuda_runtime.h>

#include "cuda_check.h"
#include "kernels.h"
#include "kernels_cuda.h"
#include "sample_cuda.h"

#define HEAD_ROWS 256 /* rows of logits computed at once */
#define STAGE_RING 3  /* pinned table blocks in rotation: a call reuses the one of 3 calls ago */

typedef struct dlayer {
    float *attn_norm, *mlp_norm, *bq, *bk, *bv, *bo;
    uint16_t *wq, *wk, *wv, *wo, *wg, *wu, *wd; /* bf16 */
} dlayer;

/* One local layer's cache: n_seq slots laid out as kvlayout.h's kvl_slot_layout says. */
typedef struct dkv {
    int k_bits, v_bits, quant; /* quant: some tensor at 4/2/1 bits (the compressed path) */
    kvl_slot sl;               /* one sequence's regions (window caps: R, or ctx' for 16-bit) */
    uint8_t *mem;              /* [n_seq][sl.bytes] */
    size_t bytes;              /* per layer, all slots (kvcfg_layer_bytes) */
} dkv;

static uint8_t *slot_base(const dkv *d, int seq) { return d->mem + d->sl.bytes * (size_t)seq; }
static uint16_t *kwin(const dkv *d, int seq) { return (uint16_t *)(slot_base(d, seq) + d->sl.k_win); }
static uint16_t *vwin(const dkv *d, int seq) { return (uint16_t *)(slot_base(d, seq) + d->sl.v_win); }

typedef struct slot_counts {
    int kq, vq; /* quantized keys / values of compressed tensors (len is the stage's seq_len) */
} slot_counts;

struct stage_cuda {
    const model_config *c;
    stage_opts o;
    int nl, layer0, ctxp, G, R, T, head_rows, has_embed, has_head, any_quant;
    int need_embed;      /* the embedding matrix is held (first rank, or a tied head) */
    const st_model *src; /* weights read from this checkpoint (stage_opts.src), or NULL */
    int device;
    cudaStream_t stream;
    struct {
        uint8_t *host, *dev;  /* pinned table block and its device twin */
        cudaEvent_t uploaded; /* its last upload has been read */
    } ring[STAGE_RING];
    int ring_i;           /* the block the next call fills */
    matmul_ctx *mm;
    void *arena;
    size_t arena_bytes, weight_bytes, kv_bytes, ws_bytes;
    /* weights */
    dlayer *L;
    uint16_t *embed, *lm_head;
    float *final_norm, *inv_freq;
    /* caches */
    dkv *kv;
    slot_counts *cnt; /* [n_seq] */
    int *len;         /* [n_seq] positions stored (mirrors stage.c's seq_len) */
    /* activations and scratch */
    float *xn, *q, *k, *v, *att, *tmp, *gate, *up, *logits, *xg;
    uint16_t *kd, *vd; /* dense fp16 prefill scratch [ctx'][KD] (compressed layers) */
    void *ws;          /* attention workspace */
    int *entry;        /* [T] host: the table entry (run index) of each row of the call */
    /* sampling */
    int32_t *ids_out, *hist, *hist_len;
    void *samp_ws;
    size_t samp_ws_bytes;
    uint8_t *host_stage; /* pinned, STAGE_RING blocks of stage_bytes */
    size_t stage_bytes;
    int32_t *host_ids; /* pinned, [head_rows] sampled ids */
};

/* ------------------------------------------------------------------ arena layout */

typedef struct arena {
    uint8_t *base; /* NULL: sizing pass */
    size_t off;
} arena;

static void *take(arena *a, size_t bytes) {
    a->off = (a->off + 255) & ~(size_t)255;
    void *p = a->base ? a->base + a->off : NULL;
    a->off += bytes;
    return p;
}

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* Bytes of one block of per-call tables for T tokens (at most runs = min(T, n_seq) runs: a
 * decode row or a prefill run each take one descriptor and one append plan per layer). */
static size_t stage_table_bytes(int T, int runs, int nl) {
    const size_t calls = round_up((size_t)T * 4 * 3, 64) + 256 +
                         (size_t)nl * runs * (sizeof(kvq_seq_dev) + sizeof(kvl_append_op));
    const size_t sample = (size_t)HEAD_ROWS * (sizeof(sample_params_dev) + 8 + 4) + 256;
    return round_up(calls > sample ? calls : sample, 256);
}

/* Attention workspace: enough for a decode batch of one at any length (the batch is split at
 * call time when a larger batch would need more), and for the whole batch at sampled lengths. */
static size_t attn_ws_bytes(const stage_cuda *s) {
    const model_config *c = s->c;
    const int D = c->head_dim, Hq = c->n_heads, Hk = c->n_kv_heads;
    size_t best = (size_t)Hq * 2048 * (D + 2) * sizeof(float); /* KVA_MAX_PARTS */
    const int rows = s->T < s->o.n_seq ? s->T : s->o.n_seq;
    const int step = s->ctxp > 4096 ? s->ctxp / 512 : 1;
    for (int l = 0; l < s->nl; l++) {
        kvattn_args a = {0};
        a.n_heads = Hq, a.n_kv_heads = Hk, a.head_dim = D, a.group = s->G;
        a.k_bits = s->kv[l].k_bits, a.v_bits = s->kv[l].v_bits, a.scale = 1.0f;
        for (int ml = 1;; ml = ml + step < s->ctxp + 1 ? ml + step : s->ctxp + 1) {
            a.n_batch = rows, a.max_len = ml, a.max_tail = 0;
            size_t b = s->kv[l].quant ? kvattn_workspace_bytes(&a)
                                      : attention_decode_workspace_bytes(rows, Hq, Hk, D, ml);
            if (b > best) best = b;
            if (ml == s->ctxp + 1) break;
        }
    }
    return best;
}

static void layout(stage_cuda *s, arena *a) {
    const model_config *c = s->c;
    const size_t H = c->hidden, QD = (size_t)c->n_heads * c->head_dim;
    const size_t KD = (size_t)c->n_kv_heads * c->head_dim, I = c->intermediate;
    const size_t V = c->vocab_size, T = s->T, S = s->o.n_seq;
    const size_t bf = sizeof(uint16_t), f4 = sizeof(float);
    /* weights */
    size_t w0 = a->off;
    for (int l = 0; l < s->nl; l++) {
        dlayer *d = &s->L[l];
        d->attn_norm = take(a, H * f4);
        d->mlp_norm = take(a, H * f4);
        d->wq = take(a, QD * H * bf);
        d->wk = take(a, KD * H * bf);
        d->wv = take(a, KD * H * bf);
        d->wo = take(a, H * QD * bf);
        d->wg = take(a, I * H * bf);
        d->wu = take(a, I * H * bf);
        d->wd = take(a, H * I * bf);
        d->bq = c->qkv_bias ? take(a, QD * f4) : NULL;
        d->bk = c->qkv_bias ? take(a, KD * f4) : NULL;
        d->bv = c->qkv_bias ? take(a, KD * f4) : NULL;
        d->bo = c->o_bias ? take(a, H * f4) : NULL;
    }
    s->embed = s->need_embed ? take(a, V * H * bf) : NULL;
    s->final_norm = s->has_head ? take(a, H * f4) : NULL;
    s->lm_head = !s->has_head ? NULL : c->tie_embeddings ? s->embed : take(a, V * H * bf);
    s->weight_bytes = a->off - w0;
    /* KV caches */
    for (int l = 0; l < s->nl; l++) {
        dkv *d = &s->kv[l];
        d->sl = kvl_slot_layout(d->k_bits, d->v_bits, c->n_kv_heads, c->head_dim, s->G, s->R,
                                s->ctxp);
        d->bytes = d->sl.bytes * S;
        d->mem = take(a, d->bytes);
    }
    s->kv_bytes = 0;
    for (int l = 0; l < s->nl; l++) s->kv_bytes += s->kv[l].bytes;
    /* activations and scratch */
    s->inv_freq = take(a, (size_t)c->head_dim / 2 * f4);
    s->xn = take(a, T * H * f4);
    s->q = take(a, T * QD * f4);
    s->k = take(a, T * KD * f4);
    s->v = take(a, T * KD * f4);
    s->att = take(a, T * QD * f4);
    s->tmp = take(a, T * H * f4);
    s->gate = take(a, T * I * f4);
    s->up = take(a, T * I * f4);
    if (s->any_quant) {
        s->kd = take(a, (size_t)s->ctxp * KD * bf);
        s->vd = take(a, (size_t)s->ctxp * KD * bf);
    }
    s->ws = take(a, s->ws_bytes);
    for (int i = 0; i < STAGE_RING; i++) s->ring[i].dev = take(a, s->stage_bytes);
    if (s->has_head) {
        s->xg = take(a, (size_t)s->head_rows * H * f4);
        s->logits = take(a, (size_t)s->head_rows * V * f4);
        s->ids_out = take(a, (size_t)s->head_rows * 4);
        s->hist = take(a, S * (size_t)s->o.ctx * 4);
        s->hist_len = take(a, S * 4);
        s->samp_ws = take(a, s->samp_ws_bytes);
    }
}

/* ------------------------------------------------------------------ init */

int scu_devices(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

/* fp32 host weights -> bf16 on the device (exact for a bf16 checkpoint). */
static akv_status up_bf16(uint16_t *dst, const float *src, size_t n, uint16_t *tmp, size_t cap,
                          cudaStream_t stream, akv_err *err) {
    akv_status st = AKV_OK;
    for (size_t i0 = 0; i0 < n; i0 += cap) {
        const size_t m = n - i0 < cap ? n - i0 : cap;
        for (size_t i = 0; i < m; i++) tmp[i] = akv_f32_to_bf16(src[i0 + i]);
        CUDA_CHECK(err, cudaMemcpyAsync(dst + i0, tmp, m * 2, cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(err, cudaStreamSynchronize(stream)); /* tmp is reused */
    }
fail:
    return st;
}

static akv_status up_f32(float *dst, const float *src, size_t n, cudaStream_t stream,
                         akv_err *err) {
    akv_status st = AKV_OK;
    if (dst && src)
        CUDA_CHECK(err, cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyHostToDevice, stream));
fail:
    return st;
}

/* One matrix to the device as bf16: from the fp32 host array, or (s->src) from the checkpoint
 * tensor `name` — bf16 as stored, fp16 / fp32 converted — through the pinned tmp in chunks. */
static akv_status up_matrix(stage_cuda *s, uint16_t *dst, const float *host, const char *name,
                           size_t n, uint16_t *tmp, size_t cap, akv_err *err) {
    if (!s->src) return up_bf16(dst, host, n, tmp, cap, s->stream, err);
    akv_status st = AKV_OK;
    const st_tensor *t = st_find(s->src, name);
    const size_t es = t ? akv_dtype_size(t->dtype) : 0;
    if (!t || es == 0 || t->nbytes != n * es ||
        (t->dtype != AKV_DT_BF16 && t->dtype != AKV_DT_F16 && t->dtype != AKV_DT_F32))
        return akv_fail(err, AKV_EINPUT, "checkpoint tensor %s is missing, not %zu elements, or "
                        "not bf16/fp16/fp32", name, n);
    for (size_t i0 = 0; i0 < n; i0 += cap) {
        const size_t m = n - i0 < cap ? n - i0 : cap;
        if (t->dtype == AKV_DT_BF16) {
            memcpy(tmp, (const uint16_t *)t->data + i0, m * 2);
        } else if (t->dtype == AKV_DT_F16) {
            const uint16_t *h = (const uint16_t *)t->data + i0;
            for (size_t i = 0; i < m; i++) tmp[i] = akv_f32_to_bf16(akv_f16_to_f32(h[i]));
        } else {
            const float *f = (const float *)t->data + i0;
            for (size_t i = 0; i < m; i++) {
                float x;
                memcpy(&x, f + i, 4); /* the mmap gives no alignment promise */
                tmp[i] = akv_f32_to_bf16(x);
            }
        }
        CUDA_CHECK(err, cudaMemcpyAsync(dst + i0, tmp, m * 2, cudaMemcpyHostToDevice, s->stream));
        CUDA_CHECK(err, cudaStreamSynchronize(s->stream)); /* tmp is reused */
    }
fail:
    return st;
}

/* One fp32 vector (norm, bias) to the device, from the host array or the checkpoint. */
static akv_status up_vector(stage_cuda *s, float *dst, const float *host, const char *name,
                            size_t n, akv_err *err) {
    if (!dst) return AKV_OK;
    if (!s->src) return up_f32(dst, host, n, s->stream, err);
    akv_status st = AKV_OK;
    const st_tensor *t = st_find(s->src, name);
    float *f = malloc((n ? n : 1) * sizeof(float));
    if (!t || !f) {
        free(f);
        return akv_fail(err, AKV_EINPUT, "checkpoint tensor %s is missing", name);
    }
    if (!(st = st_read_f32(t, f, n, err))) {
        st = up_f32(dst, f, n, s->stream, err);
        if (!st) CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
    }
fail:
    free(f);
    return st;
}

static akv_status upload_weights(stage_cuda *s, const stage_weights *w, akv_err *err) {
    const model_config *c = s->c;
    const size_t H = c->hidden, QD = (size_t)c->n_heads * c->head_dim;
    const size_t KD = (size_t)c->n_kv_heads * c->head_dim, I = c->intermediate;
    const size_t V = c->vocab_size, cap = (size_t)1 << 22;
    akv_status st = AKV_OK;
    uint16_t *tmp = NULL;
    char name[256];
    CUDA_CHECK(err, cudaMallocHost((void **)&tmp, cap * 2));
    for (int l = 0; !st && l < s->nl; l++) {
        const dlayer *d = &s->L[l];
        const layer_weights none = {0}, *lw = s->src ? &none : &w->layers[l];
        const struct { uint16_t *dst; const float *src; const char *name; size_t n; } m[] = {
            {d->wq, lw->wq, "self_attn.q_proj.weight", QD * H},
            {d->wk, lw->wk, "self_attn.k_proj.weight", KD * H},
            {d->wv, lw->wv, "self_attn.v_proj.weight", KD * H},
            {d->wo, lw->wo, "self_attn.o_proj.weight", H * QD},
            {d->wg, lw->w_gate, "mlp.gate_proj.weight", I * H},
            {d->wu, lw->w_up, "mlp.up_proj.weight", I * H},
            {d->wd, lw->w_down, "mlp.down_proj.weight", H * I}};
        for (size_t i = 0; !st && i < sizeof m / sizeof m[0]; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", s->layer0 + l, m[i].name);
            st = up_matrix(s, m[i].dst, m[i].src, name, m[i].n, tmp, cap, err);
        }
        const struct { float *dst; const float *src; const char *name; size_t n; } v[] = {
            {d->attn_norm, lw->attn_norm, "input_layernorm.weight", H},
            {d->mlp_norm, lw->mlp_norm, "post_attention_layernorm.weight", H},
            {d->bq, lw->bq, "self_attn.q_proj.bias", QD},
            {d->bk, lw->bk, "self_attn.k_proj.bias", KD},
            {d->bv, lw->bv, "self_attn.v_proj.bias", KD},
            {d->bo, lw->bo, "self_attn.o_proj.bias", H}};
        for (size_t i = 0; !st && i < sizeof v / sizeof v[0]; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", s->layer0 + l, v[i].name);
            st = up_vector(s, v[i].dst, v[i].src, name, v[i].n, err);
        }
    }
    if (!st && s->embed)
        st = up_matrix(s, s->embed, w->embed, "model.embed_tokens.weight", V * H, tmp, cap, err);
    if (!st && s->lm_head && s->lm_head != s->embed)
        st = up_matrix(s, s->lm_head, w->lm_head, "lm_head.weight", V * H, tmp, cap, err);
    if (!st) st = up_vector(s, s->final_norm, w->final_norm, "model.norm.weight", H, err);
    if (!st) {
        float *inv = malloc((size_t)c->head_dim / 2 * sizeof(float) + 4);
        if (!inv) {
            st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        } else {
            rope_inv_freq_ref(inv, c->head_dim, &c->rope);
            st = up_f32(s->inv_freq, inv, (size_t)c->head_dim / 2, s->stream, err);
            if (!st) CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
            free(inv);
        }
    }
fail:
    if (tmp) (void)cudaFreeHost(tmp);
    return st;
}

akv_status scu_init(stage_cuda **out, const model_config *c, const stage_weights *w,
                    const stage_opts *o, akv_err *err) {
    *out = NULL;
    akv_status st = AKV_OK;
    stage_cuda *s = calloc(1, sizeof *s);
    if (!s) return akv_fail(err, AKV_ERUNTIME, "out of host memory");
    s->c = c;
    s->o = *o;
    s->nl = w->layer_end - w->layer_begin;
    s->layer0 = w->layer_begin;
    s->G = o->kv ? o->kv->group : KV_DEFAULT_GROUP;
    s->R = o->kv ? o->kv->residual : KV_DEFAULT_RESIDUAL;
    s->ctxp = (int)round_up((size_t)o->ctx, (size_t)s->G);
    s->T = o->max_tokens;
    s->src = o->src;
    s->has_embed = o->src ? o->with_embed : w->embed != NULL;
    s->has_head = o->src ? o->with_head : w->lm_head != NULL;
    s->need_embed = o->src ? o->with_embed || (o->with_head && c->tie_embeddings) : w->embed != NULL;
    s->head_rows = s->T < HEAD_ROWS ? s->T : HEAD_ROWS;
    s->device = o->device;
    s->L = calloc((size_t)s->nl + 1, sizeof *s->L);
    s->kv = calloc((size_t)s->nl + 1, sizeof *s->kv);
    s->cnt = calloc((size_t)o->n_seq, sizeof *s->cnt);
    s->entry = calloc((size_t)o->max_tokens, sizeof *s->entry);
    s->len = calloc((size_t)o->n_seq, sizeof *s->len);
    if (!s->L || !s->kv || !s->cnt || !s->len || !s->entry) {
        st = akv_fail(err, AKV_ERUNTIME, "out of host memory");
        goto fail;
    }
    const int D = c->head_dim;
    if (!(D == 16 || D == 32 || D == 64 || D == 80 || D == 96 || D == 128)) {
        st = akv_fail(err, AKV_EINPUT, "--backend cuda supports head_dim 16, 32, 64, 80, 96 and "
                      "128, this model has %d (use --backend cpu)", D);
        goto fail;
    }
    for (int l = 0; l < s->nl; l++) {
        dkv *d = &s->kv[l];
        d->k_bits = o->kv ? o->kv->k_bits[s->layer0 + l] : 16;
        d->v_bits = o->kv ? o->kv->v_bits[s->layer0 + l] : 16;
        if (d->k_bits == 32 || d->v_bits == 32) {
            st = akv_fail(err, AKV_EINPUT, "--kv fp32 is the CPU backend's exact reference mode "
                          "(use --backend cpu, or --kv fp16 on the GPU)");
            goto fail;
        }
        d->quant = kvl_is_quant(d->k_bits) || kvl_is_quant(d->v_bits);
        s->any_quant |= d->quant;
    }
    CUDA_CHECK(err, cudaSetDevice(o->device));
    CUDA_CHECK(err, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    for (int i = 0; i < STAGE_RING; i++)
        CUDA_CHECK(err, cudaEventCreateWithFlags(&s->ring[i].uploaded, cudaEventDisableTiming));
    s->ws_bytes = attn_ws_bytes(s);
    s->stage_bytes = stage_table_bytes(s->T, s->T < o->n_seq ? s->T : o->n_seq, s->nl);
    s->samp_ws_bytes = s->has_head ? sample_cuda_workspace_bytes(s->head_rows, c->vocab_size) : 0;
    arena a = {NULL, 0};
    layout(s, &a);
    s->arena_bytes = a.off;
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(err, cudaMemGetInfo(&free_b, &total_b));
    /* besides the arena: cuBLASLt's bf16 copy of x and workspace, the engine's two activation
     * buffers, and a margin for the CUDA context's own allocations */
    const size_t widest = (size_t)(c->intermediate > c->n_heads * c->head_dim
                                       ? c->intermediate : c->n_heads * c->head_dim);
    const size_t mm_bytes = (size_t)s->T * 2 * (widest > (size_t)c->hidden ? widest : (size_t)c->hidden) +
                            (size_t)2 * s->T * c->hidden * 4 + ((size_t)96 << 20);
    if (s->arena_bytes + mm_bytes > free_b) {
        st = akv_fail(err, AKV_ERUNTIME, "GPU %d has %.2f GiB free but this stage needs %.2f GiB "
                      "(weights %.2f, KV cache %.2f, workspace %.2f): lower --ctx or --batch, use "
                      "a lower-bit --kv, or run more ranks", o->device, free_b / 1073741824.0,
                      (s->arena_bytes + mm_bytes) / 1073741824.0, s->weight_bytes / 1073741824.0,
                      s->kv_bytes / 1073741824.0,
                      (s->arena_bytes + mm_bytes - s->weight_bytes - s->kv_bytes) / 1073741824.0);
        goto fail;
    }
    CUDA_CHECK(err, cudaMalloc(&s->arena, s->arena_bytes));
    a.base = s->arena;
    a.off = 0;
    layout(s, &a);
    CUDA_CHECK(err, cudaMallocHost((void **)&s->host_stage, s->stage_bytes * STAGE_RING));
    for (int i = 0; i < STAGE_RING; i++) s->ring[i].host = s->host_stage + s->stage_bytes * i;
    CUDA_CHECK(err, cudaMallocHost((void **)&s->host_ids, (size_t)s->head_rows * 4));
    const size_t big = (size_t)(c->intermediate > c->n_heads * c->head_dim
                                    ? c->intermediate : c->n_heads * c->head_dim);
    st = matmul_ctx_init(&s->mm, (size_t)s->T * (big > (size_t)c->hidden ? big : (size_t)c->hidden),
                         err);
    if (!st) st = upload_weights(s, w, err);
    if (!st && s->hist_len)
        CUDA_CHECK(err, cudaMemsetAsync(s->hist_len, 0, (size_t)o->n_seq * 4, s->stream));
    if (!st) CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
    if (st) goto fail;
    *out = s;
    return AKV_OK;
fail:
    scu_free(s);
    return st;
}

void scu_free(stage_cuda *s) {
    if (!s) return;
    if (s->stream) (void)cudaStreamSynchronize(s->stream);
    matmul_ctx_free(s->mm);
    if (s->arena) (void)cudaFree(s->arena);
    if (s->host_stage) (void)cudaFreeHost(s->host_stage);
    if (s->host_ids) (void)cudaFreeHost(s->host_ids);
    for (int i = 0; i < STAGE_RING; i++)
        if (s->ring[i].uploaded) (void)cudaEventDestroy(s->ring[i].uploaded);
    if (s->stream) (void)cudaStreamDestroy(s->stream);
    free(s->L);
    free(s->kv);
    free(s->cnt);
    free(s->len);
    free(s->entry);
    free(s);
}

void *scu_stream(stage_cuda *s) { return s->stream; }
int scu_has_embed(const stage_cuda *s) { return s->has_embed; }
int scu_has_head(const stage_cuda *s) { return s->has_head; }
size_t scu_kv_layer_bytes(const stage_cuda *s, int layer) { return s->kv[layer].bytes; }
size_t scu_kv_bytes(const stage_cuda *s) { return s->kv_bytes; }
size_t scu_weight_bytes(const stage_cuda *s) { return s->weight_bytes; }
size_t scu_device_bytes(const stage_cuda *s) { return s->arena_bytes; }

void scu_seq_reset(stage_cuda *s, int seq) {
    s->cnt[seq].kq = s->cnt[seq].vq = 0;
    s->len[seq] = 0;
    /* the sampling history starts empty, as on the CPU (ordered before any later sample) */
    if (s->hist_len) (void)cudaMemsetAsync(s->hist_len + seq, 0, sizeof(int32_t), s->stream);
}

akv_status scu_sync(stage_cuda *s, akv_err *err) {
    akv_status st = AKV_OK;
    CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
fail:
    return st;
}

akv_status scu_bandwidth(stage_cuda *s, double *bytes_per_s, akv_err *err) {
    akv_status st = AKV_OK;
    const size_t n = (size_t)512 << 20;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float best = 1e30f;
    CUDA_CHECK(err, cudaMalloc(&a, n));
    CUDA_CHECK(err, cudaMalloc(&b, n));
    CUDA_CHECK(err, cudaMemsetAsync(a, 1, n, s->stream));
    CUDA_CHECK(err, cudaEventCreate(&e0));
    CUDA_CHECK(err, cudaEventCreate(&e1));
    for (int i = 0; i < 4; i++) { /* the first is a warm-up */
        float ms = 0;
        CUDA_CHECK(err, cudaEventRecord(e0, s->stream));
        CUDA_CHECK(err, cudaMemcpyAsync(i & 1 ? a : b, i & 1 ? b : a, n, cudaMemcpyDeviceToDevice,
                                        s->stream));
        CUDA_CHECK(err, cudaEventRecord(e1, s->stream));
        CUDA_CHECK(err, cudaEventSynchronize(e1));
        CUDA_CHECK(err, cudaEventElapsedTime(&ms, e0, e1));
        if (i > 0 && ms < best) best = ms;
    }
    *bytes_per_s = 2.0 * (double)n / (1e-3 * (best > 0 ? best : 1e-3f));
fail:
    if (e0) (void)cudaEventDestroy(e0);
    if (e1) (void)cudaEventDestroy(e1);
    if (a) (void)cudaFree(a);
    if (b) (void)cudaFree(b);
    return st;
}

akv_status scu_act_alloc(stage_cuda *s, size_t n, float **out, akv_err *err) {
    akv_status st = AKV_OK;
    *out = NULL;
    CUDA_CHECK(err, cudaSetDevice(s->device));
    CUDA_CHECK(err, cudaMalloc((void **)out, (n ? n : 1) * sizeof(float)));
fail:
    return st;
}

void scu_act_free(stage_cuda *s, float *x) {
    (void)s;
    if (x) (void)cudaFree(x);
}

akv_status scu_copy(stage_cuda *s, float *dst, const float *src, size_t n, int to_device,
                    akv_err *err) {
    akv_status st = AKV_OK;
    CUDA_CHECK(err, cudaMemcpyAsync(dst, src, n * sizeof(float),
                                    to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                    s->stream));
    CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
fail:
    return st;
}

/* ------------------------------------------------------------------ per-call tables */

/* The next pinned table block and its device twin: waits (rarely: the block was uploaded
 * STAGE_RING calls ago) until its last upload has been read. */
static akv_status stage_begin(stage_cuda *s, uint8_t **host, uint8_t **dev, akv_err *err) {
    akv_status st = AKV_OK;
    CUDA_CHECK(err, cudaEventSynchronize(s->ring[s->ring_i].uploaded));
    *host = s->ring[s->ring_i].host;
    *dev = s->ring[s->ring_i].dev;
fail:
    return st;
}

/* Uploads the first bytes of the block stage_begin gave, and moves to the next block. */
static akv_status stage_upload(stage_cuda *s, size_t bytes, akv_err *err) {
    akv_status st = AKV_OK;
    if (bytes > s->stage_bytes) {
        st = akv_fail(err, AKV_ERUNTIME, "internal: %zu bytes of call tables exceed %zu", bytes,
                      s->stage_bytes);
        goto fail;
    }
    CUDA_CHECK(err, cudaMemcpyAsync(s->ring[s->ring_i].dev, s->ring[s->ring_i].host, bytes,
                                    cudaMemcpyHostToDevice, s->stream));
    CUDA_CHECK(err, cudaEventRecord(s->ring[s->ring_i].uploaded, s->stream));
    s->ring_i = (s->ring_i + 1) % STAGE_RING;
fail:
    return st;
}

/* Device view of (layer l, slot seq) with the host's counts before the call. */
static kvq_seq_dev seq_desc(const stage_cuda *s, int l, int seq) {
    const dkv *d = &s->kv[l];
    kvq_seq_dev r;
    memset(&r, 0, sizeof r);
    r.k_quant = kvl_is_quant(d->k_bits) ? slot_base(d, seq) + d->sl.k_quant : NULL;
    r.v_quant = kvl_is_quant(d->v_bits) ? slot_base(d, seq) + d->sl.v_quant : NULL;
    r.k_win = kwin(d, seq);
    r.v_win = vwin(d, seq);
    r.len = s->len[seq];
    r.kq = d->k_bits <= 4 ? s->cnt[seq].kq : 0;
    r.vq = d->v_bits <= 4 ? s->cnt[seq].vq : 0;
    r.k_cap = d->sl.k_cap;
    r.v_cap = d->sl.v_cap;
    return r;
}

/* ------------------------------------------------------------------ forward */

akv_status scu_embed(stage_cuda *s, const int32_t *ids, int n, float *x, akv_err *err) {
    uint8_t *h, *d;
    akv_status st = stage_begin(s, &h, &d, err);
    if (st) return st;
    memcpy(h, ids, (size_t)n * 4);
    if ((st = stage_upload(s, (size_t)n * 4, err))) return st;
    CUDA_CHECK(err, embedding_cuda(x, s->embed, s->c->vocab_size, (const int32_t *)d, n,
                                   s->c->hidden, s->stream));
fail:
    return st;
}

/* The call's tables on the device. Rows are the call's tokens; entries are its runs (a decode
 * row, or a prefill run of one sequence): s->entry[row] is the entry of the run starting there. */
typedef struct call_tabs {
    int32_t *pos;      /* [n] positions of the rows */
    int32_t *rows_seq; /* [n] slot of each row (attention_decode's slots) */
    int32_t *lens;     /* [n] position + 1 */
    kvq_seq_dev *desc; /* [nl][runs] each run's cache before the call */
    kvl_append_op *op; /* [nl][runs] its append plan (decode rows) */
    int runs;
} call_tabs;

static akv_status pack_tables(stage_cuda *s, int n, const int32_t *seq, const int32_t *pos,
                              call_tabs *t, akv_err *err) {
    uint8_t *h, *d;
    akv_status st = stage_begin(s, &h, &d, err);
    if (st) return st;
    int runs = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || seq[i] != seq[i - 1]) s->entry[i] = runs++;
    const size_t o_seq = round_up((size_t)n * 4, 16), o_len = o_seq + round_up((size_t)n * 4, 16);
    const size_t o_desc = round_up(o_len + (size_t)n * 4, 64);
    const size_t o_op = o_desc + (size_t)s->nl * runs * sizeof(kvq_seq_dev);
    const size_t total = o_op + (size_t)s->nl * runs * sizeof(kvl_append_op);
    if (total > s->stage_bytes)
        return akv_fail(err, AKV_ERUNTIME, "internal: %d runs of call tables exceed the block",
                        runs);
    memcpy(h, pos, (size_t)n * 4);
    memcpy(h + o_seq, seq, (size_t)n * 4);
    int32_t *lens = (int32_t *)(h + o_len);
    kvq_seq_dev *desc = (kvq_seq_dev *)(h + o_desc);
    kvl_append_op *op = (kvl_append_op *)(h + o_op);
    for (int i = 0; i < n; i++) lens[i] = pos[i] + 1;
    for (int l = 0; l < s->nl; l++)
        for (int i = 0; i < n; i++) {
            if (i > 0 && seq[i] == seq[i - 1]) continue;
            const kvq_seq_dev r = seq_desc(s, l, seq[i]);
            desc[(size_t)l * runs + s->entry[i]] = r;
            op[(size_t)l * runs + s->entry[i]] = kvl_append_plan(r.len, r.kq, r.vq,
                                                                 s->kv[l].k_bits,
                                                                 s->kv[l].v_bits, s->R);
        }
    t->pos = (int32_t *)d;
    t->rows_seq = (int32_t *)(d + o_seq);
    t->lens = (int32_t *)(d + o_len);
    t->desc = (kvq_seq_dev *)(d + o_desc);
    t->op = (kvl_append_op *)(d + o_op);
    t->runs = runs;
    return stage_upload(s, total, err);
}

/* Decode rows [r0, r0 + nb) of local layer l: one token per sequence. */
static akv_status decode_rows(stage_cuda *s, int l, int n, int r0, int nb, const int32_t *seq,
                              const int32_t *pos, const call_tabs *t, akv_err *err) {
    const model_config *c = s->c;
    const dkv *d = &s->kv[l];
    const size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
    const float scale = 1.0f / sqrtf((float)c->head_dim);
    akv_status st = AKV_OK;
    int max_len = 1, max_tail = 1, any_flush = 0;
    for (int i = r0; i < r0 + nb; i++) {
        const kvq_seq_dev r = seq_desc(s, l, seq[i]);
        const kvl_append_op op = kvl_append_plan(r.len, r.kq, r.vq, d->k_bits, d->v_bits, s->R);
        if (pos[i] + 1 > max_len) max_len = pos[i] + 1;
        const int tl = kvattn_tail_len(r.len, r.kq, r.vq, d->k_bits, d->v_bits);
        if (tl > max_tail) max_tail = tl;
        any_flush |= op.k_flush >= 0;
    }
    const size_t e0 = (size_t)l * t->runs + s->entry[r0]; /* decode rows: one entry each */
    kvq_append_args ap = {t->desc + e0, t->op + e0,
                          s->k + r0 * KD, s->v + r0 * KD, nb, c->n_kv_heads, c->head_dim,
                          s->G, s->R, d->k_bits, d->v_bits, any_flush};
    if (!d->quant) { /* fp16: append, then attend over the cache (the new key included) */
        if (attention_decode_workspace_bytes(nb, c->n_heads, c->n_kv_heads, c->head_dim,
                                             max_len) > s->ws_bytes && nb > 1)
            goto split;
        CUDA_CHECK(err, kvq_append_cuda(&ap, s->stream));
        attention_decode_args a = {s->att + r0 * QD, s->q + r0 * QD, kwin(d, 0), vwin(d, 0),
                                   d->sl.bytes / 2, t->rows_seq + r0, t->lens + r0, nb, max_len,
                                   c->n_heads, c->n_kv_heads, c->head_dim, scale, s->ws,
                                   s->ws_bytes};
        CUDA_CHECK(err, attention_decode_cuda(&a, s->stream));
        return AKV_OK;
    }
    kvattn_args a = {0};
    a.out = s->att + r0 * QD, a.q = s->q + r0 * QD, a.k_new = s->k + r0 * KD;
    a.v_new = s->v + r0 * KD, a.seqs = t->desc + e0, a.n_batch = nb;
    a.max_len = max_len, a.max_tail = max_tail, a.n_heads = c->n_heads;
    a.n_kv_heads = c->n_kv_heads, a.head_dim = c->head_dim, a.group = s->G;
    a.k_bits = d->k_bits, a.v_bits = d->v_bits, a.scale = scale, a.impl = KVATTN_AUTO;
    a.workspace = s->ws, a.workspace_bytes = s->ws_bytes;
    if (kvattn_workspace_bytes(&a) > s->ws_bytes && nb > 1) goto split;
    CUDA_CHECK(err, kvattn_cuda(&a, s->stream));
    CUDA_CHECK(err, kvq_append_cuda(&ap, s->stream)); /* attend first, then commit */
    return AKV_OK;
split: /* the workspace holds any single sequence: halve the batch */
    st = decode_rows(s, l, n, r0, nb / 2, seq, pos, t, err);
    if (!st) st = decode_rows(s, l, n, r0 + nb / 2, nb - nb / 2, seq, pos, t, err);
fail:
    return st;
}

/* A prefill run: rows [r0, r0 + m) of one sequence at positions len .. len + m - 1. */
static akv_status prefill_run(stage_cuda *s, int l, int n, int r0, int m, int sq,
                              const call_tabs *t, akv_err *err) {
    const model_config *c = s->c;
    const dkv *d = &s->kv[l];
    const size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
    const float scale = 1.0f / sqrtf((float)c->head_dim);
    const int len = s->len[sq];
    akv_status st = AKV_OK;
    if (!d->quant) { /* fp16: slot = position */
        uint16_t *kw = kwin(d, sq), *vw = vwin(d, sq);
        CUDA_CHECK(err, f32_to_f16_cuda(kw + (size_t)len * KD, s->k + r0 * KD, (size_t)m * KD,
                                        s->stream));
        CUDA_CHECK(err, f32_to_f16_cuda(vw + (size_t)len * KD, s->v + r0 * KD, (size_t)m * KD,
                                        s->stream));
        CUDA_CHECK(err, attention_prefill_cuda(s->att + r0 * QD, s->q + r0 * QD, kw, vw, m, len,
                                               c->n_heads, c->n_kv_heads, c->head_dim, scale,
                                               s->stream));
        return AKV_OK;
    }
    const kvq_seq_dev *desc = t->desc + (size_t)l * t->runs + s->entry[r0];
    CUDA_CHECK(err, kvq_dense_cuda(s->kd, s->vd, desc, len, c->n_kv_heads, c->head_dim, s->G,
                                   d->k_bits, d->v_bits, s->stream));
    CUDA_CHECK(err, f32_to_f16_cuda(s->kd + (size_t)len * KD, s->k + r0 * KD, (size_t)m * KD,
                                    s->stream));
    CUDA_CHECK(err, f32_to_f16_cuda(s->vd + (size_t)len * KD, s->v + r0 * KD, (size_t)m * KD,
                                    s->stream));
    CUDA_CHECK(err, attention_prefill_cuda(s->att + r0 * QD, s->q + r0 * QD, s->kd, s->vd, m, len,
                                           c->n_heads, c->n_kv_heads, c->head_dim, scale,
                                           s->stream));
    int kq = s->cnt[sq].kq, vq = s->cnt[sq].vq, kq1 = kq, vq1 = vq;
    kvl_advance(len, m, 1, 1, s->R, &kq1, &vq1); /* both as if quantized; a 16-bit one ignores it */
    kvq_commit_args ca;
    ca.seq = desc, ca.k = s->kd, ca.v = s->vd;
    ca.len_new = len + m;
    ca.kq = d->k_bits <= 4 ? kq : 0, ca.kq_new = d->k_bits <= 4 ? kq1 : 0;
    ca.vq = d->v_bits <= 4 ? vq : 0, ca.vq_new = d->v_bits <= 4 ? vq1 : 0;
    ca.k_win0 = ca.kq_new > len ? ca.kq_new : len; /* rows before len are in the window */
    ca.v_win0 = ca.vq_new > len ? ca.vq_new : len;
    ca.n_kv_heads = c->n_kv_heads, ca.head_dim = c->head_dim, ca.group = s->G;
    ca.k_bits = d->k_bits, ca.v_bits = d->v_bits;
    CUDA_CHECK(err, kvq_commit_cuda(&ca, s->stream));
fail:
    return st;
}

static akv_status mm(stage_cuda *s, float *out, const float *x, const uint16_t *w,
                     const float *b, int n, int k, int m, akv_err *err) {
    return matmul_cuda(s->mm, out, x, w, b, n, k, m, s->stream, err);
}

static akv_status layer_forward(stage_cuda *s, int l, int n, const int32_t *seq,
                                const int32_t *pos, const call_tabs *t, float *x,
                                akv_err *err) {
    const model_config *c = s->c;
    const dlayer *L = &s->L[l];
    const int H = c->hidden, QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
    const int I = c->intermediate;
    akv_status st = AKV_OK;
    CUDA_CHECK(err, rmsnorm_cuda(s->xn, x, L->attn_norm, n, H, c->rms_eps, s->stream));
    if ((st = mm(s, s->q, s->xn, L->wq, L->bq, n, H, QD, err))) goto fail;
    if ((st = mm(s, s->k, s->xn, L->wk, L->bk, n, H, KD, err))) goto fail;
    if ((st = mm(s, s->v, s->xn, L->wv, L->bv, n, H, KD, err))) goto fail;
    CUDA_CHECK(err, rope_cuda(s->q, t->pos, n, c->n_heads, c->head_dim, s->inv_freq, s->stream));
    CUDA_CHECK(err, rope_cuda(s->k, t->pos, n, c->n_kv_heads, c->head_dim, s->inv_freq,
                              s->stream));
    /* the cache stores fp16: round first, so a key is the same from the call or the cache */
    CUDA_CHECK(err, kvq_round_f16_cuda(s->k, (size_t)n * KD, s->stream));
    CUDA_CHECK(err, kvq_round_f16_cuda(s->v, (size_t)n * KD, s->stream));
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && seq[j] == seq[i]) j++;
        if (j - i > 1) { /* a prefill run */
            if ((st = prefill_run(s, l, n, i, j - i, seq[i], t, err))) goto fail;
            i = j;
            continue;
        }
        int e = j; /* a block of decode rows: consecutive runs of one token */
        while (e < n && (e + 1 >= n || seq[e + 1] != seq[e])) e++;
        if ((st = decode_rows(s, l, n, i, e - i, seq, pos, t, err))) goto fail;
        i = e;
    }
    if ((st = mm(s, s->tmp, s->att, L->wo, L->bo, n, QD, H, err))) goto fail;
    CUDA_CHECK(err, add_cuda(x, s->tmp, (size_t)n * H, s->stream));
    CUDA_CHECK(err, rmsnorm_cuda(s->xn, x, L->mlp_norm, n, H, c->rms_eps, s->stream));
    if ((st = mm(s, s->gate, s->xn, L->wg, NULL, n, H, I, err))) goto fail;
    if ((st = mm(s, s->up, s->xn, L->wu, NULL, n, H, I, err))) goto fail;
    CUDA_CHECK(err, swiglu_cuda(s->gate, s->gate, s->up, (size_t)n * I, s->stream));
    if ((st = mm(s, s->tmp, s->gate, L->wd, NULL, n, I, H, err))) goto fail;
    CUDA_CHECK(err, add_cuda(x, s->tmp, (size_t)n * H, s->stream));
fail:
    return st;
}

akv_status scu_forward(stage_cuda *s, int n, const int32_t *seq, const int32_t *pos, float *x,
                       akv_err *err) {
    call_tabs t;
    akv_status st = pack_tables(s, n, seq, pos, &t, err);
    for (int l = 0; !st && l < s->nl; l++) st = layer_forward(s, l, n, seq, pos, &t, x, err);
    if (st) return st;
    for (int i = 0; i < n;) { /* the host mirror of every sequence's counts */
        int j = i;
        while (j < n && seq[j] == seq[i]) j++;
        kvl_advance(s->len[seq[i]], j - i, 1, 1, s->R, &s->cnt[seq[i]].kq, &s->cnt[seq[i]].vq);
        s->len[seq[i]] = pos[j - 1] + 1;
        i = j;
    }
    return AKV_OK;
}

int scu_kv_dump(stage_cuda *s, int layer, int seq, uint16_t *k, uint16_t *v, akv_err *err) {
    const dkv *d = &s->kv[layer];
    const int len = s->len[seq];
    const size_t KD = (size_t)s->c->n_kv_heads * s->c->head_dim, n = (size_t)len * KD;
    akv_status st = AKV_OK;
    const uint16_t *ks = kwin(d, seq), *vs = vwin(d, seq);
    if (d->quant) { /* expand into the dense scratch first */
        uint8_t *h, *dv;
        if ((st = stage_begin(s, &h, &dv, err))) return -1;
        const kvq_seq_dev r = seq_desc(s, layer, seq);
        memcpy(h, &r, sizeof r);
        if ((st = stage_upload(s, sizeof r, err))) return -1;
        CUDA_CHECK(err, kvq_dense_cuda(s->kd, s->vd, (const kvq_seq_dev *)dv, len,
                                       s->c->n_kv_heads, s->c->head_dim, s->G, d->k_bits,
                                       d->v_bits, s->stream));
        ks = s->kd, vs = s->vd;
    }
    CUDA_CHECK(err, cudaMemcpyAsync(k, ks, n * 2, cudaMemcpyDeviceToHost, s->stream));
    CUDA_CHECK(err, cudaMemcpyAsync(v, vs, n * 2, cudaMemcpyDeviceToHost, s->stream));
    CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
    return len;
fail:
    return -1;
}

/* ------------------------------------------------------------------ head and sampling */

akv_status scu_head(stage_cuda *s, int n, const float *x, float *logits, akv_err *err) {
    const model_config *c = s->c;
    const int H = c->hidden, V = c->vocab_size;
    akv_status st = AKV_OK;
    for (int i0 = 0; i0 < n; i0 += s->head_rows) {
        const int m = n - i0 < s->head_rows ? n - i0 : s->head_rows;
        CUDA_CHECK(err, rmsnorm_cuda(s->xg, x + (size_t)i0 * H, s->final_norm, m, H, c->rms_eps,
                                     s->stream));
        if ((st = mm(s, s->logits, s->xg, s->lm_head, NULL, m, H, V, err))) goto fail;
        CUDA_CHECK(err, cudaMemcpyAsync(logits + (size_t)i0 * V, s->logits,
                                        (size_t)m * V * sizeof(float), cudaMemcpyDeviceToHost,
                                        s->stream));
        CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
    }
fail:
    return st;
}

akv_status scu_hist_set(stage_cuda *s, int slot, const int32_t *ids, int n, akv_err *err) {
    akv_status st = AKV_OK;
    if (!s->has_head) return akv_fail(err, AKV_ERUNTIME, "stage has no LM head");
    int32_t nn = n;
    CUDA_CHECK(err, cudaMemcpyAsync(s->hist + (size_t)slot * s->o.ctx, ids, (size_t)n * 4,
                                    cudaMemcpyHostToDevice, s->stream));
    CUDA_CHECK(err, cudaMemcpyAsync(s->hist_len + slot, &nn, 4, cudaMemcpyHostToDevice,
                                    s->stream));
    CUDA_CHECK(err, cudaStreamSynchronize(s->stream)); /* the sources are pageable */
fail:
    return st;
}

akv_status scu_sample(stage_cuda *s, int n_rows, const int32_t *rows, const int32_t *slots,
                      const sampler_params *const *sp, const uint64_t *rng, const float *x,
                      int32_t *ids_out, akv_err *err) {
    const model_config *c = s->c;
    const int H = c->hidden, V = c->vocab_size;
    akv_status st = AKV_OK;
    if (!s->has_head) return akv_fail(err, AKV_ERUNTIME, "stage has no LM head");
    for (int r0 = 0; r0 < n_rows; r0 += s->head_rows) {
        const int m = n_rows - r0 < s->head_rows ? n_rows - r0 : s->head_rows;
        int contiguous = 1;
        for (int r = 0; r < m; r++) contiguous &= rows[r0 + r] == rows[r0] + r;
        const float *xr = x + (size_t)rows[r0] * H;
        if (!contiguous) { /* gather the rows (the last token of each run) */
            for (int r = 0; r < m; r++)
                CUDA_CHECK(err, cudaMemcpyAsync(s->xg + (size_t)r * H, x + (size_t)rows[r0 + r] * H,
                                                (size_t)H * sizeof(float),
                                                cudaMemcpyDeviceToDevice, s->stream));
            xr = s->xg;
        }
        CUDA_CHECK(err, rmsnorm_cuda(s->xg, xr, s->final_norm, m, H, c->rms_eps, s->stream));
        if ((st = mm(s, s->logits, s->xg, s->lm_head, NULL, m, H, V, err))) goto fail;
        /* every row through sample_cuda, greedy ones too (first index of the max, NaN never
         * wins, the id appended to the slot's history: the CPU stage's semantics) */
        uint8_t *h, *d;
        if ((st = stage_begin(s, &h, &d, err))) goto fail;
        sample_params_dev *pp = (sample_params_dev *)h;
        const size_t o_rng = round_up((size_t)m * sizeof *pp, 64);
        const size_t o_slot = o_rng + (size_t)m * 8, total = o_slot + (size_t)m * 4;
        uint64_t *rr = (uint64_t *)(h + o_rng);
        int32_t *ss = (int32_t *)(h + o_slot);
        for (int r = 0; r < m; r++) {
            const sampler_params *p = sp[r0 + r];
            sample_params_dev q = {0.0f, 0, 1.0f, 0.0f, 1.0f, 0};
            if (p) {
                q.temperature = p->temperature, q.top_k = p->top_k, q.top_p = p->top_p;
                q.min_p = p->min_p, q.repetition_penalty = p->repetition_penalty;
                q.seed = p->seed;
            }
            pp[r] = q;
            rr[r] = rng[r0 + r];
            ss[r] = slots[r0 + r];
        }
        if ((st = stage_upload(s, total, err))) goto fail;
        sample_cuda_args a;
        memset(&a, 0, sizeof a);
        a.out = s->ids_out, a.logits = s->logits, a.n_rows = m, a.vocab = V;
        a.params = (const sample_params_dev *)d, a.rng = (const uint64_t *)(d + o_rng);
        a.hist = s->hist, a.hist_len = s->hist_len, a.row_slot = (const int32_t *)(d + o_slot);
        a.hist_cap = s->o.ctx, a.workspace = s->samp_ws, a.workspace_bytes = s->samp_ws_bytes;
        CUDA_CHECK(err, sample_cuda(&a, s->stream));
        CUDA_CHECK(err, cudaMemcpyAsync(s->host_ids, s->ids_out, (size_t)m * 4,
                                        cudaMemcpyDeviceToHost, s->stream));
        CUDA_CHECK(err, cudaStreamSynchronize(s->stream));
        memcpy(ids_out + r0, s->host_ids, (size_t)m * 4);
    }
fail:
    return st;
}

#else /* no CUDA in this build */

struct stage_cuda {
    int unused;
};

int scu_devices(void) { return 0; }

akv_status scu_init(stage_cuda **out, const model_config *c, const stage_weights *w,
                    const stage_opts *o, akv_err *err) {
    (void)c, (void)w, (void)o;
    *out = NULL;
    return akv_fail(err, AKV_EINPUT, "--backend cuda: this build has no CUDA (rebuild where nvcc "
                    "is installed, or use --backend cpu)");
}

void scu_free(stage_cuda *s) { free(s); }
void *scu_stream(stage_cuda *s) { return NULL; }
int scu_has_embed(const stage_cuda *s) { return 0; }
int scu_has_head(const stage_cuda *s) { return 0; }
size_t scu_kv_layer_bytes(const stage_cuda *s, int layer) { return 0; }
size_t scu_kv_bytes(const stage_cuda *s) { return 0; }
size_t scu_weight_bytes(const stage_cuda *s) { return 0; }
size_t scu_device_bytes(const stage_cuda *s) { return 0; }
void scu_seq_reset(stage_cuda *s, int seq) {}
int scu_kv_dump(stage_cuda *s, int layer, int seq, uint16_t *k, uint16_t *v, akv_err *err) {
    akv_fail(err, AKV_ERUNTIME, "this build has no CUDA");
    return -1;
}

static akv_status none(akv_err *err) {
    return akv_fail(err, AKV_ERUNTIME, "this build has no CUDA");
}

akv_status scu_act_alloc(stage_cuda *s, size_t n, float **out, akv_err *err) { return none(err); }
akv_status scu_sync(stage_cuda *s, akv_err *err) { return none(err); }
akv_status scu_bandwidth(stage_cuda *s, double *bytes_per_s, akv_err *err) { return none(err); }
void scu_act_free(stage_cuda *s, float *x) {}
akv_status scu_copy(stage_cuda *s, float *dst, const float *src, size_t n, int to_device,
                    akv_err *err) { return none(err); }
akv_status scu_embed(stage_cuda *s, const int32_t *ids, int n, float *x, akv_err *err) {
    return none(err);
}
akv_status scu_forward(stage_cuda *s, int n, const int32_t *seq, const int32_t *pos, float *x,
                       akv_err *err) { return none(err); }
akv_status scu_head(stage_cuda *s, int n, const float *x, float *logits, akv_err *err) {
    return none(err);
}
akv_status scu_sample(stage_cuda *s, int n_rows, const int32_t *rows, const int32_t *slots,
                      const sampler_params *const *sp, const uint64_t *rng, const float *x,
                      int32_t *ids_out, akv_err *err) { return none(err); }
akv_status scu_hist_set(stage_cuda *s, int slot, const int32_t *ids, int n, akv_err *err) {
    return none(err);
}

#endif
