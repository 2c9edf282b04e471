// The executor's promise, checked end to end under mpirun: every bundled tiny-* strategy trains
// gpt-tiny with the losses of the one-rank run (within 1e-4 relative, 10 steps), the loss falls,
// a world size that does not match is refused before any work, and a rank that dies makes the
// others stop with an error instead of hanging. A mixture-of-experts gpt-tiny under expert
// parallelism (with dp, tp and sequence parallelism, pp, a capacity, the auxiliary loss, shared
// experts) trains with the one-rank run's losses and gradients too. Checkpoints resume exactly,
// survive a crash mid-save, and resume under another strategy (resharded); a run switches
// strategies in memory with the losses of a checkpoint round-trip (hot switching). A federated
// strategy runs its sites as groups of ranks (FedAvg) and lists each round's participants.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/json.hpp"
#include "tests/executor/gradients.hpp"

namespace fs = std::filesystem;

namespace {

struct Result {
  int exit_code = -1;
  std::string out, err;
  strata::json::Json json;
};

class ExecutorMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    // CI runs as root; Open MPI refuses that without these two variables.
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("strata-exec-" + std::to_string(::getpid()) + "-" + std::string(info->name()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `mpirun -np N strata run ...`, bounded by `timeout` so a hang fails instead of blocking CI.
  Result run(int ranks, const std::string& args, const std::string& env = "") {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr", js = dir_ / "out.json";
    fs::remove(js);
    // Under AddressSanitizer, Open MPI's own allocations (never freed at MPI_Finalize, in
    // plugins unloaded before LeakSanitizer can name them) would fail every rank: leak checking
    // is off for the ranks; the executor's own code is leak-checked by executor_tests.
    const char* asan = std::getenv("ASAN_OPTIONS");
    const std::string sanitizer =
        "ASAN_OPTIONS=" + std::string(asan ? asan : "") + ":detect_leaks=0 ";
    const std::string cmd = sanitizer + env + " timeout 300 " + std::string(STRATA_MPIEXEC) +
                            " --oversubscribe -np " + std::to_string(ranks) + " " + STRATA_EXE +
                            " run " + args + " --json " + js.string() + " >" + out.string() +
                            " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read(out);
    r.err = read(err);
    if (fs::exists(js)) r.json = strata::json::Json::parse(read(js));
    return r;
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // The bundled strategy, or tiny-dp4 (dp 4, which no bundled strategy is) written to a file.
  std::string strategy(const std::string& name) {
    if (name != "tiny-dp4") return name;
    const fs::path spec = dir_ / "tiny-dp4.json";
    std::ofstream(spec) << R"({"name": "tiny-dp4", "dp": 4, "micro_batch_size": 2,
                              "global_batch_size": 8, "precision": "fp32"})";
    return spec.string();
  }

  fs::path dir_;
};

std::vector<double> losses(const Result& r) {
  std::vector<double> out;
  if (r.json.contains("losses")) {
    for (const auto& l : r.json["losses"]) out.push_back(l.get<double>());
  }
  return out;
}

// Gradients of an N-rank run agree with one rank's to float rounding: measured up to 8.1e-7 of
// each tensor's largest element (tiny-pp2-gpipe; summation orders differ), 2.9e-7 to 6.2e-7 for
// the others. The tolerance is 5x the largest.
constexpr double kGradientTolerance = 4e-6;

struct Case {
  const char* strategy;
  int ranks;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.strategy << " on " << c.ranks << " ranks";
}

class Equivalence : public ExecutorMpi, public ::testing::WithParamInterface<Case> {};

TEST_P(Equivalence, TenStepsMatchTheOneRankLosses) {
  const Case c = GetParam();
  const Result ref = run(1, "--model gpt-tiny --strategy tiny-1rank --steps 10 --dump-gradients " +
                                (dir_ / "ref").string());
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const Result got = run(c.ranks, std::string("--model gpt-tiny --strategy ") + c.strategy +
                                      " --steps 10 --dump-gradients " + (dir_ / "got").string());
  ASSERT_EQ(got.exit_code, 0) << got.out << got.err;
  EXPECT_EQ(got.json["world_size"].get<int>(), c.ranks);
  const auto a = losses(ref), b = losses(got);
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), 10u);
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_NEAR(b[k], a[k], 1e-4 * a[k]) << "step " << k + 1;
  }
  EXPECT_LT(b.back(), b.front() - 0.5) << "the loss does not fall";
  // Every rank allocated the Plan's buffers when the Plan says: its measured peak is the Plan's.
  ASSERT_EQ(got.json["memory"].size(), static_cast<std::size_t>(c.ranks));
  for (const auto& m : got.json["memory"]) {
    EXPECT_EQ(m["measured_peak_bytes"], m["planned_peak_bytes"]) << "rank " << m["rank"];
    EXPECT_EQ(m["measured_static"], m["planned_static"]) << "rank " << m["rank"];
  }
  // The gradients before the first optimizer step, every parameter reassembled from its shards
  // and ranks, equal the one-rank run's (AdamW hides their scale from the losses).
  const strata::test::Gradients g1 = strata::test::load_gradients(dir_ / "ref");
  const strata::test::Gradients gn = strata::test::load_gradients(dir_ / "got");
  EXPECT_TRUE(gn.problems.empty()) << gn.problems.front();
  ASSERT_EQ(gn.tensors.size(), g1.tensors.size());
  double worst = 0;
  for (const auto& [name, want] : g1.tensors) {
    ASSERT_EQ(gn.tensors.count(name), 1u) << name;
    const double d = strata::test::relative_difference(gn.tensors.at(name), want);
    worst = std::max(worst, d);
    EXPECT_LE(d, kGradientTolerance) << name;
  }
  std::printf("largest relative gradient difference: %.3g\n", worst);
}

INSTANTIATE_TEST_SUITE_P(
    Tiny, Equivalence,
    ::testing::Values(
        Case{"tiny-dp2", 2}, Case{"tiny-dp2-buckets", 2}, Case{"tiny-dp2-no-overlap", 2},
        Case{"tiny-tp2", 2}, Case{"tiny-pp2-gpipe", 2}, Case{"tiny-pp2-1f1b", 2},
        Case{"tiny-pp2-interleaved", 2}, Case{"tiny-recompute-full", 2},
        Case{"tiny-recompute-selective", 2}, Case{"tiny-dp2-tp2", 4}, Case{"tiny-tp2-pp2", 4},
        Case{"tiny-pp2-scatter-gather", 4}, Case{"tiny-dp2-tp2-pp2", 8}, Case{"tiny-zero1", 2},
        Case{"tiny-zero2", 2}, Case{"tiny-zero3", 2}, Case{"tiny-dp2-tp2-zero3", 4},
        Case{"tiny-tp2-sp", 2}, Case{"tiny-dp2-tp2-pp2-sp", 8}, Case{"tiny-dp2-tp2-sp-zero2", 4},
        Case{"tiny-dp2-pp2-zero1", 4}, Case{"tiny-dp2-pp2-zero3", 4},
        Case{"tiny-dp2-tp2-layer-tp", 4}, Case{"tiny-fused-attention", 1},
        Case{"tiny-tp2-pp2-fused-attention", 4}, Case{"tiny-zero3-prefetch0", 2},
        Case{"tiny-zero3-prefetch2", 2}, Case{"tiny-dp4-hsdp2", 4}, Case{"tiny-dp4-tp2-hsdp2", 8},
        Case{"tiny-dp4-pp2-hsdp2", 8}, Case{"tiny-cp2", 2}, Case{"tiny-cp2-all-gather", 2},
        Case{"tiny-cp4", 4}, Case{"tiny-dp2-tp2-cp2", 8}, Case{"tiny-cp2-pp2-recompute-full", 4},
        Case{"tiny-tp2-cp2-all-gather-selective", 4}, Case{"tiny-cp2-zero1", 2},
        Case{"tiny-dp2-cp2-zero3", 4}, Case{"tiny-pp2-uneven", 2}, Case{"tiny-tp2-sp-overlap", 2},
        Case{"tiny-tp4-pp2-overlap-recompute", 8}, Case{"tiny-dp2-tp2-cp2-overlap", 8},
        Case{"tiny-pp2-zb-h1", 2}, Case{"tiny-pp4-zb-h2", 4}, Case{"tiny-dp2-tp2-pp2-sp-zb-h1", 8},
        Case{"tiny-dp2-pp2-zero3-zb-h2", 4}, Case{"tiny-pp2-zb-v", 2},
        Case{"tiny-dp2-tp2-pp2-zb-v", 8},
        // Per-group strategies: stages placed on the node groups of a CPU cluster, tp per stage.
        Case{"tiny-tp2-pp2-stages --cluster local-cpu-2groups", 4},
        Case{"tiny-dp2-pp2-stages --cluster local-cpu-2groups", 4}),
    [](const ::testing::TestParamInfo<Case>& p) {
      std::string name = p.param.strategy;
      name = name.substr(0, name.find(' '));
      for (char& ch : name) {
        if (ch == '-') ch = '_';
      }
      return name;
    });

