// Philox4x32-10 counter-based generator (Salmon et al., SC'11, "Parallel random numbers: as easy as
// 1, 2, 3") and the Box-Muller transform, shared verbatim by the CPU and CUDA kernels. Torch-free.
//
// Stream definition (pdgan_infer/kernels/native.py documents the same):
//   key     = (lo32(seed), hi32(seed))                      seed taken modulo 2^64
//   normal number p (p = 0, 1, 2, ...) of the stream:
//     block   b = p / 4,  lane = p % 4
//     counter   = (lo32(b), hi32(b), 0, 0)
//     (r0, r1, r2, r3) = Philox4x32-10(counter, key)
//     u_k       = (r_k + 0.5) * 2^-32                       in (0, 1), exact in double
//     z0 = sqrt(-2 ln u0) cos(2 pi u1),   z1 = sqrt(-2 ln u0) sin(2 pi u1)
//     z2 = sqrt(-2 ln u2) cos(2 pi u3),   z3 = sqrt(-2 ln u2) sin(2 pi u3)
//     normal p = z_lane, computed in double and rounded once to float32.
//   A kernel writing n elements with stream offset `offset` uses normals offset .. offset + n - 1 for
//   flat (row-major) elements 0 .. n - 1. The transform runs in double so that CPU (libm) and CUDA
//   (libdevice) results agree after rounding to float32 except in rare last-bit ties.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PDGAN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PDGAN_HOST_DEVICE inline
#endif

namespace pdgan {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;  // round multipliers
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // key schedule (Weyl) increments
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

struct Philox4 {
  uint32_t v[4];
};

struct Normal4 {
  float z[4];
};

PDGAN_HOST_DEVICE void mulhilo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
#if defined(__CUDA_ARCH__)
  *lo = a * b;
  *hi = __umulhi(a, b);
#else
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *lo = static_cast<uint32_t>(product);
  *hi = static_cast<uint32_t>(product >> 32);
#endif
}

// Ten rounds; the key is bumped between rounds (nine bumps), as in Random123's philox4x32_R(10, ...).
PDGAN_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kPhiloxM0, ctr.v[0], &hi0, &lo0);
    mulhilo32(kPhiloxM1, ctr.v[2], &hi1, &lo1);
    const Philox4 next = {{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    ctr = next;
  }
  return ctr;
}

// The four normals of Philox block `block` for key `seed`.
PDGAN_HOST_DEVICE Normal4 philox_normal4(uint64_t seed, uint64_t block) {
  const Philox4 ctr = {{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
  const Philox4 r = philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const double kInv2Pow32 = 2.3283064365386962890625e-10;  // 2^-32
  const double kTwoPi = 6.283185307179586476925286766559;
  Normal4 out;
  for (int pair = 0; pair < 2; ++pair) {
    const double u_radius = (static_cast<double>(r.v[2 * pair]) + 0.5) * kInv2Pow32;
    const double u_angle = (static_cast<double>(r.v[2 * pair + 1]) + 0.5) * kInv2Pow32;
    const double radius = sqrt(-2.0 * log(u_radius));
    const double angle = kTwoPi * u_angle;
    out.z[2 * pair] = static_cast<float>(radius * cos(angle));
    out.z[2 * pair + 1] = static_cast<float>(radius * sin(angle));
  }
  return out;
}

}  // namespace pdgan
