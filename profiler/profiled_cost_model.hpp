// ProfiledCostModel: the CostModel from measured files (docs/profiles.md "Using them"), with the
// roofline behind it wherever nothing was measured.
//
// Compute face. An op is looked up in the profile.json of its device (measured_on.device equal
// to the DeviceSpec's name) by its OpKey: an exact key gives its median; a key that differs from
// measured ones in one of its dims only is interpolated log-log between the two nearest measured
// sizes in that dim (never extrapolated). A compute task costs the sum of its ops' measured
// seconds when every op is priced so (the ops ran back to back when they were timed), else the
// roofline's price of the whole task. tp_comm_overlap's GEMMs beside communication are stretched
// by the SM share, as the roofline stretches them (roofline.hpp overlap_slowdown()).
//
// Link face. The fraction of each fabric's line rate (link_efficiencies) is the highest bus
// bandwidth measured on the fabric (any point of any of its curves, its curve's fitted latency
// taken off: what its links carried at least) over the cluster's line rate for it, at most 1;
// the other fabrics keep the roofline table's. For a curve of one latency and bandwidth that is
// the fitted bandwidth; for one that bends, the best size's, so what a collective took beyond
// the links is its software's: latency, copies, a transport that slows with the size. A
// collective with a curve of its kind, group size and fabric takes, alone, the curve's time at
// its size (collective_seconds: interpolated log-log between measured sizes, the fit outside
// them); in the simulator the links carry their alpha-beta share of it and the rest is latency
// beyond the links' own (collective_extra_latency_s: the curve's time less the links' time at
// that size, never negative), so a curve that bends away from one latency and bandwidth (a
// shared-memory transport once messages outgrow the caches) is followed size by size.
//
// Every method is pure, like the roofline's.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "profiler/profile.hpp"
#include "profiler/roofline.hpp"

namespace strata::profiler {

class ProfiledCostModel final : public CostModel {
 public:
  // `op_files` and `link_files` name the profiles in errors. A profile measured on a device no
  // node group of `cluster` has, or a curve on a fabric the cluster lacks, is a ConfigError
  // naming file, field and value.
  ProfiledCostModel(RooflineCostModel fallback, const strategies::ClusterSpec& cluster,
                    const std::vector<OpProfile>& ops, const std::vector<std::string>& op_files,
                    const std::vector<LinkProfile>& links,
                    const std::vector<std::string>& link_files);

  double op_seconds(const strategies::Op& op, const strategies::DeviceSpec& device,
                    strategies::Precision precision) const override;
  double compute_seconds(const strategies::Program& program, const strategies::Task& t,
                         const strategies::DeviceSpec& device,
                         strategies::Precision precision) const override;
  LinkEfficiencies link_efficiencies() const override { return links_; }
  double collective_seconds(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                            double bytes, const strategies::ClusterSpec& cluster) const override;
  double collective_extra_latency_s(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                                    double bytes, const strategies::ClusterSpec& cluster,
                                    double modelled) const override;
  bool measures(const strategies::Program& program, const strategies::Task& t,
                const strategies::DeviceSpec& device) const override;
  bool measures_collective(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                           const strategies::ClusterSpec& cluster) const override;
  std::string name() const override { return "profiled"; }
  std::string device_class(const strategies::DeviceSpec& device) const override {
    return fallback_.device_class(device);
  }

  // The measured seconds of `op` on `device` (exact or interpolated), if any.
  std::optional<double> measured(const strategies::Op& op,
                                 const strategies::DeviceSpec& device) const;
  // The curve for `kind` over `ranks` of `cluster`, if one was measured.
  const LinkCurve* curve(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                         const strategies::ClusterSpec& cluster) const;

 private:
  struct Family {  // measured ops of one kind, dtype, flags and operand counts
    std::vector<OpMeasurement> ops;
  };
  struct DeviceTable {
    std::unordered_map<OpKey, double, OpKeyHash> exact;  // median seconds
    std::map<std::array<int, 5>, Family> families;
  };
  static std::array<int, 5> family_of(const OpKey& k);

  RooflineCostModel fallback_;
  std::map<std::string, DeviceTable> devices_;  // by DeviceSpec name
  std::vector<LinkCurve> curves_;
  LinkEfficiencies links_;
};

// The fabric a group of ranks spans on `cluster`: its node group's intra_node fabric name when
// all ranks share a node, else "network" (links.json's `fabric`).
std::string group_fabric(const strategies::ClusterSpec& cluster, const std::vector<int>& ranks);

}  // namespace strata::profiler
