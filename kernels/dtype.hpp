// The kernels' 16-bit storage type: bfloat16 (1 sign, 8 exponent, 7 mantissa bits: fp32's range
// at 8 bits of precision), as mixed-precision training stores activations, weights and their
// gradients. Ops on bf16 tensors compute in fp32 and round once per stored element (fp32
// accumulation): every bf16 op of kernels/ reads its inputs widened to fp32, runs the fp32
// arithmetic and rounds each output to nearest even -- on the CPU literally so (the fp32 op on
// widened copies), on CUDA in the kernels' registers -- so the two backends differ only where
// their fp32 results do, by at most one bf16 rounding step. Layout-compatible with CUDA's
// __nv_bfloat16. This header never includes CUDA headers.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace strata::kernels {

struct bf16 {
  std::uint16_t bits = 0;
};
static_assert(sizeof(bf16) == 2, "bf16 is two bytes");

// fp32 -> bf16, rounded to nearest, ties to even (as __float2bfloat16_rn); NaN stays a (quiet)
// NaN of the same sign; values beyond bf16's largest finite round to infinity.
inline bf16 to_bf16(float f) {
  std::uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<std::uint16_t>(u >> 16)};
}

// bf16 -> fp32: exact.
inline float to_float(bf16 h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h.bits) << 16;
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Host arrays: widened, and rounded back.
inline std::vector<float> widen(const bf16* p, std::int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n > 0 ? n : 0));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = to_float(p[i]);
  return out;
}
inline void narrow(bf16* out, const float* p, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = to_bf16(p[i]);
}

}  // namespace strata::kernels
