// All-to-all as flows (sim/collectives.hpp): the flows and bytes of each algorithm (all pairs,
// pairwise, hierarchical), the order of the pairwise rounds, that the hierarchical exchange moves
// what the direct one does, simulated times on a small platform against the bandwidth and latency
// arithmetic written out here (uniform and routed by a Zipf distribution), contention with an
// all-reduce on the same ports, and bad inputs. Every simulation runs in a forked child.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "fixed_cost.hpp"
#include "profiler/expert_routing.hpp"
#include "profiler/link_model.hpp"
#include "sim/collectives.hpp"
#include "sim/simulate.hpp"
#include "sim_test_util.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::sim {
namespace {

using profiler::ExpertLoad;
using profiler::TokenDistribution;
using strategies::CollectiveKind;
using testing::in_child;
using testing::kLineRate;

// A node map for group ranks 0..n-1 with `per_node` consecutive ranks per node.
NodeMap nodes_of(int n, int per_node) {
  NodeMap m;
  for (int r = 0; r < n; ++r) m.node_of_rank.push_back(r / per_node);
  return m;
}

// A matrix with distinct entries: member i sends 1000 (i + 1) + 10 j bytes to member j.
ByteMatrix distinct(int n) {
  ByteMatrix m(n, std::vector<double>(n));
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) m[i][j] = 1000.0 * (i + 1) + 10.0 * j;
  }
  return m;
}

// Bytes from rank to rank over all flows of `s`.
std::map<std::pair<int, int>, double> bytes_by_pair(const FlowSchedule& s) {
  std::map<std::pair<int, int>, double> out;
  for (int f = 0; f < s.size(); ++f) {
    if (!s.flow(f).is_delay()) out[{s.flow(f).from, s.flow(f).to}] += s.flow(f).bytes;
  }
  return out;
}

FlowDetail forced(Algorithm a, const NodeMap* nodes = nullptr) {
  FlowDetail d;
  d.algorithm = a;
  d.nodes = nodes;
  return d;
}

TEST(AllToAll, FlowsAndBytesPerAlgorithm) {
  const std::vector<int> ranks = {0, 1, 2, 3, 4, 5};
  const NodeMap two_by_three = nodes_of(6, 3);
  const ByteMatrix m = distinct(6);
  // All pairs and pairwise: one flow per ordered pair, carrying exactly its entry.
  for (Algorithm a : {Algorithm::kAllPairs, Algorithm::kPairwise}) {
    const FlowSchedule s = plan_all_to_all(ranks, m, forced(a));
    EXPECT_EQ(s.size(), 30);
    const auto by_pair = bytes_by_pair(s);
    EXPECT_EQ(by_pair.size(), 30u);
    for (const auto& [pair, bytes] : by_pair) EXPECT_EQ(bytes, m[pair.first][pair.second]);
  }
  EXPECT_EQ(plan_all_to_all(ranks, m, forced(Algorithm::kAllPairs)).initial().size(), 30u);
  // Hierarchical over 2 nodes of 3: 3 x 2 NVLink flows per node, 3 rails x 2 directions.
  const FlowSchedule h = plan_all_to_all(ranks, m, forced(Algorithm::kHierarchical, &two_by_three));
  EXPECT_EQ(h.size(), 2 * 6 + 3 * 2);
  EXPECT_EQ(h.initial().size(), 12u);  // the NVLink phase starts at once
  // Uniform: the node's all-to-all (nccl-tests size S, S/n per pair) as flows of S/n.
  const FlowSchedule u =
      plan_collective(CollectiveKind::kAllToAll, ranks, 6000, forced(Algorithm::kPairwise));
  EXPECT_EQ(u.size(), 30);
  for (int f = 0; f < u.size(); ++f) EXPECT_EQ(u.flow(f).bytes, 1000);
  // Zero entries move nothing and make no flow; the diagonal never does.
  ByteMatrix sparse(6, std::vector<double>(6, 0.0));
  sparse[0][3] = 5;
  sparse[4][4] = 7;
  for (Algorithm a : {Algorithm::kAllPairs, Algorithm::kPairwise}) {
    EXPECT_EQ(plan_all_to_all(ranks, sparse, forced(a)).size(), 1);
  }
  // Hierarchical: 0 -> 3 goes 0 -> 0 (no hop: rank 0 is on rail 0) then 0 -> 3 on rail 0.
  const FlowSchedule hs =
      plan_all_to_all(ranks, sparse, forced(Algorithm::kHierarchical, &two_by_three));
  ASSERT_EQ(hs.size(), 1);
  EXPECT_EQ(hs.flow(0).from, 0);
  EXPECT_EQ(hs.flow(0).to, 3);
  EXPECT_EQ(hs.flow(0).bytes, 5);
}

