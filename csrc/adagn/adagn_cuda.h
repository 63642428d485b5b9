// C ABI of the fused AdaGN + SiLU CUDA launcher (adagn_cuda.cu). Torch-free, so the .cu compiles with
// a bare `nvcc -c`; csrc/bindings_cuda.cpp validates tensors and calls it on torch's current stream.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../dtypes.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const void* x;        // (N, C, H, W) storage, NCHW-contiguous or channels_last (NHWC in memory)
  void* y;              // same shape, dtype and memory format as x
  const float* gamma;   // (N, C) float32, unit column stride, rows gamma_stride apart
  const float* beta;    // (N, C) float32, unit column stride, rows beta_stride apart
  int64_t N, C, HW, G;  // HW = H * W; G divides C
  float eps;
  int channels_last;    // 0: NCHW, 1: NHWC
  int dtype;            // PdganDType
  void* workspace;      // pdgan_adagn_cuda_workspace_bytes(params) bytes, 16-byte aligned (or NULL if 0)
  // row strides of gamma / beta in elements, e.g. 2 * C for the two halves of the style Linear's output
  // (read in place: no copy per call); 0 means C (contiguous rows)
  int64_t gamma_stride, beta_stride;
} PdganAdaGNParams;

// Scratch bytes the launch needs (0 when one (n, group) fits one thread block).
size_t pdgan_adagn_cuda_workspace_bytes(const PdganAdaGNParams* p);

// The launch plan (tests, benchmarks): info[0..6] = {fused (1) or split (0), elements per pack, groups per
// block run of the wide channels_last layout (else 1), slab pieces per group of the split plan, groups per pack
// (1, or 2 for channels_last 16-byte packs of two groups), packs per thread of the fused kernels (0 when split),
// the wide channels_last layout (1) or not (0)}. Returns NULL, or a static message for parameters the launcher
// refuses.
const char* pdgan_adagn_cuda_plan(const PdganAdaGNParams* p, int64_t* info);

// Enqueues the kernels on `stream` (a cudaStream_t). Returns NULL on success, else a static message.
const char* pdgan_adagn_cuda(const PdganAdaGNParams* p, void* stream);

#ifdef __cplusplus
}
#endif
