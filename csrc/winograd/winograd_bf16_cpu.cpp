// 3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(2x2, 3x3), CPU, bfloat16 activations,
// channels_last (NHWC), for x86-64 CPUs with AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake and later):
//
//   y = A^T [ (G g G^T) . (B^T d B) ] A + bias (+ alpha * residual)
//
// per 2x2 output tile, d the tile's 4x4 input patch (zero outside the image), g a 3x3 filter, with
//
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1]
//
// (Lavin & Gray 2016; G is applied once, in float64, by pdgan_infer/kernels/native.py: winograd_weight_bf16).
// The 16 elementwise products summed over input channels are 16 matrix products V_i (tiles x C) @ U_i (C x K)
// in bfloat16 with float32 accumulation (VDPBF16PS): 16 multiply-adds per 2x2 tile and channel pair against
// the direct convolution's 4 * 9 = 36, i.e. 2.25x fewer. F(2x2, 3x3) rather than F(4x4, 3x3): its transforms
// only add and subtract (entries 0, +-1; G's 1/2 is exact), so rounding V and U to bfloat16 costs about one
// bfloat16 rounding each, where F(4x4)'s factors of up to 5 (B) and 8 (A) would amplify them.
//
// Arithmetic: x is bfloat16, the input transform is exact in float32 (sums of four bfloat16 values) and rounded
// once to bfloat16 (V); U is rounded once from float64; the GEMMs accumulate in float32; the output transform,
// bias and residual are float32 and the result is rounded once to bfloat16.
//
// Work split: the tiles of the whole batch are cut into blocks of `tile_block` tiles (default kTileBlock); each
// thread takes whole blocks and runs input transform -> 16 GEMMs -> output transform on them alone, in its own
// scratch (V (16, block, C) bf16, M (16, block, K) f32, a few hundred KiB: in L2), with no barrier between the
// stages. The GEMM micro-kernel computes a kMR x 32 block of M_i: kMR x 2 zmm accumulators, the (C/2, 32, 2)
// VNNI panel of U_i streamed through two zmm loads per channel pair, V's channel pairs broadcast.
//
// The kernel is compiled for AVX512-BF16 only (function target attributes) and refuses to run on a CPU without
// it (winograd_bf16_supported() says which); everything else keeps oneDNN's direct bfloat16 convolution.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 11)
// GCC 12 warns that the intrinsics' _mm512_undefined_* sources "may be used uninitialized" (GCC bug 105593)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define PDGAN_WINOGRAD_BF16 1
#define PDGAN_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#else
#define PDGAN_WINOGRAD_BF16 0
#endif

namespace pdgan {
namespace cpu {

bool winograd_bf16_supported() {
#if PDGAN_WINOGRAD_BF16
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

namespace {
constexpr int kMR = 12;  // tiles per micro-kernel block (12 x 2 zmm accumulators); thread blocks are multiples
}  // namespace

#if PDGAN_WINOGRAD_BF16
namespace {

constexpr int64_t kNR = 32;                    // output channels per micro-kernel block (2 zmm)
constexpr int64_t kTileBlock = 2 * kMR;        // tiles per thread block (default)
constexpr int64_t kScratchMax = 16 << 20;      // largest per-thread scratch kept between calls

PDGAN_BF16_TARGET inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
      reinterpret_cast<const __m256i*>(p))), 16));
}

PDGAN_BF16_TARGET inline void store_bf16(uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
}

// V[i][p][0:C) (component i = 4 * row + column of B^T d B) for the tile whose 4x4 patch starts at (r0, c0)
// of image `x` (H, W, C); `v` points at V[0][p][0], `cstride` = block * C is one component's size.
PDGAN_BF16_TARGET void input_tile(const uint16_t* x, int64_t H, int64_t W, int64_t C, int64_t r0, int64_t c0,
                                  uint16_t* v, int64_t cstride) {
  const uint16_t* rows[4][4];
  bool inside[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t r = r0 + i, c = c0 + j;
      inside[i][j] = r >= 0 && r < H && c >= 0 && c < W;
      rows[i][j] = inside[i][j] ? x + (r * W + c) * C : nullptr;
    }
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t ch = 0; ch < C; ch += 16) {
    __m512 t[4][4];
    for (int j = 0; j < 4; ++j) {  // t = B^T d: combine rows, column j
      const __m512 d0 = inside[0][j] ? load_bf16(rows[0][j] + ch) : zero;
      const __m512 d1 = inside[1][j] ? load_bf16(rows[1][j] + ch) : zero;
      const __m512 d2 = inside[2][j] ? load_bf16(rows[2][j] + ch) : zero;
      const __m512 d3 = inside[3][j] ? load_bf16(rows[3][j] + ch) : zero;
      t[0][j] = _mm512_sub_ps(d0, d2);
      t[1][j] = _mm512_add_ps(d1, d2);
      t[2][j] = _mm512_sub_ps(d2, d1);
      t[3][j] = _mm512_sub_ps(d1, d3);
    }
    for (int i = 0; i < 4; ++i) {  // V = t B: combine columns
      uint16_t* o = v + (i * 4) * cstride + ch;
      store_bf16(o, _mm512_sub_ps(t[i][0], t[i][2]));
      store_bf16(o + cstride, _mm512_add_ps(t[i][1], t[i][2]));
      store_bf16(o + 2 * cstride, _mm512_sub_ps(t[i][2], t[i][1]));
      store_bf16(o + 3 * cstride, _mm512_sub_ps(t[i][1], t[i][3]));
    }
  }
}

