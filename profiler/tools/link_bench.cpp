// Link curves measured through the executor's communication layer (link_bench.hpp). Every rank
// walks the same list of points; the members of a point's group time it, and one all-gather over
// the world after each point shares every member's mean time and check result, so all ranks take
// the same decisions (the slowest time, a failure) without any rank waiting on another forever.
#include "profiler/tools/link_bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>

#include "common/error.hpp"
#include "common/version.hpp"

namespace strata::profiler {

using exec::Comm;
using exec::GroupId;

namespace {

constexpr std::int64_t kMinBytes = 8;
constexpr std::int64_t kMaxBytesLimit = std::int64_t{1} << 30;  // one MPI call's float count
constexpr std::size_t kHostChars = 64;                          // host names are exchanged cut
constexpr int kTag = 7;

const LinkCollective kGroupCollectives[] = {LinkCollective::kAllReduce, LinkCollective::kAllGather,
                                            LinkCollective::kReduceScatter,
                                            LinkCollective::kAllToAll, LinkCollective::kBroadcast};
constexpr int kRoot = 0;  // the broadcast's root (a group rank), nccl-tests' default

// Whether `c`'s size is split into one part per member (nccl-tests' size is the gathered output,
// the scattered input, one rank's whole all-to-all buffer).
bool split_per_member(LinkCollective c) {
  return c == LinkCollective::kAllGather || c == LinkCollective::kReduceScatter ||
         c == LinkCollective::kAllToAll;
}

// What member `r` of a group contributes at element `i`: small integers, so every sum over a
// group is exact in fp32 and a check can ask for equality.
float input_value(int r, std::size_t i) {
  return static_cast<float>(r + 1 + static_cast<int>(i % 7));
}

// The first wrong element a member found in a checked call.
struct Mismatch {
  std::size_t index = 0;
  float got = 0, want = 0;
};

// Floats the communication layer reads and writes: host memory for a host backend; for a device
// backend, a Buffer on `stream`'s device beside the host copy that is filled and checked, moved
// across by upload() and download() (each synchronizing the stream).
class CommFloats {
 public:
  CommFloats(const kernels::Stream* stream, std::size_t n) : stream_(stream), host_(n) {
    if (stream_ != nullptr && n > 0) device_ = kernels::Buffer(*stream_, n * sizeof(float));
  }
  std::vector<float>& host() { return host_; }
  const std::vector<float>& host() const { return host_; }
  std::size_t size() const { return host_.size(); }
  float* data() { return stream_ != nullptr ? device_.as<float>() : host_.data(); }
  void upload() {
    if (stream_ == nullptr || host_.empty()) return;
    kernels::copy_from_host(*stream_, device_.data(), host_.data(), host_.size() * sizeof(float));
    stream_->synchronize();
  }
  void download() {
    if (stream_ == nullptr || host_.empty()) return;
    kernels::copy_to_host(*stream_, host_.data(), device_.data(), host_.size() * sizeof(float));
    stream_->synchronize();
  }

 private:
  const kernels::Stream* stream_;
  std::vector<float> host_;
  kernels::Buffer device_;
};

// The stream a communicator's buffers live on: nullptr for host memory.
const kernels::Stream* buffer_stream(const Comm& comm, const LinkBenchOptions& opts) {
  if (!comm.device_buffers()) return nullptr;
  STRATA_CHECK(opts.stream != nullptr,
               "measure_links: a device-buffer communicator needs LinkBenchOptions::stream");
  return opts.stream;
}

// One member's side of a point: its buffers and the call timed. all_reduce and broadcast work in
// place on `send_`; all_gather, reduce_scatter and all_to_all move `part_` floats per member;
// send_recv exchanges `part_` floats with the other rank of the pair.
class Member {
 public:
  Member(Comm& comm, LinkCollective c, GroupId g, std::int64_t bytes, const kernels::Stream* stream)
      : comm_(comm), c_(c), g_(g), n_(comm.group_size(g)), r_(comm.group_rank(g)) {
    const auto floats = static_cast<std::size_t>(bytes / 4);
    part_ = split_per_member(c) ? floats / static_cast<std::size_t>(n_) : floats;
    const std::size_t whole = part_ * static_cast<std::size_t>(n_);
    const bool whole_in = c == LinkCollective::kReduceScatter || c == LinkCollective::kAllToAll;
    const bool whole_out = c == LinkCollective::kAllGather || c == LinkCollective::kAllToAll;
    send_.emplace(stream, whole_in ? whole : part_);
    recv_.emplace(stream, in_place() ? 0 : whole_out ? whole : part_);
  }

