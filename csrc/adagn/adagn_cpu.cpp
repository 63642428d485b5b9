// Fused AdaGN + SiLU, CPU:  y = silu(x * a + d),  a = rstd * gamma[n, c],  d = beta[n, c] - mean * a,
// with mean / rstd per (n, group) over (C / G, H, W).
//
// Statistics are numerically sound at any group size: the data is cut into chunks of <= kChunk
// elements that stay in L1; each chunk gets an exact two-pass mean and sum of squared deviations in
// float32, and chunks are merged with Chan's parallel formula in float64.
//
// Parallel plan (at::parallel_for, i.e. torch's OpenMP pool, so torch.set_num_threads applies):
//   NCHW, many groups: one task per (n, g): statistics of the group's slab, then the apply pass while
//                      the slab is still in L2 (x is read from memory once).
//   NCHW, few groups:  statistics in parallel over pieces of each group's slab, then apply in
//                      parallel over plane chunks (x is read twice).
//   NHWC, many images: one task per image n, statistics and apply vectorised across channels.
//   NHWC, few images:  per-tile statistics in parallel over (n, pixel tile), then apply per tile.
// The hot loops are plain loops that GCC auto-vectorises; PDGAN_CPU_CLONES builds them for x86-64-v4
// (AVX-512), x86-64-v3 (AVX2) and baseline x86-64 and picks one at load time (cpu_math.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../checks.h"
#include "../cpu_math.h"

namespace pdgan {
namespace cpu {
namespace {

constexpr int64_t kLanes = 16;           // independent float accumulators per reduction
constexpr int64_t kChunk = 4096;         // elements per float32 two-pass chunk
constexpr int64_t kMaxRowsPerChunk = 256;  // NHWC: pixels per chunk, bounds the sequential sums
constexpr int64_t kApplyChunk = 16384;   // elements per task in the NCHW few-groups path
constexpr int64_t kTileElems = 65536;    // NHWC few-images path: elements per statistics tile

// Running (count, mean, M2) in float64; merge() is Chan et al.'s pairwise update.
struct State {
  double n = 0.0, mean = 0.0, m2 = 0.0;
  void merge(double nb, double mean_b, double m2_b) {
    if (nb == 0.0) return;
    const double total = n + nb, delta = mean_b - mean;
    mean += delta * (nb / total);
    m2 += m2_b + delta * delta * (n * nb / total);
    n = total;
  }
  void merge(const State& o) { merge(o.n, o.mean, o.m2); }
};

// Exact two-pass mean and sum of squared deviations of x[0, len), len <= kChunk, float32 lanes.
template <typename S>
PDGAN_ALWAYS_INLINE void chunk_moments(const typename S::storage* x, int64_t len, float* mean, float* m2) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += S::load(x[i + l]);
  float sum = 0.0f;
  for (; i < len; ++i) sum += S::load(x[i]);
  for (int64_t l = 0; l < kLanes; ++l) sum += acc[l];
  const float m = sum / static_cast<float>(len);
  float sq[kLanes] = {};
  for (i = 0; i + kLanes <= len; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) {
      const float dv = S::load(x[i + l]) - m;
      sq[l] += dv * dv;
    }
  float ss = 0.0f;
  for (; i < len; ++i) {
    const float dv = S::load(x[i]) - m;
    ss += dv * dv;
  }
  for (int64_t l = 0; l < kLanes; ++l) ss += sq[l];
  *mean = m;
  *m2 = ss;
}

// Statistics of a contiguous run of elements (NCHW: a group's slab of C/G planes, or a piece of it).
template <typename S>
PDGAN_CPU_CLONES State run_state(const typename S::storage* x, int64_t len) {
  State s;
  for (int64_t i = 0; i < len; i += kChunk) {
    const int64_t l = std::min(kChunk, len - i);
    float m, q;
    chunk_moments<S>(x + i, l, &m, &q);
    s.merge(static_cast<double>(l), m, q);
  }
  return s;
}

// NCHW: y = silu(x * a[r] + d[r]) for `rows` consecutive planes of `len` elements each.
template <typename S>
PDGAN_CPU_CLONES void apply_rows(const typename S::storage* x, typename S::storage* y, int64_t rows, int64_t len,
                                 const float* a, const float* d) {
  for (int64_t r = 0; r < rows; ++r) {
    const float ar = a[r], dr = d[r];
    const typename S::storage* xr = x + r * len;
    typename S::storage* yr = y + r * len;
    for (int64_t i = 0; i < len; ++i) yr[i] = S::store(silu(S::load(xr[i]) * ar + dr));
  }
}

// NHWC: per-channel statistics of `pixels` consecutive pixels (rows of C channels), merged into
// (count, mean[C], m2[C]). scratch: 2 * C floats.
template <typename S>
PDGAN_CPU_CLONES void tile_states(const typename S::storage* x, int64_t pixels, int64_t C, double* count,
                                  double* mean, double* m2, float* scratch) {
  float* acc = scratch;
  float* cm = scratch + C;
  const int64_t rows_per_chunk = std::max<int64_t>(1, std::min(kMaxRowsPerChunk, kChunk / C));
  for (int64_t r0 = 0; r0 < pixels; r0 += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, pixels - r0);
    const typename S::storage* xc = x + r0 * C;
    for (int64_t c = 0; c < C; ++c) acc[c] = 0.0f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < C; ++c) acc[c] += S::load(xc[r * C + c]);
    const float inv_rows = 1.0f / static_cast<float>(rows);
    for (int64_t c = 0; c < C; ++c) {
      cm[c] = acc[c] * inv_rows;
      acc[c] = 0.0f;
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const float dv = S::load(xc[r * C + c]) - cm[c];
        acc[c] += dv * dv;
      }
    // Chan merge, same counts for every channel.
    const double na = *count, nb = static_cast<double>(rows), total = na + nb;
    const double wb = nb / total, wab = na * nb / total;
    for (int64_t c = 0; c < C; ++c) {
      const double delta = static_cast<double>(cm[c]) - mean[c];
      mean[c] += delta * wb;
      m2[c] += static_cast<double>(acc[c]) + delta * delta * wab;
    }
    *count = total;
  }
}