// Mixture of experts: gpt-tiny with 4 experts of width 32, 2 per token (dropless but one case,
// the auxiliary loss in two), under expert parallelism trains with the one-rank run's losses
// and gradients: the experts, dispatched by the ragged all-to-all over ep, initialised by their
// global index.
struct MoeCase {
  const char* name;
  const char* strategy;  // a bundled tiny-* strategy and --set overrides
  int ranks;
  const char* both = "";  // overrides of both runs (a capacity)
};
void PrintTo(const MoeCase& c, std::ostream* os) { *os << c.name << " on " << c.ranks << " ranks"; }

class MoeEquivalence : public ExecutorMpi, public ::testing::WithParamInterface<MoeCase> {};

constexpr const char* kMoeModel =
    "--model gpt-tiny --set model.num_experts=4 --set model.num_experts_per_tok=2 "
    "--set model.moe_intermediate_size=32 --steps 4 ";
// DeepSeek-style shared experts: one MLP of width 32 beside the routed experts, split over tp.
constexpr const char* kShared =
    "--set model.n_shared_experts=1 --set model.shared_expert_intermediate_size=32";

TEST_P(MoeEquivalence, FourStepsMatchTheOneRankLossesAndGradients) {
  const MoeCase c = GetParam();
  const std::string model = std::string(kMoeModel) + c.both + " ";
  const Result ref =
      run(1, model + "--strategy tiny-1rank --dump-gradients " + (dir_ / "ref").string());
  ASSERT_EQ(ref.exit_code, 0) << ref.out << ref.err;
  const Result got = run(c.ranks, model + "--strategy " + c.strategy + " --dump-gradients " +
                                      (dir_ / "got").string());
  ASSERT_EQ(got.exit_code, 0) << got.out << got.err;
  const auto a = losses(ref), b = losses(got);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_NEAR(b[k], a[k], 1e-4 * a[k]) << "step " << k + 1;
  }
  EXPECT_LT(b.back(), b.front()) << "the loss does not fall";
  // The routed buffers are sized for the most rows the routing can send (memory.hpp), so the
  // measured peak is at least the Plan's (sized for the expected rows); static memory is equal.
  for (const auto& m : got.json["memory"]) {
    EXPECT_GE(m["measured_peak_bytes"].get<double>(), m["planned_peak_bytes"].get<double>());
    EXPECT_EQ(m["measured_static"], m["planned_static"]) << "rank " << m["rank"];
  }
  const strata::test::Gradients g1 = strata::test::load_gradients(dir_ / "ref");
  const strata::test::Gradients gn = strata::test::load_gradients(dir_ / "got");
  EXPECT_TRUE(g1.problems.empty()) << g1.problems.front();
  EXPECT_TRUE(gn.problems.empty()) << gn.problems.front();
  EXPECT_EQ(g1.tensors.count("layers.0.experts.3.fc2.w"), 1u) << "experts named one by one";
  // Shared experts by their own names, the MoE layers holding no dense MLP.
  const bool shared = std::string(c.both).find("n_shared_experts") != std::string::npos;
  for (const char* name : {"layers.3.shared_experts.fc1.w", "layers.3.shared_experts.fc1.b",
                           "layers.3.shared_experts.fc2.w", "layers.3.shared_experts.fc2.b"}) {
    EXPECT_EQ(g1.tensors.count(name), shared ? 1u : 0u) << name;
  }
  EXPECT_EQ(g1.tensors.count("layers.3.fc1.w"), 0u);
  ASSERT_EQ(gn.tensors.size(), g1.tensors.size());
  for (const auto& [name, want] : g1.tensors) {
    ASSERT_EQ(gn.tensors.count(name), 1u) << name;
    EXPECT_LE(strata::test::relative_difference(gn.tensors.at(name), want), kGradientTolerance)
        << name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tiny, MoeEquivalence,
    ::testing::Values(
        MoeCase{"dp2_ep2", "tiny-dp2 --set strategy.ep=2", 2},
        MoeCase{"dp4_ep4", "tiny-dp2 --set strategy.dp=4 --set strategy.ep=4", 4},
        MoeCase{"dp4_ep2", "tiny-dp2 --set strategy.dp=4 --set strategy.ep=2", 4},
        MoeCase{"tp2_sp_dp2_ep2",
                "tiny-tp2-sp --set strategy.dp=2 --set strategy.ep=2 --set strategy.expert_tp=1",
                4},
        MoeCase{"tp2_sp_dp4_ep4",
                "tiny-tp2-sp --set strategy.dp=4 --set strategy.ep=4 --set strategy.expert_tp=1",
                8},
        MoeCase{"pp2_dp2_ep2_zero1", "tiny-dp2-pp2-zero1 --set strategy.ep=2", 4},
        // Context parallelism: the expert group drawn from dp x cp as Megatron-Core draws it
        // (the cp peers first), each rank routing its part of the sequence.
        MoeCase{"cp2_ep2", "tiny-cp2 --set strategy.ep=2", 2},
        MoeCase{"dp2_cp2_ep4", "tiny-cp2 --set strategy.dp=2 --set strategy.ep=4", 4},
        // Experts split over tp (expert_tp = tp): the received rows gathered over tp, ragged.
        MoeCase{"tp2_sp_expert_tp2", "tiny-tp2-sp", 2},
        MoeCase{"tp2_sp_dp2_ep2_expert_tp2", "tiny-tp2-sp --set strategy.dp=2 --set strategy.ep=2",
                4},
        // A capacity that drops choices (each expert keeps at most 16 of a micro-batch's 128):
        // the same rows per source as one rank, so the same drops.
        MoeCase{"dp2_ep2_capacity", "tiny-dp2 --set strategy.ep=2", 2,
                "--set strategy.expert_capacity_factor=0.5"},
        // The auxiliary loss, a function of each micro-batch's rows: the same micro-batches as
        // one rank's (tp would split their rows: a loss over each tp rank's rows, not the one-rank
        // run's; tiny-dp2-pp2-zero1 has micro-batches of 1 sample, so the reference too).
        MoeCase{"dp4_ep2_aux", "tiny-dp2 --set strategy.dp=4 --set strategy.ep=2", 4,
                "--set model.router_aux_loss_coef=0.01"},
        MoeCase{"pp2_dp2_ep2_aux", "tiny-dp2-pp2-zero1 --set strategy.ep=2", 4,
                "--set model.router_aux_loss_coef=0.01 --set strategy.micro_batch_size=1"},
        // Full recompute runs the router and the dispatch again (the aux loss counted once).
        MoeCase{"pp2_dp2_ep2_recompute_full_aux",
                "tiny-recompute-full --set strategy.dp=2 --set strategy.ep=2", 4,
                "--set model.router_aux_loss_coef=0.01 --set strategy.micro_batch_size=1"},
        // Shared experts: a tp-split MLP beside the routed experts, added in the combine
        // (with the experts whole or split over tp, and over pipeline stages).
        MoeCase{"dp2_ep2_shared", "tiny-dp2 --set strategy.ep=2", 2, kShared},
        MoeCase{"tp2_sp_expert_tp2_shared", "tiny-tp2-sp", 2, kShared},
        MoeCase{"tp2_sp_dp2_ep2_shared",
                "tiny-tp2-sp --set strategy.dp=2 --set strategy.ep=2 --set strategy.expert_tp=1", 4,
                kShared},
        MoeCase{"pp2_dp2_ep2_zero1_shared", "tiny-dp2-pp2-zero1 --set strategy.ep=2", 4, kShared},
        // Zero-bubble: their input gradient added in the router's B unit, not deferred to W.
        MoeCase{"pp2_zb_h1_shared", "tiny-pp2-zb-h1", 2, kShared}),
    [](const ::testing::TestParamInfo<MoeCase>& p) { return std::string(p.param.name); });

