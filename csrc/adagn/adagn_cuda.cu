// Fused AdaGN + SiLU, CUDA:  y = silu(x * a + d),  a = rstd * gamma[n, c],  d = beta[n, c] - mean * a,
// mean / rstd per (n, group) over (C / G, H, W), float32 accumulation. Torch-free (see adagn_cuda.h).
//
// A group's "slab" is its M = (C / G) * H * W elements; slab element k lives at
//   NCHW: (n * G + g) * M + k                                   (the slab is contiguous)
//   NHWC: n * HW * C + (k / Cg) * C + g * Cg + k % Cg           (Cg = C / G channels per pixel)
// Two plans:
//   fused  (M <= 8192 elements): one block per (n, g) holds the slab in registers, computes an exact
//          two-pass mean / variance, applies and stores. x is read once, y written once.
//   split  (larger slabs): stats kernel (one block per slab piece of <= 4096 elements, two-pass in
//          registers) -> finalize kernel (Chan merge of the pieces in float64, one warp per (n, g),
//          writes (a, d) per channel) -> apply kernel (elementwise). x is read twice.
// NHWC with few channels per group (Cg * element size < 32 bytes, e.g. Cg = 4) takes the wide layout in both
// plans: a block covers a run of gb consecutive groups of a range of pixels, and neighbouring threads read
// neighbouring packs of a pixel, so a warp reads whole runs of up to a cache line (one group per block would
// read 8-16 bytes of each pixel, C * element size apart). The statistics stay per group.
//   fused, wide: one block per (n, run of gb groups), all pixels.
//   split, wide: the stats kernel's block is (n, run of gb groups, piece of pixels).
// Loads and stores are 16-byte (else 8-byte) packs when the pointers are aligned and a pack never
// straddles a channel (NCHW: HW % VEC == 0) or a group (NHWC: Cg % VEC == 0); otherwise VEC = 1. In the NHWC
// wide layout a 16-byte pack may also hold two whole groups (Cg = VEC / 2, per-group sums in each thread).
#include "../cuda_common.cuh"
#include "adagn_cuda.h"

namespace pdgan {
namespace cuda {
namespace {

constexpr int kThreads = 256;               // max threads per block
constexpr int kFusedMaxPerThread = 32;      // floats held per thread in the fused kernel
constexpr int kFusedMaxItems = 8;           // packs held per thread in the fused kernel

// Packs per thread the fused kernel may hold: 8, or 4 for 8-element packs (32 floats).
constexpr int fused_max_items(int vec) {
  return kFusedMaxPerThread / vec < kFusedMaxItems ? kFusedMaxPerThread / vec : kFusedMaxItems;
}
constexpr int kStatsItems = 4;              // packs per thread in the split statistics kernel
constexpr int kWideMinBytes = 32;           // NHWC runs narrower than a sector take the wide fused kernel
constexpr int kWideMaxBytes = 128;          // ... which widens them up to a cache line of channels

struct Shape {
  int C, HW, G, Cg, M;  // M = Cg * HW
  int64_t gs, bs;       // row strides of gamma and beta (elements)
};

template <bool CL>
__device__ __forceinline__ int64_t slab_offset(int64_t n, int g, int k, const Shape& s) {
  if (CL) {
    const int p = k / s.Cg;
    return n * s.HW * s.C + static_cast<int64_t>(p) * s.C + g * s.Cg + (k - p * s.Cg);
  }
  return (n * s.G + g) * static_cast<int64_t>(s.M) + k;
}

template <bool CL>
__device__ __forceinline__ int slab_channel(int g, int k, const Shape& s) {
  return g * s.Cg + (CL ? k % s.Cg : k / s.HW);
}

// fused: grid = N * G blocks, blockDim.x * ITEMS * VEC >= M.
template <typename T, int VEC, int ITEMS, bool CL>
__global__ void __launch_bounds__(kThreads, 2) adagn_fused_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                               const float* __restrict__ gamma,
                                                               const float* __restrict__ beta, Shape s,
                                                               float eps) {
  __shared__ float smem[33];
  const int64_t ng = blockIdx.x, n = ng / s.G;
  const int g = static_cast<int>(ng - n * s.G);
  float v[ITEMS][VEC];
  float sum = 0.0f;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int k = (it * blockDim.x + threadIdx.x) * VEC;
    if (k < s.M) {
      load_pack<T, VEC>(x + slab_offset<CL>(n, g, k, s), v[it]);
#pragma unroll
      for (int j = 0; j < VEC; ++j) sum += v[it][j];
    }
  }
  const float mean = block_sum(sum, smem) / static_cast<float>(s.M);
  float sq = 0.0f;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int k = (it * blockDim.x + threadIdx.x) * VEC;
    if (k < s.M) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float dv = v[it][j] - mean;
        sq += dv * dv;
      }
    }
  }
  const float rstd = rsqrtf(block_sum(sq, smem) / static_cast<float>(s.M) + eps);
  const float* gn = gamma + n * s.gs;
  const float* bn = beta + n * s.bs;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int k = (it * blockDim.x + threadIdx.x) * VEC;
    if (k < s.M) {
      const int c0 = slab_channel<CL>(g, k, s);
      float out[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const int c = CL ? c0 + j : c0;  // NCHW: one channel per pack; NHWC: consecutive channels
        const float a = rstd * __ldg(gn + c);
        out[j] = silu(v[it][j] * a + (__ldg(bn + c) - mean * a));
      }
      store_pack<T, VEC>(y + slab_offset<CL>(n, g, k, s), out);
    }
  }
}

