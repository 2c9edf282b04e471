// The Gaussian mechanism (executor/dp_noise.hpp): clipping, the noise's distribution against
// sigma C with tolerances from the sample size, determinism, the reported epsilons.
#include "executor/dp_noise.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace strata::exec {
namespace {

double norm(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += double{v} * v;
  return std::sqrt(s);
}

TEST(DpNoise, ClippingScalesToTheNormAndKeepsTheDirection) {
  const GaussianMechanism m{1.0, 0.5, 1e-5, 11};
  std::vector<float> x(1001);
  for (std::size_t k = 0; k < x.size(); ++k) x[k] = std::sin(static_cast<float>(k)) * 3.0f;
  std::vector<float> zero(x.size(), 0.0f);
  std::vector<float> noisy = x;
  const DpReport r = apply_gaussian_mechanism(noisy.data(), noisy.size(), m);
  EXPECT_NEAR(r.norm_before, norm(x), 1e-9 * norm(x));
  EXPECT_LE(r.norm_after_clip, 1.0);
  EXPECT_GT(r.norm_after_clip, 1.0 - 1e-6);
  // The same seed on zeros gives the noise alone: noisy - noise = x C / |x|.
  const DpReport z = apply_gaussian_mechanism(zero.data(), zero.size(), m);
  EXPECT_EQ(z.norm_before, 0.0);
  for (std::size_t k = 0; k < x.size(); ++k) {
    ASSERT_NEAR(noisy[k] - zero[k], x[k] / r.norm_before, 1e-5) << k;
  }
  // An update within the norm is not scaled.
  std::vector<float> small = {0.3f, -0.4f};
  const DpReport s = apply_gaussian_mechanism(small.data(), 2, m);
  EXPECT_EQ(s.norm_after_clip, s.norm_before);
}

TEST(DpNoise, NoiseHasStandardDeviationSigmaTimesClipNorm) {
  const std::size_t n = 200000;
  const GaussianMechanism m{2.0, 1.5, 1e-5, 2026};
  std::vector<float> x(n, 0.0f);
  const DpReport r = apply_gaussian_mechanism(x.data(), n, m);
  EXPECT_EQ(r.noise_std, 3.0);
  double sum = 0, sq = 0;
  std::size_t within_one = 0;
  for (float v : x) {
    sum += v, sq += double{v} * v;
    within_one += std::fabs(v) <= 3.0f;
  }
  const double dn = static_cast<double>(n), mean = sum / dn;
  const double sd = std::sqrt(sq / dn - mean * mean);
  // 5 standard errors: the mean's is s / sqrt(n) (0.0067), the sample standard deviation's
  // about s / sqrt(2 n) (0.0047), the fraction within one s's sqrt(p (1 - p) / n) (0.001).
  EXPECT_NEAR(mean, 0.0, 5 * 3.0 / std::sqrt(dn));
  EXPECT_NEAR(sd, 3.0, 5 * 3.0 / std::sqrt(2 * dn));
  const double p = 0.682689492;
  EXPECT_NEAR(static_cast<double>(within_one) / dn, p, 5 * std::sqrt(p * (1 - p) / dn));
}

TEST(DpNoise, TheSameSeedGivesTheSameNoise) {
  const GaussianMechanism m{1.0, 1.0, 1e-5, 77};
  std::vector<float> a(100, 0.01f), b = a, c = a;
  apply_gaussian_mechanism(a.data(), a.size(), m);
  apply_gaussian_mechanism(b.data(), b.size(), m);
  apply_gaussian_mechanism(c.data(), c.size(), GaussianMechanism{1.0, 1.0, 1e-5, 78});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Element by element: a prefix gets the same noise.
  std::vector<float> d(10, 0.01f);
  apply_gaussian_mechanism(d.data(), d.size(), m);
  EXPECT_EQ(d, std::vector<float>(a.begin(), a.begin() + 10));
}

TEST(DpNoise, ReportsEpsilonByTheClassicBoundAndTheRdpAccountant) {
  // Classic: sigma = sqrt(2 ln(1.25 / delta)) / epsilon; at delta 1e-5 the numerator is 4.8448.
  EXPECT_NEAR(classic_gaussian_epsilon(9.6896, 1e-5), 0.5, 1e-4);
  std::vector<float> x(4, 1.0f);
  const DpReport holds = apply_gaussian_mechanism(x.data(), 4, GaussianMechanism{1, 9.69, 1e-5, 0});
  EXPECT_TRUE(holds.classic_bound_holds);
  EXPECT_EQ(holds.sigma, 9.69);
  EXPECT_EQ(holds.clip_norm, 1.0);
  EXPECT_EQ(holds.delta, 1e-5);
  const DpReport fails = apply_gaussian_mechanism(x.data(), 4, GaussianMechanism{1, 1.0, 1e-5, 0});
  EXPECT_FALSE(fails.classic_bound_holds);
  EXPECT_NEAR(fails.classic_epsilon, 4.8448, 1e-4);

  // RDP: the closed form is the minimum over alpha of rounds alpha / (2 sigma^2) +
  // ln(1 / delta) / (alpha - 1), found here by a fine scan.
  for (double sigma : {0.8, 1.0, 4.0}) {
    for (int rounds : {1, 10, 100}) {
      double best = 1e300;
      for (double alpha = 1.0001; alpha < 2000; alpha *= 1.0001) {
        best = std::min(best, rounds * alpha / (2 * sigma * sigma) + std::log(1e5) / (alpha - 1));
      }
      EXPECT_NEAR(rdp_gaussian_epsilon(sigma, 1e-5, rounds), best, 1e-6 * best)
          << sigma << " " << rounds;
    }
  }
  EXPECT_EQ(fails.rdp_epsilon, rdp_gaussian_epsilon(1.0, 1e-5, 1));
}

TEST(DpNoise, BadParametersAreErrorsNamingTheField) {
  std::vector<float> x(3, 1.0f);
  for (auto [m, field] : {std::pair{GaussianMechanism{0, 1, 1e-5, 0}, "clip_norm = 0"},
                          std::pair{GaussianMechanism{1, -2, 1e-5, 0}, "noise_multiplier = -2"},
                          std::pair{GaussianMechanism{1, 1, 1.5, 0}, "delta = 1.5"}}) {
    try {
      apply_gaussian_mechanism(x.data(), x.size(), m);
      ADD_FAILURE() << field;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace strata::exec
