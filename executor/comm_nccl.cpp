// The NCCL communication backend (comm.hpp): collectives and transfers on device buffers, on one
// CUDA stream (the caller's compute stream or one of its own), completion observed through a
// CUDA event recorded after each operation.
// defines: built_with_nccl, nccl_unavailable_reason, make_nccl_comm (over a bootstrap Comm, over
//          a FileStore)
//
// - The library is loaded at the first make_nccl_comm (dlopen of libnccl.so.2), not linked: like
//   cuBLAS (kernels/cuda/blas.cpp), linking made every process of a CUDA build map its hundreds
//   of megabytes at start, and the GPU machines may lack it (then only NCCL runs fail, naming
//   it). STRATA_NCCL_LIBRARY names another file (PyTorch's wheel ships one).
// - Every communicator is nonblocking (ncclConfig_t.blocking = 0): init, split and group calls
//   return at once and this file polls their state with a deadline, so a rank that never joins
//   ends the run with CommTimeout instead of a hang inside NCCL.
// - Groups: split() is ncclCommSplit of the world communicator, color = the group's first world
//   rank, key = the world rank, so members are ordered as the sorted group.
// - kSoftmaxStats is not an NCCL reduction: an ncclAllGather of the members' triples into a
//   device scratch, then kernels::combine_gathered_softmax_stats folds them in group order.
// - Uneven reduce_scatter and all_gather_v: when every count is equal, ncclReduceScatter and
//   ncclAllGather; otherwise one ncclReduce (sum, root i) or ncclBroadcast (root i) per member's
//   part inside ncclGroupStart/End. That moves each part once with no padding copies and no
//   scratch; NCCL runs the grouped collectives together. (Padding to the largest part and one
//   ncclReduceScatter would move (max count x members) floats and need two copies.)
// - Transfers: NCCL has no tags and matches a pair's transfers in issue order; send and recv
//   queue the transfer, and the queue is enqueued as one ncclGroupStart/End at the next wait,
//   collective or barrier, so the sends and receives of one pipeline step progress together.
//   The Plan issues a pair's transfers in the same order on both ends.
#include <dlfcn.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/host.hpp"
#include "executor/comm.hpp"
#include "executor/file_store.hpp"
#include "kernels/backend.hpp"
#include "kernels/collective_ops.hpp"