// Per-group sums of the wide NHWC layout, for every thread: v[s] becomes the block's total for the thread's
// s-th group. P packs per pixel run (a power of two <= 32; blockDim.x is a multiple of 32, so lane % P is the
// thread's pack slot). SPAN = 1: Q packs per group (a power of two dividing P), group slot / Q. SPAN > 1: each
// pack holds SPAN whole groups (Q = 1), groups slot * SPAN + s. smem: (blockDim.x / 32) * (P * SPAN / Q) <= 256.
template <int SPAN>
__device__ __forceinline__ void group_sums(float (&v)[SPAN], float* smem, int P, int Q) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5, groups = P * SPAN / Q;
  const int g0 = (lane % P) / Q * SPAN;  // the run's index of the thread's first group
#pragma unroll
  for (int s = 0; s < SPAN; ++s) {
    for (int o = 16; o >= P; o >>= 1) v[s] += __shfl_xor_sync(0xffffffffu, v[s], o);  // lanes of one pack slot
    for (int o = Q >> 1; o > 0; o >>= 1) v[s] += __shfl_xor_sync(0xffffffffu, v[s], o);  // the group's slots
    if (lane < P && lane % Q == 0) smem[warp * groups + g0 + s] = v[s];
  }
  __syncthreads();
#pragma unroll
  for (int s = 0; s < SPAN; ++s) {
    float total = 0.0f;
    for (int w = 0; w < warps; ++w) total += smem[w * groups + g0 + s];
    v[s] = total;
  }
  __syncthreads();  // smem may be reused by the next call
}

// The wide NHWC layout: a block covers a run of gb groups (W = gb * Cg consecutive channels) of a range of
// pixels. Thread t holds pack slot t % P (P = W / VEC) of pixels t / P, t / P + R, ... (R = blockDim.x / P), so
// its channels, and its groups, are fixed, and a warp reads 32 / P whole pixel runs. A pack lies in one group
// (SPAN = 1) or holds SPAN whole groups (SPAN > 1, Cg = VEC / SPAN): element j of a pack is in the thread's
// group j / (VEC / SPAN). Loads the thread's packs of pixels [p0, p0 + npix) into v and computes, per group, the
// mean and the sum of squared deviations of the block's elements (count: Cg * npix each).
template <typename T, int VEC, int ITEMS, int SPAN>
__device__ __forceinline__ void wide_load_stats(const T* __restrict__ x, float (&v)[ITEMS][VEC], float (&mean)[SPAN],
                                                float (&m2)[SPAN], float* smem, int P, int Q, int C, int npix,
                                                float count) {
  constexpr int kPer = VEC / SPAN;  // elements of a pack in one group
  const int R = blockDim.x / P;
  float sum[SPAN] = {};
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int p = static_cast<int>(threadIdx.x) / P + it * R;
    if (p < npix) {
      load_pack<T, VEC>(x + static_cast<int64_t>(p) * C, v[it]);
#pragma unroll
      for (int j = 0; j < VEC; ++j) sum[j / kPer] += v[it][j];
    }
  }
  group_sums<SPAN>(sum, smem, P, Q);