// A bf16 run's losses `b` against the fp32 ones `a`: within 1e-3 relative, and not bit for bit.
void expect_bf16_losses(const std::vector<double>& a, const std::vector<double>& b) {
  ASSERT_EQ(b.size(), a.size());
  bool differs = false;
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_NEAR(b[k], a[k], 1e-3 * a[k]) << "step " << k + 1;
    differs = differs || b[k] != a[k];
  }
  EXPECT_TRUE(differs) << "the bf16 run gave the fp32 losses bit for bit";
}

// bf16 MoE (the router, permutation and grouped GEMMs on widened copies, the rows moved widened)
// trains to the fp32 one-rank losses within bf16 rounding. The auxiliary loss joins the step's
// loss: with coefficient 0.01 over 4 MoE layers, Switch's loss (E sum_j f_j P_j, 1 when the
// routing is balanced, near it at initialisation) adds about 0.04 to the first step's loss.
TEST_F(ExecutorMpi, MoeInBf16TrainsToTheFp32LossesAndTheAuxLossJoinsTheLoss) {
  const Result ref = run(1, std::string(kMoeModel) + "--strategy tiny-1rank");
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const Result got = run(4, std::string(kMoeModel) + "--strategy tiny-dp2 --set strategy.dp=4 "
                                                     "--set strategy.ep=2 --set "
                                                     "strategy.precision=bf16");
  ASSERT_EQ(got.exit_code, 0) << got.out << got.err;
  expect_bf16_losses(losses(ref), losses(got));
  const Result aux = run(2, std::string(kMoeModel) + "--strategy tiny-dp2 --set strategy.ep=2 "
                                                     "--set model.router_aux_loss_coef=0.01");
  ASSERT_EQ(aux.exit_code, 0) << aux.out << aux.err;
  const double added = losses(aux).at(0) - losses(ref).at(0);
  EXPECT_GT(added, 0.039);
  EXPECT_LT(added, 0.05);
}

// The zero-bubble schedules run the same ops as the fused backward, the weight-gradient GEMMs in
// later W units: the gradients before the first step equal those of 1F1B on the same stages
// within 1e-6 relative (issue 20), on one rank and on two pipeline stages.
TEST_F(ExecutorMpi, SplitBackwardGivesTheFusedBackwardsGradients) {
  struct Pair {
    int ranks;
    const char* fused;
    const char* split;
  };
  for (const Pair p :
       {Pair{1, "--strategy tiny-1rank", "--strategy tiny-1rank --set strategy.schedule=zb-h1"},
        Pair{2, "--strategy tiny-pp2-1f1b", "--strategy tiny-pp2-zb-h1"},
        Pair{2, "--strategy tiny-pp2-1f1b",
             "--strategy tiny-pp2-1f1b --set strategy.schedule=zb-h2"}}) {
    SCOPED_TRACE(p.split);
    fs::remove_all(dir_ / "fused");
    fs::remove_all(dir_ / "split");
    const Result a = run(p.ranks, std::string("--model gpt-tiny ") + p.fused +
                                      " --steps 1 --dump-gradients " + (dir_ / "fused").string());
    ASSERT_EQ(a.exit_code, 0) << a.err;
    const Result b = run(p.ranks, std::string("--model gpt-tiny ") + p.split +
                                      " --steps 1 --dump-gradients " + (dir_ / "split").string());
    ASSERT_EQ(b.exit_code, 0) << b.err;
    const strata::test::Gradients ga = strata::test::load_gradients(dir_ / "fused");
    const strata::test::Gradients gb = strata::test::load_gradients(dir_ / "split");
    ASSERT_TRUE(gb.problems.empty()) << gb.problems.front();
    ASSERT_EQ(gb.tensors.size(), ga.tensors.size());
    for (const auto& [name, want] : ga.tensors) {
      ASSERT_EQ(gb.tensors.count(name), 1u) << name;
      EXPECT_LE(strata::test::relative_difference(gb.tensors.at(name), want), 1e-6) << name;
    }
  }
}

// The losses cannot see a gradient's scale (AdamW normalises it): scaled 4x, a data-parallel run
// still matches the one-rank losses within their tolerance, and only the gradients show it.
// bf16 training (16-bit activations, weights and gradients; fp32 master weights, Adam moments,
// statistics and loss; communication widened to fp32): data, tensor, pipeline, sequence and
// context parallelism and ZeRO train to the one-rank fp32 losses within 1e-3 relative, a
// quarter of one bf16 rounding step (2^-8): the elements' rounding errors average out over the
// batch's tokens (measured: at most 2.7e-4 over these strategies and ten steps). The bf16 run is
// not the fp32 one (its losses differ), and its activations take the bf16 Plan's memory.
TEST_F(ExecutorMpi, Bf16TrainsToTheFp32LossesUnderEveryKindOfParallelism) {
  const Result ref = run(1, "--model gpt-tiny --strategy tiny-1rank --steps 10");
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const auto a = losses(ref);
  for (const Case c : {Case{"tiny-dp2-tp2-pp2", 8}, Case{"tiny-dp2-tp2-zero3", 4},
                       Case{"tiny-dp2-tp2-sp-zero2", 4}, Case{"tiny-cp2", 2},
                       Case{"tiny-tp2-pp2-fused-attention", 4}}) {
    SCOPED_TRACE(c.strategy);
    const Result got = run(c.ranks, std::string("--model gpt-tiny --strategy ") + c.strategy +
                                        " --set strategy.precision=bf16 --steps 10");
    ASSERT_EQ(got.exit_code, 0) << got.out << got.err;
    expect_bf16_losses(a, losses(got));
    for (const auto& m : got.json["memory"]) {
      EXPECT_EQ(m["measured_peak_bytes"], m["planned_peak_bytes"]) << "rank " << m["rank"];
    }
  }
}

