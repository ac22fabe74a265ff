/* kvattn_emu.cpp — kernels/kvattn.cu's scalar split kernel, its combine kernel and its launch
 * plan, run on the CPU (tests/emu/kernel/kernel_emu.h: every CUDA thread a std::thread) against
 * kvattn_ref through kvcache_attend, so CI tests that kernel code without a GPU. Caches are built
 * by runtime/kvcache from seeded random rows with outlier key channels; every byte a sequence's
 * view does not own is poisoned (0xff: NaN), as are the workspace and the output. Widths 16/4/2/1,
 * G 32 and 64, head_dim 16..128 (80: not a multiple of 8), GQA 1 and 4, lengths around G and R
 * multiples, the default plan and the fine tail plan (tail_split 32, whose short tiles split the
 * key scoring over the warps). Tolerance as tests/gpu_kvattn.c: 1e-4 x (|want| + 1). The MMA
 * impl (inline PTX) is not emulated: it runs on the GPU machine only. */
#include "kernel_emu.h"

#define KVA_EMULATE_SCALAR 1
#define kvattn_workspace_bytes emu_kvattn_workspace_bytes /* not the CUDA build's symbol */
#include "kvattn.cu"
#undef kvattn_workspace_bytes

#include <cstdio>
#include <cstdlib>

#include "kvcache.h"
#include "kvconfig.h"
#include "kvquant.h"
#include "testutil.h" /* rng_next, rng_uniform */

struct Spec {
    int kb, vb, G, R, D, n_kv;
};

/* Bytes of a view's regions [k_quant .. end of v_win). */
static size_t view_bytes(const kvq_view *w) {
    const size_t row = (size_t)w->n_kv_heads * w->head_dim;
    return (size_t)((const uint8_t *)w->v_win - w->k_quant) + (size_t)w->v_cap * row * 2;
}

/* A copy of the view's regions with every byte it does not own set to 0xff. */
static uint8_t *poisoned_copy(const kvq_view *w) {
    const size_t row = (size_t)w->n_kv_heads * w->head_dim, bytes = view_bytes(w);
    const uint8_t *base = w->k_quant;
    uint8_t *h = (uint8_t *)aligned_alloc(64, (bytes + 63) / 64 * 64);
    memset(h, 0xff, bytes);
    auto copy = [&](size_t off, size_t n) { memcpy(h + off, base + off, n); };
    const int G = w->group;
    if (w->k_bits <= 4) copy(0, (size_t)w->kq / G * row * kvq_group_bytes(w->k_bits, G));
    if (w->v_bits <= 4)
        copy((size_t)(w->v_quant - base),
             (size_t)w->vq * (row / G) * kvq_group_bytes(w->v_bits, G));
    const size_t koff = (size_t)((const uint8_t *)w->k_win - base);
    const size_t voff = (size_t)((const uint8_t *)w->v_win - base);
    for (int p = w->kq; p < w->len; p++) copy(koff + (size_t)(p % w->k_cap) * row * 2, row * 2);
    for (int p = w->vq; p < w->len; p++) copy(voff + (size_t)(p % w->v_cap) * row * 2, row * 2);
    return h;
}

/* Random rows: keys around per-channel offsets (one channel in 16 an outlier), values ~U(-1,1)
 * (one channel in 32 x3), fp16-rounded as the cache stores them. */
static void make_rows(float *k, float *v, int n, int row, uint32_t *seed) {
    for (int t = 0; t < n; t++)
        for (int i = 0; i < row; i++) {
            const float mu = (float)((i * 7) % 11) * 0.1f - 0.5f + (i % 16 == 3 ? 5.0f : 0.0f);
            const float sd = i % 16 == 3 ? 4.0f : 1.0f;
            k[(size_t)t * row + i] = mu + sd * rng_uniform(seed, -1.0f, 1.0f);
            v[(size_t)t * row + i] = (i % 32 == 5 ? 3.0f : 1.0f) * rng_uniform(seed, -1.0f, 1.0f);
        }
    kvq_round_f16(k, (size_t)n * row);
    kvq_round_f16(v, (size_t)n * row);
}

/* One configuration; returns the number of output values outside the tolerance (or 1 when the
 * plan refuses the shape). */