#pragma unroll
  for (int s = 0; s < SPAN; ++s) {
    mean[s] = sum[s] / count;
    m2[s] = 0.0f;
  }
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    if (static_cast<int>(threadIdx.x) / P + it * R < npix) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float dv = v[it][j] - mean[j / kPer];
        m2[j / kPer] += dv * dv;
      }
    }
  }
  group_sums<SPAN>(m2, smem, P, Q);
}

// fused, wide (NHWC): grid = N * G / gb blocks, each a run of gb groups of all HW pixels (wide_load_stats).
// a and d are computed once per thread.
template <typename T, int VEC, int ITEMS, int SPAN>
__global__ void __launch_bounds__(kThreads, 2) adagn_fused_wide_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                    const float* __restrict__ gamma,
                                                                    const float* __restrict__ beta, Shape s, int gb,
                                                                    float eps) {
  __shared__ float smem[kThreads];
  constexpr int kPer = VEC / SPAN;
  const int runs = s.G / gb;
  const int64_t b = blockIdx.x, n = b / runs;
  const int P = gb * s.Cg / VEC, Q = SPAN > 1 ? 1 : s.Cg / VEC;
  const int c0 = static_cast<int>(b - n * runs) * gb * s.Cg + static_cast<int>(threadIdx.x) % P * VEC;
  const int64_t base = n * s.HW * s.C + c0;  // the thread's first channel of pixel 0
  float v[ITEMS][VEC], mean[SPAN], m2[SPAN];
  wide_load_stats<T, VEC, ITEMS, SPAN>(x + base, v, mean, m2, smem, P, Q, s.C, s.HW, static_cast<float>(s.M));
  float rstd[SPAN], a[VEC], d[VEC];
#pragma unroll
  for (int g = 0; g < SPAN; ++g) rstd[g] = rsqrtf(m2[g] / static_cast<float>(s.M) + eps);
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    a[j] = rstd[j / kPer] * __ldg(gamma + n * s.gs + c0 + j);
    d[j] = __ldg(beta + n * s.bs + c0 + j) - mean[j / kPer] * a[j];
  }
  const int R = blockDim.x / P;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int p = static_cast<int>(threadIdx.x) / P + it * R;
    if (p < s.HW) {
      float out[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) out[j] = silu(v[it][j] * a[j] + d[j]);
      store_pack<T, VEC>(y + base + static_cast<int64_t>(p) * s.C, out);
    }
  }
}

// split, pass 1: grid = N * G * pieces blocks; partial[(n * G + g) * pieces + piece] = (mean, M2) of the
// piece's <= chunk elements. NHWC orders blocks group-fastest so neighbouring groups share L2 sectors.
template <typename T, int VEC, bool CL>
__global__ void __launch_bounds__(kThreads) adagn_stats_kernel(const T* __restrict__ x, float2* __restrict__ partial,
                                                               Shape s, int pieces, int chunk) {
  __shared__ float smem[33];
  const int64_t b = blockIdx.x;
  int64_t n;
  int g, piece;
  if (CL) {
    g = static_cast<int>(b % s.G);
    piece = static_cast<int>((b / s.G) % pieces);
    n = b / (static_cast<int64_t>(s.G) * pieces);
  } else {
    piece = static_cast<int>(b % pieces);
    const int64_t ng = b / pieces;
    n = ng / s.G;
    g = static_cast<int>(ng - n * s.G);
  }
  const int k0 = piece * chunk, len = min(chunk, s.M - k0);
  float v[kStatsItems][VEC];
  float sum = 0.0f;
#pragma unroll
  for (int it = 0; it < kStatsItems; ++it) {
    const int k = (it * blockDim.x + threadIdx.x) * VEC;
    if (k < len) {
      load_pack<T, VEC>(x + slab_offset<CL>(n, g, k0 + k, s), v[it]);
#pragma unroll
      for (int j = 0; j < VEC; ++j) sum += v[it][j];
    }
  }
  const float mean = block_sum(sum, smem) / static_cast<float>(len);
  float sq = 0.0f;
#pragma unroll
  for (int it = 0; it < kStatsItems; ++it) {
    const int k = (it * blockDim.x + threadIdx.x) * VEC;
    if (k < len) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const float dv = v[it][j] - mean;
        sq += dv * dv;
      }
    }
  }
  const float m2 = block_sum(sq, smem);
  if (threadIdx.x == 0) partial[(n * s.G + g) * pieces + piece] = make_float2(mean, m2);
}

