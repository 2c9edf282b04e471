// The executor's communication layer: one interface, three backends. `LocalComm` is a world of
// one rank (no MPI needed: the one-rank path and the GPU machine); `MpiComm` (comm_mpi.cpp, built
// with STRATA_WITH_MPI) runs collectives and transfers over MPI on host buffers; `NcclComm`
// (comm_nccl.cpp, built with STRATA_WITH_CUDA where nccl.h is found) runs them with NCCL on
// device buffers, its unique ids bootstrapped over another Comm (MPI) or a FileStore.
//
// Following DESIGN "Asynchrony from the start", every operation returns a Request that completes
// later; `wait()` blocks until the operation's output buffer holds its result. Buffers are fp32,
// owned by the caller and must stay alive and untouched until the request completes.
// Groups are made once, collectively over the whole world, by `split` (every rank calls it the
// same number of times in the same order); collectives on a group are matched across its
// members by issue order, transfers by (peer, tag).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace strata::kernels {
class Stream;
}

namespace strata::exec {

// kSum: element-wise sum. kSoftmaxStats: the buffer holds triples (max, sum_exp, target) per row
// of a vocabulary-parallel softmax; two triples combine as max = max(m1, m2), sum_exp = s1
// exp(m1 - max) + s2 exp(m2 - max), target = t1 + t2 (associative and commutative), so one
// all-reduce gives every shard the full row's log-sum-exp and target logit.
enum class ReduceOp { kSum, kSoftmaxStats };

// A pending operation. Move-only; waiting twice is allowed (the second wait returns at once).
class Request {
 public:
  Request() = default;
  explicit Request(std::function<void()> wait) : wait_(std::move(wait)) {}
  Request(Request&&) = default;
  Request& operator=(Request&&) = default;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request() = default;

  void wait() {
    if (wait_) {
      auto w = std::move(wait_);
      wait_ = nullptr;
      w();
    }
  }

 private:
  std::function<void()> wait_;
};

// A wait or barrier that did not complete within the communicator's timeout (set_timeout_s):
// a peer stopped responding (stopped with SIGSTOP, hung, or far slower than the timeout).
class CommTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using GroupId = int;
inline constexpr GroupId kNoGroup = -1;

// A message waiting to be received (Comm::probe_any_source): who sent it and how many floats.
struct Probed {
  int source = -1;
  std::size_t n = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi" or "nccl"
  // The library under the backend and its version ("Open MPI v4.1.4"), for the provenance of
  // measured outputs (the profiler's links.json); "" when there is none or it cannot say.
  virtual std::string library_version() const { return ""; }
  // True when every operation's buffers are device (CUDA) memory on the communicator's device
  // (the NCCL backend); false when they are host memory (local and MPI), in which case the
  // interpreter stages device tensors through the host around each operation.
  virtual bool device_buffers() const { return false; }

  // Collective over the world: `my_group` is this rank's group (sorted, containing rank()) or
  // empty when this rank takes part in no group of this call. Returns the group's id, or
  // kNoGroup for an empty `my_group`.
  virtual GroupId split(const std::vector<int>& my_group) = 0;
  virtual int group_size(GroupId g) const = 0;
  virtual int group_rank(GroupId g) const = 0;  // this rank's index in the group

  // In place over `n` floats (n multiple of 3 for kSoftmaxStats).
  virtual Request all_reduce(GroupId g, float* buf, std::size_t n, ReduceOp op) = 0;
  // recv (group_size * n floats) = the members' `send` (n floats each), in group order.
  virtual Request all_gather(GroupId g, const float* send, float* recv, std::size_t n) = 0;
  // Uneven partitions (ZeRO): member i owns counts[i] floats, consecutive in group order.
  // reduce_scatter: recv (counts[group_rank] floats) = the sum over members of their `send`
  // (sum of counts floats each) at this member's part. all_gather_v: recv (sum of counts) =
  // every member's `send` (its counts[i] floats) in group order.
  virtual Request reduce_scatter(GroupId g, const float* send, float* recv,
                                 const std::vector<int>& counts) = 0;
  virtual Request all_gather_v(GroupId g, const float* send, float* recv,
                               const std::vector<int>& counts) = 0;
  // In place over `n` floats: every member's `buf` = member `root`'s (a group rank).
  virtual Request broadcast(GroupId g, float* buf, std::size_t n, int root) = 0;
  // send and recv hold group_size blocks of `n_per_rank` floats: recv's block j = member j's
  // send block group_rank (block i of `send` goes to member i, the own block included).
  virtual Request all_to_all(GroupId g, const float* send, float* recv, std::size_t n_per_rank) = 0;
  // The ragged all-to-all (MPI_Alltoallv): member i's block of `send` holds send_counts[i]
  // floats, the blocks consecutive in group order; recv's block j (recv_counts[j] floats,
  // consecutive) = member j's block for this member. Each pair's counts must agree (the
  // caller exchanges them first). The default refuses: the NCCL backend does not have it yet.
  virtual Request all_to_all_v(GroupId g, const float* send, const std::vector<int>& send_counts,
                               float* recv, const std::vector<int>& recv_counts);
  // Point-to-point with a world rank; tags must be below max_tag().
  virtual Request send(int peer, int tag, const float* buf, std::size_t n) = 0;
  virtual Request recv(int peer, int tag, float* buf, std::size_t n) = 0;
  virtual int max_tag() const = 0;
  // Blocks until a message with `tag` from any rank can be received and returns its source
  // (a world rank) and length in floats, without receiving it: receive it with
  // recv(source, tag, ...). Messages from one source with one tag arrive in the order sent, so
  // one receiver (a parameter server) handles its requests in arrival order. Gives up after the
  // timeout (set_timeout_s) with CommTimeout. The default refuses: the local world has no
  // peers and the NCCL backend has no probe.
  virtual Probed probe_any_source(int tag);

