/* matmul.cu — linear layers through cuBLASLt: out[n][m] = x[n][k] · w[m][k]^T (+ bias[m]).
 * x fp32 [n][k] is first rounded to bf16 (convert_kernel, into the context's buffer); w is bf16
 * [m][k] on the device; cuBLASLt multiplies on the tensor cores with fp32 accumulation
 * (CUBLAS_COMPUTE_32F) and writes fp32 out [n][m], the bias fused as an epilogue when an
 * algorithm offers it (else bias_kernel adds it). In cuBLASLt's column-major terms this is
 * D (m x n, ld m) = A^T (A = w as k x m, ld k) · B (B = x as k x n, ld k): the "TN" layout.
 * Tolerance vs matmul_ref fed the same bf16 weights as fp32: |out - ref| <= 2^-8 sum_j |x_j w_j|
 * (bf16 rounding of x; fp32 accumulation adds far less). Descriptors and the chosen algorithm are
 * cached per (shape, bias, pointer alignments).
 * Twin: matmul_ref.c.
 * Test: ./build-cuda/tests/gpu_kernels --filter matmul/matches_twin (on a GPU machine). */
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "kernels_cuda.h"

#define MM_WORKSPACE_BYTES ((size_t)32 << 20) /* NVIDIA's advice for Hopper */
#define MM_PLANS 64

typedef struct mm_plan {
    int valid, n, k, m, has_bias, fused_bias;
    unsigned align; /* alignments of w, out, bias packed one byte each */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} mm_plan;

struct matmul_ctx {
    cublasLtHandle_t lt;
    void *ws;          /* cuBLASLt workspace, MM_WORKSPACE_BYTES */
    __nv_bfloat16 *xb; /* [max_x_elems] bf16 copy of x */
    size_t xb_elems;
    mm_plan plans[MM_PLANS];
    int next; /* round-robin victim when the cache is full */
};

static __global__ void convert_kernel(__nv_bfloat16 *dst, const float *src, size_t n, int vec4) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t done = 0;
    if (vec4) {
        const float4 *s4 = (const float4 *)src;
        __nv_bfloat162 *d2 = (__nv_bfloat162 *)dst;
        for (size_t j = i; j < n / 4; j += stride) {
            float4 a = s4[j];
            d2[2 * j] = __floats2bfloat162_rn(a.x, a.y);
            d2[2 * j + 1] = __floats2bfloat162_rn(a.z, a.w);
        }
        done = n / 4 * 4;
    }
    for (size_t j = done + i; j < n; j += stride)
        dst[j] = __float2bfloat16_rn(src[j]);
}

static __global__ void bias_kernel(float *out, const float *bias, int n, int m) {
    const size_t total = (size_t)n * m, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < total; j += stride)
        out[j] += bias[j % m];
}

static unsigned grid_for(size_t work) {
    return (unsigned)(work / 256 + 1 < 65536 ? work / 256 + 1 : 65536);
}

/* Largest power of two (<= 256) dividing the address: cuBLASLt assumes 256 unless told. */
static unsigned ptr_align(const void *p) {
    unsigned a = 256;
    while (a > 1 && (uintptr_t)p % a)
        a >>= 1;
    return a;
}

static void plan_release(mm_plan *p) {
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

/* Asks the heuristic for one algorithm; *found = 0 when none fits. */
static akv_status plan_pick(matmul_ctx *c, mm_plan *p, const unsigned al[3], int *found,
                            akv_err *err) {
    akv_status st = AKV_OK;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    const uint64_t ws = MM_WORKSPACE_BYTES;
    const uint32_t a_al = al[0], b_al = 256, d_al = al[1];
    int count = 0;
    cublasStatus_t hs;
    CUBLAS_CHECK(err, cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a_al, sizeof a_al));
    CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b_al, sizeof b_al));
    CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &d_al, sizeof d_al));
    CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &d_al, sizeof d_al));
    hs =
        cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->a, p->b, p->d, p->d, pref, 1, &res, &count);
    *found = hs == CUBLAS_STATUS_SUCCESS && count > 0;
    if (*found) p->algo = res.algo;
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return st;
}