// split, pass 1, wide (NHWC, narrow groups): grid = N * (G / gb) * pieces blocks, run fastest. A block is a run
// of gb groups of pixels [piece * pp, piece * pp + pp), pp = (blockDim.x / P) * kStatsItems (wide_load_stats),
// so a warp reads whole pixel runs; it writes the partial (mean, M2) of each of its groups (chunk = Cg * pp).
template <typename T, int VEC, int SPAN>
__global__ void __launch_bounds__(kThreads) adagn_stats_wide_kernel(const T* __restrict__ x,
                                                                    float2* __restrict__ partial, Shape s, int gb,
                                                                    int pieces) {
  __shared__ float smem[kThreads];
  const int runs = s.G / gb;
  const int64_t b = blockIdx.x, n = b / (static_cast<int64_t>(runs) * pieces);
  const int run = static_cast<int>(b % runs), piece = static_cast<int>((b / runs) % pieces);
  const int P = gb * s.Cg / VEC, Q = SPAN > 1 ? 1 : s.Cg / VEC, slot = static_cast<int>(threadIdx.x) % P;
  const int pp = static_cast<int>(blockDim.x) / P * kStatsItems, p0 = piece * pp, npix = min(pp, s.HW - p0);
  const int c0 = run * gb * s.Cg + slot * VEC;
  float v[kStatsItems][VEC], mean[SPAN], m2[SPAN];
  wide_load_stats<T, VEC, kStatsItems, SPAN>(x + n * s.HW * s.C + static_cast<int64_t>(p0) * s.C + c0, v, mean, m2,
                                             smem, P, Q, s.C, npix, static_cast<float>(s.Cg * npix));
  if (static_cast<int>(threadIdx.x) < P && slot % Q == 0) {
#pragma unroll
    for (int g = 0; g < SPAN; ++g)
      partial[(n * s.G + run * gb + slot / Q * SPAN + g) * pieces + piece] = make_float2(mean[g], m2[g]);
  }
}

__device__ __forceinline__ void chan_merge(double& n, double& mean, double& m2, double nb, double mean_b,
                                           double m2_b) {
  if (nb == 0.0) return;
  const double total = n + nb, delta = mean_b - mean;
  mean += delta * (nb / total);
  m2 += m2_b + delta * delta * (n * nb / total);
  n = total;
}

// split, pass 2: one warp per (n, g) merges its pieces and writes ad[n * C + c] = (a, d).
__global__ void adagn_finalize_kernel(const float2* __restrict__ partial, const float* __restrict__ gamma,
                                      const float* __restrict__ beta, float2* __restrict__ ad, int64_t NG,
                                      Shape s, int pieces, int chunk, float eps) {
  const int64_t ng = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (ng >= NG) return;  // whole warps exit together
  double cnt = 0.0, mean = 0.0, m2 = 0.0;
  for (int p = lane; p < pieces; p += 32) {
    const float2 pm = partial[ng * pieces + p];
    chan_merge(cnt, mean, m2, static_cast<double>(min(chunk, s.M - p * chunk)), pm.x, pm.y);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const double nb = __shfl_xor_sync(0xffffffffu, cnt, o);
    const double mb = __shfl_xor_sync(0xffffffffu, mean, o);
    const double qb = __shfl_xor_sync(0xffffffffu, m2, o);
    chan_merge(cnt, mean, m2, nb, mb, qb);
  }
  mean = __shfl_sync(0xffffffffu, mean, 0);  // lanes may differ in the last bit; use lane 0's
  m2 = __shfl_sync(0xffffffffu, m2, 0);
  const double rstd = rsqrt(fmax(m2 / static_cast<double>(s.M), 0.0) + static_cast<double>(eps));
  const int64_t n = ng / s.G;
  const int g = static_cast<int>(ng - n * s.G);
  for (int cc = lane; cc < s.Cg; cc += 32) {
    const int ch = g * s.Cg + cc;
    const double a = rstd * static_cast<double>(gamma[n * s.gs + ch]);
    ad[n * s.C + ch] = make_float2(static_cast<float>(a),
                                   static_cast<float>(static_cast<double>(beta[n * s.bs + ch]) - mean * a));
  }
}

