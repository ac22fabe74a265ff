/* kvattn_emu.cpp — kernels/kvattn.cu's split kernels (the scalar fp32 kernel and the tensor-core
 * kernel of kvattn_tc.cuh), its combine kernel and its launch plans, run on the CPU (tests/emu/
 * kernel/: every CUDA thread a std::thread; mma.sync, movmatrix, fp16x2 arithmetic and the bulk
 * copy engine emulated in kvattn_ops_emu.h) against kvattn_ref through kvcache_attend, so CI tests
 * the kernels' code without a GPU. Caches are built by runtime/kvcache from seeded random rows
 * with outlier key channels; every bit a sequence's view does not own is poisoned (tests/
 * kvview_util.h: NaN scales and windows), as are the workspace and the output. Widths 16/4/2/1,
 * G 32 and 64, head_dim 16..128, GQA 1, 4 and 8, R 32..128, lengths around multiples of G and R
 * (fast tiles, window tiles, the tile where values leave the window, partial tiles), the plans
 * for a 132-SM and a 2-SM device. Tolerances as tests/gpu_kvattn.c: scalar 1e-4 x (|want| + 1);
 * tensor cores max |d| <= 1e-3 x (|want| + 1) and relative L2 <= 2e-3. */
#include "kernel_emu.h"

#define KVA_EMULATE 1
/* the tensor-core instantiations this test runs (each costs compile time) */
#define KVA_EMU_TC_FILTER(D, KB, VB)                                                               \
    ((D == 128 && ((KB == 2 && VB == 1) || (KB == 1 && VB == 1) || (KB == 16 && VB == 1))) ||     \
     (D == 64 && ((KB == 2 && VB == 2) || (KB == 4 && VB == 16) || (KB == 1 && VB == 4))) ||      \
     (D == 96 && KB == 4 && VB == 1) || (D == 80 && KB == 1 && VB == 16))
#define kvattn_workspace_bytes emu_kvattn_workspace_bytes /* not the CUDA build's symbol */
#include "kvattn.cu"
#undef kvattn_workspace_bytes

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kvcache.h"
#include "kvconfig.h"
#include "kvquant.h"
#include "kvview_util.h"
#include "testutil.h" /* rng_next, rng_uniform */

template <int D, int KB, int VB>
static cudaError_t tc_launch(const KvaParams &P, dim3 grid, cudaStream_t) {
    emu::launch(grid, KVT_WARPS * 32, [&] { kvattn_tc_kernel<D, KB, VB>(P); }, TcShape<D, KB, VB>::SMEM);
    return cudaSuccess;
}

struct Spec {
    int kb, vb, G, R, D, n_kv;
};

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

/* One configuration and impl; returns the number of outputs outside the tolerance (1 when the
 * plan refuses the shape). */
