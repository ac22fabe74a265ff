/* cuda_emu.c — the host-only CUDA stand-in of tests/emu/cuda_runtime.h: the runtime calls the
 * CUDA stage makes, and every launcher it calls, each computed by the CPU twin the real kernel
 * is tested against (so a difference between the emulated CUDA stage and the CPU stage is a bug
 * of the stage's own logic, not of a kernel). Streams run synchronously; "device" memory is
 * host memory poisoned with 0xff bytes (NaN) at allocation. The launchers check the
 * preconditions the real ones check (alignment, sizes) and return cudaErrorInvalidValue with
 * one stderr line, as AKV_REQUIRE does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_runtime.h"
#include "kernels.h"
#include "kernels_cuda.h"
#include "kvquant.h"
#include "sample_cuda.h"
#include "sampling.h"

size_t emu_free_bytes = (size_t)64 << 30;
long emu_host_syncs = 0;
int emu_rounded_dense = 0;


#define REQUIRE(cond)                                                                             \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s: precondition failed: %s\n", __func__, #cond);                    \
            return cudaErrorInvalidValue;                                                         \
        }                                                                                         \
    } while (0)

/* ---------------------------------------------------------------- runtime */

struct emu_stream { int unused; };
struct emu_event { double t; }; /* host time of the last record (streams are synchronous) */

const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : e == cudaErrorInvalidValue ? "invalid argument"
                                         : "emulated CUDA error";
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
/* One GPU shared by every process, or with ASYMKV_EMU_GPU_PER_RANK=1 one per process (its
 * UUID carries the pid), which makes the pipeline choose NCCL (tests/emu/nccl.h). */
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    memset(p, 0, sizeof *p);
    memcpy(p->uuid.bytes, "asymkv-emu-gpu-0", 16);
    const char *own = getenv("ASYMKV_EMU_GPU_PER_RANK");
    if (own && *own == '1') {
        const unsigned pid = (unsigned)getpid();
        memcpy(p->uuid.bytes + 12, &pid, 4);
    }
    return d == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (bytes > emu_free_bytes) return cudaErrorMemoryAllocation;
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes);
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMallocHost(void **p, size_t bytes) { return cudaMalloc(p, bytes); }
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *free_b = emu_free_bytes;
    *total_b = emu_free_bytes;
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k,
                            cudaStream_t s) {
    (void)k;
    REQUIRE(s != NULL && (n == 0 || (dst && src)));
    memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s) {
    REQUIRE(s != NULL);
    memset(dst, v, n);
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = calloc(1, sizeof **s);
    return *s ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    emu_host_syncs++;
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    *e = calloc(1, sizeof **e);
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) { free(e); return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    e->t = akv_now_s();
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventQuery(cudaEvent_t e) {
    (void)e;
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)e, (void)flags;
    return s ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    *ms = (float)(1e3 * (end->t - start->t));
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { (void)e; return cudaSuccess; }

/* ---------------------------------------------------------------- elementwise */

static float *f32_alloc(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) abort();
    return p;
}

cudaError_t embedding_cuda(float *out, const uint16_t *table, int vocab, const int32_t *ids, int n,
                           int dim, cudaStream_t stream) {
    REQUIRE(stream && out && table && ids && n >= 0);
    for (int i = 0; i < n; i++)
        for (int d = 0; d < dim; d++)
            out[(size_t)i * dim + d] = ids[i] < 0 || ids[i] >= vocab
                                           ? NAN
                                           : akv_bf16_to_f32(table[(size_t)ids[i] * dim + d]);
    return cudaSuccess;
}

cudaError_t rmsnorm_cuda(float *out, const float *x, const float *w, int n, int dim, float eps,
                         cudaStream_t stream) {
    REQUIRE(stream && out && x && w);
    rmsnorm_ref(out, x, w, n, dim, eps);
    return cudaSuccess;
}

cudaError_t rope_cuda(float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                      const float *inv_freq, cudaStream_t stream) {
    REQUIRE(stream && x && pos && inv_freq && head_dim % 2 == 0);
    rope_ref(x, pos, n, n_heads, head_dim, inv_freq);
    return cudaSuccess;
}

cudaError_t swiglu_cuda(float *out, const float *gate, const float *up, size_t n,
                        cudaStream_t stream) {
    REQUIRE(stream);
    swiglu_ref(out, gate, up, n);
    return cudaSuccess;
}

