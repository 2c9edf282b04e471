// A counter-mode pseudo-random stream for the privacy code (secure_aggregation.hpp, dp_noise.hpp):
// word k of the stream with seed s is SplitMix64's finaliser applied to s + (k + 1) gamma, which is
// exactly the k-th output of SplitMix64 (Steele, Lea and Flood, OOPSLA 2014) started at s, with
// random access. Fast and statistically good; NOT cryptographic (its state is recoverable from
// its outputs): a testbed stand-in for the AES-CTR or ChaCha stream a real deployment uses.
#pragma once

#include <cstdint>

namespace strata::exec {

inline constexpr std::uint64_t kSplitMix64Gamma = 0x9e3779b97f4a7c15ULL;

// SplitMix64's output function (a bijection of 64-bit words).
constexpr std::uint64_t splitmix64_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Word `index` of the stream seeded with `seed` (arithmetic mod 2^64).
constexpr std::uint64_t prg_word(std::uint64_t seed, std::uint64_t index) {
  return splitmix64_mix(seed + (index + 1) * kSplitMix64Gamma);
}

// A uniform double in (0, 1]: the word's top 53 bits, plus one, times 2^-53 (never 0, so that
// log() of it is finite).
constexpr double prg_unit(std::uint64_t seed, std::uint64_t index) {
  return static_cast<double>((prg_word(seed, index) >> 11) + 1) * 0x1.0p-53;
}

}  // namespace strata::exec
