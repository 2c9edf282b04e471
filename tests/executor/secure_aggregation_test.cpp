// Secure aggregation (executor/secure_aggregation.hpp): the masks cancel exactly, a masked vector
// reveals nothing visible of the plain one, the fixed-point code's rounding and range, dropout
// recovery, the toy Diffie-Hellman, and secure_all_reduce(_dh) under mpirun on 3 and 4 ranks
// (secure_aggregation_mpi_check).
#include "executor/secure_aggregation.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "executor/counter_prg.hpp"
#include "tests/executor/mpi_check.hpp"

namespace strata::exec {
namespace {

// Party `who`'s update: n values uniform in [-amplitude, amplitude).
std::vector<float> update(int who, std::size_t n, double amplitude) {
  std::vector<float> v(n);
  for (std::size_t k = 0; k < n; ++k) {
    const double u = prg_unit(static_cast<std::uint64_t>(who) * 1000 + 1, k);
    v[k] = static_cast<float>(amplitude * (2 * u - 1));
  }
  return v;
}

std::vector<int> ids(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(i);
  return v;
}

// Every party's masked vector and plain encoding.
struct Round {
  std::vector<std::vector<std::uint64_t>> masked, plain;
};
Round run_round(const std::vector<int>& parties, std::size_t n, const MaskingKeys& keys) {
  Round r;
  for (int p : parties) {
    const std::vector<float> x = update(p, n, 30.0);
    r.masked.push_back(masked_update(x.data(), n, p, parties, FixedPointCode{}, keys));
    r.plain.push_back(encode_fixed_point(x.data(), n, FixedPointCode{}));
  }
  return r;
}

TEST(SecureAggregation, MaskedSumEqualsThePlainFixedPointSumExactly) {
  const MaskingKeys keys{0xabcdef, 7};
  for (int parties : {2, 3, 5, 8}) {
    for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{1001}}) {
      const Round r = run_round(ids(parties), n, keys);
      EXPECT_EQ(sum_words(r.masked), sum_words(r.plain)) << parties << " parties, n = " << n;
      // Decoded: the float sum within each party's rounding, 0.5 / 2^16, and fp32's (values
      // below 30 parties: half an ulp is below 30 parties 2^-24, per partial sum and decode).
      const std::vector<float> sum = decode_fixed_point(sum_words(r.masked), FixedPointCode{});
      const double tol = parties * (0.5 / 65536.0 + 30.0 * parties * 0x1.0p-24);
      for (std::size_t k = 0; k < n; ++k) {
        double want = 0;
        for (int p = 0; p < parties; ++p) want += update(p, n, 30.0)[k];
        ASSERT_NEAR(sum[k], want, tol) << parties << " parties, element " << k;
      }
    }
  }
  // Party ids need not be 0..n-1 nor sorted.
  const Round r = run_round({42, 3, 10}, 33, keys);
  EXPECT_EQ(sum_words(r.masked), sum_words(r.plain));
}

// Pearson's chi-square of the words' top 4 bits over 16 equally likely bins.
double chi_square_top_bits(const std::vector<std::uint64_t>& words) {
  std::array<double, 16> count{};
  for (std::uint64_t w : words) count[w >> 60] += 1;
  const double expected = static_cast<double>(words.size()) / 16;
  double chi2 = 0;
  for (double c : count) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}

TEST(SecureAggregation, AMaskedVectorLooksUniformAndUncorrelatedWithThePlainOne) {
  const std::size_t n = 16000;
  const Round r = run_round(ids(3), n, MaskingKeys{99, 0});
  const std::vector<std::uint64_t>& masked = r.masked[0];
  const std::vector<std::uint64_t>& plain = r.plain[0];
  // Uniform words: chi-square with 15 degrees of freedom below its 0.999 quantile, 37.70 (the
  // inputs are fixed, so the test is deterministic; a uniform stream fails it 1 time in 1000).
  EXPECT_LT(chi_square_top_bits(masked), 37.70);
  // The test can fail: the plain words (values within +-30, top bits all 0 or all 1) fail it.
  EXPECT_GT(chi_square_top_bits(plain), 1000.0);

  // The masked words read as signed numbers are uncorrelated with the plain values: |r| below
  // 4 / sqrt(n) (4 standard errors of a null correlation, 0.032).
  double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  std::size_t equal = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const double x = static_cast<double>(static_cast<std::int64_t>(plain[k]));
    const double y = static_cast<double>(static_cast<std::int64_t>(masked[k]));
    sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
    equal += masked[k] == plain[k];
  }
  const double dn = static_cast<double>(n);
  const double corr = (sxy - sx * sy / dn) / std::sqrt((sxx - sx * sx / dn) * (syy - sy * sy / dn));
  EXPECT_LT(std::fabs(corr), 4.0 / std::sqrt(dn));
  EXPECT_EQ(equal, 0u);
}

