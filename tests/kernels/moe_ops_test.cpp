// The MoE ops on the CPU (kernels/moe_ops.hpp): the router against a brute-force double
// reference (ties, normalize on and off) and its backward against central differences of
// sum(topk_w g) + aux_scale L_aux; the aux loss on hand-computed cases; the permutation's order,
// capacity dropping and round trip with the combine; the backwards against the transposed
// forward (<A x, d> = <x, A^T d>) and explicit formulas; the grouped GEMM against the linear
// layer's ops segment by segment; argument checks.
#include "kernels/moe_ops.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::expect_close;
using testing::random_floats;
using testing::to_double;

const Stream kCpu = Stream::cpu();

// --- References ------------------------------------------------------------------------------

std::vector<double> softmax_rows(const std::vector<double>& z, std::int64_t n, std::int64_t e) {
  std::vector<double> p(z.size());
  for (std::int64_t t = 0; t < n; ++t) {
    const double m = *std::max_element(z.begin() + t * e, z.begin() + (t + 1) * e);
    double sum = 0.0;
    for (std::int64_t j = 0; j < e; ++j) sum += std::exp(z[t * e + j] - m);
    for (std::int64_t j = 0; j < e; ++j) p[t * e + j] = std::exp(z[t * e + j] - m) / sum;
  }
  return p;
}

// The k largest logits of each row, largest first, equal logits by lower index: a stable sort.
std::vector<std::int32_t> topk_reference(const std::vector<double>& z, std::int64_t n,
                                         std::int64_t e, std::int64_t k) {
  std::vector<std::int32_t> idx;
  for (std::int64_t t = 0; t < n; ++t) {
    std::vector<std::int32_t> order(e);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::int32_t a, std::int32_t b) { return z[t * e + a] > z[t * e + b]; });
    idx.insert(idx.end(), order.begin(), order.begin() + k);
  }
  return idx;
}

// topk_w for a fixed selection `idx`, from the logits.
std::vector<double> topk_weights(const std::vector<double>& z, const std::vector<std::int32_t>& idx,
                                 std::int64_t n, std::int64_t e, std::int64_t k, bool normalize) {
  const std::vector<double> p = softmax_rows(z, n, e);
  std::vector<double> w(n * k);
  for (std::int64_t t = 0; t < n; ++t) {
    double sum = 0.0;
    for (std::int64_t s = 0; s < k; ++s) sum += p[t * e + idx[t * k + s]];
    for (std::int64_t s = 0; s < k; ++s) {
      w[t * k + s] = p[t * e + idx[t * k + s]] / (normalize ? sum : 1.0);
    }
  }
  return w;
}

// L_aux = coef E sum_j f_j P_j with f_j = count_j / (N k), P_j = mean_t p[t, j].
double aux_reference(const std::vector<double>& p, const std::vector<std::int32_t>& idx,
                     std::int64_t n, std::int64_t e, std::int64_t k, double coef) {
  double total = 0.0;
  for (std::int64_t j = 0; j < e; ++j) {
    const double count = static_cast<double>(std::count(idx.begin(), idx.end(), j));
    double column = 0.0;
    for (std::int64_t t = 0; t < n; ++t) column += p[t * e + j];
    total += count / static_cast<double>(n * k) * column / static_cast<double>(n);
  }
  return coef * static_cast<double>(e) * total;
}

std::vector<std::int32_t> random_choices(std::int64_t n, std::int64_t e, std::int64_t k,
                                         std::uint32_t seed) {
  // Each token's k distinct experts: the k largest of random logits.
  return topk_reference(to_double(random_floats(n * e, seed)), n, e, k);
}

// --- Router ----------------------------------------------------------------------------------

struct RouterCase {
  std::int64_t n, e, k;
  bool normalize;
};

void PrintTo(const RouterCase& c, std::ostream* os) {
  *os << "n " << c.n << ", e " << c.e << ", k " << c.k << (c.normalize ? ", normalize" : "");
}

class MoeRouter : public ::testing::TestWithParam<RouterCase> {};

TEST_P(MoeRouter, ForwardMatchesBruteForce) {
  const auto [n, e, k, normalize] = GetParam();
  const std::vector<float> logits = random_floats(n * e, 11, 0.0f, 2.0f);
  std::vector<float> probs(n * e), w(n * k);
  std::vector<std::int32_t> idx(n * k, -7);
  moe_router_forward(kCpu, probs.data(), idx.data(), w.data(), logits.data(), n, e, k, normalize);
  const std::vector<double> z = to_double(logits);
  const std::vector<std::int32_t> want_idx = topk_reference(z, n, e, k);
  EXPECT_EQ(idx, want_idx);
  expect_close(probs, softmax_rows(z, n, e), 1e-7, 1e-6, "probs");
  expect_close(w, topk_weights(z, want_idx, n, e, k, normalize), 1e-7, 1e-6, "topk_w");
}

