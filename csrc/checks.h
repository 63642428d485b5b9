// Input checks shared by the CPU and CUDA entry points. Every op validates device, dtype, shape and
// memory format here, before anything is allocated or launched, and names the offending argument.
// TORCH_CHECK_VALUE raises Python ValueError, TORCH_CHECK raises RuntimeError (device mismatches).
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace pdgan {

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

// Layout of an AdaGN input: NCHW-contiguous or channels_last (NHWC in memory).
enum class Layout { kNCHW, kNHWC };

// x: (N, C, H, W) fp32/fp16/bf16, NCHW-contiguous or channels_last; gamma, beta: (N, C), any float
// dtype, same device as x; C % num_groups == 0; eps >= 0. Returns the layout of x.
inline Layout check_adagn_inputs(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                                 int64_t num_groups, double eps) {
  TORCH_CHECK_VALUE(x.dim() == 4, "pdgan::adagn_silu: x must be 4-D (N, C, H, W), got shape ", x.sizes());
  TORCH_CHECK_VALUE(is_supported_float(x.scalar_type()),
                    "pdgan::adagn_silu: x must be float32, float16 or bfloat16, got ", x.scalar_type());
  const int64_t n = x.size(0), c = x.size(1);
  for (const auto* p : {&gamma, &beta}) {
    const char* name = p == &gamma ? "gamma" : "beta";
    TORCH_CHECK(p->device() == x.device(), "pdgan::adagn_silu: ", name, " is on ", p->device(),
                " but x is on ", x.device(), "; move both to the same device");
    TORCH_CHECK_VALUE(p->dim() == 2 && p->size(0) == n && p->size(1) == c, "pdgan::adagn_silu: ", name,
                      " must have shape (N, C) = (", n, ", ", c, "), got ", p->sizes());
    TORCH_CHECK_VALUE(at::isFloatingType(p->scalar_type()), "pdgan::adagn_silu: ", name,
                      " must be a floating-point tensor, got ", p->scalar_type());
  }
  TORCH_CHECK_VALUE(num_groups > 0 && c % num_groups == 0, "pdgan::adagn_silu: num_groups=", num_groups,
                    " must be positive and divide the channel count C=", c);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0.0, "pdgan::adagn_silu: eps must be finite and >= 0, got ",
                    eps);
  if (x.is_contiguous()) return Layout::kNCHW;
  TORCH_CHECK_VALUE(x.is_contiguous(at::MemoryFormat::ChannelsLast),
                    "pdgan::adagn_silu: x must be contiguous (NCHW) or channels_last, got strides ",
                    x.strides(), "; call x.contiguous() first");
  return Layout::kNHWC;
}

// x0, xt, noise: same shape, dtype (fp32/fp16/bf16), device, all contiguous. seed XOR noise when
// sigma != 0 is enforced by the caller's choice of branch; offset >= 0 and the stream must not overflow.
inline void check_posterior_inputs(const at::Tensor& x0, const at::Tensor& xt,
                                   const c10::optional<at::Tensor>& noise, const c10::optional<int64_t>& seed,
                                   int64_t offset) {
  TORCH_CHECK_VALUE(is_supported_float(x0.scalar_type()),
                    "pdgan::posterior_step: x0 must be float32, float16 or bfloat16, got ", x0.scalar_type());
  TORCH_CHECK(xt.device() == x0.device(), "pdgan::posterior_step: xt is on ", xt.device(), " but x0 is on ",
              x0.device());
  TORCH_CHECK_VALUE(xt.sizes() == x0.sizes(), "pdgan::posterior_step: xt has shape ", xt.sizes(),
                    " but x0 has shape ", x0.sizes());
  TORCH_CHECK_VALUE(xt.scalar_type() == x0.scalar_type(), "pdgan::posterior_step: xt is ", xt.scalar_type(),
                    " but x0 is ", x0.scalar_type(), "; cast them to one dtype");
  TORCH_CHECK_VALUE(x0.is_contiguous() && xt.is_contiguous(),
                    "pdgan::posterior_step: x0 and xt must be contiguous; call .contiguous() first");
  if (noise.has_value()) {
    const at::Tensor& z = *noise;
    TORCH_CHECK(z.device() == x0.device(), "pdgan::posterior_step: noise is on ", z.device(),
                " but x0 is on ", x0.device());
    TORCH_CHECK_VALUE(z.sizes() == x0.sizes(), "pdgan::posterior_step: noise has shape ", z.sizes(),
                      " but x0 has shape ", x0.sizes());
    TORCH_CHECK_VALUE(z.scalar_type() == x0.scalar_type(), "pdgan::posterior_step: noise is ", z.scalar_type(),
                      " but x0 is ", x0.scalar_type(), "; cast it to x0's dtype");
    TORCH_CHECK_VALUE(z.is_contiguous(), "pdgan::posterior_step: noise must be contiguous");
    TORCH_CHECK_VALUE(!seed.has_value(), "pdgan::posterior_step: pass either noise or seed, not both");
  }
  TORCH_CHECK_VALUE(offset >= 0, "pdgan::posterior_step: offset must be >= 0, got ", offset);
  TORCH_CHECK_VALUE(offset <= std::numeric_limits<int64_t>::max() - x0.numel(),
                    "pdgan::posterior_step: offset + numel overflows int64");
}

inline void check_philox_output(const at::Tensor& out, int64_t offset) {
  TORCH_CHECK_VALUE(is_supported_float(out.scalar_type()),
                    "pdgan::philox_normal_: out must be float32, float16 or bfloat16, got ", out.scalar_type());
  TORCH_CHECK_VALUE(out.is_contiguous(), "pdgan::philox_normal_: out must be contiguous");
  TORCH_CHECK_VALUE(offset >= 0, "pdgan::philox_normal_: offset must be >= 0, got ", offset);
  TORCH_CHECK_VALUE(offset <= std::numeric_limits<int64_t>::max() - out.numel(),
                    "pdgan::philox_normal_: offset + numel overflows int64");
}

// out: (N, ...) fp32/fp16/bf16, contiguous; seeds: (N,) int64, contiguous, on out's device.
inline void check_philox_rows(const at::Tensor& out, const at::Tensor& seeds, int64_t offset) {
  TORCH_CHECK_VALUE(is_supported_float(out.scalar_type()),
                    "pdgan::philox_normal_rows_: out must be float32, float16 or bfloat16, got ", out.scalar_type());
  TORCH_CHECK_VALUE(out.dim() >= 1 && out.is_contiguous(),
                    "pdgan::philox_normal_rows_: out must be a contiguous tensor of at least one dimension");
  TORCH_CHECK(seeds.device() == out.device(), "pdgan::philox_normal_rows_: seeds is on ", seeds.device(),
              " but out is on ", out.device());
  TORCH_CHECK_VALUE(seeds.scalar_type() == at::kLong && seeds.dim() == 1 && seeds.is_contiguous() &&
                        seeds.size(0) == out.size(0),
                    "pdgan::philox_normal_rows_: seeds must be a contiguous int64 vector of out.size(0) = ",
                    out.size(0), " seeds, got ", seeds.scalar_type(), " ", seeds.sizes());
  TORCH_CHECK_VALUE(offset >= 0, "pdgan::philox_normal_rows_: offset must be >= 0, got ", offset);
  const int64_t cols = out.size(0) == 0 ? 0 : out.numel() / out.size(0);
  TORCH_CHECK_VALUE(offset <= std::numeric_limits<int64_t>::max() - cols,
                    "pdgan::philox_normal_rows_: offset + row length overflows int64");
}

}  // namespace pdgan
