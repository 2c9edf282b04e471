// The three input specs -- model, cluster, strategy -- as validated, pure data.
// Parsing and validation live in model_spec.cpp / cluster_spec.cpp / strategy_spec.cpp; every
// error is a ConfigError naming the field, the value and the rule. Units: bytes, seconds,
// FLOP/s, bytes/s (SI) unless a name says otherwise.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/dims.hpp"
#include "strategies/ps_partition.hpp"

namespace strata::strategies {

// ---------------------------------------------------------------------------------------------
// Model
enum class ModelFamily { kGpt, kLlama };
enum class Activation { kGelu, kSwiglu };
enum class NormKind { kLayerNorm, kRmsNorm };

// Mixture-of-experts feed-forward blocks (docs/specs.md "Mixture of experts"). In an MoE layer
// the MLP is a router (an h x num_experts linear layer and a softmax) that sends each token to
// num_experts_per_tok of the num_experts routed experts, plus n_shared_experts experts every
// token passes through; each expert is an MLP of the model's activation. num_experts 0 is a
// dense model. Layer l (from 0) is an MoE layer when l >= first_k_dense_replace and
// l % moe_layer_freq == 0 (DeepSeek's rule); the others are dense layers of intermediate_size.
struct MoeSpec {
  int num_experts = 0;                      // E: routed experts per MoE layer; 0 = dense model
  int num_experts_per_tok = 0;              // k: routed experts per token (top-k)
  int moe_intermediate_size = 0;            // f_e: ffn hidden size of one routed expert
  int n_shared_experts = 0;                 // experts every token passes through
  int shared_expert_intermediate_size = 0;  // f_s: ffn hidden size of one shared expert
  int first_k_dense_replace = 0;            // the first layers are dense
  int moe_layer_freq = 1;                   // then every moe_layer_freq-th layer is MoE
  double router_aux_loss_coef = 0;          // load-balancing loss weight (0: none)
  // The combine weights: the top k's softmax probabilities divided by their sum (Mixtral's,
  // DeepSeek-V3's) or as they are (DeepSeek-V2's norm_topk_prob false).
  bool norm_topk_prob = true;
};

struct ModelSpec {
  std::string name;
  ModelFamily family = ModelFamily::kGpt;
  int num_hidden_layers = 0;     // l
  int hidden_size = 0;           // h
  int num_attention_heads = 0;   // a
  int num_key_value_heads = 0;   // GQA; == num_attention_heads for multi-head attention
  int intermediate_size = 0;     // f (4h for GPT)
  int vocab_size = 0;            // V (after padding for tensor parallelism, when padded)
  int seq_length = 0;            // s: the training sequence length
  // Megatron-LM's make_vocab_size_divisible_by: a vocabulary that tp does not divide is padded
  // to a multiple of this times tp (padded_for_tp). unpadded_vocab_size is the tokenizer's
  // vocabulary when it was padded, else 0.
  int make_vocab_size_divisible_by = 128;
  int unpadded_vocab_size = 0;
  Activation hidden_act = Activation::kGelu;
  NormKind norm = NormKind::kLayerNorm;
  bool tie_word_embeddings = true;
  bool learned_position_embeddings = true;  // GPT: learned table (s x h); Llama: RoPE, no table
  bool bias = true;                         // linear-layer biases (GPT yes, Llama no)
  bool dropout = true;                      // dropout masks are stored activations (1 byte each)
  double norm_eps = 1e-5;
  std::string source;                       // provenance
  std::string origin = "strata";            // "strata" or "huggingface:<model_type>"
  MoeSpec moe;                              // num_experts 0: a dense model

