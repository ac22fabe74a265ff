/* kernel_emu.h — runs CUDA kernels on the CPU, for tests/emu/kvattn_emu.cpp: one block at a
 * time, each of its threads a std::thread; __syncthreads is a barrier of the block's threads, warp
 * collectives (__syncwarp, shuffles, votes, and kvattn_ops_emu.h's mma / movmatrix) barriers of a
 * warp's 32 threads around an exchange buffer; __shared__ variables are the kernel's function
 * statics (one block runs at a time, so they are its shared memory), dynamic shared memory a
 * per-block buffer. Inline PTX is not emulated: kernels reach PTX only through kvattn_ops.cuh,
 * whose functions tests/emu/kernel/kvattn_ops_emu.h provides. Only what kernels/kvattn.cu uses. */
#ifndef ASYMKV_KERNEL_EMU_H
#define ASYMKV_KERNEL_EMU_H

#include <algorithm>
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
struct __attribute__((aligned(8))) uint2 {
    unsigned x, y;
};
inline float4 make_float4(float x, float y, float z, float w) {
    return float4{x, y, z, w};
}
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    return uint4{x, y, z, w};
}
inline uint2 make_uint2(unsigned x, unsigned y) {
    return uint2{x, y};
}

namespace emu {
/* What one lane puts on the table for a warp collective. */
struct Lane {
    uint32_t a[4], b[2], x;
    float c[4], f;
};
struct Block {
    int threads;
    std::unique_ptr<std::barrier<>> all;
    std::vector<std::unique_ptr<std::barrier<>>> warp;
    std::vector<float> xchg;  /* [warps][32] shuffle exchange */
    std::vector<Lane> lanes;  /* [warps][32] collective exchange */
    std::vector<uint8_t> dyn; /* dynamic shared memory (16-byte aligned data()) */
};
inline thread_local dim3 block_idx, thread_idx, block_dim;
inline thread_local Block *blk = nullptr;

/* Runs kernel() for every block of grid with `threads` threads each (a multiple of 32) and
 * dyn_smem bytes of dynamic shared memory (poisoned with 0xff before each block). The threads are
 * made once per launch and run the blocks one after the other, a block barrier between two. */
template <class F> void launch(dim3 grid, int threads, F kernel, size_t dyn_smem = 0) {
    Block b;
    b.threads = threads;
    b.all = std::make_unique<std::barrier<>>(threads);
    for (int w = 0; w < threads / 32; w++) b.warp.push_back(std::make_unique<std::barrier<>>(32));
    b.xchg.assign((size_t)threads, 0.0f);
    b.lanes.assign((size_t)threads, Lane{});
    b.dyn.assign(dyn_smem + 16, 0xff);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++)
        ts.emplace_back([&, t] {
            blk = &b;
            thread_idx = dim3{(unsigned)t, 0, 0};
            block_dim = dim3{(unsigned)threads, 1, 1};
            for (unsigned z = 0; z < grid.z; z++)
                for (unsigned y = 0; y < grid.y; y++)
                    for (unsigned x = 0; x < grid.x; x++) {
                        block_idx = dim3{x, y, z};
                        if (t == 0) std::fill(b.dyn.begin(), b.dyn.end(), (uint8_t)0xff);
                        b.all->arrive_and_wait(); /* the block's shared memory is ready */
                        kernel();
                        b.all->arrive_and_wait(); /* every thread is done with the block */
                    }
        });
    for (auto &t : ts) t.join();
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
inline float __shfl_sync(unsigned, float x, int src) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    float *buf = emu::blk->xchg.data() + (size_t)w * 32;
    buf[l] = x;
    emu::blk->warp[w]->arrive_and_wait();
    const float y = buf[src & 31];
    emu::blk->warp[w]->arrive_and_wait();
    return y;
}
inline int __any_sync(unsigned, int pred) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    float *buf = emu::blk->xchg.data() + (size_t)w * 32;
    buf[l] = pred ? 1.0f : 0.0f;
    emu::blk->warp[w]->arrive_and_wait();
    int any = 0;
    for (int i = 0; i < 32; i++) any |= buf[i] != 0.0f;
    emu::blk->warp[w]->arrive_and_wait();
    return any;
}
/* The block's dynamic shared memory, 16-byte aligned. */
inline uint8_t *dyn_smem() {
    uint8_t *p = emu::blk->dyn.data();
    return p + ((16 - (uintptr_t)p % 16) % 16);
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