static long check(const Spec &cs, int per_kv, int tail_split, uint32_t *seed) {
    static const int lens[] = {0, 1, 33, 128, 129, 300};
    const int n_seq = (int)(sizeof lens / sizeof lens[0]), ctx = 320, D = cs.D;
    const int row = cs.n_kv * D, H = cs.n_kv * per_kv;
    kv_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layers = 1, cfg.k_bits[0] = (uint8_t)cs.kb, cfg.v_bits[0] = (uint8_t)cs.vb;
    cfg.group = cs.G, cfg.residual = cs.R;
    const kvcache_shape shape = {1, 0, n_seq, ctx, cs.n_kv, D, &cfg};
    kvcache *kv = nullptr;
    akv_err err = {};
    if (kvcache_init(&kv, &shape, &err) != AKV_OK) {
        fprintf(stderr, "kvcache_init: %s\n", err.msg);
        return 1;
    }
    std::vector<kvq_seq_dev> seqs(n_seq);
    std::vector<uint8_t *> imgs(n_seq);
    int max_len = 1, max_tail = 1;
    for (int q = 0; q < n_seq; q++) {
        std::vector<float> k((size_t)lens[q] * row + 1), v((size_t)lens[q] * row + 1);
        make_rows(k.data(), v.data(), lens[q], row, seed);
        if (kvcache_append(kv, 0, q, lens[q], k.data(), v.data(), &err) != AKV_OK) {
            fprintf(stderr, "kvcache_append: %s\n", err.msg);
            return 1;
        }
        kvq_view w;
        kvcache_view(kv, 0, q, &w);
        uint8_t *img = imgs[q] = poisoned_copy(&w);
        const uint8_t *base = w.k_quant;
        seqs[q] = kvq_seq_dev{img, img + (w.v_quant - base),
                              (uint16_t *)(img + ((const uint8_t *)w.k_win - base)),
                              (uint16_t *)(img + ((const uint8_t *)w.v_win - base)), w.len, w.kq,
                              w.vq, w.k_cap, w.v_cap, 0};
        max_len = w.len + 1 > max_len ? w.len + 1 : max_len;
        const int tl = kvattn_tail_len(w.len, w.kq, w.vq, w.k_bits, w.v_bits);
        max_tail = tl > max_tail ? tl : max_tail;
    }
    const size_t qn = (size_t)n_seq * H * D;
    std::vector<float> q(qn), want(qn), kn((size_t)n_seq * row), vn((size_t)n_seq * row);
    for (auto &x : q) x = rng_uniform(seed, -2.0f, 2.0f);
    make_rows(kn.data(), vn.data(), n_seq, row, seed);
    const float scale = 1.0f / sqrtf((float)D);
    std::vector<float> scratch(kvattn_scratch_floats(ctx + 1, D));
    for (int b = 0; b < n_seq; b++)
        kvcache_attend(kv, 0, b, 1, H, q.data() + (size_t)b * H * D, kn.data() + (size_t)b * row,
                       vn.data() + (size_t)b * row, want.data() + (size_t)b * H * D, scale,
                       scratch.data());

    kvattn_args a = {};
    a.q = q.data(), a.k_new = kn.data(), a.v_new = vn.data(), a.seqs = seqs.data();
    a.n_batch = n_seq, a.max_len = max_len + 3, a.max_tail = max_tail, a.n_heads = H;
    a.n_kv_heads = cs.n_kv, a.head_dim = D, a.group = cs.G, a.k_bits = cs.kb, a.v_bits = cs.vb;
    a.scale = scale, a.impl = KVATTN_SCALAR, a.tail_split = tail_split;
    KvaPlan pl;
    const size_t ws_bytes = emu_kvattn_workspace_bytes(&a);
    if (!ws_bytes || !kva_plan(&a, &pl)) {
        fprintf(stderr, "kva_plan refused k%d/v%d G%d D%d\n", cs.kb, cs.vb, cs.G, D);
        return 1;
    }
    std::vector<float> ws(ws_bytes / sizeof(float), NAN), out(qn, NAN);
    KvaParams P;
    P.out = out.data();
    P.o_part = ws.data();
    P.ml_part = P.o_part + (size_t)n_seq * H * pl.n_parts * D;
    P.q = a.q, P.k_new = a.k_new, P.v_new = a.v_new, P.seqs = a.seqs;
    P.n_batch = n_seq, P.n_heads = H, P.n_kv = cs.n_kv, P.hchunks = pl.hchunks, P.D = D;
    P.G = cs.G, P.k_bits = cs.kb, P.v_bits = cs.vb, P.max_len = a.max_len;
    P.n_parts = pl.n_parts, P.n_mma_parts = pl.mma_blocks, P.mma = pl.impl_mma;
    P.mma_blocks = pl.mma_blocks, P.sc_split = pl.sc_split, P.mma_tiles = pl.mma_tiles;
    P.fine_tail = pl.fine, P.qscale = scale * KVA_LOG2E;
    emu::launch(dim3{(unsigned)pl.sc_parts, (unsigned)(cs.n_kv * pl.hchunks), (unsigned)n_seq},
                KVA_THREADS, [&] { kvattn_scalar_kernel(P); });
    emu::launch(dim3{(unsigned)(n_seq * H), 1, 1}, KVA_THREADS, [&] { kvattn_combine_kernel(P); });

    long bad = 0;
    double worst = 0;
    for (size_t i = 0; i < qn; i++) {
        const double d = fabs((double)out[i] - want[i]), tol = 1e-4 * (fabs(want[i]) + 1.0);
        if (std::isfinite(d) && d > worst) worst = d;
        if (!(d <= tol)) {
            if (bad < 4)
                fprintf(stderr, "  k%d/v%d G%d D%d heads %d split %d: out[%zu] = %.9g, want %.9g\n",
                        cs.kb, cs.vb, cs.G, D, H, tail_split, i, out[i], want[i]);
            bad++;
        }
    }
    printf("kvattn_emu k%-2d v%-2d G%-3d D%-3d heads %d/%d tail_split %2d: %d parts of %d, "
           "max |diff| %.2e%s\n", cs.kb, cs.vb, cs.G, D, H, cs.n_kv, tail_split, pl.n_parts,
           pl.sc_split, worst, bad ? "  FAIL" : "");
    for (auto *img : imgs) free(img);
    kvcache_free(kv);
    return bad;
}

int main() {
    const Spec specs[] = {{16, 16, 32, 128, 64, 2}, {2, 1, 32, 128, 128, 2}, {1, 1, 32, 64, 64, 2},
                          {4, 2, 64, 128, 128, 2},  {2, 16, 32, 128, 80, 2}, {1, 16, 32, 64, 16, 2},
                          {16, 1, 32, 128, 32, 2}};
    uint32_t seed = 0x6b7a11u;
    long bad = 0;
    int runs = 0;
    for (const Spec &cs : specs)
        for (int per_kv : {1, 4})
            for (int split : {0, 32}) {
                bad += check(cs, per_kv, split, &seed);
                runs++;
            }
    printf("kvattn_emu: %d runs, %ld values outside the tolerance\n", runs, bad);
    return bad ? 1 : 0;
}
