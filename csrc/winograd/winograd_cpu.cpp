// 3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering, CPU, channels_last (NHWC) activations:
//
//   y = A^T [ (G g G^T) . (B^T d B) ] A + bias (+ alpha * residual)
//
// per m x m output tile, with d the tile's (m + 2) x (m + 2) input patch (zero outside the image) and g a 3x3
// filter. Two tilings (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016; B^T, A^T below,
// G in pdgan_infer/kernels/native.py, which transforms the weights once, in float64, into U (a*a, C, K)):
//
//   F(4x4, 3x3)  float32           points 0, +-1, +-2: 36 products per tile, 36 / 16 = 2.25 per output against
//                                  the direct convolution's 9; B has entries up to 5, A up to 8
//   F(2x2, 3x3)  float32, bfloat16 points 0, +-1: 16 products per tile, 4 per output; B and A hold only 0, +-1
//
// The elementwise products summed over input channels are a*a matrix products V_i (tiles x C) @ U_i (C x K),
// one at::bmm (MKL SGEMM in float32; oneDNN's bf16 GEMM with float32 accumulation in bfloat16: avx512_bf16 on
// a Zen 4, AMX on a Xeon that has it). In bfloat16, V and U are rounded to bf16 once (the transforms run in
// float32) and the GEMM's M comes back in bf16; the output transform, bias and residual run in float32 and y is
// rounded once. F(4x4)'s larger constants make that rounding 20-30x a direct bf16 convolution's error (measured
// against float64 on the cifar10 layers), F(2x2)'s 1.5-2x: bfloat16 uses F(2x2) only.
//
// The tiles are processed in blocks of `tile_block` (default: V and M of a block fill ~4 MiB, so they
// stay in cache between the transforms and the GEMM): input transform (parallel over tiles, vectorised
// across channels, reading the patch straight from x), one batched GEMM (multi-threaded by MKL / oneDNN), output
// transform with bias and the optional residual add (parallel over tiles). V and M are a per-thread
// scratch kept between calls. F(4x4) float32 runs each block's transforms and GEMM across all threads: tried and
// slower on the 2-core Xeon: each thread running whole blocks with single-threaded GEMMs, the 36 GEMMs split
// between threads, tile-major V/M with a strided GEMM. F(2x2) gives each thread whole blocks (single-threaded
// GEMMs nested in one parallel region): one fork/join per convolution instead of three per block; on the busy
// 2-core Zen 4 it used 5-10% less CPU time than the shared blocks (OMP_WAIT_POLICY=PASSIVE, 100x128x32x32 bf16).
// Not settled there: with 2 threads on that loaded machine (load 7-30) F(2x2) spent 3-4x its 1-thread CPU time
// in libgomp, where the direct convolution spent 1.1x (docs/benchmarks.md, "CPU without AMX").
// Rounding in float32: F(4x4)'s transforms multiply values by up to 5 (B) and 8 (A), so its result differs
// from a direct convolution's by a few times its rounding error (tests bound it against float64).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/record_function.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../cpu_math.h"