// The gradient of sum(topk_w g) + aux_scale L_aux through the logits, the selection fixed.
TEST_P(MoeRouter, BackwardMatchesCentralDifferences) {
  const auto [n, e, k, normalize] = GetParam();
  const std::vector<float> logits = random_floats(n * e, 12);
  const std::vector<float> g = random_floats(n * k, 13);
  std::vector<float> probs(n * e), w(n * k);
  std::vector<std::int32_t> idx(n * k);
  moe_router_forward(kCpu, probs.data(), idx.data(), w.data(), logits.data(), n, e, k, normalize);
  for (const float aux_coef : {0.0f, 0.3f}) {
    const float aux_scale = 1.5f;
    std::vector<float> dlogits(n * e, 99.0f);
    moe_router_backward(kCpu, dlogits.data(), g.data(), probs.data(), idx.data(), n, e, k,
                        normalize, aux_coef, aux_scale);
    std::vector<double> z = to_double(logits);
    const auto loss = [&] {
      const std::vector<double> wz = topk_weights(z, idx, n, e, k, normalize);
      double total = 0.0;
      for (std::size_t i = 0; i < wz.size(); ++i) total += wz[i] * g[i];
      return total + static_cast<double>(aux_scale) *
                         aux_reference(softmax_rows(z, n, e), idx, n, e, k, aux_coef);
    };
    // Gradients of order 1 from fp32 probabilities: a few fp32 roundings.
    expect_close(dlogits, central_differences(z, loss), 2e-6, 1e-5,
                 "dlogits, aux_coef " + std::to_string(aux_coef));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeRouter,
                         ::testing::Values(RouterCase{1, 1, 1, false}, RouterCase{1, 1, 1, true},
                                           RouterCase{13, 8, 2, false}, RouterCase{13, 8, 2, true},
                                           RouterCase{7, 5, 3, true}, RouterCase{9, 6, 6, true},
                                           RouterCase{17, 64, 6, false}),
                         [](const ::testing::TestParamInfo<RouterCase>& param_info) {
                           const RouterCase& c = param_info.param;
                           return "n" + std::to_string(c.n) + "e" + std::to_string(c.e) + "k" +
                                  std::to_string(c.k) + (c.normalize ? "_norm" : "_raw");
                         });

TEST(MoeRouterTies, EqualLogitsGoToTheLowerExpertFirst) {
  const std::int64_t n = 3, e = 5, k = 3;
  const std::vector<float> logits = {1,  3, 3, 0, 3,  // three-way tie at the top
                                     2,  2, 2, 2, 2,  // all equal
                                     -1, 4, 0, 4, -1};
  std::vector<float> probs(n * e), w(n * k);
  std::vector<std::int32_t> idx(n * k);
  moe_router_forward(kCpu, probs.data(), idx.data(), w.data(), logits.data(), n, e, k, false);
  EXPECT_EQ(idx, (std::vector<std::int32_t>{1, 2, 4, 0, 1, 2, 1, 3, 2}));
  for (std::int64_t s = 0; s < k; ++s) EXPECT_FLOAT_EQ(w[k + s], 0.2f);  // all equal: 1 / E
  moe_router_forward(kCpu, probs.data(), idx.data(), w.data(), logits.data(), n, e, k, true);
  EXPECT_EQ(idx, (std::vector<std::int32_t>{1, 2, 4, 0, 1, 2, 1, 3, 2}));
  for (std::int64_t s = 0; s < k; ++s) {
    EXPECT_FLOAT_EQ(w[s], 1.0f / 3.0f);  // the three tied experts share the weight
    EXPECT_FLOAT_EQ(w[k + s], 1.0f / 3.0f);
  }
  // Row 2: p(4) = e^4 / (2 e^4 + 1): normalised over {4, 4, 0}.
  const double big = std::exp(4.0), small = 1.0;
  EXPECT_NEAR(w[2 * k], big / (2 * big + small), 1e-7);
  EXPECT_NEAR(w[2 * k + 2], small / (2 * big + small), 1e-7);
}

TEST(MoeRouterTies, HugeLogitsStayFinite) {
  const std::vector<float> logits = {1e30f, -1e30f, 1e30f, 0.0f};
  std::vector<float> probs(4), w(2);
  std::vector<std::int32_t> idx(2);
  moe_router_forward(kCpu, probs.data(), idx.data(), w.data(), logits.data(), 1, 4, 2, true);
  EXPECT_EQ(probs, (std::vector<float>{0.5f, 0.0f, 0.5f, 0.0f}));
  EXPECT_EQ(idx, (std::vector<std::int32_t>{0, 2}));
  EXPECT_EQ(w, (std::vector<float>{0.5f, 0.5f}));
}

// --- Aux loss --------------------------------------------------------------------------------

TEST(MoeAuxLoss, HandComputedTopOne) {
  // N = 2, E = 2, k = 1, both tokens on expert 0: f = (1, 0), P = (0.625, 0.375),
  // L = coef E f.P = 0.25 * 2 * 0.625 = 0.3125; aux_scale 3 -> 0.9375, added to 1.
  const std::vector<float> probs = {0.75f, 0.25f, 0.5f, 0.5f};
  const std::vector<std::int32_t> idx = {0, 0};
  double loss = 1.0;
  moe_aux_loss_forward(kCpu, &loss, probs.data(), idx.data(), 2, 2, 1, 0.25f, 3.0f);
  EXPECT_EQ(loss, 1.9375);
}

TEST(MoeAuxLoss, HandComputedTopTwo) {
  // N = 2, E = 3, k = 2: counts (2, 1, 1) of 4, f = (0.5, 0.25, 0.25), P = (0.55, 0.2, 0.25),
  // f.P = 0.275 + 0.05 + 0.0625 = 0.3875, L = 1 * 3 * 0.3875 = 1.1625.
  const std::vector<float> probs = {0.5f, 0.3f, 0.2f, 0.6f, 0.1f, 0.3f};
  const std::vector<std::int32_t> idx = {0, 1, 0, 2};
  double loss = 0.0;
  moe_aux_loss_forward(kCpu, &loss, probs.data(), idx.data(), 2, 3, 2, 1.0f, 1.0f);
  EXPECT_NEAR(loss, 1.1625, 1e-7);
  // No rows, or no coefficient: nothing added.
  moe_aux_loss_forward(kCpu, &loss, nullptr, nullptr, 0, 3, 2, 1.0f, 1.0f);
  moe_aux_loss_forward(kCpu, &loss, probs.data(), idx.data(), 2, 3, 2, 0.0f, 1.0f);
  EXPECT_NEAR(loss, 1.1625, 1e-7);
}

TEST(MoeAuxLoss, MatchesTheReferenceOnRandomRouting) {
  const std::int64_t n = 31, e = 8, k = 2;
  const std::vector<float> logits = random_floats(n * e, 14);
  std::vector<float> probs(n * e), w(n * k);
  std::vector<std::int32_t> idx(n * k);
  moe_router_forward(kCpu, probs.data(), idx.data(), w.data(), logits.data(), n, e, k, false);
  double loss = 0.5;
  moe_aux_loss_forward(kCpu, &loss, probs.data(), idx.data(), n, e, k, 0.01f, 2.0f);
  const double want = 2.0 * aux_reference(to_double(probs), idx, n, e, k, double{0.01f});
  EXPECT_NEAR(loss - 0.5, want, 1e-15);
  EXPECT_GT(want, 0.0);
}

// --- Permutation and combine -----------------------------------------------------------------

struct Permuted {
  std::vector<float> rows;
  std::vector<std::int32_t> row_of, counts;
};

Permuted permute(const std::vector<float>& x, const std::vector<std::int32_t>& idx,
                 const std::vector<float>& w, std::int64_t n, std::int64_t c, std::int64_t e,
                 std::int64_t k, std::int64_t r_max, std::int64_t capacity) {
  Permuted p{std::vector<float>(r_max * c, 42.0f), std::vector<std::int32_t>(n * k, 77),
             std::vector<std::int32_t>(e, 77)};
  moe_permute_forward(kCpu, p.rows.data(), p.row_of.data(), p.counts.data(), x.data(), idx.data(),
                      w.empty() ? nullptr : w.data(), n, c, e, k, r_max, capacity);
  return p;
}

TEST(MoePermute, DroplessGroupsByExpertThenToken) {
  const std::int64_t n = 11, c = 3, e = 4, k = 2, r_max = n * k + 3;
  const std::vector<float> x = random_floats(n * c, 21);
  const std::vector<std::int32_t> idx = random_choices(n, e, k, 22);
  const Permuted p = permute(x, idx, {}, n, c, e, k, r_max, 0);
  std::int64_t row = 0;
  for (std::int32_t j = 0; j < e; ++j) {
    std::int32_t count = 0;
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t s = 0; s < k; ++s) {
        if (idx[t * k + s] != j) continue;
        EXPECT_EQ(p.row_of[t * k + s], row) << "token " << t << " slot " << s;
        for (std::int64_t q = 0; q < c; ++q) EXPECT_EQ(p.rows[row * c + q], x[t * c + q]);
        ++row;
        ++count;
      }
    }
    EXPECT_EQ(p.counts[j], count) << "expert " << j;
  }
  EXPECT_EQ(row, n * k);
  for (std::int64_t i = row * c; i < r_max * c; ++i) EXPECT_EQ(p.rows[i], 0.0f) << i;
}