namespace strata::exec {
namespace {

// The NCCL entry points used here, resolved from the library at first use (nccl.h's types).
struct Nccl {
  decltype(&ncclGetVersion) get_version;
  decltype(&ncclGetUniqueId) get_unique_id;
  decltype(&ncclCommInitRankConfig) comm_init_rank_config;
  decltype(&ncclCommSplit) comm_split;
  decltype(&ncclCommFinalize) comm_finalize;
  decltype(&ncclCommDestroy) comm_destroy;
  decltype(&ncclCommAbort) comm_abort;
  decltype(&ncclCommGetAsyncError) comm_get_async_error;
  decltype(&ncclCommCount) comm_count;
  decltype(&ncclCommUserRank) comm_user_rank;
  decltype(&ncclGetErrorString) get_error_string;
  decltype(&ncclGetLastError) get_last_error;
  decltype(&ncclAllReduce) all_reduce;
  decltype(&ncclAllGather) all_gather;
  decltype(&ncclReduceScatter) reduce_scatter;
  decltype(&ncclReduce) reduce;
  decltype(&ncclBroadcast) broadcast;
  decltype(&ncclSend) send;
  decltype(&ncclRecv) recv;
  decltype(&ncclGroupStart) group_start;
  decltype(&ncclGroupEnd) group_end;
};

Nccl load_nccl(const std::vector<std::string>& names) {
  void* lib = nullptr;
  std::string why;
  for (const std::string& name : names) {
    lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) break;
    const char* e = dlerror();
    why += (why.empty() ? "" : "; ") + (e != nullptr ? std::string(e) : name);
  }
  if (lib == nullptr) {
    throw std::runtime_error("NCCL could not be loaded (" + why +
                             "): install NCCL and put the folder of libnccl.so.2 on "
                             "LD_LIBRARY_PATH, or set STRATA_NCCL_LIBRARY to the file");
  }
  auto symbol = [lib](const char* name) {
    void* p = dlsym(lib, name);
    if (p == nullptr) {
      throw std::runtime_error(std::string("the loaded NCCL has no ") + name +
                               " (NCCL 2.18 or later is needed)");
    }
    return p;
  };
  Nccl n{};
#define STRATA_NCCL_SYMBOL(field, name) n.field = reinterpret_cast<decltype(n.field)>(symbol(name))
  STRATA_NCCL_SYMBOL(get_version, "ncclGetVersion");
  STRATA_NCCL_SYMBOL(get_unique_id, "ncclGetUniqueId");
  STRATA_NCCL_SYMBOL(comm_init_rank_config, "ncclCommInitRankConfig");
  STRATA_NCCL_SYMBOL(comm_split, "ncclCommSplit");
  STRATA_NCCL_SYMBOL(comm_finalize, "ncclCommFinalize");
  STRATA_NCCL_SYMBOL(comm_destroy, "ncclCommDestroy");
  STRATA_NCCL_SYMBOL(comm_abort, "ncclCommAbort");
  STRATA_NCCL_SYMBOL(comm_get_async_error, "ncclCommGetAsyncError");
  STRATA_NCCL_SYMBOL(comm_count, "ncclCommCount");
  STRATA_NCCL_SYMBOL(comm_user_rank, "ncclCommUserRank");
  STRATA_NCCL_SYMBOL(get_error_string, "ncclGetErrorString");
  STRATA_NCCL_SYMBOL(get_last_error, "ncclGetLastError");
  STRATA_NCCL_SYMBOL(all_reduce, "ncclAllReduce");
  STRATA_NCCL_SYMBOL(all_gather, "ncclAllGather");
  STRATA_NCCL_SYMBOL(reduce_scatter, "ncclReduceScatter");
  STRATA_NCCL_SYMBOL(reduce, "ncclReduce");
  STRATA_NCCL_SYMBOL(broadcast, "ncclBroadcast");
  STRATA_NCCL_SYMBOL(send, "ncclSend");
  STRATA_NCCL_SYMBOL(recv, "ncclRecv");
  STRATA_NCCL_SYMBOL(group_start, "ncclGroupStart");
  STRATA_NCCL_SYMBOL(group_end, "ncclGroupEnd");
#undef STRATA_NCCL_SYMBOL
  return n;
}

// The library, loaded once per file name (STRATA_NCCL_LIBRARY or the default names); a failed
// load is not remembered, so the error repeats with its reason at every attempt.
const Nccl& nccl() {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<const Nccl>> loaded;
  const char* env = std::getenv("STRATA_NCCL_LIBRARY");
  const std::string key = env != nullptr ? env : "";
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = loaded.find(key);
  if (it == loaded.end()) {
    const std::vector<std::string> names =
        key.empty() ? std::vector<std::string>{"libnccl.so.2", "libnccl.so"}
                    : std::vector<std::string>{key};
    it = loaded.emplace(key, std::make_unique<const Nccl>(load_nccl(names))).first;
  }
  return *it->second;
}

std::string seconds_text(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The unique id as the floats a host Comm broadcasts (bytes copied, never interpreted).
constexpr std::size_t kIdFloats = (sizeof(ncclUniqueId) + sizeof(float) - 1) / sizeof(float);

class NcclComm final : public Comm {
 public:
  // Joins the world of `size` ranks named by `id`. `bootstrap` (may be null) is kept for abort().
  NcclComm(const ncclUniqueId& id, int rank, int size, const NcclOptions& options, Comm* bootstrap)
      : api_(nccl()), rank_(rank), size_(size), bootstrap_(bootstrap) {
    if (options.stream != nullptr) {
      if (options.stream->backend() != kernels::Backend::kCuda ||
          options.stream->device() != options.device) {
        throw std::invalid_argument("NCCL comm: options.stream must be a CUDA stream on device " +
                                    std::to_string(options.device));
      }
      stream_ = options.stream;
    } else {
      own_stream_ = std::make_unique<kernels::Stream>(kernels::Stream::cuda(options.device));
      stream_ = own_stream_.get();
    }
    device_ = options.device;
    make_device_current();
    ncclConfig_t config = nonblocking();
    ncclComm_t world = nullptr;
    check(api_.comm_init_rank_config(&world, size, id, rank, &config), world,
          "ncclCommInitRankConfig");
    world_ = world;
    try {
      settle(world_, "ncclCommInitRankConfig (joining the world)", options.init_timeout_s);
    } catch (...) {
      abort_all();  // the destructor does not run for a constructor that throws
      throw;
    }
    init_timeout_s_ = options.init_timeout_s;
    always_per_part_ = options.always_per_part;
    scratch_ = kernels::Buffer(*stream_, sizeof(float));
  }

  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  ~NcclComm() override {
    // Groups first (they were split from the world), then the world. After an abort, or when a
    // clean finalize fails or does not settle, the communicator is aborted instead.
    std::vector<ncclComm_t> comms;
    for (const Group& g : groups_) comms.push_back(g.comm);
    comms.push_back(world_);
    for (ncclComm_t c : comms) {
      if (c == nullptr) continue;
      if (aborted_) continue;
      bool clean = api_.comm_finalize(c) == ncclSuccess || last_state(c) == ncclInProgress;
      const auto start = std::chrono::steady_clock::now();
      while (clean && last_state(c) == ncclInProgress) {
        if (seconds_since(start) > 10.0) clean = false;
        std::this_thread::yield();
      }
      if (clean && last_state(c) == ncclSuccess) {
        api_.comm_destroy(c);
      } else {
        api_.comm_abort(c);
      }
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  std::string library_version() const override {
    int code = 0;
    if (api_.get_version(&code) != ncclSuccess) return "";
    // NCCL_VERSION(X, Y, Z) = X * 10000 + Y * 100 + Z since 2.9.
    return "NCCL " + std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." +
           std::to_string(code % 100);
  }
  bool device_buffers() const override { return true; }

  GroupId split(const std::vector<int>& my_group) override {
    begin();
    for (std::size_t i = 0; i < my_group.size(); ++i) {
      STRATA_CHECK(my_group[i] >= 0 && my_group[i] < size_, "group member outside the world");
      STRATA_CHECK(i == 0 || my_group[i - 1] < my_group[i], "groups are sorted, without repeats");
    }
    int index = -1;
    for (std::size_t i = 0; i < my_group.size(); ++i) {
      if (my_group[i] == rank_) index = static_cast<int>(i);
    }
    STRATA_CHECK(my_group.empty() || index >= 0, "a rank's group contains the rank");
    const int color = my_group.empty() ? NCCL_SPLIT_NOCOLOR : my_group.front();
    ncclConfig_t config = nonblocking();
    ncclComm_t comm = nullptr;
    check(api_.comm_split(world_, color, rank_, &comm, &config), world_, "ncclCommSplit");
    settle(comm != nullptr ? comm : world_, "ncclCommSplit", init_timeout_s_);
    if (my_group.empty()) return kNoGroup;
    int count = 0, user_rank = 0;
    check(api_.comm_count(comm, &count), comm, "ncclCommCount");
    check(api_.comm_user_rank(comm, &user_rank), comm, "ncclCommUserRank");
    if (count != static_cast<int>(my_group.size()) || user_rank != index) {
      api_.comm_abort(comm);
      throw std::runtime_error("NCCL split on rank " + std::to_string(rank_) + ": the group has " +
                               std::to_string(count) + " members with this rank at " +
                               std::to_string(user_rank) + ", this rank's group says " +
                               std::to_string(my_group.size()) + " at " + std::to_string(index) +
                               " (the ranks' groups of one split must be disjoint and agree)");
    }
    groups_.push_back(Group{comm, count, user_rank});
    return static_cast<GroupId>(groups_.size() - 1);
  }
  int group_size(GroupId g) const override { return group(g).size; }
  int group_rank(GroupId g) const override { return group(g).rank; }

  Request all_reduce(GroupId g, float* buf, std::size_t n, ReduceOp op) override {
    const Group& grp = group(g);
    begin();
    if (n == 0) return finish(grp.comm, "all_reduce");  // NCCL is not asked for nothing
    if (op == ReduceOp::kSum) {
      enqueued(api_.all_reduce(buf, buf, n, ncclFloat, ncclSum, grp.comm, stream()), grp.comm,
               "ncclAllReduce");
      return finish(grp.comm, "all_reduce");
    }
    STRATA_CHECK(n % 3 == 0, "kSoftmaxStats needs triples");
    float* gathered = scratch(n * static_cast<std::size_t>(grp.size));
    enqueued(api_.all_gather(buf, gathered, n, ncclFloat, grp.comm, stream()), grp.comm,
             "ncclAllGather (softmax statistics)");
    kernels::combine_gathered_softmax_stats(*stream_, buf, gathered, grp.size,
                                            static_cast<std::int64_t>(n / 3));
    return finish(grp.comm, "all_reduce (softmax statistics)");
  }

  Request all_gather(GroupId g, const float* send, float* recv, std::size_t n) override {
    const Group& grp = group(g);
    begin();
    if (n == 0) return finish(grp.comm, "all_gather");
    enqueued(api_.all_gather(send, recv, n, ncclFloat, grp.comm, stream()), grp.comm,
             "ncclAllGather");
    return finish(grp.comm, "all_gather");
  }

  Request reduce_scatter(GroupId g, const float* send, float* recv,
                         const std::vector<int>& counts) override {
    const Group& grp = group(g);
    check_counts(grp, counts);
    begin();
    if (!always_per_part_ && all_equal(counts)) {
      if (counts[0] > 0) {
        enqueued(api_.reduce_scatter(send, recv, static_cast<std::size_t>(counts[0]), ncclFloat,
                                     ncclSum, grp.comm, stream()),
                 grp.comm, "ncclReduceScatter");
      }
    } else {
      // Member i's part summed into its recv (NCCL writes recv on the root only).
      per_part(grp, counts, "ncclReduce (uneven reduce_scatter)",
               [&](int i, std::size_t offset, std::size_t count) {
                 check(api_.reduce(send + offset, recv, count, ncclFloat, ncclSum, i, grp.comm,
                                   stream()),
                       grp.comm, "ncclReduce");
               });
    }
    return finish(grp.comm, "reduce_scatter");
  }

  Request all_gather_v(GroupId g, const float* send, float* recv,
                       const std::vector<int>& counts) override {
    const Group& grp = group(g);
    check_counts(grp, counts);
    begin();
    if (!always_per_part_ && all_equal(counts)) {
      if (counts[0] > 0) {
        enqueued(api_.all_gather(send, recv, static_cast<std::size_t>(counts[0]), ncclFloat,
                                 grp.comm, stream()),
                 grp.comm, "ncclAllGather");
      }
    } else {
      // Member i's send to its place in everyone's recv (NCCL reads send on the root only).
      per_part(grp, counts, "ncclBroadcast (uneven all_gather_v)",
               [&](int i, std::size_t offset, std::size_t count) {
                 check(api_.broadcast(send, recv + offset, count, ncclFloat, i, grp.comm, stream()),
                       grp.comm, "ncclBroadcast");
               });
    }
    return finish(grp.comm, "all_gather_v");
  }

  Request broadcast(GroupId g, float* buf, std::size_t n, int root) override {
    const Group& grp = group(g);
    STRATA_CHECK(root >= 0 && root < grp.size, "broadcast root outside the group");
    begin();
    if (n == 0) return finish(grp.comm, "broadcast");
    enqueued(api_.broadcast(buf, buf, n, ncclFloat, root, grp.comm, stream()), grp.comm,
             "ncclBroadcast");
    return finish(grp.comm, "broadcast");
  }

  Request all_to_all(GroupId g, const float* send, float* recv, std::size_t n_per_rank) override {
    const Group& grp = group(g);
    begin();
    if (n_per_rank == 0) return finish(grp.comm, "all_to_all");
    grouped(grp.comm, "ncclSend/ncclRecv (all_to_all)", [&] {
      for (int j = 0; j < grp.size; ++j) {  // the own block too: NCCL sends to itself
        const std::size_t at = static_cast<std::size_t>(j) * n_per_rank;
        check(api_.send(send + at, n_per_rank, ncclFloat, j, grp.comm, stream()), grp.comm,
              "ncclSend");
        check(api_.recv(recv + at, n_per_rank, ncclFloat, j, grp.comm, stream()), grp.comm,
              "ncclRecv");
      }
    });
    return finish(grp.comm, "all_to_all");
  }

  Request send(int peer, int tag, const float* buf, std::size_t n) override {
    return queue_transfer(peer, tag, buf, nullptr, n);
  }
  Request recv(int peer, int tag, float* buf, std::size_t n) override {
    return queue_transfer(peer, tag, nullptr, buf, n);
  }
  int max_tag() const override { return 1 << 30; }

  void set_timeout_s(double seconds) override {
    STRATA_CHECK(seconds >= 0, "a timeout is >= 0 seconds");
    timeout_s_ = seconds;
  }

  // NCCL has no barrier: a one-float all-reduce over the world, waited for.
  void barrier() override {
    begin();
    float* one = scratch_.as<float>();
    enqueued(api_.all_reduce(one, one, 1, ncclFloat, ncclSum, world_, stream()), world_,
             "ncclAllReduce (barrier)");
    finish(world_, "barrier").wait();
  }

  [[noreturn]] void abort(int code) override {
    abort_all();
    if (bootstrap_ != nullptr) bootstrap_->abort(code);
    std::_Exit(code);
  }

 private:
  struct Group {
    ncclComm_t comm;
    int size;
    int rank;
  };
  struct Transfer {  // a send (`from` set) or a receive (`into` set)
    int peer;
    const float* from;
    float* into;
    std::size_t n;
    std::shared_ptr<std::optional<kernels::Event>> done;  // set when the queue is enqueued
  };

  static ncclConfig_t nonblocking() {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    return config;
  }

  // NCCL init and enqueues act on the calling thread's current device (kernels/' internals are
  // not used here: cudaSetDevice directly, from nccl.h's CUDA runtime).
  void make_device_current() const {
    const cudaError_t e = cudaSetDevice(device_);
    if (e != cudaSuccess) {
      throw std::runtime_error("cudaSetDevice(" + std::to_string(device_) + ") failed on rank " +
                               std::to_string(rank_) + " (" + host_name() +
                               "): " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
    }
  }

  cudaStream_t stream() const { return static_cast<cudaStream_t>(stream_->native_handle()); }

  const Group& group(GroupId g) const {
    STRATA_CHECK(g >= 0 && static_cast<std::size_t>(g) < groups_.size(), "unknown group id");
    return groups_[static_cast<std::size_t>(g)];
  }

  static bool all_equal(const std::vector<int>& counts) {
    for (int c : counts) {
      if (c != counts[0]) return false;
    }
    return true;
  }
  static void check_counts(const Group& grp, const std::vector<int>& counts) {
    STRATA_CHECK(counts.size() == static_cast<std::size_t>(grp.size), "one count per member");
    for (int c : counts) STRATA_CHECK(c >= 0, "counts are >= 0");
  }

  ncclResult_t last_state(ncclComm_t comm) const {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = api_.comm_get_async_error(comm, &state);
    return r == ncclSuccess ? state : r;
  }

  [[noreturn]] void fail(ncclResult_t result, ncclComm_t comm, const std::string& what) const {
    const char* detail = api_.get_last_error(comm);
    throw std::runtime_error(
        what + " failed on rank " + std::to_string(rank_) + " (" + host_name() + ", device " +
        std::to_string(device_) + "): " + api_.get_error_string(result) +
        (detail != nullptr && *detail != '\0' ? std::string(": ") + detail : std::string()));
  }

  // Before any call on a communicator: an aborted one is freed and must not be touched.
  void require_alive(const std::string& what) const {
    if (aborted_) {
      throw std::runtime_error("NCCL " + what + " on rank " + std::to_string(rank_) +
                               ": the communicators were aborted after an earlier failure");
    }
  }

  // A call's result: success and "in progress" (nonblocking communicators) go on.
  void check(ncclResult_t result, ncclComm_t comm, const char* what) const {
    if (result != ncclSuccess && result != ncclInProgress) fail(result, comm, what);
  }

  // Polls `comm` until its last call has settled (init, split or enqueue), within `timeout_s`
  // (0: forever); aborts every communicator and throws CommTimeout when it does not.
  void settle(ncclComm_t comm, const std::string& what, double timeout_s) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const ncclResult_t state = last_state(comm);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(state, comm, what);
      if (timeout_s > 0 && seconds_since(start) >= timeout_s) timed_out(what, timeout_s);
      std::this_thread::yield();
    }
  }

  [[noreturn]] void timed_out(const std::string& what, double timeout_s) {
    abort_all();
    throw CommTimeout("NCCL " + what + " on rank " + std::to_string(rank_) + " (" + host_name() +
                      ") did not complete within " + seconds_text(timeout_s) +
                      ": a peer stopped responding; the communicators are aborted");
  }

  void abort_all() noexcept {
    if (aborted_) return;
    aborted_ = true;
    for (const Group& g : groups_) {
      if (g.comm != nullptr) api_.comm_abort(g.comm);
    }
    if (world_ != nullptr) api_.comm_abort(world_);
  }

  // Before an operation: queued transfers go first (issue order is stream order), and the
  // device is the calling thread's current one.
  void begin() {
    require_alive("operation");
    flush_transfers();
    make_device_current();
  }

  // A single enqueue's result, settled.
  void enqueued(ncclResult_t result, ncclComm_t comm, const char* what) {
    check(result, comm, what);
    settle(comm, what, timeout_s_);
  }

  // `call(i, offset, count)` for each member i's part of `counts` (parts of 0 floats skipped),
  // as one NCCL group.
  template <typename Call>
  void per_part(const Group& grp, const std::vector<int>& counts, const char* what, Call&& call) {
    grouped(grp.comm, what, [&] {
      std::size_t offset = 0;
      for (int i = 0; i < grp.size; ++i) {
        const auto count = static_cast<std::size_t>(counts[static_cast<std::size_t>(i)]);
        if (count > 0) call(i, offset, count);
        offset += count;
      }
    });
  }

  // Enqueues `calls` (on `comm`) as one NCCL group.
  template <typename Calls>
  void grouped(ncclComm_t comm, const char* what, Calls&& calls) {
    check(api_.group_start(), comm, "ncclGroupStart");
    try {
      calls();
    } catch (...) {
      api_.group_end();
      throw;
    }
    check(api_.group_end(), comm, "ncclGroupEnd");
    settle(comm, what, timeout_s_);
  }

  // The request for what was just enqueued: an event after it on the stream.
  Request finish(ncclComm_t comm, const char* what) {
    kernels::Event done = stream_->record_event();
    return Request([this, comm, what, done] { wait_for(done, comm, what); });
  }

  // Waits for `done` while watching `comm` for asynchronous errors (a peer's failure surfaces
  // there), within the timeout.
  void wait_for(const kernels::Event& done, ncclComm_t comm, const char* what) {
    const auto start = std::chrono::steady_clock::now();
    for (long polls = 0;; ++polls) {
      if (done.is_complete()) return;
      if (polls % 64 == 63) {
        require_alive(what);
        const ncclResult_t state = last_state(comm);
        if (state != ncclSuccess && state != ncclInProgress) {
          fail(state, comm, std::string("NCCL ") + what);
        }
        if (timeout_s_ > 0 && seconds_since(start) >= timeout_s_) timed_out(what, timeout_s_);
      }
      std::this_thread::yield();
    }
  }

  Request queue_transfer(int peer, int tag, const float* from, float* into, std::size_t n) {
    STRATA_CHECK(peer >= 0 && peer < size_, "transfer peer outside the world");
    STRATA_CHECK(tag >= 0 && tag < max_tag(), "transfer tag outside [0, max_tag())");
    auto done = std::make_shared<std::optional<kernels::Event>>();
    transfers_.push_back(Transfer{peer, from, into, n, done});
    const char* what = from != nullptr ? "send" : "recv";
    return Request([this, done, what] {
      flush_transfers();
      if (!done->has_value()) {
        throw std::runtime_error(std::string("NCCL ") + what + " on rank " + std::to_string(rank_) +
                                 " was never enqueued: its group of transfers failed earlier");
      }
      wait_for(**done, world_, what);
    });
  }

  void flush_transfers() {
    if (transfers_.empty()) return;
    require_alive("send/recv");
    std::vector<Transfer> queued;
    queued.swap(transfers_);
    make_device_current();
    grouped(world_, "ncclSend/ncclRecv (transfers)", [&] {
      for (const Transfer& t : queued) {
        if (t.from != nullptr) {
          check(api_.send(t.from, t.n, ncclFloat, t.peer, world_, stream()), world_, "ncclSend");
        } else {
          check(api_.recv(t.into, t.n, ncclFloat, t.peer, world_, stream()), world_, "ncclRecv");
        }
      }
    });
    const kernels::Event done = stream_->record_event();
    for (const Transfer& t : queued) *t.done = done;
  }

  // Device scratch of at least `floats` floats. Grown (cudaMalloc, which synchronizes the device)
  // only when a larger softmax-statistics all-reduce comes; reused in stream order.
  float* scratch(std::size_t floats) {
    if (scratch_.size_bytes() < floats * sizeof(float)) {
      scratch_ = kernels::Buffer(*stream_, floats * sizeof(float));
    }
    return scratch_.as<float>();
  }

  const Nccl& api_;
  int rank_;
  int size_;
  int device_ = 0;
  Comm* bootstrap_;
  std::unique_ptr<kernels::Stream> own_stream_;
  const kernels::Stream* stream_ = nullptr;
  ncclComm_t world_ = nullptr;
  std::vector<Group> groups_;
  std::vector<Transfer> transfers_;
  kernels::Buffer scratch_;
  double timeout_s_ = 0;
  double init_timeout_s_ = 0;
  bool always_per_part_ = false;
  bool aborted_ = false;
};

// Loads NCCL and checks for a device before any rendezvous, so a rank that cannot take part
// says why at once instead of making the others time out first.
void require_nccl_and_device(const NcclOptions& options) {
  (void)nccl();
  if (kernels::cuda_device_count() == 0) {
    throw std::runtime_error("NCCL comm: no CUDA device: " + kernels::cuda_unavailable_reason());
  }
  if (options.device < 0 || options.device >= kernels::cuda_device_count()) {
    throw std::invalid_argument("NCCL comm: device " + std::to_string(options.device) +
                                " is not in [0, " + std::to_string(kernels::cuda_device_count()) +
                                ")");
  }
}

ncclUniqueId new_unique_id() {
  ncclUniqueId id;
  const ncclResult_t r = nccl().get_unique_id(&id);
  if (r != ncclSuccess) {
    throw std::runtime_error(std::string("ncclGetUniqueId failed on ") + host_name() + ": " +
                             nccl().get_error_string(r));
  }
  return id;
}

}  // namespace

bool built_with_nccl() { return true; }

std::string nccl_unavailable_reason() {
  try {
    (void)nccl();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::unique_ptr<Comm> make_nccl_comm(Comm& bootstrap, const NcclOptions& options) {
  require_nccl_and_device(options);
  std::vector<int> everyone(static_cast<std::size_t>(bootstrap.size()));
  for (int r = 0; r < bootstrap.size(); ++r) everyone[static_cast<std::size_t>(r)] = r;
  const GroupId world = bootstrap.split(everyone);
  float packed[kIdFloats] = {};
  if (bootstrap.rank() == 0) {
    const ncclUniqueId id = new_unique_id();
    std::memcpy(packed, &id, sizeof(id));
  }
  bootstrap.broadcast(world, packed, kIdFloats, 0).wait();
  ncclUniqueId id;
  std::memcpy(&id, packed, sizeof(id));
  return std::make_unique<NcclComm>(id, bootstrap.rank(), bootstrap.size(), options, &bootstrap);
}

std::unique_ptr<Comm> make_nccl_comm(const std::string& store_dir, int rank, int size,
                                     const NcclOptions& options) {
  if (size < 1 || rank < 0 || rank >= size) {
    throw std::invalid_argument("NCCL comm: rank " + std::to_string(rank) + " of size " +
                                std::to_string(size) + " must satisfy 0 <= rank < size");
  }
  const FileStore store(store_dir, options.init_timeout_s);
  require_nccl_and_device(options);
  const std::string key = "nccl-unique-id";
  ncclUniqueId id;
  if (rank == 0) {
    id = new_unique_id();
    store.set(key, std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
  } else {
    const std::string bytes = store.get(key);
    if (bytes.size() != sizeof(id)) {
      throw std::runtime_error("NCCL comm: " + store.path(key) + " holds " +
                               std::to_string(bytes.size()) + " bytes, an NCCL unique id has " +
                               std::to_string(sizeof(id)));
    }
    std::memcpy(&id, bytes.data(), sizeof(id));
  }
  return std::make_unique<NcclComm>(id, rank, size, options, nullptr);
}

}  // namespace strata::exec
