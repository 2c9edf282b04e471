// The link benchmark (profiler/tools/link_bench.hpp) without MPI: its sizes and groups, and
// measure_links() on a world of threads behind the Comm interface -- every curve measured, the
// same profile on every rank, a wrong result (injected into all-reduce, all-to-all or broadcast)
// stopping every rank with one message,
// curves whose times fall as the messages grow (stalls) left out with a warning, and the
// options that cannot make a curve refused before any communication. Under mpirun the
// CLI is tested by profile_links_mpi_test.cpp.
#include "profiler/tools/link_bench.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/error.hpp"

namespace strata::profiler {
namespace {

using exec::GroupId;
using exec::Request;

// Rendezvous of threads: the members of a group each hand in a buffer and get back every
// member's, in member order, once all have arrived.
class ThreadWorld {
 public:
  explicit ThreadWorld(int n) : n_(n) {}
  int size() const { return n_; }

  std::vector<std::vector<float>> exchange(const std::vector<int>& members, int rank,
                                           std::vector<float> mine) {
    Round& g = round_of(members);
    std::unique_lock<std::mutex> lock(g.m);
    g.data.resize(members.size());
    const auto at = std::find(members.begin(), members.end(), rank) - members.begin();
    g.data[static_cast<std::size_t>(at)] = std::move(mine);
    const long generation = g.generation;
    if (++g.arrived == static_cast<int>(members.size())) {
      g.result = std::move(g.data);
      g.data.clear();
      g.arrived = 0;
      ++g.generation;
      g.cv.notify_all();
    } else {
      g.cv.wait(lock, [&] { return g.generation != generation; });
    }
    return g.result;
  }

 private:
  struct Round {
    std::mutex m;
    std::condition_variable cv;
    int arrived = 0;
    long generation = 0;
    std::vector<std::vector<float>> data, result;
  };
  Round& round_of(const std::vector<int>& members) {
    std::lock_guard<std::mutex> lock(m_);
    auto& r = rounds_[members];
    if (!r) r = std::make_unique<Round>();
    return *r;
  }

  int n_;
  std::mutex m_;
  std::map<std::vector<int>, std::unique_ptr<Round>> rounds_;
};

// One rank of a ThreadWorld. Operations complete before they return, except a send, which
// exchanges with the peer's send when waited on: enough for link_bench's pattern (post the
// receive, send and wait, wait for the receive). `corrupt` makes rank 1 add 1 to the last
// element of every output of that collective; `stall_small_s` makes every operation sleep that long
// times 9 - log2(its floats) / 2: 17 x at 2 floats down to 2 x at 16384, a step of 2 x per size
// (sizes grow by factors of 4), so that with stall_small_s = 1 ms the times fall by 2 ms from each
// size to the next, far more than copying or a late wake-up adds, even under a sanitizer on a
// loaded machine: timing noise that no fit (relative or absolute) can give a bandwidth.
class ThreadComm final : public exec::Comm {
 public:
  ThreadComm(ThreadWorld& world, int rank) : world_(world), rank_(rank) {}
  std::optional<LinkCollective> corrupt;
  double stall_small_s = 0;
  // Poses as the NCCL backend: buffers on a stream's backend (a CPU stream's Buffers here,
  // distinct from the benchmark's host copies, so a missed copy across shows as a wrong result).
  bool device = false;