/* Builds descriptors for one shape and picks an algorithm: bias fused if possible. */
static akv_status plan_build(matmul_ctx *c, mm_plan *p, int n, int k, int m, const float *bias,
                             const unsigned al[3], akv_err *err) {
    akv_status st = AKV_OK;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    int found = 0;
    memset(p, 0, sizeof *p);
    CUBLAS_CHECK(err, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(
        err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(
        err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, k, m, k));
    CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, k, n, k));
    CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, m, n, m));
    if (bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                         sizeof epi));
        CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                         &bias, sizeof bias));
        if ((st = plan_pick(c, p, al, &found, err))) goto fail;
        if (!found) { /* no fused algorithm: plain product, bias_kernel afterwards */
            const cublasLtEpilogue_t none = CUBLASLT_EPILOGUE_DEFAULT;
            CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                             &none, sizeof none));
        }
    }
    p->fused_bias = bias && found;
    if (!found && (st = plan_pick(c, p, al, &found, err))) goto fail;
    if (!found) {
        st = akv_fail(err, AKV_ERUNTIME, "cuBLASLt has no algorithm for bf16 %dx%d by %dx%d", n, k,
                      m, k);
        goto fail;
    }
    p->valid = 1;
    p->n = n, p->k = k, p->m = m, p->has_bias = bias != NULL;
    p->align = al[0] | al[1] << 8 | al[2] << 16;
    return AKV_OK;
fail:
    plan_release(p);
    return st;
}

static akv_status plan_get(matmul_ctx *c, mm_plan **out, int n, int k, int m, const float *bias,
                           const unsigned al[3], akv_err *err) {
    const unsigned key = al[0] | al[1] << 8 | al[2] << 16;
    for (int i = 0; i < MM_PLANS; i++) {
        mm_plan *p = &c->plans[i];
        if (p->valid && p->n == n && p->k == k && p->m == m && p->has_bias == (bias != NULL) &&
            p->align == key) {
            *out = p;
            return AKV_OK;
        }
    }
    mm_plan *p = &c->plans[c->next];
    c->next = (c->next + 1) % MM_PLANS;
    plan_release(p);
    *out = p;
    return plan_build(c, p, n, k, m, bias, al, err);
}

extern "C" akv_status matmul_ctx_init(matmul_ctx **out, size_t max_x_elems, akv_err *err) {
    akv_status st = AKV_OK;
    *out = NULL;
    matmul_ctx *c = (matmul_ctx *)calloc(1, sizeof *c);
    if (!c) return akv_fail(err, AKV_ERUNTIME, "out of host memory for the matmul context");
    c->xb_elems = max_x_elems ? max_x_elems : 1;
    CUBLAS_CHECK(err, cublasLtCreate(&c->lt));
    CUDA_CHECK(err, cudaMalloc(&c->ws, MM_WORKSPACE_BYTES));
    CUDA_CHECK(err, cudaMalloc((void **)&c->xb, c->xb_elems * sizeof(__nv_bfloat16)));
    *out = c;
    return AKV_OK;
fail:
    matmul_ctx_free(c);
    return st;
}

extern "C" void matmul_ctx_free(matmul_ctx *c) {
    if (!c) return;
    for (int i = 0; i < MM_PLANS; i++)
        plan_release(&c->plans[i]);
    cudaFree(c->ws); /* cudaFree waits for work that may still use the buffers */
    cudaFree(c->xb);
    if (c->lt) cublasLtDestroy(c->lt);
    free(c);
}

extern "C" akv_status matmul_cuda(matmul_ctx *c, float *out, const float *x, const uint16_t *w,
                                  const float *bias, int n, int k, int m, cudaStream_t stream,
                                  akv_err *err) {
    akv_status st = AKV_OK;
    mm_plan *p = NULL;
    const float one = 1.0f, zero = 0.0f;
    const size_t nk = (size_t)n * k;
    const int vec4 = (uintptr_t)x % 16 == 0;
    const unsigned al[3] = {ptr_align(w), ptr_align(out), bias ? ptr_align(bias) : 256u};
    if (!c || !out || !x || !w || n < 0 || k <= 0 || m <= 0 || !stream)
        return akv_fail(err, AKV_EINPUT, "matmul_cuda: bad arguments (n=%d k=%d m=%d%s)", n, k, m,
                        stream ? "" : ", default stream");
    if ((size_t)n * k > c->xb_elems)
        return akv_fail(err, AKV_ERUNTIME, "matmul_cuda: n*k = %zu exceeds the context's %zu",
                        (size_t)n * k, c->xb_elems);
    if (n == 0) return AKV_OK;
    convert_kernel<<<grid_for(vec4 ? nk / 4 : nk), 256, 0, stream>>>(c->xb, x, nk, vec4);
    CUDA_CHECK(err, cudaGetLastError());
    if ((st = plan_get(c, &p, n, k, m, bias, al, err))) return st;
    if (p->fused_bias)
        CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                         &bias, sizeof bias));
    CUBLAS_CHECK(err, cublasLtMatmul(c->lt, p->op, &one, w, p->a, c->xb, p->b, &zero, out, p->d,
                                     out, p->d, &p->algo, c->ws, MM_WORKSPACE_BYTES, stream));
    if (bias && !p->fused_bias) {
        bias_kernel<<<grid_for((size_t)n * m), 256, 0, stream>>>(out, bias, n, m);
        CUDA_CHECK(err, cudaGetLastError());
    }
    return AKV_OK;
fail:
    return st;
}
