/* safetensors.h — read-only, mmap'd access to Hugging Face safetensors checkpoints, single
 * file or sharded (model.safetensors.index.json). Headers are validated fully on open; tensor
 * data is not touched until a caller reads it, so a rank that uses a few tensors only pages
 * those in. Not thread-safe to open/close; lookups are read-only and thread-safe. */
#ifndef ASYMKV_SAFETENSORS_H
#define ASYMKV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum akv_dtype {
    AKV_DT_F32 = 0,
    AKV_DT_F16,
    AKV_DT_BF16,
    AKV_DT_F64,
    AKV_DT_I64,
    AKV_DT_I32,
    AKV_DT_I16,
    AKV_DT_I8,
    AKV_DT_U8,
    AKV_DT_BOOL,
    AKV_DT_COUNT
} akv_dtype;

/* Bytes per element, and the safetensors spelling ("F32", "BF16", ...). */
size_t akv_dtype_size(akv_dtype dt);
const char *akv_dtype_name(akv_dtype dt);

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;                   /* owned by the st_model */
    akv_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;             /* points into the mmap'd file */
    size_t nbytes;
    int file;                     /* index of the shard that holds it */
} st_tensor;

typedef struct st_model st_model; /* opaque */

/* Opens one .safetensors file. Every header violation (file shorter than 8 bytes, header length
 * beyond the file, bad JSON, unknown dtype, bad shape, offsets outside the data region or
 * overlapping, dtype x shape != byte size) is AKV_EINPUT with a one-line message naming the file
 * and the problem. */
akv_status st_open_file(st_model **out, const char *path, akv_err *err);

/* Opens a model folder: model.safetensors.index.json if present (every shard it names is
 * opened and every tensor of the weight_map must be in the shard it is mapped to), otherwise
 * model.safetensors. */
akv_status st_open_dir(st_model **out, const char *dir, akv_err *err);

/* NULL when absent. */
const st_tensor *st_find(const st_model *m, const char *name);
size_t st_count(const st_model *m);
const st_tensor *st_at(const st_model *m, size_t i);

/* Converts a float tensor (F32/F16/BF16) to fp32, n elements into dst (n must equal the
 * element count). */
akv_status st_read_f32(const st_tensor *t, float *dst, size_t n, akv_err *err);

void st_close(st_model *m); /* NULL-safe */

#ifdef __cplusplus
}
#endif
#endif
