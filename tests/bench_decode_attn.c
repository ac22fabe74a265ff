/* bench_decode_attn.c — decode-attention timings on the GPU (a plain executable, not a test):
 *  (a) device copy bandwidth: cudaMemcpyAsync device-to-device of 2 GiB, (bytes read + bytes
 *      written) / time, median of 15 after 3 warm-ups;
 *  (b) decode attention at Llama-3-8B's shape (32 query / 8 kv heads, head_dim 128) for
 *      B 16 x T 32768, B 1 x T 131072 and B 16 x T 2048: the fp16 cache (attention_decode_cuda),
 *      and the compressed cache (kvattn_cuda) on the tensor cores at asymkv:32/0 (keys 2-bit,
 *      values 1-bit), all 1-bit, kivi2, kivi4, K16/V1, K2/V16, and the scalar fp32 impl at
 *      asymkv:32/0, G 32, R 128; random data (never zeros), CUDA events around each call, 5
 *      warm-ups, median of 30; inputs rotated over several copies when one copy would fit in
 *      twice the L2.
 * Prints bytes that must be read (codes + scales/zeros + windows + q + the new k/v), time, GB/s and
 * the fraction of the copy bandwidth; writes the rows as CSV to $OUT/bench_decode_attn.csv when OUT
 * is set (tools/bench_torch.py appends PyTorch SDPA rows in the same format).
 * Run: ./build-gpu/tests/bench_decode_attn [--quick] [--shape NAME]   (--quick: 5 timed runs, the
 * B16xT32k shape only unless --shape names another) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cuda_check.h"
#include "kernels_cuda.h"
#include "kvlayout.h"
#include "testutil.h" /* rng_next, rng_uniform */

#define H_Q 32
#define H_KV 8
#define HD 128
#define GRP 32
#define RES 128

static int n_runs = 30;

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}


static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Random fp16 in [lo, hi) (never zero-filled memory). */
static void fill_f16(uint16_t *h, size_t n, float lo, float hi, uint32_t *s) {
    for (size_t i = 0; i < n; i++) h[i] = akv_f32_to_f16(rng_uniform(s, lo, hi));
}

typedef cudaError_t (*launch_fn)(void *ctx, int copy, cudaStream_t s);

/* Median time in microseconds of n_runs calls of f (after 5 warm-ups), cycling over copies. */
static double median_us(launch_fn f, void *ctx, int copies, cudaStream_t s) {
    cudaEvent_t e0, e1;
    CUDA_CHECK_EXIT(cudaEventCreate(&e0));
    CUDA_CHECK_EXIT(cudaEventCreate(&e1));
    for (int i = 0; i < 5; i++) CUDA_CHECK_EXIT(f(ctx, i % copies, s));
    float *t = xmalloc(sizeof(float) * n_runs);
    for (int r = 0; r < n_runs; r++) {
        CUDA_CHECK_EXIT(cudaEventRecord(e0, s));
        CUDA_CHECK_EXIT(f(ctx, r % copies, s));
        CUDA_CHECK_EXIT(cudaEventRecord(e1, s));
        CUDA_CHECK_EXIT(cudaEventSynchronize(e1));
        CUDA_CHECK_EXIT(cudaEventElapsedTime(&t[r], e0, e1));
    }
    qsort(t, n_runs, sizeof(float), cmp_float);
    const double us = 1000.0 * t[n_runs / 2];
    free(t);
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    return us;
}

/* ---- (a) copy bandwidth ---- */

typedef struct copy_ctx {
    void *dst, *src;
    size_t bytes;
} copy_ctx;

static cudaError_t copy_launch(void *p, int copy, cudaStream_t s) {
    (void)copy;
    const copy_ctx *c = p;
    return cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, s);
}

