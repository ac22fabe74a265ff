/* io.h — small file formats the commands read and write: token-id lists (inline or a file of
 * whitespace-separated integers) and NumPy .npy float32 arrays (written atomically: a temp
 * file renamed into place, so a failed run leaves no partial output). */
#ifndef ASYMKV_IO_H
#define ASYMKV_IO_H

#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parses whitespace-separated decimal ids. what names the source in errors ("--ids").
 * *ids is malloc'd. An empty list, a non-integer or a negative value is AKV_EINPUT. */
akv_status ids_parse(const char *text, const char *what, int32_t **ids, int *n, akv_err *err);

/* Reads a whole file and parses it with ids_parse. */
akv_status ids_read_file(const char *path, int32_t **ids, int *n, akv_err *err);

/* Reads a whole file into a malloc'd NUL-terminated buffer. */
akv_status io_read_text(const char *path, char **text, size_t *len, akv_err *err);

/* Writes float32 data of the given shape (C order) as a version-1.0 .npy file. */
akv_status npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim,
                         akv_err *err);

#ifdef __cplusplus
}
#endif
#endif