PDGAN_BF16_TARGET void zero_tile(int64_t C, uint16_t* v, int64_t cstride) {
  for (int i = 0; i < 16; ++i) std::memset(v + i * cstride, 0, static_cast<size_t>(C) * sizeof(uint16_t));
}

// y[r0 + a, c0 + b, :] = (A^T M A)[a, b] + bias (+ alpha * res) for the in-image part of one tile.
// `m` points at M[0][p][0] of M (16, block, K); `cstride` = block * K.
PDGAN_BF16_TARGET void output_tile(const float* m, int64_t cstride, int64_t K, const float* bias,
                                   const uint16_t* res, float alpha, uint16_t* y, int64_t H, int64_t W, int64_t r0,
                                   int64_t c0) {
  const int64_t rows = std::min<int64_t>(2, H - r0), cols = std::min<int64_t>(2, W - c0);
  const __m512 va = _mm512_set1_ps(alpha);
  for (int64_t k = 0; k < K; k += 16) {
    __m512 s[2][4];
    for (int j = 0; j < 4; ++j) {  // s = A^T M: combine rows
      const __m512 m0 = _mm512_loadu_ps(m + (0 * 4 + j) * cstride + k);
      const __m512 m1 = _mm512_loadu_ps(m + (1 * 4 + j) * cstride + k);
      const __m512 m2 = _mm512_loadu_ps(m + (2 * 4 + j) * cstride + k);
      const __m512 m3 = _mm512_loadu_ps(m + (3 * 4 + j) * cstride + k);
      s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
      s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
    }
    const __m512 b = _mm512_loadu_ps(bias + k);
    for (int64_t a = 0; a < rows; ++a) {
      const __m512 o[2] = {_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]), s[a][2]), b),
                           _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]), s[a][3]), b)};
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t at = ((r0 + a) * W + (c0 + c)) * K + k;
        __m512 out = o[c];
        if (res != nullptr) out = _mm512_fmadd_ps(va, load_bf16(res + at), out);
        store_bf16(y + at, out);
      }
    }
  }
}

// M[r][0:32) = sum over channel pairs q of V[r][2q:2q+2] . U[q][0:32][0:2] for r < kMR, float32 accumulation.
// v: V rows (stride C); u: one (C/2, 32, 2) panel; m: M rows (stride ldm).
PDGAN_BF16_TARGET void micro_kernel(const uint16_t* v, int64_t C, const uint16_t* u, float* m, int64_t ldm) {
  __m512 acc[kMR][2];
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const int64_t pairs = C / 2;
  for (int64_t q = 0; q < pairs; ++q) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(u + q * 64));
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(u + q * 64 + 32));
    for (int r = 0; r < kMR; ++r) {
      int32_t pair;
      std::memcpy(&pair, v + r * C + 2 * q, sizeof(pair));
      const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
    }
  }
  for (int r = 0; r < kMR; ++r) {
    _mm512_storeu_ps(m + r * ldm, acc[r][0]);
    _mm512_storeu_ps(m + r * ldm + 16, acc[r][1]);
  }
}

struct Scratch {  // a 64-byte aligned per-thread buffer kept between calls
  std::unique_ptr<char, void (*)(void*)> data{nullptr, std::free};
  size_t size = 0;
  char* get(size_t bytes) {
    if (bytes > size) {
      data.reset(static_cast<char*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
      TORCH_CHECK(data != nullptr, "pdgan.winograd_conv3x3_bf16: out of memory for a ", bytes, "-byte scratch");
      size = bytes;
    }
    return data.get();
  }
};

}  // namespace
#endif  // PDGAN_WINOGRAD_BF16

