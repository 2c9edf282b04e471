// Test helpers for tests/kernels: straightforward double-precision references of the ops,
// central finite differences, tolerance checks that name the worst element, and the reason to
// skip CUDA tests. Deliberately plain loops: they are the definition the kernels are held to.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.hpp"

namespace strata::kernels::testing {

inline double gelu_reference(double x) {
  const double scale = std::sqrt(2.0 / std::numbers::pi);
  return 0.5 * x * (1.0 + std::tanh(scale * (x + 0.044715 * x * x * x)));
}

struct LayerNormReference {
  std::vector<double> y;     // (N, C)
  std::vector<double> mean;  // (N)
  std::vector<double> rstd;  // (N)
};

// x (N, C), gamma (C), beta (C), all promoted to double.
inline LayerNormReference layer_norm_reference(const std::vector<double>& x,
                                               const std::vector<double>& gamma,
                                               const std::vector<double>& beta, std::int64_t n,
                                               std::int64_t c, double eps) {
  LayerNormReference out{std::vector<double>(x.size()), std::vector<double>(n),
                         std::vector<double>(n)};
  for (std::int64_t i = 0; i < n; ++i) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < c; ++j) sum += x[i * c + j];
    const double m = sum / c;
    double sq = 0.0;
    for (std::int64_t j = 0; j < c; ++j) sq += (x[i * c + j] - m) * (x[i * c + j] - m);
    const double r = 1.0 / std::sqrt(sq / c + eps);
    for (std::int64_t j = 0; j < c; ++j) {
      out.y[i * c + j] = (x[i * c + j] - m) * r * gamma[j] + beta[j];
    }
    out.mean[i] = m;
    out.rstd[i] = r;
  }
  return out;
}

// d loss / d v[k] for every k, by central differences with step h, restoring v afterwards.
inline std::vector<double> central_differences(std::vector<double>& v,
                                               const std::function<double()>& loss,
                                               double h = 1e-6) {
  std::vector<double> grad(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) {
    const double saved = v[k];
    v[k] = saved + h;
    const double up = loss();
    v[k] = saved - h;
    const double down = loss();
    v[k] = saved;
    grad[k] = (up - down) / (2.0 * h);
  }
  return grad;
}

inline std::vector<float> random_floats(std::size_t size, std::uint32_t seed, float mean = 0.0f,
                                        float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(size);
  for (float& x : v) x = normal(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Expects |got - want| <= atol + rtol * |want| everywhere; reports the count and worst element.
template <typename Got, typename Want>
void expect_close(const std::vector<Got>& got, const std::vector<Want>& want, double atol,
                  double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t bad = 0;
  std::size_t worst = 0;
  double worst_excess = -1.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    const double w = static_cast<double>(want[i]);
    const double limit = atol + rtol * std::fabs(w);
    const double excess = std::isfinite(g) ? std::fabs(g - w) / limit : INFINITY;
    if (excess > 1.0) ++bad;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements outside atol "
                     << atol << " + rtol " << rtol << "; worst [" << worst << "] got "
                     << static_cast<double>(got[worst]) << " want "
                     << static_cast<double>(want[worst]);
}

// Empty when CUDA tests can run; otherwise why not (build without CUDA, no driver, no GPU).
inline std::string cuda_skip_reason() {
  if (!built_with_cuda()) return "built without CUDA (STRATA_WITH_CUDA=OFF)";
  if (cuda_device_count() == 0) return cuda_unavailable_reason();
  return "";
}

// True when the environment asks for CUDA tests to fail rather than skip (STRATA_REQUIRE_CUDA=1).
inline bool cuda_required() {
  const char* value = std::getenv("STRATA_REQUIRE_CUDA");
  return value != nullptr && std::string(value) != "" && std::string(value) != "0";
}

}  // namespace strata::kernels::testing

// Skips the current test with "no CUDA device: <why>" when CUDA tests cannot run here. On a GPU
// machine set STRATA_REQUIRE_CUDA=1 so that the same condition fails the test instead: a skip
// there (old driver, hidden device) must not pass for a verification.
#define STRATA_SKIP_WITHOUT_CUDA()                                                              \
  do {                                                                                          \
    if (const std::string why = ::strata::kernels::testing::cuda_skip_reason(); !why.empty()) { \
      if (::strata::kernels::testing::cuda_required()) {                                        \
        FAIL() << "STRATA_REQUIRE_CUDA is set but there is no CUDA device: " << why;            \
      }                                                                                         \
      GTEST_SKIP() << "no CUDA device: " << why;                                                \
    }                                                                                           \
  } while (0)
