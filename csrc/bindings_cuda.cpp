// CUDA implementations of the pdgan ops (schemas in bindings.cpp). Built only by CUDAExtension builds
// (setup.py compiles *_cuda.cpp only when torch has CUDA and a toolkit is found). Validates tensors,
// allocates outputs / workspace through torch's caching allocator and calls the torch-free launchers
// on the current stream; no host synchronisation, so the ops can be captured in CUDA graphs.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "adagn/adagn_cuda.h"
#include "checks.h"
#include "ops.h"
#include "posterior/posterior_cuda.h"

namespace pdgan {
namespace cuda {
namespace {

int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return PDGAN_FLOAT32;
    case at::kHalf: return PDGAN_FLOAT16;
    default: return PDGAN_BFLOAT16;  // checks.h admits only these three
  }
}

void* current_stream() { return static_cast<void*>(c10::cuda::getCurrentCUDAStream().stream()); }

}  // namespace

at::Tensor adagn_silu_cuda(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                           int64_t num_groups, double eps) {
  const Layout layout = check_adagn_inputs(x, gamma, beta, num_groups, eps);
  TORCH_CHECK(x.is_cuda(), "pdgan::adagn_silu (CUDA kernel): x must be a CUDA tensor, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty(x.sizes(), x.options(),
                           layout == Layout::kNCHW ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast);
  if (x.numel() == 0) return y;
  // float32 rows with unit column stride are read in place (the fused backends pass the two halves of the
  // style Linear's float32 output: rows 2C apart); anything else is converted once here
  const auto rows = [](const at::Tensor& t) {
    return t.scalar_type() == at::kFloat && t.stride(1) == 1 && t.stride(0) > 0 ? t : t.to(at::kFloat).contiguous();
  };
  const at::Tensor g32 = rows(gamma);
  const at::Tensor b32 = rows(beta);
  PdganAdaGNParams p{};
  p.x = x.data_ptr();
  p.y = y.data_ptr();
  p.gamma = g32.data_ptr<float>();
  p.beta = b32.data_ptr<float>();
  p.N = x.size(0);
  p.C = x.size(1);
  p.HW = x.size(2) * x.size(3);
  p.G = num_groups;
  p.eps = static_cast<float>(eps);
  p.channels_last = layout == Layout::kNHWC ? 1 : 0;
  p.dtype = dtype_code(x.scalar_type());
  p.gamma_stride = g32.stride(0);
  p.beta_stride = b32.stride(0);
  const size_t ws_bytes = pdgan_adagn_cuda_workspace_bytes(&p);
  at::Tensor workspace;
  if (ws_bytes > 0) {
    workspace = at::empty({static_cast<int64_t>(ws_bytes)}, x.options().dtype(at::kByte));
    p.workspace = workspace.data_ptr();
  }
  const char* err = pdgan_adagn_cuda(&p, current_stream());
  TORCH_CHECK(err == nullptr, "pdgan::adagn_silu: CUDA launch failed: ", err);
  return y;
}

at::Tensor posterior_step_cuda(const at::Tensor& x0, const at::Tensor& xt, double c1, double c2, double sigma,
                               const c10::optional<at::Tensor>& noise, c10::optional<int64_t> seed,
                               int64_t offset) {
  check_posterior_inputs(x0, xt, noise, seed, offset);
  TORCH_CHECK(x0.is_cuda(), "pdgan::posterior_step (CUDA kernel): x0 must be a CUDA tensor, got ", x0.device());
  TORCH_CHECK_VALUE(sigma == 0.0 || noise.has_value() || seed.has_value(), "pdgan::posterior_step: sigma=", sigma,
                    " != 0 needs noise or a seed");
  const c10::cuda::CUDAGuard guard(x0.device());
  at::Tensor out = at::empty_like(x0, at::MemoryFormat::Contiguous);
  if (out.numel() == 0) return out;
  PdganPosteriorParams p{};
  p.x0 = x0.data_ptr();
  p.xt = xt.data_ptr();
  p.noise = (sigma != 0.0 && noise.has_value()) ? noise->data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.numel = out.numel();
  p.c1 = static_cast<float>(c1);
  p.c2 = static_cast<float>(c2);
  p.sigma = static_cast<float>(sigma);
  p.dtype = dtype_code(x0.scalar_type());
  p.use_philox = (sigma != 0.0 && seed.has_value()) ? 1 : 0;
  p.seed = seed.has_value() ? static_cast<uint64_t>(*seed) : 0;
  p.offset = static_cast<uint64_t>(offset);
  const char* err = pdgan_posterior_cuda(&p, current_stream());
  TORCH_CHECK(err == nullptr, "pdgan::posterior_step: CUDA launch failed: ", err);
  return out;
}

void philox_normal_cuda_(at::Tensor& out, int64_t seed, int64_t offset) {
  check_philox_output(out, offset);
  TORCH_CHECK(out.is_cuda(), "pdgan::philox_normal_ (CUDA kernel): out must be a CUDA tensor");
  if (out.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  PdganPosteriorParams p{};
  p.out = out.data_ptr();
  p.numel = out.numel();
  p.sigma = 1.0f;
  p.dtype = dtype_code(out.scalar_type());
  p.use_philox = 1;
  p.seed = static_cast<uint64_t>(seed);
  p.offset = static_cast<uint64_t>(offset);
  const char* err = pdgan_posterior_cuda(&p, current_stream());
  TORCH_CHECK(err == nullptr, "pdgan::philox_normal_: CUDA launch failed: ", err);
}

void philox_normal_rows_cuda_(at::Tensor& out, const at::Tensor& seeds, int64_t offset) {
  check_philox_rows(out, seeds, offset);
  TORCH_CHECK(out.is_cuda(), "pdgan::philox_normal_rows_ (CUDA kernel): out must be a CUDA tensor");
  if (out.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  PdganPhiloxRowsParams p{};
  p.out = out.data_ptr();
  p.seeds = seeds.data_ptr<int64_t>();
  p.rows = out.size(0);
  p.cols = out.numel() / p.rows;
  p.dtype = dtype_code(out.scalar_type());
  p.offset = static_cast<uint64_t>(offset);
  const char* err = pdgan_philox_rows_cuda(&p, current_stream());
  TORCH_CHECK(err == nullptr, "pdgan::philox_normal_rows_: CUDA launch failed: ", err);
}

}  // namespace cuda
}  // namespace pdgan

TORCH_LIBRARY_IMPL(pdgan, CUDA, m) {
  m.impl("adagn_silu", &pdgan::cuda::adagn_silu_cuda);
  m.impl("posterior_step", &pdgan::cuda::posterior_step_cuda);
  m.impl("philox_normal_", &pdgan::cuda::philox_normal_cuda_);
  m.impl("philox_normal_rows_", &pdgan::cuda::philox_normal_rows_cuda_);
}