TEST(MoePermute, UnpermuteOfPermuteGivesTheTokensBack) {
  const std::int64_t n = 13, c = 6, e = 5;
  const std::vector<float> x = random_floats(n * c, 23);
  for (const std::int64_t k : {1, 2}) {
    const std::vector<std::int32_t> idx = random_choices(n, e, k, 24);
    const Permuted p = permute(x, idx, {}, n, c, e, k, n * k, 0);
    // Weights 1 with k = 1, 1/2 each with k = 2: exact in fp32 (x/2 + x/2 = x).
    const std::vector<float> w(n * k, 1.0f / static_cast<float>(k));
    std::vector<float> y(n * c, 5.0f);
    moe_unpermute_forward(kCpu, y.data(), p.rows.data(), p.row_of.data(), w.data(), n, c, k, n * k,
                          false);
    EXPECT_EQ(y, x) << "k = " << k;
    // accumulate adds into y: x + x.
    moe_unpermute_forward(kCpu, y.data(), p.rows.data(), p.row_of.data(), w.data(), n, c, k, n * k,
                          true);
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], 2.0f * x[i]);
  }
}

TEST(MoePermute, CapacityKeepsTheHighestWeightsInTokenOrder) {
  // Expert 0 is chosen by tokens 0 (w .3), 1 (.9), 3 (.3), 4 (.2); capacity 2 keeps token 1 and,
  // of the tie at .3, the lower token 0; expert 1 keeps its one token, 2.
  const std::int64_t n = 5, c = 2, e = 2, k = 1, capacity = 2, r_max = 4;
  const std::vector<float> x = {0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f, 4, 4.5f};
  const std::vector<std::int32_t> idx = {0, 0, 1, 0, 0};
  const std::vector<float> w = {0.3f, 0.9f, 0.5f, 0.3f, 0.2f};
  const Permuted p = permute(x, idx, w, n, c, e, k, r_max, capacity);
  EXPECT_EQ(p.row_of, (std::vector<std::int32_t>{0, 1, 2, -1, -1}));
  EXPECT_EQ(p.counts, (std::vector<std::int32_t>{2, 1}));
  EXPECT_EQ(p.rows, (std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f, 0, 0}));
  // Dropped choices contribute nothing to the combine.
  std::vector<float> y(n * c, 9.0f);
  moe_unpermute_forward(kCpu, y.data(), p.rows.data(), p.row_of.data(), w.data(), n, c, k, r_max,
                        false);
  EXPECT_EQ(y, (std::vector<float>{0, 0.3f * 0.5f, 0.9f * 1, 0.9f * 1.5f, 0.5f * 2, 0.5f * 2.5f, 0,
                                   0, 0, 0}));
}

