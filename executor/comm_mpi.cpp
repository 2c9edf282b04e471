// The MPI communication backend: non-blocking collectives (MPI_Iallreduce, MPI_Iallgather,
// MPI_Ireduce_scatter, MPI_Iallgatherv, MPI_Ibcast, MPI_Ialltoall, MPI_Ialltoallv) on
// sub-communicators made with MPI_Comm_split, MPI_Isend / MPI_Irecv for pipeline transfers and
// MPI_Iprobe from any source for the parameter servers' requests.
// Every MPI call goes through STRATA_MPI_CHECK, which names the call, the rank and the host.
#include <mpi.h>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/host.hpp"
#include "executor/comm.hpp"
#include "executor/messenger.hpp"

namespace strata::exec {
namespace {

[[noreturn]] void mpi_failed(const char* call, int code) {
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::array<char, MPI_MAX_ERROR_STRING> text{};
  int len = 0;
  MPI_Error_string(code, text.data(), &len);
  throw std::runtime_error(std::string(call) + " failed on rank " + std::to_string(rank) +
                           " (" + host_name() + "): " + std::string(text.data(), len));
}

#define STRATA_MPI_CHECK(call)                    \
  do {                                            \
    const int strata_mpi_rc = (call);             \
    if (strata_mpi_rc != MPI_SUCCESS) mpi_failed(#call, strata_mpi_rc); \
  } while (0)

// MPI_Init once per process, MPI_Finalize at exit.
struct MpiEnvironment {
  MpiEnvironment() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    // Serialized threads: a messenger's calls may come from several threads, one at a time
    // (MpiMessenger locks); everything else calls MPI from one thread.
    int provided = 0;
    if (!initialized) {
      STRATA_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
    }
    // Errors come back as codes (thrown as exceptions with rank and host), not as aborts
    // without a message.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  ~MpiEnvironment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
};

void softmax_stats_op(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_into(static_cast<float*>(inout), static_cast<const float*>(in),
              static_cast<std::size_t>(*len) * 3, ReduceOp::kSoftmaxStats);
}

int to_int(std::size_t n) {
  STRATA_CHECK(n <= static_cast<std::size_t>(1) << 30, "message too large for one MPI call");
  return static_cast<int>(n);
}

// MPI_Wait with a deadline: MPI_Test until the request completes or `timeout_s` (> 0) passes.
// A peer that stopped (SIGSTOP) or hangs would otherwise keep this rank in MPI_Wait forever;
// MPI_Wait busy-polls too, so polling here costs nothing more.
void wait_for(MPI_Request& r, double timeout_s, const char* what) {
  if (timeout_s <= 0) {
    STRATA_MPI_CHECK(MPI_Wait(&r, MPI_STATUS_IGNORE));
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  for (long polls = 0;; ++polls) {
    int done = 0;
    STRATA_MPI_CHECK(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (polls % 1024 == 1023) {
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_s) {
        int rank = -1;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        char seconds[32];
        std::snprintf(seconds, sizeof seconds, "%g", timeout_s);
        throw CommTimeout(std::string(what) + " on rank " + std::to_string(rank) + " (" +
                          host_name() + ") did not complete within " + seconds +
                          " s (--comm-timeout): a peer rank stopped responding (stopped, hung "
                          "or far slower); the run is stopped");
      }
      std::this_thread::yield();
    }
  }
}

Request make_request(MPI_Request r, double timeout_s, const char* what) {
  return Request([r, timeout_s, what]() mutable { wait_for(r, timeout_s, what); });
}

class MpiComm final : public Comm {
 public:
  MpiComm() {
    static MpiEnvironment env;
    STRATA_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
    STRATA_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
    STRATA_MPI_CHECK(MPI_Type_contiguous(3, MPI_FLOAT, &triple_));
    STRATA_MPI_CHECK(MPI_Type_commit(&triple_));
    STRATA_MPI_CHECK(MPI_Op_create(&softmax_stats_op, /*commute=*/1, &softmax_op_));
    void* ub = nullptr;
    int found = 0;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &found);
    max_tag_ = found ? *static_cast<int*>(ub) : 32767;
  }
  ~MpiComm() override {
    for (MPI_Comm c : groups_) MPI_Comm_free(&c);
    MPI_Op_free(&softmax_op_);
    MPI_Type_free(&triple_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  // The first part of MPI_Get_library_version's text: "Open MPI v4.1.4", "MPICH Version: 4.0".
  std::string library_version() const override {
    std::array<char, MPI_MAX_LIBRARY_VERSION_STRING> text{};
    int len = 0;
    if (MPI_Get_library_version(text.data(), &len) != MPI_SUCCESS) return "";
    std::string s(text.data());  // zero-filled, so terminated
    s = s.substr(0, s.find_first_of(",\n"));
    std::replace(s.begin(), s.end(), '\t', ' ');
    return s;
  }

  GroupId split(const std::vector<int>& my_group) override {
    const int color = my_group.empty() ? MPI_UNDEFINED : my_group.front();
    MPI_Comm c = MPI_COMM_NULL;
    STRATA_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, rank_, &c));
    if (my_group.empty()) return kNoGroup;
    int n = 0;
    STRATA_MPI_CHECK(MPI_Comm_size(c, &n));
    STRATA_CHECK(n == static_cast<int>(my_group.size()),
                 "MPI_Comm_split made a group of " + std::to_string(n) + " ranks, expected " +
                     std::to_string(my_group.size()));
    MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
    groups_.push_back(c);
    return static_cast<GroupId>(groups_.size() - 1);
  }
  int group_size(GroupId g) const override {
    int n = 0;
    STRATA_MPI_CHECK(MPI_Comm_size(comm(g), &n));
    return n;
  }
  int group_rank(GroupId g) const override {
    int r = 0;
    STRATA_MPI_CHECK(MPI_Comm_rank(comm(g), &r));
    return r;
  }

  Request all_reduce(GroupId g, float* buf, std::size_t n, ReduceOp op) override {
    MPI_Request r;
    if (op == ReduceOp::kSum) {
      STRATA_MPI_CHECK(
          MPI_Iallreduce(MPI_IN_PLACE, buf, to_int(n), MPI_FLOAT, MPI_SUM, comm(g), &r));
    } else {
      STRATA_CHECK(n % 3 == 0, "kSoftmaxStats needs triples");
      STRATA_MPI_CHECK(
          MPI_Iallreduce(MPI_IN_PLACE, buf, to_int(n / 3), triple_, softmax_op_, comm(g), &r));
    }
    return make_request(r, timeout_s_, "an all-reduce");
  }
  Request all_gather(GroupId g, const float* send, float* recv, std::size_t n) override {
    MPI_Request r;
    STRATA_MPI_CHECK(
        MPI_Iallgather(send, to_int(n), MPI_FLOAT, recv, to_int(n), MPI_FLOAT, comm(g), &r));
    return make_request(r, timeout_s_, "an all-gather");
  }
  Request reduce_scatter(GroupId g, const float* send, float* recv,
                         const std::vector<int>& counts) override {
    // The counts must outlive the non-blocking call: the request owns a copy.
    auto c = std::make_shared<std::vector<int>>(counts);
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Ireduce_scatter(send, recv, c->data(), MPI_FLOAT, MPI_SUM, comm(g), &r));
    const double t = timeout_s_;
    return Request([r, c, t]() mutable { wait_for(r, t, "a reduce-scatter"); });
  }
  Request all_gather_v(GroupId g, const float* send, float* recv,
                       const std::vector<int>& counts) override {
    auto c = std::make_shared<std::vector<int>>(counts);
    auto displs = std::make_shared<std::vector<int>>(counts.size(), 0);
    for (std::size_t i = 1; i < counts.size(); ++i) (*displs)[i] = (*displs)[i - 1] + counts[i - 1];
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Iallgatherv(send, counts.at(static_cast<std::size_t>(group_rank(g))),
                                     MPI_FLOAT, recv, c->data(), displs->data(), MPI_FLOAT,
                                     comm(g), &r));
    const double t = timeout_s_;
    return Request([r, c, displs, t]() mutable { wait_for(r, t, "an all-gather"); });
  }
  Request broadcast(GroupId g, float* buf, std::size_t n, int root) override {
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Ibcast(buf, to_int(n), MPI_FLOAT, root, comm(g), &r));
    return make_request(r, timeout_s_, "a broadcast");
  }
  Request all_to_all(GroupId g, const float* send, float* recv, std::size_t n_per_rank) override {
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Ialltoall(send, to_int(n_per_rank), MPI_FLOAT, recv, to_int(n_per_rank),
                                   MPI_FLOAT, comm(g), &r));
    return make_request(r, timeout_s_, "an all-to-all");
  }
  Request all_to_all_v(GroupId g, const float* send, const std::vector<int>& send_counts,
                       float* recv, const std::vector<int>& recv_counts) override {
    // The counts and displacements must outlive the non-blocking call: the request owns them.
    auto c = std::make_shared<std::array<std::vector<int>, 4>>();
    (*c)[0] = send_counts;
    (*c)[2] = recv_counts;
    for (int k : {0, 2}) {
      (*c)[k + 1].assign((*c)[k].size(), 0);
      for (std::size_t i = 1; i < (*c)[k].size(); ++i) {
        (*c)[k + 1][i] = (*c)[k + 1][i - 1] + (*c)[k][i - 1];
      }
    }
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Ialltoallv(send, (*c)[0].data(), (*c)[1].data(), MPI_FLOAT, recv,
                                    (*c)[2].data(), (*c)[3].data(), MPI_FLOAT, comm(g), &r));
    const double t = timeout_s_;
    return Request([r, c, t]() mutable { wait_for(r, t, "an all-to-all"); });
  }
  Request send(int peer, int tag, const float* buf, std::size_t n) override {
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Isend(buf, to_int(n), MPI_FLOAT, peer, tag, MPI_COMM_WORLD, &r));
    return make_request(r, timeout_s_, "a send");
  }
  Request recv(int peer, int tag, float* buf, std::size_t n) override {
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Irecv(buf, to_int(n), MPI_FLOAT, peer, tag, MPI_COMM_WORLD, &r));
    return make_request(r, timeout_s_, "a receive");
  }
  int max_tag() const override { return max_tag_; }
  // MPI_Iprobe polled like wait_for (MPI_Probe when there is no timeout).
  Probed probe_any_source(int tag) override {
    MPI_Status status;
    if (timeout_s_ <= 0) {
      STRATA_MPI_CHECK(MPI_Probe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &status));
    } else {
      const auto start = std::chrono::steady_clock::now();
      for (long polls = 0;; ++polls) {
        int found = 0;
        STRATA_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &found, &status));
        if (found) break;
        if (polls % 1024 == 1023) {
          const double waited =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          if (waited > timeout_s_) {
            char seconds[32];
            std::snprintf(seconds, sizeof seconds, "%g", timeout_s_);
            throw CommTimeout("a probe for tag " + std::to_string(tag) + " on rank " +
                              std::to_string(rank_) + " (" + host_name() +
                              ") found no message within " + seconds +
                              " s (--comm-timeout): a peer rank stopped responding");
          }
          std::this_thread::yield();
        }
      }
    }
    int count = 0;
    STRATA_MPI_CHECK(MPI_Get_count(&status, MPI_FLOAT, &count));
    return Probed{status.MPI_SOURCE, static_cast<std::size_t>(count)};
  }
  void set_timeout_s(double seconds) override { timeout_s_ = seconds; }
  void barrier() override {
    MPI_Request r;
    STRATA_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &r));
    wait_for(r, timeout_s_, "a barrier");
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  MPI_Comm comm(GroupId g) const {
    STRATA_CHECK(g >= 0 && g < static_cast<GroupId>(groups_.size()), "unknown group");
    return groups_[static_cast<std::size_t>(g)];
  }

  int rank_ = 0, size_ = 1, max_tag_ = 32767;
  double timeout_s_ = 0;  // 0: wait forever
  MPI_Datatype triple_ = MPI_DATATYPE_NULL;
  MPI_Op softmax_op_ = MPI_OP_NULL;
  std::vector<MPI_Comm> groups_;
};

}  // namespace

