// Strategy specs: parsing (types, ranges, enums, rank order) and validation against a model and
// a world size (divisibility, batches, schedules, partitions, per-layer overrides), plus the
// per-layer and per-stage views. Every rule is listed in docs/specs.md.
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/units.hpp"
#include "strategies/federated.hpp"
#include "strategies/ps.hpp"
#include "strategies/rank_grid.hpp"
#include "strategies/schedule.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

namespace {

constexpr long long kMaxMicroBatches = 65536;

using json::Json;

const std::vector<std::string> kSchedules = {"gpipe", "1f1b", "interleaved-1f1b", "zb-h1",
                                             "zb-h2", "zb-v"};
const std::vector<std::string> kRecomputes = {"none", "selective", "full"};
const std::vector<std::string> kPrecisions = {"bf16", "fp16", "fp32"};
const std::vector<std::string> kGradAccumulations = {"fused", "hook", "autograd"};
const std::vector<std::string> kAttentions = {"unfused", "fused"};
const std::vector<std::string> kCpComms = {"p2p", "all_gather"};
const std::vector<std::string> kFp8Formats = {"none", "hybrid", "e4m3"};
const std::vector<std::string> kAmaxComputeAlgos = {"max", "most_recent"};
const std::vector<std::string> kExpertRoutings = {"uniform", "zipf", "explicit"};
constexpr std::array<Dim, kNumDims> kDefaultOrder = {Dim::kTp, Dim::kCp, Dim::kEp, Dim::kDp,
                                                     Dim::kPp};

std::string str(long long v) { return std::to_string(v); }

int degree(const StrategySpec& s, Dim d) {
  switch (d) {
    case Dim::kTp:
      return s.tp;
    case Dim::kCp:
      return s.cp;
    case Dim::kEp:
      return s.ep;
    case Dim::kDp:
      return s.dp;
    case Dim::kPp:
      return s.pp;
  }
  return 1;
}

// "tp-cp-ep-dp-pp": tokens once each; dims with degree > 1 must appear; the rest are appended
// in the default order.
void read_order(json::ObjectReader& r, StrategySpec& s) {
  if (!r.has("order")) {
    r.accept("order");
    return;
  }
  const std::string text = r.get_string("order");
  std::array<bool, kNumDims> seen{};
  std::vector<Dim> dims;
  std::size_t start = 0;
  while (true) {
    const std::size_t dash = text.find('-', start);
    const std::string token = text.substr(start, dash == std::string::npos ? dash : dash - start);
    int found = -1;
    for (int d = 0; d < kNumDims; ++d) {
      if (token == dim_name(static_cast<Dim>(d))) found = d;
    }
    if (found < 0) {
      json::fail(r.field("order"), text,
                 "unknown token \"" + token +
                     "\"; the order is tp, cp, ep, dp, pp (each at most once) joined by '-'");
    }
    if (seen[found]) {
      json::fail(r.field("order"), text,
                 "\"" + token + "\" appears twice; each dimension may appear at most once");
    }
    seen[found] = true;
    dims.push_back(static_cast<Dim>(found));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  for (Dim d : kDefaultOrder) {
    if (seen[static_cast<int>(d)]) continue;
    if (degree(s, d) > 1) {
      json::fail(r.field("order"), text,
                 std::string(dim_name(d)) + " = " + str(degree(s, d)) + " > 1, so " + dim_name(d) +
                     " must appear in the order");
    }
    dims.push_back(d);
  }
  for (int i = 0; i < kNumDims; ++i) s.order[i] = dims[i];
}

// A list element that must be an int (a whole number, like ObjectReader::get_int accepts).
int int_element(const Json& list, std::size_t i, const std::string& path, const Json& whole,
                const std::string& rule) {
  const Json& v = list[i];
  if (v.is_number()) {
    const double d = v.get<double>();
    if (std::floor(d) == d && d >= INT_MIN && d <= INT_MAX) {
      return v.is_number_integer() ? static_cast<int>(v.get<long long>()) : static_cast<int>(d);
    }
  }
  json::fail(path, whole, rule);
}

LayerOverride read_override(const Json& v, const std::string& path) {
  json::ObjectReader r(v, path);
  r.finish({"layers", "tp", "recompute", "fp8"});
  LayerOverride o;
  const Json& layers = r.get_raw("layers");
  const std::string rule = "must be [first, last], two integers (0-based, inclusive)";
  if (!layers.is_array() || layers.size() != 2) json::fail(r.field("layers"), layers, rule);
  o.first = int_element(layers, 0, r.field("layers"), layers, rule);
  o.last = int_element(layers, 1, r.field("layers"), layers, rule);
  if (r.has("tp")) o.tp = detail::read_positive_int(r, "tp");
  if (r.has("recompute")) o.recompute = detail::read_choice(r, "recompute", kRecomputes);
  if (r.has("fp8")) o.fp8 = detail::read_choice(r, "fp8", kFp8Formats);
  if (o.tp == 0 && o.recompute < 0 && o.fp8 < 0) {
    json::fail(path, v, "an override must set tp, recompute or fp8 (or several)");
  }
  return o;
}

// strategy.stages[k]: {"node_group": NAME, "layers": N or "auto", "tp": T}, each key optional.
StageSpec read_stage(const Json& v, const std::string& path) {
  if (!v.is_object()) {
    json::fail(path, v, "must be an object {\"node_group\", \"layers\", \"tp\"}");
  }
  json::ObjectReader r(v, path);
  r.finish({"node_group", "layers", "tp"});
  StageSpec st;
  st.node_group = r.get_string_or("node_group", "");
  if (r.has("node_group") && st.node_group.empty()) {
    json::fail(r.field("node_group"), "", "must name a node group of the cluster");
  }
  if (r.has("layers")) {
    const Json& layers = r.get_raw("layers");
    if (layers.is_string()) {
      if (layers.get<std::string>() != "auto") {
        json::fail(r.field("layers"), layers,
                   "must be a positive number of layers or \"auto\" (proposed from the node "
                   "groups' speeds)");
      }
      st.layers = 0;
    } else {
      st.layers = detail::read_positive_int(r, "layers");
    }
  }
  if (r.has("tp")) st.tp = detail::read_positive_int(r, "tp");
  return st;
}

// strategy.expert_routing: {"distribution": "uniform"}, {"distribution": "zipf", "exponent":
// a > 0} or {"distribution": "explicit", "fractions": [non-negative numbers, sum > 0]}. The
// fractions' count is checked against the model in validate().
ExpertRouting read_expert_routing(json::ObjectReader r) {
  r.finish({"distribution", "exponent", "fractions"});
  ExpertRouting out;
  out.kind =
      static_cast<ExpertRoutingKind>(detail::read_choice(r, "distribution", kExpertRoutings));
  const bool zipf = out.kind == ExpertRoutingKind::kZipf;
  const bool expl = out.kind == ExpertRoutingKind::kExplicit;
  const std::string name = kExpertRoutings[static_cast<int>(out.kind)];
  for (const auto& [key, wanted] : {std::pair<std::string, bool>{"exponent", zipf},
                                    std::pair<std::string, bool>{"fractions", expl}}) {
    if (!wanted && r.has(key)) {
      json::fail(r.field(key), r.get_raw(key),
                 "does not apply to distribution \"" + name + "\"; remove it");
    }
    if (wanted && !r.has(key)) {
      json::fail(r.field(key), nullptr, "is required by distribution \"" + name + "\"");
    }
    r.accept(key);
  }
  if (zipf) {
    out.zipf_exponent = r.get_number("exponent");
    if (!(out.zipf_exponent > 0 && out.zipf_exponent <= 100)) {
      json::fail(r.field("exponent"), out.zipf_exponent,
                 "must be > 0 and at most 100 (expert i gets a share proportional to "
                 "1/(i+1)^exponent; for equal shares use distribution \"uniform\")");
    }
  }
  if (expl) {
    const Json& list = r.get_raw("fractions");
    const std::string rule =
        "must be a non-empty list of non-negative numbers with a positive sum, one per expert";
    if (!list.is_array() || list.empty()) json::fail(r.field("fractions"), list, rule);
    double sum = 0;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const Json& v = list[i];
      if (!v.is_number() || !(v.get<double>() >= 0) || !std::isfinite(v.get<double>())) {
        json::fail(r.field("fractions") + "[" + str(static_cast<long long>(i)) + "]", v, rule);
      }
      out.fractions.push_back(v.get<double>());
      sum += out.fractions.back();
    }
    if (!(sum > 0) || !std::isfinite(sum)) json::fail(r.field("fractions"), list, rule);
  }
  return out;
}

CollectivePolicy read_collectives(json::ObjectReader r) {
  r.finish({"grad_bucket_MiB", "overlap_grad_reduce", "overlap_param_gather", "pp_scatter_gather",
            "blocking_p2p", "param_prefetch"});
  CollectivePolicy c;
  const double mib = r.get_number_or("grad_bucket_MiB", 25.0);
  // Up to 1 TiB: beyond it every model's gradients fit one bucket anyway, and the bytes stay
  // finite (1e308 MiB would not).
  if (!(mib > 0 && mib <= 1048576)) {
    json::fail(r.field("grad_bucket_MiB"), mib, "must be > 0 and at most 1048576 (1 TiB)");
  }
  c.grad_bucket_bytes = mib * units::kMiB;
  c.overlap_grad_reduce = r.get_bool_or("overlap_grad_reduce", true);
  c.overlap_param_gather = r.get_bool_or("overlap_param_gather", true);
  c.pp_scatter_gather = r.get_bool_or("pp_scatter_gather", false);
  c.blocking_p2p = r.get_bool_or("blocking_p2p", false);
  const long long prefetch = r.get_int_or("param_prefetch", 1);
  if (prefetch < 0 || prefetch > INT_MAX) {
    json::fail(r.field("param_prefetch"), prefetch,
               "must be an integer >= 0 (ZeRO-3: modules whose parameters are gathered ahead of "
               "the one computing; 0 = none, 1 = PyTorch FSDP's default)");
  }
  c.param_prefetch = static_cast<int>(prefetch);
  return c;
}

Json layers_json(const LayerOverride& o) { return Json::array({o.first, o.last}); }

// Rule 3: pipeline partition (shared by validate and stage_partition).
void check_partition(const ModelSpec& m, const StrategySpec& s) {
  const long long layers = m.num_hidden_layers;
  const long long stages = static_cast<long long>(s.pp) * s.virtual_stages;
  const std::string pv =
      "pp*virtual_stages = " + str(s.pp) + "*" + str(s.virtual_stages) + " = " + str(stages);
  const bool interleaved = s.virtual_stages > 1;
  const std::string field = interleaved ? "strategy.virtual_stages" : "strategy.pp";
  const int value = interleaved ? s.virtual_stages : s.pp;
  if (stages > layers) {
    json::fail(field, value,
               pv + " must not exceed num_hidden_layers (" + str(layers) +
                   "): every (virtual) stage needs at least one layer");
  }
  if (s.stage_layers.empty()) {
    if (layers % stages != 0) {
      json::fail(field, value,
                 "num_hidden_layers (" + str(layers) + ") must be divisible by " + pv +
                     "; use stage_layers for an uneven split");
    }
    return;
  }
  const Json listed = s.stage_layers;
  if (static_cast<long long>(s.stage_layers.size()) != stages) {
    json::fail("strategy.stage_layers", listed,
               "has " + str(static_cast<long long>(s.stage_layers.size())) +
                   " entries; needs one per (virtual) stage, " + pv);
  }
  long long sum = 0;
  for (std::size_t i = 0; i < s.stage_layers.size(); ++i) {
    if (s.stage_layers[i] < 1) {
      json::fail("strategy.stage_layers[" + str(static_cast<long long>(i)) + "]", s.stage_layers[i],
                 "every (virtual) stage needs at least one layer");
    }
    sum += s.stage_layers[i];
  }
  if (sum != layers) {
    json::fail("strategy.stage_layers", listed,
               "sums to " + str(sum) + "; must equal num_hidden_layers (" + str(layers) + ")");
  }
}

// A tensor-parallel degree `tp` (the strategy's, or an override's at `path`) must split every
// head, kv-head and FFN column evenly; the vocabulary only for the strategy's own tp.
void check_tp_divides(const ModelSpec& m, int tp, const std::string& path, bool check_vocab) {
  const std::string whose = check_vocab ? "tp" : "the override's tp";
  const struct {
    const char* name;
    int value;
  } fields[] = {{"num_attention_heads", m.num_attention_heads},
                {"num_key_value_heads", m.num_key_value_heads},
                {"intermediate_size", m.intermediate_size}};
  for (const auto& f : fields) {
    // A model whose every layer is MoE has no MLP of intermediate_size (Mixtral's experts are
    // that wide, and expert_tp splits them).
    const bool unused = &f == &fields[2] && m.num_moe_layers() == m.num_hidden_layers;
    if (!unused && f.value % tp != 0) {
      json::fail(path, tp,
                 std::string(f.name) + " (" + str(f.value) + ") must be divisible by " + whose);
    }
  }
  if (check_vocab && m.vocab_size % tp != 0) {
    const long long padded = (static_cast<long long>(m.vocab_size) / tp + 1) * tp;
    json::fail(path, tp,
               "vocab_size (" + str(m.vocab_size) +
                   ") must be divisible by tp; pad vocab_size to a multiple of tp (e.g. " +
                   str(padded) + ")");
  }
}

// Expert parallelism and the other expert fields (docs/specs.md "Expert parallelism"). The
// expert grid follows Megatron-Core's (parallel_state.initialize_model_parallel): the routed
// experts run on expert_tp x ep x expert-dp x pp ranks, so the world must be divisible by
// expert_tp * ep * pp. Strata takes the subset of those grids where ep divides dp x cp (drawn as
// Megatron-Core draws it: RankGrid, expert_grid_problem) and expert_tp divides tp, so each expert
// group lies inside the dense grid's data- and context-parallel ranks and tensor-parallel groups.
void check_experts(const ModelSpec& m, const StrategySpec& s) {
  if (!m.is_moe()) {
    const std::string rule =
        " needs a mixture-of-experts model (model.num_experts); the model "
        "has no experts";
    if (s.ep > 1) {
      const std::string problem = expert_grid_problem(s.cp, s.dp, s.ep, s.order);
      if (!problem.empty()) json::fail("strategy.ep", s.ep, problem);
      json::fail("strategy.ep", s.ep,
                 "the model has no experts; ep > 1 needs a mixture-of-experts model");
    }
    if (s.expert_tp > 0) json::fail("strategy.expert_tp", s.expert_tp, "expert_tp" + rule);
    if (s.expert_capacity_factor > 0) {
      json::fail("strategy.expert_capacity_factor", s.expert_capacity_factor,
                 "expert_capacity_factor" + rule);
    }
    if (s.expert_routing.kind != ExpertRoutingKind::kUniform) {
      json::fail("strategy.expert_routing", to_json(s)["expert_routing"], "expert_routing" + rule);
    }
    return;
  }
  const MoeSpec& e = m.moe;
  const std::string problem = expert_grid_problem(s.cp, s.dp, s.ep, s.order);
  if (!problem.empty()) json::fail("strategy.ep", s.ep, problem);
  if (e.num_experts % s.ep != 0) {
    json::fail("strategy.ep", s.ep,
               "must divide num_experts (" + str(e.num_experts) +
                   "): each expert-parallel rank holds num_experts/ep whole experts");
  }
  const int etp = s.expert_tp_size();
  if (s.tp % etp != 0) {
    json::fail("strategy.expert_tp", etp,
               "must divide tp (" + str(s.tp) +
                   "): the experts' tensor-parallel group lies inside the layers' tp group");
  }
  if (e.moe_intermediate_size % etp != 0) {
    json::fail("strategy.expert_tp", etp,
               "moe_intermediate_size (" + str(e.moe_intermediate_size) +
                   ") must be divisible by expert_tp");
  }
  if (e.n_shared_experts > 0 && e.shared_expert_intermediate_size % s.tp != 0) {
    json::fail("strategy.tp", s.tp,
               "shared_expert_intermediate_size (" + str(e.shared_expert_intermediate_size) +
                   ") must be divisible by tp (shared experts are split like the dense MLP)");
  }
  if (s.expert_routing.kind == ExpertRoutingKind::kExplicit &&
      static_cast<long long>(s.expert_routing.fractions.size()) != e.num_experts) {
    json::fail("strategy.expert_routing.fractions", to_json(s)["expert_routing"]["fractions"],
               "must have one fraction per routed expert: num_experts = " + str(e.num_experts) +
                   ", but it has " +
                   str(static_cast<long long>(s.expert_routing.fractions.size())));
  }
}

// Sequence parallelism keeps seq_length/(cp*tp) tokens per tensor-parallel rank.
void check_sequence_parallel(const ModelSpec& m, const StrategySpec& s, int tp,
                             const std::string& path) {
  if (!s.sequence_parallel || tp == 1) return;
  const long long split = static_cast<long long>(s.cp) * tp;
  if (m.seq_length % split != 0) {
    json::fail(path, tp,
               "with sequence_parallel = true, seq_length (" + str(m.seq_length) +
                   ") must be divisible by cp*tp = " + str(s.cp) + "*" + str(tp) + " = " +
                   str(split));
  }
}

void check_overrides(const ModelSpec& m, const StrategySpec& s) {
  const int layers = m.num_hidden_layers;
  const long long stage_devices = static_cast<long long>(s.tp) * s.dp;
  const long long samples = static_cast<long long>(s.micro_batch_size) * s.dp;
  for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
    const LayerOverride& o = s.layer_overrides[i];
    const std::string path = override_field(s, i);
    if (o.first > o.last) {
      json::fail(path + ".layers", layers_json(o),
                 "first (" + str(o.first) + ") must not exceed last (" + str(o.last) + ")");
    }
    if (o.first < 0 || o.last > layers - 1) {
      json::fail(path + ".layers", layers_json(o),
                 "layers must lie in [0, " + str(layers - 1) +
                     "] (num_hidden_layers = " + str(layers) + "; 0-based, inclusive)");
    }
    for (std::size_t k = 0; k < i; ++k) {
      const LayerOverride& p = s.layer_overrides[k];
      if (o.first <= p.last && p.first <= o.last) {
        json::fail(path + ".layers", layers_json(o),
                   "overlaps " + override_field(s, k) + ".layers = " + layers_json(p).dump());
      }
    }
    if (o.tp == 0) continue;
    if (stage_devices % o.tp != 0) {
      json::fail(path + ".tp", o.tp,
                 "must divide tp*dp = " + str(s.tp) + "*" + str(s.dp) + " = " + str(stage_devices) +
                     ", the devices of a pipeline stage");
    }
    check_tp_divides(m, o.tp, path + ".tp", false);
    const long long layer_dp = stage_devices / o.tp;
    if (samples % layer_dp != 0) {
      json::fail(path + ".tp", o.tp,
                 "gives these layers dp' = tp*dp/tp' = " + str(stage_devices) + "/" + str(o.tp) +
                     " = " + str(layer_dp) + ", but micro_batch_size*dp = " +
                     str(s.micro_batch_size) + "*" + str(s.dp) + " = " + str(samples) +
                     " samples do not split evenly over " + str(layer_dp) + " replicas");
    }
    check_sequence_parallel(m, s, o.tp, path + ".tp");
  }
}

