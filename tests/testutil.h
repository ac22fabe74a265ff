/* testutil.h — helpers shared by the tests: running the asymkv binary, temp files, .npy. */
#ifndef ASYMKV_TESTUTIL_H
#define ASYMKV_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Result of running a shell command: exit status and captured stdout / stderr (malloc'd). */
typedef struct run_result {
    int status;   /* exit code, or 128+signal */
    char *out;
    char *err;
} run_result;

/* Runs `sh -c cmd` (printf-style) capturing both streams. */
run_result tu_run(const char *fmt, ...);
void tu_run_free(run_result *r);

/* Path of the asymkv binary (env ASYMKV_BIN) and of tests/data (env ASYMKV_TESTDATA). */
const char *tu_bin(void);
const char *tu_data(void);

/* A fresh temporary directory (mkdtemp) for this test; removed by tu_rmdir. */
char *tu_tmpdir(void);
void tu_rmdir(const char *dir);

/* Writes bytes to a file; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* Reads a whole file (malloc'd, NUL-terminated); *n gets the size. NULL on error. */
char *tu_read_file(const char *path, size_t *n);

/* Reads a float32 or int32/int64 .npy (C order). Returns malloc'd float data (ints are
 * converted), fills shape (up to 4 dims) and ndim. NULL on error. */
float *tu_read_npy(const char *path, int64_t shape[4], int *ndim);

/* Reads whitespace-separated integers from a text file; malloc'd, *n gets the count. */
int32_t *tu_read_ids(const char *path, int *n);

/* Seeded xorshift32 and uniform floats in [lo, hi): the tests' and benchmarks' random data. */
static inline uint32_t rng_next(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static inline float rng_uniform(uint32_t *s, float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_next(s) >> 8) * (1.0 / 16777216.0));
}

#endif