// Byte messages (messenger.hpp): MPI_Isend from a buffer kept until the send completes, and
// MPI_Iprobe + MPI_Recv of whatever arrived.
class MpiMessenger final : public Messenger {
 public:
  MpiMessenger() {
    static MpiEnvironment env;
    STRATA_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
    STRATA_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
    MPI_Comm host = MPI_COMM_NULL;
    STRATA_MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &host));
    STRATA_MPI_CHECK(MPI_Comm_size(host, &on_host_));
    MPI_Comm_free(&host);
  }
  // Sends still in flight are left to MPI_Finalize (or to an abort).
  ~MpiMessenger() override = default;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int ranks_on_host() const override { return on_host_; }

  void send(int peer, int tag, std::string bytes) override {
    std::lock_guard<std::mutex> guard(lock_);
    complete_sends();
    sends_.push_back({std::make_unique<std::string>(std::move(bytes)), MPI_REQUEST_NULL});
    Send& s = sends_.back();
    STRATA_MPI_CHECK(MPI_Isend(s.bytes->data(), to_int(s.bytes->size()), MPI_BYTE, peer, tag,
                               MPI_COMM_WORLD, &s.request));
  }

  std::optional<Message> poll() override {
    std::lock_guard<std::mutex> guard(lock_);
    complete_sends();
    int arrived = 0;
    MPI_Status status;
    STRATA_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &arrived, &status));
    if (!arrived) return std::nullopt;
    int count = 0;
    STRATA_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
    Message m;
    m.source = status.MPI_SOURCE;
    m.tag = status.MPI_TAG;
    m.bytes.resize(static_cast<std::size_t>(count));
    STRATA_MPI_CHECK(MPI_Recv(m.bytes.data(), count, MPI_BYTE, m.source, m.tag, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE));
    return m;
  }

  int pending_sends() override {
    std::lock_guard<std::mutex> guard(lock_);
    complete_sends();
    return static_cast<int>(sends_.size());
  }

  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();
  }

 private:
  struct Send {
    std::unique_ptr<std::string> bytes;  // stays put while the list grows
    MPI_Request request;
  };
  void complete_sends() {
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      STRATA_MPI_CHECK(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE));
      it = done ? sends_.erase(it) : it + 1;
    }
  }

  int rank_ = 0, size_ = 1, on_host_ = 1;
  std::mutex lock_;  // one call at a time (MPI_THREAD_SERIALIZED)
  std::vector<Send> sends_;
};

bool built_with_mpi() { return true; }
std::unique_ptr<Comm> make_mpi_comm() { return std::make_unique<MpiComm>(); }
std::unique_ptr<Messenger> make_mpi_messenger() { return std::make_unique<MpiMessenger>(); }

}  // namespace strata::exec
