// Human-readable units for reports and errors.
#include "common/units.hpp"

#include <cmath>
#include <cstdio>

namespace strata::units {

std::string fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

std::string format_bytes(double bytes) {
  const double a = std::fabs(bytes);
  if (a >= kGiB) return fixed(bytes / kGiB, 2) + " GiB";
  if (a >= kMiB) return fixed(bytes / kMiB, 2) + " MiB";
  if (a >= kKiB) return fixed(bytes / kKiB, 2) + " KiB";
  return fixed(bytes, 0) + " B";
}

std::string format_count(double n) {
  const double a = std::fabs(n);
  if (a >= 1e12) return fixed(n / 1e12, 2) + " T";
  if (a >= 1e9) return fixed(n / 1e9, 2) + " B";
  if (a >= 1e6) return fixed(n / 1e6, 2) + " M";
  if (a >= 1e3) return fixed(n / 1e3, 2) + " K";
  return fixed(n, 0);
}

std::string format_flops(double flops) {
  static const char* kPrefix[] = {"", "K", "M", "G", "T", "P", "E", "Z", "Y"};
  int i = 0;
  double v = flops;
  while (std::fabs(v) >= 1000.0 && i < 8) {
    v /= 1000.0;
    ++i;
  }
  return fixed(v, 2) + " " + kPrefix[i] + "FLOP";
}

}  // namespace strata::units