cudaError_t add_cuda(float *x, const float *y, size_t n, cudaStream_t stream) {
    REQUIRE(stream);
    add_ref(x, y, n);
    return cudaSuccess;
}

cudaError_t argmax_cuda(int32_t *out, const float *x, int n_rows, int n, cudaStream_t stream) {
    REQUIRE(stream);
    for (int r = 0; r < n_rows; r++) out[r] = argmax_ref(x + (size_t)r * n, n);
    return cudaSuccess;
}

cudaError_t kvq_round_f16_cuda(float *x, size_t n, cudaStream_t stream) {
    REQUIRE(stream);
    kvq_round_f16(x, n);
    return cudaSuccess;
}

cudaError_t f32_to_f16_cuda(uint16_t *dst, const float *src, size_t n, cudaStream_t stream) {
    REQUIRE(stream);
    for (size_t i = 0; i < n; i++) dst[i] = akv_f32_to_f16(src[i]);
    return cudaSuccess;
}

/* ---------------------------------------------------------------- matmul */

struct emu_matmul_ctx {
    size_t cap;
};

akv_status matmul_ctx_init(matmul_ctx **out, size_t max_x_elems, akv_err *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return akv_fail(err, AKV_ERUNTIME, "out of memory");
    (*out)->cap = max_x_elems;
    return AKV_OK;
}

void matmul_ctx_free(matmul_ctx *ctx) { free(ctx); }

/* fp32 math on the bf16 weights (the real kernel also rounds x to bf16: left out here so the
 * comparison with the CPU stage isolates the stage's logic). */
akv_status matmul_cuda(matmul_ctx *ctx, float *out, const float *x, const uint16_t *w,
                       const float *bias, int n, int k, int m, cudaStream_t stream, akv_err *err) {
    if (!stream || (size_t)n * k > ctx->cap)
        return akv_fail(err, AKV_ERUNTIME, "matmul_cuda (emulated): n*k %zu over the context's %zu",
                        (size_t)n * k, ctx->cap);
    float *wf = f32_alloc((size_t)m * k);
    for (size_t i = 0; i < (size_t)m * k; i++) wf[i] = akv_bf16_to_f32(w[i]);
    matmul_ref(out, x, wf, bias, n, k, m);
    free(wf);
    return AKV_OK;
}

/* ---------------------------------------------------------------- fp16 attention */

static float *f16_rows(const uint16_t *src, size_t rows, size_t row, size_t stride) {
    float *f = f32_alloc(rows * row);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < row; i++) f[r * row + i] = akv_f16_to_f32(src[r * stride + i]);
    return f;
}

static int head_dim_ok(int d) {
    return d == 16 || d == 32 || d == 64 || d == 80 || d == 96 || d == 128;
}

/* The view kvq_dense_cuda last expanded (its dense rows are what attention_prefill then gets). */
static struct {
    const uint16_t *k, *v;
    kvq_view view;
} dense_src;

/* A 16-bit view over dense fp16 rows [len][H][D] (window slot = position). */
static kvq_view f16_view(const uint16_t *k, const uint16_t *v, int len, int cap, int H, int D) {
    kvq_view w;
    memset(&w, 0, sizeof w);
    w.n_kv_heads = H, w.head_dim = D, w.group = 32, w.k_bits = 16, w.v_bits = 16;
    w.len = len, w.k_cap = w.v_cap = cap > 0 ? cap : 1, w.k_win = k, w.v_win = v;
    return w;
}

/* Attention is computed as the CPU backend computes it (kvattn_ref over a view of the stored
 * positions plus the new rows; attention_ref, the fp16 kernels' twin, is the same function
 * with another summation order): over the compressed cache itself when the rows are the ones
 * kvq_dense_cuda just expanded, so the emulated stage reproduces the CPU backend's arithmetic
 * and a difference can only come from the stage's logic. */