// NHWC: y[p, c] = silu(x[p, c] * a[c] + d[c]) for `pixels` consecutive pixels.
template <typename S>
PDGAN_CPU_CLONES void apply_pixels(const typename S::storage* x, typename S::storage* y, int64_t pixels,
                                   int64_t C, const float* a, const float* d) {
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t c = 0; c < C; ++c) y[p * C + c] = S::store(silu(S::load(x[p * C + c]) * a[c] + d[c]));
}

// Group statistics -> per-channel coefficients a, d for channels [c0, c0 + Cg) of image n.
inline void coefficients(const State& g, const float* gamma, const float* beta, int64_t Cg, double eps,
                         float* a, float* d) {
  const double var = std::max(g.m2 / g.n, 0.0);
  const double rstd = 1.0 / std::sqrt(var + eps);
  for (int64_t c = 0; c < Cg; ++c) {
    const double ac = rstd * gamma[c];
    a[c] = static_cast<float>(ac);
    d[c] = static_cast<float>(beta[c] - g.mean * ac);
  }
}

template <typename S>
void adagn_nchw(const typename S::storage* x, typename S::storage* y, const float* gamma, const float* beta,
                int64_t N, int64_t C, int64_t HW, int64_t G, double eps) {
  const int64_t Cg = C / G, groups = N * G, slab = Cg * HW;  // a group's slab is contiguous in NCHW
  const int64_t slab_bytes = slab * static_cast<int64_t>(sizeof(typename S::storage));
  if (groups >= 4 * at::get_num_threads() && slab_bytes <= (1 << 20)) {
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> a(Cg), d(Cg);
      for (int64_t ng = begin; ng < end; ++ng) {  // first (n, c) plane of the group: n * C + g * Cg
        const State s = run_state<S>(x + ng * slab, slab);
        coefficients(s, gamma + ng * Cg, beta + ng * Cg, Cg, eps, a.data(), d.data());
        apply_rows<S>(x + ng * slab, y + ng * slab, Cg, HW, a.data(), d.data());
      }
    });
    return;
  }
  const int64_t pieces = (slab + kApplyChunk - 1) / kApplyChunk;  // statistics tasks per group
  std::vector<State> part(groups * pieces);
  at::parallel_for(0, groups * pieces, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i0 = (t % pieces) * kApplyChunk;
      part[t] = run_state<S>(x + (t / pieces) * slab + i0, std::min(kApplyChunk, slab - i0));
    }
  });
  std::vector<float> a(N * C), d(N * C);
  for (int64_t ng = 0; ng < groups; ++ng) {
    State s;
    for (int64_t p = 0; p < pieces; ++p) s.merge(part[ng * pieces + p]);
    coefficients(s, gamma + ng * Cg, beta + ng * Cg, Cg, eps, a.data() + ng * Cg, d.data() + ng * Cg);
  }
  const int64_t chunks = (HW + kApplyChunk - 1) / kApplyChunk;  // apply tasks per plane
  at::parallel_for(0, N * C * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t / chunks, i0 = (t % chunks) * kApplyChunk;
      apply_rows<S>(x + r * HW + i0, y + r * HW + i0, 1, std::min(kApplyChunk, HW - i0), &a[r], &d[r]);
    }
  });
}

// Per-channel (count, mean, m2) of image n -> per-group coefficients for all C channels of n.
inline void image_coefficients(double count, const double* mean, const double* m2, const float* gamma,
                               const float* beta, int64_t C, int64_t G, double eps, float* a, float* d) {
  const int64_t Cg = C / G;
  for (int64_t g = 0; g < G; ++g) {
    State s;
    for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) s.merge(count, mean[c], m2[c]);
    coefficients(s, gamma + g * Cg, beta + g * Cg, Cg, eps, a + g * Cg, d + g * Cg);
  }
}

