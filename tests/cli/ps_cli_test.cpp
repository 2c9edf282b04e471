// `strata simulate` and `strata plan` of parameter-server strategies end to end
// (docs/parameter-server.md): report.json's "ps" section for the recommendation model and a GPT,
// consistency models ordered by waiting, bad specs refused naming the field with nothing
// written, and the commands without a parameter-server mode refusing it.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/json.hpp"
#include "tests/cli/strata_test.hpp"

namespace {

using strata::json::Json;
using strata::testing::Result;

class PsCli : public strata::testing::StrataTest {
 protected:
  // report.json of the ctr model on one DGX A100 node (8 workers, 4 servers).
  Json simulate_ctr(const std::string& strategy, const std::string& sets = "") {
    const std::string json = (dir_ / "report.json").string();
    const Result r =
        run("simulate --quiet --model ctr-criteo --cluster dgx-a100-128n --nodes 1 "
            "--strategy " +
            strategy + " --steps 12 --json " + json + " " + sets);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Parameter server ("), std::string::npos) << r.out;
    return strata::json::parse_file(json);
  }
};

TEST_F(PsCli, RecommendationModelReportHasThePsSection) {
  const Json report = simulate_ctr("ctr-ps-4servers");
  EXPECT_EQ(report.at("kind"), "strata.ps_report");
  EXPECT_EQ(report.at("model"), "ctr-criteo");
  const Json& ps = report.at("ps");
  EXPECT_EQ(ps.at("workers"), 8);
  EXPECT_EQ(ps.at("servers"), 4);
  EXPECT_EQ(ps.at("steps"), 12);
  EXPECT_EQ(ps.at("model_kind"), "recommendation");
  EXPECT_EQ(ps.at("max_staleness"), 0);
  ASSERT_EQ(ps.at("per_server").size(), 4u);
  ASSERT_EQ(ps.at("per_worker").size(), 8u);
  // Every server gets each worker's push once a step: 8 x its per-worker bytes.
  for (const Json& s : ps.at("per_server")) {
    EXPECT_NEAR(s.at("bytes_in_per_step").get<double>(),
                8 * s.at("push_bytes_per_worker_step").get<double>(), 1e-3);
    EXPECT_GT(s.at("touched_rows_per_worker_step").get<double>(), 0);
    EXPECT_GT(s.at("load").get<double>(), 0);
  }
  EXPECT_NEAR(ps.at("samples_per_s").get<double>() * ps.at("mean_step_s").get<double>(), 2048,
              1e-6);
  EXPECT_GT(ps.at("mean_step_s").get<double>(), ps.at("worker_compute_s").get<double>());
}

TEST_F(PsCli, StaleConsistencyWaitsLess) {
  const auto wait = [](const Json& r) {
    return r.at("ps").at("mean_wait_s_per_step").get<double>();
  };
  const Json bsp = simulate_ctr("ctr-ps-4servers", "--set strategy.ps.compute_jitter=0.5");
  const Json ssp = simulate_ctr("ctr-ps-4servers-ssp", "--set strategy.ps.compute_jitter=0.5");
  const Json asp = simulate_ctr("ctr-ps-4servers-asp", "--set strategy.ps.compute_jitter=0.5");
  EXPECT_GT(wait(bsp), wait(ssp));
  EXPECT_GE(wait(ssp), wait(asp));
  EXPECT_LE(ssp.at("ps").at("max_staleness").get<int>(), 2);
}

TEST_F(PsCli, GptReportIsOneWorkersStepWithThePsSection) {
  const std::string json = (dir_ / "report.json").string();
  const Result r =
      run("simulate --quiet --model gpt-tiny --cluster local-cpu --strategy "
          "tiny-dp2 --gpus 2 --steps 6 --json " +
          json + " --set 'strategy.ps={\"servers\":2,\"placement\":\"colocated\"}'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json report = strata::json::parse_file(json);
  EXPECT_EQ(report.at("world_size"), 1);  // one worker's step
  const Json& ps = report.at("ps");
  EXPECT_EQ(ps.at("model_kind"), "gpt");
  EXPECT_EQ(ps.at("workers"), 2);
  // The replica's step less its optimizer tasks (the servers run the optimizer).
  const double step = report.at("step_time_s").get<double>();
  const double compute = ps.at("worker_compute_s").get<double>();
  EXPECT_LT(compute, step);
  EXPECT_GT(compute, 0.5 * step);
  EXPECT_NE(ps.at("compute_source").get<std::string>().find("less its optimizer tasks"),
            std::string::npos);
  EXPECT_EQ(ps.at("spec").at("consistency"), "bsp");
  // Servers on their own hosts need a network, which local-cpu does not have.
  const Result separate =
      run("simulate --quiet --model gpt-tiny --cluster local-cpu --strategy "
          "tiny-dp2 --gpus 2 --set 'strategy.ps={\"servers\":2}'");
  EXPECT_EQ(separate.exit_code, 1);
  EXPECT_NE(separate.err.find("cluster.inter_node.nics_per_node = 0"), std::string::npos)
      << separate.err;
}

TEST_F(PsCli, BadSpecsAreRefusedAndNothingIsWritten) {
  const std::filesystem::path json = dir_ / "report.json";
  const Result zero =
      run("simulate --quiet --model ctr-criteo --cluster dgx-a100-128n --nodes 1 "
          "--strategy ctr-ps-4servers --set strategy.ps.servers=0 --json " +
          json.string());
  EXPECT_EQ(zero.exit_code, 1);
  EXPECT_NE(zero.err.find("strategy.ps.servers = 0"), std::string::npos) << zero.err;
  EXPECT_FALSE(std::filesystem::exists(json));
  const Result stale =
      run("simulate --quiet --model ctr-criteo --cluster dgx-a100-128n --nodes 1 "
          "--strategy ctr-ps-4servers-ssp --set strategy.ps.staleness=-1 --json " +
          json.string());
  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_NE(stale.err.find("strategy.ps.staleness = -1"), std::string::npos) << stale.err;
  EXPECT_FALSE(std::filesystem::exists(json));
  const Result no_ps =
      run("simulate --quiet --model ctr-criteo --cluster local-cpu --strategy "
          "tiny-1rank --gpus 1");
  EXPECT_EQ(no_ps.exit_code, 1);
  EXPECT_NE(no_ps.err.find("recommendation model"), std::string::npos) << no_ps.err;
  const Result tp =
      run("plan --model gpt-tiny --cluster local-cpu --strategy tiny-tp2 --gpus 2 "
          "--set 'strategy.ps={\"servers\":2}'");
  EXPECT_EQ(tp.exit_code, 1);
  EXPECT_NE(tp.err.find("strategy.tp = 2"), std::string::npos) << tp.err;
}

TEST_F(PsCli, PlanSummarisesTheServers) {
  const std::string json = (dir_ / "plan.json").string();
  const Result r =
      run("plan --model ctr-criteo --cluster dgx-a100-128n --nodes 1 --strategy "
          "ctr-ps-4servers --json " +
          json);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json s = strata::json::parse_file(json);
  EXPECT_EQ(s.at("kind"), "strata.ps_plan");
  EXPECT_EQ(s.at("per_server").size(), 4u);
  double params = 0;
  for (const Json& row : s.at("per_server")) params += row.at("params").get<double>();
  EXPECT_DOUBLE_EQ(params, s.at("params").get<double>());
  const Result text =
      run("plan --model ctr-criteo --cluster dgx-a100-128n --nodes 1 "
          "--strategy ctr-ps-4servers");
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("Parameter-server plan"), std::string::npos) << text.out;
}

TEST_F(PsCli, CommandsWithoutAParameterServerModeRefuseIt) {
  const std::string ps = " --set 'strategy.ps={\"servers\":2}'";
  for (const std::string& command :
       {std::string("profile ops --model gpt-tiny --strategy tiny-dp2 --gpus 2 --out ") +
            (dir_ / "p.json").string(),
        std::string("sweep --model gpt-tiny --cluster local-cpu --strategy tiny-dp2 --gpus 2 "
                    "--vary strategy.micro_batch_size=1,2 --out ") +
            (dir_ / "sweep").string()}) {
    const Result r = run(command + ps);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.err;
    EXPECT_NE(r.err.find("strategy.ps (a parameter server) is not supported"), std::string::npos)
        << command << "\n"
        << r.err;
  }
  // `strata run` trains only a recommendation model over parameter servers.
  const Result gpt = run("run --model gpt-tiny --strategy tiny-dp2" + ps);
  EXPECT_EQ(gpt.exit_code, 1);
  EXPECT_NE(gpt.err.find("a GPT over parameter servers is simulated only"), std::string::npos)
      << gpt.err;
  const Result validate = run("validate --model gpt-tiny --strategy tiny-dp2 --np 2 --out " +
                              (dir_ / "v").string() + ps);
  EXPECT_EQ(validate.exit_code, 1);
  EXPECT_NE(validate.err.find("not supported by `strata validate`"), std::string::npos)
      << validate.err;
  // A recommendation model outside plan and simulate: refused by the transformer reader.
  const Result rec = run("validate --model ctr-criteo --strategy ctr-ps-4servers --np 2 --out " +
                         (dir_ / "v").string());
  EXPECT_EQ(rec.exit_code, 1);
  EXPECT_NE(rec.err.find("recommendation model"), std::string::npos) << rec.err;
}

}  // namespace
