/* swiglu_ref.c — scalar twin of the SwiGLU gate: out = silu(gate) * up, elementwise.
 * silu(x) = x / (1 + exp(-x)), as torch computes it. Tested in tests/test_ops.c. */
#include "kernels.h"

#include <math.h>

void swiglu_ref(float *out, const float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float silu = g / (1.0f + expf(-g));
        out[i] = silu * up[i];
    }
}
