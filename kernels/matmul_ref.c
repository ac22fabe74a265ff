/* matmul_ref.c — scalar twin of the linear layer: out[n][m] = x[n][k] · w[m][k]^T + bias[m].
 * Every output is a contiguous dot product of an x row and a w row, summed in a fixed order
 * (4 interleaved partial sums); four w rows share each load of x, yet every output is summed
 * the same way, so results never depend on n or blocking. Tested in tests/test_ops.c
 * (hand case, random shapes against a double-precision loop). Large products are split over
 * CPU threads (OpenMP) by blocks of w rows, which changes no result. */
#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows of w per block: 32 rows of a 4096-wide layer are 512 KiB, which stays in L2 while
 * every x row streams past it, so w is read from memory once per call instead of n times. */
#define W_BLOCK_ROWS 32
/* Products smaller than this many multiply-adds stay on one thread (a parallel region costs a
 * few microseconds). */
#define PARALLEL_MIN_MACS (1 << 20)

static int n_threads = 1;

void kernels_set_threads(int n) {
#ifdef _OPENMP
    n_threads = n > 0 ? n : 1;
#else
    (void)n;
#endif
}

int kernels_threads(void) {
    return n_threads;
}

/* a·b over k with four partial sums (lane j%4), remainder into lane 0, then a fixed tree. */
static float dot_f32(const float *a, const float *b, int k) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int j = 0;
    for (; j + 4 <= k; j += 4) {
        s0 += a[j] * b[j];
        s1 += a[j + 1] * b[j + 1];
        s2 += a[j + 2] * b[j + 2];
        s3 += a[j + 3] * b[j + 3];
    }
    for (; j < k; j++) s0 += a[j] * b[j];
    return (s0 + s1) + (s2 + s3);
}

/* Four dot products of a with b[0..3] sharing the loads of a. Each output uses exactly
 * dot_f32's lanes and final tree, so grouping rows by four never changes a result. */
static void dot_f32_x4(float *out, const float *a, const float *b0, const float *b1,
                       const float *b2, const float *b3, int k) {
    float s[4][4] = {{0.0f}};
    int j = 0;
    for (; j + 4 <= k; j += 4) {
        for (int l = 0; l < 4; l++) {
            float av = a[j + l];
            s[0][l] += av * b0[j + l];
            s[1][l] += av * b1[j + l];
            s[2][l] += av * b2[j + l];
            s[3][l] += av * b3[j + l];
        }
    }
    for (; j < k; j++) {
        s[0][0] += a[j] * b0[j];
        s[1][0] += a[j] * b1[j];
        s[2][0] += a[j] * b2[j];
        s[3][0] += a[j] * b3[j];
    }
    for (int r = 0; r < 4; r++) out[r] = (s[r][0] + s[r][1]) + (s[r][2] + s[r][3]);
}

/* One x row against w rows [j0, j1): groups of four, then single rows. */
static void matmul_row(float *y, const float *xr, const float *w, const float *bias, int k,
                       int j0, int j1) {
    int j = j0;
    for (; j + 4 <= j1; j += 4) {
        const float *wj = w + (size_t)j * k;
        dot_f32_x4(y + j, xr, wj, wj + k, wj + 2 * (size_t)k, wj + 3 * (size_t)k, k);
    }
    for (; j < j1; j++) y[j] = dot_f32(xr, w + (size_t)j * k, k);
    if (bias)
        for (j = j0; j < j1; j++) y[j] += bias[j];
}

void matmul_ref(float *out, const float *x, const float *w, const float *bias, int n, int k,
                int m) {
    const int blocks = (m + W_BLOCK_ROWS - 1) / W_BLOCK_ROWS;
#ifdef _OPENMP
    const int threads = (double)n * k * m >= PARALLEL_MIN_MACS && blocks > 1 ? n_threads : 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (int b = 0; b < blocks; b++) {
        const int j0 = b * W_BLOCK_ROWS, j1 = j0 + W_BLOCK_ROWS < m ? j0 + W_BLOCK_ROWS : m;
        for (int i = 0; i < n; i++)
            matmul_row(out + (size_t)i * m, x + (size_t)i * k, w, bias, k, j0, j1);
    }
}
