// A Comm over some ranks of another; see sub_comm.hpp.
#include "executor/sub_comm.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "common/error.hpp"

namespace strata::exec {
namespace {

class SubComm final : public Comm {
 public:
  SubComm(Comm& parent, std::vector<int> members) : parent_(parent), members_(std::move(members)) {
    const auto at = std::find(members_.begin(), members_.end(), parent.rank());
    STRATA_CHECK(at != members_.end() && std::is_sorted(members_.begin(), members_.end()),
                 "a sub-communicator's members are sorted world ranks, this rank's among them");
    rank_ = static_cast<int>(at - members_.begin());
    all_ = parent_.split(members_);
  }
  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  std::string backend() const override { return parent_.backend(); }
  std::string library_version() const override { return parent_.library_version(); }
  bool device_buffers() const override { return parent_.device_buffers(); }

  GroupId split(const std::vector<int>& my_group) override {
    std::vector<int> world;
    for (int r : my_group) world.push_back(to_parent(r));
    return parent_.split(world);
  }
  int group_size(GroupId g) const override { return parent_.group_size(g); }
  int group_rank(GroupId g) const override { return parent_.group_rank(g); }
  Request all_reduce(GroupId g, float* buf, std::size_t n, ReduceOp op) override {
    return parent_.all_reduce(g, buf, n, op);
  }
  Request all_gather(GroupId g, const float* send, float* recv, std::size_t n) override {
    return parent_.all_gather(g, send, recv, n);
  }
  Request reduce_scatter(GroupId g, const float* send, float* recv,
                         const std::vector<int>& counts) override {
    return parent_.reduce_scatter(g, send, recv, counts);
  }
  Request all_gather_v(GroupId g, const float* send, float* recv,
                       const std::vector<int>& counts) override {
    return parent_.all_gather_v(g, send, recv, counts);
  }
  Request broadcast(GroupId g, float* buf, std::size_t n, int root) override {
    return parent_.broadcast(g, buf, n, root);
  }
  Request all_to_all(GroupId g, const float* send, float* recv, std::size_t n_per_rank) override {
    return parent_.all_to_all(g, send, recv, n_per_rank);
  }
  Request all_to_all_v(GroupId g, const float* send, const std::vector<int>& send_counts,
                       float* recv, const std::vector<int>& recv_counts) override {
    return parent_.all_to_all_v(g, send, send_counts, recv, recv_counts);
  }
  Request send(int peer, int tag, const float* buf, std::size_t n) override {
    return parent_.send(to_parent(peer), tag, buf, n);
  }
  Request recv(int peer, int tag, float* buf, std::size_t n) override {
    return parent_.recv(to_parent(peer), tag, buf, n);
  }
  int max_tag() const override { return parent_.max_tag(); }
  void set_timeout_s(double seconds) override { parent_.set_timeout_s(seconds); }
  void barrier() override {
    float one = 1;
    parent_.all_reduce(all_, &one, 1, ReduceOp::kSum).wait();
  }
  [[noreturn]] void abort(int code) override {
    parent_.abort(code);
    std::abort();  // not reached: the parent's abort() never returns
  }

 private:
  int to_parent(int r) const {
    STRATA_CHECK(r >= 0 && r < size(), "rank " + std::to_string(r) + " is not a member");
    return members_[static_cast<std::size_t>(r)];
  }
  Comm& parent_;
  std::vector<int> members_;
  int rank_ = 0;
  GroupId all_ = kNoGroup;
};

}  // namespace

std::unique_ptr<Comm> make_sub_comm(Comm& parent, const std::vector<int>& members) {
  return std::make_unique<SubComm>(parent, members);
}

}  // namespace strata::exec
