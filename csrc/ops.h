// Device entry points registered by bindings.cpp / bindings_cuda.cpp. Each one validates its inputs
// (checks.h) and then runs the kernel; schemas are in bindings.cpp.
#pragma once

#include <ATen/core/Tensor.h>

namespace pdgan {
namespace cpu {
at::Tensor adagn_silu_cpu(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                          int64_t num_groups, double eps);
at::Tensor posterior_step_cpu(const at::Tensor& x0, const at::Tensor& xt, double c1, double c2, double sigma,
                              const c10::optional<at::Tensor>& noise, c10::optional<int64_t> seed,
                              int64_t offset);
void philox_normal_cpu_(at::Tensor& out, int64_t seed, int64_t offset);
void philox_normal_rows_cpu_(at::Tensor& out, const at::Tensor& seeds, int64_t offset);
at::Tensor winograd_conv3x3_cpu(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                                const c10::optional<at::Tensor>& residual, double alpha, int64_t tile_block);
at::Tensor winograd_conv3x3_bf16_cpu(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                                     const c10::optional<at::Tensor>& residual, double alpha, int64_t tile_block);
bool winograd_bf16_supported();
}  // namespace cpu

namespace cuda {
at::Tensor adagn_silu_cuda(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                           int64_t num_groups, double eps);
at::Tensor posterior_step_cuda(const at::Tensor& x0, const at::Tensor& xt, double c1, double c2, double sigma,
                               const c10::optional<at::Tensor>& noise, c10::optional<int64_t> seed,
                               int64_t offset);
void philox_normal_cuda_(at::Tensor& out, int64_t seed, int64_t offset);
void philox_normal_rows_cuda_(at::Tensor& out, const at::Tensor& seeds, int64_t offset);
}  // namespace cuda
}  // namespace pdgan
