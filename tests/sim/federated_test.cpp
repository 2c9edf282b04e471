// The WAN aggregation of a federated round (sim/federated.hpp): central and ring against their
// alpha-beta formulas, bytes per site against hand counts, 1 vs 10 Gb/s, jitter, secure
// aggregation's extra rounds, and a round's arithmetic. Every simulation runs in a forked child.
#include "sim/federated.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "sim_test_util.hpp"

namespace strata::sim {
namespace {

using strategies::FederatedAggregation;
using testing::in_child;

constexpr double kMB = 1e6;

strategies::WanSpec wan(double gbps, double latency_ms, double jitter_ms = 0) {
  return {gbps * 1e9 / 8, latency_ms * 1e-3, jitter_ms * 1e-3};
}

// seconds, secure_aggregation_s, then sent and received bytes per site.
std::vector<double> run(const strategies::WanSpec& w, int sites, const std::vector<int>& who,
                        FederatedAggregation a, double bytes, bool secure = false) {
  return in_child([&] {
    const WanAggregation r = simulate_wan_aggregation(w, sites, who, a, bytes, secure);
    std::vector<double> out = {r.seconds, r.secure_aggregation_s};
    out.insert(out.end(), r.sent_bytes.begin(), r.sent_bytes.end());
    out.insert(out.end(), r.received_bytes.begin(), r.received_bytes.end());
    return out;
  });
}

TEST(FederatedWan, CentralMatchesFormulaAndHandBytes) {
  const double s = 500 * kMB;
  const auto r = run(wan(1, 20), 4, {0, 1, 2, 3}, FederatedAggregation::kCentral, s);
  ASSERT_EQ(r.size(), 10u);
  // 2 x (20 ms + 3 x 500 MB / 125 MB/s) = 24.04 s.
  EXPECT_NEAR(r[0], 24.04, 1e-6);
  EXPECT_NEAR(r[0], wan_aggregation_formula_s(wan(1, 20), 4, FederatedAggregation::kCentral, s),
              1e-6);
  // The aggregator sends and receives 3 updates, every other site one.
  EXPECT_DOUBLE_EQ(r[2], 3 * s);
  EXPECT_DOUBLE_EQ(r[6], 3 * s);
  for (int i = 1; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(r[2 + i], s);
    EXPECT_DOUBLE_EQ(r[6 + i], s);
  }
}

TEST(FederatedWan, RingMatchesFormulaAndHandBytes) {
  const double s = 500 * kMB;
  const auto r = run(wan(1, 20), 4, {0, 1, 2, 3}, FederatedAggregation::kRing, s);
  // 2 x 3 steps of (20 ms + 125 MB / 125 MB/s) = 6.12 s.
  EXPECT_NEAR(r[0], 6.12, 1e-6);
  // Every site sends and receives 2 (p - 1) / p x S = 1.5 S.
  for (int i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(r[2 + i], 1.5 * s);
    EXPECT_DOUBLE_EQ(r[6 + i], 1.5 * s);
  }
}

TEST(FederatedWan, TenTimesTheBandwidthWithinTheLatencyBound) {
  const double s = 500 * kMB;
  for (auto a : {FederatedAggregation::kCentral, FederatedAggregation::kRing}) {
    const double slow = run(wan(1, 20), 4, {0, 1, 2, 3}, a, s)[0];
    const double fast = run(wan(10, 20), 4, {0, 1, 2, 3}, a, s)[0];
    // T = n L + B_term: ten times the bandwidth divides the bandwidth term by 10 only.
    const double latency = a == FederatedAggregation::kCentral ? 2 * 0.020 : 6 * 0.020;
    EXPECT_NEAR((slow - latency) / (fast - latency), 10.0, 1e-6);
    // By hand: the bandwidth term is 24 s (central: 2 x 3 x 4 s) or 6 s (ring: 6 x 1 s).
    const double bandwidth = a == FederatedAggregation::kCentral ? 24.0 : 6.0;
    EXPECT_NEAR(slow / fast, (latency + bandwidth) / (latency + bandwidth / 10), 1e-6);
    EXPECT_LT(slow / fast, 10.0);
  }
}

TEST(FederatedWan, DroppedSitesAndOneSite) {
  const double s = 100 * kMB;
  // org-b (1) dropped: three participants; site 1 moves nothing.
  const auto r = run(wan(1, 10), 4, {0, 2, 3}, FederatedAggregation::kCentral, s);
  EXPECT_NEAR(r[0], 2 * (0.010 + 2 * 0.8), 1e-6);
  EXPECT_DOUBLE_EQ(r[3], 0);
  EXPECT_DOUBLE_EQ(r[7], 0);
  EXPECT_DOUBLE_EQ(run(wan(1, 10), 4, {2}, FederatedAggregation::kRing, s)[0], 0);
}

TEST(FederatedWan, JitterSpreadsLatenciesDeterministically) {
  const double s = 1 * kMB;
  // Central among sites 0 and 3 of 4: their uplinks have L/2 -/+ J/4, so the pair's latency is
  // L; between sites 0 and 1: L/2 - J/4 + L/2 - J/12 = L - J/3.
  const auto w = wan(1, 20, 6);
  const double pair03 = run(w, 4, {0, 3}, FederatedAggregation::kCentral, s)[0];
  EXPECT_NEAR(pair03, 2 * (0.020 + 0.008), 1e-9);
  const double pair01 = run(w, 4, {0, 1}, FederatedAggregation::kCentral, s)[0];
  EXPECT_NEAR(pair01, 2 * (0.020 - 0.002 + 0.008), 1e-9);
}

TEST(FederatedWan, SecureAggregationAddsThreeRoundsOfKeysAndShares) {
  const double s = 100 * kMB;
  const auto plain = run(wan(1, 20), 4, {0, 1, 2, 3}, FederatedAggregation::kCentral, s);
  const auto secure = run(wan(1, 20), 4, {0, 1, 2, 3}, FederatedAggregation::kCentral, s, true);
  // Each site sends 3 x (2 a_K + 2 a_S + a_S) = 3 x 160 bytes more: to each other site 160.
  EXPECT_DOUBLE_EQ(secure[3] - plain[3], 3 * (2 * kSecAggKeyBytes + 3 * kSecAggShareBytes));
  // Three rounds of a one-way latency plus a few hundred bytes at 125 MB/s.
  EXPECT_NEAR(secure[1], 3 * 0.020, 1e-5);
  EXPECT_NEAR(secure[0] - plain[0], secure[1], 1e-9);
}

TEST(FederatedWan, RoundIsKLocalStepsPlusTheAggregation) {
  strategies::FederatedSpec f;
  f.local_steps = 10;
  WanAggregation w;
  w.seconds = 24.0;
  w.sent_bytes = {3, 1};
  w.received_bytes = {3, 1};
  const FederatedReport r =
      federated_round(f, {"a", "b"}, {0, 1}, {{8, 0.5, 64}, {8, 0.5, 64}}, 1e9, "fp32", w, 100);
  EXPECT_DOUBLE_EQ(r.round_s, 10 * 0.5 + 24.0);
  EXPECT_DOUBLE_EQ(r.samples_per_round, 64 * 2 * 10);
  EXPECT_DOUBLE_EQ(r.time_to_rounds_s, 100 * 29.0);
  // Synchronous data parallelism: an all-reduce after every one of the K steps.
  f.aggregation = FederatedAggregation::kSyncDp;
  const FederatedReport sync =
      federated_round(f, {"a", "b"}, {0, 1}, {{8, 0.5, 64}, {8, 0.5, 64}}, 1e9, "bf16", w, 100);
  EXPECT_DOUBLE_EQ(sync.round_s, 10 * (0.5 + 24.0));
  EXPECT_DOUBLE_EQ(federated_report_to_json(sync)["sites"][0]["sent_bytes_per_round"], 30.0);
}

TEST(FederatedWan, SitesOfDifferentSizesWaitForTheSlowestParticipant) {
  strategies::FederatedSpec f;
  f.local_steps = 4;
  WanAggregation w;
  w.seconds = 2.0;
  w.sent_bytes = {1, 1, 1};
  w.received_bytes = {1, 1, 1};
  // Site c (4 GPUs, the slowest step) is not a participant: b's 0.7 s gates the round.
  const std::vector<SiteStep> steps = {{8, 0.5, 64}, {16, 0.7, 128}, {4, 0.9, 32}};
  const FederatedReport r = federated_round(f, {"a", "b", "c"}, {0, 1}, steps, 1e9, "fp32", w,
                                            10);
  EXPECT_DOUBLE_EQ(r.local_step_s, 0.7);
  EXPECT_DOUBLE_EQ(r.round_s, 4 * 0.7 + 2.0);
  EXPECT_DOUBLE_EQ(r.samples_per_round, 4 * (64 + 128));
  const json::Json j = federated_report_to_json(r);
  EXPECT_EQ(j["sites"][1]["gpus"], 16);
  EXPECT_DOUBLE_EQ(j["sites"][2]["local_step_s"].get<double>(), 0.9);
  const FederatedReport all = federated_round(f, {"a", "b", "c"}, {0, 1, 2}, steps, 1e9, "fp32",
                                              w, 10);
  EXPECT_DOUBLE_EQ(all.local_step_s, 0.9);
  EXPECT_NE(render_federated_report(all).find("16 GPUs, step 0.700 s"), std::string::npos)
      << render_federated_report(all);
}

TEST(FederatedHe, PaillierCostsAreTheMeasuredOnesUnlessGiven) {
  strategies::HomomorphicSpec h;
  EXPECT_DOUBLE_EQ(paillier_costs(h).encrypt_s, kPaillierMeasured[1].encrypt_s);
  h.key_bits = 1024;
  EXPECT_DOUBLE_EQ(paillier_costs(h).decrypt_s, kPaillierMeasured[0].decrypt_s);
  h.add_s = 1e-3;
  EXPECT_DOUBLE_EQ(paillier_costs(h).add_s, 1e-3);
  EXPECT_DOUBLE_EQ(paillier_costs(h).encrypt_s, kPaillierMeasured[0].encrypt_s);
  // The measured costs more than double from one key size to the next.
  for (int i = 0; i < 2; ++i) {
    EXPECT_GT(kPaillierMeasured[i + 1].encrypt_s, 2 * kPaillierMeasured[i].encrypt_s);
    EXPECT_GT(kPaillierMeasured[i].encrypt_s, kPaillierMeasured[i].decrypt_s);
  }
}

TEST(FederatedHe, AggregationCostsFollowTheirFormulas) {
  strategies::HomomorphicSpec h;
  h.key_bits = 2048;
  h.values_per_ciphertext = 4;
  h.cores = 8;
  h.encrypt_s = 0.01;
  h.add_s = 1e-5;
  h.decrypt_s = 0.002;
  const HeAggregation a = he_aggregation(h, 1001, 4);
  EXPECT_DOUBLE_EQ(a.ciphertexts, 251);  // ceil(1001 / 4)
  EXPECT_DOUBLE_EQ(a.ciphertext_bytes, 251 * 512.0);
  EXPECT_DOUBLE_EQ(a.encrypt_s, 251 * 0.01 / 8);
  EXPECT_DOUBLE_EQ(a.add_s, 3 * 251 * 1e-5 / 8);
  EXPECT_DOUBLE_EQ(a.decrypt_s, 251 * 0.002 / 8);
  EXPECT_DOUBLE_EQ(a.seconds(), a.encrypt_s + a.add_s + a.decrypt_s);
  // Unpacked, Paillier 2048 turns each 4-byte value into 512 bytes: 128x the fp32 update.
  h.values_per_ciphertext = 1;
  EXPECT_DOUBLE_EQ(he_aggregation(h, 1000, 2).ciphertext_bytes / (1000 * 4.0), 128.0);
  EXPECT_DOUBLE_EQ(dp_noise_seconds(1e9, 2e12), 3 * 4e9 / 2e12);
}

TEST(FederatedHe, RoundAddsHeAndDpComputeToEachAggregation) {
  strategies::FederatedSpec f;
  f.local_steps = 10;
  f.homomorphic_encryption = strategies::HomomorphicSpec{};
  WanAggregation w;
  w.seconds = 24.0;
  w.sent_bytes = {3, 1};
  w.received_bytes = {3, 1};
  HeAggregation he;
  he.ciphertexts = 10;
  he.ciphertext_bytes = 5120;
  he.encrypt_s = 1;
  he.add_s = 2;
  he.decrypt_s = 3;
  const FederatedReport r =
      federated_round(f, {"a", "b"}, {0, 1}, {{8, 0.5, 64}, {8, 0.5, 64}}, 40, "fp32", w, 100, he,
                      0.25);
  EXPECT_DOUBLE_EQ(r.aggregation_s, 24.0 + 6.0 + 0.25);
  EXPECT_DOUBLE_EQ(r.round_s, 5.0 + 30.25);
  const json::Json j = federated_report_to_json(r);
  EXPECT_DOUBLE_EQ(j["homomorphic_encryption"]["inflation"].get<double>(), 5120.0 / 40);
  EXPECT_DOUBLE_EQ(j["dp_noise_s"].get<double>(), 0.25);
  EXPECT_NE(render_federated_report(r).find("HE (Paillier 2048)"), std::string::npos);
}

}  // namespace
}  // namespace strata::sim
