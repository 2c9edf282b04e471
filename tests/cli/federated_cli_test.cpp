// `strata simulate` of a federated strategy end to end (docs/federated.md): the round in
// report.json is K local steps on one site's GPUs plus the WAN aggregation, which follows the
// bandwidth; bad combinations are refused, and so is a federated strategy by the commands that
// do not run one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "common/json.hpp"
#include "tests/cli/strata_test.hpp"

namespace {

using strata::json::Json;
using strata::testing::Result;

class FederatedCli : public strata::testing::StrataTest {
 protected:
  // report.json's "federated" section of gpt2-124m on four-sites-a100, plus the step time.
  Json simulate(const std::string& sets) {
    const std::string json = (dir_ / "report.json").string();
    const Result r = run(
        "simulate --quiet --model gpt2-124m --cluster four-sites-a100 --strategy "
        "gpt2-fedavg-4sites --rounds 50 --json " + json + " " + sets);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Json report = strata::json::parse_file(json);
    Json f = report.at("federated");
    f["step_time_s"] = report.at("step_time_s");
    f["world_size"] = report.at("world_size");
    return f;
  }
};

TEST_F(FederatedCli, RoundIsKStepsOfOneSitePlusTheWanAggregation) {
  const Json f = simulate("--set strategy.federated.local_steps=10");
  EXPECT_EQ(f.at("world_size"), 8);  // one site's GPUs
  const double step = f.at("step_time_s").get<double>();
  EXPECT_DOUBLE_EQ(f.at("local_step_s").get<double>(), step);
  const double agg = f.at("aggregation_s").get<double>();
  EXPECT_NEAR(f.at("round_s").get<double>(), 10 * step + agg, 1e-9);
  EXPECT_NEAR(f.at("time_to_rounds_s").get<double>(), 50 * (10 * step + agg), 1e-6);
  // fp32 update; central over 4 sites at 1 Gb/s, 20 ms: 2 x (L + 3 S / B), S rounded up to
  // whole bytes per flow.
  EXPECT_EQ(f.at("update_dtype"), "fp32");
  const double s = f.at("update_bytes").get<double>();
  EXPECT_NEAR(agg, 2 * (0.020 + 3 * s / 125e6), 1e-6);
  EXPECT_DOUBLE_EQ(f.at("sites")[0].at("sent_bytes_per_round").get<double>(), 3 * s);
  EXPECT_DOUBLE_EQ(f.at("sites")[2].at("sent_bytes_per_round").get<double>(), s);
  EXPECT_DOUBLE_EQ(f.at("samples_per_round").get<double>(), 64 * 4 * 10);
}

TEST_F(FederatedCli, SyncDpSendsBf16GradientsEveryStepAndTenTimesTheBandwidthHelps) {
  const Json sync = simulate("--set strategy.federated.aggregation=sync_dp");
  EXPECT_EQ(sync.at("update_dtype"), "bf16");
  const Json fedavg = simulate("--set strategy.federated.aggregation=ring");
  EXPECT_DOUBLE_EQ(2 * sync.at("update_bytes").get<double>(),
                   fedavg.at("update_bytes").get<double>());
  const Json fast = simulate(
      "--set strategy.federated.aggregation=ring --set cluster.wan.bandwidth_Gbps=10");
  // Ring: 6 latencies of 20 ms and a bandwidth term divided by ten.
  const double slow_bw = fedavg.at("aggregation_s").get<double>() - 0.12;
  const double fast_bw = fast.at("aggregation_s").get<double>() - 0.12;
  EXPECT_NEAR(slow_bw / fast_bw, 10.0, 1e-6);
}

TEST_F(FederatedCli, HomomorphicEncryptionInflatesTheWanBytesAndAddsItsCompute) {
  const Json plain = simulate("");
  const Json he = simulate(
      "--set 'strategy.federated.homomorphic_encryption={\"key_bits\":2048,\"cores\":64,"
      "\"values_per_ciphertext\":16}'");
  const Json& h = he.at("homomorphic_encryption");
  const double values = plain.at("update_bytes").get<double>() / 4;  // fp32
  const double c = std::ceil(values / 16);
  EXPECT_DOUBLE_EQ(h.at("ciphertexts").get<double>(), c);
  EXPECT_DOUBLE_EQ(h.at("ciphertext_bytes").get<double>(), c * 512);
  // 16 fp32 values (64 bytes) per 512-byte ciphertext: 8x the bytes on the WAN.
  EXPECT_NEAR(h.at("inflation").get<double>(), 8.0, 1e-3);
  EXPECT_NEAR(he.at("sites")[2].at("sent_bytes_per_round").get<double>(), c * 512, 1.0);
  const double compute =
      c * (9.49e-3 + 2.54e-3) / 64 + 3 * c * 4.70e-6 / 64;  // encrypt, decrypt; 3 adds
  const double wan = 2 * (0.020 + 3 * c * 512 / 125e6);
  EXPECT_NEAR(he.at("aggregation_s").get<double>(), wan + compute, 1e-3);
  EXPECT_EQ(plain.at("homomorphic_encryption"), nullptr);
  // DP noise: three passes of the fp32 update at the A100's memory bandwidth.
  const Json dp = simulate("--set strategy.federated.dp_noise.sigma=0.5");
  EXPECT_GT(dp.at("dp_noise_s").get<double>(), 0.0);
  EXPECT_NEAR(dp.at("aggregation_s").get<double>() - plain.at("aggregation_s").get<double>(),
              dp.at("dp_noise_s").get<double>(), 1e-9);
  EXPECT_EQ(plain.at("dp_noise_s").get<double>(), 0.0);
}

TEST_F(FederatedCli, ALargerSiteRunsMoreReplicasAndTheRoundWaitsForTheSlowest) {
  const Json even = simulate("");
  // org-b gets two nodes: dp 16 and 128 sequences per step, its step simulated on its own.
  const Json big = simulate("--set cluster.node_groups.1.nodes=2");
  const Json& b = big.at("sites")[1];
  EXPECT_EQ(b.at("gpus"), 16);
  EXPECT_DOUBLE_EQ(b.at("batch").get<double>(), 128);
  EXPECT_DOUBLE_EQ(big.at("sites")[0].at("batch").get<double>(), 64);
  EXPECT_DOUBLE_EQ(big.at("samples_per_round").get<double>(), 10 * (3 * 64 + 128));
  const double first = big.at("sites")[0].at("local_step_s").get<double>();
  const double second = b.at("local_step_s").get<double>();
  EXPECT_DOUBLE_EQ(first, even.at("local_step_s").get<double>());
  // The same per-GPU work with a larger data-parallel all-reduce: not faster.
  EXPECT_GE(second, first * 0.999);
  EXPECT_DOUBLE_EQ(big.at("local_step_s").get<double>(), std::max(first, second));
  // A site whose GPUs the model-parallel grid does not divide is refused.
  const Result bad = run(
      "simulate --quiet --model gpt2-124m --cluster four-sites-a100 --strategy "
      "gpt2-fedavg-4sites --set strategy.tp=8 --set strategy.dp=1 --set "
      "strategy.global_batch_size=8 --set cluster.node_groups.2.gpus_per_node=4");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("not a multiple of the strategy's tp x pp x cp = 8"), std::string::npos)
      << bad.err;
}

