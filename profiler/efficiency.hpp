// Efficiencies: what fraction of a device's peak FLOP/s and memory bandwidth each kind of compute
// block reaches, per device class. Loaded from one documented data file (bundled:
// profiler/efficiencies.json; format and sources in docs/cost-model.md). The roofline cost model
// (roofline.hpp) turns a task's FLOPs and bytes into seconds with them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/plan.hpp"
#include "strategies/spec.hpp"

namespace strata::profiler {

// Kinds of compute block that behave alike on hardware. Each Plan block maps to one (the file's
// "blocks" table): large GEMMs (attn_qkv, attn_out, mlp_fc1, mlp_fc2, lm_head), the non-fused
// attention core (batched GEMMs, softmax, dropout), and three memory-bound kinds. Two classes no
// block maps to come from the op itself: the fused attention kernel (strategy attention "fused")
// and FP8 GEMMs (strategy fp8: a linear op of dtype fp8, timed at the device's FP8 peak).
enum class OpClass : std::uint8_t {
  kGemm, kAttentionCore, kNorm, kEmbedding, kOptimizer, kFusedAttention, kFp8Gemm
};
inline constexpr int kNumOpClasses = 7;
// Plan blocks, Block::kNone included (indexes of per-block tables).
inline constexpr int kNumBlocks = static_cast<int>(strategies::Block::kMoeCombine) + 1;
// "gemm", "attention_core", "norm", "embedding", "optimizer", "fused_attention", "fp8_gemm": the
// file's keys. fused_attention is the op class of the fused attention kernel (strategy attention
// "fused"), whose FLOPs are counted as its benchmarks count them (strategies::OpCost); fp8_gemm
// that of FP8 GEMMs, optional: a device class without it has no FP8 tensor cores.
const char* op_class_name(OpClass c);

// One op class on one device class. Efficiencies are fractions in (0, 1] of the peak FLOP/s of
// the precision the device computes in, and of its memory bandwidth.
struct OpEfficiency {
  double flop_forward = 1;   // forward and recompute passes (and the optimizer step)
  double flop_backward = 1;  // backward pass (data and weight gradients)
  double memory_forward = 1;
  double memory_backward = 1;
  // Small-GEMM fall-off: the FLOPs at which one GEMM reaches half of its large-GEMM efficiency
  // (efficiency * f / (f + half_efficiency_flops) for a GEMM of f FLOPs). 0 = constant.
  double half_efficiency_flops = 0;
  std::string source;

  double flop(strategies::Phase p) const {
    return p == strategies::Phase::kBackward ? flop_backward : flop_forward;
  }
  double memory(strategies::Phase p) const {
    return p == strategies::Phase::kBackward ? memory_backward : memory_forward;
  }
};

// A family of devices with the same efficiencies ("a100", "h100", a fallback "gpu", "cpu").
struct DeviceClass {
  std::string name;
  strategies::DeviceKind kind = strategies::DeviceKind::kGpu;
  // Case-insensitive substrings of DeviceSpec::name that select this class; empty: the fallback
  // for devices of `kind` that no other class matches.
  std::vector<std::string> match;
  double launch_overhead_s = 0;  // fixed cost added to every compute task
  // When set, the device computes in this precision whatever the strategy's (the CPU executor
  // runs fp32 kernels): its peak is the one used.
  std::optional<strategies::Precision> compute_precision;
  std::array<OpEfficiency, kNumOpClasses> ops;
  std::array<bool, kNumOpClasses> has_op{};  // false only for an absent optional class (fp8_gemm)
  // "links": {"nvswitch": {"bandwidth_efficiency", "source"}}: this generation's NVSwitch
  // fraction, in place of the table's links.nvswitch (LinkEfficiencies::by_device).
  std::optional<double> nvswitch_efficiency;
  std::string source;

