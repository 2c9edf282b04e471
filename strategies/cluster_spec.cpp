// Cluster specs: uniform or heterogeneous (node groups), devices, intra- and inter-node fabrics.
// Bandwidths are read as <stem>_GBps or <stem>_Gbps and stored in bytes/s; latencies in seconds.
// Formats and rules: docs/specs.md.
#include <climits>
#include <cmath>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/units.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

namespace {

using json::Json;

const std::vector<std::string> kDeviceKinds = {"gpu", "cpu"};
const std::vector<std::string> kFabrics = {"nvswitch", "pcie", "shared"};
const std::vector<std::string> kTopologies = {"fat-tree", "rail-optimized", "none"};

// Physical ranges of the numeric fields (docs/specs.md lists them beside each field). They keep
// absurd but finite values (a peak of 1e-300 FLOP/s, a latency of 1e300 us) from becoming
// infinite or 1e300-second task times in the simulator.
constexpr double kMinPeakTflops = 1e-3;  // 1 GFLOP/s: slower than any CPU core
constexpr double kMaxPeakTflops = 1e5;   // 100 PFLOP/s: 50x a 2024 GPU's FP8 peak
constexpr double kMinBandwidthGBps = 1e-6;  // 1 kB/s
constexpr double kMaxBandwidthGBps = 1e6;   // 1 PB/s
constexpr double kMaxLatencyUs = 1e6;       // 1 s
constexpr double kMaxOversubscription = 1000;
constexpr long long kMaxMemoryBytes = 1LL << 50;  // 1 PiB
constexpr int kMaxNodes = 1000000;
constexpr int kMaxGpusPerNode = 1024;
constexpr int kMaxNicsPerNode = 1024;
constexpr int kMaxCoresPerNode = 65536;

// A number within [lo, hi]; `rule` says what the range is in words.
double number_in(json::ObjectReader& r, const std::string& key, double lo, double hi,
                 const std::string& rule) {
  const double v = r.get_number(key);
  if (!(v >= lo && v <= hi)) json::fail(r.field(key), v, rule);
  return v;
}

int int_in(json::ObjectReader& r, const std::string& key, int hi, const std::string& what) {
  const int v = detail::read_positive_int(r, key);
  if (v > hi) {
    json::fail(r.field(key), v, "must be from 1 to " + std::to_string(hi) + " " + what);
  }
  return v;
}

// Exactly one of <stem>_GBps (gigabytes/s) or <stem>_Gbps (gigabits/s); returns bytes/s.
double read_bandwidth(json::ObjectReader& r, const std::string& stem) {
  const std::string bytes_key = stem + "_GBps";
  const std::string bits_key = stem + "_Gbps";
  const bool in_bytes = r.has(bytes_key);
  const bool in_bits = r.has(bits_key);
  if (in_bytes && in_bits) {
    json::fail(r.field(bits_key), r.get_raw(bits_key),
               "give the bandwidth once: either " + bytes_key + " (gigabytes/s) or " + bits_key +
                   " (gigabits/s), not both");
  }
  if (!in_bytes && !in_bits) {
    throw ConfigError(r.field(bytes_key) + ": required key is missing (or give " + bits_key +
                      " in gigabits/s)");
  }
  const std::string key = in_bytes ? bytes_key : bits_key;
  const double scale = in_bytes ? 1.0 : 8.0;  // the range in the key's own unit
  const double value = number_in(r, key, kMinBandwidthGBps * scale, kMaxBandwidthGBps * scale,
                                 in_bytes ? "must be from 1e-06 to 1e+06 GB/s (1 kB/s to 1 PB/s)"
                                          : "must be from 8e-06 to 8e+06 Gb/s (1 kB/s to 1 PB/s)");
  return in_bytes ? value * units::kGB : value * units::kGB / 8.0;
}

double read_latency(json::ObjectReader& r) {
  const double us =
      number_in(r, "latency_us", 0, kMaxLatencyUs, "must be from 0 to 1e+06 us (1 s)");
  return us * 1e-6;
}

double read_peak(json::ObjectReader& r, const std::string& key) {
  return number_in(r, key, kMinPeakTflops, kMaxPeakTflops,
                   "must be from 0.001 to 1e+05 TFLOP/s (1 GFLOP/s to 100 PFLOP/s)");
}

DeviceSpec parse_device(json::ObjectReader r) {
  r.finish({"name", "kind", "peak_tflops", "memory_bytes", "memory_bandwidth_GBps",
            "memory_bandwidth_Gbps", "sms"});
  DeviceSpec d;
  d.name = r.get_string("name");
  if (d.name.empty()) json::fail(r.field("name"), d.name, "must not be empty");
  d.kind = static_cast<DeviceKind>(detail::read_choice(r, "kind", kDeviceKinds, 0));
  json::ObjectReader peak = r.get_object("peak_tflops");
  peak.finish({"bf16", "fp16", "fp32", "fp8"});
  d.peak_bf16_flops = read_peak(peak, "bf16") * units::kTera;
  d.peak_fp16_flops = read_peak(peak, "fp16") * units::kTera;
  d.peak_fp32_flops = read_peak(peak, "fp32") * units::kTera;
  // Optional: only devices with FP8 tensor cores (Hopper and newer) have one.
  if (peak.has("fp8")) d.peak_fp8_flops = read_peak(peak, "fp8") * units::kTera;
  const long long memory = r.get_int("memory_bytes");
  if (memory < 1) json::fail(r.field("memory_bytes"), memory, "must be a positive integer");
  if (memory > kMaxMemoryBytes) {
    json::fail(r.field("memory_bytes"), memory, "must be at most 1125899906842624 (1 PiB)");
  }
  d.memory_bytes = static_cast<double>(memory);
  d.memory_bandwidth_Bps = read_bandwidth(r, "memory_bandwidth");
  // Optional: the streaming multiprocessors, which an overlapped GEMM shares with
  // communication kernels (strategy tp_comm_overlap).
  if (r.has("sms")) {
    const long long sms = r.get_int("sms");
    if (sms < 1 || sms > 4096) json::fail(r.field("sms"), sms, "must be an SM count from 1 to 4096");
    d.sms = static_cast<int>(sms);
  }
  return d;
}

IntraNodeSpec parse_intra(json::ObjectReader r) {
  r.finish({"fabric", "bandwidth_GBps", "bandwidth_Gbps", "latency_us"});
  IntraNodeSpec s;
  s.kind = static_cast<IntraFabric>(detail::read_choice(r, "fabric", kFabrics));
  s.bandwidth_Bps = read_bandwidth(r, "bandwidth");
  s.latency_s = read_latency(r);
  return s;
}

InterNodeSpec parse_inter(json::ObjectReader r) {
  r.finish({"topology", "oversubscription", "nics_per_node", "nic_bandwidth_GBps",
            "nic_bandwidth_Gbps", "latency_us"});
  InterNodeSpec s;
  s.topology = static_cast<InterTopology>(detail::read_choice(r, "topology", kTopologies));
  if (s.topology == InterTopology::kNone) {
    // No network: any network parameter would be silently unused, so refuse it.
    for (const char* key : {"oversubscription", "nics_per_node", "nic_bandwidth_GBps",
                            "nic_bandwidth_Gbps", "latency_us"}) {
      if (r.has(key)) {
        json::fail(r.field(key), r.get_raw(key),
                   "topology \"none\" has no inter-node network; remove this key");
      }
    }
    s.oversubscription = 1.0;
    return s;
  }
  s.oversubscription = r.has("oversubscription")
                           ? number_in(r, "oversubscription", 1.0, kMaxOversubscription,
                                       "must be from 1 to 1000 (1 = full bisection bandwidth)")
                           : r.get_number_or("oversubscription", 1.0);
  s.nics_per_node = int_in(r, "nics_per_node", kMaxNicsPerNode, "NICs");
  s.nic_bandwidth_Bps = read_bandwidth(r, "nic_bandwidth");
  s.latency_s = read_latency(r);
  return s;
}

// cluster.wan: {"bandwidth_Gbps" | "bandwidth_GBps", "latency_ms", "jitter_ms"}.
WanSpec parse_wan(json::ObjectReader r) {
  r.finish({"bandwidth_GBps", "bandwidth_Gbps", "latency_ms", "jitter_ms"});
  WanSpec w;
  for (const char* key : {"bandwidth_GBps", "bandwidth_Gbps"}) {
    if (r.has(key) && !(r.get_number(key) > 0)) {
      json::fail(r.field(key), r.get_raw(key), "a site's WAN uplink bandwidth must be > 0");
    }
  }
  w.bandwidth_Bps = read_bandwidth(r, "bandwidth");
  const double ms_max = kMaxLatencyUs * 1e-3 * 60;  // one minute
  w.latency_s = number_in(r, "latency_ms", 0, ms_max,
                          "the one-way WAN latency must be from 0 to 60000 ms") * 1e-3;
  if (r.has("jitter_ms")) {
    w.jitter_s = number_in(r, "jitter_ms", 0, ms_max, "must be from 0 to 60000 ms") * 1e-3;
    if (w.jitter_s > 2 * w.latency_s) {
      json::fail(r.field("jitter_ms"), r.get_raw("jitter_ms"),
                 "must be at most twice latency_ms (the spread is +/- jitter_ms / 2 around it)");
    }
  }
  return w;
}

Json wan_json(const WanSpec& w) {
  Json j = {{"bandwidth_GBps", w.bandwidth_Bps / units::kGB}, {"latency_ms", w.latency_s * 1e3}};
  if (w.jitter_s > 0) j["jitter_ms"] = w.jitter_s * 1e3;
  return j;
}

// Sites: every node group names one or none does; a site's groups are consecutive (ranks are
// numbered group by group, so a site's GPUs are a contiguous range); a wan with two or more
// sites and only then.
void check_sites(const ClusterSpec& c, json::ObjectReader& r, const std::string& groups_path) {
  std::vector<std::string> seen;
  for (std::size_t i = 0; i < c.node_groups.size(); ++i) {
    const NodeGroup& g = c.node_groups[i];
    const std::string at = groups_path + "[" + std::to_string(i) + "].site";
    if (g.site.empty() != c.node_groups.front().site.empty()) {
      json::fail(at, g.site,
                 "either every node group names its site or none does (" + groups_path +
                     "[0].site is \"" + c.node_groups.front().site + "\")");
    }
    if (!seen.empty() && seen.back() == g.site) continue;
    for (const std::string& s : seen) {
      if (s == g.site) {
        json::fail(at, g.site,
                   "a site's node groups must be consecutive (ranks are numbered group by "
                   "group); move this group next to the site's others");
      }
    }
    seen.push_back(g.site);
  }
  const std::size_t sites = seen.size();
  if (c.wan && sites < 2) {
    json::fail(r.field("wan"), r.get_raw("wan"),
               "a wide-area network joins sites, and this cluster has one; name each node "
               "group's \"site\" (two or more) or remove wan");
  }
  if (!c.wan && sites > 1) {
    throw ConfigError(r.field("wan") + ": required key is missing (the cluster has " +
                      std::to_string(sites) + " sites; give {\"bandwidth_Gbps\": ..., "
                      "\"latency_ms\": ...})");
  }
}

Json device_json(const DeviceSpec& d) {
  Json j = {{"name", d.name},
            {"kind", kDeviceKinds[static_cast<int>(d.kind)]},
            {"peak_tflops",
             {{"bf16", d.peak_bf16_flops / units::kTera},
              {"fp16", d.peak_fp16_flops / units::kTera},
              {"fp32", d.peak_fp32_flops / units::kTera}}},
            {"memory_bytes", static_cast<long long>(std::llround(d.memory_bytes))},
            {"memory_bandwidth_GBps", d.memory_bandwidth_Bps / units::kGB}};
  // Only when given, so that the specs (and hashes) of devices without FP8 stay as they were.
  if (d.peak_fp8_flops > 0) j["peak_tflops"]["fp8"] = d.peak_fp8_flops / units::kTera;
  if (d.sms > 0) j["sms"] = d.sms;  // likewise
  return j;
}

Json intra_json(const IntraNodeSpec& s) {
  return {{"fabric", kFabrics[static_cast<int>(s.kind)]},
          {"bandwidth_GBps", s.bandwidth_Bps / units::kGB},
          {"latency_us", s.latency_s * 1e6}};
}

Json inter_json(const InterNodeSpec& s) {
  Json j = {{"topology", kTopologies[static_cast<int>(s.topology)]}};
  if (s.topology == InterTopology::kNone) return j;
  j["oversubscription"] = s.oversubscription;
  j["nics_per_node"] = s.nics_per_node;
  j["nic_bandwidth_GBps"] = s.nic_bandwidth_Bps / units::kGB;
  j["latency_us"] = s.latency_s * 1e6;
  return j;
}

// Cross-field rules, checked after every part has been read.
void check_cluster(const ClusterSpec& c, json::ObjectReader& r, const std::string& groups_path) {
  const bool uniform = groups_path.empty();
  long long gpus = 0, nodes = 0;
  for (std::size_t i = 0; i < c.node_groups.size(); ++i) {
    const NodeGroup& g = c.node_groups[i];
    const std::string at = uniform ? r.path() : groups_path + "[" + std::to_string(i) + "]";
    nodes += g.nodes;
    gpus += static_cast<long long>(g.nodes) * g.gpus_per_node;
    if (gpus > INT_MAX) {
      json::fail(at + ".nodes", g.nodes, "the cluster would have more than INT_MAX devices");
    }
    // A CPU rank shares the host's memory system; a GPU talks over NVSwitch or PCIe.
    const bool cpu = g.gpu.kind == DeviceKind::kCpu;
    const bool shared = g.intra_node.kind == IntraFabric::kShared;
    if (cpu != shared) {
      const std::string fabric = kFabrics[static_cast<int>(g.intra_node.kind)];
      json::fail(uniform ? r.field("intra_node.fabric") : at + ".intra_node.fabric", fabric,
                 cpu ? "a CPU device (gpu.kind = \"cpu\") needs fabric \"shared\""
                     : "fabric \"shared\" is for CPU devices (gpu.kind = \"cpu\")");
    }
    if (c.cores_per_node > 0 && !cpu) {
      json::fail(
          r.field("cores_per_node"), c.cores_per_node,
          "is for CPU clusters; " + (uniform ? r.field("gpu") : at + ".gpu") + ".kind is \"gpu\"");
    }
  }
  const bool has_network = c.inter_node.topology != InterTopology::kNone;
  if (nodes > 1 && !has_network) {
    if (!r.has("inter_node")) {
      throw ConfigError(r.field("inter_node") + ": required key is missing (the cluster has " +
                        std::to_string(nodes) + " nodes)");
    }
    json::fail(
        r.field("inter_node.topology"), "none",
        "only valid for a single node; this cluster has " + std::to_string(nodes) + " nodes");
  }
  check_sites(c, r, uniform ? r.field("node_groups") : groups_path);
}

}  // namespace

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
    case Precision::kFp32:
      return "fp32";
  }
  return "?";
}

