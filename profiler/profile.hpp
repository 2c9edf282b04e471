// Measured costs as files (docs/profiles.md): profile.json, the op costs `strata profile ops`
// measures, and links.json, the collective curves `strata profile links` measures or imports
// from nccl-tests. Both are versioned and record where they were measured (device, host,
// libraries, date), as DESIGN.md's provenance rule asks of measured outputs. Readers check every
// field and name file, field and value in their errors (the CLI writes the files atomically).
//
// defines: MeasuredOn, OpMeasurement, OpProfile, LinkCollective, LinkPoint, LinkFit, LinkCurve,
//          LinkProfile, busbw_factor(), fit_curve(), the JSON readers and writers
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "profiler/cost_model.hpp"

namespace strata::profiler {

inline constexpr int kProfileSchemaVersion = 1;

// Where and when something was measured.
struct MeasuredOn {
  std::string device;       // the DeviceSpec name the costs are for (a cluster's gpu.name)
  std::string device_kind;  // "cpu" or "gpu"
  std::string host;         // host name
  std::string date;         // UTC, ISO 8601
  std::string strata_version;
  std::map<std::string, std::string> libraries;  // e.g. {"mpi": "Open MPI 4.1.4"}
};

// ---- profile.json -------------------------------------------------------------------------

// One op, timed at exactly its key (kind, dtype, flags, operand counts, dims): `repetitions`
// timed runs after `warmup` untimed ones, inputs rotated between runs.
struct OpMeasurement {
  OpKey key;
  double median_s = 0;
  double min_s = 0;
  double max_s = 0;
  int repetitions = 0;
};

struct OpProfile {
  MeasuredOn on;
  int warmup = 0;       // untimed runs before the timed ones, per op
  int repetitions = 0;  // timed runs per op, over all trials
  int trials = 1;       // passes over every op, each on freshly allocated inputs (op_bench.hpp)
  std::string model, strategy, cluster;  // what the Plan was (names), for people
  std::vector<OpMeasurement> ops;
};

json::Json op_profile_to_json(const OpProfile& p);
// `file` names the source in errors ("profile.json: ops[3].median_s = -1: must be > 0").
OpProfile op_profile_from_json(const json::Json& j, const std::string& file);
OpProfile read_op_profile(const std::string& path);

// ---- links.json ---------------------------------------------------------------------------

// What a link curve measured: a collective, or a point-to-point send and receive.
enum class LinkCollective { kAllReduce, kAllGather, kReduceScatter, kAllToAll, kBroadcast, kSendRecv };
inline constexpr int kNumLinkCollectives = 6;
const char* link_collective_name(LinkCollective c);
// nccl-tests' bus bandwidth factor (its doc/PERFORMANCE.md): busbw = algbw x factor over n ranks:
// all-reduce 2(n-1)/n, all-gather, reduce-scatter and all-to-all (n-1)/n, broadcast and
// send/recv 1.
double busbw_factor(LinkCollective c, int ranks);

// One message size: its time (the slowest rank's, as nccl-tests reports), algbw = bytes / time
// and busbw = algbw x busbw_factor. `bytes` is nccl-tests' "size": the buffer of an all-reduce
// or broadcast, the gathered output of an all-gather, the input of a reduce-scatter.
struct LinkPoint {
  double bytes = 0;
  double time_s = 0;
  double algbw_Bps() const { return time_s > 0 ? bytes / time_s : 0; }
};

// time = latency_s + bytes x busbw_factor / busbw_Bps, least squares over the points in
// relative error (weights 1 / time^2), so that small sizes set the latency and large ones the
// bandwidth; where that leaves no bandwidth (noisy small sizes), in absolute error.
struct LinkFit {
  double latency_s = 0;
  double busbw_Bps = 0;
};

struct LinkCurve {
  LinkCollective collective = LinkCollective::kAllReduce;
  int ranks = 2;             // group size
  std::string fabric;        // what the group spans: an intra_node fabric name or "network"
  std::vector<LinkPoint> points;  // ascending bytes
  LinkFit fit;
};
// The fit of `c`'s points (at least two distinct sizes; the latency is clamped at 0).
LinkFit fit_curve(const LinkCurve& c);

struct LinkProfile {
  MeasuredOn on;
  std::string backend;  // "mpi", "nccl" or "nccl-tests" (imported)
  std::vector<LinkCurve> curves;
};

json::Json link_profile_to_json(const LinkProfile& p);
LinkProfile link_profile_from_json(const json::Json& j, const std::string& file);
LinkProfile read_link_profile(const std::string& path);

// The current UTC time as ISO 8601 and this host's name, for MeasuredOn.
std::string utc_now_iso8601();
std::string host_name();

}  // namespace strata::profiler
