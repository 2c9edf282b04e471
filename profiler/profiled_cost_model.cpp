// ProfiledCostModel (profiled_cost_model.hpp, docs/profiles.md "Using them").
#include "profiler/profiled_cost_model.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "profiler/link_model.hpp"

namespace strata::profiler {

using strategies::CollectiveKind;
using strategies::ClusterSpec;
using strategies::OpKind;

namespace {

// The curve kind that measures a collective of the Plan, if any.
std::optional<LinkCollective> link_kind(CollectiveKind k) {
  switch (k) {
    case CollectiveKind::kAllReduce: return LinkCollective::kAllReduce;
    case CollectiveKind::kAllGather: return LinkCollective::kAllGather;
    case CollectiveKind::kReduceScatter: return LinkCollective::kReduceScatter;
    case CollectiveKind::kAllToAll: return LinkCollective::kAllToAll;
    case CollectiveKind::kBroadcast: return LinkCollective::kBroadcast;
    case CollectiveKind::kRingShift: return LinkCollective::kSendRecv;  // one send, one receive
    default: return std::nullopt;
  }
}

// Log-log interpolation at x between (x0, y0) and (x1, y1), 0 < x0 < x < x1.
double log_log(double x, double x0, double y0, double x1, double y1) {
  const double slope = std::log(y1 / y0) / std::log(x1 / x0);
  return y0 * std::exp(slope * std::log(x / x0));
}

// The line rate a fabric's bus bandwidth is measured against on `cluster` (0 when the cluster
// has no such fabric): a GPU port's per-direction bandwidth inside a node, a GPU's share of its
// node's NICs between nodes.
double line_rate(const ClusterSpec& cluster, const std::string& fabric) {
  if (fabric == "network") {
    if (cluster.total_nodes() < 2) return 0;
    const auto& g = cluster.node_groups.front();
    const double nics = std::min(1.0, static_cast<double>(cluster.inter_node.nics_per_node) /
                                          std::max(1, g.gpus_per_node));
    return cluster.inter_node.nic_bandwidth_Bps * nics;
  }
  for (const auto& g : cluster.node_groups) {
    if (strategies::intra_fabric_name(g.intra_node.kind) == fabric) return g.intra_node.bandwidth_Bps;
  }
  return 0;
}

void set_efficiency(LinkEfficiencies& l, const std::string& fabric, double e) {
  if (fabric == "nvswitch") {  // measured: for every device, whatever its class says
    l.nvswitch = e;
    for (LinkEfficiencies::ByDevice& d : l.by_device) d.nvswitch.reset();
  }
  if (fabric == "pcie") l.pcie = e;
  if (fabric == "shared") l.shared = e;
  if (fabric == "network") l.network = e;
}

std::string device_names(const ClusterSpec& c) {
  std::string out;
  for (const auto& g : c.node_groups) {
    const std::string n = "\"" + g.gpu.name + "\"";
    if (out.find(n) == std::string::npos) out += (out.empty() ? "" : ", ") + n;
  }
  return out;
}

}  // namespace

std::string group_fabric(const ClusterSpec& cluster, const std::vector<int>& ranks) {
  // (node group, node) of a global GPU index: groups in order, node by node.
  const auto node_of = [&](int gpu) {
    int first = 0, node = 0;
    for (std::size_t g = 0; g < cluster.node_groups.size(); ++g) {
      const auto& group = cluster.node_groups[g];
      const int size = group.nodes * group.gpus_per_node;
      if (gpu < first + size) return std::pair<int, int>{static_cast<int>(g), node + (gpu - first) / group.gpus_per_node};
      first += size;
      node += group.nodes;
    }
    STRATA_CHECK(false, "a rank beyond the cluster");
    return std::pair<int, int>{0, 0};
  };
  const auto first = node_of(ranks.front());
  for (int r : ranks) {
    if (node_of(r).second != first.second) return "network";
  }
  return strategies::intra_fabric_name(cluster.node_groups[first.first].intra_node.kind);
}

std::array<int, 5> ProfiledCostModel::family_of(const OpKey& k) {
  return {static_cast<int>(k.kind), static_cast<int>(k.dtype), k.flags, k.n_in, k.n_out};
}

ProfiledCostModel::ProfiledCostModel(RooflineCostModel fallback, const ClusterSpec& cluster,
                                     const std::vector<OpProfile>& ops,
                                     const std::vector<std::string>& op_files,
                                     const std::vector<LinkProfile>& links,
                                     const std::vector<std::string>& link_files)
    : fallback_(std::move(fallback)), links_(fallback_.link_efficiencies()) {
  STRATA_CHECK(ops.size() == op_files.size() && links.size() == link_files.size(),
               "a profile without its file name");
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const std::string& device = ops[i].on.device;
    const bool known = std::any_of(cluster.node_groups.begin(), cluster.node_groups.end(),
                                   [&](const auto& g) { return g.gpu.name == device; });
    if (!known) {
      throw ConfigError(op_files[i] + ": profile.measured_on.device = \"" + device +
                        "\": no device of cluster '" + cluster.name + "' has this name (its " +
                        "devices: " + device_names(cluster) +
                        "); profile on that device, or simulate a cluster whose gpu.name is it");
    }
    DeviceTable& table = devices_[device];
    for (const OpMeasurement& m : ops[i].ops) {
      table.exact[m.key] = m.median_s;
      table.families[family_of(m.key)].ops.push_back(m);
    }
  }
  // Link efficiencies per fabric: the highest bus bandwidth any measured point on it reached,
  // its curve's fitted latency taken off its time.
  std::map<std::string, double> best;
  for (std::size_t i = 0; i < links.size(); ++i) {
    for (std::size_t c = 0; c < links[i].curves.size(); ++c) {
      const LinkCurve& curve = links[i].curves[c];
      if (!(line_rate(cluster, curve.fabric) > 0)) {
        throw ConfigError(link_files[i] + ": links.curves[" + std::to_string(c) + "].fabric = \"" +
                          curve.fabric + "\": cluster '" + cluster.name +
                          "' has no such fabric (its intra_node fabrics" +
                          (cluster.total_nodes() > 1 ? " and \"network\")" : "; one node, no network)"));
      }
      curves_.push_back(curve);
      double& b = best[curve.fabric];
      for (const LinkPoint& p : curve.points) {
        const double streaming = p.time_s - curve.fit.latency_s;
        if (streaming > 0) {
          b = std::max(b, p.bytes * busbw_factor(curve.collective, curve.ranks) / streaming);
        }
      }
    }
  }
  for (const auto& [fabric, busbw] : best) {
    set_efficiency(links_, fabric, std::min(1.0, busbw / line_rate(cluster, fabric)));
  }
}