cudaError_t attention_prefill_cuda(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                                   int n_q, int pos0, int n_heads, int n_kv_heads, int head_dim,
                                   float scale, cudaStream_t stream) {
    REQUIRE(stream && out && q && k && v && n_q >= 0 && pos0 >= 0);
    REQUIRE(n_heads % n_kv_heads == 0 && head_dim_ok(head_dim));
    REQUIRE(((uintptr_t)k | (uintptr_t)v) % 16 == 0 && ((uintptr_t)q | (uintptr_t)out) % 8 == 0);
    const size_t row = (size_t)n_kv_heads * head_dim;
    kvq_view w = k == dense_src.k && v == dense_src.v && dense_src.view.len == pos0 &&
                         !emu_rounded_dense
                     ? dense_src.view
                     : f16_view(k, v, pos0, pos0 + n_q, n_kv_heads, head_dim);
    float *kn = f16_rows(k + (size_t)pos0 * row, (size_t)n_q, row, row);
    float *vn = f16_rows(v + (size_t)pos0 * row, (size_t)n_q, row, row);
    float *scratch = f32_alloc(kvattn_scratch_floats(pos0 + n_q, head_dim));
    kvattn_ref(out, q, n_q, n_heads, &w, kn, vn, scale, scratch);
    free(kn), free(vn), free(scratch);
    return cudaSuccess;
}

size_t attention_decode_workspace_bytes(int n_batch, int n_heads, int n_kv_heads, int head_dim,
                                        int max_len) {
    if (n_batch <= 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || max_len <= 0) return 0;
    return (size_t)n_batch * n_heads * (head_dim + 2) * sizeof(float) * 8; /* a token figure */
}

cudaError_t attention_decode_cuda(const attention_decode_args *a, cudaStream_t stream) {
    REQUIRE(stream && a && a->out && a->q && a->k && a->v && a->lens && a->workspace);
    REQUIRE(head_dim_ok(a->head_dim) && a->seq_stride % 8 == 0);
    REQUIRE(((uintptr_t)a->k | (uintptr_t)a->v) % 16 == 0);
    REQUIRE(a->workspace_bytes >= attention_decode_workspace_bytes(
                                      a->n_batch, a->n_heads, a->n_kv_heads, a->head_dim,
                                      a->max_len));
    const size_t row = (size_t)a->n_kv_heads * a->head_dim, qrow = (size_t)a->n_heads * a->head_dim;
    for (int b = 0; b < a->n_batch; b++) {
        const int len = a->lens[b];
        float *o = a->out + b * qrow;
        if (len < 1 || len > a->max_len) {
            for (size_t i = 0; i < qrow; i++) o[i] = NAN;
            continue;
        }
        const size_t slot = a->slots ? (size_t)a->slots[b] : (size_t)b;
        const uint16_t *kb = a->k + slot * a->seq_stride, *vb = a->v + slot * a->seq_stride;
        kvq_view w = f16_view(kb, vb, len - 1, len, a->n_kv_heads, a->head_dim);
        float *kn = f16_rows(kb + (size_t)(len - 1) * row, 1, row, row);
        float *vn = f16_rows(vb + (size_t)(len - 1) * row, 1, row, row);
        float *scratch = f32_alloc(kvattn_scratch_floats(len, a->head_dim));
        kvattn_ref(o, a->q + b * qrow, 1, a->n_heads, &w, kn, vn, a->scale, scratch);
        free(kn), free(vn), free(scratch);
    }
    return cudaSuccess;
}

/* ---------------------------------------------------------------- compressed cache */

static kvq_view view_of(const kvq_seq_dev *s, int len, int H, int D, int G, int kb, int vb) {
    kvq_view v;
    memset(&v, 0, sizeof v);
    v.n_kv_heads = H, v.head_dim = D, v.group = G, v.k_bits = kb, v.v_bits = vb;
    v.len = len, v.kq = s->kq, v.vq = s->vq, v.k_cap = s->k_cap, v.v_cap = s->v_cap;
    v.k_quant = s->k_quant, v.v_quant = s->v_quant, v.k_win = s->k_win, v.v_win = s->v_win;
    return v;
}

static int width_ok(int b) { return b == 16 || b == 4 || b == 2 || b == 1; }

size_t kvattn_workspace_bytes(const kvattn_args *a) {
    if (!a || a->n_batch < 0 || !width_ok(a->k_bits) || !width_ok(a->v_bits) ||
        (a->v_bits != 16 && a->head_dim % a->group)) return 0;
    return (size_t)(a->n_batch ? a->n_batch : 1) * a->n_heads * (a->head_dim + 2) * 4 * 16;
}

