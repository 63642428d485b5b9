// Fused posterior step, CUDA:  out = c1 * x0 + c2 * xt + sigma * z   (float32 arithmetic).
//   z = noise[i]                    noise kernel, 16-byte packs when aligned
//   z = Philox normal(offset + i)   philox kernel, one thread per Philox block of 4 normals (../philox.h),
//                                   stored as one pack where aligned
//   z = 0                           noise kernel with noise == NULL
// Torch-free (see posterior_cuda.h).
#include "../cuda_common.cuh"
#include "../philox.h"
#include "posterior_cuda.h"

namespace pdgan {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, int VEC, bool HAS_NOISE>
__global__ void __launch_bounds__(kThreads) posterior_kernel(const T* __restrict__ x0, const T* __restrict__ xt,
                                                             const T* __restrict__ noise, T* __restrict__ out,
                                                             int64_t numel, float c1, float c2, float sigma) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x * VEC;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; i < numel; i += stride) {
    float a[VEC], b[VEC], z[VEC], r[VEC];
    if (i + VEC <= numel) {
      load_pack<T, VEC>(x0 + i, a);
      load_pack<T, VEC>(xt + i, b);
      if (HAS_NOISE) load_pack<T, VEC>(noise + i, z);
#pragma unroll
      for (int j = 0; j < VEC; ++j) r[j] = c1 * a[j] + c2 * b[j] + (HAS_NOISE ? sigma * z[j] : 0.0f);
      store_pack<T, VEC>(out + i, r);
    } else {  // tail
      for (int64_t e = i; e < numel; ++e) {
        const float zn = HAS_NOISE ? sigma * to_float(noise[e]) : 0.0f;
        out[e] = from_float<T>(c1 * to_float(x0[e]) + c2 * to_float(xt[e]) + zn);
      }
    }
  }
}

// Whether the 4 elements from p on are one aligned pack (16 bytes for float32, 8 for 16-bit dtypes).
template <typename T>
__device__ __forceinline__ bool pack4_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % (4 * sizeof(T)) == 0;
}

template <bool HAS_X>
__device__ __forceinline__ float posterior_value(float x0, float xt, float c1, float c2, float sigma, float z) {
  const float base = HAS_X ? c1 * x0 + c2 * xt : 0.0f;
  return base + sigma * z;
}

// Thread t handles stream block first_block + t: stream positions 4b .. 4b + 3, i.e. elements
// 4b - offset .. 4b + 3 - offset that fall inside [0, numel). A block whose 4 elements are all inside and aligned
// in every tensor moves them as one pack per tensor; the ragged head and tail (and unaligned tensors) go
// element by element, through the same arithmetic.
template <typename T, bool HAS_X>
__global__ void __launch_bounds__(kThreads) posterior_philox_kernel(const T* __restrict__ x0,
                                                                    const T* __restrict__ xt, T* __restrict__ out,
                                                                    int64_t numel, float c1, float c2, float sigma,
                                                                    uint64_t seed, uint64_t offset,
                                                                    int64_t blocks) {
  const uint64_t first_block = offset >> 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < blocks; t += stride) {
    const uint64_t b = first_block + static_cast<uint64_t>(t);
    const Normal4 z = philox_normal4(seed, b);
    const int64_t e0 = static_cast<int64_t>(4 * b - offset);  // element of lane 0 (may be < 0 for t = 0)
    if (e0 >= 0 && e0 + 4 <= numel && pack4_aligned(out + e0) &&
        (!HAS_X || (pack4_aligned(x0 + e0) && pack4_aligned(xt + e0)))) {
      float a[4] = {}, c[4] = {}, r[4];
      if (HAS_X) {
        load_pack<T, 4>(x0 + e0, a);
        load_pack<T, 4>(xt + e0, c);
      }
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) r[lane] = posterior_value<HAS_X>(a[lane], c[lane], c1, c2, sigma, z.z[lane]);
      store_pack<T, 4>(out + e0, r);
      continue;
    }
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t e = e0 + lane;
      if (e >= 0 && e < numel) {
        const float a = HAS_X ? to_float(x0[e]) : 0.0f, c = HAS_X ? to_float(xt[e]) : 0.0f;
        out[e] = from_float<T>(posterior_value<HAS_X>(a, c, c1, c2, sigma, z.z[lane]));
      }
    }
  }
}

// Thread t handles Philox block t % blocks_per_row (after the row's first block) of row t / blocks_per_row;
// one pack store where the block's 4 elements are inside the row and aligned, else element by element.
template <typename T>
__global__ void __launch_bounds__(kThreads) philox_rows_kernel(T* __restrict__ out, const int64_t* __restrict__ seeds,
                                                               int64_t cols, uint64_t offset, int64_t blocks_per_row,
                                                               int64_t total) {
  const uint64_t first_block = offset >> 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const int64_t row = t / blocks_per_row;
    const uint64_t b = first_block + static_cast<uint64_t>(t - row * blocks_per_row);
    const Normal4 z = philox_normal4(static_cast<uint64_t>(seeds[row]), b);
    const int64_t e0 = static_cast<int64_t>(4 * b - offset);
    T* dst = out + row * cols;
    if (e0 >= 0 && e0 + 4 <= cols && pack4_aligned(dst + e0)) {
      store_pack<T, 4>(dst + e0, z.z);
      continue;
    }
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t e = e0 + lane;
      if (e >= 0 && e < cols) dst[e] = from_float<T>(z.z[lane]);
    }
  }
}