static long check(const Spec &cs, int per_kv, int impl, int sms, const std::vector<int> &lens,
                  uint32_t *seed) {
    const int n_seq = (int)lens.size(), D = cs.D;
    int ctx = 1;
    for (int l : lens) ctx = l + 1 > ctx ? l + 1 : ctx;
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
        uint8_t *img = imgs[q] = kvview_poisoned_copy(&w);
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
    a.scale = scale, a.impl = impl;
    kva_emu_sms = sms;
    KvaPlan pl;
    const size_t ws_bytes = emu_kvattn_workspace_bytes(&a);
    if (!ws_bytes || !kva_plan(&a, &pl)) {
        fprintf(stderr, "kva_plan refused k%d/v%d G%d D%d\n", cs.kb, cs.vb, cs.G, D);
        return 1;
    }
    std::vector<float> ws(ws_bytes / sizeof(float), NAN), out(qn, NAN);
    a.out = out.data();
    const KvaParams P = kva_params(&a, pl, ws.data());
    const dim3 grid{(unsigned)pl.n_parts, (unsigned)(cs.n_kv * pl.hchunks), (unsigned)n_seq};
    if (pl.tc) {
        size_t unused = 0;
        if (tc_dispatch(D, cs.kb, cs.vb, true, &P, grid, nullptr, &unused) != cudaSuccess) {
            fprintf(stderr, "no tensor-core instantiation k%d/v%d D%d in this build\n", cs.kb, cs.vb, D);
            return 1;
        }
    } else {
        emu::launch(grid, KVA_THREADS, [&] { kvattn_scalar_kernel(P); });
    }
    emu::launch(dim3{(unsigned)(n_seq * H), 1, 1}, KVA_THREADS, [&] { kvattn_combine_kernel(P); });

    long bad = 0;
    double worst = 0, e2 = 0, r2 = 0;
    const double tol = pl.tc ? 1e-3 : 1e-4;
    for (size_t i = 0; i < qn; i++) {
        const double d = fabs((double)out[i] - want[i]);
        e2 += d * d, r2 += (double)want[i] * want[i];
        if (std::isfinite(d) && d > worst) worst = d;
        if (!(d <= tol * (fabs(want[i]) + 1.0))) {
            if (bad < 4)
                fprintf(stderr, "  k%d/v%d G%d D%d heads %d %s: out[%zu] = %.9g, want %.9g\n", cs.kb,
                        cs.vb, cs.G, D, H, pl.tc ? "tc" : "scalar", i, out[i], want[i]);
            bad++;
        }
    }
    const double rl2 = r2 > 0 ? sqrt(e2 / r2) : sqrt(e2);
    if (pl.tc && !(rl2 <= 2e-3)) bad++;
    printf("kvattn_emu %-6s k%-2d v%-2d G%-3d R%-3d D%-3d heads %2d/%d sms %3d: %4d parts, max |diff| "
           "%.2e, rel L2 %.2e%s\n", pl.tc ? "tc" : "scalar", cs.kb, cs.vb, cs.G, cs.R, D, H, cs.n_kv,
           sms, pl.n_parts, worst, rl2, bad ? "  FAIL" : "");
    for (auto *img : imgs) free(img);
    kvcache_free(kv);
    return bad;
}

int main(int argc, char **argv) {
    uint32_t seed = 0x6b7a11u;
    if (argc > 9) { /* one case: kb vb G R D n_kv per_kv impl(1 scalar, 2 tc) sms len... */
        const Spec cs = {atoi(argv[1]), atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
                         atoi(argv[6])};
        std::vector<int> lens;
        for (int i = 10; i < argc; i++) lens.push_back(atoi(argv[i]));
        return check(cs, atoi(argv[7]), atoi(argv[8]), atoi(argv[9]), lens, &seed) ? 1 : 0;
    }
    long bad = 0;
    int runs = 0;
    /* the scalar kernel: any shape */
    const Spec scalar[] = {{16, 16, 32, 128, 64, 2}, {2, 1, 32, 128, 128, 2}, {1, 1, 32, 64, 64, 2},
                           {4, 2, 64, 128, 128, 2},  {2, 16, 32, 128, 80, 2}, {1, 16, 32, 64, 16, 2},
                           {16, 1, 32, 128, 32, 2}};
    const std::vector<int> lens_s = {0, 1, 33, 128, 129, 300};
    for (const Spec &cs : scalar)
        for (int per_kv : {1, 4}) {
            bad += check(cs, per_kv, KVATTN_SCALAR, 132, lens_s, &seed);
            runs++;
        }
    /* the tensor-core kernel (the instantiations of KVA_EMU_TC_FILTER) */
    const Spec tc[] = {{2, 1, 32, 64, 128, 2}, {1, 1, 32, 32, 128, 1}, {16, 1, 32, 64, 128, 2},
                       {2, 2, 32, 128, 64, 2}, {4, 16, 32, 64, 64, 2}, {1, 4, 32, 32, 64, 2},
                       {4, 1, 32, 64, 96, 1},  {1, 16, 32, 64, 80, 2}};
    const std::vector<int> lens_t = {0, 1, 31, 32, 33, 95, 160, 257, 600};
    for (const Spec &cs : tc)
        for (int per_kv : {1, 4, 8})
            for (int sms : {132, 2}) {
                if (per_kv == 8 && sms == 132) continue;
                bad += check(cs, per_kv, KVATTN_MMA, sms, lens_t, &seed);
                runs++;
            }
    printf("kvattn_emu: %d runs, %ld values outside the tolerance\n", runs, bad);
    return bad ? 1 : 0;
}
