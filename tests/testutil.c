/* testutil.c — see testutil.h. */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *slurp_fp(FILE *f, size_t *n) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    buf[len] = '\0';
    if (n) *n = len;
    return buf;
}

char *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *s = slurp_fp(f, n);
    fclose(f);
    return s;
}

int tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

run_result tu_run(const char *fmt, ...) {
    run_result r = {-1, NULL, NULL};
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char tmpl_o[] = "/tmp/akv_out_XXXXXX", tmpl_e[] = "/tmp/akv_err_XXXXXX";
    int fo = mkstemp(tmpl_o), fe = mkstemp(tmpl_e);
    if (fo < 0 || fe < 0) return r;
    close(fo);
    close(fe);
    char full[8400 + 64];
    snprintf(full, sizeof full, "( %s ) >%s 2>%s </dev/null", cmd, tmpl_o, tmpl_e);
    int st = system(full);
    if (st == -1) r.status = -1;
    else if (WIFEXITED(st)) r.status = WEXITSTATUS(st);
    else r.status = 128 + WTERMSIG(st);
    r.out = tu_read_file(tmpl_o, NULL);
    r.err = tu_read_file(tmpl_e, NULL);
    if (!r.out) r.out = strdup("");
    if (!r.err) r.err = strdup("");
    unlink(tmpl_o);
    unlink(tmpl_e);
    return r;
}

void tu_run_free(run_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

const char *tu_bin(void) {
    const char *b = getenv("ASYMKV_BIN");
    return b ? b : "asymkv";
}

const char *tu_data(void) {
    const char *d = getenv("ASYMKV_TESTDATA");
    return d ? d : "tests/data";
}

char *tu_tmpdir(void) {
    char *t = strdup("/tmp/akv_test_XXXXXX");
    if (!t || !mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void tu_rmdir(const char *dir) {
    if (dir) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

float *tu_read_npy(const char *path, int64_t shape[4], int *ndim) {
    size_t n = 0;
    char *buf = tu_read_file(path, &n);
    if (!buf || n < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        free(buf);
        return NULL;
    }
    int major = (unsigned char)buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
        hoff = 10;
    } else {
        hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8) |
               ((size_t)(unsigned char)buf[10] << 16) | ((size_t)(unsigned char)buf[11] << 24);
        hoff = 12;
    }
    if (hoff + hlen > n) {
        free(buf);
        return NULL;
    }
    char *hdr = strndup(buf + hoff, hlen);
    int kind = 0; /* 1 f4, 2 i4, 3 i8 */
    if (strstr(hdr, "'<f4'")) kind = 1;
    else if (strstr(hdr, "'<i4'")) kind = 2;
    else if (strstr(hdr, "'<i8'")) kind = 3;
    char *sh = strstr(hdr, "'shape':");
    if (!kind || !sh || strstr(hdr, "'fortran_order': True")) {
        free(hdr);
        free(buf);
        return NULL;
    }
    sh = strchr(sh, '(');
    int nd = 0;
    size_t count = 1;
    char *p = sh + 1;
    while (p && *p && *p != ')' && nd < 4) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        shape[nd] = strtoll(p, &p, 10);
        count *= (size_t)shape[nd];
        nd++;
    }
    *ndim = nd;
    free(hdr);
    size_t esz = kind == 3 ? 8 : 4;
    if (hoff + hlen + count * esz > n) {
        free(buf);
        return NULL;
    }
    float *out = malloc((count ? count : 1) * sizeof(float));
    const char *d = buf + hoff + hlen;
    for (size_t i = 0; i < count; i++) {
        if (kind == 1) memcpy(&out[i], d + 4 * i, 4);
        else if (kind == 2) {
            int32_t v;
            memcpy(&v, d + 4 * i, 4);
            out[i] = (float)v;
        } else {
            int64_t v;
            memcpy(&v, d + 8 * i, 8);
            out[i] = (float)v;
        }
    }
    free(buf);
    return out;
}

int32_t *tu_read_ids(const char *path, int *n) {
    char *s = tu_read_file(path, NULL);
    if (!s) return NULL;
    int cap = 64, len = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *p = s, *end;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (len == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[len++] = (int32_t)v;
        p = end;
    }
    free(s);
    *n = len;
    return ids;
}