inline unsigned grid_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65536 * 8 ? (blocks > 0 ? blocks : 1) : 65536 * 8);  // grid-stride
}

template <typename T>
void launch_typed(const PdganPosteriorParams& p, cudaStream_t stream) {
  const T* x0 = static_cast<const T*>(p.x0);
  const T* xt = static_cast<const T*>(p.xt);
  T* out = static_cast<T*>(p.out);
  if (p.use_philox) {
    const int64_t blocks = static_cast<int64_t>(((p.offset & 3u) + static_cast<uint64_t>(p.numel) + 3u) >> 2);
    if (x0 != nullptr)
      posterior_philox_kernel<T, true><<<grid_for(blocks), kThreads, 0, stream>>>(
          x0, xt, out, p.numel, p.c1, p.c2, p.sigma, p.seed, p.offset, blocks);
    else
      posterior_philox_kernel<T, false><<<grid_for(blocks), kThreads, 0, stream>>>(
          x0, xt, out, p.numel, p.c1, p.c2, p.sigma, p.seed, p.offset, blocks);
    return;
  }
  constexpr int kVec = 16 / sizeof(T);
  const T* z = static_cast<const T*>(p.noise);
  const bool aligned = (reinterpret_cast<uintptr_t>(x0) | reinterpret_cast<uintptr_t>(xt) |
                        reinterpret_cast<uintptr_t>(z) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  if (aligned) {
    const unsigned grid = grid_for((p.numel + kVec - 1) / kVec);
    if (z != nullptr)
      posterior_kernel<T, kVec, true><<<grid, kThreads, 0, stream>>>(x0, xt, z, out, p.numel, p.c1, p.c2, p.sigma);
    else
      posterior_kernel<T, kVec, false><<<grid, kThreads, 0, stream>>>(x0, xt, z, out, p.numel, p.c1, p.c2, p.sigma);
  } else {
    const unsigned grid = grid_for(p.numel);
    if (z != nullptr)
      posterior_kernel<T, 1, true><<<grid, kThreads, 0, stream>>>(x0, xt, z, out, p.numel, p.c1, p.c2, p.sigma);
    else
      posterior_kernel<T, 1, false><<<grid, kThreads, 0, stream>>>(x0, xt, z, out, p.numel, p.c1, p.c2, p.sigma);
  }
}

}  // namespace
}  // namespace cuda
}  // namespace pdgan

extern "C" const char* pdgan_posterior_cuda(const PdganPosteriorParams* p, void* stream) {
  using namespace pdgan::cuda;
  if (p->numel <= 0) return nullptr;
  if (p->out == nullptr) return "pdgan_posterior_cuda: out is NULL";
  if ((p->x0 == nullptr) != (p->xt == nullptr)) return "pdgan_posterior_cuda: pass both x0 and xt or neither";
  if (p->use_philox && p->noise != nullptr) return "pdgan_posterior_cuda: noise and use_philox are exclusive";
  if (!p->use_philox && p->x0 == nullptr) return "pdgan_posterior_cuda: x0 is NULL";
  if (const char* err = earlier_error()) return err;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case PDGAN_FLOAT32: launch_typed<float>(*p, s); break;
    case PDGAN_FLOAT16: launch_typed<__half>(*p, s); break;
    case PDGAN_BFLOAT16: launch_typed<__nv_bfloat16>(*p, s); break;
    default: return "pdgan_posterior_cuda: unsupported dtype code";
  }
  return last_error();
}

extern "C" const char* pdgan_philox_rows_cuda(const PdganPhiloxRowsParams* p, void* stream) {
  using namespace pdgan::cuda;
  if (p->rows <= 0 || p->cols <= 0) return nullptr;
  if (p->out == nullptr || p->seeds == nullptr) return "pdgan_philox_rows_cuda: out or seeds is NULL";
  const int64_t per_row = static_cast<int64_t>(((p->offset & 3u) + static_cast<uint64_t>(p->cols) + 3u) >> 2);
  const int64_t total = per_row * p->rows;
  if (const char* err = earlier_error()) return err;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned grid = grid_for(total);
  switch (p->dtype) {
    case PDGAN_FLOAT32:
      philox_rows_kernel<float><<<grid, kThreads, 0, s>>>(static_cast<float*>(p->out), p->seeds, p->cols, p->offset,
                                                          per_row, total);
      break;
    case PDGAN_FLOAT16:
      philox_rows_kernel<__half><<<grid, kThreads, 0, s>>>(static_cast<__half*>(p->out), p->seeds, p->cols, p->offset,
                                                           per_row, total);
      break;
    case PDGAN_BFLOAT16:
      philox_rows_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(p->out), p->seeds,
                                                                  p->cols, p->offset, per_row, total);
      break;
    default: return "pdgan_philox_rows_cuda: unsupported dtype code";
  }
  return last_error();
}
