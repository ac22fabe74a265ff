/* common.h — status codes, error reporting, half-precision conversion and check macros
 * shared by every folder. Library code returns an akv_status and fills an akv_err; only
 * launch/ and tests turn errors into exits. */
#ifndef ASYMKV_COMMON_H
#define ASYMKV_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds on the monotonic clock (for timings reported to users). */
static inline double akv_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Exit-code compatible status values (design §7): 0 ok, 2 bad input, 1 run-time failure. */
typedef enum akv_status {
    AKV_OK = 0,
    AKV_ERUNTIME = 1, /* out of memory, lost rank, CUDA/NCCL/MPI error */
    AKV_EINPUT = 2,   /* malformed file, bad flag, a job that cannot fit */
} akv_status;

/* One error slot, owned by the caller. msg is a single line without trailing newline. */
typedef struct akv_err {
    akv_status code;
    char msg[512];
} akv_err;

/* Records the first error only (later ones are usually consequences) and returns code. */
static inline akv_status akv_fail(akv_err *err, akv_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static inline akv_status akv_fail(akv_err *err, akv_status code, const char *fmt, ...) {
    if (err && err->code == AKV_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static inline void akv_err_clear(akv_err *err) {
    if (err) {
        err->code = AKV_OK;
        err->msg[0] = '\0';
    }
}

/* ---- half precision <-> float (round to nearest even on the way down) ---- */

static inline float akv_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t akv_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float akv_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t akv_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);       /* overflow -> inf */
    if (abs < 0x38800000u) {                                          /* subnormal or zero */
        if (abs < 0x33000000u) return (uint16_t)sign;                 /* < half of min subnormal */
        uint32_t man = (abs & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(abs >> 23);                           /* 14..24 */
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);                  /* round to nearest even */
    return (uint16_t)(sign | (((r >> 23) - 112u) << 10) | ((r >> 13) & 0x3ffu));
}

/* Checked allocation helpers used by library code. */
#define AKV_DIV_UP(a, b) (((a) + (b)-1) / (b))

#ifdef __cplusplus
}
#endif
#endif