TEST(AllToAll, HierarchicalMovesWhatTheDirectExchangeMoves) {
  // 2 nodes of 3 (ranks 0-2 and 3-5), member (a,j) at position 3a + j. Data from s = (a,j) to
  // r = (b,l) goes s -> (a,l) over NVLink (no hop when j = l), then (a,l) -> r on rail l (no
  // hop when a = b). Every hop must carry exactly the entries routed over it, and the bytes
  // between each pair of nodes are the direct exchange's.
  const std::vector<int> ranks = {0, 1, 2, 3, 4, 5};
  const NodeMap nodes = nodes_of(6, 3);
  const ByteMatrix m = distinct(6);
  std::map<std::pair<int, int>, double> expected;  // hop -> bytes routed over it
  for (int s = 0; s < 6; ++s) {
    for (int r = 0; r < 6; ++r) {
      const int relay = (s / 3) * 3 + r % 3;
      if (relay != s) expected[{s, relay}] += m[s][r];
      if (relay != r) expected[{relay, r}] += m[s][r];
    }
  }
  const FlowSchedule h = plan_all_to_all(ranks, m, forced(Algorithm::kHierarchical, &nodes));
  EXPECT_EQ(bytes_by_pair(h), expected);
  const FlowSchedule direct = plan_all_to_all(ranks, m, forced(Algorithm::kAllPairs));
  const auto node_pairs = [](const FlowSchedule& s) {
    std::map<std::pair<int, int>, double> out;
    for (const auto& [pair, bytes] : bytes_by_pair(s)) {
      if (pair.first / 3 != pair.second / 3) out[{pair.first / 3, pair.second / 3}] += bytes;
    }
    return out;
  };
  EXPECT_EQ(node_pairs(h), node_pairs(direct));
  double cross = 0;
  for (int s = 0; s < 6; ++s) {
    for (int r = 0; r < 6; ++r) cross += s / 3 != r / 3 ? m[s][r] : 0;
  }
  EXPECT_EQ(node_pairs(h).at({0, 1}) + node_pairs(h).at({1, 0}), cross);
  // A network flow leaves its relay only once every NVLink flow into the relay is done.
  FlowSchedule run = h;
  std::vector<int> ready = run.initial();
  for (int f : ready) EXPECT_EQ(run.flow(f).from / 3, run.flow(f).to / 3);
  std::set<int> done;
  while (!ready.empty()) {
    const int f = ready.back();
    ready.pop_back();
    done.insert(f);
    for (int g : run.complete(f)) {
      const Flow& flow = run.flow(g);
      EXPECT_NE(flow.from / 3, flow.to / 3);
      for (int p = 0; p < run.size(); ++p) {
        const Flow& in = run.flow(p);
        if (in.to == flow.from && in.from / 3 == flow.from / 3) {
          EXPECT_TRUE(done.count(p)) << p;
        }
      }
      ready.push_back(g);
    }
  }
  EXPECT_TRUE(run.done());
}