// split, pass 3: grid (N, chunks); elementwise over image n (C * HW elements). Each thread issues
// kApplyUnroll independent pack loads before computing, for memory-level parallelism.
constexpr int kApplyUnroll = 4;

template <typename T, int VEC, bool CL>
__global__ void __launch_bounds__(kThreads, 2) adagn_apply_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                               const float2* __restrict__ ad, Shape s) {
  const int64_t n = blockIdx.x;
  const int image = s.C * s.HW;
  const T* xn = x + n * image;
  T* yn = y + n * image;
  const float2* adn = ad + n * s.C;
  const int step = gridDim.y * blockDim.x * VEC;
  for (int base = (blockIdx.y * blockDim.x + threadIdx.x) * VEC; base < image; base += step * kApplyUnroll) {
    float v[kApplyUnroll][VEC];
#pragma unroll
    for (int u = 0; u < kApplyUnroll; ++u)
      if (base + u * step < image) load_pack<T, VEC>(xn + base + u * step, v[u]);
#pragma unroll
    for (int u = 0; u < kApplyUnroll; ++u) {
      const int i = base + u * step;
      if (i < image) {
        const int c0 = CL ? i % s.C : i / s.HW;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float2 k = adn[CL ? c0 + j : c0];
          v[u][j] = silu(v[u][j] * k.x + k.y);
        }
        store_pack<T, VEC>(yn + i, v[u]);
      }
    }
  }
}

struct Plan {
  Shape s;
  int vec;      // elements per pack: 16 or 8 bytes' worth, or 1
  int span;     // groups per pack: 1, or 2 (NHWC 16-byte packs of two groups, Cg = vec / 2; wide kernels only)
  bool fused;
  bool wide;    // NHWC, narrow groups: the wide layout (fused: gb > 1; split: the wide statistics kernel)
  int gb;       // wide: groups per block run
  int items;    // fused: packs per thread
  int pieces;   // split: slab pieces per (n, g)
  int chunk;    // split: elements of a group per piece
  size_t workspace;
};

inline int elem_size(int dtype) { return dtype == PDGAN_FLOAT32 ? 4 : 2; }

// Elements of a group's slab the fused kernels hold in one block.
inline int fused_cap(int vec) { return kThreads * vec * fused_max_items(vec); }

