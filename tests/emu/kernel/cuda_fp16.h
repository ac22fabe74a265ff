/* cuda_fp16.h (kernel emulation) — the few fp16 helpers kernels/kvattn.cu's kernels use, for
 * tests/emu/kvattn_emu.cpp, which compiles that file as host C++. Conversions go through
 * common.h's twins (round to nearest even). */
#ifndef ASYMKV_EMU_CUDA_FP16_H
#define ASYMKV_EMU_CUDA_FP16_H

#include <cstdint>

#include "common.h"

struct __half {
    uint16_t x;
};

inline __half __ushort_as_half(unsigned short u) {
    return __half{u};
}
inline float __half2float(__half h) {
    return akv_f16_to_f32(h.x);
}
inline __half __float2half_rn(float f) {
    return __half{akv_f32_to_f16(f)};
}
inline unsigned short __half_as_ushort(__half h) {
    return h.x;
}

#endif