// Hybrid sharding (PyTorch's HYBRID_SHARD): ZeRO-3 state sharded over groups of
// zero_shard_group consecutive data-parallel ranks, replicated across the groups.
void check_zero_shard_group(const StrategySpec& s) {
  if (s.zero_shard_group == 0) return;
  const int g = s.zero_shard_group;
  if (g > s.dp || s.dp % g != 0) {
    json::fail("strategy.zero_shard_group", g,
               "must divide dp (" + str(s.dp) +
                   "): the data-parallel ranks split into dp/zero_shard_group replicas of one "
                   "shard group each");
  }
  if (g == s.dp) return;  // full sharding, as without the key
  if (s.zero_stage != 3) {
    json::fail("strategy.zero_shard_group", g,
               "a shard group smaller than dp (" + str(s.dp) +
                   ") needs zero_stage 3 (zero_stage is " + str(s.zero_stage) +
                   "): hybrid sharding of the optimizer alone (ZeRO-1/2) is not lowered");
  }
  for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
    if (s.layer_overrides[i].tp != 0 && s.layer_overrides[i].tp != s.tp) {
      json::fail("strategy.zero_shard_group", g,
                 "a shard group smaller than dp (" + str(s.dp) +
                     ") with a per-layer tp change (" + override_field(s, i) +
                     ".tp) is not lowered: the changed layers' dp has no shard group");
    }
  }
}

}  // namespace

