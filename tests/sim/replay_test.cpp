// Plan replay against hand-computed step times (compute-only, the textbook pipeline bubble),
// overlap, stragglers, determinism, traces, and the compact simulation against the full one.
// Every simulation runs in a forked child (one engine per process).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "fixed_cost.hpp"
#include "profiler/roofline.hpp"
#include "results/report.hpp"
#include "results/trace.hpp"
#include "sim/simulate.hpp"
#include "sim_test_util.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::sim {
namespace {

using strategies::Plan;
using testing::FixedCost;
using testing::in_child;
using testing::in_child_text;

// trace.json of a simulation, as `strata simulate --trace` writes it.
json::Json simulated_trace(const results::Report& rep, const Plan& plan) {
  return results::trace_to_json(plan, rep.spans,
                                results::trace_other_data("simulated", rep.provenance));
}

// A cluster whose links cost (almost) nothing, to isolate compute and the schedule.
strategies::ClusterSpec free_network(int nodes, int gpus) {
  auto c = strategies::testing::cluster(nodes, gpus);
  c.node_groups[0].intra_node.bandwidth_Bps = 1e18;
  c.node_groups[0].intra_node.latency_s = 0;
  c.inter_node.nic_bandwidth_Bps = 1e18;
  c.inter_node.latency_s = 0;
  return c;
}

TEST(Replay, OneRankRunsEveryComputeTaskBackToBack) {
  const auto m = strategies::testing::gpt(2, 64, 4, 128, 32);
  const Plan plan =
      strategies::lower(m, free_network(1, 8), strategies::testing::strategy(1, 1, 1, 1, 2), 1);
  const auto r = in_child([&] {
    const results::Report rep = simulate(plan, FixedCost(1e-3));
    return std::vector<double>{rep.step_time_s, rep.tokens_per_s, rep.bubble_fraction};
  });
  ASSERT_EQ(r.size(), 3u);
  const double tasks = static_cast<double>(plan.programs[0].tasks.size());
  EXPECT_NEAR(r[0], tasks * 1e-3, 1e-9);
  EXPECT_NEAR(r[1], 2 * 32 / r[0], 1e-6);
  EXPECT_NEAR(r[2], 0.0, 1e-9);
}

TEST(Replay, PipelineBubbleMatchesTheTextbook) {
  // pp 2, m 4, one layer per stage whose forward and backward each take 7 blocks x 1 ms; the
  // makespan is (m + pp - 1)(tF + tB) and the idle fraction (pp - 1) / (m + pp - 1), for GPipe
  // and 1F1B alike.
  const auto m = strategies::testing::gpt(2, 64, 4, 128, 32);
  for (auto schedule : {strategies::Schedule::kGPipe, strategies::Schedule::kOneFOneB}) {
    const Plan plan = strategies::lower(m, free_network(1, 8),
                                        strategies::testing::strategy(1, 1, 2, 1, 4, schedule), 2);
    const auto r = in_child([&] {
      const results::Report rep = simulate(plan, FixedCost(1e-3, /*layers_only=*/true));
      return std::vector<double>{rep.step_time_s, rep.bubble_fraction};
    });
    ASSERT_EQ(r.size(), 2u);
    EXPECT_NEAR(r[0], 5 * 14e-3, 1e-6) << strategies::schedule_name(schedule);
    EXPECT_NEAR(r[1], 1.0 / 5, 1e-4) << strategies::schedule_name(schedule);
  }
}

TEST(Replay, BlockingTransfersHoldTheNextComputeUntilTheSendCompletes) {
  // GPipe, pp 2, m 4, one layer per stage (7 blocks x 1 ms forward, 7 backward), each pipeline
  // transfer taking d. Non-blocking, only the first forward and the first backward transfer of
  // the chain wait: 70 ms + 2d. Blocking (Megatron 2021: wait, then synchronise the device), the
  // sender also waits for each of its 3 further forward sends and 3 further backward sends
  // before its next block: 70 ms + 8d. (Stage 1's forwards start at 7+d, 14+2d, 21+3d, 28+4d
  // instead of 7+d ... 28+d; its backward sends add d each, and stage 0's last backward starts
  // at 63+8d instead of 63+2d.)
  const auto m = strategies::testing::gpt(2, 64, 4, 128, 32);
  auto c = free_network(1, 8);
  std::vector<double> steps;
  double d = 0;
  for (bool blocking : {false, true}) {
    auto s = strategies::testing::strategy(1, 1, 2, 1, 4, strategies::Schedule::kGPipe);
    s.collectives.blocking_p2p = blocking;
    // Size the port links so that one transfer takes 1 ms.
    Plan probe = strategies::lower(m, c, s, 2);
    double bytes = 0;
    for (const auto& t : probe.programs[0].tasks) {
      if (t.kind == strategies::TaskKind::kSend) bytes = t.bytes;
    }
    ASSERT_GT(bytes, 0);
    c.node_groups[0].intra_node.bandwidth_Bps = bytes / 1e-3;
    d = 1e-3;
    const Plan plan = strategies::lower(m, c, s, 2);
    const auto r = in_child([&] {
      return std::vector<double>{simulate(plan, FixedCost(1e-3, /*layers_only=*/true)).step_time_s};
    });
    ASSERT_EQ(r.size(), 1u);
    steps.push_back(r[0]);
  }
  // The tied-embedding all-reduce at the end (vocab x hidden gradients over the same link)
  // costs both the same; compare the differences.
  EXPECT_NEAR(steps[1] - steps[0], 6 * d, 1e-6);
  EXPECT_GE(steps[0], 70e-3 + 2 * d - 1e-9);
}

TEST(Replay, ABlockingSendWaitsForItsReceiverToPostTheReceive) {
  // GPipe, pp 2, m 2, stage 1 three times stage 0's work (stage_layers 1 and 3: 7 ms and 21 ms
  // per unit), each transfer taking d. A transfer is a rendezvous: it starts once the receiver
  // has posted its receive, which a blocking exchange does only when it reaches the call. Stage
  // 1 posts the receive of micro-batch 1 after its 21 ms forward of micro-batch 0 (at 28 + d),
  // so stage 0's send, ready at 14 + d, waits, and stage 1 then waits d for the data. By hand:
  // non-blocking 98 ms + 2d (stage 1's forwards start at 7 + d and 28 + d; the two gradient
  // transfers add d each); blocking 98 ms + 4d (F1 starts at 28 + 2d, and stage 1's blocking
  // gradient send delays its B0 by d). Had the send not waited for its receiver it would be 98 ms
  // + 3d.
  const auto m = strategies::testing::gpt(4, 64, 4, 128, 32);
  auto c = free_network(1, 8);
  std::vector<double> steps;
  const double d = 1e-3;
  for (bool blocking : {false, true}) {
    auto s = strategies::testing::strategy(1, 1, 2, 1, 2, strategies::Schedule::kGPipe);
    s.stage_layers = {1, 3};
    s.collectives.blocking_p2p = blocking;
    Plan probe = strategies::lower(m, c, s, 2);
    double bytes = 0;
    for (const auto& t : probe.programs[0].tasks) {
      if (t.kind == strategies::TaskKind::kSend) bytes = t.bytes;
    }
    ASSERT_GT(bytes, 0);
    c.node_groups[0].intra_node.bandwidth_Bps = bytes / d;
    const Plan plan = strategies::lower(m, c, s, 2);
    const auto r = in_child([&] {
      return std::vector<double>{simulate(plan, FixedCost(1e-3, /*layers_only=*/true)).step_time_s};
    });
    ASSERT_EQ(r.size(), 1u);
    steps.push_back(r[0]);
  }
  // The tied-embedding all-reduce after both stages costs both runs the same.
  EXPECT_NEAR(steps[1] - steps[0], 2 * d, 1e-6);
  EXPECT_GE(steps[0], 98e-3 + 2 * d - 1e-9);
}

TEST(Replay, GradientBucketsOverlapBackward) {
  // dp 8 over one node: with overlap the bucket all-reduces run under the backward.
  const auto m = strategies::testing::gpt(8, 1024, 16, 1024, 256);
  const auto c = strategies::testing::cluster(1, 8);
  std::vector<std::vector<double>> out;
  for (bool overlap : {true, false}) {
    auto s = strategies::testing::strategy(8, 1, 1, 1, 8);
    s.collectives.overlap_grad_reduce = overlap;
    s.collectives.grad_bucket_bytes = 4 << 20;
    const Plan plan = strategies::lower(m, c, s, 8);
    out.push_back(in_child([&] {
      const results::Report rep = simulate(plan, FixedCost(2e-4));
      return std::vector<double>{rep.step_time_s, rep.ranks[0].exposed_comm_s,
                                 rep.ranks[0].communication_s};
    }));
    ASSERT_EQ(out.back().size(), 3u);
  }
  EXPECT_LT(out[0][0], out[1][0]);
  EXPECT_LT(out[0][1], out[1][1]);
  EXPECT_NEAR(out[1][1], out[1][2], 1e-9);  // without overlap every second of it is exposed
}

// A collective holds links.nccl_sms of its GPU's SMs from arrival to completion (NCCL's CTAs
// do not share an SM): the backward compute beside the bucket all-reduces runs on 92 of the
// A100's 108 SMs. A compute task of cost c overlapped for W seconds by one collective ends
// W x 16/108 later, so rank 0's compute grows by 16/108 of the overlapped communication
// (communication - exposed: the buckets run one at a time on the dp stream). Without the
// GPU's SM count, or on a cluster that runs in program order, nothing changes.
TEST(Replay, CollectivesHoldSmsSoComputeBesideThemSlows) {
  const auto m = strategies::testing::gpt(8, 1024, 16, 1024, 256);
  auto s = strategies::testing::strategy(8, 1, 1, 1, 8);
  s.collectives.overlap_grad_reduce = true;
  s.collectives.grad_bucket_bytes = 4 << 20;
  auto run = [&](int nccl_sms, int gpu_sms, bool overlaps) {
    auto c = strategies::testing::cluster(1, 8);
    c.node_groups[0].gpu.sms = gpu_sms;
    c.comm_overlaps_compute = overlaps;
    const Plan plan = strategies::lower(m, c, s, 8);
    return in_child([&] {
      const results::Report rep = simulate(plan, FixedCost(2e-4, false, nccl_sms));
      return std::vector<double>{rep.step_time_s, rep.ranks[0].compute_s,
                                 rep.ranks[0].communication_s, rep.ranks[0].exposed_comm_s};
    });
  };
  const std::vector<double> free = run(0, 108, true), held = run(16, 108, true);
  ASSERT_EQ(free.size(), 4u);
  ASSERT_EQ(held.size(), 4u);
  const double overlapped = held[2] - held[3];
  ASSERT_GT(overlapped, 1e-4);  // the buckets do run beside the backward
  EXPECT_NEAR(held[1] - free[1], overlapped * 16 / 108, 1e-9 * held[1]);
  EXPECT_NEAR(held[2], free[2], 1e-12);  // the network is not slowed
  EXPECT_GT(held[0], free[0]);
  EXPECT_EQ(run(16, 0, true), free);  // no SM count: no slowdown
  const std::vector<double> serial = run(0, 108, false);
  EXPECT_EQ(run(16, 108, false), serial);  // in program order nothing runs beside compute
}

// A cluster whose executor runs each rank's tasks in program order (comm_overlaps_compute
// false: this machine's CPU executor): the buckets overlap nothing, every second of
// communication is exposed, and no task of a rank starts before the one before it has ended
// (a send: been posted). Pipelines, whose stages both send before they receive, still finish:
// a send does not hold its rank.
TEST(Replay, InProgramOrderCommunicationRunsBetweenComputeNeverBesideIt) {
  const auto m = strategies::testing::gpt(8, 1024, 16, 1024, 256);
  auto c = strategies::testing::cluster(1, 8);
  c.comm_overlaps_compute = false;
  auto s = strategies::testing::strategy(8, 1, 1, 1, 8);
  s.collectives.grad_bucket_bytes = 4 << 20;
  const Plan plan = strategies::lower(m, c, s, 8);
  const auto r = in_child([&] {
    SimOptions o;
    o.record_trace = true;
    o.trace_ranks = {0};
    const results::Report rep = simulate(plan, FixedCost(2e-4), o);
    std::vector<double> v = {rep.ranks[0].exposed_comm_s, rep.ranks[0].communication_s};
    for (const strategies::TaskSpan& x : rep.spans) v.insert(v.end(), {x.start_s, x.end_s});
    return v;
  });
  ASSERT_GE(r.size(), 4u);
  EXPECT_GT(r[1], 0);
  EXPECT_NEAR(r[0], r[1], 1e-9);
  const auto& tasks = plan.program_of(0).tasks;
  ASSERT_EQ(r.size(), 2 + 2 * tasks.size());
  for (std::size_t i = 1; i < tasks.size(); ++i) {
    const double prev_end = r[2 + 2 * (i - 1) + 1], start = r[2 + 2 * i];
    if (tasks[i - 1].kind != strategies::TaskKind::kSend) {
      EXPECT_GE(start, prev_end - 1e-12) << i;
    }
  }
  for (const strategies::Schedule schedule :
       {strategies::Schedule::kOneFOneB, strategies::Schedule::kGPipe}) {
    const Plan pipe =
        strategies::lower(m, c, strategies::testing::strategy(1, 1, 4, 1, 8, schedule), 4);
    const auto t =
        in_child([&] { return std::vector<double>{simulate(pipe, FixedCost(2e-4)).step_time_s}; });
    ASSERT_EQ(t.size(), 1u) << strategies::schedule_name(schedule);
    EXPECT_GT(t[0], 0) << strategies::schedule_name(schedule);
  }
}

TEST(Replay, AStragglerSlowsEveryone) {
  const auto m = strategies::testing::gpt(2, 256, 4, 256, 64);
  const Plan plan = strategies::lower(m, strategies::testing::cluster(1, 8),
                                      strategies::testing::strategy(2, 1, 1, 1, 2), 2);
  const auto fast =
      in_child([&] { return std::vector<double>{simulate(plan, FixedCost(1e-3)).step_time_s}; });
  const auto slow = in_child([&] {
    SimOptions o;
    o.speed_factors = {1.0, 0.5};
    return std::vector<double>{simulate(plan, FixedCost(1e-3), o).step_time_s};
  });
  ASSERT_EQ(fast.size(), 1u);
  ASSERT_EQ(slow.size(), 1u);
  EXPECT_GT(slow[0], 1.9 * fast[0]);
}

TEST(Replay, SameInputsSameReportAndTrace) {
  const auto m = strategies::testing::gpt(4, 256, 8, 512, 64);
  auto s = strategies::testing::strategy(2, 2, 2, 1, 8);
  s.zero_stage = 1;
  s.sequence_parallel = true;
  const Plan plan = strategies::lower(m, strategies::testing::cluster(1, 8), s, 8);
  auto run = [&] {
    return in_child_text([&] {
      SimOptions o;
      o.record_trace = true;
      const results::Report rep = simulate(plan, FixedCost(1e-4), o);
      return results::report_to_json(rep).dump() + simulated_trace(rep, plan).dump();
    });
  };
  const std::string a = run(), b = run();
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
}

TEST(Replay, TraceHoldsEveryTaskOfTheTracedRanks) {
  const auto m = strategies::testing::gpt(4, 256, 8, 512, 64);
  const Plan plan = strategies::lower(m, strategies::testing::cluster(1, 8),
                                      strategies::testing::strategy(2, 2, 2, 1, 8), 8);
  const auto r = in_child([&] {
    SimOptions o;
    o.record_trace = true;  // default ranks: the first of each stage
    const results::Report rep = simulate(plan, FixedCost(1e-4), o);
    const auto trace = simulated_trace(rep, plan);
    double complete = 0;
    for (const auto& e : trace["traceEvents"]) complete += e["ph"] == "X";
    return std::vector<double>{static_cast<double>(rep.spans.size()), complete};
  });
  ASSERT_EQ(r.size(), 2u);
  const double expected =
      static_cast<double>(plan.programs[0].tasks.size() + plan.programs[1].tasks.size());
  EXPECT_EQ(r[0], expected);
  EXPECT_EQ(r[1], expected);
}

// The simulated trace read back: no two slices of one thread overlap, though the simulated
// pipeline transfers do (a middle stage receives one micro-batch while it sends another: they
// get lanes); every thread has slices; every send whose receiver is traced has its arrow.
TEST(Replay, TraceHasNoOverlappingSlicesNorEmptyThreads) {
  const auto m = strategies::testing::gpt(8, 1024, 16, 512, 1024);
  const Plan plan = strategies::lower(m, strategies::testing::cluster(1, 8),
                                      strategies::testing::strategy(2, 1, 4, 1, 16), 8);
  const auto r = in_child([&] {
    SimOptions o;
    o.record_trace = true;
    const results::Report rep = simulate(plan, FixedCost(1e-5), o);
    const results::Trace t = results::trace_from_json(simulated_trace(rep, plan));
    std::map<std::tuple<int, strategies::Stream, int>, std::vector<std::pair<double, double>>>
        threads;
    double sends = 0, pp_lanes = 0, other_lanes = 0;
    for (const results::TraceEvent& e : t.events) {
      threads[{e.rank, e.stream, e.lane}].push_back({e.start_s, e.start_s + e.duration_s});
      sends += e.kind == strategies::TaskKind::kSend;
      double& lanes = e.stream == strategies::Stream::kPp ? pp_lanes : other_lanes;
      lanes = std::max(lanes, static_cast<double>(e.lane));
    }
    double overlaps = 0;
    for (auto& [thread, slices] : threads) {
      std::sort(slices.begin(), slices.end());
      for (std::size_t i = 1; i < slices.size(); ++i) {
        overlaps += slices[i].first < slices[i - 1].second - results::kTraceTouchS;
      }
    }
    const double threads_used = static_cast<double>(threads.size());
    const double threads_named = static_cast<double>(t.tracks.size());
    const double arrows = static_cast<double>(t.transfers.size());
    return std::vector<double>{overlaps, threads_used, threads_named, sends,
                               arrows,   pp_lanes,     other_lanes};
  });
  ASSERT_EQ(r.size(), 7u);
  EXPECT_EQ(r[0], 0) << "overlapping slices on one thread";
  EXPECT_EQ(r[1], r[2]) << "threads named vs threads with slices";
  EXPECT_GT(r[3], 0);
  EXPECT_EQ(r[4], r[3]) << "sends vs arrows";
  EXPECT_GE(r[5], 1) << "the simulated transfers overlap, so pp needs a second lane";
  EXPECT_EQ(r[6], 0) << "the other streams' tasks are chained: one thread each";
}

// The compact simulation (folded data-parallel replicas, aggregated ring steps) against the full
// one, rank by rank and step by step, on small cases with the roofline costs.
TEST(Replay, CompactSimulationIsFaithfulToTheFullOne) {
  const profiler::RooflineCostModel cost(
      profiler::load_efficiencies(profiler::default_efficiencies_path()));
  const auto m = strategies::testing::gpt(4, 1024, 16, 4096, 512);
  struct Case {
    const char* name;
    strategies::StrategySpec s;
  };
  std::vector<Case> cases;
  {
    auto s = strategies::testing::strategy(4, 2, 2, 1, 16);
    s.zero_stage = 1;
    s.sequence_parallel = true;
    s.order = {strategies::Dim::kTp, strategies::Dim::kCp, strategies::Dim::kEp,
               strategies::Dim::kDp, strategies::Dim::kPp};
    cases.push_back({"dp4-tp2-pp2 zero1 sp", s});
    s.collectives.grad_bucket_bytes = 1 << 20;  // buckets overlap the tp collectives of backward
    cases.push_back({"dp4-tp2-pp2 zero1 sp, 1 MiB buckets", s});
  }
  {
    auto s = strategies::testing::strategy(8, 2, 1, 1, 16);  // dp crosses the two nodes
    s.recompute = strategies::Recompute::kFull;
    s.collectives.grad_bucket_bytes = 2 << 20;
    cases.push_back({"dp8-tp2 full recompute", s});
  }
  {
    auto s = strategies::testing::strategy(4, 1, 4, 1, 16, strategies::Schedule::kInterleaved, 1);
    s.virtual_stages = 1;
    s.schedule = strategies::Schedule::kOneFOneB;
    s.zero_stage = 3;
    cases.push_back({"dp4-pp4 zero3", s});
  }
  for (const Case& k : cases) {
    const Plan plan = strategies::lower(m, strategies::testing::cluster(2, 8), k.s, 16);
    auto run = [&](bool compact) {
      return in_child([&] {
        SimOptions o;
        o.fold_data_parallel = compact;
        o.fold_tensor_parallel = compact;
        o.aggregate_ring_steps = compact;
        const results::Report rep = simulate(plan, cost, o);
        std::vector<double> v = {rep.step_time_s,
                                 static_cast<double>(rep.simulation.simulated_ranks)};
        for (const auto& t : rep.ranks) v.push_back(t.finish_s);
        return v;
      });
    };
    const auto full = run(false), compact = run(true);
    ASSERT_EQ(full.size(), 2u + 16) << k.name;
    ASSERT_EQ(compact.size(), 2u + 16) << k.name;
    EXPECT_EQ(full[1], 16) << k.name;
    EXPECT_EQ(compact[1], 16.0 / (k.s.dp * k.s.tp)) << k.name;
    EXPECT_NEAR(compact[0] / full[0], 1.0, 0.01) << k.name;
    for (int r = 0; r < 16; ++r) {
      EXPECT_NEAR(compact[2 + r] / full[2 + r], 1.0, 0.01) << k.name << " rank " << r;
    }
    std::printf("  %s: full %.9f s, compact %.9f s (relative %+.2e)\n", k.name, full[0], compact[0],
                compact[0] / full[0] - 1);
  }
}

}  // namespace
}  // namespace strata::sim
