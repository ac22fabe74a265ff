/* sample_ref.c — scalar twin of greedy sampling: argmax over logits, first index on ties
 * (like torch.argmax). Inputs are assumed NaN-free. Tested in tests/test_ops.c. */
#include "kernels.h"

int argmax_ref(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i; /* strict: an equal later value never wins */
    return best;
}