TEST(SecureAggregation, MasksDependOnThePairAndTheRound) {
  const MaskingKeys a{5, 0}, b{5, 1};
  EXPECT_EQ(pair_seed(a, 1, 4), pair_seed(a, 4, 1));
  EXPECT_NE(pair_seed(a, 1, 4), pair_seed(a, 1, 3));
  EXPECT_NE(pair_seed(a, 1, 4), pair_seed(b, 1, 4));
  EXPECT_NE(pair_seed(a, 1, 4), pair_seed(MaskingKeys{6, 0}, 1, 4));
  // The same update masked in two rounds: different words, same sums.
  EXPECT_NE(run_round(ids(3), 10, a).masked[0], run_round(ids(3), 10, b).masked[0]);
}

TEST(SecureAggregation, ToyDiffieHellmanAgreesPairSeedsThatCancel) {
  // g^2 and g^3 (private seeds 0 and 1 are the keys 2 and 3).
  EXPECT_EQ(dh_public_key(0), 25u);
  EXPECT_EQ(dh_public_key(1), 125u);
  const std::vector<std::uint64_t> secret = {11, 0xfeedfacecafebeefULL, 3, 1ULL << 63};
  std::vector<std::uint64_t> pub;
  for (std::uint64_t a : secret) pub.push_back(dh_public_key(a));
  for (std::size_t i = 0; i < secret.size(); ++i) {
    for (std::size_t j = i + 1; j < secret.size(); ++j) {
      EXPECT_EQ(dh_pair_seed(secret[i], pub[j], 4), dh_pair_seed(secret[j], pub[i], 4));
      EXPECT_NE(dh_pair_seed(secret[i], pub[j], 4), dh_pair_seed(secret[i], pub[j], 5));
    }
  }
  EXPECT_NE(dh_pair_seed(secret[0], pub[1], 4), dh_pair_seed(secret[0], pub[2], 4));
  // Masks from the agreed seeds cancel in the sum.
  const std::size_t n = 99;
  std::vector<std::vector<std::uint64_t>> masked, plain;
  for (int i = 0; i < 4; ++i) {
    const std::vector<float> x = update(i, n, 5.0);
    plain.push_back(encode_fixed_point(x.data(), n, FixedPointCode{}));
    std::vector<PeerSeed> peers;
    for (int j = 0; j < 4; ++j) {
      const auto ui = static_cast<std::size_t>(i), uj = static_cast<std::size_t>(j);
      if (j != i) peers.push_back({j, dh_pair_seed(secret[ui], pub[uj], 4)});
    }
    masked.push_back(plain.back());
    add_masks(masked.back(), i, peers);
    EXPECT_NE(masked.back(), plain.back());
  }
  EXPECT_EQ(sum_words(masked), sum_words(plain));
}

TEST(SecureAggregation, EncodingRoundTripIsWithinOneOverTheScale) {
  const FixedPointCode code;
  std::vector<float> x = update(9, 5000, 128.0);
  for (float v : {0.0f, 1e-7f, -1e-7f, 127.99f, -128.0f, 0.5f / 65536, -1.5f / 65536}) {
    x.push_back(v);
  }
  const std::vector<float> back =
      decode_fixed_point(encode_fixed_point(x.data(), x.size(), code), code);
  double worst = 0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    worst = std::max(worst, std::fabs(double{back[k]} - x[k]));
  }
  EXPECT_LE(worst, 1.0 / code.scale());
  // Rounding to nearest: half a step, plus fp32's half ulp at 128 (2^-17) at most.
  EXPECT_LE(worst, 0.5 / code.scale() + 0x1.0p-17);
  // Negative values are two's complement words.
  const float minus_one = -1.0f;
  EXPECT_EQ(encode_fixed_point(&minus_one, 1, code)[0], ~std::uint64_t{65536} + 1);
}

