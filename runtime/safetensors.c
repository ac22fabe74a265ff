/* safetensors.c — mmap'd reader for Hugging Face .safetensors files and sharded folders
 * (model.safetensors.index.json). Every header is validated completely on open so that later
 * code can trust shapes, dtypes and byte ranges; see safetensors.h for the contract. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* real headers are well under 10 MB */
#define ST_MAX_JSON_INT 9007199254740992.0         /* 2^53: larger doubles are not exact */

typedef struct st_file {
    char *path;
    void *map;
    size_t size;
} st_file;

struct st_model {
    st_file *files; /* [n_files] */
    int n_files;
    st_tensor *tensors; /* [n_tensors], sorted by name once opening is done */
    size_t n_tensors;
    size_t cap_tensors;
};

/* Byte range of one tensor inside its file's data region, for the overlap check. */
typedef struct st_range {
    uint64_t begin, end;
    const char *name;
} st_range;

static const char *const dtype_names[AKV_DT_COUNT] = {"F32", "F16", "BF16", "F64", "I64",
                                                      "I32", "I16", "I8",   "U8",  "BOOL"};
static const size_t dtype_sizes[AKV_DT_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

size_t akv_dtype_size(akv_dtype dt) {
    return (unsigned)dt < AKV_DT_COUNT ? dtype_sizes[dt] : 0;
}

const char *akv_dtype_name(akv_dtype dt) {
    return (unsigned)dt < AKV_DT_COUNT ? dtype_names[dt] : "?";
}

static int dtype_parse(const char *s, akv_dtype *dt) {
    for (int i = 0; i < AKV_DT_COUNT; i++) {
        if (strcmp(s, dtype_names[i]) == 0) {
            *dt = (akv_dtype)i;
            return 1;
        }
    }
    return 0;
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_JSON_INT || floor(d) != d) return 0;
    *v = (uint64_t)d;
    return 1;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- mapping one file ---- */

static akv_status map_file(st_file *f, const char *path, akv_err *err) {
    akv_status st = AKV_OK;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return akv_fail(err, AKV_EINPUT, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = akv_fail(err, AKV_EINPUT, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = akv_fail(err, AKV_EINPUT, "%s is not a regular file", path);
        goto fail;
    }
    if (sb.st_size < 8) {
        st = akv_fail(err, AKV_EINPUT,
                      "%s: file is %lld bytes, too short for a safetensors header (needs at least "
                      "8); the file is truncated or not a safetensors file",
                      path, (long long)sb.st_size);
        goto fail;
    }
    f->size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = akv_fail(err, AKV_ERUNTIME, "cannot mmap %s: %s", path, strerror(errno));
    }
fail:
    close(fd);
    return st;
}

/* Reads the u64 little-endian header length and checks it against the file size. */
static akv_status header_len(const st_file *f, uint64_t *hlen, akv_err *err) {
    const unsigned char *b = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > ST_MAX_HEADER)
        return akv_fail(err, AKV_EINPUT,
                        "%s: header length %llu is absurdly large (limit %llu bytes); the file "
                        "is corrupt or not a safetensors file",
                        f->path, (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    if (n > f->size - 8)
        return akv_fail(err, AKV_EINPUT,
                        "%s: header length %llu exceeds the %zu bytes after the length field; "
                        "the file is truncated (re-download it)",
                        f->path, (unsigned long long)n, f->size - 8);
    *hlen = n;
    return AKV_OK;
}

/* ---- one header entry ---- */

static akv_status parse_shape(st_tensor *t, const cJSON *shape, const char *path,
                              akv_err *err) {
    if (!cJSON_IsArray(shape))
        return akv_fail(err, AKV_EINPUT, "%s: tensor %s: \"shape\" must be an array of integers",
                        path, t->name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS)
        return akv_fail(err, AKV_EINPUT, "%s: tensor %s has %d dims, more than the %d supported",
                        path, t->name, nd, ST_MAX_DIMS);
    t->ndim = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_uint(d, &v))
            return akv_fail(err, AKV_EINPUT,
                            "%s: tensor %s: shape dim %d is not a non-negative integer", path,
                            t->name, t->ndim);
        t->shape[t->ndim++] = (int64_t)v;
    }
    return AKV_OK;
}

/* Byte size implied by dtype x shape; returns 0 when it overflows 64 bits. */
static int shape_bytes(const st_tensor *t, uint64_t *bytes) {
    uint64_t n = akv_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d != 0 && n > UINT64_MAX / d) return 0;
        n *= d;
    }
    *bytes = n;
    return 1;
}

