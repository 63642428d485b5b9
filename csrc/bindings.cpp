// pdgan_infer._C: registers the `pdgan` operator library with the torch dispatcher.
//   torch.ops.pdgan.adagn_silu(x, gamma, beta, num_groups, eps) -> y
//   torch.ops.pdgan.posterior_step(x0, xt, c1, c2, sigma, noise, seed, offset) -> out
//   torch.ops.pdgan.philox_normal_(out, seed, offset)          (fills out in place)
//   torch.ops.pdgan.philox_normal_rows_(out, seeds, offset)    (row n of out from seeds[n]; in place)
//   torch.ops.pdgan.winograd_conv3x3(x, u, bias, residual, alpha, tile_block) -> y   (CPU only, float32)
//   torch.ops.pdgan.winograd_conv3x3_bf16(x, u, bias, residual, alpha, tile_block) -> y  (CPU with AVX512-BF16)
//   torch.ops.pdgan.winograd_bf16_supported() -> bool   (whether this CPU and build run the one above)
// CPU kernels are registered here, CUDA kernels in bindings_cuda.cpp (CUDA builds only). Fake (meta)
// kernels for torch.compile / export are registered from Python (pdgan_infer/kernels/native.py).
// The Python module itself is empty apart from build facts (WITH_CUDA, CUDA_ARCH_LIST, SOURCE_DIGEST, OPENMP:
// whether at::parallel_for runs the CPU kernels on torch's threads); importing
// it runs the registrations.
#include <Python.h>
#include <torch/library.h>

#include "ops.h"

TORCH_LIBRARY(pdgan, m) {
  m.def("adagn_silu(Tensor x, Tensor gamma, Tensor beta, int num_groups, float eps=1e-06) -> Tensor");
  m.def("posterior_step(Tensor x0, Tensor xt, float c1, float c2, float sigma, Tensor? noise=None, "
        "int? seed=None, int offset=0) -> Tensor");
  m.def("philox_normal_(Tensor(a!) out, int seed, int offset=0) -> ()");
  m.def("philox_normal_rows_(Tensor(a!) out, Tensor seeds, int offset=0) -> ()");
  m.def("winograd_conv3x3(Tensor x, Tensor u, Tensor bias, Tensor? residual=None, float alpha=1.0, "
        "int tile_block=0) -> Tensor");
  m.def("winograd_conv3x3_bf16(Tensor x, Tensor u, Tensor bias, Tensor? residual=None, float alpha=1.0, "
        "int tile_block=0) -> Tensor");
  m.def("winograd_bf16_supported() -> bool", &pdgan::cpu::winograd_bf16_supported);
}

TORCH_LIBRARY_IMPL(pdgan, CPU, m) {
  m.impl("adagn_silu", &pdgan::cpu::adagn_silu_cpu);
  m.impl("posterior_step", &pdgan::cpu::posterior_step_cpu);
  m.impl("philox_normal_", &pdgan::cpu::philox_normal_cpu_);
  m.impl("philox_normal_rows_", &pdgan::cpu::philox_normal_rows_cpu_);
  m.impl("winograd_conv3x3", &pdgan::cpu::winograd_conv3x3_cpu);
  m.impl("winograd_conv3x3_bf16", &pdgan::cpu::winograd_conv3x3_bf16_cpu);
}

// setup.py passes the architectures as bare tokens to the C++ compiler only (-DPDGAN_CUDA_ARCH_LIST=8.0,9.0+PTX;
// nvcc would split the value at the comma): stringify them.
#define PDGAN_STRINGIFY_(...) #__VA_ARGS__
#define PDGAN_STRINGIFY(...) PDGAN_STRINGIFY_(__VA_ARGS__)
#ifdef PDGAN_CUDA_ARCH_LIST
#define PDGAN_CUDA_ARCH_STRING PDGAN_STRINGIFY(PDGAN_CUDA_ARCH_LIST)
#else
#define PDGAN_CUDA_ARCH_STRING ""
#endif
// setup.py's digest of the compiled sources (pdgan_infer/kernels/_sources.py): native.py compares it with
// the checkout's csrc/ and reports a stale build.
#ifdef PDGAN_SOURCE_DIGEST
#define PDGAN_SOURCE_DIGEST_STRING PDGAN_STRINGIFY(PDGAN_SOURCE_DIGEST)
#else
#define PDGAN_SOURCE_DIGEST_STRING ""
#endif

PyMODINIT_FUNC PyInit__C(void) {  // PyMODINIT_FUNC is extern "C" and exported
  static PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C",
      "pdgan native kernels; the ops live in torch.ops.pdgan (see pdgan_infer/kernels/native.py).", -1,
      nullptr, nullptr, nullptr, nullptr, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef PDGAN_WITH_CUDA
  const int with_cuda = 1;
#else
  const int with_cuda = 0;
#endif
#ifdef _OPENMP
  const int openmp = 1;
#else
  const int openmp = 0;
#endif
  if (PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) < 0 ||
      PyModule_AddStringConstant(module, "CUDA_ARCH_LIST", PDGAN_CUDA_ARCH_STRING) < 0 ||
      PyModule_AddStringConstant(module, "SOURCE_DIGEST", PDGAN_SOURCE_DIGEST_STRING) < 0 ||
      PyModule_AddIntConstant(module, "OPENMP", openmp) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
