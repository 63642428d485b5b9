// Fused posterior step, CPU:  out = c1 * x0 + c2 * xt + sigma * noise   (float32 arithmetic),
// noise from a tensor, from the in-kernel Philox4x32-10 stream (../philox.h), or absent.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "../checks.h"
#include "../cpu_math.h"
#include "../philox.h"

namespace pdgan {
namespace cpu {
namespace {

constexpr int64_t kGrain = 16384;  // elements per parallel task

template <typename S>
PDGAN_CPU_CLONES void combine(const typename S::storage* x0, const typename S::storage* xt,
                              const typename S::storage* z, typename S::storage* out, int64_t n, float c1,
                              float c2, float sigma) {
  if (z == nullptr) {
    for (int64_t i = 0; i < n; ++i) out[i] = S::store(c1 * S::load(x0[i]) + c2 * S::load(xt[i]));
  } else {
    for (int64_t i = 0; i < n; ++i)
      out[i] = S::store(c1 * S::load(x0[i]) + c2 * S::load(xt[i]) + sigma * S::load(z[i]));
  }
}

// out[i] = c1 * x0[i] + c2 * xt[i] + sigma * normal(offset + i) for i in [begin, end); x0 == nullptr
// means "no x0/xt term" (philox_normal_: out = normal * sigma).
template <typename S>
void combine_philox(const typename S::storage* x0, const typename S::storage* xt, typename S::storage* out,
                    int64_t begin, int64_t end, float c1, float c2, float sigma, uint64_t seed, uint64_t offset) {
  int64_t i = begin;
  while (i < end) {
    const uint64_t p = offset + static_cast<uint64_t>(i);
    const Normal4 z = philox_normal4(seed, p >> 2);
    for (int lane = static_cast<int>(p & 3u); lane < 4 && i < end; ++lane, ++i) {
      const float base = x0 == nullptr ? 0.0f : c1 * S::load(x0[i]) + c2 * S::load(xt[i]);
      out[i] = S::store(base + sigma * z.z[lane]);
    }
  }
}

template <typename S>
void posterior_typed(const at::Tensor& x0, const at::Tensor& xt, const c10::optional<at::Tensor>& noise,
                     at::Tensor& out, float c1, float c2, float sigma, const c10::optional<int64_t>& seed,
                     int64_t offset) {
  using T = typename S::storage;
  const T* x0p = x0.defined() ? reinterpret_cast<const T*>(x0.data_ptr()) : nullptr;
  const T* xtp = xt.defined() ? reinterpret_cast<const T*>(xt.data_ptr()) : nullptr;
  T* op = reinterpret_cast<T*>(out.data_ptr());
  const int64_t n = out.numel();
  if (seed.has_value()) {
    const uint64_t key = static_cast<uint64_t>(*seed), off = static_cast<uint64_t>(offset);
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      combine_philox<S>(x0p, xtp, op, begin, end, c1, c2, sigma, key, off);
    });
    return;
  }
  const T* zp = noise.has_value() ? reinterpret_cast<const T*>(noise->data_ptr()) : nullptr;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    combine<S>(x0p + begin, xtp + begin, zp == nullptr ? nullptr : zp + begin, op + begin, end - begin, c1, c2,
               sigma);
  });
}

void posterior_dispatch(const at::Tensor& x0, const at::Tensor& xt, const c10::optional<at::Tensor>& noise,
                        at::Tensor& out, double c1, double c2, double sigma, const c10::optional<int64_t>& seed,
                        int64_t offset) {
  const float f1 = static_cast<float>(c1), f2 = static_cast<float>(c2), fs = static_cast<float>(sigma);
  switch (out.scalar_type()) {
    case at::kFloat: posterior_typed<Float32>(x0, xt, noise, out, f1, f2, fs, seed, offset); break;
    case at::kHalf: posterior_typed<Float16>(x0, xt, noise, out, f1, f2, fs, seed, offset); break;
    default: posterior_typed<BFloat16>(x0, xt, noise, out, f1, f2, fs, seed, offset); break;
  }
}

}  // namespace

at::Tensor posterior_step_cpu(const at::Tensor& x0, const at::Tensor& xt, double c1, double c2, double sigma,
                              const c10::optional<at::Tensor>& noise, c10::optional<int64_t> seed,
                              int64_t offset) {
  check_posterior_inputs(x0, xt, noise, seed, offset);
  TORCH_CHECK(x0.device().is_cpu(), "pdgan::posterior_step (CPU kernel): x0 must be a CPU tensor, got ",
              x0.device());
  TORCH_CHECK_VALUE(sigma == 0.0 || noise.has_value() || seed.has_value(),
                    "pdgan::posterior_step: sigma=", sigma, " != 0 needs noise or a seed");
  if (sigma == 0.0) seed.reset();  // no noise term: skip the generator
  at::Tensor out = at::empty_like(x0, at::MemoryFormat::Contiguous);
  if (out.numel() == 0) return out;
  posterior_dispatch(x0, xt, sigma == 0.0 ? c10::nullopt : noise, out, c1, c2, sigma, seed, offset);
  return out;
}

void philox_normal_cpu_(at::Tensor& out, int64_t seed, int64_t offset) {
  check_philox_output(out, offset);
  TORCH_CHECK(out.device().is_cpu(), "pdgan::philox_normal_ (CPU kernel): out must be a CPU tensor");
  if (out.numel() == 0) return;
  const at::Tensor none;
  posterior_dispatch(none, none, c10::nullopt, out, 0.0, 0.0, 1.0, seed, offset);
}

// Row r of out (N, cols) gets normals offset .. offset + cols - 1 of the stream of seeds[r]: the
// per-image noise of pdgan_infer.sampler.draw_noise. Work is split over the flat element range.
void philox_normal_rows_cpu_(at::Tensor& out, const at::Tensor& seeds, int64_t offset) {
  check_philox_rows(out, seeds, offset);
  TORCH_CHECK(out.device().is_cpu(), "pdgan::philox_normal_rows_ (CPU kernel): out must be a CPU tensor");
  if (out.numel() == 0) return;
  const int64_t rows = out.size(0), cols = out.numel() / rows;
  const int64_t* keys = seeds.data_ptr<int64_t>();
  const uint64_t off = static_cast<uint64_t>(offset);
  auto fill = [&](auto tag) {
    using S = decltype(tag);
    using T = typename S::storage;
    T* base = reinterpret_cast<T*>(out.data_ptr());
    at::parallel_for(0, rows * cols, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end;) {
        const int64_t r = i / cols, row_end = std::min(end, (r + 1) * cols);
        combine_philox<S>(nullptr, nullptr, base + r * cols, i - r * cols, row_end - r * cols, 0.0f, 0.0f, 1.0f,
                          static_cast<uint64_t>(keys[r]), off);
        i = row_end;
      }
    });
  };
  switch (out.scalar_type()) {
    case at::kFloat: fill(Float32{}); break;
    case at::kHalf: fill(Float16{}); break;
    default: fill(BFloat16{}); break;
  }
}

}  // namespace cpu
}  // namespace pdgan