  int rank() const override { return rank_; }
  int size() const override { return world_.size(); }
  std::string backend() const override { return device ? "nccl" : "threads"; }
  bool device_buffers() const override { return device; }
  GroupId split(const std::vector<int>& my_group) override {
    groups_.push_back(my_group);
    return my_group.empty() ? exec::kNoGroup : static_cast<GroupId>(groups_.size() - 1);
  }
  int group_size(GroupId g) const override { return static_cast<int>(members(g).size()); }
  int group_rank(GroupId g) const override {
    const auto& m = members(g);
    return static_cast<int>(std::find(m.begin(), m.end(), rank_) - m.begin());
  }
  Request all_reduce(GroupId g, float* buf, std::size_t n, exec::ReduceOp op) override {
    stall(n);
    const auto all = world_.exchange(members(g), rank_, {buf, buf + n});
    std::fill(buf, buf + n, 0.f);
    for (const auto& part : all) exec::reduce_into(buf, part.data(), n, op);
    corrupt_last(LinkCollective::kAllReduce, buf, n);
    return Request();
  }
  Request all_gather(GroupId g, const float* send, float* recv, std::size_t n) override {
    stall(n);
    for (const auto& part : world_.exchange(members(g), rank_, {send, send + n})) {
      recv = std::copy(part.begin(), part.end(), recv);
    }
    return Request();
  }
  Request reduce_scatter(GroupId g, const float* send, float* recv,
                         const std::vector<int>& counts) override {
    std::size_t total = 0, offset = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      if (static_cast<int>(i) < group_rank(g)) offset += static_cast<std::size_t>(counts[i]);
      total += static_cast<std::size_t>(counts[i]);
    }
    stall(total);
    const auto all = world_.exchange(members(g), rank_, {send, send + total});
    const auto mine = static_cast<std::size_t>(counts[static_cast<std::size_t>(group_rank(g))]);
    std::fill(recv, recv + mine, 0.f);
    for (const auto& part : all) {
      exec::reduce_into(recv, part.data() + offset, mine, exec::ReduceOp::kSum);
    }
    return Request();
  }
  Request all_gather_v(GroupId, const float*, float*, const std::vector<int>&) override {
    ADD_FAILURE() << "link_bench does not use all_gather_v";
    return Request();
  }
  Request broadcast(GroupId g, float* buf, std::size_t n, int root) override {
    stall(n);
    const auto all = world_.exchange(members(g), rank_, {buf, buf + n});
    const auto& from = all.at(static_cast<std::size_t>(root));
    std::copy(from.begin(), from.end(), buf);
    corrupt_last(LinkCollective::kBroadcast, buf, n);
    return Request();
  }
  Request all_to_all(GroupId g, const float* send, float* recv, std::size_t n_per_rank) override {
    const std::size_t members_n = members(g).size();
    stall(members_n * n_per_rank);
    const auto all = world_.exchange(members(g), rank_, {send, send + members_n * n_per_rank});
    const std::size_t mine = static_cast<std::size_t>(group_rank(g)) * n_per_rank;
    for (std::size_t j = 0; j < members_n; ++j) {
      std::copy_n(all[j].begin() + static_cast<std::ptrdiff_t>(mine), n_per_rank,
                  recv + j * n_per_rank);
    }
    corrupt_last(LinkCollective::kAllToAll, recv, members_n * n_per_rank);
    return Request();
  }
  Request send(int peer, int tag, const float* buf, std::size_t n) override {
    stall(n);
    std::vector<float> mine(buf, buf + n);
    return Request([this, peer, tag, mine] {
      const std::vector<int> pair = {std::min(rank_, peer), std::max(rank_, peer)};
      const auto both = world_.exchange(pair, rank_, mine);
      const auto& theirs = both[rank_ < peer ? 1 : 0];
      std::copy(theirs.begin(), theirs.end(), pending_.at({peer, tag}));
    });
  }
  Request recv(int peer, int tag, float* buf, std::size_t) override {
    pending_[{peer, tag}] = buf;
    return Request();
  }
  int max_tag() const override { return 32767; }
  void barrier() override {
    std::vector<int> everyone(static_cast<std::size_t>(size()));
    for (int r = 0; r < size(); ++r) everyone[static_cast<std::size_t>(r)] = r;
    world_.exchange(everyone, rank_, {});
  }
  [[noreturn]] void abort(int) override { std::abort(); }

