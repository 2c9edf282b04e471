// Argument checks shared by the ops' dispatch files (ops.cpp, model_ops.cpp): a failed check
// throws std::invalid_argument "<op>: <what>".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace strata::kernels::detail {

inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + what);
}

// Every pointer must be set unless the tensor is empty (count == 0).
inline void require_pointers(const char* op, std::int64_t count,
                             std::initializer_list<const void*> ptrs) {
  if (count == 0) return;
  for (const void* p : ptrs) require(p != nullptr, op, "null tensor pointer with a non-empty shape");
}

}  // namespace strata::kernels::detail