namespace pdgan {
namespace cpu {
namespace {

constexpr int64_t kCB = 64;                      // channels per vector block of the transforms
constexpr int64_t kBlockBytes = 4 * 1024 * 1024;   // V + M of one tile block (automatic size)
constexpr int64_t kScratchMax = 16 * 1024 * 1024;  // largest per-thread scratch kept between calls

// F(4x4, 3x3), float32. V_i[p, c] for the tile whose 6x6 input patch starts at (r0, c0) (may be -1: the zero padding).
// V is (36, pb, C); `v` points at V[0, p, 0] and `cstride` = pb * C is one component's size.
PDGAN_CPU_CLONES void input_tile4(const float* x, int64_t H, int64_t W, int64_t C, int64_t r0, int64_t c0,
                                  const float* zeros, float* v, int64_t cstride) {
  float t[6][6][kCB];
  for (int64_t cb0 = 0; cb0 < C; cb0 += kCB) {
    const int64_t cb = std::min(kCB, C - cb0);
    // t = B^T d (combine rows), reading the patch's column j straight from x (zeros outside the image)
    for (int j = 0; j < 6; ++j) {
      const int64_t col = c0 + j;
      const float* rp[6];
      for (int i = 0; i < 6; ++i) {
        const int64_t r = r0 + i;
        rp[i] = (r < 0 || r >= H || col < 0 || col >= W) ? zeros : x + (r * W + col) * C + cb0;
      }
      const float *p0 = rp[0], *p1 = rp[1], *p2 = rp[2], *p3 = rp[3], *p4 = rp[4], *p5 = rp[5];
      for (int64_t c = 0; c < cb; ++c) {
        const float d0 = p0[c], d1 = p1[c], d2 = p2[c], d3 = p3[c], d4 = p4[c], d5 = p5[c];
        t[0][j][c] = 4.0f * d0 - 5.0f * d2 + d4;
        t[1][j][c] = -4.0f * (d1 + d2) + d3 + d4;
        t[2][j][c] = 4.0f * (d1 - d2) - d3 + d4;
        t[3][j][c] = 2.0f * (d3 - d1) - d2 + d4;
        t[4][j][c] = 2.0f * (d1 - d3) - d2 + d4;
        t[5][j][c] = 4.0f * d1 - 5.0f * d3 + d5;
      }
    }
    // V = t B (combine columns); component i * 6 + l
    for (int i = 0; i < 6; ++i) {
      float* o = v + (i * 6) * cstride + cb0;
      for (int64_t c = 0; c < cb; ++c) {
        const float e0 = t[i][0][c], e1 = t[i][1][c], e2 = t[i][2][c], e3 = t[i][3][c], e4 = t[i][4][c],
                    e5 = t[i][5][c];
        o[0 * cstride + c] = 4.0f * e0 - 5.0f * e2 + e4;
        o[1 * cstride + c] = -4.0f * (e1 + e2) + e3 + e4;
        o[2 * cstride + c] = 4.0f * (e1 - e2) - e3 + e4;
        o[3 * cstride + c] = 2.0f * (e3 - e1) - e2 + e4;
        o[4 * cstride + c] = 2.0f * (e1 - e3) - e2 + e4;
        o[5 * cstride + c] = 4.0f * e1 - 5.0f * e3 + e5;
      }
    }
  }
}

// y[r0 + a, c0 + b, :] = (A^T M A)[a, b] + bias (+ alpha * res) for the in-image part of one tile.
// `m` points at M[0, p, 0] of M (36, pb, K); `cstride` = pb * K.
PDGAN_CPU_CLONES void output_tile4(const float* m, int64_t cstride, int64_t K, const float* bias, const float* res,
                                   float alpha, float* y, int64_t H, int64_t W, int64_t r0, int64_t c0) {
  float t[4][6][kCB];
  float o[4][4][kCB];
  const int64_t rows = std::min<int64_t>(4, H - r0), cols = std::min<int64_t>(4, W - c0);
  for (int64_t kb0 = 0; kb0 < K; kb0 += kCB) {
    const int64_t kb = std::min(kCB, K - kb0);
    // t = A^T M (combine rows)
    for (int j = 0; j < 6; ++j) {
      const float* m0 = m + (0 * 6 + j) * cstride + kb0;
      const float* m1 = m + (1 * 6 + j) * cstride + kb0;
      const float* m2 = m + (2 * 6 + j) * cstride + kb0;
      const float* m3 = m + (3 * 6 + j) * cstride + kb0;
      const float* m4 = m + (4 * 6 + j) * cstride + kb0;
      const float* m5 = m + (5 * 6 + j) * cstride + kb0;
      for (int64_t c = 0; c < kb; ++c) {
        const float s12 = m1[c] + m2[c], d12 = m1[c] - m2[c], s34 = m3[c] + m4[c], d34 = m3[c] - m4[c];
        t[0][j][c] = m0[c] + s12 + s34;
        t[1][j][c] = d12 + 2.0f * d34;
        t[2][j][c] = s12 + 4.0f * s34;
        t[3][j][c] = d12 + 8.0f * d34 + m5[c];
      }
    }
    // o = t A (combine columns)
    for (int a = 0; a < 4; ++a)
      for (int64_t c = 0; c < kb; ++c) {
        const float s12 = t[a][1][c] + t[a][2][c], d12 = t[a][1][c] - t[a][2][c];
        const float s34 = t[a][3][c] + t[a][4][c], d34 = t[a][3][c] - t[a][4][c];
        o[a][0][c] = t[a][0][c] + s12 + s34;
        o[a][1][c] = d12 + 2.0f * d34;
        o[a][2][c] = s12 + 4.0f * s34;
        o[a][3][c] = d12 + 8.0f * d34 + t[a][5][c];
      }
    for (int64_t a = 0; a < rows; ++a)
      for (int64_t b = 0; b < cols; ++b) {
        const int64_t at = ((r0 + a) * W + (c0 + b)) * K + kb0;
        float* dst = y + at;
        if (res != nullptr) {
          const float* r = res + at;
          for (int64_t c = 0; c < kb; ++c) dst[c] = o[a][b][c] + bias[kb0 + c] + alpha * r[c];
        } else {
          for (int64_t c = 0; c < kb; ++c) dst[c] = o[a][b][c] + bias[kb0 + c];
        }
      }
  }
}

// F(2x2, 3x3): V_i[p, c] for the tile whose 4x4 input patch starts at (r0, c0), values of storage S loaded to
// float32, transformed, stored as S. V is (16, pb, C), `v` points at V[0, p, 0], `cstride` = pb * C. Each
// channel's 16 patch values are transformed in registers (the patch is small enough).
template <typename S>
PDGAN_ALWAYS_INLINE void input_tile2(const typename S::storage* x, int64_t H, int64_t W, int64_t C, int64_t r0,
                                     int64_t c0, const typename S::storage* zeros, typename S::storage* v,
                                     int64_t cstride) {
  using T = typename S::storage;
  for (int64_t cb0 = 0; cb0 < C; cb0 += kCB) {
    const int64_t cb = std::min(kCB, C - cb0);
    const T* d[16];  // patch value (i, j) = d[i * 4 + j][c]
    for (int k = 0; k < 16; ++k) {
      const int64_t r = r0 + k / 4, col = c0 + k % 4;
      d[k] = (r < 0 || r >= H || col < 0 || col >= W) ? zeros : x + (r * W + col) * C + cb0;
    }
    T* o = v + cb0;
    // V never overlaps x (no runtime alias checks of 17 pointers, see output_tile2)
#pragma GCC ivdep
    for (int64_t c = 0; c < cb; ++c) {
      float e[16];
      for (int k = 0; k < 16; ++k) e[k] = S::load(d[k][c]);
      // t = B^T d: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3); V = t B: the same on the columns
      float t[16];
      for (int j = 0; j < 4; ++j) {
        t[0 + j] = e[j] - e[8 + j];
        t[4 + j] = e[4 + j] + e[8 + j];
        t[8 + j] = e[8 + j] - e[4 + j];
        t[12 + j] = e[4 + j] - e[12 + j];
      }
      for (int i = 0; i < 4; ++i) {
        const float* ti = t + 4 * i;
        o[(4 * i + 0) * cstride + c] = S::store(ti[0] - ti[2]);
        o[(4 * i + 1) * cstride + c] = S::store(ti[1] + ti[2]);
        o[(4 * i + 2) * cstride + c] = S::store(ti[2] - ti[1]);
        o[(4 * i + 3) * cstride + c] = S::store(ti[1] - ti[3]);
      }
    }
  }
}

// y[r0 + a, c0 + b, :] = (A^T M A)[a, b] + bias (+ alpha * res) for the in-image part of one 2x2 tile, in float32,
// rounded to S once. `m` points at M[0, p, 0] of M (16, pb, K); `cstride` = pb * K; `zeros` holds >= kCB zeros.
// Each channel's 16 M values give its four outputs in registers; outputs outside the image go to a scratch
// row (and read the zero row as residual), so the channel loop has no branches.
template <typename S>
PDGAN_ALWAYS_INLINE void output_tile2(const typename S::storage* m, int64_t cstride, int64_t K, const float* bias,
                                      const typename S::storage* res, float alpha, typename S::storage* y, int64_t H,
                                      int64_t W, int64_t r0, int64_t c0, const typename S::storage* zeros) {
  using T = typename S::storage;
  T sink[kCB];
  for (int64_t kb0 = 0; kb0 < K; kb0 += kCB) {
    const int64_t kb = std::min(kCB, K - kb0);
    T* yo[4];
    const T* ro[4];
    for (int q = 0; q < 4; ++q) {
      const int64_t r = r0 + q / 2, col = c0 + q % 2, at = (r * W + col) * K + kb0;
      const bool inside = r < H && col < W;
      yo[q] = inside ? y + at : sink;
      ro[q] = inside && res != nullptr ? res + at : zeros;
    }
    const T* mk = m + kb0;
    T *y0 = yo[0], *y1 = yo[1], *y2 = yo[2], *y3 = yo[3];
    const T *q0 = ro[0], *q1 = ro[1], *q2 = ro[2], *q3 = ro[3];
    // the output rows never overlap M, the residual or each other (without this GCC gives up on the runtime
    // alias checks of 25 pointers and the loop stays scalar: 2x slower)
#pragma GCC ivdep
    for (int64_t c = 0; c < kb; ++c) {
      float v[16];
      for (int i = 0; i < 16; ++i) v[i] = S::load(mk[i * cstride + c]);
      // t = A^T M: rows (v[j] + v[4 + j] + v[8 + j], v[4 + j] - v[8 + j] - v[12 + j]); o = t A likewise
      float t0[4], t1[4];
      for (int j = 0; j < 4; ++j) {
        t0[j] = v[j] + v[4 + j] + v[8 + j];
        t1[j] = v[4 + j] - v[8 + j] - v[12 + j];
      }
      const float bc = bias[kb0 + c];
      y0[c] = S::store(t0[0] + t0[1] + t0[2] + bc + alpha * S::load(q0[c]));
      y1[c] = S::store(t0[1] - t0[2] - t0[3] + bc + alpha * S::load(q1[c]));
      y2[c] = S::store(t1[0] + t1[1] + t1[2] + bc + alpha * S::load(q2[c]));
      y3[c] = S::store(t1[1] - t1[2] - t1[3] + bc + alpha * S::load(q3[c]));
    }
  }
}

// the tilings the driver runs: kM x kM output tiles from kA x kA input patches; `in` / `out` are the transforms,
// compiled per instruction set (PDGAN_CPU_CLONES) around the inlined templates
struct F4x4Float {
  using S = Float32;
  static constexpr int64_t kM = 4, kA = 6;
  static constexpr bool kThreadBlocks = false;
  static void in(const float* x, int64_t H, int64_t W, int64_t C, int64_t r0, int64_t c0, const float* zeros,
                 float* v, int64_t cstride) {
    input_tile4(x, H, W, C, r0, c0, zeros, v, cstride);
  }
  static void out(const float* m, int64_t cstride, int64_t K, const float* bias, const float* res, float alpha,
                  float* y, int64_t H, int64_t W, int64_t r0, int64_t c0, const float* /*zeros*/) {
    output_tile4(m, cstride, K, bias, res, alpha, y, H, W, r0, c0);
  }
};

#define PDGAN_F2X2_TILING(NAME, TAG)                                                                              \
  PDGAN_CPU_CLONES void NAME##_in(const TAG::storage* x, int64_t H, int64_t W, int64_t C, int64_t r0, int64_t c0, \
                                  const TAG::storage* zeros, TAG::storage* v, int64_t cstride) {                  \
    input_tile2<TAG>(x, H, W, C, r0, c0, zeros, v, cstride);                                                      \
  }                                                                                                               \
  PDGAN_CPU_CLONES void NAME##_out(const TAG::storage* m, int64_t cstride, int64_t K, const float* bias,         \
                                   const TAG::storage* res, float alpha, TAG::storage* y, int64_t H, int64_t W,   \
                                   int64_t r0, int64_t c0, const TAG::storage* zeros) {                           \
    output_tile2<TAG>(m, cstride, K, bias, res, alpha, y, H, W, r0, c0, zeros);                                   \
  }                                                                                                               \
  struct NAME {                                                                                                   \
    using S = TAG;                                                                                                \
    static constexpr int64_t kM = 2, kA = 4;                                                                      \
    static constexpr bool kThreadBlocks = true;                                                                   \
    template <typename... Args>                                                                                   \
    static void in(Args... args) {                                                                                \
      NAME##_in(args...);                                                                                         \
    }                                                                                                             \
    template <typename... Args>                                                                                   \
    static void out(Args... args) {                                                                               \
      NAME##_out(args...);                                                                                        \
    }                                                                                                             \
  };

PDGAN_F2X2_TILING(F2x2Float, Float32)
PDGAN_F2X2_TILING(F2x2BFloat16, BFloat16)
#undef PDGAN_F2X2_TILING

void check_inputs(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                  const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(x.device().is_cpu() && u.device().is_cpu() && bias.device().is_cpu(),
              "pdgan.winograd_conv3x3: CPU tensors only (got x on ", x.device(), ")");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "pdgan.winograd_conv3x3: float32 or bfloat16 x only (got ", x.scalar_type(),
              "); use a direct convolution for other dtypes");
  TORCH_CHECK(u.scalar_type() == x.scalar_type() && bias.scalar_type() == at::kFloat,
              "pdgan.winograd_conv3x3: u must have x's dtype and bias must be float32 (got x ", x.scalar_type(),
              ", u ", u.scalar_type(), ", bias ", bias.scalar_type(), ")");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "pdgan.winograd_conv3x3: x must be (N, C, H, W) in channels_last memory format, got sizes ", x.sizes(),
              " strides ", x.strides(), "; call x.contiguous(memory_format=torch.channels_last)");
  TORCH_CHECK(u.dim() == 3 && (u.size(0) == 36 || u.size(0) == 16) && u.size(1) == x.size(1) && u.is_contiguous(),
              "pdgan.winograd_conv3x3: u must be the contiguous (36, C, K) F(4x4) or (16, C, K) F(2x2) transformed "
              "weights with C = ", x.size(1), " (winograd_weight(weight, tile)), got ", u.sizes());
  TORCH_CHECK(u.size(0) == 16 || x.scalar_type() == at::kFloat,
              "pdgan.winograd_conv3x3: F(4x4, 3x3) runs in float32 only (its bf16 error is 20-30x a direct "
              "convolution's); transform the weights with tile=2 for bfloat16");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == u.size(2) && bias.is_contiguous(),
              "pdgan.winograd_conv3x3: bias must be a contiguous (K,) tensor with K = ", u.size(2), ", got ",
              bias.sizes());
  if (residual.has_value()) {
    const at::Tensor& r = *residual;
    TORCH_CHECK(r.device().is_cpu() && r.scalar_type() == x.scalar_type() && r.dim() == 4 && r.size(0) == x.size(0) &&
                    r.size(1) == u.size(2) && r.size(2) == x.size(2) && r.size(3) == x.size(3) &&
                    r.is_contiguous(at::MemoryFormat::ChannelsLast),
                "pdgan.winograd_conv3x3: residual must be a channels_last CPU tensor of x's dtype (", x.scalar_type(),
                ") and the output's shape (", x.size(0), ", ", u.size(2), ", ", x.size(2), ", ", x.size(3), "), got ",
                r.sizes(), " ", r.scalar_type());
  }
}