 private:
  void corrupt_last(LinkCollective c, float* out, std::size_t n) const {
    if (corrupt == c && rank_ == 1 && n > 0) out[n - 1] += 1;
  }
  void stall(std::size_t floats) const {
    if (stall_small_s > 0) {
      const double scale =
          9.0 - std::log2(static_cast<double>(std::max<std::size_t>(floats, 1))) / 2.0;
      std::this_thread::sleep_for(std::chrono::duration<double>(stall_small_s * scale));
    }
  }
  const std::vector<int>& members(GroupId g) const {
    return groups_.at(static_cast<std::size_t>(g));
  }

  ThreadWorld& world_;
  int rank_;
  std::vector<std::vector<int>> groups_;
  std::map<std::pair<int, int>, float*> pending_;
};

// Runs measure_links on `n` threads; each rank's profile, or its error message.
struct RankResult {
  LinkProfile profile;
  std::string error;
};
std::vector<RankResult> measure_on_threads(int n, const LinkBenchOptions& opts,
                                           std::optional<LinkCollective> corrupt = std::nullopt,
                                           double stall_small_s = 0, bool device = false) {
  ThreadWorld world(n);
  std::vector<RankResult> results(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      ThreadComm comm(world, r);
      comm.corrupt = corrupt;
      comm.stall_small_s = stall_small_s;
      comm.device = device;
      try {
        results[static_cast<std::size_t>(r)].profile = measure_links(comm, opts);
      } catch (const std::exception& e) {
        results[static_cast<std::size_t>(r)].error = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

LinkBenchOptions small_options() {
  LinkBenchOptions o;
  o.max_bytes = 4 << 20;  // large enough that copying, not the rendezvous, sets the slope
  o.size_factor = 4;      // half the sizes of the default: the tests stay quick
  o.warmup = 1;
  o.iters = 2;
  o.device = "Test CPU";
  o.device_kind = "cpu";
  o.intra_fabric = "shared";
  return o;
}

TEST(LinkBench, SizesRunByTheFactorToTheLargestInWholeFloatsPerMember) {
  // By factors of 2 by default, as nccl-tests' -f 2.
  EXPECT_EQ(link_bench_sizes(LinkCollective::kAllReduce, 2, 1000),
            (std::vector<std::int64_t>{8, 16, 32, 64, 128, 256, 512, 1000}));
  // An all-gather over 3 ranks: whole floats per member, each size once (8 is below one float
  // per member, 16 rounds to 12).
  EXPECT_EQ(link_bench_sizes(LinkCollective::kAllGather, 3, 100),
            (std::vector<std::int64_t>{12, 24, 60, 96}));
  EXPECT_EQ(link_bench_sizes(LinkCollective::kAllReduce, 2, 16 << 20, 4),
            (std::vector<std::int64_t>{8, 32, 128, 512, 2048, 8192, 32768, 131072, 524288, 2097152,
                                       8388608, 16777216}));
  EXPECT_EQ(link_bench_sizes(LinkCollective::kSendRecv, 2, 100, 4),
            (std::vector<std::int64_t>{8, 32, 100}));
  // An all-gather over 3 ranks moves whole floats per member: multiples of 12 bytes.
  EXPECT_EQ(link_bench_sizes(LinkCollective::kAllGather, 3, 256, 4),
            (std::vector<std::int64_t>{24, 120, 252}));
  EXPECT_EQ(link_bench_sizes(LinkCollective::kReduceScatter, 8, 1000, 4),
            (std::vector<std::int64_t>{32, 128, 512, 992}));
  EXPECT_EQ(link_bench_sizes(LinkCollective::kAllGather, 8, 16, 4), (std::vector<std::int64_t>{}));
  // An all-to-all's size is one rank's whole buffer, split the same way; a broadcast's is not.
  EXPECT_EQ(link_bench_sizes(LinkCollective::kAllToAll, 3, 256, 4),
            (std::vector<std::int64_t>{24, 120, 252}));
  EXPECT_EQ(link_bench_sizes(LinkCollective::kBroadcast, 3, 100, 4),
            (std::vector<std::int64_t>{8, 32, 100}));
}

TEST(LinkBench, GroupsArePowersOfTwoAndTheWorld) {
  EXPECT_EQ(link_bench_groups(1), (std::vector<int>{}));
  EXPECT_EQ(link_bench_groups(2), (std::vector<int>{2}));
  EXPECT_EQ(link_bench_groups(3), (std::vector<int>{2, 3}));
  EXPECT_EQ(link_bench_groups(4), (std::vector<int>{2, 4}));
  EXPECT_EQ(link_bench_groups(6), (std::vector<int>{2, 4, 6}));
  EXPECT_EQ(link_bench_groups(16), (std::vector<int>{2, 4, 8, 16}));
}

TEST(LinkBench, MeasuresEveryCurveTheSameOnEveryRank) {
  LinkBenchOptions opts = small_options();
  std::vector<std::string> progress;
  opts.progress = [&](const std::string& s) { progress.push_back(s); };  // rank 0 only
  const auto results = measure_on_threads(3, opts);
  for (const auto& r : results) ASSERT_EQ(r.error, "");
  const LinkProfile& p = results[0].profile;
  EXPECT_EQ(p.backend, "mpi");
  EXPECT_EQ(p.on.device, "Test CPU");
  EXPECT_EQ(p.on.device_kind, "cpu");
  EXPECT_EQ(p.on.libraries.at("mpi"), "unknown");  // the thread world names no library
  const std::vector<std::pair<LinkCollective, int>> want = {
      {LinkCollective::kAllReduce, 2},     {LinkCollective::kAllReduce, 3},
      {LinkCollective::kAllGather, 2},     {LinkCollective::kAllGather, 3},
      {LinkCollective::kReduceScatter, 2}, {LinkCollective::kReduceScatter, 3},
      {LinkCollective::kAllToAll, 2},      {LinkCollective::kAllToAll, 3},
      {LinkCollective::kBroadcast, 2},     {LinkCollective::kBroadcast, 3},
      {LinkCollective::kSendRecv, 2}};
  ASSERT_EQ(p.curves.size(), want.size());
  std::size_t points = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const LinkCurve& c = p.curves[i];
    EXPECT_EQ(c.collective, want[i].first) << i;
    EXPECT_EQ(c.ranks, want[i].second) << i;
    EXPECT_EQ(c.fabric, "shared");
    EXPECT_EQ(c.points.size(),
              link_bench_sizes(c.collective, c.ranks, opts.max_bytes, opts.size_factor).size());
    for (const LinkPoint& x : c.points) EXPECT_GT(x.time_s, 0);
    EXPECT_GT(c.fit.busbw_Bps, 0);
    points += c.points.size();
  }
  // Every rank returns the same curves (the slowest member's times, shared).
  for (const auto& r : results) {
    EXPECT_EQ(link_profile_to_json(r.profile)["curves"], link_profile_to_json(p)["curves"]);
  }
  ASSERT_EQ(progress.size(), points);
  EXPECT_EQ(progress.front(), "all_reduce 2 ranks, 8 bytes (1 of " + std::to_string(points) + ")");
  EXPECT_EQ(progress.back(), "send_recv 2 ranks, 4194304 bytes (" + std::to_string(points) +
                                 " of " + std::to_string(points) + ")");
}

// A communicator on device buffers (the NCCL backend) gets buffers on the options' stream, filled
// and checked through copies: every curve is measured and checked as on the host, and the
// profile names the backend "nccl".
TEST(LinkBench, ADeviceBufferCommMeasuresThroughBuffersOnTheStream) {
  const kernels::Stream stream = kernels::Stream::cpu();
  LinkBenchOptions opts = small_options();
  opts.stream = &stream;
  const auto results = measure_on_threads(2, opts, std::nullopt, 0, true);
  for (const auto& r : results) ASSERT_EQ(r.error, "");
  const LinkProfile& p = results[0].profile;
  EXPECT_EQ(p.backend, "nccl");
  EXPECT_EQ(p.on.libraries.at("nccl"), "unknown");
  EXPECT_EQ(p.curves.size(), 6u);  // five collectives over 2 ranks and send_recv
  // A wrong result is still seen through the copies.
  const auto wrong = measure_on_threads(2, opts, LinkCollective::kAllReduce, 0, true);
  EXPECT_EQ(wrong[0].error,
            "all_reduce 2 ranks, 8 bytes: wrong result on rank 1: output element 1 = 6, "
            "expected 5");
}

TEST(LinkBench, AWrongResultStopsEveryRankWithOneMessage) {
  const auto results = measure_on_threads(2, small_options(), LinkCollective::kAllReduce);
  for (const auto& r : results) {
    EXPECT_EQ(r.error,
              "all_reduce 2 ranks, 8 bytes: wrong result on rank 1: output element 1 = 6, "
              "expected 5");
  }
}

// The all-to-all's and the broadcast's results are checked too: rank 1's element 1 of 2 floats is
// member 1's own block (1 + 1 + 1 % 7 = 3) after an all-to-all, the root's element
// (0 + 1 + 1 = 2) after a broadcast.
TEST(LinkBench, AWrongAllToAllOrBroadcastStopsEveryRank) {
  for (const auto& [c, message] : std::vector<std::pair<LinkCollective, std::string>>{
           {LinkCollective::kAllToAll,
            "all_to_all 2 ranks, 8 bytes: wrong result on rank 1: output element 1 = 4, "
            "expected 3"},
           {LinkCollective::kBroadcast,
            "broadcast 2 ranks, 8 bytes: wrong result on rank 1: output element 1 = 3, "
            "expected 2"}}) {
    LinkBenchOptions opts = small_options();
    opts.max_bytes = 4 << 10;  // the curves before it are measured, and quickly
    for (const auto& r : measure_on_threads(2, opts, c)) EXPECT_EQ(r.error, message);
  }
}

TEST(LinkBench, CurvesWhoseTimesDoNotGrowAreLeftOutWithAWarning) {
  LinkBenchOptions opts = small_options();
  opts.max_bytes = 64 << 10;  // copies take microseconds; the stalls 17 ms down to 2 ms
  std::vector<std::string> warnings;
  opts.warning = [&](const std::string& s) { warnings.push_back(s); };  // rank 0 only
  const auto results = measure_on_threads(2, opts, std::nullopt, 1e-3);
  for (const auto& r : results) {
    EXPECT_EQ(r.error,
              "no curve could be fitted: the times do not grow with the message size up "
              "to --max-bytes = 65536 (timing noise); measure larger messages or more "
              "--iters");
  }
  // all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv
  ASSERT_EQ(warnings.size(), 6u);
  EXPECT_EQ(warnings[0],
            "all_reduce 2 ranks left out: its times do not grow with the message size up to 65536 "
            "bytes (timing noise), so no bandwidth can be fitted; measure larger messages "
            "(--max-bytes) or more --iters");
}

TEST(LinkBench, RefusesOptionsThatCannotMakeACurveBeforeCommunicating) {
  // No thread runs: check_options throws before the first exchange.
  const auto error_of = [](int world, const LinkBenchOptions& opts) {
    ThreadWorld w(world);
    ThreadComm comm(w, 0);
    try {
      measure_links(comm, opts);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no ConfigError");
  };
  LinkBenchOptions o = small_options();
  EXPECT_EQ(error_of(1, o),
            "a world of 1 rank: measuring links needs at least 2 (mpirun -np 2 "
            "or more)");
  o.max_bytes = 16;
  EXPECT_EQ(error_of(8, o),
            "--max-bytes = 16: with 8 ranks a curve needs two sizes of at least "
            "one float per rank; use --max-bytes 128 or more");
  o.max_bytes = (std::int64_t{1} << 30) + 1;
  EXPECT_EQ(error_of(2, o), "--max-bytes = 1073741825: at most 1 GiB (1073741824) per message");
  o = small_options();
  o.iters = 0;
  EXPECT_EQ(error_of(2, o), "--iters = 0: must be >= 1");
  o = small_options();
  o.warmup = -1;
  EXPECT_EQ(error_of(2, o), "--warmup = -1: must be >= 0");
}

}  // namespace
}  // namespace strata::profiler