TEST(MoePermute, CapacityWithTopTwoAndAmpleCapacityKeepsAll) {
  const std::int64_t n = 9, c = 4, e = 3, k = 2;
  const std::vector<float> x = random_floats(n * c, 25);
  const std::vector<std::int32_t> idx = random_choices(n, e, k, 26);
  const std::vector<float> w = random_floats(n * k, 27);
  const Permuted dropless = permute(x, idx, {}, n, c, e, k, n * k, 0);
  const Permuted ample = permute(x, idx, w, n, c, e, k, n * k, n);
  EXPECT_EQ(ample.rows, dropless.rows);
  EXPECT_EQ(ample.row_of, dropless.row_of);
  EXPECT_EQ(ample.counts, dropless.counts);
  // Capacity 2: each expert keeps min(count, 2), its largest weights.
  const Permuted tight = permute(x, idx, w, n, c, e, k, e * 2, 2);
  for (std::int32_t j = 0; j < e; ++j) {
    std::vector<float> weights;
    for (std::int64_t i = 0; i < n * k; ++i) {
      if (idx[i] == j) weights.push_back(w[i]);
    }
    std::sort(weights.rbegin(), weights.rend());
    EXPECT_EQ(tight.counts[j],
              std::min<std::int32_t>(2, static_cast<std::int32_t>(weights.size())));
    for (std::int64_t i = 0; i < n * k; ++i) {
      if (idx[i] != j) continue;
      const bool kept = tight.row_of[i] >= 0;
      EXPECT_EQ(kept, weights.size() <= 2 || w[i] >= weights[1]) << "choice " << i;
    }
  }
}