  // Timed calls run on zeros (an in-place all-reduce of zeros stays finite however often it
  // repeats); the checked call on input_value() with the output poisoned, so a call that wrote
  // nothing shows.
  void fill(bool for_check) {
    std::vector<float>& send = send_->host();
    for (std::size_t i = 0; i < send.size(); ++i) send[i] = for_check ? input_value(r_, i) : 0.f;
    std::fill(recv_->host().begin(), recv_->host().end(), for_check ? -1.f : 0.f);
    send_->upload();
    recv_->upload();
  }

  // Issues the operation and waits for it.
  void call() {
    switch (c_) {
      case LinkCollective::kAllReduce:
        comm_.all_reduce(g_, send_->data(), part_, exec::ReduceOp::kSum).wait();
        return;
      case LinkCollective::kAllGather:
        comm_.all_gather(g_, send_->data(), recv_->data(), part_).wait();
        return;
      case LinkCollective::kReduceScatter:
        comm_
            .reduce_scatter(g_, send_->data(), recv_->data(),
                            std::vector<int>(static_cast<std::size_t>(n_), static_cast<int>(part_)))
            .wait();
        return;
      case LinkCollective::kAllToAll:
        comm_.all_to_all(g_, send_->data(), recv_->data(), part_).wait();
        return;
      case LinkCollective::kBroadcast:
        comm_.broadcast(g_, send_->data(), part_, kRoot).wait();
        return;
      case LinkCollective::kSendRecv: {
        // The pair is world ranks 0 and 1: each sends to and receives from the other at once.
        const int peer = 1 - comm_.rank();
        exec::Request in = comm_.recv(peer, kTag, recv_->data(), part_);
        comm_.send(peer, kTag, send_->data(), part_).wait();
        in.wait();
        return;
      }
    }
  }

  // The first element of the checked call's output that differs from its exact value.
  std::optional<Mismatch> check() {
    CommFloats& result = in_place() ? *send_ : *recv_;
    result.download();
    const std::vector<float>& out = result.host();
    for (std::size_t i = 0; i < out.size(); ++i) {
      const float want = expected(i);
      if (out[i] != want) return Mismatch{i, out[i], want};
    }
    return std::nullopt;
  }

 private:
  // The exact value of output element `i` (sums of input_value over the members).
  float expected(std::size_t i) const {
    const auto sum_at = [&](std::size_t k) {
      return static_cast<float>(n_ * (n_ + 1) / 2 + n_ * static_cast<int>(k % 7));
    };
    switch (c_) {
      case LinkCollective::kAllReduce:
        return sum_at(i);
      case LinkCollective::kAllGather:
        return input_value(static_cast<int>(i / part_), i % part_);
      case LinkCollective::kReduceScatter:
        return sum_at(static_cast<std::size_t>(r_) * part_ + i);
      case LinkCollective::kAllToAll:  // block j: member j's block for this member
        return input_value(static_cast<int>(i / part_),
                           static_cast<std::size_t>(r_) * part_ + i % part_);
      case LinkCollective::kBroadcast:
        return input_value(kRoot, i);
      case LinkCollective::kSendRecv:
        return input_value(1 - r_, i);
    }
    return 0.f;
  }

  bool in_place() const {
    return c_ == LinkCollective::kAllReduce || c_ == LinkCollective::kBroadcast;
  }