// Drives `s` to completion; whenever a flow i -> j of round r = (j - i) mod n becomes ready,
// every flow of an earlier round sent or received by i or j must be done. Returns the order.
std::vector<int> check_pairwise_order(FlowSchedule s, int n) {
  const auto round = [&](int f) { return (s.flow(f).to - s.flow(f).from + n) % n; };
  std::set<int> done;
  std::vector<int> order;
  std::vector<int> ready = s.initial();
  for (int f : ready) EXPECT_EQ(round(f), 1) << "only round 1 starts at once";
  while (!ready.empty()) {
    std::sort(ready.begin(), ready.end());
    const int f = ready.front();
    ready.erase(ready.begin());
    done.insert(f);
    order.push_back(f);
    for (int g : s.complete(f)) {
      const Flow& fg = s.flow(g);
      for (int p = 0; p < s.size(); ++p) {
        const Flow& fp = s.flow(p);
        const bool touches =
            fp.from == fg.from || fp.to == fg.from || fp.from == fg.to || fp.to == fg.to;
        if (touches && round(p) < round(g)) {
          EXPECT_TRUE(done.count(p)) << "round " << round(g) << " flow " << fg.from << "->" << fg.to
                                     << " started before " << fp.from << "->" << fp.to;
        }
      }
      ready.push_back(g);
    }
  }
  EXPECT_TRUE(s.done());
  return order;
}

TEST(AllToAll, PairwiseRoundsAreOrdered) {
  const std::vector<int> ranks = {0, 1, 2, 3, 4, 5};
  const FlowSchedule s = plan_all_to_all(ranks, distinct(6), forced(Algorithm::kPairwise));
  check_pairwise_order(s, 6);
  // Round 2's 0 -> 2 waits for the four round-1 transfers of its ends (0 -> 1, 5 -> 0, 2 -> 3,
  // 1 -> 2) and nothing else.
  FlowSchedule run = s;
  const auto id = [&](int from, int to) {
    for (int f = 0; f < run.size(); ++f) {
      if (run.flow(f).from == from && run.flow(f).to == to) return f;
    }
    return -1;
  };
  EXPECT_TRUE(run.complete(id(0, 1)).empty());
  EXPECT_TRUE(run.complete(id(5, 0)).empty());
  EXPECT_TRUE(run.complete(id(2, 3)).empty());
  EXPECT_EQ(run.complete(id(1, 2)), (std::vector<int>{id(0, 2)}));
  // A zero entry skips its transfer; the order still holds through the rounds before it.
  ByteMatrix holes = distinct(6);
  holes[1][2] = 0;
  holes[3][0] = 0;
  const FlowSchedule h = plan_all_to_all(ranks, holes, forced(Algorithm::kPairwise));
  EXPECT_EQ(h.size(), 28);
  check_pairwise_order(h, 6);
}

// The test cluster (tests/strategies/test_models.hpp) at line rate: 300 GB/s and 2 us per
// NVSwitch port, a 25 GB/s NIC per GPU and 5 us across nodes. Two nodes of 4 GPUs.
constexpr double kAin = 2e-6, kBin = 300e9, kAnet = 5e-6, kBnet = 25e9;
constexpr double kMiB = 1 << 20;

double simulate_one(const CollectiveRequest& r) {
  const auto c = strategies::testing::cluster(2, 4);
  const auto t = in_child([&] { return time_collectives(c, 8, {r}, kLineRate); });
  EXPECT_EQ(t.size(), 1u);
  return t.empty() ? 0 : t[0];
}

