// The NCCL backend (executor/comm_nccl.cpp). Everywhere: the refusals that come before any GPU
// work (no NCCL backend in the build, a library that cannot be loaded, no device, bad ranks).
// On a GPU with NCCL (skipping with the reason elsewhere; STRATA_REQUIRE_CUDA=1 and
// STRATA_REQUIRE_NCCL=1 make a missing device or library a failure): a
// one-rank NCCL world, made over a local bootstrap and over a file store, gives the local
// backend's results for every operation on device buffers, and a wait that does not complete
// within the timeout throws CommTimeout naming the operation and aborts the communicators.
// (One GPU cannot host two NCCL ranks: multi-rank correctness rests on the MPI backend's tests
// and the shared interpreter.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "executor/comm.hpp"
#include "kernels/backend.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::exec {
namespace {

namespace fs = std::filesystem;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A fresh store directory per test, removed afterwards.
class StoreDir {
 public:
  StoreDir()
      : path_(fs::temp_directory_path() /
              ("strata-nccl-" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~StoreDir() { fs::remove_all(path_); }
  StoreDir(const StoreDir&) = delete;
  StoreDir& operator=(const StoreDir&) = delete;
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

TEST(NcclComm, WithoutTheBackendEveryMakeSaysSo) {
  if (built_with_nccl()) GTEST_SKIP() << "this build has the NCCL backend";
  EXPECT_TRUE(contains(nccl_unavailable_reason(), "this build has no NCCL backend"));
  auto local = make_local_comm();
  EXPECT_TRUE(contains(message_of([&] { make_nccl_comm(*local, NcclOptions{}); }),
                       "this build has no NCCL backend"));
  EXPECT_TRUE(contains(message_of([] { make_nccl_comm("/tmp", 0, 1, NcclOptions{}); }),
                       "this build has no NCCL backend"));
}

TEST(NcclComm, ALibraryThatCannotBeLoadedIsNamed) {
  if (!built_with_nccl()) GTEST_SKIP() << "built without the NCCL backend";
  const char* old = std::getenv("STRATA_NCCL_LIBRARY");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("STRATA_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
  auto local = make_local_comm();
  const std::string what = message_of([&] { make_nccl_comm(*local, NcclOptions{}); });
  const std::string reason = nccl_unavailable_reason();  // still under the variable
  if (old != nullptr) {
    ::setenv("STRATA_NCCL_LIBRARY", saved.c_str(), 1);
  } else {
    ::unsetenv("STRATA_NCCL_LIBRARY");
  }
  EXPECT_TRUE(contains(what, "NCCL could not be loaded (/nonexistent/libnccl.so.2")) << what;
  EXPECT_EQ(reason.substr(0, 30), what.substr(0, 30));
  EXPECT_TRUE(contains(what, "STRATA_NCCL_LIBRARY")) << what;
}

TEST(NcclComm, WithoutADeviceTheErrorGivesTheReason) {
  if (!built_with_nccl()) GTEST_SKIP() << "built without the NCCL backend";
  if (kernels::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto local = make_local_comm();
  const std::string what = message_of([&] { make_nccl_comm(*local, NcclOptions{}); });
  // The library is loaded first, so a machine without it says that instead.
  EXPECT_TRUE(contains(what, "no CUDA device: " + kernels::cuda_unavailable_reason()) ||
              contains(what, "NCCL could not be loaded ("))
      << what;
}

TEST(NcclComm, StoreBootstrapRejectsBadRanksAndMissingDirectories) {
  if (!built_with_nccl()) GTEST_SKIP() << "built without the NCCL backend";
  EXPECT_TRUE(contains(message_of([] { make_nccl_comm("/tmp", 2, 2, NcclOptions{}); }),
                       "rank 2 of size 2 must satisfy 0 <= rank < size"));
  EXPECT_TRUE(contains(message_of([] { make_nccl_comm("/nonexistent-store", 0, 1, {}); }),
                       "/nonexistent-store does not exist"));
}

// --- On a GPU -----------------------------------------------------------------------------

// Skips (or fails) a test that needs a one-rank NCCL world when none can be made here: without a
// CUDA device (a failure under STRATA_REQUIRE_CUDA=1, as the kernels' tests) or without a
// loadable NCCL (a failure under STRATA_REQUIRE_NCCL=1: a GPU machine may lack the library).
bool nccl_required() {
  const char* value = std::getenv("STRATA_REQUIRE_NCCL");
  return value != nullptr && std::string(value) != "" && std::string(value) != "0";
}

#define STRATA_SKIP_WITHOUT_NCCL_DEVICE()                                      \
  do {                                                                         \
    if (const std::string why = nccl_unavailable_reason(); !why.empty()) {     \
      if (nccl_required()) FAIL() << "STRATA_REQUIRE_NCCL is set but " << why; \
      GTEST_SKIP() << why;                                                     \
    }                                                                          \
    STRATA_SKIP_WITHOUT_CUDA();                                                \
  } while (0)

// Device copies of host vectors, and back.
class DeviceFloats {
 public:
  DeviceFloats(const kernels::Stream& stream, const std::vector<float>& host)
      : stream_(stream),
        buffer_(stream, std::max<std::size_t>(1, host.size()) * sizeof(float)),
        size_(host.size()) {
    if (!host.empty()) kernels::copy_to_buffer(stream, buffer_, host.data(), size_ * 4);
  }
  float* data() { return buffer_.as<float>(); }
  std::vector<float> host() const {
    std::vector<float> out(size_);
    if (size_ > 0) kernels::copy_from_buffer(stream_, out.data(), buffer_, size_ * 4);
    stream_.synchronize();
    return out;
  }

 private:
  const kernels::Stream& stream_;
  kernels::Buffer buffer_;
  std::size_t size_;
};

std::vector<float> iota_floats(std::size_t n, float start) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Softmax triples with positive sums (their combination over one member is the identity).
std::vector<float> triples(std::size_t rows) {
  std::vector<float> v(3 * rows);
  for (std::size_t i = 0; i < rows; ++i) {
    v[3 * i] = 0.5f * static_cast<float>(i) - 3.0f;
    v[3 * i + 1] = 1.0f + static_cast<float>(i % 5);
    v[3 * i + 2] = -0.25f * static_cast<float>(i);
  }
  return v;
}

// An operation on a Comm: `in` is its send (or in-place) buffer, `out` its receive buffer.
using Operation = std::function<Request(Comm&, GroupId, float* in, float* out)>;

// Runs `op` on the local backend over host buffers and on `nccl` over device copies of the same
// input; the results (`out`, or `in` when out_size is 0: in place) must be equal bit for bit
// (one rank moves data, it adds nothing).
void expect_as_local(Comm& nccl, const kernels::Stream& stream, const std::vector<float>& in,
                     std::size_t out_size, const Operation& op, const std::string& what) {
  auto local = make_local_comm();
  std::vector<float> want_in = in, want_out(out_size);
  op(*local, local->split({0}), want_in.data(), want_out.data()).wait();
  DeviceFloats got_in(stream, in), got_out(stream, std::vector<float>(out_size, 0.0f));
  op(nccl, 0, got_in.data(), got_out.data()).wait();
  if (out_size == 0) {
    EXPECT_EQ(got_in.host(), want_in) << what;
  } else {
    EXPECT_EQ(got_out.host(), want_out) << what;
  }
}

// Every operation on `nccl` (device buffers) against the local backend (host buffers).
void expect_local_results(Comm& nccl, const kernels::Stream& stream) {
  ASSERT_EQ(nccl.split({0}), 0);  // the group expect_as_local uses
  ASSERT_EQ(nccl.group_size(0), 1);
  ASSERT_EQ(nccl.group_rank(0), 0);
  EXPECT_EQ(nccl.split({}), kNoGroup);

  for (const std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{(1 << 18) + 3}}) {
    const std::string at = " (n = " + std::to_string(n) + ")";
    const std::vector<float> in = iota_floats(n, -7.5f);
    const std::vector<int> counts = {static_cast<int>(n)};
    expect_as_local(
        nccl, stream, in, 0,
        [&](Comm& c, GroupId g, float* buf, float*) {
          return c.all_reduce(g, buf, n, ReduceOp::kSum);
        },
        "all_reduce kSum" + at);
    expect_as_local(
        nccl, stream, triples(n), 0,
        [&](Comm& c, GroupId g, float* buf, float*) {
          return c.all_reduce(g, buf, 3 * n, ReduceOp::kSoftmaxStats);
        },
        "all_reduce kSoftmaxStats" + at);
    expect_as_local(
        nccl, stream, in, n,
        [&](Comm& c, GroupId g, float* send, float* recv) {
          return c.all_gather(g, send, recv, n);
        },
        "all_gather" + at);
    expect_as_local(
        nccl, stream, in, n,
        [&](Comm& c, GroupId g, float* send, float* recv) {
          return c.reduce_scatter(g, send, recv, counts);
        },
        "reduce_scatter" + at);
    expect_as_local(
        nccl, stream, in, n,
        [&](Comm& c, GroupId g, float* send, float* recv) {
          return c.all_gather_v(g, send, recv, counts);
        },
        "all_gather_v" + at);
    expect_as_local(
        nccl, stream, in, 0,
        [&](Comm& c, GroupId g, float* buf, float*) { return c.broadcast(g, buf, n, 0); },
        "broadcast" + at);
    expect_as_local(
        nccl, stream, in, n,
        [&](Comm& c, GroupId g, float* send, float* recv) {
          return c.all_to_all(g, send, recv, n);
        },
        "all_to_all" + at);
    {
      // A transfer to itself (the local backend has none): the received buffer is the sent one.
      DeviceFloats send(stream, in), recv(stream, std::vector<float>(n, 0.0f));
      Request r = nccl.recv(0, 5, recv.data(), n);
      Request s = nccl.send(0, 5, send.data(), n);
      s.wait();
      r.wait();
      EXPECT_EQ(recv.host(), in) << "send/recv to self" << at;
    }
  }
  nccl.barrier();
}

TEST(NcclComm, OneRankOverALocalBootstrapGivesTheLocalResults) {
  STRATA_SKIP_WITHOUT_NCCL_DEVICE();
  const kernels::Stream stream = kernels::Stream::cuda(0);
  auto bootstrap = make_local_comm();
  NcclOptions options;
  options.stream = &stream;
  options.init_timeout_s = 60;
  auto nccl = make_nccl_comm(*bootstrap, options);
  EXPECT_EQ(nccl->backend(), "nccl");
  EXPECT_TRUE(nccl->device_buffers());
  EXPECT_EQ(nccl->rank(), 0);
  EXPECT_EQ(nccl->size(), 1);
  EXPECT_TRUE(contains(nccl->library_version(), "NCCL 2.")) << nccl->library_version();
  expect_local_results(*nccl, stream);
}

TEST(NcclComm, OneRankOverAFileStoreTakingThePerPartPathGivesTheLocalResults) {
  STRATA_SKIP_WITHOUT_NCCL_DEVICE();
  const StoreDir dir;
  const kernels::Stream stream = kernels::Stream::cuda(0);
  NcclOptions options;
  options.stream = &stream;
  options.init_timeout_s = 60;
  options.always_per_part = true;  // reduce_scatter / all_gather_v as grouped per-part calls
  auto nccl = make_nccl_comm(dir.str(), 0, 1, options);
  expect_local_results(*nccl, stream);
  EXPECT_TRUE(fs::exists(fs::path(dir.str()) / "nccl-unique-id"));
}

TEST(NcclComm, AWaitPastTheTimeoutThrowsCommTimeoutAndAborts) {
  STRATA_SKIP_WITHOUT_NCCL_DEVICE();
  const StoreDir dir;
  const kernels::Stream stream = kernels::Stream::cuda(0);
  NcclOptions options;
  options.stream = &stream;
  options.init_timeout_s = 60;
  auto nccl = make_nccl_comm(dir.str(), 0, 1, options);
  const GroupId g = nccl->split({0});
  DeviceFloats buf(stream, iota_floats(16, 0.0f));
  // A first call, untimed: NCCL may set up the communicator's connections at its first
  // operation, which must not count against the short timeout below.
  nccl->all_reduce(g, buf.data(), 16, ReduceOp::kSum).wait();
  nccl->set_timeout_s(0.1);
  // The stream is held busy for a second: the all-reduce behind it cannot complete in 0.1 s, as
  // when a peer stopped responding.
  kernels::busy_wait(stream, 1e6);
  Request r = nccl->all_reduce(g, buf.data(), 16, ReduceOp::kSum);
  try {
    r.wait();
    FAIL() << "the wait returned within the timeout";
  } catch (const CommTimeout& e) {
    const std::string what = e.what();
    EXPECT_TRUE(contains(what, "NCCL all_reduce on rank 0")) << what;
    EXPECT_TRUE(contains(what, "did not complete within 0.1 s")) << what;
    EXPECT_TRUE(contains(what, "communicators are aborted")) << what;
  }
  // Aborted communicators refuse further work with a clear error instead of hanging.
  const std::string later = message_of([&] { nccl->broadcast(g, buf.data(), 16, 0).wait(); });
  EXPECT_TRUE(contains(later, "aborted")) << later;
  stream.synchronize();  // the busy kernel ends before its stream and buffers go
}

}  // namespace
}  // namespace strata::exec