static double copy_bandwidth(cudaStream_t s) {
    copy_ctx c = {NULL, NULL, (size_t)2 << 30};
    CUDA_CHECK_EXIT(cudaMalloc(&c.dst, c.bytes));
    CUDA_CHECK_EXIT(cudaMalloc(&c.src, c.bytes));
    CUDA_CHECK_EXIT(cudaMemsetAsync(c.src, 0x5a, c.bytes, s));
    const int keep = n_runs;
    n_runs = 15;
    const double us = median_us(copy_launch, &c, 1, s);
    n_runs = keep;
    cudaFree(c.dst), cudaFree(c.src);
    return 2.0 * (double)c.bytes / (us * 1e3); /* GB/s */
}

/* ---- (b) decode attention ---- */

typedef struct shape {
    const char *name;
    int B, T; /* T keys attended per sequence: len = T - 1 stored + the new token */
} shape;

typedef struct attn_ctx {
    int copies;
    kvattn_args ka[8];           /* compressed: one per copy */
    attention_decode_args da[8]; /* fp16: one per copy */
    uint8_t *mem[8];             /* compressed cache images, one per copy */
    int fp16;
} attn_ctx;

static cudaError_t attn_launch(void *p, int copy, cudaStream_t s) {
    attn_ctx *c = p;
    return c->fp16 ? attention_decode_cuda(&c->da[copy], s) : kvattn_cuda(&c->ka[copy], s);
}

/* Random records: codes random bits, scales in [0.01, 0.3), zeros in [-1, 0) (valid fp16). */
static void fill_records(uint8_t *p, size_t n_rec, int bits, uint32_t *s) {
    const size_t rb = kvl_record_bytes(bits, HD, GRP), cw = kvl_scale_off(bits, HD, GRP) / 4;
    for (size_t r = 0; r < n_rec; r++) {
        uint8_t *rec = p + r * rb;
        uint32_t *w = (uint32_t *)rec;
        for (size_t i = 0; i < cw; i++) w[i] = rng_next(s);
        uint16_t *sz = (uint16_t *)(rec + kvl_scale_off(bits, HD, GRP));
        for (int c = 0; c < HD; c++) {
            sz[c] = akv_f32_to_f16(rng_uniform(s, 0.01f, 0.3f));
            sz[HD + c] = akv_f32_to_f16(rng_uniform(s, -1.0f, 0.0f));
        }
    }
}

typedef struct result {
    char kernel[48], shape[24];
    int B, T;
    double bytes, us, gbps, frac;
} result;

static void report(result *r, double copy_gbps) {
    r->gbps = r->bytes / (r->us * 1e3);
    r->frac = r->gbps / copy_gbps;
    printf("%-22s %-12s %12.0f %10.1f %9.0f %7.1f%%\n", r->kernel, r->shape, r->bytes, r->us,
           r->gbps, 100.0 * r->frac);
    fflush(stdout);
}

