// Scalar helpers for the CPU kernels, written so that GCC/Clang auto-vectorise the loops that use
// them at -O3 (no branches, no libm calls, no c10 types in the hot loops).
//
//   PDGAN_CPU_CLONES   compiles a hot function three times (x86-64-v4 = AVX-512 BW/DQ/VL, x86-64-v3 =
//                      AVX2 + FMA + F16C, baseline) on x86-64 GCC >= 12 and picks one at load time
//                      (ifunc); elsewhere (aarch64, clang, older GCC) it is a no-op.
//   Float32/Float16/BFloat16   storage tags: load(bits) -> float, store(float) -> bits. Rounding is
//                      round-to-nearest-even, bit-identical to c10::Half / c10::BFloat16.
//   exp_approx, silu   Cephes-style expf (max rel. error ~1 ulp on [-87, 88]) and x * sigmoid(x), with
//                      a Newton reciprocal instead of a division (vdivps dominated the loop).
// Build with -fno-trapping-math (setup.py does) or GCC will not if-convert the selects and the loops
// stay scalar.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && defined(__linux__)
#define PDGAN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PDGAN_CPU_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PDGAN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PDGAN_ALWAYS_INLINE inline
#endif

namespace pdgan {
namespace cpu {

PDGAN_ALWAYS_INLINE float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

PDGAN_ALWAYS_INLINE uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

struct Float32 {
  using storage = float;
  static PDGAN_ALWAYS_INLINE float load(float v) { return v; }
  static PDGAN_ALWAYS_INLINE float store(float f) { return f; }
};

struct BFloat16 {
  using storage = uint16_t;
  static PDGAN_ALWAYS_INLINE float load(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }
  static PDGAN_ALWAYS_INLINE uint16_t store(float f) {
    const uint32_t u = f32_to_bits(f);
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    return static_cast<uint16_t>(f != f ? 0x7FC0u : rounded);  // NaN stays a quiet NaN
  }
};

// IEEE half <-> float, the branch-free algorithm of the FP16 library (also used by c10::Half).
struct Float16 {
  using storage = uint16_t;
  static PDGAN_ALWAYS_INLINE float load(uint16_t h) {
    const uint32_t w = static_cast<uint32_t>(h) << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = bits_to_f32((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = bits_to_f32((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t magnitude = two_w < (1u << 27) ? f32_to_bits(denormalized) : f32_to_bits(normalized);
    return bits_to_f32(sign | magnitude);
  }
  static PDGAN_ALWAYS_INLINE uint16_t store(float f) {
    const float abs_f = bits_to_f32(f32_to_bits(f) & 0x7FFFFFFFu);
    float base = (abs_f * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f32_to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    bias = bias < 0x71000000u ? 0x71000000u : bias;
    base = bits_to_f32((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_to_bits(base);
    const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
    return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
  }
};

// exp(x) for float, branch-free: 2^n * p(r), n = round(x / ln2), r = x - n ln2 (Cody-Waite split).
PDGAN_ALWAYS_INLINE float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const uint32_t scale = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  return e * bits_to_f32(scale);
}

// 1 / d for d in [1, 2^90]: bit-trick seed (rel. error < 1/8) and three Newton steps (< 1 ulp more).
// Vector division is the slowest instruction in the loop; this keeps it out.
PDGAN_ALWAYS_INLINE float reciprocal(float d) {
  float r = bits_to_f32(0x7EF311C3u - f32_to_bits(d));
  r = r * (2.0f - d * r);
  r = r * (2.0f - d * r);
  r = r * (2.0f - d * r);
  return r;
}

// silu(v) = v * sigmoid(v); for v < -60 the result is below 1e-24 in magnitude (true value ~v e^v).
PDGAN_ALWAYS_INLINE float silu(float v) {
  const float neg = v < -60.0f ? 60.0f : -v;
  return v * reciprocal(1.0f + exp_approx(neg));
}

}  // namespace cpu
}  // namespace pdgan