static akv_status parse_offsets(const cJSON *offs, const st_tensor *t, const char *path,
                                uint64_t data_len, st_range *r, akv_err *err) {
    uint64_t b, e, want;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(cJSON_GetArrayItem(offs, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &e) || b > e)
        return akv_fail(err, AKV_EINPUT,
                        "%s: tensor %s: \"data_offsets\" must be [begin, end] with "
                        "0 <= begin <= end",
                        path, t->name);
    if (e > data_len)
        return akv_fail(err, AKV_EINPUT,
                        "%s: tensor %s: data_offsets end %llu is beyond the data region (%llu "
                        "bytes); the file is truncated (re-download it)",
                        path, t->name, (unsigned long long)e, (unsigned long long)data_len);
    if (!shape_bytes(t, &want))
        return akv_fail(err, AKV_EINPUT, "%s: tensor %s: shape is too large (byte size overflows)",
                        path, t->name);
    if (want != e - b)
        return akv_fail(err, AKV_EINPUT,
                        "%s: tensor %s: data_offsets span %llu bytes but dtype %s x shape needs "
                        "%llu",
                        path, t->name, (unsigned long long)(e - b), akv_dtype_name(t->dtype),
                        (unsigned long long)want);
    r->begin = b;
    r->end = e;
    r->name = t->name;
    return AKV_OK;
}

/* Fills t (name already set) from one header entry; data points into the data region. */
static akv_status parse_entry(st_tensor *t, const cJSON *e, const char *path,
                              const unsigned char *data, uint64_t data_len, st_range *r,
                              akv_err *err) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !dt || !shape || !offs)
        return akv_fail(err, AKV_EINPUT,
                        "%s: tensor %s: header entry needs \"dtype\", \"shape\" and "
                        "\"data_offsets\"",
                        path, t->name);
    if (!cJSON_IsString(dt))
        return akv_fail(err, AKV_EINPUT, "%s: tensor %s: \"dtype\" must be a string", path,
                        t->name);
    if (!dtype_parse(dt->valuestring, &t->dtype))
        return akv_fail(err, AKV_EINPUT,
                        "%s: tensor %s: unknown dtype \"%s\" (known: F32 F16 BF16 F64 I64 I32 "
                        "I16 I8 U8 BOOL)",
                        path, t->name, dt->valuestring);
    akv_status st = parse_shape(t, shape, path, err);
    if (st == AKV_OK) st = parse_offsets(offs, t, path, data_len, r, err);
    if (st != AKV_OK) return st;
    t->data = data + r->begin;
    t->nbytes = (size_t)(r->end - r->begin);
    return AKV_OK;
}

/* ---- whole header ---- */

static int range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static akv_status check_overlaps(st_range *r, size_t n, const char *path, akv_err *err) {
    qsort(r, n, sizeof *r, range_cmp);
    const st_range *prev = NULL; /* the non-empty range reaching furthest so far */
    for (size_t i = 0; i < n; i++) {
        if (r[i].begin == r[i].end) continue;
        if (prev && r[i].begin < prev->end)
            return akv_fail(err, AKV_EINPUT,
                            "%s: tensors %s and %s have overlapping data_offsets ([%llu,%llu) "
                            "and [%llu,%llu))",
                            path, prev->name, r[i].name, (unsigned long long)prev->begin,
                            (unsigned long long)prev->end, (unsigned long long)r[i].begin,
                            (unsigned long long)r[i].end);
        if (!prev || r[i].end > prev->end) prev = &r[i];
    }
    return AKV_OK;
}

static akv_status reserve_tensors(st_model *m, size_t extra, akv_err *err) {
    if (m->n_tensors + extra <= m->cap_tensors) return AKV_OK;
    size_t cap = m->cap_tensors ? m->cap_tensors : 64;
    while (cap < m->n_tensors + extra) cap *= 2;
    st_tensor *t = realloc(m->tensors, cap * sizeof *t);
    if (!t) return akv_fail(err, AKV_ERUNTIME, "out of memory reading safetensors headers");
    m->tensors = t;
    m->cap_tensors = cap;
    return AKV_OK;
}