namespace {

void check_inputs_bf16(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                       const c10::optional<at::Tensor>& residual) {
  const char* op = "pdgan.winograd_conv3x3_bf16";
  TORCH_CHECK(winograd_bf16_supported(), op, ": this CPU (or build) has no AVX512-BF16; use a direct bfloat16 "
              "convolution (F.conv2d) or float32 (winograd_conv3x3)");
  TORCH_CHECK(x.device().is_cpu() && u.device().is_cpu() && bias.device().is_cpu(), op,
              ": CPU tensors only (got x on ", x.device(), ")");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && u.scalar_type() == at::kBFloat16 && bias.scalar_type() == at::kFloat,
              op, ": x and u must be bfloat16 and bias float32 (got x ", x.scalar_type(), ", u ", u.scalar_type(),
              ", bias ", bias.scalar_type(), ")");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast), op,
              ": x must be (N, C, H, W) in channels_last memory format, got sizes ", x.sizes(), " strides ",
              x.strides(), "; call x.contiguous(memory_format=torch.channels_last)");
  const int64_t C = x.size(1);
  TORCH_CHECK(u.dim() == 5 && u.size(0) == 16 && u.size(2) * 2 == C && u.size(3) == 32 && u.size(4) == 2 &&
                  u.is_contiguous(),
              op, ": u must be the contiguous (16, K/32, C/2, 32, 2) packed filters with C = ", C,
              " (winograd_weight_bf16(weight)), got ", u.sizes());
  TORCH_CHECK(C % 16 == 0 && C > 0, op, ": the input channels must be a positive multiple of 16, got ", C);
  const int64_t K = u.size(1) * 32;
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == K && bias.is_contiguous(), op,
              ": bias must be a contiguous float32 (K,) tensor with K = ", K, ", got ", bias.sizes());
  if (residual.has_value()) {
    const at::Tensor& r = *residual;
    TORCH_CHECK(r.device().is_cpu() && r.scalar_type() == at::kBFloat16 && r.dim() == 4 && r.size(0) == x.size(0) &&
                    r.size(1) == K && r.size(2) == x.size(2) && r.size(3) == x.size(3) &&
                    r.is_contiguous(at::MemoryFormat::ChannelsLast),
                op, ": residual must be a bfloat16 channels_last CPU tensor of the output's shape (", x.size(0), ", ",
                K, ", ", x.size(2), ", ", x.size(3), "), got ", r.sizes(), " ", r.scalar_type());
  }
}

}  // namespace

at::Tensor winograd_conv3x3_bf16_cpu(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                                     const c10::optional<at::Tensor>& residual, double alpha, int64_t tile_block) {
  check_inputs_bf16(x, u, bias, residual);
  TORCH_CHECK(tile_block >= 0 && tile_block % kMR == 0, "pdgan.winograd_conv3x3_bf16: tile_block must be 0 "
              "(automatic) or a positive multiple of ", kMR, ", got ", tile_block);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = u.size(1) * 32;
  at::Tensor y = at::empty({N, K, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
#if PDGAN_WINOGRAD_BF16
  const int64_t th = (H + 1) / 2, tw = (W + 1) / 2, per_image = th * tw, P = N * per_image;
  if (P == 0) return y;
  const int64_t block = tile_block > 0 ? tile_block : kTileBlock;
  const int64_t blocks = (P + block - 1) / block;
  const auto* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  const auto* up = reinterpret_cast<const uint16_t*>(u.data_ptr<at::BFloat16>());
  const float* bp = bias.data_ptr<float>();
  const uint16_t* rp = residual.has_value() ? reinterpret_cast<const uint16_t*>(residual->data_ptr<at::BFloat16>())
                                            : nullptr;
  auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
  const float a = static_cast<float>(alpha);
  // one thread's scratch: V (16, block, C) bf16, then M (16, block, K) f32 from the next 64-byte boundary
  const size_t v_span = (static_cast<size_t>(16 * block * C) * sizeof(uint16_t) + 63) / 64 * 64;
  const size_t scratch_bytes = v_span + static_cast<size_t>(16 * block * K) * sizeof(float);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    thread_local Scratch kept;
    Scratch own;  // a huge explicit tile_block: this call's own buffer
    char* buf = (scratch_bytes <= static_cast<size_t>(kScratchMax) ? kept : own).get(scratch_bytes);
    auto* vp = reinterpret_cast<uint16_t*>(buf);
    auto* mp = reinterpret_cast<float*>(buf + v_span);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t p0 = blk * block, pb = std::min(block, P - p0), padded = (pb + kMR - 1) / kMR * kMR;
      for (int64_t p = 0; p < padded; ++p) {
        if (p >= pb) {
          zero_tile(C, vp + p * C, block * C);
          continue;
        }
        const int64_t q = p0 + p, n = q / per_image, r = q % per_image;
        input_tile(xp + n * H * W * C, H, W, C, (r / tw) * 2 - 1, (r % tw) * 2 - 1, vp + p * C, block * C);
      }
      for (int64_t i = 0; i < 16; ++i) {
        const uint16_t* vi = vp + i * block * C;
        float* mi = mp + i * block * K;
        for (int64_t nb = 0; nb < K / kNR; ++nb) {
          const uint16_t* panel = up + (i * (K / kNR) + nb) * C * kNR;
          for (int64_t mb = 0; mb < padded; mb += kMR) micro_kernel(vi + mb * C, C, panel, mi + mb * K + nb * kNR, K);
        }
      }
      for (int64_t p = 0; p < pb; ++p) {
        const int64_t q = p0 + p, n = q / per_image, r = q % per_image;
        const int64_t off = n * H * W * K;
        output_tile(mp + p * K, block * K, K, bp, rp ? rp + off : nullptr, a, yp + off, H, W, (r / tw) * 2,
                    (r % tw) * 2);
      }
    }
  });
#else
  (void)alpha;
#endif
  return y;
}

}  // namespace cpu
}  // namespace pdgan
