/* test_safetensors.c — safetensors reader: good files (F32/F16/BF16 values, shapes, names),
 * sharded folders, and every malformed header the reader must reject with AKV_EINPUT.
 * Run: ./build/tests/test_safetensors */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "testutil.h"

/* ---- a tiny safetensors writer ---- */

typedef struct wtensor {
    const char *name;
    const char *dtype;
    const char *shape; /* JSON array text, e.g. "[2,3]" */
    const void *data;
    size_t nbytes;
} wtensor;

/* Writes header (JSON text, used as is) + data; the length field says hlen_field, or the real
 * header length when hlen_field is 0. Returns the malloc'd path. */
static char *write_raw(const char *dir, const char *file, const char *header, const void *data,
                       size_t n, uint64_t hlen_field) {
    size_t hl = strlen(header);
    uint64_t field = hlen_field ? hlen_field : hl;
    unsigned char *buf = calloc(1, 8 + hl + n + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(field >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data) memcpy(buf + 8 + hl, data, n);
    char *path = malloc(strlen(dir) + strlen(file) + 2);
    sprintf(path, "%s/%s", dir, file);
    cr_assert_eq(tu_write_file(path, buf, 8 + hl + n), 0);
    free(buf);
    return path;
}

/* Lays tensors out back to back and writes a valid file (header padded to 8 bytes). */
static char *write_st(const char *dir, const char *file, const wtensor *ts, int n) {
    char header[4096];
    size_t off = 0, hl = 0;
    hl += (size_t)snprintf(header, sizeof header, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        hl += (size_t)snprintf(header + hl, sizeof header - hl,
                               ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,"
                               "\"data_offsets\":[%zu,%zu]}",
                               ts[i].name, ts[i].dtype, ts[i].shape, off, off + ts[i].nbytes);
        off += ts[i].nbytes;
    }
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "}");
    while (hl % 8) header[hl++] = ' ';
    header[hl] = '\0';
    unsigned char *data = calloc(1, off + 1);
    for (int i = 0, o = 0; i < n; o += (int)ts[i].nbytes, i++)
        memcpy(data + o, ts[i].data, ts[i].nbytes);
    char *path = write_raw(dir, file, header, data, off, 0);
    free(data);
    return path;
}

static const float f32v[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, -7e5f};
static const float f16v[4] = {0.5f, -2.0f, 1024.0f, 3.140625f};
static const float bf16v[4] = {1.0f, -0.375f, 65536.0f, 1.5f};

/* Writes the standard good file: w (F32 [2,3]), h (F16 [4]), b (BF16 [2,2]), i (I32 [2]). */
static char *write_good(const char *dir, const char *file) {
    uint16_t h[4], b[4];
    for (int i = 0; i < 4; i++) {
        h[i] = akv_f32_to_f16(f16v[i]);
        b[i] = akv_f32_to_bf16(bf16v[i]);
    }
    int32_t iv[2] = {7, -8};
    wtensor ts[] = {{"w", "F32", "[2,3]", f32v, sizeof f32v},
                    {"h", "F16", "[4]", h, sizeof h},
                    {"b", "BF16", "[2,2]", b, sizeof b},
                    {"i", "I32", "[2]", iv, sizeof iv}};
    return write_st(dir, file, ts, 4);
}

/* Opens path, expects AKV_EINPUT with a one-line message containing keyword and the file. */
static void expect_bad(const char *path, const char *keyword) {
    st_model *m = (st_model *)0x1;
    akv_err err = {0};
    akv_status st = st_open_file(&m, path, &err);
    cr_assert_eq(st, AKV_EINPUT, "expected AKV_EINPUT for %s, got %d (%s)", path, st, err.msg);
    cr_assert_eq(err.code, AKV_EINPUT);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, keyword), "message \"%s\" lacks \"%s\"", err.msg, keyword);
    cr_assert(strstr(err.msg, path), "message \"%s\" lacks the path", err.msg);
    cr_assert_null(strchr(err.msg, '\n'));
}

