// trace.json: write -> read gives back every event's fields; no two slices of one thread overlap
// (concurrent pipeline transfers get lanes) and sends are joined to their receives by flow
// arrows; only streams with tasks get a thread; unknown args are kept; bad files are refused
// naming the file, the event and the value.
#include "results/trace.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "tests/strategies/expect_config_error.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::results {
namespace {

using strategies::Plan;
using strategies::Stream;
using strategies::Task;
using strategies::TaskKind;
using strategies::TaskSpan;
using strategies::testing::expect_config_error;

// dp 2 x tp 2 x pp 2, 1F1B with 4 micro-batches: both stages send and receive.
const Plan& small_plan() {
  static const Plan plan = strategies::lower(strategies::testing::gpt(4, 256, 8, 512, 64),
                                             strategies::testing::cluster(1, 8),
                                             strategies::testing::strategy(2, 2, 2, 1, 8), 8);
  return plan;
}

// The first rank of every stage, as the simulator traces by default.
std::vector<int> traced_ranks(const Plan& plan) {
  std::vector<int> ranks;
  for (int stage = 0; stage < plan.strategy.pp; ++stage) {
    for (int r = 0; r < plan.world_size; ++r) {
      if (plan.stage_of(r) == stage) {
        ranks.push_back(r);
        break;
      }
    }
  }
  return ranks;
}

// Every task of the traced ranks, one every 100 us and 50 us long, except pipeline transfers,
// which last 2 ms: like the real ones, several are in flight at once.
std::vector<TaskSpan> hand_made_spans(const Plan& plan) {
  std::vector<TaskSpan> spans;
  for (int rank : traced_ranks(plan)) {
    const auto& tasks = plan.program_of(rank).tasks;
    for (std::uint32_t i = 0; i < tasks.size(); ++i) {
      const double start = 1e-4 * i;
      const bool transfer = tasks[i].stream == Stream::kPp;
      spans.push_back({rank, i, start, start + (transfer ? 2e-3 : 5e-5)});
    }
  }
  return spans;
}

json::Json hand_made_trace() {
  const Plan& plan = small_plan();
  json::Json other = trace_other_data("measured", plan.provenance);
  other["host"] = "node7";
  return trace_to_json(plan, hand_made_spans(plan), other);
}

TEST(TraceJson, WriteThenReadGivesEveryEventFieldBack) {
  const Plan& plan = small_plan();
  const std::vector<TaskSpan> spans = hand_made_spans(plan);
  json::Json other = trace_other_data("measured", plan.provenance);
  other["host"] = "node7";
  const Trace t = trace_from_json(trace_to_json(plan, spans, other));
  EXPECT_EQ(t.other_data, other);
  ASSERT_EQ(t.events.size(), spans.size());
  std::size_t collectives = 0, transfers = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const TaskSpan& s = spans[i];
    const Task& task = plan.program_of(s.rank).tasks[s.task];
    const TraceEvent& e = t.events[i];
    SCOPED_TRACE("rank " + std::to_string(s.rank) + " task " + std::to_string(s.task));
    EXPECT_EQ(e.rank, s.rank);
    EXPECT_EQ(e.task, s.task);
    EXPECT_EQ(e.stream, task.stream);
    EXPECT_EQ(e.name, plan.task_name(task));
    EXPECT_EQ(e.kind, task.kind);
    EXPECT_EQ(e.phase, task.phase);
    EXPECT_EQ(e.block, task.block);
    EXPECT_EQ(e.layer, task.layer);
    EXPECT_EQ(e.micro_batch, task.micro_batch);
    EXPECT_EQ(e.chunk, task.chunk);
    EXPECT_EQ(e.flops, task.flops);
    EXPECT_EQ(e.bytes, task.bytes);
    EXPECT_EQ(e.elementwise_bytes, task.elementwise_bytes);
    EXPECT_NEAR(e.start_s, s.start_s, 1e-15);
    EXPECT_NEAR(e.duration_s, s.end_s - s.start_s, 1e-15);
    EXPECT_TRUE(e.other_args.empty()) << e.other_args.dump();
    if (task.kind == TaskKind::kCollective) {
      ++collectives;
      EXPECT_EQ(e.collective, task.collective);
      EXPECT_EQ(e.purpose, task.purpose);
      EXPECT_EQ(e.group, plan.group_ranks(s.rank, task.group));
      EXPECT_EQ(e.peer, -1);
    } else if (task.kind == TaskKind::kSend || task.kind == TaskKind::kRecv) {
      ++transfers;
      EXPECT_EQ(e.peer, plan.peer_rank(s.rank, task));
      EXPECT_TRUE(e.group.empty());
    } else {
      EXPECT_EQ(e.collective, strategies::CollectiveKind::kNone);
      EXPECT_EQ(e.purpose, strategies::Purpose::kNone);
      EXPECT_TRUE(e.group.empty());
      EXPECT_EQ(e.peer, -1);
    }
  }
  EXPECT_GT(collectives, 0u);
  EXPECT_GT(transfers, 0u);
  for (const int rank : traced_ranks(plan)) {
    EXPECT_EQ(t.process_names.at(rank), "rank " + std::to_string(rank) + " (stage " +
                                            std::to_string(plan.stage_of(rank)) + ")");
  }
}