TEST(MoePermute, RowsBeyondRMaxThrowAndWriteNothing) {
  const std::int64_t n = 3, c = 2, e = 3, k = 2;
  const std::vector<float> x = random_floats(n * c, 28), w(n * k, 0.5f);
  const std::vector<std::int32_t> idx = {0, 1, 1, 2, 0, 2};
  // Dropless keeps n k = 6 rows: r_max 5 is too small.
  EXPECT_THROW(permute(x, idx, {}, n, c, e, k, 5, 0), std::invalid_argument);
  std::vector<float> rows(5 * c, 42.0f);
  std::vector<std::int32_t> row_of(n * k, 77), counts(e, 77);
  EXPECT_THROW(moe_permute_forward(kCpu, rows.data(), row_of.data(), counts.data(), x.data(),
                                   idx.data(), nullptr, n, c, e, k, 5, 0),
               std::invalid_argument);
  EXPECT_EQ(rows, std::vector<float>(5 * c, 42.0f));
  EXPECT_EQ(row_of, std::vector<std::int32_t>(n * k, 77));
  EXPECT_EQ(counts, std::vector<std::int32_t>(e, 77));
  // Capacity 1 keeps at most min(6, 3 * 1) = 3 rows: r_max 2 throws, 3 is enough.
  EXPECT_THROW(moe_permute_forward(kCpu, rows.data(), row_of.data(), counts.data(), x.data(),
                                   idx.data(), w.data(), n, c, e, k, 2, 1),
               std::invalid_argument);
  EXPECT_EQ(counts, std::vector<std::int32_t>(e, 77));
  EXPECT_NO_THROW(permute(x, idx, w, n, c, e, k, 3, 1));
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double total = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) total += static_cast<double>(a[i]) * b[i];
  return total;
}

// permute_backward is the transpose of permute: <P x, d> = <x, P^T d>, with dropped choices.
TEST(MoePermute, BackwardIsTheTransposedForward) {
  const std::int64_t n = 10, c = 5, e = 4, k = 2, capacity = 3, r_max = e * capacity + 2;
  const std::vector<float> x = random_floats(n * c, 29);
  const std::vector<std::int32_t> idx = random_choices(n, e, k, 30);
  const std::vector<float> w = random_floats(n * k, 31);
  const Permuted p = permute(x, idx, w, n, c, e, k, r_max, capacity);
  ASSERT_GT(std::count(p.row_of.begin(), p.row_of.end(), -1), 0) << "the case drops choices";
  const std::vector<float> drows = random_floats(r_max * c, 32);
  std::vector<float> dx(n * c, 7.0f);
  moe_permute_backward(kCpu, dx.data(), drows.data(), p.row_of.data(), n, c, k, r_max, false);
  EXPECT_NEAR(dot(p.rows, drows), dot(x, dx), 1e-5);
  // Exactly: dx[t] = sum over kept slots of drows[row], slots in order.
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t q = 0; q < c; ++q) {
      float want = 0.0f;
      for (std::int64_t s = 0; s < k; ++s) {
        const std::int32_t row = p.row_of[t * k + s];
        if (row >= 0) want += drows[row * c + q];
      }
      EXPECT_EQ(dx[t * c + q], want);
    }
  }
  std::vector<float> acc(n * c, 1.0f);
  moe_permute_backward(kCpu, acc.data(), drows.data(), p.row_of.data(), n, c, k, r_max, true);
  for (std::size_t i = 0; i < acc.size(); ++i) EXPECT_EQ(acc[i], 1.0f + dx[i]);
}

// unpermute_backward: drows by the transpose (<U rows, dy> = <rows, U^T dy>), dtopk_w against
// central differences of <U(rows, w), dy> in w (linear in w, so exact up to rounding).
TEST(MoeUnpermute, BackwardMatchesTransposeAndDifferences) {
  const std::int64_t n = 9, c = 4, e = 3, k = 2, capacity = 4, r_max = e * capacity + 1;
  const std::vector<float> x = random_floats(n * c, 33);
  const std::vector<std::int32_t> idx = random_choices(n, e, k, 34);
  const std::vector<float> w = random_floats(n * k, 35, 0.5f, 0.2f);
  const Permuted p = permute(x, idx, w, n, c, e, k, r_max, capacity);
  ASSERT_GT(std::count(p.row_of.begin(), p.row_of.end(), -1), 0) << "the case drops choices";
  const std::vector<float> rows = random_floats(r_max * c, 36);  // the experts' outputs
  const std::vector<float> dy = random_floats(n * c, 37);
  std::vector<float> drows(r_max * c, 8.0f), dw(n * k, 8.0f);
  moe_unpermute_backward(kCpu, drows.data(), dw.data(), dy.data(), rows.data(), p.row_of.data(),
                         w.data(), n, c, k, r_max);
  std::vector<float> y(n * c);
  moe_unpermute_forward(kCpu, y.data(), rows.data(), p.row_of.data(), w.data(), n, c, k, r_max,
                        false);
  EXPECT_NEAR(dot(y, dy), dot(rows, drows), 1e-5);
  // Rows nobody references get 0.
  std::vector<bool> referenced(r_max, false);
  for (const std::int32_t row : p.row_of) {
    if (row >= 0) referenced[row] = true;
  }
  for (std::int64_t row = 0; row < r_max; ++row) {
    if (referenced[row]) continue;
    for (std::int64_t q = 0; q < c; ++q) EXPECT_EQ(drows[row * c + q], 0.0f) << row;
  }
  // dtopk_w by central differences of the double combine.
  std::vector<double> wd = to_double(w);
  const auto loss = [&] {
    double total = 0.0;
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t s = 0; s < k; ++s) {
        const std::int32_t row = p.row_of[t * k + s];
        if (row < 0) continue;
        for (std::int64_t q = 0; q < c; ++q) {
          total += wd[t * k + s] * rows[row * c + q] * dy[t * c + q];
        }
      }
    }
    return total;
  };
  expect_close(dw, central_differences(wd, loss), 1e-7, 1e-6, "dtopk_w");
  for (std::int64_t i = 0; i < n * k; ++i) {
    if (p.row_of[i] < 0) {
      EXPECT_EQ(dw[i], 0.0f) << "dropped choice " << i;
    }
  }
}

