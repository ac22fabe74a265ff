/* kernel_emu.h — runs CUDA kernels written in plain CUDA C++ (no inline PTX, no tensor cores) on
 * the CPU, for tests/emu/kvattn_emu.cpp: one block at a time, each of its threads a std::thread;
 * __syncthreads is a barrier of the block's threads, __shfl_xor_sync and __syncwarp barriers of a
 * warp's 32 threads; __shared__ variables are the kernel's function statics (one block runs at a
 * time, so they are its shared memory). Only what kernels/kvattn.cu's scalar and combine kernels
 * use. */
#ifndef ASYMKV_KERNEL_EMU_H
#define ASYMKV_KERNEL_EMU_H

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct __attribute__((aligned(16))) uint4 {
    unsigned x, y, z, w;
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) {
    return float4{x, y, z, w};
}

namespace emu {
struct Block {
    int threads;
    std::unique_ptr<std::barrier<>> all;
    std::vector<std::unique_ptr<std::barrier<>>> warp;
    std::vector<float> xchg; /* [warps][32] shuffle exchange */
};
inline thread_local dim3 block_idx, thread_idx, block_dim;
inline thread_local Block *blk = nullptr;

/* Runs kernel() for every block of grid with `threads` threads each (a multiple of 32). */
template <class F> void launch(dim3 grid, int threads, F kernel) {
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                Block b;
                b.threads = threads;
                b.all = std::make_unique<std::barrier<>>(threads);
                for (int w = 0; w < threads / 32; w++)
                    b.warp.push_back(std::make_unique<std::barrier<>>(32));
                b.xchg.assign((size_t)threads, 0.0f);
                std::vector<std::thread> ts;
                for (int t = 0; t < threads; t++)
                    ts.emplace_back([&, t] {
                        blk = &b;
                        block_idx = dim3{x, y, z};
                        thread_idx = dim3{(unsigned)t, 1, 1};
                        thread_idx.y = thread_idx.z = 0;
                        block_dim = dim3{(unsigned)threads, 1, 1};
                        kernel();
                    });
                for (auto &t : ts) t.join();
            }
}
} // namespace emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
#define blockIdx emu::block_idx
#define threadIdx emu::thread_idx
#define blockDim emu::block_dim

inline void __syncthreads() {
    emu::blk->all->arrive_and_wait();
}
inline void __syncwarp(unsigned = 0xffffffffu) {
    emu::blk->warp[threadIdx.x / 32]->arrive_and_wait();
}
inline float __shfl_xor_sync(unsigned, float x, int lane_mask) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    float *buf = emu::blk->xchg.data() + (size_t)w * 32;
    buf[l] = x;
    emu::blk->warp[w]->arrive_and_wait();
    const float y = buf[l ^ (unsigned)lane_mask];
    emu::blk->warp[w]->arrive_and_wait(); /* every lane has read before the next write */
    return y;
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}
inline int min(int a, int b) {
    return a < b ? a : b;
}
inline int max(int a, int b) {
    return a > b ? a : b;
}

#endif
