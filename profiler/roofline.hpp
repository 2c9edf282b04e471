// RooflineCostModel: both faces of the CostModel from the cluster spec and the efficiencies table
// (docs/cost-model.md). The fallback of the CostModel where nothing was measured (DESIGN.md
// "Profiler").
//
// Compute face. A compute task's seconds from its FLOPs and bytes and the device's peaks, scaled
// by the efficiencies of its block's op class:
//
//   seconds = max(flops / (peak(precision) * flop_efficiency),
//                 bytes / (memory_bandwidth * memory_efficiency))
//             + elementwise_bytes / (memory_bandwidth * streaming efficiency) + launch overheads
//
// The element-wise kernels of a block are separate kernels after its main one, so their time
// adds; they stream at the "norm" op class's memory efficiency. flop_efficiency falls off for
// small GEMMs when the op class gives half_efficiency_flops (one GEMM per forward task, two per
// backward task). One op (op_seconds) is priced by the same formula from op_cost(op), as one
// kernel of one GEMM at most, with the op class and pass of its kind (op_kind_class,
// op_kind_phase) and one launch overhead. A task is not the sum of its ops: cost_model.hpp.
//
// Link face. link_efficiencies() is the table's "links" section; collective_seconds() is the
// alpha-beta time of the algorithm the simulator chooses (ring, hierarchical, tree) from the
// cluster spec and those efficiencies, plus NCCL's software latency (its tuning model's per-call
// and per-step latencies beyond the wire's; link_model.hpp).
//
// defines: RooflineTerms, op_kind_class(), op_class(), op_kind_phase(), RooflineCostModel
#pragma once

#include <string>
#include <vector>

#include "profiler/cost_model.hpp"
#include "profiler/efficiency.hpp"

namespace strata::profiler {

// The parts of one task's (or op's) roofline time, in seconds.
struct RooflineTerms {
  double compute_s = 0;      // FLOPs at the achieved FLOP/s
  double memory_s = 0;       // bytes at the achieved bandwidth
  double elementwise_s = 0;  // the block's element-wise kernels, at the streaming bandwidth
  double overhead_s = 0;     // launch overhead of the device class, per kernel
  double total_s() const {
    return (compute_s > memory_s ? compute_s : memory_s) + elementwise_s + overhead_s;
  }
  bool memory_bound() const { return memory_s > compute_s; }
};

// The op class whose efficiencies price an op kind (docs/cost-model.md "Ops and their classes"):
// linear forward, backward-data and backward-weight -> gemm; attention (+ backward) ->
// attention_core; LayerNorm and RMSNorm (+ backward) -> norm; embedding (+ backward) ->
// embedding; AdamW -> optimizer; softmax statistics and the cross-entropy backward -> gemm (their
// fp32 logits traffic streams at gemm's memory efficiency, as in the lm_head task); the
// element-wise kinds (GELU, SwiGLU, residual add, their backwards, gradient accumulation, FP8
// casts) -> norm, whose memory efficiency is the streaming rate. kLoadBatch and communication
// kinds have none (STRATA_CHECK).
OpClass op_kind_class(strategies::OpKind k);
// The op class of one op: fp8_gemm for a linear op (forward, data or weight gradient) of dtype
// fp8 (strategy fp8), timed at the device's FP8 peak; op_kind_class(op.kind) otherwise.
OpClass op_class(const strategies::Op& op);
// The pass whose efficiencies apply: kBackward for the backward kinds (*Bwd, linear backward-data
// and backward-weight), kForward for every other kind (recompute and the optimizer step use the
// forward efficiencies, as tasks do).
strategies::Phase op_kind_phase(strategies::OpKind k);

// Strategy tp_comm_overlap: the factor by which a linear op that runs beside communication
// (Op::param: the SMs the communication holds) takes longer, sms / (sms - param) of `device`;
// 1 for other ops and on a CPU. A GPU without `sms`, or with no SM left, is a ConfigError.
double overlap_slowdown(const strategies::Op& op, const strategies::DeviceSpec& device);

class RooflineCostModel final : public CostModel {
 public:
  explicit RooflineCostModel(Efficiencies efficiencies);

  // op_terms(op, device, precision).total_s(); 0 for kLoadBatch.
  double op_seconds(const strategies::Op& op, const strategies::DeviceSpec& device,
                    strategies::Precision precision) const override;
  // terms(t, device, precision).total_s(), from the task's FLOPs and bytes; a task holding a
  // fused attention kernel or FP8 work (FP8 GEMMs, casts) is priced op by op instead, the sum of
  // its ops' op_seconds (their own op classes and peaks).
  double compute_seconds(const strategies::Program& program, const strategies::Task& t,
                         const strategies::DeviceSpec& device,
                         strategies::Precision precision) const override;
  // The table's "links" section (line rate where it says nothing).
  LinkEfficiencies link_efficiencies() const override { return efficiencies_.links(); }
  // profiler::collective_seconds(kind, ranks, bytes, cluster, link_efficiencies()).
  double collective_seconds(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                            double bytes, const strategies::ClusterSpec& cluster) const override;
  std::string name() const override { return "roofline"; }
  std::string device_class(const strategies::DeviceSpec& device) const override {
    return efficiencies_.device_class(device).name;
  }

  // Each term separately (reports, tests, the worked examples in docs/cost-model.md). Throws
  // ConfigError when the task needs a peak the device spec lacks (0 FLOP/s or 0 bytes/s).
  // `gemms`: the GEMMs the task holds, each with its small-GEMM fall-off; 0 = by its phase (a
  // block's: one forward, two backward).
  RooflineTerms terms(const strategies::Task& t, const strategies::DeviceSpec& device,
                      strategies::Precision precision, double gemms = 0) const;
  // The terms of one op: op_cost(op) priced with op_kind_class and op_kind_phase, at most one
  // GEMM's fall-off, one launch overhead. Same errors as terms().
  RooflineTerms op_terms(const strategies::Op& op, const strategies::DeviceSpec& device,
                         strategies::Precision precision) const;

  const Efficiencies& efficiencies() const { return efficiencies_; }

 private:
  Efficiencies efficiencies_;
};

}  // namespace strata::profiler
