/* embedding_ref.c — scalar twin of the token-embedding lookup: copies one table row per id.
 * Layout: table [vocab][dim], out [n][dim]. Tested in tests/test_ops.c. */
#include "kernels.h"

#include <string.h>

void embedding_ref(float *out, const float *table, const int32_t *ids, int n, int dim) {
    size_t row = (size_t)dim * sizeof(float);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, table + (size_t)ids[i] * dim, row);
}