/* The compressed cache at widths kb/vb for shape sh, timed with impl; fills r. */
static int bench_compressed(const shape *sh, int kb, int vb, int impl, const char *label,
                            size_t l2, cudaStream_t s, result *r) {
    const int B = sh->B, T = sh->T, len = T - 1;
    const size_t row = (size_t)H_KV * HD;
    const kvl_slot L = kvl_slot_layout(kb, vb, H_KV, HD, GRP, RES, kvl_ctx_round(T, GRP));
    const size_t total = L.bytes * B;
    const kvattn_args probe = {.n_batch = B, .max_len = T, .max_tail = RES + 64, .n_heads = H_Q,
                               .n_kv_heads = H_KV, .head_dim = HD, .group = GRP, .k_bits = kb,
                               .v_bits = vb, .impl = impl};
    if (!kvattn_workspace_bytes(&probe)) {
        printf("%-22s %-12s unsupported\n", label, sh->name);
        return 0;
    }
    attn_ctx *c = calloc(1, sizeof *c);
    c->copies = total < 2 * l2 ? 4 : 1;
    uint32_t seed = 0x6e0u + (uint32_t)kb * 7 + (uint32_t)vb;
    uint8_t *h = xmalloc(L.bytes);
    float *q = xmalloc((size_t)B * H_Q * HD * 4), *kn = xmalloc((size_t)B * row * 4);
    for (size_t i = 0; i < (size_t)B * H_Q * HD; i++) q[i] = rng_uniform(&seed, -2.0f, 2.0f);
    for (size_t i = 0; i < (size_t)B * row; i++)
        kn[i] = akv_f16_to_f32(akv_f32_to_f16(rng_uniform(&seed, -1, 1)));
    const int kq = kb <= 4 ? len / RES * RES : 0, vq = vb <= 4 ? (len > RES ? len - RES : 0) : 0;
    int max_tail = 1;
    for (int cp = 0; cp < c->copies; cp++) {
        uint8_t *d;
        CUDA_CHECK_EXIT(cudaMalloc((void **)&d, total));
        c->mem[cp] = d;
        kvq_seq_dev *seqs = xmalloc(sizeof(kvq_seq_dev) * B);
        for (int b = 0; b < B; b++) {
            if (cp == 0 && b == 0) { /* one random sequence image, reused (timing only) */
                if (kb <= 4) fill_records(h, (L.v_quant - L.k_quant) / kvl_record_bytes(kb, HD, GRP), kb, &seed);
                if (vb <= 4) fill_records(h + L.v_quant, (L.k_win - L.v_quant) / kvl_record_bytes(vb, HD, GRP), vb, &seed);
                fill_f16((uint16_t *)(h + L.k_win), (L.bytes - L.k_win) / 2, -1.0f, 1.0f, &seed);
            }
            uint8_t *base = d + (size_t)b * L.bytes;
            CUDA_CHECK_EXIT(cudaMemcpy(base, h, L.bytes, cudaMemcpyHostToDevice));
            seqs[b] = (kvq_seq_dev){base + L.k_quant, base + L.v_quant,
                                    (uint16_t *)(base + L.k_win), (uint16_t *)(base + L.v_win),
                                    len, kq, vq, L.k_cap, L.v_cap, 0};
            const int tl = kvattn_tail_len(len, kq, vq, kb, vb);
            max_tail = tl > max_tail ? tl : max_tail;
        }
        kvattn_args *a = &c->ka[cp];
        *a = (kvattn_args){.n_batch = B, .max_len = T, .max_tail = max_tail, .n_heads = H_Q,
                           .n_kv_heads = H_KV, .head_dim = HD, .group = GRP, .k_bits = kb,
                           .v_bits = vb, .scale = 1.0f / sqrtf((float)HD), .impl = impl};
        CUDA_CHECK_EXIT(cudaMalloc((void **)&a->seqs, sizeof(kvq_seq_dev) * B));
        CUDA_CHECK_EXIT(cudaMemcpy((void *)a->seqs, seqs, sizeof(kvq_seq_dev) * B, cudaMemcpyHostToDevice));
        CUDA_CHECK_EXIT(cudaMalloc((void **)&a->q, (size_t)B * H_Q * HD * 4));
        CUDA_CHECK_EXIT(cudaMemcpy((void *)a->q, q, (size_t)B * H_Q * HD * 4, cudaMemcpyHostToDevice));
        CUDA_CHECK_EXIT(cudaMalloc((void **)&a->k_new, (size_t)B * row * 4));
        CUDA_CHECK_EXIT(cudaMemcpy((void *)a->k_new, kn, (size_t)B * row * 4, cudaMemcpyHostToDevice));
        a->v_new = a->k_new;
        CUDA_CHECK_EXIT(cudaMalloc((void **)&a->out, (size_t)B * H_Q * HD * 4));
        a->workspace_bytes = kvattn_workspace_bytes(a);
        CUDA_CHECK_EXIT(cudaMalloc(&a->workspace, a->workspace_bytes));
        free(seqs);
    }
    /* Bytes that must be read: the stored part of every sequence, q, the new k and v. */
    double per_seq = 0;
    if (kb <= 4) per_seq += (double)kq * H_KV * kvl_token_bytes(kb, HD, GRP);
    if (vb <= 4) per_seq += (double)vq * H_KV * kvl_token_bytes(vb, HD, GRP);
    per_seq += (double)(len - kq) * row * 2 + (double)(len - vq) * row * 2;
    per_seq += (double)H_Q * HD * 4 + 2.0 * row * 4;
    snprintf(r->kernel, sizeof r->kernel, "%s", label);
    snprintf(r->shape, sizeof r->shape, "%s", sh->name);
    r->B = B, r->T = T, r->bytes = per_seq * B;
    r->us = median_us(attn_launch, c, c->copies, s);
    for (int cp = 0; cp < c->copies; cp++) {
        kvattn_args *a = &c->ka[cp];
        cudaFree((void *)a->seqs), cudaFree((void *)a->q), cudaFree((void *)a->k_new);
        cudaFree(a->out), cudaFree(a->workspace), cudaFree(c->mem[cp]);
    }
    free(h), free(q), free(kn), free(c);
    return 1;
}