// V and M live in this thread's scratch, kept between calls (up to kScratchMax): a fresh 4 MiB buffer per
// call would be page-faulted in again every time (dozens of calls per generator pass). A bigger need (an
// explicit huge tile_block) gets a buffer of the call's own in `owned` (never inside a thread's block: there
// the automatic block size keeps it under kScratchMax).
template <typename T>
T* thread_scratch(int64_t bytes, const at::Tensor& x, at::Tensor* owned) {
  thread_local std::vector<float> scratch;
  if (bytes > kScratchMax && owned != nullptr) {
    *owned = at::empty({bytes}, x.options().dtype(at::kByte));
    return reinterpret_cast<T*>(owned->data_ptr());
  }
  const size_t floats = static_cast<size_t>((bytes + 3) / 4);
  if (scratch.size() < floats) scratch.resize(floats);
  return reinterpret_cast<T*>(scratch.data());
}

// tiles [p0, p0 + pb) of the whole batch through V (a*a, pb, C) -> M = V @ U -> y, block after block
template <typename Tiling>
void run(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, const c10::optional<at::Tensor>& residual,
         float alpha, int64_t tile_block, at::Tensor& y) {
  using T = typename Tiling::S::storage;
  constexpr int64_t kM = Tiling::kM, kA2 = Tiling::kA * Tiling::kA;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = u.size(2);
  const int64_t th = (H + kM - 1) / kM, tw = (W + kM - 1) / kM, per_image = th * tw, P = N * per_image;
  if (P == 0 || K == 0) return;
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  const float* bp = bias.data_ptr<float>();
  const T* rp = residual.has_value() ? reinterpret_cast<const T*>(residual->data_ptr()) : nullptr;
  T* yp = reinterpret_cast<T*>(y.data_ptr());
  const std::vector<T> zero_row(static_cast<size_t>(kCB), T(0));  // +0.0 in float32 and bf16
  const T* zp = zero_row.data();
  auto in_tiles = [&](T* vp, int64_t p0, int64_t pb, int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t q = p0 + p, n = q / per_image, r = q % per_image;
      Tiling::in(xp + n * H * W * C, H, W, C, (r / tw) * kM - 1, (r % tw) * kM - 1, zp, vp + p * C, pb * C);
    }
  };
  auto out_tiles = [&](const T* mp, int64_t p0, int64_t pb, int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t q = p0 + p, n = q / per_image, r = q % per_image;
      const int64_t off = n * H * W * K;
      Tiling::out(mp + p * K, pb * K, K, bp, rp ? rp + off : nullptr, alpha, yp + off, H, W, (r / tw) * kM,
                  (r % tw) * kM, zp);
    }
  };
  const int64_t elem = static_cast<int64_t>(sizeof(T));
  const int64_t pb_max =
      std::min(tile_block > 0 ? tile_block : std::max<int64_t>(16, kBlockBytes / (kA2 * elem * (C + K))), P);
  const int64_t need_bytes = kA2 * pb_max * (C + K) * elem;
  // one block: input transform of tiles [p0, p0 + pb) into V, M = V @ U, output transform; `inner` runs the
  // transforms' tile loops (parallel, or serial inside a thread's own block)
  auto block = [&](T* vp, int64_t p0, int64_t pb, bool parallel) {
    T* mp = vp + kA2 * pb_max * C;
    if (parallel)
      at::parallel_for(0, pb, 1, [&](int64_t b, int64_t e) { in_tiles(vp, p0, pb, b, e); });
    else
      in_tiles(vp, p0, pb, 0, pb);
    {
      at::DisableRecordFunctionGuard no_profile;  // profilers see one op: this convolution, not a bmm
      at::Tensor v = at::from_blob(vp, {kA2, pb, C}, x.options());
      at::Tensor m = at::from_blob(mp, {kA2, pb, K}, x.options());
      at::bmm_out(m, v, u);
    }
    if (parallel)
      at::parallel_for(0, pb, 1, [&](int64_t b, int64_t e) { out_tiles(mp, p0, pb, b, e); });
    else
      out_tiles(mp, p0, pb, 0, pb);
  };
  if (Tiling::kThreadBlocks && at::get_num_threads() > 1 && P > pb_max) {
    // whole blocks per thread, each with a single-threaded GEMM (nested in the parallel region): one fork/join
    // per convolution instead of three per block. Blocks are handed out one at a time (an atomic counter, not a
    // static split): on a shared CPU a descheduled thread holds up the others by at most one block.
    const int64_t blocks = (P + pb_max - 1) / pb_max;
    std::atomic<int64_t> next{0};
    at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
      T* vp = thread_scratch<T>(need_bytes, x, nullptr);
      for (int64_t i = next++; i < blocks; i = next++) block(vp, i * pb_max, std::min(pb_max, P - i * pb_max), false);
    });
    return;
  }
  at::Tensor owned;
  T* vp = thread_scratch<T>(need_bytes, x, &owned);
  for (int64_t p0 = 0; p0 < P; p0 += pb_max) block(vp, p0, std::min(pb_max, P - p0), true);
}

}  // namespace

at::Tensor winograd_conv3x3_cpu(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                                const c10::optional<at::Tensor>& residual, double alpha, int64_t tile_block) {
  check_inputs(x, u, bias, residual);
  TORCH_CHECK(tile_block >= 0, "pdgan.winograd_conv3x3: tile_block must be >= 0 (0: automatic), got ", tile_block);
  at::Tensor y = at::empty({x.size(0), u.size(2), x.size(2), x.size(3)},
                           x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float a = static_cast<float>(alpha);
  if (u.size(0) == 36)
    run<F4x4Float>(x, u, bias, residual, a, tile_block, y);
  else if (x.scalar_type() == at::kFloat)
    run<F2x2Float>(x, u, bias, residual, a, tile_block, y);
  else
    run<F2x2BFloat16>(x, u, bias, residual, a, tile_block, y);
  return y;
}

}  // namespace cpu
}  // namespace pdgan