const char* dim_name(Dim d) {
  switch (d) {
    case Dim::kTp:
      return "tp";
    case Dim::kCp:
      return "cp";
    case Dim::kEp:
      return "ep";
    case Dim::kDp:
      return "dp";
    case Dim::kPp:
      return "pp";
  }
  return "?";
}

// Switches, not the tables above, so the names are usable during static initialisation.
const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::kGPipe:
      return "gpipe";
    case Schedule::kOneFOneB:
      return "1f1b";
    case Schedule::kInterleaved:
      return "interleaved-1f1b";
    case Schedule::kZbH1:
      return "zb-h1";
    case Schedule::kZbH2:
      return "zb-h2";
    case Schedule::kZbV:
      return "zb-v";
  }
  return "?";
}

const char* grad_accumulation_name(GradAccumulation g) {
  switch (g) {
    case GradAccumulation::kFused:
      return "fused";
    case GradAccumulation::kHook:
      return "hook";
    case GradAccumulation::kAutograd:
      return "autograd";
  }
  return "?";
}

const char* attention_name(AttentionImpl a) {
  switch (a) {
    case AttentionImpl::kUnfused:
      return "unfused";
    case AttentionImpl::kFused:
      return "fused";
  }
  return "?";
}

const char* cp_comm_name(CpComm c) {
  switch (c) {
    case CpComm::kP2p:
      return "p2p";
    case CpComm::kAllGather:
      return "all_gather";
  }
  return "?";
}