  int head_dim() const { return hidden_size / num_attention_heads; }
  int kv_hidden() const { return num_key_value_heads * head_dim(); }
  bool is_moe() const { return moe.num_experts > 0; }
  // Whether layer `layer` (0-based) has an MoE feed-forward block.
  bool is_moe_layer(int layer) const {
    return is_moe() && layer >= moe.first_k_dense_replace && layer % moe.moe_layer_freq == 0;
  }
  int num_moe_layers() const;
};

// Parses our model JSON (strict keys) or a Hugging Face config.json (recognised by
// "model_type"; GPT-2, Llama, Mixtral and DeepSeek keys). `what` names the source for error
// messages.
ModelSpec parse_model(const json::Json& j, const std::string& what = "model");
ModelSpec load_model(const std::string& path);
json::Json to_json(const ModelSpec& m);
// The model with its vocabulary padded for tensor parallelism `tp`, the way Megatron-LM does
// (up to a multiple of make_vocab_size_divisible_by * tp), when tp does not divide vocab_size;
// unchanged when it does, so a vocabulary that splits evenly keeps its exact size.
ModelSpec padded_for_tp(const ModelSpec& m, int tp);
// The keys Strata's reader of a Hugging Face config of `model_type` reads (every other key of a
// config.json is ignored); empty for a model_type it does not read.
std::vector<std::string> huggingface_keys(const std::string& model_type);

// Parameters of one dense transformer layer (weights + biases + norms), unsharded: every layer
// of a dense model, the dense layers of an MoE model.
std::int64_t layer_params(const ModelSpec& m);
// Parameters of one MoE layer, unsharded: attention and norms as layer_params, the router
// (h x num_experts, no bias), every routed expert and every shared expert. 0 for a dense model.
std::int64_t moe_layer_params(const ModelSpec& m);
// The part of moe_layer_params one token passes through: num_experts_per_tok routed experts
// instead of all of them.
std::int64_t moe_layer_active_params(const ModelSpec& m);
// Parameters outside the layers: token embedding, learned position embedding, final norm and,
// when untied, the LM head.
std::int64_t embedding_params(const ModelSpec& m);
// Every parameter of the model (dense and MoE layers, embeddings).
std::int64_t total_params(const ModelSpec& m);
// The parameters one token passes through (MoE layers count their top-k routed experts);
// total_params for a dense model.
std::int64_t active_params(const ModelSpec& m);

// ---------------------------------------------------------------------------------------------
// Cluster
enum class DeviceKind { kGpu, kCpu };
enum class Precision { kBf16, kFp16, kFp32 };
enum class IntraFabric { kNvSwitch, kPcie, kShared /* CPU: ranks share one memory system */ };
enum class InterTopology { kFatTree, kRailOptimized, kNone };

const char* precision_name(Precision p);
// The cluster spec's name of a fabric inside a node ("nvswitch", "pcie", "shared"), as
// intra_node.fabric reads and links.json curves name it.
const char* intra_fabric_name(IntraFabric f);
int precision_bytes(Precision p);

struct DeviceSpec {
  std::string name;
  DeviceKind kind = DeviceKind::kGpu;
  double peak_bf16_flops = 0;   // dense peak, FLOP/s
  double peak_fp16_flops = 0;
  double peak_fp32_flops = 0;
  double peak_fp8_flops = 0;    // dense FP8 tensor-core peak; 0 = no FP8 tensor cores
  double memory_bytes = 0;      // HBM (or the share of host RAM a CPU rank may use)
  double memory_bandwidth_Bps = 0;
  // Streaming multiprocessors (GPU): what an overlapped GEMM shares with communication kernels
  // (strategy tp_comm_overlap). 0 = not given.
  int sms = 0;
  double peak_flops(Precision p) const;
};

struct IntraNodeSpec {
  IntraFabric kind = IntraFabric::kNvSwitch;
  double bandwidth_Bps = 0;  // per GPU, per direction
  double latency_s = 0;
};

struct InterNodeSpec {
  InterTopology topology = InterTopology::kFatTree;
  double oversubscription = 1.0;  // >= 1; 1 = full bisection
  int nics_per_node = 0;
  double nic_bandwidth_Bps = 0;   // per NIC, per direction
  double latency_s = 0;
};

struct NodeGroup {
  std::string name;
  // The site (organisation) the group's nodes belong to (docs/federated.md); "" = the cluster's
  // one site. Either every group names its site or none does.
  std::string site;
  int nodes = 0;
  int gpus_per_node = 0;
  DeviceSpec gpu;
  IntraNodeSpec intra_node;
};

// The wide-area network between a cluster's sites (docs/federated.md): every site has one
// uplink of `bandwidth_Bps` per direction to a backbone that is not a bottleneck; a message
// between two sites takes `latency_s` one way. Jitter is applied as a deterministic spread of
// the sites' latencies (+/- jitter_s / 2 around latency_s, site by site).
struct WanSpec {
  double bandwidth_Bps = 0;  // per site uplink, per direction
  double latency_s = 0;      // one way, site to site
  double jitter_s = 0;
};

struct ClusterSpec {
  std::string name;
  std::vector<NodeGroup> node_groups;  // a uniform cluster is one group
  InterNodeSpec inter_node;
  std::optional<WanSpec> wan;  // only with two or more sites
  // CPU clusters: physical cores per node shared by that node's ranks (0 = one core per rank or
  // not a CPU cluster), and whether communication overlaps compute in the executor.
  int cores_per_node = 0;
  bool comm_overlaps_compute = true;
  std::string source;

