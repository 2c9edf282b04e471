// The five parallel dimensions and their order: the vocabulary shared by the specs, the rank
// grid and the Plan's programs (which must not need the specs themselves).
#pragma once

#include <array>
#include <string>

namespace strata::strategies {

enum class Dim { kTp = 0, kCp = 1, kEp = 2, kDp = 3, kPp = 4 };
inline constexpr int kNumDims = 5;
const char* dim_name(Dim d);
// "tp-cp-ep-dp-pp": the order, first (fastest-varying) dimension first.
std::string order_string(const std::array<Dim, kNumDims>& order);

}  // namespace strata::strategies