// --- Grouped GEMM ----------------------------------------------------------------------------

struct Segments {
  std::vector<std::int32_t> counts;
  std::int64_t groups;
  std::int64_t r;  // at least sum(counts)
};

void PrintTo(const Segments& s, std::ostream* os) {
  *os << s.counts.size() << " segments, " << s.groups << " groups, " << s.r << " rows";
}

class GroupedLinear : public ::testing::TestWithParam<Segments> {};

TEST_P(GroupedLinear, MatchesTheLinearOpsPerSegment) {
  const Segments seg = GetParam();
  const std::int64_t in = 7, out = 5, s_count = static_cast<std::int64_t>(seg.counts.size());
  const std::int64_t g_count = seg.groups, r = seg.r;
  const std::vector<float> x = random_floats(r * in, 41), dy = random_floats(r * out, 42);
  const std::vector<float> w = random_floats(g_count * out * in, 43);
  std::vector<float> y(r * out, 9.0f), dx(r * in, 9.0f), dw(g_count * out * in, 9.0f);
  grouped_linear_forward(kCpu, y.data(), x.data(), w.data(), seg.counts.data(), s_count, g_count,
                         in, out, r);
  grouped_linear_backward_data(kCpu, dx.data(), dy.data(), w.data(), seg.counts.data(), s_count,
                               g_count, in, out, r);
  grouped_linear_backward_weight(kCpu, dw.data(), dy.data(), x.data(), seg.counts.data(), s_count,
                                 g_count, in, out, r, false);
  std::vector<float> want_y(r * out, 0.0f), want_dx(r * in, 0.0f), want_dw(g_count * out * in, 0);
  std::int64_t first = 0;
  for (std::int64_t s = 0; s < s_count; ++s) {
    const std::int64_t rows = seg.counts[s], g = s % g_count;
    const float* wg = w.data() + g * out * in;
    linear_forward(kCpu, want_y.data() + first * out, x.data() + first * in, wg, nullptr, rows, in,
                   out);
    // Written where the op writes: Eigen's rounding may depend on the operands' alignment.
    std::vector<float> seg_dw(out * in);
    linear_backward(kCpu, want_dx.data() + first * in, seg_dw.data(), nullptr,
                    dy.data() + first * out, x.data() + first * in, wg, rows, in, out);
    for (std::int64_t i = 0; i < out * in; ++i) want_dw[g * out * in + i] += seg_dw[i];
    first += rows;
  }
  // Forward and dx: the same Eigen products on the same memory, bit for bit; rows past the
  // segments 0.
  EXPECT_EQ(y, want_y);
  EXPECT_EQ(dx, want_dx);
  // dw: one GEMM per segment adding into the last (accumulate) against products summed after.
  expect_close(dw, want_dw, 1e-5, 1e-5, "dw");
  // accumulate: old + new.
  std::vector<float> acc(dw.size(), 1.0f);
  grouped_linear_backward_weight(kCpu, acc.data(), dy.data(), x.data(), seg.counts.data(), s_count,
                                 g_count, in, out, r, true);
  for (std::size_t i = 0; i < acc.size(); ++i) EXPECT_NEAR(acc[i], 1.0f + dw[i], 1e-5) << i;
}

INSTANTIATE_TEST_SUITE_P(
    Segments, GroupedLinear,
    ::testing::Values(Segments{{4, 0, 3}, 3, 7},            // an empty segment
                      Segments{{3, 0, 5, 2, 4, 1}, 3, 17},  // S = 2G, trailing rows
                      Segments{{0, 2, 0, 6, 0, 1}, 3, 9},   // group 0 has no rows at all
                      Segments{{5, 6}, 1, 11},              // one weight for both
                      Segments{{}, 2, 3}),                  // no segments: all rows 0
    [](const ::testing::TestParamInfo<Segments>& param_info) {
      const Segments& s = param_info.param;
      return "s" + std::to_string(s.counts.size()) + "g" + std::to_string(s.groups) + "r" +
             std::to_string(s.r);
    });