  int total_nodes() const;
  int total_gpus() const;
  bool heterogeneous() const { return node_groups.size() > 1; }
  // The node group of a global GPU index (ranks are numbered group by group, node by node).
  const NodeGroup& group_of_gpu(int gpu) const;
  // The sites in the order their first node group appears; one "" entry without sites.
  std::vector<std::string> sites() const;
  // The GPUs of site `site` (every group naming it).
  int site_gpus(const std::string& site) const;
};

ClusterSpec parse_cluster(const json::Json& j, const std::string& what = "cluster");
ClusterSpec load_cluster(const std::string& path);
json::Json to_json(const ClusterSpec& c);
// A uniform cluster rescaled to `nodes` nodes (bundled specs are "at any node count").
ClusterSpec with_nodes(const ClusterSpec& c, int nodes);

// ---------------------------------------------------------------------------------------------
// Strategy

enum class Schedule { kGPipe, kOneFOneB, kInterleaved, kZbH1, kZbH2, kZbV };
enum class Recompute { kNone, kSelective, kFull };
// How a backward's weight gradients reach the gradient buffer (docs/specs.md
// "grad_accumulation"): accumulated by the GEMM itself, or written and then added by a separate
// element-wise kernel, every micro-batch (Megatron-LM's DDP hook) or after the first (PyTorch's
// autograd).
enum class GradAccumulation { kFused, kHook, kAutograd };
// How the attention core runs (docs/specs.md "attention"): separate score, softmax and context
// kernels that store the (sequence x sequence) probabilities, or one fused (FlashAttention)
// kernel that keeps only a statistic per query row and recomputes the scores in the backward.
enum class AttentionImpl { kUnfused, kFused };
// How context parallelism exchanges keys and values (docs/specs.md "cp_comm"): around a ring,
// one block per step overlapped with attention (Megatron-Core's default "p2p"), or all-gathered
// before the attention and reduce-scattered after its backward ("allgather").
enum class CpComm { kP2p, kAllGather };
const char* cp_comm_name(CpComm c);
// FP8 GEMMs in the layers' linear layers, Transformer Engine style (docs/specs.md "fp8"):
// none, hybrid (E4M3 forward, E5M2 gradients) or e4m3 (E4M3 everywhere), with delayed scaling
// (a per-tensor scale from an amax history). Activations, weights and the optimizer stay in the
// strategy's precision; the embedding, the attention core and the LM head stay in it too.
enum class Fp8Format { kNone, kHybrid, kE4m3 };
// How delayed scaling reduces a tensor's amax history to its scale: Transformer Engine's "max"
// (the largest over the window) or "most_recent".
enum class AmaxComputeAlgo { kMax, kMostRecent };
const char* schedule_name(Schedule s);
const char* attention_name(AttentionImpl a);
const char* fp8_format_name(Fp8Format f);
const char* amax_compute_algo_name(AmaxComputeAlgo a);
const char* recompute_name(Recompute r);
const char* grad_accumulation_name(GradAccumulation g);

// Galvatron-style override for a contiguous range of layers [first, last].
struct LayerOverride {
  int first = 0;
  int last = 0;
  int tp = 0;                      // 0 = keep the strategy's tp; dp adapts so tp*dp stays fixed
  int recompute = -1;              // -1 = keep; else a Recompute value
  int fp8 = -1;                    // -1 = keep; else an Fp8Format value
  // >= 0: not the user's but derived from strategy.stages[stage].tp (expand_stages()); such
  // overrides are not written by to_json() and their errors name the stage.
  int stage = -1;
};

// One pipeline stage of a per-group strategy (docs/heterogeneous.md): the node group of the
// cluster its ranks run on, its layers and its tensor-parallel degree. Every stage has the
// strategy's tp*dp*cp devices; a stage's own tp trades places with dp (dp' = tp*dp/tp'), as
// a layer override's does.
struct StageSpec {
  std::string node_group;  // "" = not placed (the stage runs where the rank order puts it)
  int layers = 0;          // 0 = "auto": proposed from the groups' speeds (profiler/stage_split)
  int tp = 0;              // 0 = the strategy's tp
};

struct CollectivePolicy {
  double grad_bucket_bytes = 25.0 * 1024 * 1024;  // DP gradient bucket (PyTorch DDP default)
  bool overlap_grad_reduce = true;   // bucket all-reduces start as backward produces them
  bool overlap_param_gather = true;  // ZeRO-3 / distributed optimizer param all-gathers overlap
  // ZeRO-3: how many modules (layers, the embedding, the head) ahead of the one computing a
  // parameter all-gather is issued: 0 gathers a module when its compute is reached, 1 (PyTorch
  // FSDP's default: BACKWARD_PRE, forward prefetch, limit_all_gathers) one module ahead, so at
  // most two modules' gathered parameters are live (docs/specs.md "param_prefetch").
  int param_prefetch = 1;
  bool pp_scatter_gather = false;    // Megatron: send 1/tp of the activation, all-gather after
  // Megatron-LM of 2021: every pipeline send/receive call waits for its transfers and
  // synchronises the device before the next kernel (docs/specs.md "blocking_p2p").
  bool blocking_p2p = false;
};

// The distribution of routed tokens over the experts that expert parallelism is priced with
// (docs/specs.md "expert_routing"): uniform, Zipf-like (expert i gets a share proportional to
// 1 / (i + 1)^zipf_exponent, expert 0 the most) or explicit per-expert fractions.
enum class ExpertRoutingKind { kUniform, kZipf, kExplicit };
struct ExpertRouting {
  ExpertRoutingKind kind = ExpertRoutingKind::kUniform;
  double zipf_exponent = 0;       // kZipf: > 0
  std::vector<double> fractions;  // kExplicit: as given (non-negative, sum > 0)
};
const char* expert_routing_name(ExpertRoutingKind k);

// Federated training across sites (docs/federated.md): each site runs the rest of the strategy
// on its own GPUs for local_steps steps, then the sites' models are averaged (FedAvg) over the
// WAN: every site sends its update to an aggregator site and receives the average (central), or
// the sites run a ring all-reduce among themselves (ring, no trusted third party); sync_dp is
// the baseline of cross-site synchronous data parallelism (a gradient all-reduce over the WAN
// every step, as a ring).
enum class FederatedAggregation { kCentral, kRing, kSyncDp };
const char* federated_aggregation_name(FederatedAggregation a);
// Additively homomorphic aggregation (docs/federated.md "Homomorphic encryption"): every site
// encrypts its update under a Paillier key the sites share (the aggregator holds none), the
// aggregator multiplies the ciphertexts (adds the plaintexts) and returns the encrypted sum,
// every site decrypts it. values_per_ciphertext > 1 packs quantized values into one plaintext
// (BatchCrypt, Zhang et al., USENIX ATC 2020). Per-operation costs: given, or the ones
// bench/paillier_bench measured for key_bits 1024, 2048 and 3072 (sim/federated.hpp).
struct HomomorphicSpec {
  int key_bits = 2048;             // |n|; a ciphertext has 2 key_bits bits
  int values_per_ciphertext = 1;   // 1 .. key_bits / 16
  int cores = 1;                   // cores per site (and the aggregator) running HE operations
  double encrypt_s = 0, add_s = 0, decrypt_s = 0;  // per operation, one core; 0: measured
};

struct FederatedSpec {
  int local_steps = 1;                                          // K
  FederatedAggregation aggregation = FederatedAggregation::kCentral;
  double participation = 1.0;          // the share of the sites taking part in a round, (0, 1]
  std::vector<std::string> dropout_sites;  // sites that drop out of every round
  double dropout_probability = 0;      // or: each site drops out with this probability, [0, 1)
  bool secure_aggregation = false;     // pairwise additive masks (Bonawitz et al. 2017)
  double dp_sigma = 0;                 // differential-privacy noise multiplier (0: none)
  double dp_clip = 1.0;                // its clipping norm, > 0
  std::optional<HomomorphicSpec> homomorphic_encryption;  // central aggregation only
};

// Parameter-server training (docs/parameter-server.md; parsing and the task graph in ps.hpp).
// PsConsistency, PsPartition and PsGranularity are in ps_partition.hpp (the executor shares them).
enum class PsPlacement { kSeparate, kColocated };
const char* ps_placement_name(PsPlacement p);

// A server's update streams at this rate by default: the order of a two-socket CPU server's
// measured STREAM bandwidth (about 200-300 GB/s for two sockets of 8-channel DDR4-3200;
// docs/parameter-server.md "Server updates").
inline constexpr double kDefaultServerMemoryBandwidthBps = 200e9;

// strategy.ps (docs/parameter-server.md "The strategy"). Workers are the strategy's dp replicas.
struct PsSpec {
  int servers = 1;
  PsPlacement placement = PsPlacement::kSeparate;
  PsPartition partition = PsPartition::kRange;
  PsGranularity granularity = PsGranularity::kRow;
  PsConsistency consistency = PsConsistency::kBsp;
  int staleness = 0;  // SSP's bound s
  double server_memory_bandwidth_Bps = kDefaultServerMemoryBandwidthBps;
  // Simulator only: worker w's step-t compute is scaled by (1 + j u(w, t)), u in [-1, 1].
  double compute_jitter = 0;
};

struct StrategySpec {
  std::string name;
  int dp = 1, tp = 1, pp = 1, cp = 1, ep = 1;
  std::array<Dim, kNumDims> order = {Dim::kTp, Dim::kCp, Dim::kEp, Dim::kDp, Dim::kPp};
  int micro_batch_size = 1;
  int global_batch_size = 1;
  Schedule schedule = Schedule::kOneFOneB;
  int virtual_stages = 1;           // model chunks per pipeline rank (interleaved-1f1b)
  int zero_stage = 0;
  // ZeRO-3's shard group in data-parallel ranks (PyTorch's HYBRID_SHARD): state is sharded over
  // groups of this many consecutive data-parallel ranks and replicated across dp / it of them.
  // 0 (absent) = dp: full sharding. Use zero_shard() for the effective size.
  int zero_shard_group = 0;
  Recompute recompute = Recompute::kNone;
  bool sequence_parallel = false;
  Precision precision = Precision::kBf16;
  // Keep fp32 gradient accumulators: Megatron-LM's --accumulate-allreduce-grads-in-fp32, in 2021
  // an option (off by default) that it forced on only for bf16.
  bool main_grads_fp32 = false;
  GradAccumulation grad_accumulation = GradAccumulation::kFused;
  AttentionImpl attention = AttentionImpl::kUnfused;
  CpComm cp_comm = CpComm::kP2p;
  // Tensor-parallel communication overlap (Megatron-Core's --tp-comm-overlap with Transformer
  // Engine's userbuffers; docs/specs.md "tp_comm_overlap"): each sequence-parallel all-gather
  // and reduce-scatter runs as a ring of tp shifts beside the GEMM on its chunks, and the
  // backward's reduce-scatter beside the weight-gradient GEMM. Needs sequence_parallel.
  bool tp_comm_overlap = false;
  // SMs the overlapping communication kernels hold while a GEMM runs beside them (Transformer
  // Engine's ring exchange: num_sm 1, copies on the copy engines).
  int tp_comm_overlap_sms = 1;
  Fp8Format fp8 = Fp8Format::kNone;
  // Delayed scaling's amax history per FP8 tensor (Transformer Engine's DelayedScaling defaults:
  // 1024 steps, "max"; Megatron-Core's --fp8-amax-history-len / --fp8-amax-compute-algo).
  int fp8_amax_history_len = 1024;
  AmaxComputeAlgo fp8_amax_compute_algo = AmaxComputeAlgo::kMax;
  std::vector<LayerOverride> layer_overrides;
  std::vector<int> stage_layers;    // uneven partition: layers per (virtual) stage; empty = even
  // Per-group strategy: one entry per pipeline stage (node group, layers, tp); empty = none.
  // Lowering reads it through expand_stages() (stage_layers and derived layer overrides) and
  // places the stages on their node groups with placed_cluster().
  std::vector<StageSpec> stages;
  CollectivePolicy collectives;
  // Mixture of experts (docs/specs.md "Expert parallelism"); only for a model with experts.
  // The routed experts' tensor-parallel degree, Megatron-Core's expert_tensor_parallel_size:
  // 0 (absent) = tp, its default. Use expert_tp_size() for the effective degree.
  int expert_tp = 0;
  // Megatron-Core's moe_expert_capacity_factor: each expert takes at most
  // ceil(capacity_factor * tokens * top_k / num_experts) tokens and drops the rest; 0 (absent
  // or null) = dropless.
  double expert_capacity_factor = 0;
  ExpertRouting expert_routing;
  // Federated training across the cluster's sites; absent = one site trains the strategy.
  std::optional<FederatedSpec> federated;
  // Parameter-server training (docs/parameter-server.md): the dp replicas are workers that pull
  // parameters from and push gradients to ps.servers servers; absent = collective training.
  std::optional<PsSpec> ps;
  std::string source;