template <typename S>
void adagn_nhwc(const typename S::storage* x, typename S::storage* y, const float* gamma, const float* beta,
                int64_t N, int64_t C, int64_t HW, int64_t G, double eps) {
  const int64_t image = HW * C;
  const int64_t image_bytes = image * static_cast<int64_t>(sizeof(typename S::storage));
  if (N >= 2 * at::get_num_threads() && image_bytes <= (4 << 20)) {
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> mean(C), m2(C);
      std::vector<float> scratch(2 * C), a(C), d(C);
      for (int64_t n = begin; n < end; ++n) {
        double count = 0.0;
        std::fill(mean.begin(), mean.end(), 0.0);
        std::fill(m2.begin(), m2.end(), 0.0);
        tile_states<S>(x + n * image, HW, C, &count, mean.data(), m2.data(), scratch.data());
        image_coefficients(count, mean.data(), m2.data(), gamma + n * C, beta + n * C, C, G, eps, a.data(),
                           d.data());
        apply_pixels<S>(x + n * image, y + n * image, HW, C, a.data(), d.data());
      }
    });
    return;
  }
  const int64_t tile = std::max<int64_t>(1, kTileElems / C);  // pixels per tile
  const int64_t tiles = (HW + tile - 1) / tile;
  std::vector<double> counts(N * tiles, 0.0), mean(N * tiles * C, 0.0), m2(N * tiles * C, 0.0);
  at::parallel_for(0, N * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(2 * C);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / tiles, p0 = (t % tiles) * tile;
      tile_states<S>(x + n * image + p0 * C, std::min(tile, HW - p0), C, &counts[t], &mean[t * C], &m2[t * C],
                     scratch.data());
    }
  });
  std::vector<float> a(N * C), d(N * C);
  std::vector<State> channel(C);
  std::vector<double> cmean(C), cm2(C);
  for (int64_t n = 0; n < N; ++n) {
    std::fill(channel.begin(), channel.end(), State{});
    for (int64_t t = n * tiles; t < (n + 1) * tiles; ++t)
      for (int64_t c = 0; c < C; ++c) channel[c].merge(counts[t], mean[t * C + c], m2[t * C + c]);
    for (int64_t c = 0; c < C; ++c) {
      cmean[c] = channel[c].mean;
      cm2[c] = channel[c].m2;
    }
    image_coefficients(static_cast<double>(HW), cmean.data(), cm2.data(), gamma + n * C, beta + n * C, C, G,
                       eps, a.data() + n * C, d.data() + n * C);
  }
  at::parallel_for(0, N * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / tiles, p0 = (t % tiles) * tile;
      const int64_t off = n * image + p0 * C;
      apply_pixels<S>(x + off, y + off, std::min(tile, HW - p0), C, a.data() + n * C, d.data() + n * C);
    }
  });
}

template <typename S>
void adagn_dispatch_layout(const at::Tensor& x, at::Tensor& y, const float* gamma, const float* beta,
                           int64_t G, double eps, Layout layout) {
  using T = typename S::storage;
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  T* yp = reinterpret_cast<T*>(y.data_ptr());
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  if (layout == Layout::kNCHW)
    adagn_nchw<S>(xp, yp, gamma, beta, N, C, HW, G, eps);
  else
    adagn_nhwc<S>(xp, yp, gamma, beta, N, C, HW, G, eps);
}

}  // namespace

at::Tensor adagn_silu_cpu(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                          int64_t num_groups, double eps) {
  const Layout layout = check_adagn_inputs(x, gamma, beta, num_groups, eps);
  TORCH_CHECK(x.device().is_cpu(), "pdgan::adagn_silu (CPU kernel): x must be a CPU tensor, got ", x.device());
  at::Tensor y = at::empty(x.sizes(), x.options(),
                           layout == Layout::kNCHW ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast);
  if (x.numel() == 0) return y;
  const at::Tensor g32 = gamma.to(at::kFloat).contiguous();
  const at::Tensor b32 = beta.to(at::kFloat).contiguous();
  const float* gp = g32.data_ptr<float>();
  const float* bp = b32.data_ptr<float>();
  switch (x.scalar_type()) {
    case at::kFloat: adagn_dispatch_layout<Float32>(x, y, gp, bp, num_groups, eps, layout); break;
    case at::kHalf: adagn_dispatch_layout<Float16>(x, y, gp, bp, num_groups, eps, layout); break;
    default: adagn_dispatch_layout<BFloat16>(x, y, gp, bp, num_groups, eps, layout); break;
  }
  return y;
}

}  // namespace cpu
}  // namespace pdgan