/* The fp16 cache through attention_decode_cuda (T keys per sequence, all in the cache). */
static int bench_fp16(const shape *sh, size_t l2, cudaStream_t s, result *r) {
    const int B = sh->B, T = sh->T;
    const size_t row = (size_t)H_KV * HD, stride = (size_t)T * row, halves = stride * B;
    attn_ctx *c = calloc(1, sizeof *c);
    c->fp16 = 1;
    c->copies = 2 * halves * 2 < 2 * l2 ? 4 : 1;
    uint32_t seed = 0xf16u;
    uint16_t *h = xmalloc(stride * 2);
    fill_f16(h, stride, -1.0f, 1.0f, &seed);
    float *q = xmalloc((size_t)B * H_Q * HD * 4);
    for (size_t i = 0; i < (size_t)B * H_Q * HD; i++) q[i] = rng_uniform(&seed, -2.0f, 2.0f);
    int32_t *lens = xmalloc(sizeof(int32_t) * B);
    for (int b = 0; b < B; b++) lens[b] = T;
    for (int cp = 0; cp < c->copies; cp++) {
        attention_decode_args *a = &c->da[cp];
        uint16_t *k, *v;
        CUDA_CHECK_EXIT(cudaMalloc((void **)&k, halves * 2));
        CUDA_CHECK_EXIT(cudaMalloc((void **)&v, halves * 2));
        for (int b = 0; b < B; b++) {
            CUDA_CHECK_EXIT(cudaMemcpy(k + b * stride, h, stride * 2, cudaMemcpyHostToDevice));
            CUDA_CHECK_EXIT(cudaMemcpy(v + b * stride, h, stride * 2, cudaMemcpyHostToDevice));
        }
        *a = (attention_decode_args){.k = k, .v = v, .seq_stride = stride, .n_batch = B,
                                     .max_len = T, .n_heads = H_Q, .n_kv_heads = H_KV,
                                     .head_dim = HD, .scale = 1.0f / sqrtf((float)HD)};
        CUDA_CHECK_EXIT(cudaMalloc((void **)&a->q, (size_t)B * H_Q * HD * 4));
        CUDA_CHECK_EXIT(cudaMemcpy((void *)a->q, q, (size_t)B * H_Q * HD * 4, cudaMemcpyHostToDevice));
        CUDA_CHECK_EXIT(cudaMalloc((void **)&a->lens, sizeof(int32_t) * B));
        CUDA_CHECK_EXIT(cudaMemcpy((void *)a->lens, lens, sizeof(int32_t) * B, cudaMemcpyHostToDevice));
        CUDA_CHECK_EXIT(cudaMalloc((void **)&a->out, (size_t)B * H_Q * HD * 4));
        a->workspace_bytes = attention_decode_workspace_bytes(B, H_Q, H_KV, HD, T);
        CUDA_CHECK_EXIT(cudaMalloc(&a->workspace, a->workspace_bytes));
    }
    snprintf(r->kernel, sizeof r->kernel, "fp16 (attention_decode)");
    snprintf(r->shape, sizeof r->shape, "%s", sh->name);
    r->B = B, r->T = T;
    r->bytes = (double)B * ((double)T * row * 2 * 2 + (double)H_Q * HD * 4);
    r->us = median_us(attn_launch, c, c->copies, s);
    for (int cp = 0; cp < c->copies; cp++) {
        attention_decode_args *a = &c->da[cp];
        cudaFree((void *)a->k), cudaFree((void *)a->v), cudaFree((void *)a->q);
        cudaFree((void *)a->lens), cudaFree(a->out), cudaFree(a->workspace);
    }
    free(h), free(q), free(lens), free(c);
    return 1;
}

