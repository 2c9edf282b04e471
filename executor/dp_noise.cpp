// The Gaussian mechanism on an update and its accounting (dp_noise.hpp).
#include "executor/dp_noise.hpp"

#include <cmath>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "executor/counter_prg.hpp"

namespace strata::exec {
namespace {

double l2_norm(const float* x, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s);
}

void require(bool ok, const std::string& field, double value, const std::string& rule) {
  if (ok) return;
  std::ostringstream s;
  s << "Gaussian mechanism: " << field << " = " << value << " must be " << rule;
  throw ConfigError(s.str());
}

}  // namespace

double classic_gaussian_epsilon(double sigma, double delta) {
  return std::sqrt(2.0 * std::log(1.25 / delta)) / sigma;
}

double rdp_gaussian_epsilon(double sigma, double delta, int rounds) {
  const double t = rounds;
  return t / (2.0 * sigma * sigma) + std::sqrt(2.0 * t * std::log(1.0 / delta)) / sigma;
}

DpReport apply_gaussian_mechanism(float* x, std::size_t n, const GaussianMechanism& m) {
  require(m.clip_norm > 0 && std::isfinite(m.clip_norm), "clip_norm", m.clip_norm,
          "positive and finite");
  require(m.noise_multiplier > 0 && std::isfinite(m.noise_multiplier), "noise_multiplier",
          m.noise_multiplier, "positive and finite");
  require(m.delta > 0 && m.delta < 1, "delta", m.delta, "in (0, 1)");

  DpReport r;
  r.sigma = m.noise_multiplier;
  r.clip_norm = m.clip_norm;
  r.delta = m.delta;
  r.norm_before = l2_norm(x, n);
  if (r.norm_before > m.clip_norm) {
    // fp32 rounding of the scaled values can leave the norm a few ulps above C: shrink the factor
    // by 2^-22 relative until it is not (once or twice at most).
    double factor = m.clip_norm / r.norm_before;
    const std::vector<float> given(x, x + n);
    for (int attempt = 0; attempt < 8; ++attempt) {
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(given[i] * factor);
      if (l2_norm(x, n) <= m.clip_norm) break;
      factor *= 1.0 - 0x1.0p-22;
    }
  }
  r.norm_after_clip = l2_norm(x, n);
  STRATA_CHECK(r.norm_after_clip <= m.clip_norm, "the clipped norm is at most clip_norm");

  r.noise_std = m.noise_multiplier * m.clip_norm;
  for (std::size_t k = 0; k < n; ++k) {
    const double u1 = prg_unit(m.seed, 2 * k), u2 = prg_unit(m.seed, 2 * k + 1);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    x[k] = static_cast<float>(x[k] + r.noise_std * z);
  }
  r.classic_epsilon = classic_gaussian_epsilon(r.sigma, r.delta);
  r.classic_bound_holds = r.classic_epsilon < 1.0;
  r.rdp_epsilon = rdp_gaussian_epsilon(r.sigma, r.delta, 1);
  return r;
}

}  // namespace strata::exec