std::optional<double> ProfiledCostModel::measured(const strategies::Op& op,
                                                  const strategies::DeviceSpec& device) const {
  const auto d = devices_.find(device.name);
  if (d == devices_.end()) return std::nullopt;
  const OpKey key = op_key(op);
  const auto exact = d->second.exact.find(key);
  if (exact != d->second.exact.end()) return exact->second;
  const auto fam = d->second.families.find(family_of(key));
  if (fam == d->second.families.end()) return std::nullopt;
  // One dim differs: the nearest measured sizes below and above in it, the others equal.
  for (std::size_t i = 0; i < key.dims.size(); ++i) {
    const double x = static_cast<double>(key.dims[i]);
    if (!(x > 0)) continue;
    const OpMeasurement *lo = nullptr, *hi = nullptr;
    for (const OpMeasurement& m : fam->second.ops) {
      bool others = true;
      for (std::size_t j = 0; j < key.dims.size() && others; ++j) {
        others = j == i || m.key.dims[j] == key.dims[j];
      }
      if (!others || m.key.dims[i] <= 0) continue;
      if (m.key.dims[i] < key.dims[i] && (lo == nullptr || m.key.dims[i] > lo->key.dims[i])) lo = &m;
      if (m.key.dims[i] > key.dims[i] && (hi == nullptr || m.key.dims[i] < hi->key.dims[i])) hi = &m;
    }
    if (lo != nullptr && hi != nullptr) {
      return log_log(x, static_cast<double>(lo->key.dims[i]), lo->median_s,
                     static_cast<double>(hi->key.dims[i]), hi->median_s);
    }
  }
  return std::nullopt;
}

