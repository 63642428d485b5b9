// C ABI of the fused posterior-step CUDA launcher (posterior_cuda.cu). Torch-free.
//   out = c1 * x0 + c2 * xt + sigma * z,   z = noise[i], Philox normal (offset + i) (../philox.h), or 0.
// With x0 == xt == NULL the x terms are dropped: out = sigma * z (philox_normal_ uses sigma = 1).
#pragma once

#include <stdint.h>

#include "../dtypes.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const void* x0;     // numel elements, contiguous, or NULL (no x terms)
  const void* xt;     // like x0
  const void* noise;  // like x0, or NULL
  void* out;          // numel elements, contiguous
  int64_t numel;
  float c1, c2, sigma;
  int dtype;          // PdganDType, shared by all tensors
  int use_philox;     // 1: z from the Philox stream (noise must be NULL)
  uint64_t seed;      // Philox key
  uint64_t offset;    // stream position of element 0
} PdganPosteriorParams;

const char* pdgan_posterior_cuda(const PdganPosteriorParams* p, void* stream);

// out[r * cols + j] = Philox normal (offset + j) of key seeds[r], r < rows: one stream per row (image).
// The seeds are read on the device, so a captured CUDA graph replays with the seeds copied in later.
typedef struct {
  void* out;             // rows * cols elements, contiguous
  const int64_t* seeds;  // rows keys, device memory
  int64_t rows, cols;
  int dtype;             // PdganDType of out
  uint64_t offset;       // stream position of column 0
} PdganPhiloxRowsParams;

const char* pdgan_philox_rows_cuda(const PdganPhiloxRowsParams* p, void* stream);

#ifdef __cplusplus
}
#endif