// Synthetic tokens run a model with any vocabulary (the byte-level corpus needs 256): the first
// loss is about ln(vocab), as for any model that starts near uniform; without --data random the
// vocabulary is refused naming the field and the way out.
TEST_F(ExecutorMpi, RandomDataRunsAnyVocabulary) {
  const std::string base = "--model gpt-tiny --strategy tiny-dp2 --set model.vocab_size=1000 ";
  const Result ok = run(2, base + "--data random --steps 2");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const auto l = losses(ok);
  ASSERT_EQ(l.size(), 2u);
  EXPECT_NEAR(l[0], std::log(1000.0), 0.1);
  EXPECT_EQ(ok.json["data"], "random");
  const Result refused = run(2, base + "--steps 2");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("model.vocab_size = 1000"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--data random"), std::string::npos) << refused.err;
}

TEST_F(ExecutorMpi, AMisScaledGradientPassesTheLossesButNotTheGradients) {
  const Result ref = run(1, "--model gpt-tiny --strategy tiny-1rank --steps 10 --dump-gradients " +
                                (dir_ / "ref").string());
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  for (const char* scale : {"4", "1.001"}) {
    SCOPED_TRACE(std::string("gradient scale ") + scale);
    fs::remove_all(dir_ / "got");
    const Result got = run(2,
                           "--model gpt-tiny --strategy tiny-dp2 --steps 10 --dump-gradients " +
                               (dir_ / "got").string(),
                           std::string("STRATA_TEST_GRAD_SCALE=") + scale);
    ASSERT_EQ(got.exit_code, 0) << got.err;
    const auto a = losses(ref), b = losses(got);
    ASSERT_EQ(b.size(), a.size());
    for (std::size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(b[k], a[k], 1e-4 * a[k]);
    const auto g1 = strata::test::load_gradients(dir_ / "ref");
    const auto gn = strata::test::load_gradients(dir_ / "got");
    int caught = 0;
    for (const auto& [name, want] : g1.tensors) {
      if (strata::test::relative_difference(gn.tensors.at(name), want) > kGradientTolerance)
        ++caught;
    }
    EXPECT_EQ(caught, static_cast<int>(g1.tensors.size())) << "every tensor is off";
  }
}

// ZeRO's memory saving is real: each rank's measured optimizer states (and gradients under
// ZeRO-2, parameters under ZeRO-3) are half the dp run's on 2 ranks (up to a bucket's part being
// rounded up to whole elements), the Plan says the same, and the measured peak is the Plan's.
TEST_F(ExecutorMpi, ZeroShardsWhatItSaysInMeasuredMemory) {
  auto static_of = [&](const std::string& strategy) {
    const Result r = run(2, "--model gpt-tiny --strategy " + strategy + " --steps 1");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::array<double, 3>> out;  // per rank: params, grads, optimizer (measured)
    for (const auto& m : r.json["memory"]) {
      EXPECT_EQ(m["measured_peak_bytes"], m["planned_peak_bytes"]) << strategy;
      EXPECT_EQ(m["measured_static"], m["planned_static"]) << strategy;
      const auto& s = m["measured_static"];
      out.push_back({s["params_bytes"].get<double>(), s["grads_bytes"].get<double>(),
                     s["optimizer_bytes"].get<double>()});
    }
    EXPECT_EQ(out.size(), 2u) << strategy;
    return out;
  };
  const auto dp = static_of("tiny-dp2");
  const double slack = 64;  // a few buckets' rounding, in bytes
  for (int zero = 1; zero <= 3; ++zero) {
    const auto z = static_of("tiny-zero" + std::to_string(zero));
    for (std::size_t r = 0; r < z.size(); ++r) {
      SCOPED_TRACE("ZeRO-" + std::to_string(zero) + " rank " + std::to_string(r));
      EXPECT_NEAR(z[r][2], dp[r][2] / 2, slack);                         // optimizer
      EXPECT_NEAR(z[r][1], zero >= 2 ? dp[r][1] / 2 : dp[r][1], slack);  // gradients
      EXPECT_NEAR(z[r][0], zero >= 3 ? dp[r][0] / 2 : dp[r][0], slack);  // parameters
    }
  }
}

// Hybrid sharding divides state by the shard group, not dp: dp 4 in shard groups of 2 holds,
// measured on every rank, what ZeRO-3 over dp 2 holds (the same parts of the same buckets), and
// the measured peak is the Plan's.
TEST_F(ExecutorMpi, HybridShardingHoldsWhatItsShardGroupHolds) {
  auto static_of = [&](const std::string& strategy, int ranks) {
    const Result r = run(ranks, "--model gpt-tiny --strategy " + strategy + " --steps 1");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::set<std::array<double, 3>> out;  // distinct (params, grads, optimizer) over the ranks
    for (const auto& m : r.json["memory"]) {
      EXPECT_EQ(m["measured_peak_bytes"], m["planned_peak_bytes"]) << strategy;
      EXPECT_EQ(m["measured_static"], m["planned_static"]) << strategy;
      const auto& st = m["measured_static"];
      out.insert({st["params_bytes"].get<double>(), st["grads_bytes"].get<double>(),
                  st["optimizer_bytes"].get<double>()});
    }
    return out;
  };
  EXPECT_EQ(static_of("tiny-dp4-hsdp2", 4), static_of("tiny-zero3", 2));
}

TEST_F(ExecutorMpi, WorldSizeMismatchIsRefusedBeforeAnyWork) {
  const Result r = run(3, "--model gpt-tiny --strategy tiny-dp2 --steps 10");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("world size = 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("needs dp * tp * pp * cp = 2"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("step    1"), std::string::npos) << "a step ran: " << r.out;
  EXPECT_FALSE(r.json.is_object()) << "a JSON was written";
}

// A federated strategy (docs/federated.md "Running it for real"): three sites of one rank on
// local-cpu-sites, FedAvg every 2 steps, site-c out of every round. Site-a's first round is
// plain local training on the data of a one-rank run (its data seed is the run's), so its two
// losses are that run's exactly; site-b trains on other samples; the left-out site sends
// nothing and every round lists its participants.
TEST_F(ExecutorMpi, AFederatedRunTrainsEachSiteOnItsOwnDataAndListsEachRoundsParticipants) {
  const Result one = run(1, "--model gpt-tiny --strategy tiny-1rank --steps 2");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const Result r = run(3, "--model gpt-tiny --cluster local-cpu-sites --strategy tiny-fedavg "
                          "--steps 6 --set 'strategy.federated.dropout=[\"site-c\"]'");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("round 2: participants site-a, site-b (out: site-c)"), std::string::npos)
      << r.out;
  const auto& f = r.json["federated"];
  ASSERT_TRUE(f.is_object()) << r.out;
  ASSERT_EQ(f["rounds"].size(), 3u);
  for (const auto& round : f["rounds"]) {
    EXPECT_EQ(round["participants"], strata::json::Json({"site-a", "site-b"}));
    EXPECT_EQ(round["left_out"], strata::json::Json({"site-c"}));
    // gpt-tiny's 218,496 fp32 parameters.
    EXPECT_EQ(round["update_bytes_per_site"].get<double>(), 218496.0 * 4);
  }
  EXPECT_EQ(f["per_site"][2]["update_bytes_sent"].get<double>(), 0.0);
  EXPECT_EQ(f["per_site"][0]["update_bytes_sent"].get<double>(), 3 * 218496.0 * 4);
  const auto& first = f["rounds"][0]["losses"];
  const std::vector<double> plain = losses(one);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(first["site-a"][0].get<double>(), plain[0]);
  EXPECT_EQ(first["site-a"][1].get<double>(), plain[1]);
  EXPECT_NE(first["site-b"][0].get<double>(), plain[0]);
  const std::vector<double> mean = losses(r);
  ASSERT_EQ(mean.size(), 6u);
  EXPECT_LT(mean.back(), mean.front() - 0.3);
}

// `strata run` of a parameter-server strategy (cli/ps_run.hpp): ctr-tiny on 2 workers + 2
// servers. BSP trains (its loss falls) and never runs stale; SSP with s = 0 applies every push on
// arrival (a pull, even step 0's, may then see a fast worker's newer update: SSP bounds
// staleness, not freshness, so its losses are not BSP's) and never reads stale; SSP with s = 1 and a slow worker 0 lets worker 1 run one
// step ahead, never two; run.json carries the traffic.
TEST_F(ExecutorMpi, AParameterServerRunTrainsAndKeepsItsConsistency) {
  const std::string ps = "--model ctr-tiny --strategy ctr-tiny-ps2 ";
  const Result bsp = run(4, ps + "--steps 20");
  ASSERT_EQ(bsp.exit_code, 0) << bsp.out << bsp.err;
  const std::vector<double> l = losses(bsp);
  ASSERT_EQ(l.size(), 20u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += l[static_cast<std::size_t>(i)] / 5;
  for (int i = 15; i < 20; ++i) last += l[static_cast<std::size_t>(i)] / 5;
  EXPECT_LT(last, first - 0.02) << bsp.out;
  const auto& p = bsp.json["ps"];
  ASSERT_TRUE(p.is_object()) << bsp.out;
  EXPECT_EQ(p["consistency"], "bsp");
  EXPECT_EQ(p["max_staleness"], 0);
  ASSERT_EQ(p["workers"].size(), 2u);
  ASSERT_EQ(p["server_stats"].size(), 2u);
  double pushed = 0, received = 0;
  for (const auto& w : p["workers"]) pushed += w["pushed_bytes"].get<double>();
  for (const auto& k : p["server_stats"]) {
    EXPECT_EQ(k["updates_applied"], 20);  // BSP: one update per step
    received += k["received_bytes"].get<double>();
  }
  EXPECT_GT(pushed, 0);
  EXPECT_GE(received, pushed);  // pushes and the pulls' ids
  EXPECT_NE(bsp.out.find("max staleness"), std::string::npos) << bsp.out;

  const Result ssp0 =
      run(4, ps + "--steps 4 --set strategy.ps.consistency=ssp --set strategy.ps.staleness=0");
  ASSERT_EQ(ssp0.exit_code, 0) << ssp0.err;
  EXPECT_EQ(ssp0.json["ps"]["max_staleness"], 0);
  EXPECT_EQ(losses(ssp0).size(), 4u);
  for (const auto& k : ssp0.json["ps"]["server_stats"]) {
    EXPECT_EQ(k["updates_applied"], 2 * 4);  // SSP: one update per push
  }

  const Result ssp1 = run(4, ps + "--steps 10 --set strategy.ps.consistency=ssp "
                               "--set strategy.ps.staleness=1",
                          "STRATA_TEST_PS_DELAY=0:0.05");
  ASSERT_EQ(ssp1.exit_code, 0) << ssp1.err;
  EXPECT_EQ(ssp1.json["ps"]["max_staleness"], 1) << ssp1.out;
}

TEST_F(ExecutorMpi, AParameterServerRunRefusesWhatItCannotRun) {
  const Result np = run(3, "--model ctr-tiny --strategy ctr-tiny-ps2 --steps 2");
  EXPECT_EQ(np.exit_code, 1);
  EXPECT_NE(np.err.find("needs dp = 2 workers + strategy.ps.servers = 2 servers = 4 ranks"),
            std::string::npos) << np.err;
  const Result gpt = run(2, "--model gpt2-124m --strategy gpt2-ps-bsp --steps 2");
  EXPECT_EQ(gpt.exit_code, 1);
  EXPECT_NE(gpt.err.find("a GPT over parameter servers is simulated only"), std::string::npos)
      << gpt.err;
  const Result save = run(4, "--model ctr-tiny --strategy ctr-tiny-ps2 --steps 2 --save " +
                                 (dir_ / "ck").string());
  EXPECT_EQ(save.exit_code, 1);
  EXPECT_NE(save.err.find("--save: not with a parameter-server strategy"), std::string::npos)
      << save.err;
  const Result plain = run(1, "--model ctr-tiny --strategy tiny-1rank --steps 2");
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_NE(plain.err.find("is a recommendation model"), std::string::npos) << plain.err;
  for (const Result* x : {&np, &gpt, &save, &plain}) {
    EXPECT_EQ(x->out.find("step    1"), std::string::npos) << "a step ran: " << x->out;
    EXPECT_FALSE(x->json.is_object()) << "a JSON was written";
  }
}

// With a dropout probability each round draws its participants from the seed (cli/
// federated_run.hpp round_participants): the draw of seed 1234 at p = 0.5, rounds with one
// participant included (the others take its model), every site listed once per round.
TEST_F(ExecutorMpi, AFederatedRunDrawsEachRoundsDropoutFromTheSeed) {
  const Result r = run(3, "--model gpt-tiny --cluster local-cpu-sites --strategy tiny-fedavg "
                          "--steps 8 --set strategy.federated.dropout=0.5");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto& rounds = r.json["federated"]["rounds"];
  ASSERT_EQ(rounds.size(), 4u);
  const std::vector<std::vector<std::string>> drawn = {
      {"site-c"}, {"site-a", "site-c"}, {"site-b", "site-c"}, {"site-a"}};
  for (std::size_t i = 0; i < drawn.size(); ++i) {
    EXPECT_EQ(rounds[i]["participants"], strata::json::Json(drawn[i])) << "round " << i + 1;
    EXPECT_EQ(rounds[i]["participants"].size() + rounds[i]["left_out"].size(), 3u);
  }
  const std::vector<double> mean = losses(r);
  ASSERT_EQ(mean.size(), 8u);
  EXPECT_LT(mean.back(), mean.front() - 0.3);
}

// What a federated run does not take is refused before any work, naming the flag or the world.
TEST_F(ExecutorMpi, AFederatedRunRefusesAWrongWorldAndWhatItDoesNotTakeYet) {
  const std::string fed = "--model gpt-tiny --cluster local-cpu-sites --strategy tiny-fedavg ";
  const Result two = run(2, fed + "--steps 2");
  EXPECT_EQ(two.exit_code, 1);
  EXPECT_NE(two.err.find("needs 3 sites x 1 ranks = 3"), std::string::npos) << two.err;
  const Result save = run(3, fed + "--steps 2 --save " + (dir_ / "ck").string());
  EXPECT_EQ(save.exit_code, 1);
  EXPECT_NE(save.err.find("--save: not with a federated strategy"), std::string::npos) << save.err;
  const Result odd = run(3, fed + "--steps 3");
  EXPECT_EQ(odd.exit_code, 1);
  EXPECT_NE(odd.err.find("must be a multiple of strategy.federated.local_steps (2)"),
            std::string::npos) << odd.err;
  const Result one_site = run(1, "--model gpt-tiny --strategy tiny-fedavg --steps 2");
  EXPECT_EQ(one_site.exit_code, 1);
  EXPECT_NE(one_site.err.find("two or more sites"), std::string::npos) << one_site.err;
  const Result uneven = run(3, fed + "--steps 2 --set cluster.node_groups.1.gpus_per_node=2");
  EXPECT_EQ(uneven.exit_code, 1);
  EXPECT_NE(uneven.err.find("every site needs the same ranks"), std::string::npos)
      << uneven.err;
  const Result he = run(3, fed + "--steps 2 --set strategy.federated.aggregation=central --set "
                                 "'strategy.federated.homomorphic_encryption={\"cores\":2}'");
  EXPECT_EQ(he.exit_code, 1);
  EXPECT_NE(he.err.find("homomorphic_encryption: priced by `strata simulate` only"),
            std::string::npos) << he.err;
  for (const Result* x : {&two, &save, &odd, &one_site, &uneven, &he}) {
    EXPECT_EQ(x->out.find("step    1"), std::string::npos) << "a step ran: " << x->out;
  }
}

// Rank 1 of a 2-stage pipeline dies at step 3; rank 0 would otherwise wait for its activations
// gradient forever. mpirun notices the death and stops the job with a non-zero exit (the
// `timeout 300` around it turns a hang into exit 124, which fails here).
TEST_F(ExecutorMpi, AKilledRankStopsTheOthersWithAnError) {
  const Result r =
      run(2, "--model gpt-tiny --strategy tiny-pp2-1f1b --steps 50", "STRATA_TEST_KILL=1:3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "the surviving rank hung until the time-out";
  EXPECT_NE(r.out.find("step    2"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("step    3"), std::string::npos) << r.out;
  EXPECT_NE((r.out + r.err).find("signal 9"), std::string::npos) << r.out << r.err;
  EXPECT_FALSE(r.json.is_object()) << "a JSON was written by a failed run";
}

// Rank 1 stops (SIGSTOP, like a hung node) as step 3 starts: rank 0's next collective or
// transfer gives up after --comm-timeout and the run ends with exit 4 and a message naming the
// timeout, instead of waiting forever (the `timeout 300` around it would give 124).
TEST_F(ExecutorMpi, AStoppedRankEndsTheRunAfterTheCommTimeout) {
  const Result r = run(2, "--model gpt-tiny --strategy tiny-pp2-1f1b --steps 50 --comm-timeout 3",
                       "STRATA_TEST_STOP=1:3");
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.out.find("step    2"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("step    3"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("on rank 0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did not complete within 3 s (--comm-timeout): a peer rank stopped "
                       "responding"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(r.json.is_object()) << "a JSON was written by a failed run";
}

// Checkpoints: 5 steps, save, resume to 10 gives the losses of 10 uninterrupted steps exactly.
TEST_F(ExecutorMpi, ResumeContinuesWithTheUninterruptedLosses) {
  const std::string spec = "--model gpt-tiny --strategy tiny-tp2-pp2";
  const std::string ck = (dir_ / "ck").string();
  const Result full = run(4, spec + " --steps 10");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const Result first = run(4, spec + " --steps 5 --save " + ck);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(read(dir_ / "ck" / "latest"), "step-000005\n");
  const Result second = run(4, spec + " --steps 10 --resume " + ck);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const auto a = losses(full), b = losses(first), c = losses(second);
  ASSERT_EQ(b.size(), 5u);
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(second.json["first_step"].get<int>(), 6);
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(b[k], a[k]) << "step " << k + 1;
    EXPECT_EQ(c[k], a[k + 5]) << "step " << k + 6;  // bit-identical, not just close
  }
}

// A rank dies while step 10's checkpoint is being written: step 5's stays the latest, the
// half-written one is never used, and resuming from it reproduces steps 6-10.
TEST_F(ExecutorMpi, ACrashDuringASaveLeavesTheLastCheckpointIntact) {
  const std::string spec = "--model gpt-tiny --strategy tiny-pp2-1f1b";
  const std::string ck = (dir_ / "ck").string();
  const Result full = run(2, spec + " --steps 10");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const Result crashed =
      run(2, spec + " --steps 10 --save " + ck + " --save-every 5", "STRATA_TEST_KILL_IN_SAVE=10");
  EXPECT_NE(crashed.exit_code, 0);
  EXPECT_EQ(read(dir_ / "ck" / "latest"), "step-000005\n");
  EXPECT_FALSE(fs::exists(dir_ / "ck" / "step-000010"));
  const Result resumed = run(2, spec + " --steps 10 --resume " + ck);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto a = losses(full), c = losses(resumed);
  ASSERT_EQ(c.size(), 5u);
  for (int k = 0; k < 5; ++k) EXPECT_EQ(c[k], a[k + 5]) << "step " << k + 6;
}

// The measured trace has every rank's every task once, in the simulator's format.
TEST_F(ExecutorMpi, TraceHasEveryTaskOfEveryRankWithThePlansIds) {
  const fs::path trace = dir_ / "trace.json";
  const Result r =
      run(4, "--model gpt-tiny --strategy tiny-tp2-pp2 --steps 2 --trace " + trace.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto t = strata::json::Json::parse(read(trace));
  EXPECT_EQ(t["otherData"]["source"], "measured");
  EXPECT_EQ(t["otherData"]["kind"], "strata.trace");
  std::map<int, std::set<int>> tasks;
  for (const auto& e : t["traceEvents"]) {
    if (e["ph"] != "X") continue;
    EXPECT_GE(e["dur"].get<double>(), 0.0);
    const int pid = e["pid"].get<int>();
    EXPECT_TRUE(tasks[pid].insert(e["args"]["task"].get<int>()).second) << "task twice";
  }
  ASSERT_EQ(tasks.size(), 4u);
  // `strata plan --json` gives the task count of each stage's program.
  for (const auto& [rank, ids] : tasks) {
    EXPECT_EQ(*ids.begin(), 0);
    EXPECT_EQ(static_cast<std::size_t>(*ids.rbegin()) + 1, ids.size()) << "rank " << rank;
  }
}

// FP8 is simulated only: `strata run` refuses it before lowering (local-cpu has no FP8 peak,
// whose rule would otherwise answer) and before any work, naming the field.
TEST_F(ExecutorMpi, Fp8IsRefusedBeforeAnyWorkNamingTheField) {
  const fs::path spec = dir_ / "tiny-fp8.json";
  std::ofstream(spec) << R"({"name": "tiny-fp8", "micro_batch_size": 2, "global_batch_size": 8,
                            "precision": "bf16", "fp8": "hybrid"})";
  const Result r = run(1, "--model gpt-tiny --strategy " + spec.string() + " --steps 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("strategy.fp8 = \"hybrid\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("FP8 plans are simulated only"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("step    1"), std::string::npos) << "a step ran: " << r.out;
}

// Elastic resume: a checkpoint written under strategy A resumes under B (another dp, tp, pp,
// ZeRO stage or world size), its tensors resharded by their global names and slices. Three
// steps under A, then steps 4-6 under B, give the losses of six uninterrupted steps under B:
// within 1e-6 relative (A's state after three steps differs from B's by float rounding only;
// measured 0 for every pair: the fp32 losses are equal to the last bit).
struct Reshard {
  const char* from;
  int from_ranks;
  const char* to;
  int to_ranks;
  const char* model = "";  // --set overrides of gpt-tiny (experts)
};
void PrintTo(const Reshard& c, std::ostream* os) {
  *os << c.from << " (" << c.from_ranks << " ranks) -> " << c.to << " (" << c.to_ranks
      << " ranks)";
}

class ReshardedResume : public ExecutorMpi, public ::testing::WithParamInterface<Reshard> {};

TEST_P(ReshardedResume, ContinuesWithTheLossesOfTheUninterruptedRun) {
  const Reshard c = GetParam();
  const std::string ck = (dir_ / "ck").string();
  const std::string model = "--model gpt-tiny " + std::string(c.model) + " --strategy ";
  const Result full = run(c.to_ranks, model + strategy(c.to) + " --steps 6");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const Result first = run(c.from_ranks, model + strategy(c.from) + " --steps 3 --save " + ck);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const Result second = run(c.to_ranks, model + strategy(c.to) + " --steps 6 --resume " + ck);
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_EQ(second.json["first_step"].get<int>(), 4);
  const auto a = losses(full), b = losses(second);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 3u);
  double worst = 0;
  for (int k = 0; k < 3; ++k) {
    worst = std::max(worst, std::abs(b[k] - a[k + 3]) / a[k + 3]);
    EXPECT_NEAR(b[k], a[k + 3], 1e-6 * a[k + 3]) << "step " << k + 4;
  }
  std::printf("[ measured ] %s -> %s: largest relative loss difference %.3g\n", c.from, c.to,
              worst);
}

INSTANTIATE_TEST_SUITE_P(
    Pairs, ReshardedResume,
    ::testing::Values(Reshard{"tiny-dp4", 4, "tiny-dp2", 2},  // a failure: 4 replicas -> 2
                      Reshard{"tiny-dp2", 2, "tiny-tp2", 2},
                      Reshard{"tiny-zero1", 2, "tiny-1rank", 1},
                      Reshard{"tiny-zero3", 2, "tiny-dp2-tp2", 4},
                      Reshard{"tiny-1rank", 1, "tiny-pp2-1f1b", 2},
                      Reshard{"tiny-tp2-pp2", 4, "tiny-dp2-pp2-zero1", 4},
                      // Mixture of experts: each expert by its global index, ep 4 -> ep 2.
                      Reshard{"tiny-dp2 --set strategy.dp=4 --set strategy.ep=4", 4,
                              "tiny-dp2 --set strategy.ep=2", 2,
                              "--set model.num_experts=4 --set model.num_experts_per_tok=2 "
                              "--set model.moe_intermediate_size=32"}));

// Hot switching (strata run --switch): three steps under A, then the state moved in memory to B
// (the same world), then three steps under B give the losses of a checkpoint round-trip (A
// --steps 3 --save; B --steps 6 --resume) within 1e-6 relative, and write no checkpoint. The
// switch is reported with its traffic: none when every rank holds under A all it needs under B
// (dp replicas hold the whole model), some otherwise.
struct HotPair {
  const char* from;
  const char* to;
  int ranks;
  bool traffic;  // whether the switch sends bytes over the network
};
void PrintTo(const HotPair& c, std::ostream* os) {
  *os << c.from << " -> " << c.to << " on " << c.ranks << " ranks";
}

class HotSwitch : public ExecutorMpi, public ::testing::WithParamInterface<HotPair> {
 protected:
  // A schedule file of (strategy, steps) phases; tiny-dp4 inline, the others bundled names.
  std::string schedule(const std::vector<std::pair<std::string, int>>& phases,
                       const std::string& name = "schedule.json") {
    strata::json::Json list = strata::json::Json::array();
    for (const auto& [strategy, steps] : phases) {
      strata::json::Json s = strategy;
      if (strategy == "tiny-dp4") {
        s = {{"name", "tiny-dp4"}, {"dp", 4}, {"micro_batch_size", 2},
             {"global_batch_size", 8}, {"precision", "fp32"}};
      }
      list.push_back({{"strategy", s}, {"steps", steps}});
    }
    const fs::path path = dir_ / name;
    std::ofstream(path) << strata::json::Json{{"name", "test-schedule"}, {"phases", list}}.dump();
    return path.string();
  }
  // The directories under dir_ (checkpoints, if any were written).
  std::set<std::string> directories() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.is_directory()) out.insert(e.path().filename().string());
    }
    return out;
  }
};

TEST_P(HotSwitch, ContinuesWithTheLossesOfACheckpointRoundTrip) {
  const HotPair c = GetParam();
  const std::string sched = schedule({{c.from, 3}, {c.to, 3}});
  const Result hot = run(c.ranks, "--model gpt-tiny --switch " + sched);
  ASSERT_EQ(hot.exit_code, 0) << hot.out << hot.err;
  EXPECT_TRUE(directories().empty()) << "a checkpoint was written";
  const std::string ck = (dir_ / "ck").string();
  const Result first =
      run(c.ranks, "--model gpt-tiny --strategy " + strategy(c.from) + " --steps 3 --save " + ck);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const Result second =
      run(c.ranks, "--model gpt-tiny --strategy " + strategy(c.to) + " --steps 6 --resume " + ck);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const auto a = losses(first), b = losses(second), h = losses(hot);
  ASSERT_EQ(h.size(), 6u);
  ASSERT_EQ(b.size(), 3u);
  double worst = 0;
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(h[k], a[k]) << "step " << k + 1;  // the same strategy, the same steps
    worst = std::max(worst, std::abs(h[k + 3] - b[k]) / b[k]);
    EXPECT_NEAR(h[k + 3], b[k], 1e-6 * b[k]) << "step " << k + 4;
  }
  const auto& steps = hot.json["steps"];
  EXPECT_EQ(steps[2]["strategy"], c.from);
  EXPECT_EQ(steps[3]["strategy"], c.to);
  ASSERT_EQ(hot.json["switches"].size(), 1u) << hot.json.dump();
  const auto& w = hot.json["switches"][0];
  EXPECT_EQ(w["at_step"].get<int>(), 4);
  EXPECT_EQ(w["from"], c.from);
  EXPECT_EQ(w["to"], c.to);
  EXPECT_EQ(w["bytes_sent"].get<double>() > 0, c.traffic) << w.dump();
  EXPECT_EQ(w["max_rank_bytes_sent"].get<double>() > 0, c.traffic) << w.dump();
  EXPECT_LE(w["max_rank_bytes_sent"].get<double>(), w["bytes_sent"].get<double>());
  // The simulator's traffic for the same switch (strategies::switch_traffic, the same source
  // rule) is the bytes the executor moved, exactly (a `strata` built with SimGrid).
  if (STRATA_STRATA_SIMULATES) {
    ASSERT_TRUE(w.contains("simulated_bytes")) << w.dump();
    EXPECT_EQ(w["simulated_bytes"].get<double>(), w["bytes_sent"].get<double>()) << w.dump();
    EXPECT_EQ(w["simulated_seconds"].get<double>() > 0, c.traffic) << w.dump();
  }
  EXPECT_GT(w["measured_seconds"].get<double>(), 0.0);
  EXPECT_NE(hot.out.find("switch at step 4: " + std::string(c.from) + " -> " + c.to),
            std::string::npos)
      << hot.out;
  std::printf("[ measured ] %s -> %s: switch %.4f s, %.0f bytes sent (most by one rank %.0f); "
              "largest relative loss difference %.3g\n",
              c.from, c.to, w["measured_seconds"].get<double>(), w["bytes_sent"].get<double>(),
              w["max_rank_bytes_sent"].get<double>(), worst);
}

INSTANTIATE_TEST_SUITE_P(Pairs, HotSwitch,
                         ::testing::Values(HotPair{"tiny-dp2", "tiny-tp2", 2, false},
                                           HotPair{"tiny-tp2", "tiny-dp2", 2, true},
                                           HotPair{"tiny-zero3", "tiny-pp2-1f1b", 2, true},
                                           HotPair{"tiny-tp2-pp2", "tiny-dp2-pp2-zero1", 4, true},
                                           HotPair{"tiny-dp4", "tiny-dp2-tp2", 4, false}));

// Four phases A, A, B, A: a switch to the same strategy sends nothing and changes nothing
// (steps 1-3 are the plain run's to the bit: the state, moments and step count carried over);
// tp2 -> dp2 sends the other half of each split tensor, dp2 -> tp2 nothing (each dp2 rank holds
// the whole model); the run goes back to A after B. Saved at its end (under the last
// phase's strategy) after step 3, and resumed with the whole schedule, it continues in the
// phase of step 4 with the uninterrupted run's losses, to the bit.
TEST_F(HotSwitch, SwitchesBackAndForthAndResumesIntoItsPhase) {
  const std::string sched =
      schedule({{"tiny-tp2", 2}, {"tiny-tp2", 1}, {"tiny-dp2", 2}, {"tiny-tp2", 1}});
  const Result hot = run(2, "--model gpt-tiny --switch " + sched);
  ASSERT_EQ(hot.exit_code, 0) << hot.out << hot.err;
  const Result plain = run(2, "--model gpt-tiny --strategy tiny-tp2 --steps 6");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto h = losses(hot), p = losses(plain);
  ASSERT_EQ(h.size(), 6u);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(h[k], p[k]) << "step " << k + 1;
  // Under dp2 the sums run in another order: float rounding apart, the same training.
  for (int k = 3; k < 6; ++k) EXPECT_NEAR(h[k], p[k], 1e-5 * p[k]) << "step " << k + 1;
  const auto& w = hot.json["switches"];
  ASSERT_EQ(w.size(), 3u) << hot.json.dump();
  EXPECT_EQ(w[0]["at_step"].get<int>(), 3);
  EXPECT_EQ(w[0]["bytes_sent"].get<double>(), 0.0);
  EXPECT_EQ(w[0]["max_rank_bytes_sent"].get<double>(), 0.0);
  EXPECT_EQ(w[1]["at_step"].get<int>(), 4);
  EXPECT_EQ(w[1]["to"], "tiny-dp2");
  EXPECT_GT(w[1]["bytes_sent"].get<double>(), 0.0);
  EXPECT_EQ(w[2]["at_step"].get<int>(), 6);
  EXPECT_EQ(w[2]["to"], "tiny-tp2");
  EXPECT_EQ(w[2]["bytes_sent"].get<double>(), 0.0);
  EXPECT_EQ(hot.json["strategy"], "tiny-tp2 -> tiny-tp2 -> tiny-dp2 -> tiny-tp2");

  const std::string ck = (dir_ / "ck").string();
  const std::string head =
      schedule({{"tiny-tp2", 2}, {"tiny-tp2", 1}, {"tiny-dp2", 1}}, "head.json");
  // The first four steps, saved at the end: under tiny-dp2, at step 4.
  const Result saved = run(2, "--model gpt-tiny --switch " + head + " --save " + ck);
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  const auto manifest = strata::json::Json::parse(read(dir_ / "ck" / "step-000004" /
                                                       "manifest.json"));
  EXPECT_EQ(manifest["strategy"], "tiny-dp2");
  const Result resumed = run(2, "--model gpt-tiny --switch " + sched + " --resume " + ck);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  const auto r = losses(resumed);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(resumed.json["first_step"].get<int>(), 5);
  EXPECT_EQ(resumed.json["steps"][0]["strategy"], "tiny-dp2");
  ASSERT_EQ(resumed.json["switches"].size(), 1u);
  EXPECT_EQ(resumed.json["switches"][0]["at_step"].get<int>(), 6);
  for (int k = 0; k < 2; ++k) EXPECT_EQ(r[k], h[k + 4]) << "step " << k + 5;
}

// Bad schedules are refused before any step, naming the field: phases of different world sizes
// or precisions, --steps beside --switch, a missing file, a phase of 0 steps.
TEST_F(HotSwitch, BadSchedulesAreRefusedNamingTheField) {
  const std::string worlds = schedule({{"tiny-dp2", 2}, {"tiny-tp2-pp2", 2}});
  Result r = run(2, "--model gpt-tiny --switch " + worlds);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("switch.phases.1.strategy = 'tiny-tp2-pp2': needs dp * tp * pp * cp = 4 "
                       "ranks, phase 0's 'tiny-dp2' needs 2"),
            std::string::npos)
      << r.err;
  const fs::path mixed = dir_ / "mixed.json";
  std::ofstream(mixed) << R"({"phases": [{"strategy": "tiny-tp2", "steps": 1},
                                         {"strategy": {"name": "dp2-bf16", "dp": 2,
                                                       "micro_batch_size": 2,
                                                       "global_batch_size": 8,
                                                       "precision": "bf16"}, "steps": 1}]})";
  r = run(2, "--model gpt-tiny --switch " + mixed.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("switch.phases.1.strategy = 'dp2-bf16': precision bf16, phase 0's "
                       "'tiny-tp2' has fp32"),
            std::string::npos)
      << r.err;
  const std::string good = schedule({{"tiny-dp2", 1}, {"tiny-tp2", 1}}, "good.json");
  r = run(2, "--model gpt-tiny --switch " + good + " --steps 3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--steps = 3 and --switch"), std::string::npos) << r.err;
  r = run(2, "--model gpt-tiny --switch " + (dir_ / "missing.json").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.json: no such file"), std::string::npos) << r.err;
  const std::string zero = schedule({{"tiny-dp2", 1}, {"tiny-tp2", 0}}, "zero.json");
  r = run(2, "--model gpt-tiny --switch " + zero);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("switch.phases.1.steps = 0"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("step    1"), std::string::npos) << r.out;
}

