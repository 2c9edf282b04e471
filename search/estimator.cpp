#include "search/estimator.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "strategies/accounting.hpp"
#include "strategies/plan.hpp"
#include "strategies/schedule.hpp"

namespace strata::search {

using strategies::CollectiveKind;
using strategies::Phase;
using strategies::Recompute;
using strategies::Schedule;
using strategies::StrategySpec;

int in_flight(Schedule schedule, int pp, int stage, int micro_batches, int virtual_stages) {
  switch (schedule) {
    case Schedule::kGPipe:
      return micro_batches * virtual_stages;
    case Schedule::kOneFOneB:
      return std::min(pp - stage, micro_batches);
    case Schedule::kInterleaved:
      return std::min((pp - stage - 1) * 2 + (virtual_stages - 1) * pp + 1,
                      micro_batches * virtual_stages);
    case Schedule::kZbH1:
      return std::min(pp, micro_batches);
    case Schedule::kZbH2:
      return std::min(2 * pp - 1, micro_batches);
    case Schedule::kZbV:  // chunks, as interleaving counts them
      return std::min(2 * pp, 2 * micro_batches);
  }
  return micro_batches;
}

Estimator::Estimator(const strategies::ModelSpec& model, const strategies::ClusterSpec& cluster,
                     int world_size, const profiler::CostModel& cost)
    : model_(model), cluster_(cluster), world_size_(world_size), cost_(cost) {
  STRATA_CHECK(world_size >= 1 && world_size <= cluster.total_gpus(),
               "Estimator: world size outside the cluster");
}

Estimator::Key Estimator::key_of(const StrategySpec& base, int tp, int samples,
                                 int recompute) const {
  return Key{tp,
             samples,
             recompute,
             base.sequence_parallel ? 1 : 0,
             static_cast<int>(base.attention),
             static_cast<int>(base.fp8),
             static_cast<int>(base.precision),
             static_cast<int>(base.grad_accumulation),
             base.main_grads_fp32 ? 1 : 0};
}

// Lowers the model with one layer and one micro-batch on tp ranks and reads rank 0's costs.
void Estimator::lower_mini(const Key& k, const StrategySpec& base) {
  strategies::ModelSpec m = strategies::padded_for_tp(model_, k.tp);
  m.num_hidden_layers = 1;
  StrategySpec s = base;
  s.name = "search-layer";
  s.tp = k.tp;
  s.dp = s.pp = s.cp = s.ep = 1;
  s.order = StrategySpec{}.order;
  s.micro_batch_size = s.global_batch_size = k.samples;
  s.schedule = Schedule::kOneFOneB;
  s.virtual_stages = 1;
  s.zero_stage = 0;
  s.zero_shard_group = 0;
  s.recompute = static_cast<Recompute>(k.recompute);
  s.layer_overrides.clear();
  s.stage_layers.clear();
  s.tp_comm_overlap = false;
  s.sequence_parallel = k.sp != 0 && k.tp > 1;
  const strategies::Plan plan = strategies::lower(m, cluster_, s, k.tp);
  ++lowerings_;
  const strategies::Program& p = plan.programs[0];
  const strategies::DeviceSpec& device = cluster_.group_of_gpu(0).gpu;
  std::vector<int> tp_ranks(k.tp);
  for (int r = 0; r < k.tp; ++r) tp_ranks[r] = r;

  LayerCost layer;
  EndsCost ends;
  double optimizer_s = 0;
  for (const strategies::Task& t : p.tasks) {
    double seconds = 0;
    if (t.kind == strategies::TaskKind::kCompute) {
      seconds = cost_.compute_seconds(p, t, device, s.precision);
    } else if (t.kind == strategies::TaskKind::kCollective &&
               t.purpose == strategies::Purpose::kTp) {
      seconds = cost_.collective_seconds(t.collective, tp_ranks, t.bytes, cluster_);
    } else {
      continue;  // data-parallel work is priced per candidate
    }
    const bool backward = t.phase == Phase::kBackward || t.phase == Phase::kRecompute;
    if (t.phase == Phase::kStep) {
      if (t.kind == strategies::TaskKind::kCompute) optimizer_s += seconds;
    } else if (t.layer >= 0) {
      (backward ? layer.backward_s : layer.forward_s) += seconds;
    } else if (t.block == strategies::Block::kEmbedding) {
      (backward ? ends.first_backward_s : ends.first_forward_s) += seconds;
    } else if (t.phase == Phase::kForward || backward) {
      (backward ? ends.last_backward_s : ends.last_forward_s) += seconds;
    }
  }
  double params = 0;
  for (const strategies::ParamInfo& pi : p.params) params += static_cast<double>(pi.elements);
  ends.optimizer_s_per_param = params > 0 ? optimizer_s / params : 0;

  double stored_total = 0;
  for (const strategies::Buffer& b : p.buffers) {
    // Activations, and the head's tensors (final-norm output, logits, statistics), which a
    // schedule that runs several forwards before their backwards holds per micro-batch.
    if (b.persistent || b.is_view() ||
        (b.role != strategies::Role::kActivation && b.role != strategies::Role::kLogits)) {
      continue;
    }
    stored_total += b.bytes();
    if (b.layer >= 0) {
      layer.stored_bytes += b.bytes();
    } else if (b.kind == strategies::TensorKind::kEmbeddingMask ||
               b.kind == strategies::TensorKind::kEmbeddingOut ||
               b.kind == strategies::TensorKind::kEmbeddingPartial) {
      ends.first_stored_bytes += b.bytes();
    } else {
      ends.last_stored_bytes += b.bytes();
    }
  }
  layer.transient_bytes = std::max(0.0, p.memory.peak_dynamic_bytes - stored_total);
  layers_.emplace(k, layer);
  ends_.emplace(k, ends);
}

const LayerCost& Estimator::layer_cost(const StrategySpec& base, int tp, int samples,
                                       Recompute recompute) {
  const Key k = key_of(base, tp, samples, static_cast<int>(recompute));
  auto it = layers_.find(k);
  if (it == layers_.end()) {
    lower_mini(k, base);
    it = layers_.find(k);
  }
  return it->second;
}

const EndsCost& Estimator::ends_cost(const StrategySpec& base, int tp, int samples) {
  // The ends do not recompute; their costs are read with the layer configuration of
  // recompute none.
  const Key k = key_of(base, tp, samples, static_cast<int>(Recompute::kNone));
  auto it = ends_.find(k);
  if (it == ends_.end()) {
    lower_mini(k, base);
    it = ends_.find(k);
  }
  return it->second;
}

double Estimator::collective_s(CollectiveKind kind, int first, int stride, int count,
                               double bytes) {
  if (count <= 1 || bytes <= 0) return 0;
  const auto key = std::make_tuple(static_cast<int>(kind), first, stride, count, bytes);
  auto it = collectives_.find(key);
  if (it != collectives_.end()) return it->second;
  std::vector<int> ranks(count);
  for (int i = 0; i < count; ++i) ranks[i] = first + i * stride;
  const double seconds = cost_.collective_seconds(kind, ranks, bytes, cluster_);
  collectives_.emplace(key, seconds);
  return seconds;
}

double Estimator::p2p_s(int from, int to, double bytes) {
  // A two-member all-gather of 2x bytes moves x bytes each way over the pair's link: the time
  // of one send of x on it, latency included.
  const int first = std::min(from, to);
  return collective_s(CollectiveKind::kAllGather, first, std::abs(to - from), 2, 2 * bytes);
}

double Estimator::layer_static_bytes(const StrategySpec& s, int layer_tp) const {
  const strategies::ModelSpec padded = strategies::padded_for_tp(model_, s.tp);
  const double p = strategies::layer_params_per_rank(padded, layer_tp);
  const int layer_dp = s.tp * s.dp / layer_tp;
  // ZeRO shards over the layer's data-parallel ranks (ZeRO-3 with hybrid sharding: its shard
  // group's share of them).
  const int shard = s.zero_stage == 3 ? s.zero_shard() * layer_dp / s.dp : layer_dp;
  return strategies::static_memory_bytes(p, shard, s.zero_stage, s.precision, s.main_grads_fp32)
      .total();
}

Estimate Estimator::estimate(const StrategySpec& s) {
  const int pp = s.pp, v = s.virtual_stages;
  const int m = s.num_micro_batches();
  const int layers = model_.num_hidden_layers;
  const strategies::ModelSpec padded = strategies::padded_for_tp(model_, s.tp);
  const std::vector<int> partition = strategies::stage_partition(model_, s);
  const int act_bytes = strategies::precision_bytes(s.precision);
  // Ranks of pipeline stage r: the grid's pp coordinate is outermost in the default order.
  const int stage_ranks = s.tp * s.dp * s.cp;

  // Per layer: its configuration and the stage (pipeline rank) that holds it.
  std::vector<int> stage_of(layers);
  {
    int l = 0;
    for (int vs = 0; vs < pp * v; ++vs) {
      const int stage = strategies::stage_of_virtual(s.schedule, pp, vs);
      for (int i = 0; i < partition[vs]; ++i) stage_of[l++] = stage;
    }
  }
  std::vector<double> fwd(pp, 0), bwd(pp, 0), stored(pp, 0), transient(pp, 0), params(pp, 0);
  std::vector<double> static_bytes(pp, 0), grad_bytes(pp, 0), zero3_unit_gather(pp, 0);
  std::vector<double> zero3_gathered(pp, 0);
  const double grad_elem = strategies::grad_bytes(s.precision, s.main_grads_fp32);
  int prev_tp = -1;
  for (int l = 0; l < layers; ++l) {
    const strategies::LayerStrategy ls = strategies::layer_strategy(s, l);
    const LayerCost& c = layer_cost(s, ls.tp, ls.micro_batch_size, ls.recompute);
    const int r = stage_of[l];
    double f = c.forward_s, b = c.backward_s;
    const double p = strategies::layer_params_per_rank(padded, ls.tp);
    const int shard =
        s.zero_stage > 0 ? (s.zero_stage == 3 ? s.zero_shard() * ls.dp / s.dp : ls.dp) : 1;
    if (s.zero_stage == 3 && ls.dp > 1) {
      // The forward and the backward (with its recompute) gather the layer's parameters, and
      // the backward reduce-scatters its gradients; with prefetch a gather hides behind the
      // compute of the module before -- except the first of each unit (a chunk's forward or
      // backward of one micro-batch), which prefetch cannot reach (docs/plan.md) -- without it
      // the compute waits.
      const double gather =
          collective_s(CollectiveKind::kAllGather, 0, ls.tp, shard, p * act_bytes);
      const double scatter =
          collective_s(CollectiveKind::kReduceScatter, 0, ls.tp, shard, p * grad_elem);
      if (s.collectives.overlap_param_gather && s.collectives.param_prefetch > 0) {
        f = std::max(f, gather);
        b = std::max(b, gather + scatter);
        zero3_unit_gather[r] = std::max(zero3_unit_gather[r], gather);
      } else {
        f += gather;
        b += gather + scatter;
      }
      zero3_gathered[r] =
          std::max(zero3_gathered[r], (s.collectives.param_prefetch + 1.0) * p * act_bytes);
    }
    if (prev_tp > 0 && ls.tp != prev_tp) {
      // The layer input resharded between tp layouts, forward and backward.
      const int ratio = std::max(ls.tp, prev_tp) / std::min(ls.tp, prev_tp);
      const double bytes = static_cast<double>(s.micro_batch_size) * s.dp / ls.dp *
                           model_.seq_length * model_.hidden_size * act_bytes;
      const double reshard = collective_s(CollectiveKind::kAllGather, 0, 1, ratio, bytes);
      f += reshard;
      b += reshard;
    }
    prev_tp = ls.tp;
    fwd[r] += f;
    bwd[r] += b;
    params[r] += p;
    stored[r] += c.stored_bytes / v;  // per in-flight chunk: one chunk's share of the layers
    transient[r] = std::max(transient[r], c.transient_bytes);
    static_bytes[r] += layer_static_bytes(s, ls.tp);
    grad_bytes[r] += p * grad_elem;
  }
  for (int r = 0; r < pp; ++r) {  // each micro-batch runs v forward and v backward units
    fwd[r] += v * zero3_unit_gather[r];
    bwd[r] += v * zero3_unit_gather[r];
  }
  // The ends, at the strategy's tp.
  // The head is on the last stage, or under ZB-V on the first (the V's turn back).
  const int head = strategies::stage_of_virtual(s.schedule, pp, pp * v - 1);
  const bool apart = head != 0;  // the embedding and the head on different ranks
  const EndsCost& e = ends_cost(s, s.tp, s.micro_batch_size);
  fwd[0] += e.first_forward_s;
  bwd[0] += e.first_backward_s;
  fwd[head] += e.last_forward_s;
  bwd[head] += e.last_backward_s;
  const double first_params = strategies::input_embedding_params_per_rank(padded, s.tp);
  const double last_params = strategies::output_params_per_rank(padded, s.tp, apart ? pp : 1);
  params[0] += first_params;
  if (apart || !padded.tie_word_embeddings) params[head] += last_params;
  const int zero_shard = s.zero_stage == 3 ? s.zero_shard() : s.dp;
  for (int r = 0; r < pp; ++r) {
    double ends_params = (r == 0 ? first_params : 0) +
                         (r == head && (apart || !padded.tie_word_embeddings) ? last_params : 0);
    static_bytes[r] += strategies::static_memory_bytes(ends_params, zero_shard, s.zero_stage,
                                                       s.precision, s.main_grads_fp32)
                           .total();
    grad_bytes[r] += ends_params * grad_elem;
  }

  Estimate out;
  out.capacity_bytes = cluster_.group_of_gpu(0).gpu.memory_bytes;
  // Pipeline transfers: one micro-batch's layer output (split over tp with sequence
  // parallelism or scatter/gather), between neighbouring stages.
  double p2p = 0;
  if (pp > 1) {
    double bytes = static_cast<double>(s.micro_batch_size) * model_.seq_length *
                   model_.hidden_size * act_bytes / s.cp;
    if (s.sequence_parallel || s.collectives.pp_scatter_gather) bytes /= s.tp;
    p2p = p2p_s(0, stage_ranks, bytes);
    if (s.collectives.blocking_p2p) {
      for (int r = 0; r < pp; ++r) {
        fwd[r] += 2 * p2p;
        bwd[r] += 2 * p2p;
      }
    }
  }
  double slowest = 0, sum = 0;
  int slowest_stage = 0;
  for (int r = 0; r < pp; ++r) {
    if (fwd[r] + bwd[r] > slowest) slowest_stage = r;
    slowest = std::max(slowest, fwd[r] + bwd[r]);
    sum += fwd[r] + bwd[r];
  }
  if (s.schedule == Schedule::kInterleaved) {
    out.pipeline_s = m * slowest + (pp - 1) * slowest / v + 2.0 * (pp * v - 1) * p2p;
  } else if (s.schedule == Schedule::kZbV) {
    // The schedule tests' unit-cost makespan, 6 m + pp - 1 chunk units of F, B or W: a bubble of
    // (pp - 1) sixths of a stage's micro-batch.
    out.pipeline_s = m * slowest + (pp - 1) * slowest / 6 + 2.0 * (pp - 1) * p2p;
  } else if (strategies::splits_backward(s.schedule)) {
    // Qi et al. 2024 (Table 1): ZB-H1's bubble is (pp - 1)(F + B - W), ZB-H2's
    // (pp - 1)(F + B - 2 W) when positive, with W, the weight gradients, about half a backward.
    const double f = fwd[slowest_stage], w = bwd[slowest_stage] / 2, b = bwd[slowest_stage] - w;
    const double bubble = s.schedule == Schedule::kZbH1 ? f + b - w : std::max(0.0, f + b - 2 * w);
    out.pipeline_s = m * slowest + (pp - 1) * bubble + 2.0 * (pp - 1) * p2p;
  } else {
    out.pipeline_s = sum + (m - 1) * slowest + 2.0 * (pp - 1) * p2p;
  }
  out.bubble_s = out.pipeline_s - m * slowest;

  // After each stage's last backward: the gradient reduction not hidden behind it, the
  // optimizer, ZeRO-1/2's parameter all-gather. Stage r's last backward ends about r backward
  // chunks before stage 0's.
  const double bucket = std::max(1.0, s.collectives.grad_bucket_bytes);
  double step = out.pipeline_s;
  for (int r = 0; r < pp; ++r) {
    double exposed = 0;
    if (s.dp > 1 && s.zero_stage < 3) {
      const CollectiveKind kind =
          s.zero_stage == 0 ? CollectiveKind::kAllReduce : CollectiveKind::kReduceScatter;
      const double buckets = std::max(1.0, std::ceil(grad_bytes[r] / bucket));
      const double one =
          collective_s(kind, r * stage_ranks, s.tp * s.cp, s.dp, grad_bytes[r] / buckets);
      const double all = buckets * one;
      const bool overlap = s.collectives.overlap_grad_reduce || s.zero_stage == 2;
      exposed = overlap ? std::max(one, all - bwd[r] / v * (buckets - 1) / buckets) : all;
      if (s.zero_stage >= 1) {
        exposed += buckets * collective_s(CollectiveKind::kAllGather, r * stage_ranks, s.tp * s.cp,
                                          s.dp, params[r] * act_bytes / buckets);
      }
    } else if (s.dp > 1 && s.zero_stage == 3 && s.zero_shard() < s.dp) {
      exposed =
          collective_s(CollectiveKind::kAllReduce, r * stage_ranks, s.tp * s.cp * s.zero_shard(),
                       s.dp / s.zero_shard(), grad_bytes[r] / s.zero_shard());
    }
    const int shard = s.zero_stage >= 1 ? (s.zero_stage == 3 ? s.zero_shard() : s.dp) : 1;
    const double optimizer = e.optimizer_s_per_param * params[r] / shard;
    const double drain = r * (bwd[r] / v + p2p);
    const double end = out.pipeline_s - drain + exposed + optimizer;
    if (end > step || r == 0) {
      step = std::max(step, end);
      out.dp_exposed_s = std::max(out.dp_exposed_s, exposed);
      out.optimizer_s = std::max(out.optimizer_s, optimizer);
    }
  }
  out.step_s = step;

  // Memory per stage.
  out.stage_peak_bytes.assign(pp, 0);
  for (int r = 0; r < pp; ++r) {
    const int k = in_flight(s.schedule, pp, r, m, v);
    double act = k * stored[r];
    if (r == 0) act += std::min(k, m) * e.first_stored_bytes;
    if (r == head) act += std::min(k, m) * e.last_stored_bytes;
    out.stage_peak_bytes[r] = static_bytes[r] + act + transient[r] + zero3_gathered[r];
    out.peak_bytes = std::max(out.peak_bytes, out.stage_peak_bytes[r]);
  }
  return out;
}

}  // namespace strata::search
