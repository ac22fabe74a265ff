/* rmsnorm_ref.c — scalar twin of Llama RMSNorm: y = (x * rsqrt(mean(x^2) + eps)) * w per row.
 * Layout: x, out [n][dim] (out may alias x), w [dim]. Tested in tests/test_ops.c. */
#include "kernels.h"

#include <math.h>

/* 1 / sqrt(mean(x^2) + eps); the sum of squares runs in double so long rows lose no
 * precision (torch sums pairwise in fp32, which is closer to this than a naive fp32 sum). */
static float rms_inv(const float *x, int dim, float eps) {
    double ss = 0.0;
    for (int j = 0; j < dim; j++) ss += (double)x[j] * x[j];
    float mean = (float)(ss / dim);
    return 1.0f / sqrtf(mean + eps);
}

void rmsnorm_ref(float *out, const float *x, const float *w, int n, int dim, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * dim;
        float *yr = out + (size_t)i * dim;
        float r = rms_inv(xr, dim, eps);
        /* HF order: normalize first, then scale by the weight. */
        for (int j = 0; j < dim; j++) yr[j] = w[j] * (xr[j] * r);
    }
}