const char* intra_fabric_name(IntraFabric f) {
  return kFabrics[static_cast<int>(f)].c_str();
}

int precision_bytes(Precision p) { return p == Precision::kFp32 ? 4 : 2; }

double DeviceSpec::peak_flops(Precision p) const {
  switch (p) {
    case Precision::kBf16:
      return peak_bf16_flops;
    case Precision::kFp16:
      return peak_fp16_flops;
    case Precision::kFp32:
      return peak_fp32_flops;
  }
  return 0;
}

int ClusterSpec::total_nodes() const {
  int n = 0;
  for (const auto& g : node_groups) n += g.nodes;
  return n;
}

int ClusterSpec::total_gpus() const {
  int n = 0;
  for (const auto& g : node_groups) n += g.nodes * g.gpus_per_node;
  return n;
}

const NodeGroup& ClusterSpec::group_of_gpu(int gpu) const {
  STRATA_CHECK(gpu >= 0, "negative GPU index " + std::to_string(gpu));
  int first = 0;
  for (const auto& g : node_groups) {
    first += g.nodes * g.gpus_per_node;
    if (gpu < first) return g;
  }
  STRATA_CHECK(false, "GPU index " + std::to_string(gpu) + " is beyond the cluster's " +
                          std::to_string(first) + " GPUs");
  return node_groups.front();  // unreachable
}

