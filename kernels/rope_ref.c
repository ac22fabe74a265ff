/* rope_ref.c — scalar twin of rotary position embedding: the inv_freq schedules of HF
 * transformers (default and "llama3"), and the in-place rotation in the "rotate_half" layout.
 * Every step is rounded to fp32 where torch computes in fp32. Tested in tests/test_ops.c. */
#include "kernels.h"

#include <math.h>

/* torch: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), all in fp32. */
static void inv_freq_default(float *inv_freq, int head_dim, double theta) {
    float base = (float)theta;
    for (int i = 0; i < head_dim / 2; i++) {
        float e = (float)(2 * i) / (float)head_dim;
        float p = (float)pow((double)base, (double)e);
        inv_freq[i] = 1.0f / p;
    }
}

/* One frequency under transformers' _compute_llama3_parameters. Python scalars meet fp32
 * tensors there, so each is rounded to float first; `s / t` is t.reciprocal() * s in torch. */
static float llama3_scale(float f, const rope_params *p) {
    const double two_pi = 6.283185307179586476925; /* Python's 2 * math.pi */
    float factor = (float)p->factor;
    float low_wavelen = (float)(p->original_max_pos / p->low_freq_factor);
    float high_wavelen = (float)(p->original_max_pos / p->high_freq_factor);
    float wavelen = (1.0f / f) * (float)two_pi;
    if (wavelen > low_wavelen) return f / factor; /* long waves: interpolate fully */
    if (wavelen < high_wavelen) return f;         /* short waves: keep */
    float ratio = (1.0f / wavelen) * (float)p->original_max_pos;
    float smooth = (ratio - (float)p->low_freq_factor) /
                   (float)(p->high_freq_factor - p->low_freq_factor);
    return (1.0f - smooth) * f / factor + smooth * f;
}

void rope_inv_freq_ref(float *inv_freq, int head_dim, const rope_params *p) {
    inv_freq_default(inv_freq, head_dim, p->theta);
    if (p->kind != ROPE_LLAMA3) return;
    for (int i = 0; i < head_dim / 2; i++) inv_freq[i] = llama3_scale(inv_freq[i], p);
}

/* Rotates one head: channel i pairs with i + half; angle = pos * inv_freq[i] in fp32. */
static void rope_head(float *x, float fpos, int head_dim, const float *inv_freq) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float angle = fpos * inv_freq[i];
        float c = (float)cos((double)angle), s = (float)sin((double)angle);
        float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
    }
}

void rope_ref(float *x, const int32_t *pos, int n, int n_heads, int head_dim,
              const float *inv_freq) {
    for (int t = 0; t < n; t++) {
        float fpos = (float)pos[t];
        float *row = x + (size_t)t * n_heads * head_dim;
        for (int h = 0; h < n_heads; h++)
            rope_head(row + (size_t)h * head_dim, fpos, head_dim, inv_freq);
    }
}
