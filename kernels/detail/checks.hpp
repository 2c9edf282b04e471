// Argument checks shared by the ops' dispatch files (ops.cpp, model_ops.cpp, parallel_ops.cpp,
// elementwise_ops.cpp): a failed size or pointer check throws std::invalid_argument
// "<op>: <what>"; a bad token or target value std::out_of_range.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/backend.hpp"

namespace strata::kernels::detail {

inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + what);
}

// Every pointer must be set unless the tensor is empty (count == 0).
inline void require_pointers(const char* op, std::int64_t count,
                             std::initializer_list<const void*> ptrs) {
  if (count == 0) return;
  for (const void* p : ptrs)
    require(p != nullptr, op, "null tensor pointer with a non-empty shape");
}

// 0 <= value (or 1 <= value when !allow_zero), and below 2^31 so that int indexing is safe later.
inline void check_size(const char* op, const char* name, std::int64_t value, bool allow_zero) {
  const std::int64_t low = allow_zero ? 0 : 1;
  require(value >= low && value <= std::numeric_limits<int>::max(), op,
          std::string(name) + " = " + std::to_string(value) + " must be in [" +
              std::to_string(low) + ", 2^31)");
}

inline void check_finite(const char* op, const char* name, float value) {
  require(std::isfinite(value), op,
          std::string(name) + " = " + std::to_string(value) + " must be finite");
}

inline void check_positive_finite(const char* op, const char* name, float value) {
  require(std::isfinite(value) && value > 0.0f, op,
          std::string(name) + " = " + std::to_string(value) + " must be positive and finite");
}

// Token or target values must lie in [0, limit). Only checked on the CPU, where the values are
// readable. `limit_name` names the bound in the message ("vocab").
inline void check_indices(const Stream& stream, const char* op, const char* name,
                          const std::int32_t* values, std::int64_t count, std::int64_t limit,
                          const char* limit_name = "vocab") {
  if (stream.backend() != Backend::kCpu) return;
  for (std::int64_t i = 0; i < count; ++i) {
    if (values[i] < 0 || values[i] >= limit) {
      throw std::out_of_range(std::string(op) + ": " + name + "[" + std::to_string(i) +
                              "] = " + std::to_string(values[i]) + " is outside [0, " + limit_name +
                              " = " + std::to_string(limit) + ")");
    }
  }
}

// Token or target values must not be negative (an op on one vocabulary shard cannot see the
// vocabulary's size; values at or beyond it are the caller's error and fall outside every shard).
// Only checked on the CPU.
inline void check_nonnegative_indices(const Stream& stream, const char* op, const char* name,
                                      const std::int32_t* values, std::int64_t count) {
  if (stream.backend() != Backend::kCpu) return;
  for (std::int64_t i = 0; i < count; ++i) {
    if (values[i] < 0) {
      throw std::out_of_range(std::string(op) + ": " + name + "[" + std::to_string(i) +
                              "] = " + std::to_string(values[i]) + " is negative");
    }
  }
}

// STRATA_CUDA_ONLY(code): `code` in a build with CUDA, nothing without (where no CUDA stream
// can exist, so the CPU branch is the only one taken).
#if STRATA_HAVE_CUDA
#define STRATA_CUDA_ONLY(...) __VA_ARGS__
#else
#define STRATA_CUDA_ONLY(...)
#endif

}  // namespace strata::kernels::detail
