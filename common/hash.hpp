// Content hashes for provenance (hashes of input specs in plan/report/trace files).
#pragma once

#include <cstdint>
#include <string>

namespace strata {

// FNV-1a, 64-bit: not cryptographic, only an identity for inputs. Hex, 16 characters.
std::string fnv1a64_hex(const std::string& data);

}  // namespace strata