TEST(GroupedLinearEdges, GroupWithoutRowsGetsZeroOrKeepsItsGradient) {
  const std::int64_t in = 3, out = 2, g_count = 2, r = 4;
  const std::vector<std::int32_t> counts = {4, 0};  // group 1: one empty segment
  const std::vector<float> x = random_floats(r * in, 44), dy = random_floats(r * out, 45);
  std::vector<float> dw(g_count * out * in, 9.0f);
  grouped_linear_backward_weight(kCpu, dw.data(), dy.data(), x.data(), counts.data(), 2, g_count,
                                 in, out, r, false);
  for (std::int64_t i = out * in; i < g_count * out * in; ++i) EXPECT_EQ(dw[i], 0.0f);
  std::vector<float> acc(g_count * out * in, 9.0f);
  grouped_linear_backward_weight(kCpu, acc.data(), dy.data(), x.data(), counts.data(), 2, g_count,
                                 in, out, r, true);
  for (std::int64_t i = out * in; i < g_count * out * in; ++i) EXPECT_EQ(acc[i], 9.0f);
  for (std::int64_t i = 0; i < out * in; ++i) EXPECT_FLOAT_EQ(acc[i], 9.0f + dw[i]);
}

// A whole MoE layer's expert path (one linear expert each), composed from the ops as a step
// runs it: router -> permute -> grouped GEMM (counts as segments) -> combine, against each
// token's own sum over its experts, y[t] = sum_s w[t, s] x[t] W[i_s]^T.
TEST(MoeLayer, ComposedOpsMatchThePerTokenSum) {
  const std::int64_t n = 12, c = 6, out = 5, e = 4, k = 2;
  const std::vector<float> x = random_floats(n * c, 51), logits = random_floats(n * e, 52);
  const std::vector<float> w_experts = random_floats(e * out * c, 53);
  std::vector<float> probs(n * e), w(n * k);
  std::vector<std::int32_t> idx(n * k);
  moe_router_forward(kCpu, probs.data(), idx.data(), w.data(), logits.data(), n, e, k, true);
  const Permuted p = permute(x, idx, {}, n, c, e, k, n * k, 0);
  std::vector<float> rows_out(n * k * out), y(n * out);
  grouped_linear_forward(kCpu, rows_out.data(), p.rows.data(), w_experts.data(), p.counts.data(), e,
                         e, c, out, n * k);
  moe_unpermute_forward(kCpu, y.data(), rows_out.data(), p.row_of.data(), w.data(), n, out, k,
                        n * k, false);
  std::vector<double> want(n * out, 0.0);
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t s = 0; s < k; ++s) {
      const float* wg = w_experts.data() + idx[t * k + s] * out * c;
      for (std::int64_t o = 0; o < out; ++o) {
        double dot = 0.0;
        for (std::int64_t q = 0; q < c; ++q)
          dot += static_cast<double>(x[t * c + q]) * wg[o * c + q];
        want[t * out + o] += w[t * k + s] * dot;
      }
    }
  }
  expect_close(y, want, 1e-6, 1e-5, "y");
}

// --- Argument checks -------------------------------------------------------------------------

