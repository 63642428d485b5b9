// 3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(4x4, 3x3), CPU, float32,
// channels_last (NHWC) activations:
//
//   y = A^T [ (G g G^T) . (B^T d B) ] A + bias (+ alpha * residual)
//
// per 4x4 output tile, with d the tile's 6x6 input patch (zero outside the image) and g a 3x3 filter;
// the matrices are Lavin & Gray's ("Fast Algorithms for Convolutional Neural Networks", 2016) with the
// interpolation points 0, +-1, +-2 (B^T, A^T below; G in pdgan_infer/kernels/native.py, which transforms
// the weights once, in float64, into U (36, C, K)). The elementwise products summed over input
// channels are 36 matrix products V_i (tiles x C) @ U_i (C x K): 36 multiply-adds per 4x4 tile and
// (input, output) channel pair against the direct convolution's 16 * 9 = 144, in at::bmm (MKL SGEMM).
//
// The tiles are processed in blocks of `tile_block` (default: V and M of a block fill ~4 MiB, so they
// stay in cache between the transforms and the GEMM): input transform (parallel over tiles, vectorised
// across channels, reading the patch straight from x), one batched GEMM (multi-threaded by MKL), output
// transform with bias and the optional residual add (parallel over tiles). V and M are a per-thread
// scratch kept between calls. Tried (2-core Zen 4, OpenMP build): each thread running whole 12-tile blocks
// with an AVX-512 micro-kernel, as the bfloat16 kernel does. Mixed: 1.1-1.5x faster on most layers with up to
// 384 input channels, 0.6-0.96x at 512, where every block re-reads all 36 * C * K float32 filters (18.9 MB).
// Blocks of 24, 48 and 96 tiles reusing each filter panel over them: 1154-1503 ms for a cifar10 pass's 3x3
// layers against 1276-1463 ms for this code in the same runs, within the machine's noise; not adopted.
// Rounding: the transforms multiply values by up to 5 (B) and 8 (A), so the float32 result differs from a
// direct convolution's by a few times its rounding error (tests bound it against float64). Only float32: in
// bfloat16 those factors would amplify the roundings of the transformed values (winograd_bf16_cpu.cpp is
// F(2x2, 3x3) for that reason).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/record_function.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <vector>

#include "../cpu_math.h"

