// Units and their human-readable formatting. Internally Strata uses SI base units: bytes,
// seconds, FLOPs, bytes/s. Names carry units (_bytes, _s, _flops, _Bps).
#pragma once

#include <cstdint>
#include <string>

namespace strata::units {

inline constexpr double kKiB = 1024.0;
inline constexpr double kMiB = 1024.0 * 1024.0;
inline constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
inline constexpr double kGB = 1e9;   // vendors' "GB/s" and "GB" of bandwidth are decimal
inline constexpr double kTera = 1e12;

// "1.50 GiB", "320.00 MiB", "12 B".
std::string format_bytes(double bytes);
// "4.45e+21 FLOPs" style with an SI prefix: "4.45 ZFLOP".
std::string format_flops(double flops);
// A count with an SI-style suffix: "218.50 K", "6.74 B" (billions), "12".
std::string format_count(double n);
// Fixed-point with `digits` decimals, no locale.
std::string fixed(double value, int digits);

}  // namespace strata::units