// Regression: the 175B trace had send and receive slices partly overlapping on one `pp` thread,
// which Chrome and Perfetto draw wrongly.
TEST(TraceJson, NoTwoSlicesOfOneThreadOverlap) {
  const json::Json j = hand_made_trace();
  std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> slices;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] != "X") continue;
    const double ts = e["ts"].get<double>();
    slices[{e["pid"].get<int>(), e["tid"].get<int>()}].push_back({ts, ts + e["dur"].get<double>()});
  }
  int pp_threads = 0;
  for (auto& [thread, list] : slices) {
    std::sort(list.begin(), list.end());
    for (std::size_t i = 1; i < list.size(); ++i) {
      EXPECT_GE(list[i].first, list[i - 1].second - kTraceTouchS * 1e6)
          << "rank " << thread.first << " tid " << thread.second << ": slice " << i;
    }
    pp_threads += thread.first == 0 && thread.second % 6 == static_cast<int>(Stream::kPp);
  }
  EXPECT_GT(pp_threads, 1) << "the transfers overlap, so rank 0 needs several pp lanes";

  // The reader sees the same lanes, named after their stream.
  const Trace t = trace_from_json(j);
  std::set<std::string> names;
  for (const TraceTrack& track : t.tracks) {
    if (track.rank == 0) names.insert(track.name);
  }
  EXPECT_EQ(names.count("pp"), 1u);
  EXPECT_EQ(names.count("pp 2"), 1u);
}

// Consecutive tasks whose times overlap by rounding (the simulator's clock sums durations) are
// not concurrent: they stay on one thread.
TEST(TraceJson, SlicesTouchingWithinRoundingShareAThread) {
  const Plan& plan = small_plan();
  std::vector<TaskSpan> spans;
  double t = 0.0;
  const auto& tasks = plan.program_of(0).tasks;
  for (std::uint32_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i].stream != Stream::kCompute) continue;
    const double end = t + 0.1 + 0.2;  // 0.30000000000000004 past t
    spans.push_back({0, i, t, end});
    t += 0.3 - 1e-16;  // the next task starts a rounding error before this one ends
  }
  const Trace trace = trace_from_json(trace_to_json(plan, spans, trace_other_data("x", {})));
  ASSERT_EQ(trace.tracks.size(), 1u);
  EXPECT_EQ(trace.tracks[0].name, "compute");
}

TEST(TraceJson, EverySendIsJoinedToItsReceiveByAFlowArrow) {
  const json::Json j = hand_made_trace();
  const Trace t = trace_from_json(j);
  std::size_t sends = 0, recvs = 0;
  for (const TraceEvent& e : t.events) {
    sends += e.kind == TaskKind::kSend;
    recvs += e.kind == TaskKind::kRecv;
  }
  ASSERT_GT(sends, 0u);
  EXPECT_EQ(sends, recvs);
  ASSERT_EQ(t.transfers.size(), sends);  // both stages are traced: every send has its receive
  std::set<std::size_t> seen;
  for (const TraceTransfer& x : t.transfers) {
    const TraceEvent& send = t.events[x.send];
    const TraceEvent& recv = t.events[x.recv];
    EXPECT_EQ(send.kind, TaskKind::kSend);
    EXPECT_EQ(recv.kind, TaskKind::kRecv);
    EXPECT_EQ(send.peer, recv.rank);
    EXPECT_EQ(recv.peer, send.rank);
    EXPECT_EQ(send.micro_batch, recv.micro_batch);
    EXPECT_EQ(send.phase, recv.phase);
    EXPECT_EQ(send.bytes, recv.bytes);
    EXPECT_TRUE(seen.insert(x.send).second);
    EXPECT_TRUE(seen.insert(x.recv).second);
  }
  // Each flow event lies inside the slice it binds to (Chrome binds by enclosing slice).
  std::map<std::tuple<int, int, int>, std::pair<double, double>> slice_of;  // pid, tid, task
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] != "X") continue;
    const double ts = e["ts"].get<double>();
    slice_of[{e["pid"].get<int>(), e["tid"].get<int>(), e["args"]["task"].get<int>()}] = {
        ts, ts + e["dur"].get<double>()};
  }
  std::size_t flows = 0;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] != "s" && e["ph"] != "f") continue;
    ++flows;
    const auto slice =
        slice_of.at({e["pid"].get<int>(), e["tid"].get<int>(), e["args"]["task"].get<int>()});
    EXPECT_GE(e["ts"].get<double>(), slice.first);
    EXPECT_LE(e["ts"].get<double>(), slice.second);
    if (e["ph"] == "f") {
      EXPECT_EQ(e["bp"], "e");
    }
  }
  EXPECT_EQ(flows, 2 * sends);
}