const char* fp8_format_name(Fp8Format f) {
  switch (f) {
    case Fp8Format::kNone:
      return "none";
    case Fp8Format::kHybrid:
      return "hybrid";
    case Fp8Format::kE4m3:
      return "e4m3";
  }
  return "?";
}

const char* amax_compute_algo_name(AmaxComputeAlgo a) {
  switch (a) {
    case AmaxComputeAlgo::kMax:
      return "max";
    case AmaxComputeAlgo::kMostRecent:
      return "most_recent";
  }
  return "?";
}

bool StrategySpec::uses_fp8() const {
  if (fp8 != Fp8Format::kNone) return true;
  for (const LayerOverride& o : layer_overrides) {
    if (o.fp8 > 0) return true;
  }
  return false;
}

const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::kNone:
      return "none";
    case Recompute::kSelective:
      return "selective";
    case Recompute::kFull:
      return "full";
  }
  return "?";
}

std::string order_string(const std::array<Dim, kNumDims>& order) {
  std::string out;
  for (Dim d : order) {
    if (!out.empty()) out += '-';
    out += dim_name(d);
  }
  return out;
}

std::string StrategySpec::order_string() const { return strategies::order_string(order); }

StrategySpec parse_strategy(const Json& j, const std::string& what) {
  json::ObjectReader r(j, what);
  r.finish({"name",
            "dp",
            "tp",
            "pp",
            "cp",
            "ep",
            "order",
            "micro_batch_size",
            "global_batch_size",
            "schedule",
            "virtual_stages",
            "zero_stage",
            "zero_shard_group",
            "recompute",
            "sequence_parallel",
            "precision",
            "main_grads_fp32",
            "grad_accumulation",
            "attention",
            "cp_comm",
            "tp_comm_overlap",
            "tp_comm_overlap_sms",
            "fp8",
            "fp8_amax_history_len",
            "fp8_amax_compute_algo",
            "layer_overrides",
            "stage_layers",
            "stages",
            "collectives",
            "expert_tp",
            "expert_capacity_factor",
            "expert_routing",
            "federated",
            "ps"});
  StrategySpec s;
  s.name = r.get_string("name");
  if (s.name.empty()) json::fail(r.field("name"), s.name, "must not be empty");
  s.dp = detail::read_positive_int(r, "dp", 1);
  s.tp = detail::read_positive_int(r, "tp", 1);
  s.pp = detail::read_positive_int(r, "pp", 1);
  s.cp = detail::read_positive_int(r, "cp", 1);
  s.ep = detail::read_positive_int(r, "ep", 1);
  const long long world = static_cast<long long>(s.dp) * s.tp * s.pp * s.cp;
  if (world > INT_MAX) {
    json::fail(r.field("dp"), s.dp, "dp*tp*pp*cp = " + str(world) + " is too large");
  }
  read_order(r, s);

  s.micro_batch_size = detail::read_positive_int(r, "micro_batch_size");
  s.global_batch_size = detail::read_positive_int(r, "global_batch_size");
  if (static_cast<long long>(s.micro_batch_size) * s.dp > INT_MAX) {
    json::fail(r.field("micro_batch_size"), s.micro_batch_size, "micro_batch_size*dp is too large");
  }
  s.schedule = static_cast<Schedule>(detail::read_choice(r, "schedule", kSchedules, 1));
  s.virtual_stages = detail::read_positive_int(r, "virtual_stages", 1);
  if (s.schedule == Schedule::kZbV && s.virtual_stages != 2) {
    json::fail(r.field("virtual_stages"), s.virtual_stages,
               "schedule \"zb-v\" places two model chunks on every pipeline rank: it needs "
               "virtual_stages = 2");
  }
  if (s.virtual_stages > 1 && s.schedule != Schedule::kInterleaved &&
      s.schedule != Schedule::kZbV) {
    json::fail(r.field("virtual_stages"), s.virtual_stages,
               "virtual_stages > 1 needs schedule \"interleaved-1f1b\" or \"zb-v\" "
               "(schedule is \"" +
                   kSchedules[static_cast<int>(s.schedule)] + "\")");
  }
  if (static_cast<long long>(s.pp) * s.virtual_stages > INT_MAX) {
    json::fail(r.field("virtual_stages"), s.virtual_stages, "pp*virtual_stages is too large");
  }
  const long long zero = r.get_int_or("zero_stage", 0);
  if (zero < 0 || zero > 3) {
    json::fail(r.field("zero_stage"), zero,
               "must be 0, 1, 2 or 3 (0 = none, 1 = optimizer states, 2 = + gradients, "
               "3 = + parameters)");
  }
  s.zero_stage = static_cast<int>(zero);
  if (r.has("zero_shard_group")) {
    s.zero_shard_group = detail::read_positive_int(r, "zero_shard_group");
  } else {
    r.accept("zero_shard_group");
  }
  s.recompute = static_cast<Recompute>(detail::read_choice(r, "recompute", kRecomputes, 0));
  s.sequence_parallel = r.get_bool_or("sequence_parallel", false);
  s.precision = static_cast<Precision>(detail::read_choice(r, "precision", kPrecisions, 0));
  s.main_grads_fp32 = r.get_bool_or("main_grads_fp32", false);
  s.grad_accumulation = static_cast<GradAccumulation>(
      detail::read_choice(r, "grad_accumulation", kGradAccumulations, 0));
  s.attention = static_cast<AttentionImpl>(detail::read_choice(r, "attention", kAttentions, 0));
  s.cp_comm = static_cast<CpComm>(detail::read_choice(r, "cp_comm", kCpComms, 0));
  s.tp_comm_overlap = r.get_bool_or("tp_comm_overlap", false);
  if (r.has("tp_comm_overlap_sms")) {
    const long long sms = r.get_int("tp_comm_overlap_sms");
    if (sms < 0 || sms > 1024) {
      json::fail(r.field("tp_comm_overlap_sms"), sms,
                 "must be an SM count from 0 to 1024 (0: the communication takes no SMs, as "
                 "copy-engine transfers)");
    }
    if (!s.tp_comm_overlap) {
      json::fail(r.field("tp_comm_overlap_sms"), sms,
                 "is set but tp_comm_overlap is false; set \"tp_comm_overlap\": true or remove it");
    }
    s.tp_comm_overlap_sms = static_cast<int>(sms);
  }
  s.fp8 = static_cast<Fp8Format>(detail::read_choice(r, "fp8", kFp8Formats, 0));
  const bool amax_given = r.has("fp8_amax_history_len") || r.has("fp8_amax_compute_algo");
  s.fp8_amax_history_len = detail::read_positive_int(r, "fp8_amax_history_len", 1024);
  s.fp8_amax_compute_algo = static_cast<AmaxComputeAlgo>(
      detail::read_choice(r, "fp8_amax_compute_algo", kAmaxComputeAlgos, 0));

  if (r.has("layer_overrides")) {
    const Json& list = r.get_raw("layer_overrides");
    if (!list.is_array()) json::fail(r.field("layer_overrides"), list, "must be a list");
    for (std::size_t i = 0; i < list.size(); ++i) {
      s.layer_overrides.push_back(
          read_override(list[i], r.field("layer_overrides") + "[" + str(i) + "]"));
    }
  } else {
    r.accept("layer_overrides");
  }
  // FP8 GEMMs run inside 16-bit training (Transformer Engine keeps activations, weights and
  // gradients in bf16 or fp16 and casts only the GEMM inputs).
  const std::string fp32_rule = "needs precision \"bf16\" or \"fp16\" (precision is \"" +
                                std::string(precision_name(s.precision)) +
                                "\"): FP8 GEMMs run inside 16-bit training, which keeps "
                                "activations, weights and gradients in 16 bits";
  if (s.precision == Precision::kFp32) {
    if (s.fp8 != Fp8Format::kNone) json::fail(r.field("fp8"), fp8_format_name(s.fp8), fp32_rule);
    for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
      if (s.layer_overrides[i].fp8 > 0) {
        json::fail(r.field("layer_overrides") + "[" + str(i) + "].fp8",
                   kFp8Formats[s.layer_overrides[i].fp8], fp32_rule);
      }
    }
  }
  if (amax_given && !s.uses_fp8()) {
    const std::string key =
        r.has("fp8_amax_history_len") ? "fp8_amax_history_len" : "fp8_amax_compute_algo";
    json::fail(r.field(key), r.get_raw(key),
               "is set but no layer runs FP8 (fp8 is \"none\"); set fp8 or remove it");
  }
  if (r.has("stage_layers")) {
    const Json& list = r.get_raw("stage_layers");
    const std::string rule = "must be a list of positive integers, one per (virtual) stage";
    if (!list.is_array() || list.empty()) json::fail(r.field("stage_layers"), list, rule);
    for (std::size_t i = 0; i < list.size(); ++i) {
      const int n = int_element(list, i, r.field("stage_layers"), list, rule);
      if (n < 1) {
        json::fail(r.field("stage_layers") + "[" + str(i) + "]", n,
                   "every (virtual) stage needs at least one layer");
      }
      s.stage_layers.push_back(n);
    }
  } else {
    r.accept("stage_layers");
  }
  if (r.has("stages")) {
    const Json& list = r.get_raw("stages");
    if (!list.is_array() || list.empty()) {
      json::fail(r.field("stages"), list,
                 "must be a non-empty list with one {node_group, layers, tp} per pipeline stage");
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
      s.stages.push_back(read_stage(list[i], r.field("stages") + "[" + str(i) + "]"));
    }
  } else {
    r.accept("stages");
  }
  if (r.has("collectives")) {
    s.collectives = read_collectives(r.get_object("collectives"));
  } else {
    r.accept("collectives");
  }
  // Mixture of experts: checked against the model in validate().
  if (r.has("expert_tp")) {
    s.expert_tp = detail::read_positive_int(r, "expert_tp");
  } else {
    r.accept("expert_tp");
  }
  if (r.has("expert_capacity_factor")) {  // null or absent: dropless
    s.expert_capacity_factor = r.get_number("expert_capacity_factor");
    if (!(s.expert_capacity_factor > 0) || !std::isfinite(s.expert_capacity_factor)) {
      json::fail(r.field("expert_capacity_factor"), s.expert_capacity_factor,
                 "must be a finite number > 0 (null or absent: dropless routing)");
    }
  } else {
    r.accept("expert_capacity_factor");
  }
  if (r.has("expert_routing")) {
    s.expert_routing = read_expert_routing(r.get_object("expert_routing"));
  } else {
    r.accept("expert_routing");
  }
  if (r.has("federated")) s.federated = parse_federated(r.get_object("federated"));
  if (r.has("ps")) s.ps = parse_ps(r.get_object("ps"));
  check_ps_strategy(s);
  s.source = detail::read_source(j);
  return s;
}