  Comm& comm_;
  LinkCollective c_;
  GroupId g_;
  int n_, r_;
  std::size_t part_ = 0;
  std::optional<CommFloats> send_, recv_;  // set by the constructor
};

// One point's outcome on one rank, as exchanged over the world: mean seconds per call (0 for a
// rank outside the group), whether its check failed, and the first wrong element.
constexpr std::size_t kReportFloats = 5;

std::vector<float> report(double mean_s, const std::optional<Mismatch>& m) {
  return {static_cast<float>(mean_s), m ? 1.f : 0.f, m ? static_cast<float>(m->index) : 0.f,
          m ? m->got : 0.f, m ? m->want : 0.f};
}

// Times one point on a member: warm-up calls, a world barrier (every rank, member or not,
// calls time_point), the timed calls, then the checked call. Returns the mean seconds per call.
double time_point(Comm& comm, Member* m, const LinkBenchOptions& opts,
                  std::optional<Mismatch>& mismatch) {
  if (m) {
    m->fill(false);
    for (int k = 0; k < opts.warmup; ++k) m->call();
  }
  comm.barrier();
  if (!m) return 0;
  const auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < opts.iters; ++k) m->call();
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  m->fill(true);
  m->call();
  mismatch = m->check();
  return elapsed.count() / opts.iters;
}

// What a point is called in progress lines and errors: "all_reduce 2 ranks, 4096 bytes".
std::string point_name(LinkCollective c, int ranks, std::int64_t bytes) {
  return std::string(link_collective_name(c)) + " " + std::to_string(ranks) + " ranks, " +
         std::to_string(bytes) + " bytes";
}

// The world's host names (cut to kHostChars), exchanged as one float per character.
std::vector<std::string> world_hosts(Comm& comm, GroupId world, const kernels::Stream* stream) {
  const std::string mine = host_name().substr(0, kHostChars);
  CommFloats send(stream, kHostChars);
  for (std::size_t i = 0; i < mine.size(); ++i) {
    send.host()[i] = static_cast<unsigned char>(mine[i]);
  }
  send.upload();
  CommFloats gathered(stream, kHostChars * static_cast<std::size_t>(comm.size()));
  comm.all_gather(world, send.data(), gathered.data(), kHostChars).wait();
  gathered.download();
  const std::vector<float>& all = gathered.host();
  std::vector<std::string> hosts;
  for (int r = 0; r < comm.size(); ++r) {
    std::string h;
    for (std::size_t i = 0; i < kHostChars; ++i) {
      const float ch = all[static_cast<std::size_t>(r) * kHostChars + i];
      if (ch == 0.f) break;
      h += static_cast<char>(static_cast<unsigned char>(ch));
    }
    hosts.push_back(h);
  }
  return hosts;
}

// A curve to measure: its collective, its group (kNoGroup on ranks outside it) and its sizes.
struct Sweep {
  LinkCollective collective;
  int ranks;
  GroupId group;
  std::vector<std::int64_t> sizes;
};

// The curves, with their groups made (collectively: every rank splits the same groups in the
// same order).
std::vector<Sweep> sweeps_of(Comm& comm, GroupId world, const LinkBenchOptions& opts) {
  std::vector<std::pair<int, GroupId>> groups;
  for (int g : link_bench_groups(comm.size())) {
    if (g == comm.size()) {
      groups.emplace_back(g, world);
      continue;
    }
    std::vector<int> members;
    if (comm.rank() < g) {
      for (int r = 0; r < g; ++r) members.push_back(r);
    }
    groups.emplace_back(g, comm.split(members));
  }
  std::vector<Sweep> sweeps;
  for (LinkCollective c : kGroupCollectives) {
    for (const auto& [g, id] : groups) {
      sweeps.push_back({c, g, id, link_bench_sizes(c, g, opts.max_bytes, opts.size_factor)});
    }
  }
  // send_recv between ranks 0 and 1: the group of 2 is the first one.
  sweeps.push_back(
      {LinkCollective::kSendRecv, 2, groups.front().second,
       link_bench_sizes(LinkCollective::kSendRecv, 2, opts.max_bytes, opts.size_factor)});
  return sweeps;
}

// Options that cannot make a curve: ConfigError on every rank alike.
void check_options(const Comm& comm, const LinkBenchOptions& opts) {
  if (comm.size() < 2) {
    throw ConfigError("a world of " + std::to_string(comm.size()) +
                      " rank: measuring links needs at least 2 (mpirun -np 2 or more)");
  }
  if (opts.iters < 1)
    throw ConfigError("--iters = " + std::to_string(opts.iters) + ": must be >= 1");
  if (opts.warmup < 0) {
    throw ConfigError("--warmup = " + std::to_string(opts.warmup) + ": must be >= 0");
  }
  if (opts.max_bytes > kMaxBytesLimit) {
    throw ConfigError("--max-bytes = " + std::to_string(opts.max_bytes) +
                      ": at most 1 GiB (1073741824) per message");
  }
  // The all-gather (as the all-to-all) over the whole world has the fewest sizes (one float per
  // member at least).
  if (opts.size_factor < 2 || opts.size_factor > 1024) {
    throw ConfigError("--factor = " + std::to_string(opts.size_factor) +
                      ": must be an integer from 2 to 1024");
  }
  if (link_bench_sizes(LinkCollective::kAllGather, comm.size(), opts.max_bytes, opts.size_factor)
          .size() < 2) {
    std::int64_t first = kMinBytes;
    while (first < 4 * comm.size()) first *= opts.size_factor;
    throw ConfigError("--max-bytes = " + std::to_string(opts.max_bytes) + ": with " +
                      std::to_string(comm.size()) +
                      " ranks a curve needs two sizes of at least one float per rank; use "
                      "--max-bytes " +
                      std::to_string(first * opts.size_factor) + " or more");
  }
}

// Why a measured curve gets no fit, or "": when its times do not grow with its sizes (timing
// noise over small messages), the fit has no bandwidth, which links.json cannot hold.
std::string unfittable(const LinkCurve& c) {
  if (fit_curve(c).busbw_Bps > 0) return "";
  return std::string(link_collective_name(c.collective)) + " " + std::to_string(c.ranks) +
         " ranks left out: its times do not grow with the message size up to " +
         std::to_string(std::llround(c.points.back().bytes)) +
         " bytes (timing noise), so no bandwidth can be fitted; measure larger messages "
         "(--max-bytes) or more --iters";
}

MeasuredOn measured_on(const Comm& comm, const LinkBenchOptions& opts) {
  MeasuredOn on;
  on.device = opts.device;
  on.device_kind = opts.device_kind;
  on.host = host_name();
  on.date = utc_now_iso8601();
  on.strata_version = version();
  const std::string library = comm.library_version();
  on.libraries[comm.backend() == "nccl" ? "nccl" : "mpi"] = library.empty() ? "unknown" : library;
  return on;
}

}  // namespace