TEST(AllToAll, UniformTimesByHand) {
  const double S = 4 * kMiB;
  const double b = S / 4;  // per pair
  const std::vector<int> inside = {0, 1, 2, 3};
  const std::vector<int> spanning = {0, 1, 4, 5};  // 2 nodes of 2
  const CollectiveKind a2a = CollectiveKind::kAllToAll;
  struct Case {
    std::vector<int> ranks;
    Algorithm algorithm;
    double seconds;  // by hand
  };
  const std::vector<Case> cases = {
      // 3 flows share each port.
      {inside, Algorithm::kAllPairs, kAin + 3 * b / kBin},
      {inside, Algorithm::kAuto, kAin + 3 * b / kBin},
      // 3 rounds of one block, each alone on its ports.
      {inside, Algorithm::kPairwise, 3 * (kAin + b / kBin)},
      // 2 blocks through each NIC; the 1 NVLink block per port runs meanwhile.
      {spanning, Algorithm::kAllPairs, kAnet + 2 * b / kBnet},
      // Every round has a block crossing the network, waiting for one of the round before.
      {spanning, Algorithm::kPairwise, 3 * (kAnet + b / kBnet)},
      // NVLink: 2 blocks (its rail peer's and the one delivered) to the node's other member;
      // then rail-aligned: 2 blocks (both members' for that peer) through each NIC.
      {spanning, Algorithm::kHierarchical, kAin + 2 * b / kBin + kAnet + 2 * b / kBnet},
      {spanning, Algorithm::kAuto, kAin + 2 * b / kBin + kAnet + 2 * b / kBnet},
  };
  const auto c = strategies::testing::cluster(2, 4);
  for (const Case& k : cases) {
    CollectiveRequest r{a2a, k.ranks, S};
    r.algorithm = k.algorithm;
    const double t = simulate_one(r);
    EXPECT_NEAR(t / k.seconds, 1.0, 1e-9)
        << profiler::algorithm_name(k.algorithm) << " over " << k.ranks.size() << " ranks";
    // The link face's formula is the same number.
    const std::vector<int> counts = profiler::members_per_node(
        k.ranks, profiler::node_map(c, 8, kLineRate.link_efficiencies()));
    const Algorithm a = k.algorithm == Algorithm::kAuto
                            ? (counts.size() > 1 ? Algorithm::kHierarchical : Algorithm::kAllPairs)
                            : k.algorithm;
    NodeMap fabric;
    fabric.intra_latency_s = kAin;
    fabric.intra_bandwidth_Bps = kBin;
    fabric.inter_latency_s = kAnet;
    fabric.inter_bandwidth_Bps = kBnet;
    EXPECT_NEAR(all_to_all_seconds(a, counts, S, fabric) / k.seconds, 1.0, 1e-12);
  }
  // The cost model's link face answers the automatic choice's time.
  EXPECT_NEAR(kLineRate.collective_seconds(a2a, spanning, S, c) /
                  (kAin + 2 * b / kBin + kAnet + 2 * b / kBnet),
              1.0, 1e-12);
}

TEST(AllToAll, ZipfRoutedTimesByHand) {
  // Zipf s = 1 over 4 experts, one per rank, top-1: shares 12/25, 6/25, 4/25, 3/25 of each
  // rank's R = 4096 tokens x 1 KiB = 4 MiB. Within 1e-6, as the other flow tests: SimGrid's
  // max-min solver works to a relative precision near 1e-7 once shares are re-solved midway.
  ExpertLoad zipf;
  zipf.distribution = TokenDistribution::kZipf;
  zipf.zipf_exponent = 1.0;
  const double R = 4096.0 * 1024;
  const ByteMatrix m4 = profiler::expert_dispatch_bytes(4, 4, 1, 4096, 1024, zipf);
  const double w0 = 12.0 / 25, w2 = 4.0 / 25;
  ASSERT_NEAR(m4[1][0], R * w0, 1e-6);

  // All pairs inside a node: rank 0's port receives 3 flows of R w0 at B/3 each throughout (it
  // is every one of them's tightest link), the others finish earlier.
  CollectiveRequest r{CollectiveKind::kAllToAll, {0, 1, 2, 3}, 0, m4, Algorithm::kAllPairs};
  EXPECT_NEAR(simulate_one(r) / (kAin + 3 * R * w0 / kBin), 1.0, 1e-6);

  // Pairwise over 3 ranks (3 experts: 6/11, 3/11, 2/11): round 2 waits for all of round 1 (each
  // round-2 transfer's two ends touch all three round-1 transfers), and each round's slowest
  // block is the one to rank 0.
  const ByteMatrix m3 = profiler::expert_dispatch_bytes(3, 3, 1, 4096, 1024, zipf);
  CollectiveRequest p{CollectiveKind::kAllToAll, {0, 1, 2}, 0, m3, Algorithm::kPairwise};
  EXPECT_NEAR(simulate_one(p) / (2 * (kAin + R * 6.0 / 11 / kBin)), 1.0, 1e-6);

  // Hierarchical over ranks 0, 1 (node 0) and 4, 5 (node 1): the longest chain is node 1's
  // rail-0 relay (rank 4), which gets R (w0 + w2) from rank 5 over NVLink (what node 1's rank 5
  // has for the rail-0 members of both nodes), then sends rank 0 2 R w0 (both node-1 members'
  // blocks for it) through its NIC.
  CollectiveRequest h{CollectiveKind::kAllToAll, {0, 1, 4, 5}, 0, m4, Algorithm::kHierarchical};
  EXPECT_NEAR(simulate_one(h) / (kAin + R * (w0 + w2) / kBin + kAnet + 2 * R * w0 / kBnet), 1.0,
              1e-6);
}