std::vector<std::string> ClusterSpec::sites() const {
  std::vector<std::string> out;
  for (const auto& g : node_groups) {
    if (out.empty() || out.back() != g.site) out.push_back(g.site);
  }
  return out;
}

int ClusterSpec::site_gpus(const std::string& site) const {
  int n = 0;
  for (const auto& g : node_groups) {
    if (g.site == site) n += g.nodes * g.gpus_per_node;
  }
  return n;
}

ClusterSpec parse_cluster(const Json& j, const std::string& what) {
  json::ObjectReader r(j, what);
  r.finish({"name", "nodes", "gpus_per_node", "gpu", "intra_node", "inter_node", "cores_per_node",
            "comm_overlaps_compute", "node_groups", "wan"});
  ClusterSpec c;
  c.name = r.get_string("name");
  if (c.name.empty()) json::fail(r.field("name"), c.name, "must not be empty");

  std::string groups_path;
  if (r.has("node_groups")) {
    groups_path = r.field("node_groups");
    for (const char* key : {"nodes", "gpus_per_node", "gpu"}) {
      if (r.has(key)) {
        json::fail(r.field(key), r.get_raw(key),
                   "a cluster is either uniform (nodes, gpus_per_node, gpu) or heterogeneous "
                   "(node_groups), not both; move it into a node group");
      }
    }
    std::optional<IntraNodeSpec> default_intra;
    if (r.has("intra_node")) default_intra = parse_intra(r.get_object("intra_node"));
    const Json& groups = r.get_raw("node_groups");
    if (!groups.is_array() || groups.empty()) {
      json::fail(groups_path, groups, "must be a non-empty list of node groups");
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < groups.size(); ++i) {
      json::ObjectReader g(groups[i], groups_path + "[" + std::to_string(i) + "]");
      g.finish({"name", "site", "nodes", "gpus_per_node", "gpu", "intra_node"});
      NodeGroup group;
      group.name = g.get_string("name");
      if (group.name.empty()) json::fail(g.field("name"), group.name, "must not be empty");
      if (g.has("site")) {
        group.site = g.get_string("site");
        if (group.site.empty()) json::fail(g.field("site"), group.site, "must not be empty");
      }
      if (!names.insert(group.name).second) {
        json::fail(g.field("name"), group.name, "node group names must be unique");
      }
      group.nodes = int_in(g, "nodes", kMaxNodes, "nodes");
      group.gpus_per_node = int_in(g, "gpus_per_node", kMaxGpusPerNode, "devices per node");
      group.gpu = parse_device(g.get_object("gpu"));
      if (g.has("intra_node")) {
        group.intra_node = parse_intra(g.get_object("intra_node"));
      } else if (default_intra) {
        group.intra_node = *default_intra;
      } else {
        throw ConfigError(g.field("intra_node") +
                          ": required key is missing (no top-level intra_node to default to)");
      }
      c.node_groups.push_back(group);
    }
  } else {
    NodeGroup group;
    group.nodes = int_in(r, "nodes", kMaxNodes, "nodes");
    group.gpus_per_node = int_in(r, "gpus_per_node", kMaxGpusPerNode, "devices per node");
    group.gpu = parse_device(r.get_object("gpu"));
    group.name = group.gpu.name;
    group.intra_node = parse_intra(r.get_object("intra_node"));
    c.node_groups.push_back(group);
  }

  if (r.has("inter_node")) {
    c.inter_node = parse_inter(r.get_object("inter_node"));
  } else {
    r.accept("inter_node");
    c.inter_node.topology = InterTopology::kNone;
  }
  if (r.has("cores_per_node")) c.cores_per_node = int_in(r, "cores_per_node", kMaxCoresPerNode, "cores");
  c.comm_overlaps_compute = r.get_bool_or("comm_overlaps_compute", true);
  if (r.has("wan")) c.wan = parse_wan(r.get_object("wan"));
  c.source = detail::read_source(j);
  check_cluster(c, r, groups_path);
  return c;
}