cudaError_t kvattn_cuda(const kvattn_args *a, cudaStream_t stream) {
    REQUIRE(stream && a && a->out && a->q && a->k_new && a->v_new && a->seqs && a->workspace);
    REQUIRE(width_ok(a->k_bits) && width_ok(a->v_bits));
    REQUIRE(a->workspace_bytes >= kvattn_workspace_bytes(a));
    REQUIRE(((uintptr_t)a->workspace | (uintptr_t)a->q | (uintptr_t)a->out) % 16 == 0);
    const int H = a->n_kv_heads, D = a->head_dim;
    const size_t qrow = (size_t)a->n_heads * D, krow = (size_t)H * D;
    for (int b = 0; b < a->n_batch; b++) {
        const kvq_seq_dev *s = &a->seqs[b];
        float *o = a->out + b * qrow;
        const int tail = kvattn_tail_len(s->len, s->kq, s->vq, a->k_bits, a->v_bits);
        if (s->len + 1 > a->max_len || (a->max_tail > 0 && tail > a->max_tail) ||
            s->kq > s->len || s->vq > s->len) {
            for (size_t i = 0; i < qrow; i++) o[i] = NAN;
            continue;
        }
        kvq_view v = view_of(s, s->len, H, D, a->group, a->k_bits, a->v_bits);
        float *scratch = f32_alloc(kvattn_scratch_floats(s->len + 1, D));
        kvattn_ref(o, a->q + b * qrow, 1, a->n_heads, &v, a->k_new + b * krow,
                   a->v_new + b * krow, a->scale, scratch);
        free(scratch);
    }
    return cudaSuccess;
}

/* Key block starting at p0 of head g, channel c, from rows x(i) (fp16 values). */
static void quant_key(const kvq_seq_dev *s, const uint16_t *rows, size_t row_stride, int p0, int g,
                      int c, int H, int D, int G, int bits, int from_window) {
    float x[128];
    for (int i = 0; i < G; i++) {
        const int p = p0 + i;
        const size_t r = from_window ? (size_t)(p % s->k_cap) : (size_t)p;
        x[i] = akv_f16_to_f32(rows[r * row_stride + (size_t)g * D + c]);
    }
    kvq_put_key_group(s->k_quant, bits, H, D, G, p0 / G, g, c, x);
}

static void quant_value(const kvq_seq_dev *s, const uint16_t *row, int p, int g, int j, int H,
                        int D, int G, int bits) {
    float x[128];
    for (int i = 0; i < G; i++) x[i] = akv_f16_to_f32(row[(size_t)g * D + (size_t)j * G + i]);
    kvq_put_value_group(s->v_quant, bits, H, D, G, p, g, j, x);
}

cudaError_t kvq_append_cuda(const kvq_append_args *a, cudaStream_t stream) {
    REQUIRE(stream && a && a->seqs && a->ops && a->k && a->v);
    REQUIRE(width_ok(a->k_bits) && width_ok(a->v_bits));
    REQUIRE(a->residual >= a->group && a->residual % a->group == 0);
    const int H = a->n_kv_heads, D = a->head_dim, G = a->group;
    const size_t row = (size_t)H * D;
    for (int b = 0; b < a->n_batch; b++) {
        const kvq_seq_dev *s = &a->seqs[b];
        const kvl_append_op op = a->ops[b];
        if (a->v_bits <= 4 && op.v_flush >= 0) {
            const uint16_t *vr = s->v_win + (size_t)(op.v_flush % s->v_cap) * row;
            for (int g = 0; g < H; g++)
                for (int j = 0; j < D / G; j++) quant_value(s, vr, op.v_flush, g, j, H, D, G, a->v_bits);
        }
        uint16_t *kw = s->k_win + (size_t)(op.pos % s->k_cap) * row;
        uint16_t *vw = s->v_win + (size_t)(op.pos % s->v_cap) * row;
        for (size_t i = 0; i < row; i++) {
            kw[i] = akv_f32_to_f16(a->k[b * row + i]);
            vw[i] = akv_f32_to_f16(a->v[b * row + i]);
        }
        if (a->k_bits <= 4 && op.k_flush >= 0)
            for (int blk = 0; blk < a->residual / G; blk++)
                for (int g = 0; g < H; g++)
                    for (int c = 0; c < D; c++)
                        quant_key(s, s->k_win, row, op.k_flush + blk * G, g, c, H, D, G,
                                  a->k_bits, 1);
    }
    return cudaSuccess;
}