// Save under A, load under B and save (a run resumed at its --steps writes the loaded state),
// load that under A and save: every rank file is A's original, byte for byte.
TEST_F(ExecutorMpi, ACheckpointRoundTripsThroughAnotherStrategyExactly) {
  const std::string a = "--model gpt-tiny --strategy tiny-dp2-pp2-zero1 --steps 2 ";
  const std::string b = "--model gpt-tiny --strategy tiny-tp2 --steps 2 ";
  ASSERT_EQ(run(4, a + "--save " + (dir_ / "a").string()).exit_code, 0);
  const Result to_b = run(2, b + "--resume " + (dir_ / "a").string() + " --save " +
                                 (dir_ / "b").string());
  ASSERT_EQ(to_b.exit_code, 0) << to_b.err;
  EXPECT_NE(to_b.out.find("no step to run: wrote the state of step 2"), std::string::npos)
      << to_b.out;
  const Result back = run(4, a + "--resume " + (dir_ / "b").string() + " --save " +
                                 (dir_ / "c").string());
  ASSERT_EQ(back.exit_code, 0) << back.err;
  for (int r = 0; r < 4; ++r) {
    const std::string file = "step-000002/rank-0000" + std::to_string(r) + ".bin";
    const std::string original = read(dir_ / "a" / file);
    ASSERT_GT(original.size(), 10000u) << file;
    EXPECT_TRUE(read(dir_ / "c" / file) == original) << file << " differs after the round trip";
  }
  // B's checkpoint holds each replicated slice once: tiny-tp2's layer norms, one rank's only.
  const auto manifest = strata::json::Json::parse(read(dir_ / "b" / "step-000002" /
                                                       "manifest.json"));
  EXPECT_EQ(manifest["schema_version"].get<int>(), 3);
  int ln1 = 0;
  for (const auto& sl : manifest["slices"]) {
    if (sl["tensor"] == "layers.0.ln1.w" && sl["state"] == "param") ++ln1;
  }
  EXPECT_EQ(ln1, 1);
}