StrategySpec load_strategy(const std::string& path) {
  const Json j = json::parse_file(path);
  try {
    return parse_strategy(j, "strategy");
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

Json to_json(const StrategySpec& s) {
  Json j = Json::object();
  j["name"] = s.name;
  j["dp"] = s.dp;
  j["tp"] = s.tp;
  j["pp"] = s.pp;
  j["cp"] = s.cp;
  j["ep"] = s.ep;
  j["order"] = s.order_string();
  j["micro_batch_size"] = s.micro_batch_size;
  j["global_batch_size"] = s.global_batch_size;
  j["schedule"] = schedule_name(s.schedule);
  j["virtual_stages"] = s.virtual_stages;
  j["zero_stage"] = s.zero_stage;
  // Only when set, so that the hashes of existing specs stay as they were.
  if (s.zero_shard_group > 0) j["zero_shard_group"] = s.zero_shard_group;
  j["recompute"] = recompute_name(s.recompute);
  j["sequence_parallel"] = s.sequence_parallel;
  j["precision"] = precision_name(s.precision);
  j["main_grads_fp32"] = s.main_grads_fp32;
  // Only when not the default, so that the hashes of existing specs stay as they were.
  if (s.grad_accumulation != GradAccumulation::kFused) {
    j["grad_accumulation"] = grad_accumulation_name(s.grad_accumulation);
  }
  if (s.attention != AttentionImpl::kUnfused) j["attention"] = attention_name(s.attention);
  if (s.cp > 1) j["cp_comm"] = cp_comm_name(s.cp_comm);
  if (s.tp_comm_overlap) {
    j["tp_comm_overlap"] = true;
    j["tp_comm_overlap_sms"] = s.tp_comm_overlap_sms;
  }
  if (s.fp8 != Fp8Format::kNone) j["fp8"] = fp8_format_name(s.fp8);
  if (s.uses_fp8()) {
    j["fp8_amax_history_len"] = s.fp8_amax_history_len;
    j["fp8_amax_compute_algo"] = amax_compute_algo_name(s.fp8_amax_compute_algo);
  }
  if (!s.layer_overrides.empty()) {
    Json list = Json::array();
    for (const auto& o : s.layer_overrides) {
      if (o.stage >= 0) continue;  // derived from strategy.stages
      Json item = {{"layers", layers_json(o)}};
      if (o.tp > 0) item["tp"] = o.tp;
      if (o.recompute >= 0) item["recompute"] = recompute_name(static_cast<Recompute>(o.recompute));
      if (o.fp8 >= 0) item["fp8"] = fp8_format_name(static_cast<Fp8Format>(o.fp8));
      list.push_back(item);
    }
    if (!list.empty()) j["layer_overrides"] = list;
  }
  if (!s.stage_layers.empty() && s.stages.empty()) j["stage_layers"] = s.stage_layers;
  if (!s.stages.empty()) {
    Json list = Json::array();
    for (const StageSpec& st : s.stages) {
      Json item = Json::object();
      if (!st.node_group.empty()) item["node_group"] = st.node_group;
      item["layers"] = st.layers > 0 ? Json(st.layers) : Json("auto");
      if (st.tp > 0) item["tp"] = st.tp;
      list.push_back(item);
    }
    j["stages"] = list;
  }
  j["collectives"] = {{"grad_bucket_MiB", s.collectives.grad_bucket_bytes / units::kMiB},
                      {"overlap_grad_reduce", s.collectives.overlap_grad_reduce},
                      {"overlap_param_gather", s.collectives.overlap_param_gather},
                      {"pp_scatter_gather", s.collectives.pp_scatter_gather}};
  // Written only when set, so that the specs (and hashes) of strategies without it stay as
  // they were before the key existed.
  if (s.collectives.blocking_p2p) j["collectives"]["blocking_p2p"] = true;
  if (s.collectives.param_prefetch != 1) {
    j["collectives"]["param_prefetch"] = s.collectives.param_prefetch;
  }
  // Mixture of experts: only when set, so that dense strategies' specs and hashes stay as were.
  if (s.expert_tp > 0) j["expert_tp"] = s.expert_tp;
  if (s.expert_capacity_factor > 0) j["expert_capacity_factor"] = s.expert_capacity_factor;
  if (s.expert_routing.kind != ExpertRoutingKind::kUniform) {
    Json routing = {{"distribution", expert_routing_name(s.expert_routing.kind)}};
    if (s.expert_routing.kind == ExpertRoutingKind::kZipf) {
      routing["exponent"] = s.expert_routing.zipf_exponent;
    } else {
      routing["fractions"] = s.expert_routing.fractions;
    }
    j["expert_routing"] = routing;
  }
  // Likewise: only federated strategies carry the block.
  if (s.federated) j["federated"] = federated_to_json(*s.federated);
  if (s.ps) j["ps"] = ps_to_json(*s.ps);
  if (!s.source.empty()) j["source"] = s.source;
  return j;
}

void validate(const ModelSpec& m, const StrategySpec& given, int world_size) {
  const StrategySpec s = expand_stages(m, given);
  // 1. The grid fills the world (ep lives inside dp).
  if (static_cast<long long>(s.dp) * s.tp * s.pp * s.cp != world_size) {
    const long long world = static_cast<long long>(s.dp) * s.tp * s.pp * s.cp;
    std::string message = "strategy: dp*tp*pp*cp = " + str(s.dp) + "*" + str(s.tp) + "*" +
                          str(s.pp) + "*" + str(s.cp) + " = " + str(world) +
                          " must equal the world size (" + str(world_size) + ")";
    const long long others = static_cast<long long>(s.tp) * s.pp * s.cp;
    if (world_size > 0 && world_size % others == 0) {
      message += "; with tp*pp*cp = " + str(others) + " use dp = " + str(world_size / others);
    }
    throw ConfigError(message);
  }
  // 2. Tensor parallelism splits heads, kv-heads, FFN columns and the vocabulary evenly
  // (hidden_size % tp follows from the heads).
  check_tp_divides(m, s.tp, "strategy.tp", true);
  // 3. Pipeline partition.
  check_partition(m, s);
  // 4. Whole micro-batches on every data-parallel replica.
  const long long per_step = static_cast<long long>(s.micro_batch_size) * s.dp;
  if (s.global_batch_size % per_step != 0) {
    const long long up = (s.global_batch_size / per_step + 1) * per_step;
    json::fail("strategy.global_batch_size", s.global_batch_size,
               "must be divisible by micro_batch_size*dp = " + str(s.micro_batch_size) + "*" +
                   str(s.dp) + " = " + str(per_step) + " (e.g. " + str(up) + ")");
  }
  // 5. Schedules.
  const long long micro_batches = s.global_batch_size / per_step;
  const std::string m_text =
      "global_batch_size/(micro_batch_size*dp) = " + str(s.global_batch_size) + "/(" +
      str(s.micro_batch_size) + "*" + str(s.dp) + ") = " + str(micro_batches);
  // The Plan holds every micro-batch's tasks: 2^31 of them ended in std::bad_alloc. Real
  // training accumulates at most a few thousand (docs/specs.md).
  if (micro_batches > kMaxMicroBatches) {
    json::fail("strategy.global_batch_size", s.global_batch_size,
               m_text + " micro-batches per step; at most " + str(kMaxMicroBatches));
  }
  // 1F1B with fewer micro-batches than stages is valid (Megatron-LM runs it, as BLOOM's small
  // global batches on deep pipelines did): every stage's warm-up is then all of its
  // micro-batches, the dependency graph of GPipe.
  if (splits_backward(s.schedule) && s.tp_comm_overlap) {
    json::fail("strategy.tp_comm_overlap", true,
               std::string("is not lowered with schedule \"") + schedule_name(s.schedule) +
                   "\" yet: its rings overlap the weight-gradient GEMMs that the zero-bubble "
                   "schedules move to separate W units");
  }
  if (s.schedule == Schedule::kInterleaved) {
    if (s.pp < 2) {
      json::fail("strategy.schedule", "interleaved-1f1b", "needs pp >= 2 (pp = " + str(s.pp) + ")");
    }
    if (s.virtual_stages < 2) {
      json::fail("strategy.virtual_stages", s.virtual_stages,
                 "interleaved-1f1b needs virtual_stages >= 2 (use 1f1b for one model chunk "
                 "per pipeline rank)");
    }
    if (micro_batches % s.pp != 0) {
      json::fail("strategy.schedule", "interleaved-1f1b",
                 "needs the number of micro-batches to be a multiple of pp (" + str(s.pp) +
                     "), but " + m_text);
    }
  }
  // 6. Context parallelism: each cp rank takes two mirrored chunks of the causal sequence.
  if (s.cp > 1 && m.seq_length % (2LL * s.cp) != 0) {
    json::fail("strategy.cp", s.cp,
               "seq_length (" + str(m.seq_length) + ") must be divisible by 2*cp = " +
                   str(2LL * s.cp) + " (load-balanced causal split)");
  }
  if (s.cp > 1 && s.attention != AttentionImpl::kFused) {
    json::fail("strategy.cp", s.cp,
               "context parallelism runs the fused attention kernel on blocks of the sequence "
               "(as Megatron-Core's needs Transformer Engine's): set \"attention\": \"fused\"");
  }
  check_sequence_parallel(m, s, s.tp, "strategy.tp");
  // Tensor-parallel communication overlap splits sequence parallelism's all-gathers and
  // reduce-scatters (Megatron-Core refuses --tp-comm-overlap without --sequence-parallel).
  if (s.tp_comm_overlap && (!s.sequence_parallel || s.tp < 2)) {
    json::fail("strategy.tp_comm_overlap", true,
               "overlaps sequence parallelism's all-gathers and reduce-scatters with the GEMMs: "
               "it needs tp >= 2 (tp = " + str(s.tp) + ") and sequence_parallel = true (it is " +
                   (s.sequence_parallel ? "true" : "false") + ")");
  }
  // 7. Expert parallelism.
  check_experts(m, s);
  // 8. Per-layer overrides.
  check_overrides(m, s);
  // 9. ZeRO's shard group (hybrid sharding).
  check_zero_shard_group(s);
}

LayerStrategy layer_strategy(const StrategySpec& s, int layer) {
  LayerStrategy out;
  out.tp = s.tp;
  out.dp = s.dp;
  out.recompute = s.recompute;
  out.fp8 = s.fp8;
  for (const auto& o : s.layer_overrides) {
    if (layer < o.first || layer > o.last) continue;
    if (o.tp > 0) {
      STRATA_CHECK((s.tp * s.dp) % o.tp == 0, "layer_strategy() needs a validated strategy");
      out.tp = o.tp;
      out.dp = s.tp * s.dp / o.tp;
    }
    if (o.recompute >= 0) out.recompute = static_cast<Recompute>(o.recompute);
    if (o.fp8 >= 0) out.fp8 = static_cast<Fp8Format>(o.fp8);
    break;
  }
  out.micro_batch_size = s.micro_batch_size * s.dp / out.dp;
  return out;
}

namespace {

// tp_comm_overlap prices an overlapped GEMM from the share of the GPU's SMs it keeps.
void check_overlap_devices(const ClusterSpec& c, const StrategySpec& s, int world_size) {
  int first = 0;
  for (std::size_t g = 0; g < c.node_groups.size() && first < world_size; ++g) {
    const DeviceSpec& d = c.node_groups[g].gpu;
    first += c.node_groups[g].nodes * c.node_groups[g].gpus_per_node;
    if (d.kind != DeviceKind::kGpu) continue;
    const std::string where =
        c.heterogeneous() ? "cluster.node_groups[" + str(static_cast<long long>(g)) + "].gpu"
                          : std::string("cluster.gpu");
    if (d.sms <= 0) {
      json::fail("strategy.tp_comm_overlap", true,
                 "device \"" + d.name + "\" has no SM count (" + where +
                     ".sms is not given): an overlapped GEMM is priced from the share of the "
                     "streaming multiprocessors it keeps; give sms (e.g. 132 for an H100 SXM)");
    }
    if (s.tp_comm_overlap_sms >= d.sms) {
      json::fail("strategy.tp_comm_overlap_sms", s.tp_comm_overlap_sms,
                 "must be fewer than device \"" + d.name + "\"'s " + str(d.sms) + " SMs (" +
                     where + ".sms)");
    }
  }
}

}  // namespace

void validate_devices(const ClusterSpec& c, const StrategySpec& s, int world_size) {
  if (s.tp_comm_overlap) check_overlap_devices(c, s, world_size);
  if (!s.uses_fp8()) return;
  const std::string field = s.fp8 != Fp8Format::kNone ? "strategy.fp8" : "strategy.layer_overrides";
  const Json value =
      s.fp8 != Fp8Format::kNone ? Json(fp8_format_name(s.fp8)) : to_json(s)["layer_overrides"];
  int first = 0;
  for (std::size_t g = 0; g < c.node_groups.size() && first < world_size; ++g) {
    const NodeGroup& group = c.node_groups[g];
    if (!(group.gpu.peak_fp8_flops > 0)) {
      const std::string where =
          c.heterogeneous() ? "cluster.node_groups[" + str(static_cast<long long>(g)) + "].gpu"
                            : std::string("cluster.gpu");
      json::fail(field, value,
                 "device \"" + group.gpu.name + "\" has no FP8 peak (" + where +
                     ".peak_tflops.fp8 is not given): FP8 GEMMs need FP8 tensor cores "
                     "(Hopper or newer); set fp8 \"none\" or give its FP8 peak");
    }
    first += group.nodes * group.gpus_per_node;
  }
}

const char* expert_routing_name(ExpertRoutingKind k) {
  return kExpertRoutings[static_cast<int>(k)].c_str();
}

std::vector<double> expert_token_fractions(const StrategySpec& s, int num_experts) {
  STRATA_CHECK(num_experts >= 1, "expert_token_fractions needs num_experts >= 1");
  std::vector<double> out(num_experts, 1.0);
  const ExpertRouting& r = s.expert_routing;
  if (r.kind == ExpertRoutingKind::kZipf) {
    for (int i = 0; i < num_experts; ++i) out[i] = std::pow(i + 1.0, -r.zipf_exponent);
  } else if (r.kind == ExpertRoutingKind::kExplicit) {
    STRATA_CHECK(static_cast<int>(r.fractions.size()) == num_experts,
                 "expert_token_fractions needs a validated strategy");
    out = r.fractions;
  }
  double sum = 0;
  for (double v : out) sum += v;
  for (double& v : out) v /= sum;
  return out;
}

ExpertDispatch expert_dispatch(const ModelSpec& m, const StrategySpec& s, std::int64_t rows) {
  STRATA_CHECK(m.is_moe() && s.ep >= 1 && m.moe.num_experts % s.ep == 0,
               "expert_dispatch needs an MoE model and a validated strategy");
  const int E = m.moe.num_experts, local = E / s.ep;
  const double choices = static_cast<double>(rows) * m.moe.num_experts_per_tok;
  ExpertDispatch out;
  if (s.expert_capacity_factor > 0) {
    out.capacity = static_cast<std::int64_t>(std::ceil(s.expert_capacity_factor * choices / E));
  }
  const std::vector<double> f = expert_token_fractions(s, E);
  std::vector<double> to(s.ep, 0.0);  // expected rows from one source to each ep rank
  for (int e = 0; e < E; ++e) {
    const double kept = out.capacity > 0 ? std::min<double>(out.capacity, choices * f[e])
                                         : choices * f[e];
    to[e / local] += kept;
  }
  double sent = 0, most = 0;
  for (double v : to) {
    sent += v;
    most = std::max(most, v);
  }
  // Dropless: every choice is sent (exactly rows x k); otherwise the expected kept rows.
  out.send_rows = out.capacity > 0 ? static_cast<std::int64_t>(std::ceil(sent - 1e-9))
                                   : static_cast<std::int64_t>(choices);
  out.recv_rows = static_cast<std::int64_t>(std::ceil(most * s.ep - 1e-9));
  for (double v : to) out.shares.push_back(sent > 0 ? v / sent : 1.0 / s.ep);
  return out;
}

std::vector<int> stage_partition(const ModelSpec& m, const StrategySpec& s) {
  if (!s.stages.empty() && s.stage_layers.empty()) return stage_partition(m, expand_stages(m, s));
  check_partition(m, s);
  if (!s.stage_layers.empty()) return s.stage_layers;
  const int stages = s.pp * s.virtual_stages;
  return std::vector<int>(stages, m.num_hidden_layers / stages);
}

}  // namespace strata::strategies
