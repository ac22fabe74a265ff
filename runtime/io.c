/* io.c — token-id lists and .npy output; see io.h. */
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

akv_status ids_parse(const char *text, const char *what, int32_t **ids, int *n, akv_err *err) {
    *ids = NULL;
    *n = 0;
    int cap = 0, len = 0;
    int32_t *out = NULL;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != ',')) {
            free(out);
            return akv_fail(err, AKV_EINPUT,
                            "%s: \"%.20s\" is not a token id (expected non-negative integers "
                            "separated by spaces)", what, p);
        }
        if (len == cap) {
            cap = cap ? 2 * cap : 256;
            int32_t *nb = realloc(out, (size_t)cap * sizeof *out);
            if (!nb) {
                free(out);
                return akv_fail(err, AKV_ERUNTIME, "out of host memory");
            }
            out = nb;
        }
        out[len++] = (int32_t)v;
        p = end;
    }
    if (len == 0) {
        free(out);
        return akv_fail(err, AKV_EINPUT, "%s: no token ids given", what);
    }
    *ids = out;
    *n = len;
    return AKV_OK;
}

akv_status io_read_text(const char *path, char **text, size_t *len, akv_err *err) {
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return akv_fail(err, AKV_EINPUT, "cannot read %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return akv_fail(err, AKV_ERUNTIME, "out of host memory reading %s", path);
    if (bad) {
        free(buf);
        return akv_fail(err, AKV_EINPUT, "error reading %s", path);
    }
    buf[n] = '\0';
    *text = buf;
    if (len) *len = n;
    return AKV_OK;
}

akv_status ids_read_file(const char *path, int32_t **ids, int *n, akv_err *err) {
    char *text;
    akv_status s = io_read_text(path, &text, NULL, err);
    if (s) return s;
    s = ids_parse(text, path, ids, n, err);
    free(text);
    return s;
}

akv_status npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim,
                         akv_err *err) {
    char hdr[256], dims[160] = "";
    size_t count = 1, off = 0;
    for (int i = 0; i < ndim; i++) {
        off += (size_t)snprintf(dims + off, sizeof dims - off, "%lld%s", (long long)shape[i],
                                ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        count *= (size_t)shape[i];
    }
    int h = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                     dims);
    int total = 10 + h + 1, pad = (64 - total % 64) % 64; /* header padded to 64, ends in \n */
    memset(hdr + h, ' ', (size_t)pad);
    hdr[h + pad] = '\n';
    uint16_t hlen = (uint16_t)(h + pad + 1);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return akv_fail(err, AKV_EINPUT, "cannot write %s: %s", path, strerror(errno));
    unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                               (unsigned char)(hlen >> 8)};
    int ok = fwrite(magic, 1, 10, f) == 10 && fwrite(hdr, 1, hlen, f) == hlen &&
             fwrite(data, sizeof(float), count, f) == count;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return akv_fail(err, AKV_ERUNTIME, "failed writing %s: %s", path, strerror(errno));
    }
    return AKV_OK;
}