// A checkpoint from before the slices (schema 2) still resumes under its own strategy; under
// another it is refused, saying why.
TEST_F(ExecutorMpi, ASchema2CheckpointResumesOnlyUnderItsStrategy) {
  const std::string ck = (dir_ / "ck").string();
  ASSERT_EQ(run(2, "--model gpt-tiny --strategy tiny-dp2 --steps 1 --save " + ck).exit_code, 0);
  const fs::path path = dir_ / "ck" / "step-000001" / "manifest.json";
  auto manifest = strata::json::Json::parse(read(path));
  ASSERT_TRUE(manifest.contains("slices"));
  manifest.erase("slices");
  manifest["schema_version"] = 2;
  std::ofstream(path, std::ios::trunc) << manifest.dump(2);
  const Result same = run(2, "--model gpt-tiny --strategy tiny-dp2 --steps 2 --resume " + ck);
  EXPECT_EQ(same.exit_code, 0) << same.err;
  const Result other = run(2, "--model gpt-tiny --strategy tiny-tp2 --steps 2 --resume " + ck);
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("written for strategy 'tiny-dp2' on 2 ranks before checkpoints listed "
                           "their tensor slices (schema 2), so it cannot be resharded for this "
                           "run's strategy 'tiny-tp2' on 2 ranks"),
            std::string::npos)
      << other.err;
}

// A checkpoint of another model is refused, even forced, naming the tensor and both shapes.
TEST_F(ExecutorMpi, ResumingAnotherModelNamesTheTensorAndTheShapes) {
  const std::string ck = (dir_ / "ck").string();
  const fs::path narrow = dir_ / "gpt-narrow.json";
  std::ofstream(narrow) << R"({"name": "gpt-narrow", "family": "gpt", "num_hidden_layers": 4,
                               "hidden_size": 32, "num_attention_heads": 4, "vocab_size": 256,
                               "seq_length": 32, "dropout": false})";
  ASSERT_EQ(run(1, "--model " + narrow.string() + " --strategy tiny-1rank --steps 1 --save " + ck)
                .exit_code,
            0);
  for (const std::string force : {"", " --force-resume"}) {
    const Result r =
        run(2, "--model gpt-tiny --strategy tiny-dp2 --steps 2 --resume " + ck + force);
    EXPECT_EQ(r.exit_code, 1) << force;
    EXPECT_NE(r.err.find("tensor 'lnf.w' has shape [32, 1] in the checkpoint (model "
                         "'gpt-narrow'), [64, 1] in this run"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.out.find("step    2"), std::string::npos) << r.out;
  }
}

}  // namespace