  // Every later wait() and barrier() gives up after `seconds` without completing and throws
  // CommTimeout naming the operation and the timeout; 0 (the default) waits forever. The
  // local backend never waits, so it ignores this.
  virtual void set_timeout_s(double seconds) { (void)seconds; }

  // Blocks until every rank of the world arrives (bookkeeping, not part of any Plan).
  virtual void barrier() = 0;
  // Every rank calls this after a fatal error of its own: stops the whole world (MPI_Abort)
  // so that the others do not wait on it forever. Never returns.
  [[noreturn]] virtual void abort(int code) = 0;
};

// A world of one rank: groups are {0}, collectives are identities, transfers are refused.
std::unique_ptr<Comm> make_local_comm();

// True when this build has the MPI backend.
bool built_with_mpi();

// The MPI world (MPI_Init on first use, MPI_Finalize at exit). Throws std::runtime_error when
// built without MPI.
std::unique_ptr<Comm> make_mpi_comm();

// True when this build has the NCCL backend (STRATA_WITH_CUDA and nccl.h found at configure
// time). The library itself (libnccl.so.2) is loaded at the first make_nccl_comm, not linked.
bool built_with_nccl();

// Why an NCCL communicator cannot be made here before trying ("this build has no NCCL backend",
// "NCCL could not be loaded (...)"; loads the library); "" when the library loads. Whether a
// CUDA device exists is kernels::cuda_unavailable_reason()'s to say.
std::string nccl_unavailable_reason();

struct NcclOptions {
  int device = 0;  // this rank's CUDA device
  // The CUDA stream every operation is enqueued on (on `device`; it must outlive the
  // communicator), so that communication orders after the compute enqueued before it. nullptr:
  // the communicator makes a stream of its own.
  const kernels::Stream* stream = nullptr;
  // How long making the communicators (init and each split) may wait for the other ranks before
  // CommTimeout; 0 waits forever. Operations use set_timeout_s.
  double init_timeout_s = 0;
  // Tests only: reduce_scatter and all_gather_v take their uneven-counts path (one collective
  // per member's part, grouped) even when the counts are equal, so that one rank exercises it.
  bool always_per_part = false;
};

// The NCCL world over the same ranks as `bootstrap` (a host Comm, MPI or local: it carries the
// unique id, a broadcast of its 128 bytes from rank 0, and its abort() stops the world). Every
// rank calls this at the same point; `bootstrap` must outlive the result. Throws
// std::runtime_error when the build has no NCCL backend, when libnccl.so.2 cannot be loaded
// (naming it; STRATA_NCCL_LIBRARY may name the file), when there is no CUDA device (with
// kernels::cuda_unavailable_reason()), and CommTimeout when a rank does not join in time.
std::unique_ptr<Comm> make_nccl_comm(Comm& bootstrap, const NcclOptions& options);

// The same without a bootstrap Comm: rank 0 writes the unique id to the FileStore (file_store.hpp)
// in `store_dir`, the other ranks read it, waiting at most options.init_timeout_s (0: forever).
// One rank (size 1) needs no other process: the path of a single GPU machine without MPI.
// `store_dir` must be fresh for each run (a stale id would make the readers wait for a world
// that never forms). abort() ends this process only.
std::unique_ptr<Comm> make_nccl_comm(const std::string& store_dir, int rank, int size,
                                     const NcclOptions& options);

// Combines `in` into `inout`, `n` floats, with `op` (the reduction both backends apply).
void reduce_into(float* inout, const float* in, std::size_t n, ReduceOp op);

}  // namespace strata::exec