TEST(AllToAll, SharesItsPortsWithAnAllReduce) {
  // A dispatch and a data-parallel all-reduce over the same four ports: both slower than alone.
  const auto c = strategies::testing::cluster(2, 4);
  const std::vector<int> ranks = {0, 1, 2, 3};
  const CollectiveRequest a2a{CollectiveKind::kAllToAll, ranks, 64 * kMiB};
  const CollectiveRequest ar{CollectiveKind::kAllReduce, ranks, 64 * kMiB};
  const double a2a_alone = simulate_one(a2a);
  const double ar_alone = simulate_one(ar);
  const auto both = in_child([&] { return time_collectives(c, 8, {a2a, ar}, kLineRate); });
  ASSERT_EQ(both.size(), 2u);
  EXPECT_GT(both[0], 1.2 * a2a_alone);
  EXPECT_GT(both[1], 1.2 * ar_alone);
}

TEST(AllToAll, BadInputs) {
  const std::vector<int> ranks = {0, 1, 2};
  EXPECT_THROW(plan_all_to_all(ranks, {{0, 1}, {1, 0}}, {}), ConfigError);
  try {
    plan_all_to_all(ranks, {{0, 1, 2}, {1, 0, -3}, {1, 1, 0}}, {});
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "all_to_all.bytes[1][2] = -3: must be finite and >= 0");
  }
  EXPECT_THROW(plan_collective(CollectiveKind::kAllToAll, ranks, -1, {}), ConfigError);
  // Forcing an algorithm that does not apply is a programming error (STRATA_CHECK aborts).
  const NodeMap uneven = nodes_of(3, 2);  // 2 members on node 0, 1 on node 1
  EXPECT_DEATH(plan_all_to_all(ranks, distinct(3), forced(Algorithm::kHierarchical, &uneven)),
               "a hierarchical all-to-all needs");
  EXPECT_DEATH(plan_all_to_all(ranks, distinct(3), forced(Algorithm::kHierarchical)),
               "a hierarchical all-to-all needs");
  EXPECT_DEATH(plan_all_to_all(ranks, distinct(3), forced(Algorithm::kRing)),
               "an all-to-all runs as all_pairs, pairwise or hierarchical");
  EXPECT_DEATH(
      plan_collective(CollectiveKind::kAllReduce, ranks, 1e3, forced(Algorithm::kPairwise)),
      "all_pairs and pairwise are all-to-all algorithms");
  // A group of one moves nothing.
  EXPECT_EQ(plan_all_to_all({7}, {{5}}, {}).size(), 0);
}

}  // namespace
}  // namespace strata::sim