inline const char* make_plan(const PdganAdaGNParams& p, Plan* plan) {
  if (p.dtype != PDGAN_FLOAT32 && p.dtype != PDGAN_FLOAT16 && p.dtype != PDGAN_BFLOAT16)
    return "pdgan_adagn_cuda: unsupported dtype code";
  if (p.N <= 0 || p.C <= 0 || p.HW <= 0 || p.G <= 0 || p.C % p.G != 0)
    return "pdgan_adagn_cuda: need N, C, H*W > 0 and G dividing C";
  // 32-bit indices inside an image, with headroom for the apply kernel's grid stride
  if (p.C * p.HW > (int64_t{1} << 30)) return "pdgan_adagn_cuda: C * H * W must be <= 2^30 per image";
  Shape& s = plan->s;
  s.C = static_cast<int>(p.C);
  s.HW = static_cast<int>(p.HW);
  s.G = static_cast<int>(p.G);
  s.Cg = s.C / s.G;
  s.M = s.Cg * s.HW;
  if (p.gamma_stride < 0 || p.beta_stride < 0) return "pdgan_adagn_cuda: negative gamma / beta row stride";
  s.gs = p.gamma_stride ? p.gamma_stride : p.C;
  s.bs = p.beta_stride ? p.beta_stride : p.C;
  const int esize = elem_size(p.dtype);
  // Widest pack (16 bytes, else 8) that is aligned and never straddles a channel (NCHW) or a group (NHWC).
  // In NHWC a 16-byte pack may instead hold two whole groups (vec = 2 * Cg) when the wide kernels can take
  // whole pairs of groups: G even, and a pair's slab within the fused cap unless one group's is above it.
  plan->vec = 1;
  plan->span = 1;
  for (const int bytes : {16, 8}) {
    const int vec = bytes / esize;
    const bool aligned = (reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.y)) % bytes == 0;
    if (vec == 1 || !aligned) continue;
    if (p.channels_last ? s.Cg % vec == 0 : s.HW % vec == 0) {
      plan->vec = vec;
      break;
    }
    if (p.channels_last && bytes == 16 && vec == 2 * s.Cg && s.G % 2 == 0 &&
        (s.M > fused_cap(vec) || 2 * s.M <= fused_cap(vec))) {
      plan->vec = vec;
      plan->span = 2;
      break;
    }
  }
  const int vec = plan->vec, cap = fused_cap(vec);
  plan->fused = s.M <= cap;
  // NHWC runs of one group narrower than a sector take the wide layout: runs of gb groups (a power of two
  // dividing G, at least the groups of one pack), widened while the run stays within a cache line, the packs
  // per run within a warp and, fused, the block's slab within the fused cap
  const int q = s.Cg / vec;  // span 1: packs per group
  plan->wide = p.channels_last && s.Cg * esize < kWideMinBytes && (plan->span > 1 || (q & (q - 1)) == 0);
  plan->gb = 1;
  if (plan->wide) {
    int gb = plan->span;
    while (s.G % (2 * gb) == 0 && 2 * gb * s.Cg * esize <= kWideMaxBytes && 2 * gb * s.Cg / vec <= 32 &&
           (!plan->fused || static_cast<int64_t>(2 * gb) * s.M <= cap))
      gb *= 2;
    plan->gb = gb;
    if (plan->fused && gb == 1) plan->wide = false;  // one group per block: the plain fused kernel
  }
  plan->items = 0;
  if (plan->fused) {  // the smallest power of two (vec 1: the most) that holds the block's slab in kThreads
    const int packs = (plan->gb * s.M + vec - 1) / vec, max_items = fused_max_items(vec);
    plan->items = vec == 1 ? max_items : 1;
    while (plan->items < max_items && plan->items * kThreads < packs) plan->items *= 2;
  }
  // split: a piece is kStatsItems packs per thread; wide, kStatsItems pixels per thread of Cg channels per group
  plan->chunk = plan->wide ? s.Cg * (kThreads / (plan->gb * s.Cg / vec)) * kStatsItems : kThreads * kStatsItems * vec;
  plan->pieces = plan->fused ? 0 : (s.M + plan->chunk - 1) / plan->chunk;
  plan->workspace = plan->fused ? 0
                                : sizeof(float2) * static_cast<size_t>(p.N * p.G * plan->pieces + p.N * p.C);
  return nullptr;
}

template <typename T, int VEC, int ITEMS, bool CL, int SPAN>
void launch_fused(const PdganAdaGNParams& p, const Plan& plan, cudaStream_t stream) {
  const int packs = (plan.gb * plan.s.M + VEC - 1) / VEC;  // the block's slab: gb groups
  const int threads = ((packs + ITEMS - 1) / ITEMS + 31) / 32 * 32;
  if constexpr (CL) {
    if (plan.wide) {
      adagn_fused_wide_kernel<T, VEC, ITEMS, SPAN><<<static_cast<unsigned>(p.N * p.G / plan.gb), threads, 0, stream>>>(
          static_cast<const T*>(p.x), static_cast<T*>(p.y), p.gamma, p.beta, plan.s, plan.gb, p.eps);
      return;
    }
  }
  if constexpr (SPAN == 1)
    adagn_fused_kernel<T, VEC, ITEMS, CL><<<static_cast<unsigned>(p.N * p.G), threads, 0, stream>>>(
        static_cast<const T*>(p.x), static_cast<T*>(p.y), p.gamma, p.beta, plan.s, p.eps);
}