/* Parses the header JSON; rejects trailing garbage (safetensors pads with spaces only). */
static akv_status header_json(cJSON **out, const st_file *f, uint64_t hlen, akv_err *err) {
    const char *h = (const char *)f->map + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (root && end) {
        while (end < h + hlen && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
            end++;
    }
    if (!root || !end || end != h + hlen) {
        long at = end ? (long)(end - h) : -1;
        cJSON_Delete(root);
        return akv_fail(err, AKV_EINPUT,
                        "%s: header is not valid JSON (error near byte %ld of %llu); the file is "
                        "corrupt or not a safetensors file",
                        f->path, at, (unsigned long long)hlen);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return akv_fail(err, AKV_EINPUT, "%s: header JSON is not an object", f->path);
    }
    *out = root;
    return AKV_OK;
}

/* Appends every tensor of file index fi's header to m. */
static akv_status parse_header(st_model *m, int fi, akv_err *err) {
    const st_file *f = &m->files[fi];
    uint64_t hlen = 0;
    cJSON *root = NULL;
    st_range *ranges = NULL;
    size_t nr = 0;
    akv_status st = header_len(f, &hlen, err);
    if (st == AKV_OK) st = header_json(&root, f, hlen, err);
    if (st != AKV_OK) goto fail;
    size_t n = (size_t)cJSON_GetArraySize(root);
    ranges = malloc((n ? n : 1) * sizeof *ranges);
    if (!ranges || reserve_tensors(m, n, err) != AKV_OK) {
        st = akv_fail(err, AKV_ERUNTIME, "out of memory reading %s", f->path);
        goto fail;
    }
    const unsigned char *data = (const unsigned char *)f->map + 8 + hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        st_tensor *t = &m->tensors[m->n_tensors];
        memset(t, 0, sizeof *t);
        t->file = fi;
        if (!(t->name = strdup(e->string))) {
            st = akv_fail(err, AKV_ERUNTIME, "out of memory reading %s", f->path);
            goto fail;
        }
        m->n_tensors++; /* owned by m from here, freed by st_close on error */
        st = parse_entry(t, e, f->path, data, f->size - 8 - hlen, &ranges[nr++], err);
        if (st != AKV_OK) goto fail;
    }
    st = check_overlaps(ranges, nr, f->path, err);
fail:
    free(ranges);
    cJSON_Delete(root);
    return st;
}

/* ---- model assembly ---- */

static akv_status add_file(st_model *m, const char *path, akv_err *err) {
    st_file *fs = realloc(m->files, (size_t)(m->n_files + 1) * sizeof *fs);
    if (!fs) return akv_fail(err, AKV_ERUNTIME, "out of memory opening %s", path);
    m->files = fs;
    st_file *f = &fs[m->n_files];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) return akv_fail(err, AKV_ERUNTIME, "out of memory");
    m->n_files++;
    akv_status st = map_file(f, path, err);
    if (st != AKV_OK) return st;
    return parse_header(m, m->n_files - 1, err);
}

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sorts tensors by name for bsearch and rejects duplicates (within or across shards). */
static akv_status finish(st_model *m, akv_err *err) {
    qsort(m->tensors, m->n_tensors, sizeof *m->tensors, tensor_cmp);
    for (size_t i = 1; i < m->n_tensors; i++) {
        const st_tensor *a = &m->tensors[i - 1], *b = &m->tensors[i];
        if (strcmp(a->name, b->name) == 0)
            return akv_fail(err, AKV_EINPUT, "duplicate tensor name %s (in %s and %s)", a->name,
                            m->files[a->file].path, m->files[b->file].path);
    }
    return AKV_OK;
}

static akv_status model_new(st_model **out, akv_err *err) {
    *out = calloc(1, sizeof **out);
    return *out ? AKV_OK : akv_fail(err, AKV_ERUNTIME, "out of memory");
}

akv_status st_open_file(st_model **out, const char *path, akv_err *err) {
    st_model *m = NULL;
    *out = NULL;
    akv_status st = model_new(&m, err);
    if (st == AKV_OK) st = add_file(m, path, err);
    if (st == AKV_OK) st = finish(m, err);
    if (st != AKV_OK) goto fail;
    *out = m;
    return AKV_OK;
fail:
    st_close(m);
    return st;
}

/* ---- sharded folders ---- */

static akv_status read_text(char **out, const char *path, akv_err *err) {
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    if (!fp) return akv_fail(err, AKV_EINPUT, "cannot read %s: %s", path, strerror(errno));
    akv_status st = AKV_OK;
    long n = -1;
    if (fseek(fp, 0, SEEK_END) == 0) n = ftell(fp);
    if (n < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        st = akv_fail(err, AKV_EINPUT, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        st = akv_fail(err, AKV_EINPUT, "cannot read %s", path);
        free(buf);
        goto fail;
    }
    buf[n] = '\0';
    *out = buf;
fail:
    fclose(fp);
    return st;
}

/* Parses the index and returns its "weight_map" object (owned by *root). */
static akv_status index_parse(cJSON **root, const cJSON **wmap, const char *path, akv_err *err) {
    char *text = NULL;
    akv_status st = read_text(&text, path, err);
    if (st != AKV_OK) return st;
    *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(*root))
        return akv_fail(err, AKV_EINPUT, "%s is not a valid JSON object", path);
    *wmap = cJSON_GetObjectItemCaseSensitive(*root, "weight_map");
    if (!cJSON_IsObject(*wmap) || !(*wmap)->child)
        return akv_fail(err, AKV_EINPUT, "%s: \"weight_map\" is missing, empty or not an object",
                        path);
    const cJSON *e;
    cJSON_ArrayForEach(e, *wmap) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return akv_fail(err, AKV_EINPUT, "%s: weight_map entry %s must be a shard file name",
                            path, e->string);
    }
    return AKV_OK;
}

