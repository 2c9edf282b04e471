// Content hashes for provenance (hashes of input specs in plan/report/trace files).
#pragma once

#include <cstdint>
#include <string>

namespace strata {

// FNV-1a, 64-bit: not cryptographic, only an identity for inputs. Hex, 16 characters.
// FNV-1a, 64 bits: stable across platforms and runs (spec hashes, seeds derived from names).
std::uint64_t fnv1a64(const std::string& data);
std::string fnv1a64_hex(const std::string& data);
// SplitMix64's output function: a stable 64-bit mix of a counter (seeded initialisation and
// data order in the executor, the PyTorch reference reimplements it).
std::uint64_t splitmix64(std::uint64_t x);

}  // namespace strata