TEST_F(FederatedCli, RefusesOneSiteAndRoundsWithoutFederated) {
  const Result one = run(
      "simulate --quiet --model gpt2-124m --cluster dgx-a100-128n --nodes 1 --strategy "
      "gpt2-fedavg-4sites");
  EXPECT_EQ(one.exit_code, 1);
  EXPECT_NE(one.err.find("strategy.federated"), std::string::npos) << one.err;
  EXPECT_NE(one.err.find("two or more sites"), std::string::npos) << one.err;
  const Result rounds = run(
      "simulate --quiet --model gpt-tiny --cluster local-cpu --strategy tiny-1rank --gpus 1 "
      "--rounds 5");
  EXPECT_EQ(rounds.exit_code, 2);
  EXPECT_NE(rounds.err.find("--rounds is for a federated strategy"), std::string::npos)
      << rounds.err;
  const Result gpus = run(
      "simulate --quiet --model gpt2-124m --cluster four-sites-a100 --strategy "
      "gpt2-fedavg-4sites --gpus 16");
  EXPECT_EQ(gpus.exit_code, 1);
  EXPECT_NE(gpus.err.find("one site's GPUs"), std::string::npos) << gpus.err;
}

// `strata run` trains a federated strategy (tests/executor/executor_mpi_test.cpp); the commands
// that do not know how say so, naming the command, instead of running it as something else.
TEST_F(FederatedCli, ValidateSearchProfileOpsAndSwitchingRefuseAFederatedStrategy) {
  const std::string specs = " --model gpt-tiny --cluster local-cpu-sites --strategy tiny-fedavg";
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"validate --np 1" + specs, "`strata validate`"},
      {"search --out " + (dir_ / "search").string() + specs, "`strata search`"},
      {"profile ops --out " + (dir_ / "ops.json").string() + specs, "`strata profile ops`"},
      {"run --model gpt-tiny --cluster local-cpu-sites --switch " +
           write("sw.json", R"({"name": "fed-then-one", "source": "test", "phases": [
                {"strategy": "tiny-fedavg", "steps": 2}, {"strategy": "tiny-1rank", "steps": 2}]})"),
       "`strata simulate --switch` and `strata run --switch`"}};
  for (const auto& [command, name] : commands) {
    const Result r = run(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.err;
    EXPECT_NE(r.err.find("strategy.federated is not supported by " + name), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("`strata run` trains one"), std::string::npos) << r.err;
  }
}

}  // namespace
