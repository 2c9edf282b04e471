// A cost model for the simulator's tests: fixed compute times, links at line rate.
#pragma once

#include <string>
#include <vector>

#include "profiler/cost_model.hpp"
#include "profiler/link_model.hpp"

namespace strata::sim::testing {

// A cost model for tests: every compute task (of a layer, with layers_only) takes `seconds`;
// every other compute task takes none. Its links run at line rate, and its direct answer for a
// collective is the link model's formula at line rate.
class FixedCost final : public profiler::CostModel {
 public:
  // nccl_sms: the SMs each collective holds (LinkEfficiencies::nccl_sms; 0: none).
  explicit FixedCost(double seconds, bool layers_only = false, int nccl_sms = 0)
      : seconds_(seconds), layers_only_(layers_only), nccl_sms_(nccl_sms) {}
  double op_seconds(const strategies::Op&, const strategies::DeviceSpec&,
                    strategies::Precision) const override {
    return seconds_;
  }
  double compute_seconds(const strategies::Program&, const strategies::Task& t,
                         const strategies::DeviceSpec&, strategies::Precision) const override {
    if (!layers_only_) return seconds_;
    return t.layer >= 0 ? seconds_ : 0.0;
  }
  profiler::LinkEfficiencies link_efficiencies() const override {
    profiler::LinkEfficiencies l;
    l.nccl_sms = nccl_sms_;
    return l;
  }
  double collective_seconds(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                            double bytes, const strategies::ClusterSpec& cluster) const override {
    return profiler::collective_alpha_beta_seconds(kind, ranks, bytes, cluster, {});
  }
  std::string name() const override { return "fixed"; }

 private:
  double seconds_;
  bool layers_only_;
  int nccl_sms_;
};

// Collectives alone at line rate, to check them against their formulas with the spec's numbers.
inline const FixedCost kLineRate(0);

}  // namespace strata::sim::testing
