// Run under mpirun by comm_mpi_test.cpp: the MPI backend's broadcast (every root), all-to-all
// and ragged all-to-all (all_to_all_v, some blocks empty) on rank-dependent inputs against
// their exact results, over the world and over the ranks but 0 (group ranks that are not world
// ranks; a group of one on 2 ranks), at one element and at a few hundred, and a broadcast and
// an all-to-all both issued before either is waited. Rank 0 prints
// "comm_mpi_check: N ranks, K checks passed" and every rank exits 0, or each rank prints its
// first wrong element per check and every rank exits 1.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "executor/comm.hpp"

namespace {

using strata::exec::Comm;
using strata::exec::GroupId;

// Exact in fp32: below 2^24 for the ranks and sizes used here.
float value(int world_rank, int block, std::size_t i) {
  return static_cast<float>(world_rank * 100000 + block * 1000 + static_cast<int>(i));
}

class Checker {
 public:
  explicit Checker(Comm& comm) : comm_(comm) {}

  // Compares `got` with `want`, reports the first difference; counts the check.
  void expect(const std::string& what, const std::vector<float>& got,
              const std::vector<float>& want) {
    ++checks_;
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (got.at(i) != want[i]) {
        std::fprintf(stderr, "comm_mpi_check: rank %d: %s: element %zu = %g, expected %g\n",
                     comm_.rank(), what.c_str(), i, static_cast<double>(got[i]),
                     static_cast<double>(want[i]));
        ++failures_;
        return;
      }
    }
  }
  int checks() const { return checks_; }
  int failures() const { return failures_; }

 private:
  Comm& comm_;
  int checks_ = 0, failures_ = 0;
};

// Member i's broadcast input: value(world rank, 0, i); after a broadcast from `root`, the root's.
std::vector<float> broadcast_input(int world_rank, std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = value(world_rank, 0, i);
  return v;
}

// Block j of a member's all-to-all input is value(world rank, j, k): after the call, this
// member's block j is member j's block for this member, value(members[j], group rank, k).
std::vector<float> all_to_all_input(int world_rank, int members, std::size_t m) {
  std::vector<float> v;
  for (int j = 0; j < members; ++j) {
    for (std::size_t k = 0; k < m; ++k) v.push_back(value(world_rank, j, k));
  }
  return v;
}
std::vector<float> all_to_all_output(const std::vector<int>& members, int group_rank,
                                     std::size_t m) {
  std::vector<float> v;
  for (int w : members) {
    for (std::size_t k = 0; k < m; ++k) v.push_back(value(w, group_rank, k));
  }
  return v;
}

void check_group(Comm& comm, Checker& check, GroupId g, const std::vector<int>& members,
                 const std::string& name) {
  const int n = static_cast<int>(members.size()), me = comm.group_rank(g);
  for (std::size_t count : {std::size_t{1}, std::size_t{300}}) {
    const std::string size = ", " + std::to_string(count) + " floats";
    for (int root = 0; root < n; ++root) {
      std::vector<float> buf = broadcast_input(comm.rank(), count);
      comm.broadcast(g, buf.data(), count, root).wait();
      check.expect("broadcast over " + name + " from group rank " + std::to_string(root) + size,
                   buf, broadcast_input(members[static_cast<std::size_t>(root)], count));
    }
    const std::vector<float> send = all_to_all_input(comm.rank(), n, count);
    std::vector<float> recv(send.size(), -1.f);
    comm.all_to_all(g, send.data(), recv.data(), count).wait();
    check.expect("all_to_all over " + name + size, recv, all_to_all_output(members, me, count));
  }
  // The ragged all-to-all: world rank w sends (w + 2 j) % 3 floats to member j (some none),
  // block j = value(w, j, k); it receives member j's block for it, consecutive in group order.
  std::vector<int> send_counts, recv_counts;
  std::vector<float> ragged_send, ragged_want;
  for (int j = 0; j < n; ++j) {
    send_counts.push_back((comm.rank() + 2 * j) % 3);
    recv_counts.push_back((members[static_cast<std::size_t>(j)] + 2 * me) % 3);
    for (int k = 0; k < send_counts.back(); ++k) {
      ragged_send.push_back(value(comm.rank(), j, static_cast<std::size_t>(k)));
    }
    for (int k = 0; k < recv_counts.back(); ++k) {
      ragged_want.push_back(value(members[static_cast<std::size_t>(j)], me,
                                  static_cast<std::size_t>(k)));
    }
  }
  std::vector<float> ragged_recv(ragged_want.size(), -1.f);
  comm.all_to_all_v(g, ragged_send.data(), send_counts, ragged_recv.data(), recv_counts).wait();
  check.expect("all_to_all_v (ragged) over " + name, ragged_recv, ragged_want);
  // Both issued, then waited in the other order: the requests are independent.
  std::vector<float> buf = broadcast_input(comm.rank(), 7);
  const std::vector<float> send = all_to_all_input(comm.rank(), n, 5);
  std::vector<float> recv(send.size(), -1.f);
  strata::exec::Request b = comm.broadcast(g, buf.data(), buf.size(), n - 1);
  strata::exec::Request a = comm.all_to_all(g, send.data(), recv.data(), 5);
  a.wait();
  b.wait();
  check.expect("broadcast issued before an all_to_all over " + name, buf,
               broadcast_input(members.back(), 7));
  check.expect("all_to_all issued after a broadcast over " + name, recv,
               all_to_all_output(members, me, 5));
}

int run() {
  auto comm = strata::exec::make_mpi_comm();
  Checker check(*comm);
  std::vector<int> world, but_first;
  for (int r = 0; r < comm->size(); ++r) {
    world.push_back(r);
    if (r > 0) but_first.push_back(r);
  }
  const GroupId w = comm->split(world);
  const GroupId rest = comm->split(comm->rank() > 0 ? but_first : std::vector<int>{});
  check_group(*comm, check, w, world, "the world");
  if (rest != strata::exec::kNoGroup) check_group(*comm, check, rest, but_first, "ranks 1..");
  // Every rank learns whether any failed, so all exit alike.
  float failed = static_cast<float>(check.failures());
  comm->all_reduce(w, &failed, 1, strata::exec::ReduceOp::kSum).wait();
  if (comm->rank() == 0 && failed == 0.f) {
    std::printf("comm_mpi_check: %d ranks, %d checks passed\n", comm->size(), check.checks());
  }
  return failed == 0.f ? 0 : 1;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "comm_mpi_check: %s\n", e.what());
    return 2;
  }
}