TEST(TraceJson, ASendWhosePeerIsNotTracedHasNoArrow) {
  const Plan& plan = small_plan();
  std::vector<TaskSpan> spans;
  for (const TaskSpan& s : hand_made_spans(plan)) {
    if (s.rank == 0) spans.push_back(s);
  }
  const Trace t = trace_from_json(trace_to_json(plan, spans, trace_other_data("simulated", {})));
  EXPECT_TRUE(t.transfers.empty());
  EXPECT_EQ(t.events.size(), spans.size());
}

// Regression: threads were named for all six streams of a traced rank, used or not.
TEST(TraceJson, OnlyStreamsWithTasksGetAThread) {
  const Trace t = trace_from_json(hand_made_trace());
  std::set<std::tuple<int, Stream, int>> used, named;
  for (const TraceEvent& e : t.events) used.insert({e.rank, e.stream, e.lane});
  for (const TraceTrack& track : t.tracks) {
    EXPECT_TRUE(named.insert({track.rank, track.stream, track.lane}).second) << track.name;
    EXPECT_NE(track.name, "cp");
    EXPECT_NE(track.name, "ep");
  }
  EXPECT_EQ(named, used);
}

TEST(TraceJson, UnknownArgsAreKept) {
  json::Json j = hand_made_trace();
  std::size_t index = 0;
  while (j["traceEvents"][index]["ph"] != "X") ++index;
  j["traceEvents"][index]["args"]["op"] = "linear_forward";
  j["traceEvents"][index]["args"]["shapes"] = {{512, 256}, {256, 768}};
  j["traceEvents"][index]["args"]["source"] = 3;
  const Trace t = trace_from_json(j);
  const json::Json expected = {
      {"op", "linear_forward"}, {"shapes", {{512, 256}, {256, 768}}}, {"source", 3}};
  EXPECT_EQ(t.events[0].other_args, expected);
  EXPECT_EQ(t.events[0].task, j["traceEvents"][index]["args"]["task"].get<std::uint32_t>());
}

TEST(TraceJson, BadFilesAreRefusedNamingFileEventAndValue) {
  const json::Json good = hand_made_trace();
  std::size_t x = 0;
  while (good["traceEvents"][x]["ph"] != "X") ++x;
  const std::string event = "trace.traceEvents[" + std::to_string(x) + "]";

  json::Json j = good;
  j["otherData"]["kind"] = "strata.report";
  expect_config_error([&] { trace_from_json(j, "t.json"); },
                      {"t.json: trace.otherData.kind = \"strata.report\"", "strata.trace"});
  j = good;
  j["otherData"]["schema_version"] = 7;
  expect_config_error([&] { trace_from_json(j, "t.json"); },
                      {"trace.otherData.schema_version = 7"});
  j = good;
  j["traceEvents"][x]["args"].erase("layer");
  expect_config_error([&] { trace_from_json(j, "t.json"); },
                      {"t.json: " + event + ".args.layer: required key is missing"});
  j = good;
  j["traceEvents"][x]["ts"] = "early";
  expect_config_error([&] { trace_from_json(j, "t.json"); }, {event + ".ts = \"early\"", "number"});
  j = good;
  j["traceEvents"][x]["args"]["block"] = "mlp_fc3";
  expect_config_error([&] { trace_from_json(j, "t.json"); },
                      {event + ".args.block = \"mlp_fc3\"", "mlp_fc2"});
  j = good;
  j["traceEvents"][x]["ph"] = "B";
  expect_config_error([&] { trace_from_json(j, "t.json"); }, {event + ".ph = \"B\""});
  j = good;
  for (std::size_t i = 0; i < j["traceEvents"].size(); ++i) {
    if (j["traceEvents"][i]["ph"] == "f") {
      j["traceEvents"].erase(i);
      break;
    }
  }
  expect_config_error([&] { trace_from_json(j, "t.json"); }, {"flow start without an end"});
}

}  // namespace
}  // namespace strata::results