std::vector<int> link_bench_groups(int world) {
  std::vector<int> groups;
  for (int g = 2; g < world; g *= 2) groups.push_back(g);
  if (world >= 2) groups.push_back(world);
  return groups;
}

std::vector<std::int64_t> link_bench_sizes(LinkCollective c, int ranks, std::int64_t max_bytes,
                                           int factor) {
  STRATA_CHECK(factor >= 2, "link_bench_sizes: factor " + std::to_string(factor) + " < 2");
  const std::int64_t unit = 4 * (split_per_member(c) ? std::max(ranks, 1) : 1);  // a float each
  std::vector<std::int64_t> sizes;
  for (std::int64_t b = kMinBytes; b <= max_bytes; b *= factor) {
    if (b / unit > 0 && (sizes.empty() || b / unit * unit > sizes.back())) {
      sizes.push_back(b / unit * unit);
    }
  }
  // max_bytes itself, when the factors step over it (16 MiB after 8 MiB by factors of 4).
  const std::int64_t last = max_bytes / unit * unit;
  if (last > 0 && (sizes.empty() || sizes.back() < last)) sizes.push_back(last);
  return sizes;
}

namespace {

// Measures one point of `sweep` on every rank: the slowest member's mean seconds per call, the
// same on every rank; LinkBenchError on every rank when a member's check failed.
double measure_point(Comm& comm, GroupId world, const Sweep& sweep, std::int64_t bytes,
                     const LinkBenchOptions& opts) {
  const kernels::Stream* stream = buffer_stream(comm, opts);
  std::optional<Member> member;
  if (sweep.group != exec::kNoGroup) {
    member.emplace(comm, sweep.collective, sweep.group, bytes, stream);
  }
  std::optional<Mismatch> mismatch;
  const double mean_s = time_point(comm, member ? &*member : nullptr, opts, mismatch);
  CommFloats mine(stream, kReportFloats);
  mine.host() = report(mean_s, mismatch);
  mine.upload();
  CommFloats gathered(stream, kReportFloats * static_cast<std::size_t>(comm.size()));
  comm.all_gather(world, mine.data(), gathered.data(), kReportFloats).wait();
  gathered.download();
  const std::vector<float>& all = gathered.host();
  double slowest_s = 0;
  for (int r = 0; r < comm.size(); ++r) {
    const float* rep = &all[kReportFloats * static_cast<std::size_t>(r)];
    if (rep[1] != 0.f) {
      std::ostringstream what;
      what << point_name(sweep.collective, sweep.ranks, bytes) << ": wrong result on rank " << r
           << ": output element " << std::llround(rep[2]) << " = " << rep[3] << ", expected "
           << rep[4];
      throw LinkBenchError(what.str());
    }
    slowest_s = std::max(slowest_s, static_cast<double>(rep[0]));
  }
  return slowest_s;
}

}  // namespace

