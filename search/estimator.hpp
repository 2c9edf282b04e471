// The search's fast estimator: a strategy's step time and per-stage peak memory in microseconds,
// without SimGrid and without lowering the strategy (docs/search.md "The estimator").
//
// What it prices comes from the Plan and the cost object, not from a second cost model: for each
// distinct layer configuration (tp, samples per micro-batch, sequence parallelism, recompute) it
// lowers a one-layer, one-micro-batch Plan of the model on tp ranks of the cluster once, and
// reads from rank 0's program
//  - the seconds of each layer's forward, backward and recompute tasks (CostModel::
//    compute_seconds) and of the tensor-parallel collectives between them, which block the
//    compute (CostModel::collective_seconds over the tp group's ranks);
//  - the same for the model's ends (embedding; final norm, LM head and loss) and the optimizer
//    step per parameter;
//  - the activation bytes one layer and the ends keep per micro-batch (buffers of role
//    activation), and the transient bytes of one micro-batch's backward beyond them (the
//    program's memory walk).
// A candidate then combines those per layer in closed form: the pipeline schedule's critical
// path (fill, steady state and drain, per-stage times, the send/receive between stages), the
// data-parallel reduction not hidden behind the last backward, ZeRO's gathers, the optimizer;
// memory is each stage's static bytes (parameters, gradients, optimizer states under ZeRO:
// accounting.hpp) plus its in-flight micro-batches' activations and one backward's transients.
// Collectives are priced alone on their links (no contention): the simulation that verifies the
// best candidates has it.
#pragma once

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "profiler/cost_model.hpp"
#include "strategies/spec.hpp"

namespace strata::search {

// One layer configuration's costs, per micro-batch, on one rank.
struct LayerCost {
  double forward_s = 0;        // compute plus the blocking tp collectives of the forward
  double backward_s = 0;       // backward plus recompute (and their tp collectives)
  double stored_bytes = 0;     // activations kept from the forward to the backward
  double transient_bytes = 0;  // one backward's working set beyond the stored activations
};

// The model's ends under one configuration (embedding on the first stage; final norm, LM head
// and loss on the last), per micro-batch, and the optimizer's seconds per parameter element.
struct EndsCost {
  double first_forward_s = 0, first_backward_s = 0, first_stored_bytes = 0;
  double last_forward_s = 0, last_backward_s = 0, last_stored_bytes = 0;
  double optimizer_s_per_param = 0;
};

// The estimate of one strategy.
struct Estimate {
  double step_s = 0;
  double pipeline_s = 0;    // forward and backward of every micro-batch, with the bubble
  double bubble_s = 0;      // of which the fill and drain of the pipeline
  double dp_exposed_s = 0;  // gradient reduction and gathers not hidden (the slowest stage's)
  double optimizer_s = 0;   // the slowest stage's optimizer step
  std::vector<double> stage_peak_bytes;  // per pipeline stage
  double peak_bytes = 0;                 // the largest of them
  double capacity_bytes = 0;             // device memory
  bool fits() const { return peak_bytes <= capacity_bytes; }
};

class Estimator {
 public:
  // The model, the cluster (its first `world_size` devices; a heterogeneous cluster is priced
  // at its first node group's device) and the cost object, which must outlive the estimator.
  Estimator(const strategies::ModelSpec& model, const strategies::ClusterSpec& cluster,
            int world_size, const profiler::CostModel& cost);

  // The estimate of a validated strategy for the world size (per-layer overrides included).
  Estimate estimate(const strategies::StrategySpec& s);

  // One layer configuration's costs (cached). `base` gives the fields a configuration does not
  // name (precision, attention, FP8, gradient accumulation).
  const LayerCost& layer_cost(const strategies::StrategySpec& base, int tp, int samples,
                              strategies::Recompute recompute);
  const EndsCost& ends_cost(const strategies::StrategySpec& base, int tp, int samples);

  // Seconds of a collective alone on its links (cached by kind, group pattern and bytes).
  double collective_s(strategies::CollectiveKind kind, int first, int stride, int count,
                      double bytes);
  // Seconds of one pipeline send of `bytes` from rank `from` to rank `to`.
  double p2p_s(int from, int to, double bytes);

  // Static bytes (parameters, gradients, optimizer states) of one layer on one rank of `s`
  // when the layer runs at tensor-parallel degree `layer_tp` (its dp is tp*dp/layer_tp).
  double layer_static_bytes(const strategies::StrategySpec& s, int layer_tp) const;

  // How many mini-Plans were lowered (for benchmarks and tests).
  int lowerings() const { return lowerings_; }

 private:
  struct Key {
    int tp, samples, recompute, sp, attention, fp8, precision, grad_accumulation, main_grads;
    auto operator<=>(const Key&) const = default;
  };
  Key key_of(const strategies::StrategySpec& base, int tp, int samples, int recompute) const;
  void lower_mini(const Key& k, const strategies::StrategySpec& base);

  strategies::ModelSpec model_;
  strategies::ClusterSpec cluster_;
  int world_size_;
  const profiler::CostModel& cost_;
  std::map<Key, LayerCost> layers_;
  std::map<Key, EndsCost> ends_;
  std::map<std::tuple<int, int, int, int, double>, double> collectives_;
  int lowerings_ = 0;
};

// Micro-batches (chunks, with interleaving) whose activations pipeline stage `stage` holds at
// its peak under the schedule: GPipe all m v; 1F1B min(pp - stage, m); interleaved
// min((pp - stage - 1) * 2 + (v - 1) * pp + 1, m v); ZB-H1 min(pp, m); ZB-H2
// min(2 pp - 1, m); ZB-V min(2 pp, 2 m) chunks (strategies::max_in_flight in closed form).
// Under the zero-bubble schedules a micro-batch between its B and its W keeps only what the
// weight gradients read, but the estimate counts its whole activations: it overstates the
// Plan's peak (by 11 to 39% on the later stages of GPT-3 6.7B at pp 4, measured), so a search
// with them is conservative.
int in_flight(strategies::Schedule schedule, int pp, int stage, int micro_batches,
              int virtual_stages);

}  // namespace strata::search
