// The local (one-rank) communication backend and the reductions both backends share.
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "common/error.hpp"
#include "executor/comm.hpp"
#include "kernels/parallel_ops.hpp"

namespace strata::exec {

void reduce_into(float* inout, const float* in, std::size_t n, ReduceOp op) {
  if (op == ReduceOp::kSum) {
    for (std::size_t i = 0; i < n; ++i) inout[i] += in[i];
    return;
  }
  STRATA_CHECK(n % 3 == 0, "kSoftmaxStats needs triples");
  // The combination is defined once, beside the ops that produce and consume the statistics.
  kernels::combine_softmax_stats(inout, in, static_cast<std::int64_t>(n / 3));
}

Request Comm::all_to_all_v(GroupId, const float*, const std::vector<int>&, float*,
                           const std::vector<int>&) {
  throw std::runtime_error("the " + backend() + " communicator has no ragged all-to-all (the "
                           "mixture-of-experts dispatch): run on the MPI or local backend");
}

Probed Comm::probe_any_source(int tag) {
  throw std::runtime_error("the " + backend() + " communicator cannot probe for a message from "
                           "any rank (tag " + std::to_string(tag) + "; the parameter servers "
                           "need it): run on the MPI backend");
}

namespace {

class LocalComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }

  GroupId split(const std::vector<int>& my_group) override {
    if (my_group.empty()) return kNoGroup;
    STRATA_CHECK(my_group.size() == 1 && my_group[0] == 0, "a local world has one rank");
    return 0;
  }
  int group_size(GroupId) const override { return 1; }
  int group_rank(GroupId) const override { return 0; }

  Request all_reduce(GroupId, float*, std::size_t, ReduceOp) override { return Request(); }
  Request all_gather(GroupId, const float* send, float* recv, std::size_t n) override {
    std::copy(send, send + n, recv);
    return Request();
  }
  Request reduce_scatter(GroupId, const float* send, float* recv,
                         const std::vector<int>& counts) override {
    std::copy(send, send + counts.at(0), recv);
    return Request();
  }
  Request all_gather_v(GroupId, const float* send, float* recv,
                       const std::vector<int>& counts) override {
    std::copy(send, send + counts.at(0), recv);
    return Request();
  }
  Request broadcast(GroupId, float*, std::size_t, int root) override {
    STRATA_CHECK(root == 0, "a local group has one member, 0");
    return Request();
  }
  Request all_to_all(GroupId, const float* send, float* recv, std::size_t n_per_rank) override {
    std::copy(send, send + n_per_rank, recv);
    return Request();
  }
  Request all_to_all_v(GroupId, const float* send, const std::vector<int>& send_counts,
                       float* recv, const std::vector<int>& recv_counts) override {
    STRATA_CHECK(send_counts.at(0) == recv_counts.at(0), "a local all-to-all keeps its block");
    std::copy(send, send + send_counts[0], recv);
    return Request();
  }
  Request send(int peer, int, const float*, std::size_t) override {
    throw std::runtime_error("local comm: no peer " + std::to_string(peer) + " in a world of 1");
  }
  Request recv(int peer, int, float*, std::size_t) override {
    throw std::runtime_error("local comm: no peer " + std::to_string(peer) + " in a world of 1");
  }
  int max_tag() const override { return 1 << 30; }
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

}  // namespace

std::unique_ptr<Comm> make_local_comm() { return std::make_unique<LocalComm>(); }

}  // namespace strata::exec