TEST(MoeArguments, BadSizesThrowInvalidArgument) {
  std::vector<float> f(64, 0.0f);
  std::vector<std::int32_t> i(64, 0);
  double loss = 0.0;
  float* p = f.data();
  std::int32_t* ip = i.data();
  // k > e, k = 0, e = 0, n < 0.
  EXPECT_THROW(moe_router_forward(kCpu, p, ip, p, p, 2, 3, 4, true), std::invalid_argument);
  EXPECT_THROW(moe_router_forward(kCpu, p, ip, p, p, 2, 3, 0, true), std::invalid_argument);
  EXPECT_THROW(moe_router_forward(kCpu, p, ip, p, p, 2, 0, 1, true), std::invalid_argument);
  EXPECT_THROW(moe_router_forward(kCpu, p, ip, p, p, -1, 3, 1, true), std::invalid_argument);
  EXPECT_THROW(moe_router_backward(kCpu, p, p, p, ip, 2, 3, 2, true, NAN, 1.0f),
               std::invalid_argument);
  EXPECT_THROW(moe_router_backward(kCpu, p, p, p, ip, 2, 3, 2, true, 0.1f, INFINITY),
               std::invalid_argument);
  EXPECT_THROW(moe_aux_loss_forward(kCpu, &loss, p, ip, 2, 3, 4, 0.1f, 1.0f),
               std::invalid_argument);
  EXPECT_THROW(moe_aux_loss_forward(kCpu, nullptr, p, ip, 2, 3, 2, 0.1f, 1.0f),
               std::invalid_argument);
  // c = 0, negative capacity, a null x.
  EXPECT_THROW(moe_permute_forward(kCpu, p, ip, ip, p, ip, p, 2, 0, 3, 1, 2, 0),
               std::invalid_argument);
  EXPECT_THROW(moe_permute_forward(kCpu, p, ip, ip, p, ip, p, 2, 2, 3, 1, 2, -1),
               std::invalid_argument);
  EXPECT_THROW(moe_permute_forward(kCpu, p, ip, ip, nullptr, ip, p, 2, 2, 3, 1, 2, 0),
               std::invalid_argument);
  EXPECT_THROW(moe_permute_backward(kCpu, p, p, ip, 2, 2, 0, 4, false), std::invalid_argument);
  EXPECT_THROW(moe_permute_backward(kCpu, p, p, ip, 2, 2, 1, -1, false), std::invalid_argument);
  EXPECT_THROW(moe_unpermute_forward(kCpu, p, p, ip, p, 2, 0, 1, 4, false), std::invalid_argument);
  EXPECT_THROW(moe_unpermute_backward(kCpu, p, p, p, p, ip, p, 2, 2, 0, 4), std::invalid_argument);
  // Grouped: no groups, zero in, counts summing past r, a negative count.
  const std::vector<std::int32_t> counts = {2, 3}, negative = {2, -1};
  EXPECT_THROW(grouped_linear_forward(kCpu, p, p, p, counts.data(), 2, 0, 2, 2, 5),
               std::invalid_argument);
  EXPECT_THROW(grouped_linear_forward(kCpu, p, p, p, counts.data(), 2, 1, 0, 2, 5),
               std::invalid_argument);
  EXPECT_THROW(grouped_linear_forward(kCpu, p, p, p, counts.data(), 2, 1, 2, 2, 4),
               std::invalid_argument);
  EXPECT_THROW(grouped_linear_backward_data(kCpu, p, p, p, negative.data(), 2, 1, 2, 2, 4),
               std::invalid_argument);
  EXPECT_THROW(grouped_linear_backward_weight(kCpu, p, p, p, counts.data(), 2, 1, 2, 2, 4, false),
               std::invalid_argument);
  EXPECT_NO_THROW(grouped_linear_forward(kCpu, p, p, p, counts.data(), 2, 1, 2, 2, 5));
}

TEST(MoeArguments, IndicesOutOfRangeThrowOutOfRangeBeforeWriting) {
  const std::vector<float> x(8, 1.0f);
  const std::vector<std::int32_t> idx = {0, 3, 1, 2};  // expert 3 with e = 3
  std::vector<float> rows(4 * 2, 42.0f);
  std::vector<std::int32_t> row_of(4, 77), counts(3, 77);
  EXPECT_THROW(moe_permute_forward(kCpu, rows.data(), row_of.data(), counts.data(), x.data(),
                                   idx.data(), nullptr, 4, 2, 3, 1, 4, 0),
               std::out_of_range);
  EXPECT_EQ(rows, std::vector<float>(8, 42.0f));
  EXPECT_EQ(counts, std::vector<std::int32_t>(3, 77));
  const std::vector<std::int32_t> bad_rows = {0, 4, -1, 1};  // row 4 with r_max = 4
  std::vector<float> y(8, 5.0f), dx(8, 5.0f);
  const std::vector<float> w(4, 1.0f);
  EXPECT_THROW(moe_unpermute_forward(kCpu, y.data(), rows.data(), bad_rows.data(), w.data(), 4, 2,
                                     1, 4, false),
               std::out_of_range);
  EXPECT_THROW(
      moe_permute_backward(kCpu, dx.data(), rows.data(), bad_rows.data(), 4, 2, 1, 4, false),
      std::out_of_range);
  EXPECT_EQ(y, std::vector<float>(8, 5.0f));
  EXPECT_EQ(dx, std::vector<float>(8, 5.0f));
}

TEST(MoeArguments, NoTokensIsFine) {
  std::vector<float> rows(2 * 3, 42.0f);
  std::vector<std::int32_t> counts(4, 77);
  moe_permute_forward(kCpu, rows.data(), nullptr, counts.data(), nullptr, nullptr, nullptr, 0, 3, 4,
                      2, 2, 0);
  EXPECT_EQ(counts, std::vector<std::int32_t>(4, 0));
  EXPECT_EQ(rows, std::vector<float>(6, 0.0f));
  std::vector<float> drows(2 * 3, 42.0f);
  moe_unpermute_backward(kCpu, drows.data(), nullptr, nullptr, nullptr, nullptr, nullptr, 0, 3, 2,
                         2);
  EXPECT_EQ(drows, std::vector<float>(6, 0.0f));
  moe_router_forward(kCpu, nullptr, nullptr, nullptr, nullptr, 0, 4, 2, true);
}

}  // namespace
}  // namespace strata::kernels