template <typename T, int VEC, bool CL, int SPAN>
void launch_plan(const PdganAdaGNParams& p, const Plan& plan, cudaStream_t stream) {
  const Shape& s = plan.s;
  if (plan.fused) {
    constexpr int kMaxItems = fused_max_items(VEC);
    if constexpr (VEC == 1) {  // scalar fallback: one variant is enough
      launch_fused<T, VEC, kMaxItems, CL, SPAN>(p, plan, stream);
    } else {
      switch (plan.items) {
        case 1: launch_fused<T, VEC, 1, CL, SPAN>(p, plan, stream); break;
        case 2: launch_fused<T, VEC, 2, CL, SPAN>(p, plan, stream); break;
        case 4: launch_fused<T, VEC, 4, CL, SPAN>(p, plan, stream); break;
        default: launch_fused<T, VEC, kMaxItems, CL, SPAN>(p, plan, stream); break;
      }
    }
    return;
  }
  const int64_t NG = p.N * p.G;
  float2* partial = static_cast<float2*>(p.workspace);
  float2* ad = partial + NG * plan.pieces;
  const T* x = static_cast<const T*>(p.x);
  if constexpr (CL) {
    if (plan.wide)
      adagn_stats_wide_kernel<T, VEC, SPAN><<<static_cast<unsigned>(NG / plan.gb * plan.pieces), kThreads, 0, stream>>>(
          x, partial, s, plan.gb, plan.pieces);
  }
  if constexpr (SPAN == 1) {
    if (!plan.wide)
      adagn_stats_kernel<T, VEC, CL><<<static_cast<unsigned>(NG * plan.pieces), kThreads, 0, stream>>>(
          x, partial, s, plan.pieces, plan.chunk);
  }
  adagn_finalize_kernel<<<static_cast<unsigned>((NG + 7) / 8), 256, 0, stream>>>(
      partial, p.gamma, p.beta, ad, NG, s, plan.pieces, plan.chunk, p.eps);
  const int64_t per_block = static_cast<int64_t>(kThreads) * VEC * kApplyUnroll;
  const int64_t chunks = (static_cast<int64_t>(s.C) * s.HW + per_block - 1) / per_block;
  const dim3 grid(static_cast<unsigned>(p.N), static_cast<unsigned>(chunks < 65535 ? chunks : 65535));
  adagn_apply_kernel<T, VEC, CL><<<grid, kThreads, 0, stream>>>(x, static_cast<T*>(p.y), ad, s);
}

template <typename T, bool CL>
void launch_layout(const PdganAdaGNParams& p, const Plan& plan, cudaStream_t stream) {
  constexpr int kVec16 = 16 / sizeof(T), kVec8 = 8 / sizeof(T);
  if (plan.vec == kVec16) {
    if constexpr (CL) {
      if (plan.span == 2) return launch_plan<T, kVec16, CL, 2>(p, plan, stream);  // Cg = kVec16 / 2
    }
    launch_plan<T, kVec16, CL, 1>(p, plan, stream);
  } else if (plan.vec == kVec8) {
    launch_plan<T, kVec8, CL, 1>(p, plan, stream);
  } else {
    launch_plan<T, 1, CL, 1>(p, plan, stream);
  }
}

template <typename T>
void launch_typed(const PdganAdaGNParams& p, const Plan& plan, cudaStream_t stream) {
  if (p.channels_last) launch_layout<T, true>(p, plan, stream);
  else launch_layout<T, false>(p, plan, stream);
}

}  // namespace
}  // namespace cuda
}  // namespace pdgan

extern "C" size_t pdgan_adagn_cuda_workspace_bytes(const PdganAdaGNParams* p) {
  pdgan::cuda::Plan plan;
  return pdgan::cuda::make_plan(*p, &plan) == nullptr ? plan.workspace : 0;
}

extern "C" const char* pdgan_adagn_cuda_plan(const PdganAdaGNParams* p, int64_t* info) {
  pdgan::cuda::Plan plan;
  const char* err = pdgan::cuda::make_plan(*p, &plan);
  if (err == nullptr) {
    info[0] = plan.fused ? 1 : 0;
    info[1] = plan.vec;
    info[2] = plan.gb;
    info[3] = plan.pieces;
    info[4] = plan.span;
    info[5] = plan.items;
    info[6] = plan.wide ? 1 : 0;
  }
  return err;
}

extern "C" const char* pdgan_adagn_cuda(const PdganAdaGNParams* p, void* stream) {
  using namespace pdgan::cuda;
  Plan plan;
  if (const char* err = make_plan(*p, &plan)) return err;
  if (plan.workspace > 0 && (p->workspace == nullptr || reinterpret_cast<uintptr_t>(p->workspace) % 16 != 0))
    return "pdgan_adagn_cuda: workspace missing or not 16-byte aligned";
  if (p->N * p->G * (plan.fused ? 1 : plan.pieces) > INT32_MAX)
    return "pdgan_adagn_cuda: too many thread blocks (N * G * pieces >= 2^31)";
  if (const char* err = earlier_error()) return err;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case PDGAN_FLOAT32: launch_typed<float>(*p, plan, s); break;
    case PDGAN_FLOAT16: launch_typed<__half>(*p, plan, s); break;
    default: launch_typed<__nv_bfloat16>(*p, plan, s); break;
  }
  return last_error();
}