cudaError_t kvq_dense_cuda(uint16_t *k, uint16_t *v, const kvq_seq_dev *seq, int len,
                           int n_kv_heads, int head_dim, int group, int k_bits, int v_bits,
                           cudaStream_t stream) {
    REQUIRE(stream && k && v && seq && len >= 0 && width_ok(k_bits) && width_ok(v_bits));
    REQUIRE(seq->kq <= len && seq->vq <= len);
    if (len == 0) return cudaSuccess;
    const size_t n = (size_t)len * n_kv_heads * head_dim;
    kvq_view vw = view_of(seq, len, n_kv_heads, head_dim, group, k_bits, v_bits);
    float *kf = f32_alloc(n), *vf = f32_alloc(n);
    kvq_view_dequantize(&vw, kf, vf);
    for (size_t i = 0; i < n; i++) k[i] = akv_f32_to_f16(kf[i]), v[i] = akv_f32_to_f16(vf[i]);
    free(kf), free(vf);
    dense_src.k = k, dense_src.v = v, dense_src.view = vw;
    return cudaSuccess;
}

cudaError_t kvq_commit_cuda(const kvq_commit_args *a, cudaStream_t stream) {
    REQUIRE(stream && a && a->seq && a->k && a->v);
    REQUIRE(width_ok(a->k_bits) && width_ok(a->v_bits));
    REQUIRE(0 <= a->kq && a->kq <= a->kq_new && a->kq % a->group == 0 &&
            a->kq_new % a->group == 0 && a->kq_new <= a->len_new);
    REQUIRE(0 <= a->vq && a->vq <= a->vq_new && a->vq_new <= a->len_new);
    REQUIRE(0 <= a->k_win0 && a->k_win0 <= a->len_new && 0 <= a->v_win0 &&
            a->v_win0 <= a->len_new);
    const kvq_seq_dev *s = a->seq;
    const int H = a->n_kv_heads, D = a->head_dim, G = a->group;
    const size_t row = (size_t)H * D;
    if (a->k_bits <= 4)
        for (int p0 = a->kq; p0 < a->kq_new; p0 += G)
            for (int g = 0; g < H; g++)
                for (int c = 0; c < D; c++)
                    quant_key(s, a->k, row, p0, g, c, H, D, G, a->k_bits, 0);
    if (a->v_bits <= 4)
        for (int p = a->vq; p < a->vq_new; p++)
            for (int g = 0; g < H; g++)
                for (int j = 0; j < D / G; j++)
                    quant_value(s, a->v + (size_t)p * row, p, g, j, H, D, G, a->v_bits);
    for (int p = a->k_win0; p < a->len_new; p++)
        memcpy(s->k_win + (size_t)(p % s->k_cap) * row, a->k + (size_t)p * row, row * 2);
    for (int p = a->v_win0; p < a->len_new; p++)
        memcpy(s->v_win + (size_t)(p % s->v_cap) * row, a->v + (size_t)p * row, row * 2);
    return cudaSuccess;
}

/* ---------------------------------------------------------------- sampling */

size_t sample_cuda_workspace_bytes(int n_rows, int vocab) {
    return (size_t)n_rows * vocab * sizeof(float);
}

cudaError_t sample_cuda(const sample_cuda_args *a, cudaStream_t stream) {
    REQUIRE(stream && a && a->out && a->logits && a->params && a->rng);
    REQUIRE(a->workspace_bytes >= sample_cuda_workspace_bytes(a->n_rows, a->vocab));
    float *scratch = f32_alloc(sampler_scratch_floats(a->vocab));
    for (int r = 0; r < a->n_rows; r++) {
        const sample_params_dev *d = &a->params[r];
        sampler_params p = {d->temperature, d->top_k, d->top_p, d->min_p, d->repetition_penalty,
                            d->seed};
        const int slot = a->row_slot ? a->row_slot[r] : r;
        int32_t *h = a->hist ? a->hist + (size_t)slot * a->hist_cap : NULL;
        int len = a->hist ? a->hist_len[slot] : 0;
        len = len < 0 ? 0 : len > a->hist_cap ? a->hist_cap : len;
        uint64_t st = a->rng[r];
        const int32_t t = sample_token(a->logits + (size_t)r * a->vocab, a->vocab, &p, h, len, &st,
                                       scratch);
        a->out[r] = t;
        if (h && len < a->hist_cap) {
            h[len] = t;
            a->hist_len[slot] = len + 1;
        }
    }
    free(scratch);
    return cudaSuccess;
}