  int world_size() const { return dp * tp * pp * cp; }
  int expert_tp_size() const { return expert_tp > 0 ? expert_tp : tp; }
  // The data-parallel ranks ZeRO shards over: zero_shard_group, or dp when it is not set.
  int zero_shard() const { return zero_shard_group > 0 ? zero_shard_group : dp; }
  // Whether any layer runs FP8 GEMMs (the strategy's fp8 or a layer override's).
  bool uses_fp8() const;
  int num_micro_batches() const { return global_batch_size / (micro_batch_size * dp); }
  std::string order_string() const;
};

// Parses strategy JSON; checks only what needs no model or cluster (types, ranges, enums).
StrategySpec parse_strategy(const json::Json& j, const std::string& what = "strategy");
StrategySpec load_strategy(const std::string& path);
json::Json to_json(const StrategySpec& s);

// Cross-checks a strategy against a model and a world size (every rule in docs/specs.md):
// divisibility of heads/kv-heads/hidden/ffn/vocab/layers by tp and pp, dp*tp*pp*cp == world,
// batch divisibility, micro-batches vs stages, overrides, partitions. Throws ConfigError.
void validate(const ModelSpec& m, const StrategySpec& s, int world_size);

// The share of the routed tokens each of `num_experts` experts receives under
// s.expert_routing, summing to 1 (uniform: 1/E each; zipf: (i+1)^-a normalised; explicit: the
// fractions normalised). Needs a validated strategy (explicit: num_experts fractions).
std::vector<double> expert_token_fractions(const StrategySpec& s, int num_experts);

// The expected dispatch of one micro-batch's MoE layer on a rank that routes `rows` token rows
// (docs/accounting.md "Mixture of experts"): each of its rows x k choices goes to expert e with
// the share expert_token_fractions gives; with expert_capacity_factor a source keeps at most
// `capacity` rows per expert (Megatron-Core's per-rank capacity,
// ceil(factor x rows x k / num_experts)) and drops the rest.
struct ExpertDispatch {
  std::int64_t capacity = 0;   // rows per expert per source rank; 0 = dropless
  std::int64_t send_rows = 0;  // rows a rank dispatches: rows x k, less the dropped
  std::int64_t recv_rows = 0;  // rows the most loaded expert-parallel rank receives
  std::vector<double> shares;  // per expert-parallel rank: the share of a source's rows
};
ExpertDispatch expert_dispatch(const ModelSpec& m, const StrategySpec& s, std::int64_t rows);

// A federated strategy against a cluster (docs/federated.md): the cluster has two or more sites
// of the same GPU count, and every dropout site exists. ConfigError naming the field otherwise.
// The strategy's world is then one site's GPUs.
void validate_federated(const ClusterSpec& c, const StrategySpec& s);

// FP8 needs a device with FP8 tensor cores: every device of the first `world_size` GPUs of the
// cluster must have peak_tflops.fp8 when any layer runs FP8 (ConfigError naming the device).
void validate_devices(const ClusterSpec& c, const StrategySpec& s, int world_size);

// The per-layer view after overrides: tp, dp, recompute and FP8 for layer `layer`.
struct LayerStrategy {
  int tp = 1;
  int dp = 1;
  Recompute recompute = Recompute::kNone;
  Fp8Format fp8 = Fp8Format::kNone;
  int micro_batch_size = 1;  // samples per replica per micro-batch (mbs * dp / layer dp)
};
LayerStrategy layer_strategy(const StrategySpec& s, int layer);

// Layers per (virtual) stage after stage_layers or an even split; size pp * virtual_stages.
std::vector<int> stage_partition(const ModelSpec& m, const StrategySpec& s);

// The field a layer override's errors name: "strategy.layer_overrides[i]", or
// "strategy.stages[k]" for one derived from a stage's tp.
std::string override_field(const StrategySpec& s, std::size_t i);

// Per-group strategies (docs/heterogeneous.md). A strategy with `stages` as lowering reads it:
// stage_layers from the stages' layers, and a layer override (stage = k) for the layers of
// every stage whose tp differs from the strategy's; user overrides derived before are dropped
// first, so it is idempotent. Unchanged without stages. ConfigError for what only stages can
// get wrong (naming strategy.stages[k]...): not one per pipeline stage, virtual_stages > 1,
// stage_layers given too, layers "auto" (unresolved: profiler::propose_stage_layers), layers
// that do not add up to the model's, a stage tp that a user override's tp also sets.
StrategySpec expand_stages(const ModelSpec& m, const StrategySpec& s);
// Whether any stage's layers are "auto" (0).
bool has_auto_stage_layers(const StrategySpec& s);

// The cluster with its nodes in the order the strategy's stages are placed on them, so that
// the ranks of stage k (ranks [k*S, (k+1)*S) with S = world/pp; pp is the outermost dimension)
// sit on GPUs of strategy.stages[k].node_group: node groups are split and reordered (a run of
// consecutive stages on one group becomes one group; the nodes no stage uses follow, in the
// cluster's order). Unchanged when no stage names a group. ConfigError naming
// strategy.stages[k].node_group: a group the cluster does not have, some stages placed and
// others not, pp not outermost in the order, a group without GPUs for its stages, or a group
// change inside a node (a stage boundary between groups must fall on a node boundary).
ClusterSpec placed_cluster(const ClusterSpec& c, const StrategySpec& s, int world_size);

// ---------------------------------------------------------------------------------------------
// Reading helpers shared by the three spec parsers (defined in model_spec.cpp).
namespace detail {
// An integer in [1, INT_MAX]; `fallback` 0 means the key is required.
int read_positive_int(json::ObjectReader& r, const std::string& key, int fallback = 0);
// A required integer in [lo, hi]; `rule` ("must be from 1 to 65536 (...)") otherwise.
int read_int_in(json::ObjectReader& r, const std::string& key, long long lo, long long hi,
                const std::string& rule);
// The index of a string value in `names`; `fallback` -1 means the key is required.
int read_choice(json::ObjectReader& r, const std::string& key,
                const std::vector<std::string>& names, int fallback = -1);
// The object's "source" (a list of strings is joined with "; "), or "".
std::string read_source(const json::Json& object);
}  // namespace detail

}  // namespace strata::strategies