namespace pdgan {
namespace cpu {
namespace {

constexpr int64_t kCB = 64;                      // channels per vector block of the transforms
constexpr int64_t kBlockBytes = 4 * 1024 * 1024;   // V + M of one tile block (automatic size)
constexpr int64_t kScratchMax = 16 * 1024 * 1024;  // largest per-thread scratch kept between calls

// V_i[p, c] for the tile whose 6x6 input patch starts at (r0, c0) (may be -1: the zero padding).
// V is (36, pb, C); `v` points at V[0, p, 0] and `cstride` = pb * C is one component's size.
PDGAN_CPU_CLONES void input_tile(const float* x, int64_t H, int64_t W, int64_t C, int64_t r0, int64_t c0,
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
PDGAN_CPU_CLONES void output_tile(const float* m, int64_t cstride, int64_t K, const float* bias, const float* res,
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

void check_inputs(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                  const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(x.device().is_cpu() && u.device().is_cpu() && bias.device().is_cpu(),
              "pdgan.winograd_conv3x3: CPU tensors only (got x on ", x.device(), ")");
  TORCH_CHECK(x.scalar_type() == at::kFloat && u.scalar_type() == at::kFloat && bias.scalar_type() == at::kFloat,
              "pdgan.winograd_conv3x3: float32 only (got x ", x.scalar_type(), ", u ", u.scalar_type(), ", bias ",
              bias.scalar_type(), "); use a direct convolution for other dtypes");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "pdgan.winograd_conv3x3: x must be (N, C, H, W) in channels_last memory format, got sizes ", x.sizes(),
              " strides ", x.strides(), "; call x.contiguous(memory_format=torch.channels_last)");
  TORCH_CHECK(u.dim() == 3 && u.size(0) == 36 && u.size(1) == x.size(1) && u.is_contiguous(),
              "pdgan.winograd_conv3x3: u must be the contiguous (36, C, K) transformed weights with C = ", x.size(1),
              " (winograd_weight(weight)), got ", u.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == u.size(2) && bias.is_contiguous(),
              "pdgan.winograd_conv3x3: bias must be a contiguous (K,) tensor with K = ", u.size(2), ", got ",
              bias.sizes());
  if (residual.has_value()) {
    const at::Tensor& r = *residual;
    TORCH_CHECK(r.device().is_cpu() && r.scalar_type() == at::kFloat && r.dim() == 4 && r.size(0) == x.size(0) &&
                    r.size(1) == u.size(2) && r.size(2) == x.size(2) && r.size(3) == x.size(3) &&
                    r.is_contiguous(at::MemoryFormat::ChannelsLast),
                "pdgan.winograd_conv3x3: residual must be a float32 channels_last CPU tensor of the output's shape (",
                x.size(0), ", ", u.size(2), ", ", x.size(2), ", ", x.size(3), "), got ", r.sizes(), " ",
                r.scalar_type());
  }
}

}  // namespace

at::Tensor winograd_conv3x3_cpu(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                                const c10::optional<at::Tensor>& residual, double alpha, int64_t tile_block) {
  check_inputs(x, u, bias, residual);
  TORCH_CHECK(tile_block >= 0, "pdgan.winograd_conv3x3: tile_block must be >= 0 (0: automatic), got ", tile_block);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = u.size(2);
  at::Tensor y = at::empty({N, K, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t th = (H + 3) / 4, tw = (W + 3) / 4, per_image = th * tw, P = N * per_image;
  if (P == 0 || K == 0) return y;
  const float* xp = x.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  const float* rp = residual.has_value() ? residual->data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const float a = static_cast<float>(alpha);
  const std::vector<float> zero_row(static_cast<size_t>(std::min(C, kCB)), 0.0f);
  const float* zp = zero_row.data();
  // tiles [p0, p0 + pb) of the whole batch through V (36, pb, C) -> M = V @ U -> y; in_tiles / out_tiles
  // run the transforms of tiles [b, e) of the block
  auto in_tiles = [&](float* vp, int64_t p0, int64_t pb, int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t q = p0 + p, n = q / per_image, r = q % per_image;
      input_tile(xp + n * H * W * C, H, W, C, (r / tw) * 4 - 1, (r % tw) * 4 - 1, zp, vp + p * C, pb * C);
    }
  };
  auto out_tiles = [&](const float* mp, int64_t p0, int64_t pb, int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t q = p0 + p, n = q / per_image, r = q % per_image;
      const int64_t off = n * H * W * K;
      output_tile(mp + p * K, pb * K, K, bp, rp ? rp + off : nullptr, a, yp + off, H, W, (r / tw) * 4, (r % tw) * 4);
    }
  };
  const int64_t pb_max =
      std::min(tile_block > 0 ? tile_block : std::max<int64_t>(16, kBlockBytes / (36 * 4 * (C + K))), P);
  // V and M live in this thread's scratch, kept between calls (up to kScratchMax): a fresh 4 MiB buffer per
  // call would be page-faulted in again every time (dozens of calls per generator pass)
  const int64_t need = 36 * pb_max * (C + K);
  thread_local std::vector<float> scratch;
  at::Tensor owned;
  float* buf;
  if (need * 4 <= kScratchMax) {
    if (scratch.size() < static_cast<size_t>(need)) scratch.resize(static_cast<size_t>(need));
    buf = scratch.data();
  } else {  // an explicit huge tile_block: a buffer of this call's own
    owned = at::empty({need}, x.options());
    buf = owned.data_ptr<float>();
  }
  float* vp = buf;
  float* mp = buf + 36 * pb_max * C;
  for (int64_t p0 = 0; p0 < P; p0 += pb_max) {
    const int64_t pb = std::min(pb_max, P - p0);
    at::parallel_for(0, pb, 1, [&](int64_t b, int64_t e) { in_tiles(vp, p0, pb, b, e); });
    {
      at::DisableRecordFunctionGuard no_profile;  // profilers see one op: this convolution, not a bmm
      at::Tensor v = at::from_blob(vp, {36, pb, C}, x.options());
      at::Tensor m = at::from_blob(mp, {36, pb, K}, x.options());
      at::bmm_out(m, v, u);
    }
    at::parallel_for(0, pb, 1, [&](int64_t b, int64_t e) { out_tiles(mp, p0, pb, b, e); });
  }
  return y;
}

}  // namespace cpu
}  // namespace pdgan
