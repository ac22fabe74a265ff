/* add_ref.c — scalar twin of the residual add x += y over n floats.
 * Tested in tests/test_ops.c. */
#include "kernels.h"

void add_ref(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}
