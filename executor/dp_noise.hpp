// Differential privacy on an update, executed: the Gaussian mechanism (Dwork and Roth, "The
// Algorithmic Foundations of Differential Privacy", 2014, sec. 3.5.3 and Theorem A.1): clip the
// update to L2 norm C, add N(0, (sigma C)^2) to every coordinate, from a seeded stream. With the
// clip, one site's update moves the sum by at most C in L2 norm (the sensitivity), so the noise
// of standard deviation sigma C gives (epsilon, delta)-DP per application.
//
// defines: GaussianMechanism, DpReport, classic_gaussian_epsilon, rdp_gaussian_epsilon,
//   apply_gaussian_mechanism
#pragma once

#include <cstddef>
#include <cstdint>

namespace strata::exec {

struct GaussianMechanism {
  double clip_norm = 1.0;         // C > 0, the L2 norm every update is clipped to
  double noise_multiplier = 1.0;  // sigma > 0: the noise's standard deviation is sigma C
  double delta = 1e-5;            // delta in (0, 1), for the reported epsilon
  std::uint64_t seed = 0;         // the noise stream (counter_prg.hpp): same seed, same noise
};

// What one application did and what it guarantees.
struct DpReport {
  double norm_before = 0;  // the update's L2 norm as given
  double norm_after_clip = 0;
  double noise_std = 0;  // sigma C
  double sigma = 0, clip_norm = 0, delta = 0;
  // The classic bound (classic_gaussian_epsilon) and whether it holds: Theorem A.1 needs
  // epsilon < 1 (sigma at least sqrt(2 ln(1.25 / delta))); otherwise use rdp_epsilon.
  double classic_epsilon = 0;
  bool classic_bound_holds = false;
  double rdp_epsilon = 0;  // rdp_gaussian_epsilon(sigma, delta, 1)
};

// Dwork and Roth Theorem A.1: sigma >= sqrt(2 ln(1.25 / delta)) / epsilon gives (epsilon, delta)
// for epsilon in (0, 1); returned: epsilon = sqrt(2 ln(1.25 / delta)) / sigma (valid when < 1).
double classic_gaussian_epsilon(double sigma, double delta);

// The Renyi-DP accountant (Mironov, "Renyi Differential Privacy", CSF 2017): the Gaussian
// mechanism of sensitivity C and noise sigma C is (alpha, alpha / (2 sigma^2))-RDP (Prop. 7);
// `rounds` of them compose to (alpha, rounds alpha / (2 sigma^2)) (Prop. 1), which converts to
// (eps + ln(1 / delta) / (alpha - 1), delta)-DP (Prop. 3). Minimised over alpha > 1 in closed
// form: epsilon = rounds / (2 sigma^2) + sqrt(2 rounds ln(1 / delta)) / sigma. Without
// subsampling (every site takes part in every round), valid for any sigma.
double rdp_gaussian_epsilon(double sigma, double delta, int rounds);

// Clips `x` (n fp32 values, in place) to L2 norm clip_norm (scaled by C / norm when the norm is
// above C; the result's norm, summed in double, is at most C), then adds sigma C z_k to element
// k, z_k standard normal by Box-Muller on the stream's words 2k and 2k + 1 (deterministic for a
// seed, element by element, whatever n). Throws ConfigError for C <= 0, sigma <= 0 or delta
// outside (0, 1), naming the field and value.
DpReport apply_gaussian_mechanism(float* x, std::size_t n, const GaussianMechanism& mechanism);

}  // namespace strata::exec