  const OpEfficiency& op(OpClass c) const { return ops[static_cast<int>(c)]; }
  bool has(OpClass c) const { return has_op[static_cast<int>(c)]; }
};

// Fractions of a link's line rate that NCCL-style collectives and transfers reach (protocol
// overhead), per fabric: the simulator scales link bandwidths by them. 1 = line rate.
struct LinkEfficiencies {
  double nvswitch = 1;  // intra_node fabric "nvswitch"
  double pcie = 1;      // intra_node fabric "pcie"
  double shared = 1;    // intra_node fabric "shared" (CPU ranks over shared memory)
  double network = 1;   // inter-node NICs and switches
  // Collectives on GPUs pay NCCL's software latency (its tuning model's per-call and per-step
  // latencies beyond the links'; profiler/link_model.hpp): the table's "software_latency"
  // {"model": "nccl"}. Off (the links' latencies only) where the table says nothing.
  bool nccl_latency = false;
  // The SMs a running NCCL collective holds on each member GPU (its CTAs, one per channel, do
  // not share an SM with compute kernels): the table's "nccl_sms" {"sms": n}. While k of a
  // rank's collectives run, its compute gets (sms - k n) / sms of the GPU (the simulator; a
  // GPU spec without `sms` is not slowed). 0, where the table says nothing: collectives hold
  // no SMs.
  int nccl_sms = 0;
  // A GPU generation's own NVSwitch fraction in place of `nvswitch` (a device class's "links"):
  // the table's device classes in file order, each with its match and, where it states one,
  // its fraction; a device takes the class device_class() gives it. Empty: `nvswitch` for all.
  struct ByDevice {
    strategies::DeviceKind kind = strategies::DeviceKind::kGpu;
    std::vector<std::string> match;  // lower case; empty: the fallback of its kind
    std::optional<double> nvswitch;
  };
  std::vector<ByDevice> by_device;
  // The fraction of fabric `f` between GPUs `device` (nvswitch: its class's, else the table's).
  double intra(strategies::IntraFabric f, const strategies::DeviceSpec& device) const;
  // What collectives reach on node group `g`'s intra-node fabric: its line rate x intra().
  double intra_bandwidth_Bps(const strategies::NodeGroup& g) const {
    return g.intra_node.bandwidth_Bps * intra(g.intra_node.kind, g.gpu);
  }
};

// The whole table: block -> op class, and the device classes in file order.
class Efficiencies {
 public:
  Efficiencies() = default;
  Efficiencies(std::array<OpClass, kNumBlocks> block_classes, std::vector<DeviceClass> devices,
               std::string source);

  // The op class of a Plan block; Block::kNone has none (a programming error: STRATA_CHECK).
  OpClass op_class(strategies::Block b) const;
  // The first class (file order) of the device's kind whose `match` names it, else that kind's
  // fallback. Every kind has a fallback in a parsed table, so this always succeeds.
  const DeviceClass& device_class(const strategies::DeviceSpec& device) const;
  const std::vector<DeviceClass>& device_classes() const { return devices_; }
  const std::string& source() const { return source_; }
  const LinkEfficiencies& links() const { return links_; }
  void set_links(const LinkEfficiencies& l) { links_ = l; }

 private:
  LinkEfficiencies links_;
  std::array<OpClass, kNumBlocks> block_classes_{};  // indexed by Block
  std::vector<DeviceClass> devices_;
  std::string source_;
};

// Parses an efficiencies document (schema_version 1; docs/cost-model.md). Every rule broken is a
// ConfigError naming the field, the value and the rule: missing keys, efficiencies outside
// (0, 1], unknown or missing block names, unknown op classes, duplicate device classes, a device
// kind without a fallback class. Every device class states every op class except fp8_gemm
// (optional: only devices with FP8 tensor cores). `what` names the source (usually the file
// path).
Efficiencies parse_efficiencies(const json::Json& j, const std::string& what = "efficiencies");
Efficiencies load_efficiencies(const std::string& path);

// The bundled table: <STRATA_PROFILER_DATA_DIR>/efficiencies.json (the source tree's profiler/),
// or the file the environment variable STRATA_EFFICIENCIES names (the Python package's copy).
std::string default_efficiencies_path();

}  // namespace strata::profiler