double ProfiledCostModel::op_seconds(const strategies::Op& op, const strategies::DeviceSpec& device,
                                     strategies::Precision precision) const {
  if (op.kind == OpKind::kLoadBatch) return 0;
  const std::optional<double> s = measured(op, device);
  if (!s) return fallback_.op_seconds(op, device, precision);
  return *s * overlap_slowdown(op, device);
}

bool ProfiledCostModel::measures(const strategies::Program& program, const strategies::Task& t,
                                 const strategies::DeviceSpec& device) const {
  bool any = false;
  for (std::uint32_t i = 0; i < t.op_count; ++i) {
    const strategies::Op& op = program.ops[t.op_begin + i];
    if (op.kind == OpKind::kLoadBatch) continue;
    if (!measured(op, device)) return false;
    any = true;
  }
  return any;
}

double ProfiledCostModel::compute_seconds(const strategies::Program& program,
                                          const strategies::Task& t,
                                          const strategies::DeviceSpec& device,
                                          strategies::Precision precision) const {
  if (!measures(program, t, device)) return fallback_.compute_seconds(program, t, device, precision);
  double seconds = 0;
  for (std::uint32_t i = 0; i < t.op_count; ++i) {
    seconds += op_seconds(program.ops[t.op_begin + i], device, precision);
  }
  return seconds;
}

const LinkCurve* ProfiledCostModel::curve(CollectiveKind kind, const std::vector<int>& ranks,
                                          const ClusterSpec& cluster) const {
  const std::optional<LinkCollective> k = link_kind(kind);
  if (!k || ranks.size() < 2) return nullptr;
  // A ring shift is every member's send to the next, at once: a send/receive curve of 2 ranks.
  const int n = *k == LinkCollective::kSendRecv ? 2 : static_cast<int>(ranks.size());
  const std::string fabric = group_fabric(cluster, ranks);
  for (const LinkCurve& c : curves_) {
    if (c.collective == *k && c.ranks == n && c.fabric == fabric) return &c;
  }
  return nullptr;
}

bool ProfiledCostModel::measures_collective(CollectiveKind kind, const std::vector<int>& ranks,
                                            const ClusterSpec& cluster) const {
  return curve(kind, ranks, cluster) != nullptr;
}

double ProfiledCostModel::collective_seconds(CollectiveKind kind, const std::vector<int>& ranks,
                                             double bytes, const ClusterSpec& cluster) const {
  const LinkCurve* c = curve(kind, ranks, cluster);
  if (c == nullptr) return fallback_.collective_seconds(kind, ranks, bytes, cluster);
  const auto& p = c->points;
  for (std::size_t i = 0; i + 1 < p.size(); ++i) {
    if (p[i].bytes <= bytes && bytes <= p[i + 1].bytes) {
      return bytes == p[i].bytes ? p[i].time_s
                                 : log_log(bytes, p[i].bytes, p[i].time_s, p[i + 1].bytes, p[i + 1].time_s);
    }
  }
  return c->fit.latency_s + bytes * busbw_factor(c->collective, c->ranks) / c->fit.busbw_Bps;
}

double ProfiledCostModel::collective_extra_latency_s(CollectiveKind kind,
                                                     const std::vector<int>& ranks, double bytes,
                                                     const ClusterSpec& cluster,
                                                     double modelled) const {
  if (curve(kind, ranks, cluster) == nullptr) return modelled;
  // The measured time at this size (interpolated between measured sizes) less what the
  // simulated links take for it alone: a lone collective then lasts what was measured, however
  // the curve bends (a shared-memory transport falls off once messages outgrow the caches), and
  // only the links' share of it is subject to contention.
  const double links = collective_alpha_beta_seconds(kind, ranks, bytes, cluster, links_);
  return std::max(0.0, collective_seconds(kind, ranks, bytes, cluster) - links);
}

}  // namespace strata::profiler