static void expect_bad_header(const char *header, size_t data_len, const char *keyword) {
    char *dir = tu_tmpdir();
    unsigned char *zeros = calloc(1, data_len + 1);
    char *p = write_raw(dir, "bad.safetensors", header, zeros, data_len, 0);
    expect_bad(p, keyword);
    free(zeros);
    free(p);
    tu_rmdir(dir);
    free(dir);
}

/* ---- good files ---- */

Test(safetensors, reads_f32_f16_bf16) {
    char *dir = tu_tmpdir();
    char *p = write_good(dir, "model.safetensors");
    st_model *m = NULL;
    akv_err err = {0};
    cr_assert_eq(st_open_file(&m, p, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(st_count(m), 4);
    cr_assert_str_eq(st_at(m, 0)->name, "b"); /* sorted by name */
    cr_assert_str_eq(st_at(m, 3)->name, "w");
    cr_assert_null(st_at(m, 4));
    cr_assert_null(st_find(m, "nope"));
    cr_assert_null(st_find(m, "__metadata__"));

    const st_tensor *w = st_find(m, "w"), *h = st_find(m, "h"), *b = st_find(m, "b");
    cr_assert(w && h && b);
    cr_assert_eq(w->dtype, AKV_DT_F32);
    cr_assert_eq(w->ndim, 2);
    cr_assert_eq(w->shape[0], 2);
    cr_assert_eq(w->shape[1], 3);
    cr_assert_eq(w->nbytes, 24);
    cr_assert_eq(h->dtype, AKV_DT_F16);
    cr_assert_eq(b->dtype, AKV_DT_BF16);
    cr_assert_eq(b->ndim, 2);
    cr_assert_str_eq(akv_dtype_name(b->dtype), "BF16");
    cr_assert_eq(akv_dtype_size(AKV_DT_F64), 8);

    float out[6];
    cr_assert_eq(st_read_f32(w, out, 6, &err), AKV_OK, "%s", err.msg);
    for (int i = 0; i < 6; i++) cr_assert_eq(out[i], f32v[i], "w[%d] = %g", i, out[i]);
    cr_assert_eq(st_read_f32(h, out, 4, &err), AKV_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++) cr_assert_eq(out[i], f16v[i], "h[%d] = %g", i, out[i]);
    cr_assert_eq(st_read_f32(b, out, 4, &err), AKV_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++) cr_assert_eq(out[i], bf16v[i], "b[%d] = %g", i, out[i]);
    st_close(m);
    free(p);
    tu_rmdir(dir);
    free(dir);
}

Test(safetensors, read_f32_rejects_int_and_wrong_count) {
    char *dir = tu_tmpdir();
    char *p = write_good(dir, "model.safetensors");
    st_model *m = NULL;
    akv_err err = {0};
    cr_assert_eq(st_open_file(&m, p, &err), AKV_OK, "%s", err.msg);
    float out[6];
    cr_assert_eq(st_read_f32(st_find(m, "i"), out, 2, &err), AKV_EINPUT);
    cr_assert(strstr(err.msg, "expected a float type"), "%s", err.msg);
    cr_assert(strstr(err.msg, "I32"), "%s", err.msg);
    akv_err_clear(&err);
    cr_assert_eq(st_read_f32(st_find(m, "w"), out, 5, &err), AKV_EINPUT);
    cr_assert(strstr(err.msg, "elements"), "%s", err.msg);
    st_close(m);
    free(p);
    tu_rmdir(dir);
    free(dir);
}

Test(safetensors, open_dir_single_file) {
    char *dir = tu_tmpdir();
    free(write_good(dir, "model.safetensors"));
    st_model *m = NULL;
    akv_err err = {0};
    cr_assert_eq(st_open_dir(&m, dir, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(st_count(m), 4);
    cr_assert_not_null(st_find(m, "h"));
    st_close(m);
    st_close(NULL);
    tu_rmdir(dir);
    free(dir);
}

/* Two shards: a + b in shard 1, c in shard 2. */
static void write_shards(const char *dir, const char *index) {
    float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
    wtensor s1[] = {{"a", "F32", "[2]", a, sizeof a}, {"b", "F32", "[3]", b, sizeof b}};
    wtensor s2[] = {{"c", "F32", "[1,1]", c, sizeof c}};
    free(write_st(dir, "model-00001-of-00002.safetensors", s1, 2));
    free(write_st(dir, "model-00002-of-00002.safetensors", s2, 1));
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    cr_assert_eq(tu_write_file(path, index, strlen(index)), 0);
}

Test(safetensors, sharded_folder) {
    char *dir = tu_tmpdir();
    write_shards(dir, "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                      "\"a\":\"model-00001-of-00002.safetensors\","
                      "\"c\":\"model-00002-of-00002.safetensors\","
                      "\"b\":\"model-00001-of-00002.safetensors\"}}");
    st_model *m = NULL;
    akv_err err = {0};
    cr_assert_eq(st_open_dir(&m, dir, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(st_count(m), 3);
    const st_tensor *a = st_find(m, "a"), *b = st_find(m, "b"), *c = st_find(m, "c");
    cr_assert(a && b && c);
    cr_assert_eq(a->file, b->file);
    cr_assert_neq(a->file, c->file);
    float out[3];
    cr_assert_eq(st_read_f32(b, out, 3, &err), AKV_OK, "%s", err.msg);
    cr_assert(out[0] == 3 && out[1] == 4 && out[2] == 5);
    cr_assert_eq(st_read_f32(c, out, 1, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(out[0], 6);
    cr_assert_eq(c->ndim, 2);
    st_close(m);
    tu_rmdir(dir);
    free(dir);
}

/* ---- folders that must fail ---- */

static void expect_dir_bad(const char *dir, const char *keyword) {
    st_model *m = (st_model *)0x1;
    akv_err err = {0};
    cr_assert_eq(st_open_dir(&m, dir, &err), AKV_EINPUT, "%s", err.msg);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, keyword), "message \"%s\" lacks \"%s\"", err.msg, keyword);
    cr_assert_null(strchr(err.msg, '\n'));
}

Test(safetensors, sharded_missing_tensor) {
    char *dir = tu_tmpdir();
    write_shards(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                      "\"c\":\"model-00001-of-00002.safetensors\"}}");
    expect_dir_bad(dir, "tensor c is mapped to shard");
    expect_dir_bad(dir, "but not found there");
    tu_rmdir(dir);
    free(dir);
}

Test(safetensors, sharded_missing_shard_file) {
    char *dir = tu_tmpdir();
    write_shards(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                      "\"z\":\"model-00003-of-00003.safetensors\"}}");
    expect_dir_bad(dir, "model-00003-of-00003.safetensors");
    tu_rmdir(dir);
    free(dir);
}

Test(safetensors, sharded_bad_index) {
    char *dir = tu_tmpdir();
    write_shards(dir, "{\"weight_map\": [1, 2");
    expect_dir_bad(dir, "model.safetensors.index.json");
    write_shards(dir, "{\"metadata\":{}}");
    expect_dir_bad(dir, "weight_map");
    tu_rmdir(dir);
    free(dir);
}

Test(safetensors, missing_files) {
    char *dir = tu_tmpdir();
    expect_dir_bad(dir, "no model.safetensors or model.safetensors.index.json in");
    expect_dir_bad(dir, "--model");
    char path[512];
    snprintf(path, sizeof path, "%s/absent.safetensors", dir);
    expect_bad(path, "cannot open");
    tu_rmdir(dir);
    free(dir);
}

/* ---- malformed single files ---- */

Test(safetensors, too_short) {
    char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    cr_assert_eq(tu_write_file(path, "\x10\0\0\0\0", 5), 0);
    expect_bad(path, "too short");
    tu_rmdir(dir);
    free(dir);
}

/* Writes the good file, cuts it to `keep` bytes (negative: that many fewer), expects failure. */
static void expect_cut(long keep, const char *keyword) {
    char *dir = tu_tmpdir();
    char *p = write_good(dir, "cut.safetensors");
    size_t n = 0;
    char *bytes = tu_read_file(p, &n);
    size_t k = keep < 0 ? n - (size_t)(-keep) : (size_t)keep;
    cr_assert_eq(tu_write_file(p, bytes, k), 0);
    expect_bad(p, keyword);
    free(bytes);
    free(p);
    tu_rmdir(dir);
    free(dir);
}

Test(safetensors, truncated_in_data) {
    expect_cut(-4, "truncated");
    expect_cut(-4, "beyond the data region");
}

Test(safetensors, truncated_in_header) {
    expect_cut(8 + 20, "truncated");
    expect_cut(8 + 20, "header length");
}

Test(safetensors, bad_header_length) {
    char *dir = tu_tmpdir();
    char *p = write_raw(dir, "huge.safetensors", "{}", NULL, 0, (uint64_t)1 << 40);
    expect_bad(p, "absurdly large");
    free(p);
    p = write_raw(dir, "long.safetensors", "{}", NULL, 0, 3);
    expect_bad(p, "exceeds");
    free(p);
    tu_rmdir(dir);
    free(dir);
}

Test(safetensors, bad_json) {
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",", 0, "not valid JSON");
    expect_bad_header("{\"w\":1} trailing", 0, "not valid JSON");
    expect_bad_header("[1,2]   ", 0, "not an object");
}

Test(safetensors, bad_entries) {
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    expect_bad_header("{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4,
                      "shape");
    expect_bad_header("{\"w\":[1,2,3]}", 4, "needs");
}

Test(safetensors, unknown_dtype) {
    expect_bad_header("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                      "unknown dtype \"F8_E4M3\"");
}

Test(safetensors, bad_shape) {
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                      "non-negative");
    expect_bad_header("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                      "\"data_offsets\":[0,1]}}",
                      1, "dims");
}

Test(safetensors, offsets_out_of_range) {
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}", 16,
                      "beyond the data region");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16,
                      "begin <= end");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 16,
                      "data_offsets");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16,
                      "data_offsets");
}