int main(int argc, char **argv) {
    int quick = 0;
    const char *only = NULL; /* --shape NAME: that shape alone */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "bench_decode_attn: unknown argument '%s' (use --quick, --shape "
                            "B16xT32k|B1xT128k|B16xT2k)\n", argv[i]);
            return 2;
        }
    }
    if (quick) n_runs = 5;
    int dev = 0;
    struct cudaDeviceProp prop;
    CUDA_CHECK_EXIT(cudaGetDevice(&dev));
    CUDA_CHECK_EXIT(cudaGetDeviceProperties(&prop, dev));
    cudaStream_t s;
    CUDA_CHECK_EXIT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    const size_t l2 = (size_t)prop.l2CacheSize;
    printf("bench_decode_attn on %s (%d SMs, L2 %zu MB), median of %d\n", prop.name,
           prop.multiProcessorCount, l2 >> 20, n_runs);
    const double copy = copy_bandwidth(s);
    printf("device copy bandwidth: %.0f GB/s (read + write, 2 GiB cudaMemcpy D2D)\n\n", copy);
    printf("%-22s %-12s %12s %10s %9s %8s\n", "kernel", "shape", "bytes", "us", "GB/s", "of copy");
    /* B16xT2k: the whole-model benchmark's decode context, where the window tail is a large
     * share of the work */
    const shape shapes[3] = {
        {"B16xT32k", 16, 32768}, {"B1xT128k", 1, 131072}, {"B16xT2k", 16, 2048}};
    const struct {
        const char *name;
        int kb, vb, impl;
    } kinds[] = {{"asymkv:32/0 tc", 2, 1, KVATTN_MMA},   {"all-1bit tc", 1, 1, KVATTN_MMA},
                 {"kivi2 tc", 2, 2, KVATTN_MMA},         {"kivi4 tc", 4, 4, KVATTN_MMA},
                 {"K16/V1 tc", 16, 1, KVATTN_MMA},       {"K2/V16 tc", 2, 16, KVATTN_MMA},
                 {"asymkv:32/0 scalar", 2, 1, KVATTN_SCALAR}};
    result res[32];
    int n = 0;
    for (int si = 0; si < 3; si++) {
        if (only ? strcmp(only, shapes[si].name) != 0 : quick && si > 0) continue;
        if (bench_fp16(&shapes[si], l2, s, &res[n])) report(&res[n++], copy);
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            if (bench_compressed(&shapes[si], kinds[k].kb, kinds[k].vb, kinds[k].impl,
                                 kinds[k].name, l2, s, &res[n]))
                report(&res[n++], copy);
    }
    const char *out = getenv("OUT");
    if (out && *out) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bench_decode_attn.csv", out);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "kernel,shape,B,T,bytes,us,GBps,frac_copy\n");
            fprintf(f, "copy,d2d,0,0,%.0f,0,%.1f,1.0\n", 2.0 * (double)((size_t)2 << 30), copy);
            for (int i = 0; i < n; i++)
                fprintf(f, "%s,%s,%d,%d,%.0f,%.2f,%.1f,%.4f\n", res[i].kernel, res[i].shape, res[i].B,
                        res[i].T, res[i].bytes, res[i].us, res[i].gbps, res[i].frac);
            fclose(f);
            printf("\nwrote %s\n", path);
        }
    }
    cudaStreamDestroy(s);
    return 0;
}