ClusterSpec load_cluster(const std::string& path) {
  const Json j = json::parse_file(path);
  try {
    return parse_cluster(j, "cluster");
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

Json to_json(const ClusterSpec& c) {
  Json j = Json::object();
  j["name"] = c.name;
  if (c.heterogeneous()) {
    Json groups = Json::array();
    for (const auto& g : c.node_groups) {
      Json group = {{"name", g.name},
                    {"nodes", g.nodes},
                    {"gpus_per_node", g.gpus_per_node},
                    {"gpu", device_json(g.gpu)},
                    {"intra_node", intra_json(g.intra_node)}};
      // Only when set, so that clusters without sites keep their specs and hashes.
      if (!g.site.empty()) group["site"] = g.site;
      groups.push_back(group);
    }
    j["node_groups"] = groups;
  } else if (!c.node_groups.empty()) {
    const NodeGroup& g = c.node_groups.front();
    j["nodes"] = g.nodes;
    j["gpus_per_node"] = g.gpus_per_node;
    j["gpu"] = device_json(g.gpu);
    j["intra_node"] = intra_json(g.intra_node);
  }
  j["inter_node"] = inter_json(c.inter_node);
  if (c.cores_per_node > 0) j["cores_per_node"] = c.cores_per_node;
  j["comm_overlaps_compute"] = c.comm_overlaps_compute;
  if (c.wan) j["wan"] = wan_json(*c.wan);  // likewise
  if (!c.source.empty()) j["source"] = c.source;
  return j;
}

ClusterSpec with_nodes(const ClusterSpec& c, int nodes) {
  if (c.heterogeneous()) {
    json::fail("cluster.nodes", nodes,
               "cannot rescale heterogeneous cluster \"" + c.name +
                   "\"; edit the nodes of its node_groups instead");
  }
  if (nodes < 1) json::fail("cluster.nodes", nodes, "must be a positive integer");
  if (nodes > kMaxNodes) {
    json::fail("cluster.nodes", nodes, "must be at most " + std::to_string(kMaxNodes) + " nodes");
  }
  STRATA_CHECK(c.node_groups.size() == 1, "a parsed cluster has at least one node group");
  if (static_cast<long long>(nodes) * c.node_groups.front().gpus_per_node > INT_MAX) {
    json::fail("cluster.nodes", nodes, "the cluster would have more than INT_MAX devices");
  }
  if (nodes > 1 && c.inter_node.topology == InterTopology::kNone) {
    json::fail("cluster.nodes", nodes,
               "cluster \"" + c.name +
                   "\" has no inter-node network (inter_node.topology = "
                   "\"none\"), so it cannot have more than one node");
  }
  ClusterSpec out = c;
  if (nodes != c.node_groups.front().nodes) {
    out.name = c.name + " (rescaled to " + std::to_string(nodes) + " nodes)";
  }
  out.node_groups.front().nodes = nodes;
  return out;
}

}  // namespace strata::strategies