TEST(SecureAggregation, OutOfRangeValuesAreAnErrorNamingValueAndRange) {
  const std::vector<float> x = {1.0f, -2.0f, 2e6f, 3.0f};
  try {
    encode_fixed_point(x.data(), x.size(), FixedPointCode{});
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("element 2 = 2000000"), std::string::npos) << m;
    EXPECT_NE(m.find("[-1048576, 1048576]"), std::string::npos) << m;
  }
  const float nan = std::nanf("");
  EXPECT_THROW(encode_fixed_point(&nan, 1, FixedPointCode{}), ConfigError);
  EXPECT_THROW(encode_fixed_point(x.data(), 1, FixedPointCode{70, 1.0, false}), ConfigError);
  EXPECT_THROW(encode_fixed_point(x.data(), 1, FixedPointCode{16, 1e15, false}), ConfigError);

  // With clip, out-of-range values are clamped to the range.
  const FixedPointCode clip{16, 100.0, true};
  const std::vector<float> y = {250.0f, -1e30f, 5.0f};
  const std::vector<float> back = decode_fixed_point(encode_fixed_point(y.data(), 3, clip), clip);
  EXPECT_EQ(back, (std::vector<float>{100.0f, -100.0f, 5.0f}));
}

TEST(SecureAggregation, DropoutRecoveryGivesTheSurvivorsExactSum) {
  const MaskingKeys keys{2024, 1};
  const std::vector<int> parties = ids(5), survivors = {0, 2, 4}, dropped = {1, 3};
  const Round r = run_round(parties, 257, keys);  // every party masked for all five
  std::vector<std::vector<std::uint64_t>> masked, plain;
  for (int s : survivors) {
    masked.push_back(r.masked[static_cast<std::size_t>(s)]);
    plain.push_back(r.plain[static_cast<std::size_t>(s)]);
  }
  std::vector<std::uint64_t> sum = sum_words(masked);
  EXPECT_NE(sum, sum_words(plain));  // the masks with 1 and 3 remain

  std::vector<RevealedSeed> seeds;
  for (int s : survivors) {
    for (const RevealedSeed& rs : reveal_seeds(s, dropped, keys)) seeds.push_back(rs);
  }
  ASSERT_EQ(seeds.size(), 6u);
  // Without one survivor's seeds the sum is still masked.
  std::vector<std::uint64_t> partial = sum;
  remove_dropped_masks(partial, std::vector<RevealedSeed>(seeds.begin(), seeds.end() - 2));
  EXPECT_NE(partial, sum_words(plain));
  remove_dropped_masks(sum, seeds);
  EXPECT_EQ(sum, sum_words(plain));
}

TEST(SecureAggregation, OneRankAllReduceIsTheRoundTrip) {
  auto comm = make_local_comm();
  const GroupId g = comm->split({0});
  std::vector<float> x = update(1, 65, 10.0);
  const std::vector<float> want = decode_fixed_point(
      encode_fixed_point(x.data(), x.size(), FixedPointCode{}), FixedPointCode{});
  std::vector<float> y = x;
  secure_all_reduce(*comm, g, x.data(), x.size(), FixedPointCode{}, MaskingKeys{1, 2});
  EXPECT_EQ(x, want);
  secure_all_reduce_dh(*comm, g, y.data(), y.size(), FixedPointCode{}, 8, 2);
  EXPECT_EQ(y, want);
}

#ifdef STRATA_SECAGG_CHECK
// Rank 0 checks the world's sums (2 sizes x exact and plain, with shared-secret seeds and with
// the toy Diffie-Hellman's) and the out-of-range error: 9.
TEST(SecureAggregationMpi, SumsEqualThePlainAllReduceOnThreeAndFourRanks) {
  for (int ranks : {3, 4}) {
    const test::MpiCheckRun r =
        test::run_mpi_check(STRATA_MPIEXEC, STRATA_SECAGG_CHECK, ranks);
    const std::string& out = r.output;
    EXPECT_EQ(r.exit_code, 0) << out;
    EXPECT_NE(out.find("secure_aggregation_mpi_check: " + std::to_string(ranks) +
                       " ranks, 9 checks passed"),
              std::string::npos)
        << out;
  }
}
#endif

}  // namespace
}  // namespace strata::exec