/* Index of the file opened for shard name `shard`, or -1. */
static int shard_index(const st_model *m, const char *dir, const char *shard) {
    size_t dl = strlen(dir);
    for (int i = 0; i < m->n_files; i++) {
        const char *p = m->files[i].path;
        if (strncmp(p, dir, dl) == 0 && p[dl] == '/' && strcmp(p + dl + 1, shard) == 0) return i;
    }
    return -1;
}

/* Opens every distinct shard once, then checks each weight_map name against its shard. */
static akv_status open_shards(st_model *m, const char *dir, const cJSON *wmap, akv_err *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, wmap) {
        if (shard_index(m, dir, e->valuestring) >= 0) continue;
        char *p = path_join(dir, e->valuestring);
        if (!p) return akv_fail(err, AKV_ERUNTIME, "out of memory");
        akv_status st = add_file(m, p, err);
        free(p);
        if (st != AKV_OK) return st;
    }
    akv_status st = finish(m, err);
    if (st != AKV_OK) return st;
    cJSON_ArrayForEach(e, wmap) {
        const st_tensor *t = st_find(m, e->string);
        if (!t || t->file != shard_index(m, dir, e->valuestring))
            return akv_fail(err, AKV_EINPUT,
                            "tensor %s is mapped to shard %s/%s but not found there (the index "
                            "and the shards do not match; re-download the model)",
                            e->string, dir, e->valuestring);
    }
    return AKV_OK;
}

static akv_status open_index(st_model *m, const char *dir, const char *index, akv_err *err) {
    cJSON *root = NULL;
    const cJSON *wmap = NULL;
    akv_status st = index_parse(&root, &wmap, index, err);
    if (st == AKV_OK) st = open_shards(m, dir, wmap, err);
    cJSON_Delete(root);
    return st;
}

akv_status st_open_dir(st_model **out, const char *dir, akv_err *err) {
    st_model *m = NULL;
    char *index = path_join(dir, "model.safetensors.index.json");
    char *single = path_join(dir, "model.safetensors");
    *out = NULL;
    akv_status st = (index && single) ? model_new(&m, err)
                                      : akv_fail(err, AKV_ERUNTIME, "out of memory");
    if (st != AKV_OK) goto fail;
    if (access(index, F_OK) == 0) {
        st = open_index(m, dir, index, err);
    } else if (access(single, F_OK) == 0) {
        st = add_file(m, single, err);
        if (st == AKV_OK) st = finish(m, err);
    } else {
        st = akv_fail(err, AKV_EINPUT,
                      "no model.safetensors or model.safetensors.index.json in %s (pass --model "
                      "a Hugging Face model folder)",
                      dir);
    }
    if (st != AKV_OK) goto fail;
    *out = m;
    m = NULL;
fail:
    st_close(m);
    free(index);
    free(single);
    return st;
}

/* ---- lookups and reads ---- */

static int find_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const st_tensor *)elem)->name);
}

const st_tensor *st_find(const st_model *m, const char *name) {
    if (!m || !name || !m->n_tensors) return NULL;
    return bsearch(name, m->tensors, m->n_tensors, sizeof *m->tensors, find_cmp);
}

size_t st_count(const st_model *m) {
    return m ? m->n_tensors : 0;
}

const st_tensor *st_at(const st_model *m, size_t i) {
    return (m && i < m->n_tensors) ? &m->tensors[i] : NULL;
}

akv_status st_read_f32(const st_tensor *t, float *dst, size_t n, akv_err *err) {
    if (!t) return akv_fail(err, AKV_EINPUT, "st_read_f32: no tensor");
    size_t esz = akv_dtype_size(t->dtype);
    if (t->dtype != AKV_DT_F32 && t->dtype != AKV_DT_F16 && t->dtype != AKV_DT_BF16)
        return akv_fail(err, AKV_EINPUT, "tensor %s has dtype %s, expected a float type",
                        t->name, akv_dtype_name(t->dtype));
    if (n != t->nbytes / esz)
        return akv_fail(err, AKV_EINPUT, "tensor %s has %zu elements, expected %zu", t->name,
                        t->nbytes / esz, n);
    const unsigned char *p = t->data;
    if (t->dtype == AKV_DT_F32) {
        memcpy(dst, p, n * sizeof *dst); /* data may be unaligned: copy bytes */
        return AKV_OK;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = t->dtype == AKV_DT_F16 ? akv_f16_to_f32(h) : akv_bf16_to_f32(h);
    }
    return AKV_OK;
}

void st_close(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) {
        if (m->files[i].map) munmap(m->files[i].map, m->files[i].size);
        free(m->files[i].path);
    }
    for (size_t i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
    free(m->files);
    free(m->tensors);
    free(m);
}
