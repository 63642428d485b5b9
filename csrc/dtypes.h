// Element-type codes shared by the torch bindings and the torch-free CUDA launchers.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

enum PdganDType { PDGAN_FLOAT32 = 0, PDGAN_FLOAT16 = 1, PDGAN_BFLOAT16 = 2 };

#ifdef __cplusplus
}
#endif
