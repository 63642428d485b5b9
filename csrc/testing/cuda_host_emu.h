// Host emulation of the CUDA subset used by csrc/*.cu, so that the kernels' index arithmetic, packing,
// reductions and launch plans can be executed and checked on a machine without a GPU
// (tests/test_cuda_compile.py). Not a performance tool and not part of the extension build.
//
// Usage: include this header first, then a .cu file whose `K<<<grid, block, smem, stream>>>(args);`
// launches were rewritten to `pdgan_emu::launch(grid, block, smem, stream, [&] { K(args); });`
// (the test does it), and compile with a host C++20 compiler and -I <cuda>/include.
// Each CUDA thread of a block is an OS thread (reused across blocks); blocks run one after another, so
// `__shared__` can be a function-local static. __syncthreads and the warp shuffles are barriers.
#pragma once

#define cudaGetLastError pdgan_emu_cudaGetLastError
#define cudaGetErrorString pdgan_emu_cudaGetErrorString
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

// What cudaGetLastError reports next (and clears), as the runtime does for an error left by earlier work;
// tests set it through pdgan_emu_set_pending_error.
inline cudaError_t pdgan_emu_pending_error = cudaSuccess;
extern "C" inline cudaError_t pdgan_emu_cudaGetLastError(void) {
  const cudaError_t e = pdgan_emu_pending_error;
  pdgan_emu_pending_error = cudaSuccess;
  return e;
}
extern "C" __attribute__((weak, visibility("default"))) void pdgan_emu_set_pending_error(int e) {
  pdgan_emu_pending_error = static_cast<cudaError_t>(e);
}
extern "C" inline const char* pdgan_emu_cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }

namespace pdgan_emu {

struct Warp {
  std::barrier<> bar{32};
  alignas(8) unsigned char slot[32][8];
};

struct Block {
  dim3 dim;
  std::barrier<> bar;
  std::vector<std::unique_ptr<Warp>> warps;
  explicit Block(dim3 d) : dim(d), bar(static_cast<std::ptrdiff_t>(d.x) * d.y * d.z) {
    for (unsigned w = 0; w < (d.x * d.y * d.z + 31) / 32; ++w) warps.emplace_back(new Warp);
  }
};

inline thread_local uint3 tl_thread{0, 0, 0};
inline thread_local uint3 tl_block{0, 0, 0};
inline thread_local Block* tl_blk = nullptr;
inline dim3 g_grid, g_block;

// Runs the grid: one OS thread per CUDA thread of a block, reused for every block in turn. Before each
// block a start barrier's completion step installs fresh block / warp barriers.
template <typename F>
void launch(dim3 grid, dim3 block, size_t /*smem*/, cudaStream_t /*stream*/, F&& kernel) {
  g_grid = grid;
  g_block = block;
  const unsigned blocks = grid.x * grid.y * grid.z, threads = block.x * block.y * block.z;
  std::unique_ptr<Block> current;
  unsigned next = 0;
  uint3 block_idx{0, 0, 0};
  auto install = [&]() noexcept {
    current = std::make_unique<Block>(block);
    block_idx = {next % grid.x, (next / grid.x) % grid.y, next / (grid.x * grid.y)};
    ++next;
  };
  std::barrier<decltype(install)> start(static_cast<std::ptrdiff_t>(threads), install);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      tl_thread = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
      for (unsigned b = 0; b < blocks; ++b) {
        start.arrive_and_wait();
        tl_block = block_idx;
        tl_blk = current.get();
        kernel();
        // an exited thread no longer takes part in barriers (as on the GPU)
        tl_blk->bar.arrive_and_drop();
        tl_blk->warps[t >> 5]->bar.arrive_and_drop();
      }
    });
  for (auto& th : pool) th.join();
}

template <typename T>
T shfl(T v, int src_lane) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  Warp& w = *tl_blk->warps[tl_thread.x >> 5];
  std::memcpy(w.slot[tl_thread.x & 31], &v, sizeof(T));
  w.bar.arrive_and_wait();
  T r;
  std::memcpy(&r, w.slot[src_lane & 31], sizeof(T));
  w.bar.arrive_and_wait();
  return r;
}

}  // namespace pdgan_emu

#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#define threadIdx (::pdgan_emu::tl_thread)
#define blockIdx (::pdgan_emu::tl_block)
#define blockDim (::pdgan_emu::g_block)
#define gridDim (::pdgan_emu::g_grid)

inline void __syncthreads() { pdgan_emu::tl_blk->bar.arrive_and_wait(); }
template <typename T>
T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  return pdgan_emu::shfl(v, static_cast<int>(pdgan_emu::tl_thread.x & 31) ^ lane_mask);
}
template <typename T>
T __shfl_sync(unsigned, T v, int src_lane) {
  return pdgan_emu::shfl(v, src_lane);
}
template <typename T>
T __ldg(const T* p) { return *p; }
inline float __expf(float v) { return std::exp(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }
using std::max;
using std::min;

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#undef __shared__
#define __shared__ static
