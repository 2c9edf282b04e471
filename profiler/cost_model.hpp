// CostModel: the one cost object the simulator receives (DESIGN.md "Profiler", "Simulator"), with
// two faces. Implementations: the roofline (roofline.hpp), from the cluster spec and
// profiler/efficiencies.json; and the measured look-up (profiled_cost_model.hpp) that
// interpolates profile.json and links.json and falls back to the roofline where nothing was
// measured.
//
// Compute face: op_seconds() prices one op of the Plan (OpKey: kind, sizes, dtype, the flags that
// change its work) on one device; compute_seconds() prices a compute task, and is what the
// simulator asks for every compute task it replays. By default a task costs the sum of its ops'
// op_seconds (a measured model: each op timed alone, the ops run back to back). The roofline
// overrides it: it prices a block task as a whole, max(FLOP term, memory term) over the task's
// summed FLOPs and bytes, plus its element-wise kernels, plus one launch overhead per task (two
// with element-wise kernels), with the small-GEMM fall-off counted once per GEMM of the task (one
// forward, two backward). That is not the sum of its ops' op_seconds, which would charge one
// launch per op, take the max() per op and count the fall-off per op: the task formula is the one
// the efficiency table's launch overhead ("a block task is 2-5 kernels") was chosen for, and the
// one every golden report was computed with (docs/cost-model.md "Two faces").
//
// Link face: link_efficiencies() is the fraction of each fabric's line rate that collectives
// reach; the simulator scales its SimGrid links by it and lets the flows of each collective's
// algorithm share them (contention is SimGrid's, not a formula's). collective_seconds() answers
// directly for one collective alone on uncontended links (estimators, search, reports).
//
// Every method is pure: the same arguments always give the same answer, and no state changes,
// so one model may serve every rank of a simulation.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "profiler/efficiency.hpp"
#include "strategies/plan.hpp"
#include "strategies/spec.hpp"

namespace strata::profiler {

// What one op's cost depends on, and so what a measured op table is keyed by (with the device
// and precision): the op kind, its sizes (Op::dims, documented per kind in
// strategies/program.hpp), the dtype it computes in, its flags (every flag a compute op carries
// changes its kernel: dropout, rotary embeddings, a residual gradient, a partitioned update,
// overwritten gradients, own rows) and its operand counts (an optional bias or position table).
// Not: buffer ids, the group, eps or the loss scale, which change no work.
struct OpKey {
  strategies::OpKind kind = strategies::OpKind::kLinear;
  strategies::DType dtype = strategies::DType::kFp32;
  std::uint8_t flags = 0;
  std::uint8_t n_in = 0, n_out = 0;
  std::array<std::int64_t, 6> dims{};

  auto operator<=>(const OpKey&) const = default;
};
OpKey op_key(const strategies::Op& op);
struct OpKeyHash {
  std::size_t operator()(const OpKey& k) const;
};

class CostModel {
 public:
  virtual ~CostModel() = default;

  // ---- compute face ---------------------------------------------------------------------------

  // Seconds that one op of a compute task takes on `device` when the strategy runs at
  // `precision`. kLoadBatch (the data loader's host work, not modelled) costs 0; communication
  // ops are the link face's (a programming error here).
  virtual double op_seconds(const strategies::Op& op, const strategies::DeviceSpec& device,
                            strategies::Precision precision) const = 0;

  // Seconds that compute task `t` (t.kind == kCompute) of `program` takes on `device` when the
  // strategy runs at `precision`. Default: the sum of op_seconds over the task's ops
  // (program.ops_of(t), t.op_count of them).
  virtual double compute_seconds(const strategies::Program& program, const strategies::Task& t,
                                 const strategies::DeviceSpec& device,
                                 strategies::Precision precision) const;

  // ---- link face ------------------------------------------------------------------------------

  // The fractions of each fabric's line rate that collectives and transfers reach: the
  // simulator builds its links at line rate x these.
  virtual LinkEfficiencies link_efficiencies() const = 0;

  // Seconds that collective `kind` of `bytes` (nccl-tests "size", strategies/program.hpp) over
  // `ranks` (ascending GPU indices of `cluster`, as ranks are placed: node groups, nodes, GPUs
  // in order) takes alone on uncontended links. 0 for a group of one.
  virtual double collective_seconds(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                                    double bytes, const strategies::ClusterSpec& cluster) const = 0;

  // The latency beyond the links' own that the simulator adds to one collective, given what the
  // link model says (`modelled`: NCCL's software latency where the table asks for it, else 0).
  // Default: `modelled`. A measured model answers from its measured curve.
  virtual double collective_extra_latency_s(strategies::CollectiveKind kind,
                                            const std::vector<int>& ranks, double bytes,
                                            const strategies::ClusterSpec& cluster,
                                            double modelled) const {
    (void)kind, (void)ranks, (void)bytes, (void)cluster;
    return modelled;
  }

  // Whether a measurement (rather than a model) prices compute task `t`, and collective `kind`
  // over `ranks`: what a report counts (docs/profiles.md "Using them"). Default: never.
  virtual bool measures(const strategies::Program& program, const strategies::Task& t,
                        const strategies::DeviceSpec& device) const {
    (void)program, (void)t, (void)device;
    return false;
  }
  virtual bool measures_collective(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                                   const strategies::ClusterSpec& cluster) const {
    (void)kind, (void)ranks, (void)cluster;
    return false;
  }

  // A short identifier for reports and traces ("roofline").
  virtual std::string name() const = 0;

  // The name of the table entry that prices `device` (the roofline's efficiency class, e.g.
  // "h100" for an H200 that its table lists under it), for reports; empty if the model has none.
  virtual std::string device_class(const strategies::DeviceSpec& device) const {
    (void)device;
    return {};
  }
};

}  // namespace strata::profiler