Test(safetensors, overlapping_offsets) {
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      16, "overlapping");
    /* an empty tensor between them does not hide the overlap of a and c */
    expect_bad_header("{\"c\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[12,20]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                      20, "overlapping");
}

Test(safetensors, shape_overflow) {
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
                      "\"data_offsets\":[0,8]}}",
                      8, "too large");
}

Test(safetensors, dtype_times_shape_mismatch) {
    expect_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,8]}}", 16,
                      "dtype BF16 x shape needs 12");
}

Test(safetensors, duplicate_names) {
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "duplicate tensor name a");
}

Test(safetensors, empty_tensors_and_metadata_ok) {
    char *dir = tu_tmpdir();
    const char *h = "{\"__metadata__\":{\"x\":\"y\"},"
                    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[4,8]}}";
    char *p = write_raw(dir, "ok.safetensors", h, "\0\0\x80\x3f\1\0\1\0", 8, 0);
    st_model *m = NULL;
    akv_err err = {0};
    cr_assert_eq(st_open_file(&m, p, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(st_count(m), 3);
    float one;
    cr_assert_eq(st_read_f32(st_find(m, "a"), &one, 1, &err), AKV_OK, "%s", err.msg);
    cr_assert_eq(one, 1.0f);
    cr_assert_eq(st_find(m, "a")->ndim, 0);
    cr_assert_eq(st_find(m, "e")->nbytes, 0);
    st_close(m);
    free(p);
    tu_rmdir(dir);
    free(dir);
}