LinkProfile measure_links(Comm& comm, const LinkBenchOptions& opts) {
  check_options(comm, opts);
  std::vector<int> everyone(static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) everyone[static_cast<std::size_t>(r)] = r;
  const GroupId world = comm.split(everyone);
  const std::vector<std::string> hosts = world_hosts(comm, world, buffer_stream(comm, opts));
  const std::vector<Sweep> sweeps = sweeps_of(comm, world, opts);
  const bool lead = comm.rank() == 0;

  std::size_t total = 0, done = 0;
  for (const Sweep& p : sweeps) total += p.sizes.size();
  LinkProfile profile;
  profile.on = measured_on(comm, opts);
  profile.backend = comm.backend() == "nccl" ? "nccl" : "mpi";
  for (const Sweep& p : sweeps) {
    LinkCurve curve;
    curve.collective = p.collective;
    curve.ranks = p.ranks;
    const bool one_host = std::all_of(hosts.begin(), hosts.begin() + p.ranks,
                                      [&](const std::string& h) { return h == hosts.front(); });
    curve.fabric = one_host ? opts.intra_fabric : "network";
    for (std::int64_t bytes : p.sizes) {
      if (lead && opts.progress) {
        opts.progress(point_name(p.collective, p.ranks, bytes) + " (" + std::to_string(++done) +
                      " of " + std::to_string(total) + ")");
      }
      curve.points.push_back(
          LinkPoint{static_cast<double>(bytes), measure_point(comm, world, p, bytes, opts)});
    }
    if (const std::string why = unfittable(curve); !why.empty()) {
      if (lead && opts.warning) opts.warning(why);
      continue;
    }
    curve.fit = fit_curve(curve);
    profile.curves.push_back(std::move(curve));
  }
  if (profile.curves.empty()) {
    throw LinkBenchError(
        "no curve could be fitted: the times do not grow with the message size "
        "up to --max-bytes = " +
        std::to_string(opts.max_bytes) +
        " (timing noise); measure larger messages or more --iters");
  }
  return profile;
}

}  // namespace strata::profiler
