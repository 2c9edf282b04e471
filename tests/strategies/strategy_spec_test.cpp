// Strategy specs: parsing, every validation rule (each error checked for its field, value and
// rule), per-layer and per-stage views, round trips, and every bundled strategy against its model.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "expect_config_error.hpp"
#include "strategies/ps.hpp"
#include "strategies/schedule.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

using json::Json;

const std::string kRoot = STRATA_SOURCE_DIR;

using testing::expect_config_error;

// A 32-layer, 32-head model with GQA (8 kv-heads), like Llama 2 7B at a smaller width.
ModelSpec model() {
  return parse_model(Json{{"name", "m"},
                          {"family", "llama"},
                          {"num_hidden_layers", 32},
                          {"hidden_size", 1024},
                          {"num_attention_heads", 32},
                          {"num_key_value_heads", 8},
                          {"intermediate_size", 2816},
                          {"vocab_size", 32000},
                          {"seq_length", 2048}});
}

Json base() { return {{"name", "s"}, {"micro_batch_size", 1}, {"global_batch_size", 64}}; }

Json with(Json j, const Json& changes) {
  j.update(changes);
  return j;
}

StrategySpec strategy(const Json& changes) { return parse_strategy(with(base(), changes)); }

// --- parsing ---------------------------------------------------------------------------------

TEST(StrategyParse, Defaults) {
  const StrategySpec s = parse_strategy(base());
  EXPECT_EQ(s.name, "s");
  EXPECT_EQ(s.dp, 1);
  EXPECT_EQ(s.tp, 1);
  EXPECT_EQ(s.pp, 1);
  EXPECT_EQ(s.cp, 1);
  EXPECT_EQ(s.ep, 1);
  EXPECT_EQ(s.order_string(), "tp-cp-ep-dp-pp");
  EXPECT_EQ(s.schedule, Schedule::kOneFOneB);
  EXPECT_EQ(s.virtual_stages, 1);
  EXPECT_EQ(s.zero_stage, 0);
  EXPECT_EQ(s.recompute, Recompute::kNone);
  EXPECT_FALSE(s.sequence_parallel);
  EXPECT_EQ(s.precision, Precision::kBf16);
  EXPECT_FALSE(s.main_grads_fp32);
  EXPECT_EQ(s.grad_accumulation, GradAccumulation::kFused);
  EXPECT_FALSE(to_json(s).contains("grad_accumulation"));  // default: not written
  EXPECT_EQ(s.attention, AttentionImpl::kUnfused);
  EXPECT_FALSE(to_json(s).contains("attention"));  // default: not written
  EXPECT_EQ(s.fp8, Fp8Format::kNone);
  EXPECT_FALSE(s.uses_fp8());
  EXPECT_EQ(s.fp8_amax_history_len, 1024);  // Transformer Engine's DelayedScaling default
  EXPECT_EQ(s.fp8_amax_compute_algo, AmaxComputeAlgo::kMax);
  for (const char* key : {"fp8", "fp8_amax_history_len", "fp8_amax_compute_algo"}) {
    EXPECT_FALSE(to_json(s).contains(key)) << key;  // default: not written
  }
  EXPECT_TRUE(s.layer_overrides.empty());
  EXPECT_TRUE(s.stage_layers.empty());
  EXPECT_DOUBLE_EQ(s.collectives.grad_bucket_bytes, 25.0 * 1024 * 1024);
  EXPECT_TRUE(s.collectives.overlap_grad_reduce);
  EXPECT_TRUE(s.collectives.overlap_param_gather);
  EXPECT_FALSE(s.collectives.pp_scatter_gather);
  EXPECT_EQ(s.collectives.param_prefetch, 1);  // PyTorch FSDP's default
  EXPECT_EQ(s.zero_shard_group, 0);            // not set: full sharding over dp
  EXPECT_EQ(s.zero_shard(), s.dp);
  EXPECT_FALSE(to_json(s).contains("zero_shard_group"));               // default: not written
  EXPECT_FALSE(to_json(s)["collectives"].contains("param_prefetch"));  // default: not written
  EXPECT_EQ(s.world_size(), 1);
  EXPECT_EQ(s.num_micro_batches(), 64);
}

TEST(StrategyParse, EveryKey) {
  const StrategySpec s = strategy(
      {{"dp", 2},
       {"tp", 4},
       {"pp", 8},
       {"cp", 2},
       {"order", "tp-dp-cp-pp"},
       {"schedule", "interleaved-1f1b"},
       {"virtual_stages", 2},
       {"zero_stage", 3},
       {"zero_shard_group", 2},
       {"recompute", "full"},
       {"sequence_parallel", true},
       {"precision", "fp16"},
       {"main_grads_fp32", true},
       {"layer_overrides",
        {{{"layers", {0, 3}}, {"tp", 2}}, {{"layers", {4, 4}}, {"recompute", "selective"}}}},
       {"stage_layers", {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}},
       {"collectives",
        {{"grad_bucket_MiB", 40},
         {"overlap_grad_reduce", false},
         {"overlap_param_gather", false},
         {"pp_scatter_gather", true},
         {"param_prefetch", 3}}},
       {"source", "test"}});
  EXPECT_EQ(s.world_size(), 128);
  EXPECT_EQ(s.order_string(), "tp-dp-cp-pp-ep");  // ep (degree 1) appended
  EXPECT_EQ(s.schedule, Schedule::kInterleaved);
  EXPECT_EQ(s.virtual_stages, 2);
  EXPECT_EQ(s.zero_stage, 3);
  EXPECT_EQ(s.zero_shard_group, 2);
  EXPECT_EQ(s.zero_shard(), 2);
  EXPECT_EQ(s.recompute, Recompute::kFull);
  EXPECT_TRUE(s.sequence_parallel);
  EXPECT_EQ(s.precision, Precision::kFp16);
  EXPECT_TRUE(s.main_grads_fp32);
  ASSERT_EQ(s.layer_overrides.size(), 2u);
  EXPECT_EQ(s.layer_overrides[0].first, 0);
  EXPECT_EQ(s.layer_overrides[0].last, 3);
  EXPECT_EQ(s.layer_overrides[0].tp, 2);
  EXPECT_EQ(s.layer_overrides[0].recompute, -1);
  EXPECT_EQ(s.layer_overrides[1].tp, 0);
  EXPECT_EQ(s.layer_overrides[1].recompute, static_cast<int>(Recompute::kSelective));
  EXPECT_EQ(s.stage_layers.size(), 16u);
  EXPECT_DOUBLE_EQ(s.collectives.grad_bucket_bytes, 40.0 * 1024 * 1024);
  EXPECT_FALSE(s.collectives.overlap_grad_reduce);
  EXPECT_FALSE(s.collectives.overlap_param_gather);
  EXPECT_TRUE(s.collectives.pp_scatter_gather);
  EXPECT_EQ(s.collectives.param_prefetch, 3);
  EXPECT_EQ(s.source, "test");
}

TEST(StrategyParse, RequiredKeysAndUnknownKeys) {
  Json j = base();
  j.erase("global_batch_size");
  expect_config_error([&] { parse_strategy(j); },
                      {"strategy.global_batch_size", "required key is missing"});
  j = base();
  j.erase("micro_batch_size");
  expect_config_error([&] { parse_strategy(j); },
                      {"strategy.micro_batch_size", "required key is missing"});
  expect_config_error(
      [&] {
        strategy({{"tensor_parallel", 2}});
      },
      {"strategy.tensor_parallel", "unknown key", "tp"});
  expect_config_error(
      [&] {
        strategy({{"collectives", {{"bucket_MiB", 2}}}});
      },
      {"strategy.collectives.bucket_MiB", "unknown key", "grad_bucket_MiB"});
  expect_config_error([&] { strategy({{"name", ""}}); }, {"strategy.name", "must not be empty"});
}

TEST(StrategyParse, DegreesArePositiveIntegers) {
  for (const char* key :
       {"dp", "tp", "pp", "cp", "ep", "micro_batch_size", "global_batch_size", "virtual_stages"}) {
    expect_config_error(
        [&] {
          strategy({{key, 0}});
        },
        {std::string("strategy.") + key + " = 0", "must be a positive integer"});
    expect_config_error(
        [&] {
          strategy({{key, 1.5}});
        },
        {std::string("strategy.") + key + " = 1.5", "must be an integer"});
  }
}

TEST(StrategyParse, OrderTokens) {
  EXPECT_EQ(strategy({{"order", "pp-dp-tp"}, {"tp", 2}}).order_string(), "pp-dp-tp-cp-ep");
  const StrategySpec s = strategy({{"order", "dp-tp"}, {"tp", 2}, {"dp", 2}});
  EXPECT_EQ(s.order[0], Dim::kDp);
  EXPECT_EQ(s.order[1], Dim::kTp);
  EXPECT_EQ(s.order[4], Dim::kPp);
  expect_config_error(
      [&] {
        strategy({{"order", "tp-xp"}});
      },
      {"strategy.order = \"tp-xp\"", "unknown token \"xp\""});
  expect_config_error(
      [&] {
        strategy({{"order", "tp--dp"}});
      },
      {"strategy.order = \"tp--dp\"", "unknown token \"\""});
  expect_config_error(
      [&] {
        strategy({{"order", "tp-dp-tp"}});
      },
      {"strategy.order = \"tp-dp-tp\"", "\"tp\" appears twice"});
  expect_config_error(
      [&] {
        strategy({{"order", "tp-dp"}, {"pp", 4}});
      },
      {"strategy.order = \"tp-dp\"", "pp = 4 > 1, so pp must appear"});
}

TEST(StrategyParse, EnumsAndRanges) {
  expect_config_error(
      [&] {
        strategy({{"schedule", "zero-bubble"}});
      },
      {"strategy.schedule = \"zero-bubble\"", "\"gpipe\", \"1f1b\", \"interleaved-1f1b\""});
  expect_config_error(
      [&] {
        strategy({{"recompute", "some"}});
      },
      {"strategy.recompute = \"some\"", "\"none\", \"selective\", \"full\""});
  expect_config_error(
      [&] {
        strategy({{"grad_accumulation", "unfused"}});
      },
      {"strategy.grad_accumulation = \"unfused\"", "\"fused\", \"hook\", \"autograd\""});
  EXPECT_EQ(strategy({{"grad_accumulation", "hook"}}).grad_accumulation, GradAccumulation::kHook);
  EXPECT_EQ(strategy({{"grad_accumulation", "autograd"}}).grad_accumulation,
            GradAccumulation::kAutograd);
  expect_config_error(
      [&] {
        strategy({{"attention", "flash"}});
      },
      {"strategy.attention = \"flash\"", "\"unfused\", \"fused\""});
  EXPECT_EQ(strategy({{"attention", "fused"}}).attention, AttentionImpl::kFused);
  expect_config_error(
      [&] {
        strategy({{"precision", "fp8"}});
      },
      {"strategy.precision = \"fp8\"", "\"bf16\", \"fp16\", \"fp32\""});
  // Rule 9: ZeRO stages 0..3.
  expect_config_error(
      [&] {
        strategy({{"zero_stage", 4}});
      },
      {"strategy.zero_stage = 4", "must be 0, 1, 2 or 3"});
  expect_config_error(
      [&] {
        strategy({{"zero_stage", -1}});
      },
      {"strategy.zero_stage = -1", "must be 0, 1, 2 or 3"});
  expect_config_error(
      [&] {
        strategy({{"sequence_parallel", 1}});
      },
      {"strategy.sequence_parallel = 1", "true or false"});
  expect_config_error(
      [&] {
        strategy({{"collectives", {{"grad_bucket_MiB", 0}}}});
      },
      {"strategy.collectives.grad_bucket_MiB = 0", "must be > 0"});
  expect_config_error(
      [&] {
        strategy({{"collectives", {{"param_prefetch", -1}}}});
      },
      {"strategy.collectives.param_prefetch = -1", "must be an integer >= 0"});
  expect_config_error(
      [&] {
        strategy({{"collectives", {{"param_prefetch", 1.5}}}});
      },
      {"strategy.collectives.param_prefetch = 1.5"});
  EXPECT_EQ(strategy({{"collectives", {{"param_prefetch", 0}}}}).collectives.param_prefetch, 0);
  expect_config_error(
      [&] {
        strategy({{"zero_shard_group", 0}});
      },
      {"strategy.zero_shard_group = 0"});
}

TEST(StrategyParse, VirtualStagesNeedTheInterleavedSchedule) {
  expect_config_error(
      [&] {
        strategy({{"virtual_stages", 2}});
      },
      {"strategy.virtual_stages = 2", "needs schedule \"interleaved-1f1b\"",
       "schedule is \"1f1b\""});
  expect_config_error(
      [&] {
        strategy({{"virtual_stages", 2}, {"schedule", "gpipe"}});
      },
      {"strategy.virtual_stages = 2", "schedule is \"gpipe\""});
}

TEST(StrategyParse, OverrideAndStageLayerShapes) {
  expect_config_error(
      [&] {
        strategy({{"layer_overrides", {{{"layers", {1}}, {"tp", 2}}}}});
      },
      {"strategy.layer_overrides[0].layers = [1]", "[first, last]"});
  expect_config_error(
      [&] {
        strategy({{"layer_overrides", {{{"layers", {1, "2"}}, {"tp", 2}}}}});
      },
      {"strategy.layer_overrides[0].layers", "two integers"});
  expect_config_error(
      [&] {
        strategy({{"layer_overrides", {{{"layers", {1, 2}}}}}});
      },
      {"strategy.layer_overrides[0]", "must set tp, recompute or fp8"});
  expect_config_error(
      [&] {
        strategy({{"layer_overrides", {{{"layers", {1, 2}}, {"dp", 2}}}}});
      },
      {"strategy.layer_overrides[0].dp", "unknown key"});
  expect_config_error(
      [&] {
        strategy({{"layer_overrides", {{{"layers", {1, 2}}, {"tp", 0}}}}});
      },
      {"strategy.layer_overrides[0].tp = 0", "positive integer"});
  expect_config_error(
      [&] {
        strategy({{"layer_overrides", {{"layers", {1, 2}}}}});
      },
      {"strategy.layer_overrides", "must be a list"});
  expect_config_error(
      [&] {
        strategy({{"stage_layers", {3, 0, 3}}});
      },
      {"strategy.stage_layers[1] = 0", "at least one layer"});
  expect_config_error(
      [&] {
        strategy({{"stage_layers", Json::array()}});
      },
      {"strategy.stage_layers = []", "positive integers"});
  expect_config_error(
      [&] {
        strategy({{"stage_layers", {3, 2.5}}});
      },
      {"strategy.stage_layers = [3,2.5]", "positive integers"});
  EXPECT_EQ(strategy({{"stage_layers", {3.0, 2}}}).stage_layers, (std::vector<int>{3, 2}));
}

// --- validate: one test per rule -------------------------------------------------------------

TEST(Validate, AcceptsAConsistentStrategy) {
  const StrategySpec s = strategy({{"tp", 8}, {"pp", 4}, {"dp", 4}, {"sequence_parallel", true}});
  EXPECT_NO_THROW(validate(model(), s, 128));
}

TEST(Validate, Rule1WorldSize) {
  const Json big = {{"name", "m"},          {"family", "gpt"},           {"num_hidden_layers", 96},
                    {"hidden_size", 12288}, {"num_attention_heads", 96}, {"vocab_size", 51200},
                    {"seq_length", 2048}};
  const StrategySpec s = strategy({{"dp", 2}, {"tp", 8}, {"pp", 8}, {"global_batch_size", 16}});
  expect_config_error(
      [&] { validate(parse_model(big), s, 1024); },
      {"strategy: dp*tp*pp*cp = 2*8*8*1 = 128 must equal the world size (1024)", "use dp = 16"});
}

TEST(Validate, Rule2TensorParallelDivisibility) {
  Json heads = {{"name", "m"},
                {"family", "llama"},
                {"num_hidden_layers", 4},
                {"hidden_size", 96},
                {"num_attention_heads", 32},
                {"num_key_value_heads", 8},
                {"intermediate_size", 96},
                {"vocab_size", 96},
                {"seq_length", 48}};
  const ModelSpec m = parse_model(with(heads, {{"hidden_size", 4096}}));
  expect_config_error(
      [&] {
        validate(m, strategy({{"tp", 3}}), 3);
      },
      {"strategy.tp = 3: num_attention_heads (32) must be divisible by tp"});
  expect_config_error(
      [&] {
        validate(m, strategy({{"tp", 16}}), 16);
      },
      {"strategy.tp = 16: num_key_value_heads (8) must be divisible by tp"});
  const ModelSpec ffn =
      parse_model(with(heads, {{"hidden_size", 4096}, {"intermediate_size", 11006}}));
  expect_config_error(
      [&] {
        validate(ffn, strategy({{"tp", 4}}), 4);
      },
      {"strategy.tp = 4: intermediate_size (11006) must be divisible by tp"});
  const ModelSpec vocab = parse_model(with(heads, {{"hidden_size", 4096}, {"vocab_size", 50257}}));
  expect_config_error(
      [&] {
        validate(vocab, strategy({{"tp", 8}}), 8);
      },
      {"strategy.tp = 8: vocab_size (50257) must be divisible by tp",
       "pad vocab_size to a multiple of tp (e.g. 50264)"});
}

TEST(Validate, Rule3LayersOverStages) {
  const ModelSpec m = model();  // 32 layers
  expect_config_error(
      [&] {
        validate(m, strategy({{"pp", 64}}), 64);
      },
      {"strategy.pp = 64", "pp*virtual_stages = 64*1 = 64",
       "must not exceed num_hidden_layers (32)"});
  expect_config_error(
      [&] {
        validate(m, strategy({{"pp", 3}}), 3);
      },
      {"strategy.pp = 3",
       "num_hidden_layers (32) must be divisible by "
       "pp*virtual_stages = 3*1 = 3",
       "use stage_layers for an uneven split"});
  const Json interleaved = {{"pp", 4}, {"schedule", "interleaved-1f1b"}, {"virtual_stages", 3}};
  expect_config_error([&] { validate(m, strategy(interleaved), 4); },
                      {"strategy.virtual_stages = 3", "pp*virtual_stages = 4*3 = 12"});
  EXPECT_NO_THROW(validate(m, strategy({{"pp", 3}, {"stage_layers", {10, 11, 11}}}), 3));
  expect_config_error(
      [&] {
        validate(m, strategy({{"pp", 3}, {"stage_layers", {16, 16}}}), 3);
      },
      {"strategy.stage_layers = [16,16]", "has 2 entries", "pp*virtual_stages = 3*1 = 3"});
  expect_config_error(
      [&] {
        validate(m, strategy({{"pp", 3}, {"stage_layers", {10, 10, 10}}}), 3);
      },
      {"strategy.stage_layers = [10,10,10]", "sums to 30", "must equal num_hidden_layers (32)"});
}

TEST(Validate, Rule4GlobalBatchDivisibility) {
  expect_config_error(
      [&] {
        validate(model(),
                 strategy({{"dp", 16}, {"micro_batch_size", 2}, {"global_batch_size", 40}}), 16);
      },
      {"strategy.global_batch_size = 40", "must be divisible by micro_batch_size*dp = 2*16 = 32",
       "e.g. 64"});
}

// 2^31 micro-batches per step once ended in std::bad_alloc while lowering (issue 16).
TEST(Validate, Rule4AtMost65536MicroBatches) {
  EXPECT_NO_THROW(validate(model(), strategy({{"dp", 1}, {"global_batch_size", 65536}}), 1));
  expect_config_error(
      [&] {
        validate(model(), strategy({{"dp", 1}, {"global_batch_size", 2147483647}}), 1);
      },
      {"strategy.global_batch_size = 2147483647", "= 2147483647 micro-batches per step",
       "at most 65536"});
}

// 1F1B with fewer micro-batches than stages is accepted (Megatron runs it): each stage's
// warm-up holds all of its micro-batches, GPipe's dependency graph.
TEST(Validate, Rule5OneFOneBTakesFewerMicroBatchesThanStages) {
  const Json j = {{"pp", 8}, {"dp", 4}, {"global_batch_size", 16}};
  EXPECT_NO_THROW(validate(model(), strategy(j), 32));
  EXPECT_NO_THROW(validate(model(), strategy(with(j, {{"schedule", "gpipe"}})), 32));
  const auto order = stage_schedule(Schedule::kOneFOneB, 8, 0, 4, 1);
  ASSERT_EQ(order.size(), 8u);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(order[k].phase, UnitPhase::kForward);
  EXPECT_EQ(max_in_flight(order), 4);
}

TEST(Validate, Rule5InterleavedNeedsPipelineAndChunks) {
  const ModelSpec m = model();
  expect_config_error(
      [&] {
        validate(m, strategy({{"schedule", "interleaved-1f1b"}}), 1);
      },
      {"strategy.schedule = \"interleaved-1f1b\"", "needs pp >= 2 (pp = 1)"});
  expect_config_error(
      [&] {
        validate(m, strategy({{"schedule", "interleaved-1f1b"}, {"pp", 4}}), 4);
      },
      {"strategy.virtual_stages = 1", "interleaved-1f1b needs virtual_stages >= 2"});
  const Json j = {{"schedule", "interleaved-1f1b"},
                  {"pp", 4},
                  {"virtual_stages", 2},
                  {"global_batch_size", 18}};
  expect_config_error(
      [&] { validate(m, strategy(j), 4); },
      {"strategy.schedule = \"interleaved-1f1b\"", "multiple of pp (4)", "= 18/(1*1) = 18"});
  EXPECT_NO_THROW(validate(m, strategy(with(j, {{"global_batch_size", 16}})), 4));
}

TEST(Validate, Rule6ContextParallelSplitsTheSequenceInTwoCpChunks) {
  expect_config_error(
      [&] {
        validate(model(), strategy({{"cp", 3}}), 3);
      },
      {"strategy.cp = 3", "seq_length (2048) must be divisible by 2*cp = 6",
       "load-balanced causal split"});
  expect_config_error(
      [&] {
        validate(model(), strategy({{"cp", 4}}), 4);
      },
      {"strategy.cp = 4", "fused attention kernel", "\"attention\": \"fused\""});
  EXPECT_NO_THROW(validate(model(), strategy({{"cp", 4}, {"attention", "fused"}}), 4));
  EXPECT_EQ(strategy({{"cp", 2}, {"attention", "fused"}}).cp_comm, CpComm::kP2p);
  EXPECT_EQ(strategy({{"cp", 2}, {"cp_comm", "all_gather"}}).cp_comm, CpComm::kAllGather);
  expect_config_error(
      [&] {
        strategy({{"cp", 2}, {"cp_comm", "a2a"}});
      },
      {"strategy.cp_comm = \"a2a\"", "\"p2p\", \"all_gather\""});
}

TEST(Validate, Rule6bSequenceParallelSplitsTheSequenceOverTp) {
  Json j = {{"name", "m"},       {"family", "gpt"},          {"num_hidden_layers", 2},
            {"hidden_size", 64}, {"num_attention_heads", 4}, {"vocab_size", 64},
            {"seq_length", 34}};
  expect_config_error(
      [&] {
        validate(parse_model(j), strategy({{"tp", 4}, {"sequence_parallel", true}}), 4);
      },
      {"strategy.tp = 4", "sequence_parallel = true", "seq_length (34)", "cp*tp = 1*4 = 4"});
  EXPECT_NO_THROW(validate(parse_model(j), strategy({{"tp", 4}}), 4));
}

TEST(Validate, Rule7ExpertParallelism) {
  expect_config_error(
      [&] {
        validate(model(), strategy({{"dp", 4}, {"ep", 3}}), 4);
      },
      {"strategy.ep = 3", "must divide dp x cp (4 x 1)"});
  expect_config_error(
      [&] {
        validate(model(), strategy({{"dp", 4}, {"ep", 2}}), 4);
      },
      {"strategy.ep = 2: the model has no experts; ep > 1 needs a mixture-of-experts model"});
  // The other expert fields need experts too.
  expect_config_error(
      [&] {
        validate(model(), strategy({{"expert_tp", 1}}), 1);
      },
      {"strategy.expert_tp = 1", "needs a mixture-of-experts model"});
  expect_config_error(
      [&] {
        validate(model(), strategy({{"expert_capacity_factor", 1.25}}), 1);
      },
      {"strategy.expert_capacity_factor = 1.25", "needs a mixture-of-experts model"});
  expect_config_error(
      [&] {
        validate(model(),
                 strategy({{"expert_routing", {{"distribution", "zipf"}, {"exponent", 1.0}}}}), 1);
      },
      {"strategy.expert_routing = {", "needs a mixture-of-experts model"});
}

// A mixture-of-experts model like model(): 16 experts of 1408, top-2, 2 shared experts of 1408,
// the first layer dense.
ModelSpec moe_model() {
  Json j = to_json(model());
  j.update({{"num_experts", 16},
            {"num_experts_per_tok", 2},
            {"moe_intermediate_size", 1408},
            {"n_shared_experts", 2},
            {"first_k_dense_replace", 1}});
  return parse_model(j);
}

TEST(Validate, Rule7ExpertParallelismOnAnMoeModel) {
  const ModelSpec m = moe_model();
  EXPECT_NO_THROW(validate(m, strategy({{"dp", 8}, {"ep", 8}}), 8));
  EXPECT_NO_THROW(validate(m, strategy({{"dp", 4}, {"tp", 2}, {"ep", 4}, {"expert_tp", 1}}), 8));
  EXPECT_NO_THROW(validate(m, strategy({{"dp", 2}, {"tp", 4}, {"ep", 2}, {"expert_tp", 2}}), 8));
  EXPECT_NO_THROW(
      validate(m, strategy({{"dp", 2}, {"ep", 2}, {"expert_capacity_factor", 1.5}}), 2));
  expect_config_error(
      [&] {
        validate(m, strategy({{"dp", 4}, {"ep", 3}}), 4);
      },
      {"strategy.ep = 3", "must divide dp x cp (4 x 1)"});
  // Drawn from dp x cp (Megatron-Core): ep 4 of dp 2 x cp 2; ep 3 of dp 3 x cp 2 would straddle
  // the cp digit.
  EXPECT_NO_THROW(
      validate(m, strategy({{"dp", 2}, {"cp", 2}, {"ep", 4}, {"attention", "fused"}}), 4));
  expect_config_error(
      [&] {
        validate(m,
                 strategy({{"dp", 3},
                           {"cp", 2},
                           {"ep", 3},
                           {"attention", "fused"},
                           {"global_batch_size", 66}}),
                 6);
      },
      {"strategy.ep = 3", "with cp = 2 must split it evenly (3 and 2 must divide one another)"});
  // 16 experts over 32 expert-parallel ranks: not whole experts.
  expect_config_error(
      [&] {
        validate(m, strategy({{"dp", 32}, {"ep", 32}}), 32);
      },
      {"strategy.ep = 32", "must divide num_experts (16)"});
  expect_config_error(
      [&] {
        validate(m, strategy({{"dp", 2}, {"tp", 2}, {"expert_tp", 4}}), 4);
      },
      {"strategy.expert_tp = 4", "must divide tp (2)"});
  // moe_intermediate_size 1408 = 2^7 * 11: expert_tp 256 divides tp 256 but not 1408.
  Json wide = to_json(m);
  wide.update({{"num_attention_heads", 256},
               {"num_key_value_heads", 256},
               {"hidden_size", 4096},
               {"intermediate_size", 4096},
               {"vocab_size", 32768},
               {"shared_expert_intermediate_size", 4096}});
  expect_config_error(
      [&] {
        validate(parse_model(wide), strategy({{"tp", 256}}), 256);
      },
      {"strategy.expert_tp = 256", "moe_intermediate_size (1408) must be divisible by expert_tp"});
  // Shared experts are split by tp like the dense MLP.
  Json shared = to_json(m);
  shared["shared_expert_intermediate_size"] = 1001;
  expect_config_error(
      [&] {
        validate(parse_model(shared), strategy({{"tp", 2}, {"expert_tp", 1}}), 2);
      },
      {"strategy.tp = 2", "shared_expert_intermediate_size (1001) must be divisible by tp"});
  // Explicit fractions: one per routed expert.
  expect_config_error(
      [&] {
        validate(m,
                 strategy({{"expert_routing",
                            {{"distribution", "explicit"}, {"fractions", {1, 2, 3}}}}}),
                 1);
      },
      {"strategy.expert_routing.fractions = [1.0,2.0,3.0]", "one fraction per routed expert",
       "num_experts = 16", "it has 3"});
}

// A model whose every layer is MoE has no MLP of intermediate_size: tp need not divide it (the
// experts' width is checked against expert_tp instead).
TEST(Validate, AllMoeModelChecksTheExpertWidthNotTheDenseOne) {
  Json j = to_json(moe_model());
  j["first_k_dense_replace"] = 0;
  j["intermediate_size"] = 1001;
  j.erase("n_shared_experts");
  j.erase("shared_expert_intermediate_size");
  EXPECT_NO_THROW(validate(parse_model(j), strategy({{"tp", 2}}), 2));
  j["first_k_dense_replace"] = 1;
  expect_config_error(
      [&] {
        validate(parse_model(j), strategy({{"tp", 2}}), 2);
      },
      {"strategy.tp = 2", "intermediate_size (1001) must be divisible by tp"});
}

TEST(StrategyParse, ExpertFields) {
  const StrategySpec d = parse_strategy(base());
  EXPECT_EQ(d.expert_tp, 0);
  EXPECT_EQ(d.expert_capacity_factor, 0.0);
  EXPECT_EQ(d.expert_routing.kind, ExpertRoutingKind::kUniform);
  for (const char* key : {"expert_tp", "expert_capacity_factor", "expert_routing"}) {
    EXPECT_FALSE(to_json(d).contains(key)) << key;  // dense strategies' JSON stays as it was
  }
  EXPECT_EQ(strategy({{"tp", 4}}).expert_tp_size(), 4);  // Megatron-Core: defaults to tp
  EXPECT_EQ(strategy({{"tp", 4}, {"expert_tp", 2}}).expert_tp_size(), 2);
  EXPECT_EQ(strategy({{"expert_capacity_factor", nullptr}}).expert_capacity_factor, 0.0);
  const StrategySpec s =
      strategy({{"expert_tp", 1},
                {"expert_capacity_factor", 1.25},
                {"expert_routing", {{"distribution", "explicit"}, {"fractions", {3, 1, 0, 0}}}}});
  EXPECT_DOUBLE_EQ(s.expert_capacity_factor, 1.25);
  EXPECT_EQ(s.expert_routing.fractions, (std::vector<double>{3, 1, 0, 0}));
  EXPECT_EQ(to_json(parse_strategy(to_json(s))), to_json(s));
  const StrategySpec z =
      strategy({{"expert_routing", {{"distribution", "zipf"}, {"exponent", 1.2}}}});
  EXPECT_DOUBLE_EQ(z.expert_routing.zipf_exponent, 1.2);
  EXPECT_EQ(to_json(parse_strategy(to_json(z))), to_json(z));
}

TEST(StrategyParse, ExpertFieldsAreValidated) {
  const auto bad = [](const Json& changes, const std::vector<std::string>& parts) {
    SCOPED_TRACE(changes.dump());
    expect_config_error([&] { strategy(changes); }, parts);
  };
  bad({{"expert_tp", 0}}, {"strategy.expert_tp = 0", "positive integer"});
  bad({{"expert_capacity_factor", 0}},
      {"strategy.expert_capacity_factor = 0", "finite number > 0", "dropless"});
  bad({{"expert_capacity_factor", -1.0}}, {"strategy.expert_capacity_factor = -1"});
  bad({{"expert_capacity_factor", "auto"}}, {"strategy.expert_capacity_factor = \"auto\""});
  bad({{"expert_routing", "zipf"}}, {"strategy.expert_routing = \"zipf\""});
  bad({{"expert_routing", {{"distribution", "normal"}}}},
      {"strategy.expert_routing.distribution = \"normal\"", "\"uniform\", \"zipf\", \"explicit\""});
  bad({{"expert_routing", {{"distribution", "zipf"}}}},
      {"strategy.expert_routing.exponent", "required by distribution \"zipf\""});
  bad({{"expert_routing", {{"distribution", "zipf"}, {"exponent", 0}}}},
      {"strategy.expert_routing.exponent = 0", "must be > 0"});
  bad({{"expert_routing", {{"distribution", "uniform"}, {"exponent", 1}}}},
      {"strategy.expert_routing.exponent = 1", "does not apply to distribution \"uniform\""});
  bad({{"expert_routing", {{"distribution", "zipf"}, {"exponent", 1}, {"fractions", {1}}}}},
      {"strategy.expert_routing.fractions = [1]", "does not apply"});
  bad({{"expert_routing", {{"distribution", "explicit"}, {"fractions", Json::array()}}}},
      {"strategy.expert_routing.fractions = []", "non-empty list"});
  bad({{"expert_routing", {{"distribution", "explicit"}, {"fractions", {1, -1}}}}},
      {"strategy.expert_routing.fractions[1] = -1", "non-negative"});
  bad({{"expert_routing", {{"distribution", "explicit"}, {"fractions", {0, 0}}}}},
      {"strategy.expert_routing.fractions = [0,0]", "positive sum"});
  bad({{"expert_routing", {{"distribution", "uniform"}, {"skew", 1}}}},
      {"strategy.expert_routing", "skew"});
}

TEST(ExpertRouting, TokenFractions) {
  const auto fractions = [](const Json& routing, int experts) {
    return expert_token_fractions(strategy({{"expert_routing", routing}}), experts);
  };
  EXPECT_EQ(expert_token_fractions(parse_strategy(base()), 4),
            (std::vector<double>{0.25, 0.25, 0.25, 0.25}));
  // Zipf with exponent 1 over 3 experts: 1, 1/2, 1/3 over 11/6.
  const std::vector<double> z = fractions({{"distribution", "zipf"}, {"exponent", 1.0}}, 3);
  ASSERT_EQ(z.size(), 3u);
  EXPECT_DOUBLE_EQ(z[0], 6.0 / 11);
  EXPECT_DOUBLE_EQ(z[1], 3.0 / 11);
  EXPECT_DOUBLE_EQ(z[2], 2.0 / 11);
  const std::vector<double> e =
      fractions({{"distribution", "explicit"}, {"fractions", {3, 1, 0, 4}}}, 4);
  EXPECT_EQ(e, (std::vector<double>{0.375, 0.125, 0.0, 0.5}));
  double sum = 0;
  for (double v : fractions({{"distribution", "zipf"}, {"exponent", 1.2}}, 64)) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-12);
}

// Rule 10: hybrid sharding. The shard group divides dp, is smaller than dp only under ZeRO-3,
// and not with per-layer tp changes.
TEST(Validate, Rule10ZeroShardGroup) {
  const ModelSpec m = model();
  EXPECT_NO_THROW(
      validate(m, strategy({{"dp", 8}, {"zero_stage", 3}, {"zero_shard_group", 4}}), 8));
  EXPECT_NO_THROW(
      validate(m, strategy({{"dp", 8}, {"zero_stage", 3}, {"zero_shard_group", 1}}), 8));
  // The whole dp group is full sharding, as without the key: any stage.
  EXPECT_NO_THROW(
      validate(m, strategy({{"dp", 8}, {"zero_stage", 1}, {"zero_shard_group", 8}}), 8));
  expect_config_error(
      [&] {
        validate(m, strategy({{"dp", 8}, {"zero_stage", 3}, {"zero_shard_group", 3}}), 8);
      },
      {"strategy.zero_shard_group = 3", "must divide dp (8)"});
  expect_config_error(
      [&] {
        validate(m, strategy({{"dp", 4}, {"zero_stage", 3}, {"zero_shard_group", 8}}), 4);
      },
      {"strategy.zero_shard_group = 8", "must divide dp (4)"});
  expect_config_error(
      [&] {
        validate(m, strategy({{"dp", 8}, {"zero_stage", 2}, {"zero_shard_group", 4}}), 8);
      },
      {"strategy.zero_shard_group = 4", "needs zero_stage 3 (zero_stage is 2)"});
  expect_config_error(
      [&] {
        validate(m,
                 strategy({{"dp", 4},
                           {"tp", 2},
                           {"zero_stage", 3},
                           {"zero_shard_group", 2},
                           {"order", "tp-dp-pp"},
                           {"layer_overrides", {{{"layers", {0, 1}}, {"tp", 4}}}}}),
                 8);
      },
      {"strategy.zero_shard_group = 2", "strategy.layer_overrides[0].tp", "not lowered"});
}

// The zero-bubble schedules: parsed by name, one model chunk per rank, and not with
// tp_comm_overlap (whose rings run beside the weight-gradient GEMMs they move).
TEST(Validate, ZeroBubbleSchedules) {
  const ModelSpec m = model();
  EXPECT_EQ(strategy({{"schedule", "zb-h1"}}).schedule, Schedule::kZbH1);
  EXPECT_EQ(strategy({{"schedule", "zb-h2"}}).schedule, Schedule::kZbH2);
  EXPECT_EQ(to_json(strategy({{"schedule", "zb-h2"}}))["schedule"], "zb-h2");
  validate(m, strategy({{"pp", 4}, {"tp", 2}, {"schedule", "zb-h1"}}), 8);
  expect_config_error([&] { strategy({{"schedule", "zb-h1"}, {"virtual_stages", 2}}); },
                      {"virtual_stages = 2", "needs schedule \"interleaved-1f1b\""});
  expect_config_error(
      [&] {
        validate(m,
                 strategy({{"tp", 2},
                           {"sequence_parallel", true},
                           {"tp_comm_overlap", true},
                           {"schedule", "zb-h2"}}),
                 2);
      },
      {"strategy.tp_comm_overlap = true", "not lowered with schedule \"zb-h2\""});
}

TEST(Validate, Rule8OverrideRanges) {
  const ModelSpec m = model();  // 32 layers
  auto one = [](const Json& o) {
    return strategy({{"tp", 2}, {"dp", 4}, {"layer_overrides", {o}}});
  };
  expect_config_error(
      [&] {
        validate(m, one({{"layers", {5, 3}}, {"recompute", "full"}}), 8);
      },
      {"strategy.layer_overrides[0].layers = [5,3]", "first (5) must not exceed last (3)"});
  expect_config_error(
      [&] {
        validate(m, one({{"layers", {30, 32}}, {"recompute", "full"}}), 8);
      },
      {"strategy.layer_overrides[0].layers = [30,32]", "must lie in [0, 31]",
       "num_hidden_layers = 32"});
  expect_config_error(
      [&] {
        validate(m, one({{"layers", {-1, 2}}, {"recompute", "full"}}), 8);
      },
      {"strategy.layer_overrides[0].layers = [-1,2]", "must lie in [0, 31]"});
  const StrategySpec overlap = strategy({{"layer_overrides",
                                          {{{"layers", {0, 5}}, {"recompute", "full"}},
                                           {{"layers", {5, 9}}, {"recompute", "none"}}}}});
  expect_config_error([&] { validate(m, overlap, 1); },
                      {"strategy.layer_overrides[1].layers = [5,9]",
                       "overlaps strategy.layer_overrides[0].layers = [0,5]"});
}

TEST(Validate, Rule8OverrideTensorParallelism) {
  const ModelSpec m = model();  // 32 heads, 8 kv-heads, ffn 2816 = 2^8 * 11
  auto one = [](int tp, int dp, int mbs, int override_tp) {
    return strategy({{"tp", tp},
                     {"dp", dp},
                     {"micro_batch_size", mbs},
                     {"layer_overrides", {{{"layers", {0, 1}}, {"tp", override_tp}}}}});
  };
  expect_config_error([&] { validate(m, one(2, 4, 1, 3), 8); },
                      {"strategy.layer_overrides[0].tp = 3",
                       "must divide tp*dp = 2*4 = 8, the devices of a pipeline stage"});
  expect_config_error([&] { validate(m, one(2, 8, 1, 16), 16); },
                      {"strategy.layer_overrides[0].tp = 16",
                       "num_key_value_heads (8) must be divisible by the override's tp"});
  expect_config_error([&] { validate(m, one(1, 64, 1, 64), 64); },
                      {"strategy.layer_overrides[0].tp = 64",
                       "num_attention_heads (32) must be divisible by the override's tp"});
  // tp 4 -> tp' 1 makes dp' = 8 > dp = 2: a micro-batch of 1*2 samples cannot feed 8 replicas.
  expect_config_error([&] { validate(m, one(4, 2, 1, 1), 8); },
                      {"strategy.layer_overrides[0].tp = 1", "dp' = tp*dp/tp' = 8/1 = 8",
                       "micro_batch_size*dp = 1*2 = 2 samples", "over 8 replicas"});
  EXPECT_NO_THROW(validate(m, one(4, 2, 4, 1), 8));
  EXPECT_NO_THROW(validate(m, one(2, 4, 1, 8), 8));
}

TEST(Validate, Rule8OverrideFfnDivisibility) {
  const ModelSpec m = parse_model(Json{{"name", "m"},
                                       {"family", "llama"},
                                       {"num_hidden_layers", 2},
                                       {"hidden_size", 64},
                                       {"num_attention_heads", 8},
                                       {"intermediate_size", 100},
                                       {"vocab_size", 64},
                                       {"seq_length", 16}});
  const StrategySpec s =
      strategy({{"tp", 2}, {"dp", 4}, {"layer_overrides", {{{"layers", {0, 0}}, {"tp", 8}}}}});
  expect_config_error([&] { validate(m, s, 8); },
                      {"strategy.layer_overrides[0].tp = 8",
                       "intermediate_size (100) must be divisible by the override's tp"});
}

// --- per-layer and per-stage views -----------------------------------------------------------

TEST(LayerStrategy, AppliesOverrides) {
  const StrategySpec s = strategy({{"tp", 4},
                                   {"dp", 2},
                                   {"micro_batch_size", 4},
                                   {"recompute", "selective"},
                                   {"layer_overrides",
                                    {{{"layers", {0, 3}}, {"tp", 1}, {"recompute", "full"}},
                                     {{"layers", {10, 12}}, {"tp", 8}},
                                     {{"layers", {20, 20}}, {"recompute", "none"}}}}});
  validate(model(), s, 8);
  const LayerStrategy plain = layer_strategy(s, 5);
  EXPECT_EQ(plain.tp, 4);
  EXPECT_EQ(plain.dp, 2);
  EXPECT_EQ(plain.recompute, Recompute::kSelective);
  EXPECT_EQ(plain.micro_batch_size, 4);
  const LayerStrategy wide = layer_strategy(s, 3);
  EXPECT_EQ(wide.tp, 1);
  EXPECT_EQ(wide.dp, 8);
  EXPECT_EQ(wide.recompute, Recompute::kFull);
  EXPECT_EQ(wide.micro_batch_size, 1);  // 4*2 samples over 8 replicas
  const LayerStrategy narrow = layer_strategy(s, 12);
  EXPECT_EQ(narrow.tp, 8);
  EXPECT_EQ(narrow.dp, 1);
  EXPECT_EQ(narrow.recompute, Recompute::kSelective);
  EXPECT_EQ(narrow.micro_batch_size, 8);
  const LayerStrategy no_recompute = layer_strategy(s, 20);
  EXPECT_EQ(no_recompute.tp, 4);
  EXPECT_EQ(no_recompute.recompute, Recompute::kNone);
  for (int layer = 0; layer < 32; ++layer) {
    const LayerStrategy ls = layer_strategy(s, layer);
    EXPECT_EQ(ls.tp * ls.dp, 8) << layer;
    EXPECT_EQ(ls.micro_batch_size * ls.dp, 8) << layer;
  }
}

TEST(StagePartition, EvenUnevenAndInterleaved) {
  const ModelSpec m = model();  // 32 layers
  EXPECT_EQ(stage_partition(m, strategy({{"pp", 4}})), std::vector<int>(4, 8));
  EXPECT_EQ(stage_partition(m, strategy({{"pp", 1}})), std::vector<int>{32});
  const StrategySpec v =
      strategy({{"pp", 4}, {"schedule", "interleaved-1f1b"}, {"virtual_stages", 2}});
  EXPECT_EQ(stage_partition(m, v), std::vector<int>(8, 4));  // index = chunk*pp + stage
  const std::vector<int> uneven = {7, 9, 9, 7};
  EXPECT_EQ(stage_partition(m, strategy({{"pp", 4}, {"stage_layers", uneven}})), uneven);
  expect_config_error(
      [&] {
        stage_partition(m, strategy({{"pp", 5}}));
      },
      {"strategy.pp = 5", "use stage_layers"});
}

// --- names, round trip, bundled files --------------------------------------------------------

TEST(StrategyNames, DimsSchedulesRecompute) {
  EXPECT_STREQ(dim_name(Dim::kTp), "tp");
  EXPECT_STREQ(dim_name(Dim::kCp), "cp");
  EXPECT_STREQ(dim_name(Dim::kEp), "ep");
  EXPECT_STREQ(dim_name(Dim::kDp), "dp");
  EXPECT_STREQ(dim_name(Dim::kPp), "pp");
  EXPECT_STREQ(schedule_name(Schedule::kGPipe), "gpipe");
  EXPECT_STREQ(schedule_name(Schedule::kOneFOneB), "1f1b");
  EXPECT_STREQ(schedule_name(Schedule::kInterleaved), "interleaved-1f1b");
  EXPECT_STREQ(recompute_name(Recompute::kNone), "none");
  EXPECT_STREQ(recompute_name(Recompute::kSelective), "selective");
  EXPECT_STREQ(recompute_name(Recompute::kFull), "full");
}

TEST(StrategySpec, ToJsonRoundTrips) {
  const StrategySpec s =
      strategy({{"dp", 2},
                {"tp", 4},
                {"pp", 2},
                {"order", "dp-tp-pp"},
                {"schedule", "interleaved-1f1b"},
                {"virtual_stages", 2},
                {"zero_stage", 2},
                {"recompute", "selective"},
                {"precision", "fp32"},
                {"grad_accumulation", "autograd"},
                {"attention", "fused"},
                {"layer_overrides",
                 {{{"layers", {0, 1}}, {"tp", 2}}, {{"layers", {2, 2}}, {"recompute", "full"}}}},
                {"stage_layers", {8, 8, 8, 8}},
                {"collectives", {{"grad_bucket_MiB", 12.5}, {"param_prefetch", 2}}},
                {"source", "x"}});
  const Json once = to_json(s);
  const StrategySpec again = parse_strategy(once);
  EXPECT_EQ(to_json(again), once);
  EXPECT_EQ(again.order, s.order);
  EXPECT_EQ(again.grad_accumulation, GradAccumulation::kAutograd);
  EXPECT_EQ(once["grad_accumulation"], "autograd");
  EXPECT_EQ(again.attention, AttentionImpl::kFused);
  EXPECT_EQ(once["attention"], "fused");
  EXPECT_EQ(again.layer_overrides.size(), 2u);
  EXPECT_EQ(again.layer_overrides[1].recompute, static_cast<int>(Recompute::kFull));
  EXPECT_EQ(again.stage_layers, s.stage_layers);
  EXPECT_DOUBLE_EQ(again.collectives.grad_bucket_bytes, s.collectives.grad_bucket_bytes);
  EXPECT_EQ(once["order"], "dp-tp-pp-cp-ep");
  EXPECT_EQ(again.collectives.param_prefetch, 2);
  StrategySpec z =
      parse_strategy(with(base(), {{"dp", 4}, {"zero_stage", 3}, {"zero_shard_group", 2}}));
  EXPECT_EQ(parse_strategy(to_json(z)).zero_shard_group, 2);
  EXPECT_EQ(to_json(z)["zero_shard_group"], 2);
}

// --- FP8 (strategy fp8) ------------------------------------------------------------------------

TEST(StrategyParse, Fp8FormatsAndDelayedScaling) {
  const StrategySpec h = strategy({{"fp8", "hybrid"}});
  EXPECT_EQ(h.fp8, Fp8Format::kHybrid);
  EXPECT_TRUE(h.uses_fp8());
  EXPECT_EQ(h.fp8_amax_history_len, 1024);
  EXPECT_EQ(h.fp8_amax_compute_algo, AmaxComputeAlgo::kMax);
  EXPECT_EQ(strategy({{"fp8", "e4m3"}}).fp8, Fp8Format::kE4m3);
  EXPECT_EQ(strategy({{"fp8", "none"}}).fp8, Fp8Format::kNone);
  const StrategySpec mcore = strategy({{"fp8", "hybrid"},
                                       {"fp8_amax_history_len", 1},
                                       {"fp8_amax_compute_algo", "most_recent"}});
  EXPECT_EQ(mcore.fp8_amax_history_len, 1);  // Megatron-Core's flag defaults
  EXPECT_EQ(mcore.fp8_amax_compute_algo, AmaxComputeAlgo::kMostRecent);
  expect_config_error([&] { strategy({{"fp8", "e5m2"}}); },
                      {"strategy.fp8 = \"e5m2\"", "\"none\", \"hybrid\", \"e4m3\""});
  expect_config_error([&] { strategy({{"fp8", "hybrid"}, {"fp8_amax_history_len", 0}}); },
                      {"strategy.fp8_amax_history_len = 0"});
  expect_config_error(
      [&] { strategy({{"fp8", "hybrid"}, {"fp8_amax_compute_algo", "mean"}}); },
      {"strategy.fp8_amax_compute_algo = \"mean\"", "\"max\", \"most_recent\""});
  // FP8 GEMMs live inside 16-bit training.
  expect_config_error([&] { strategy({{"fp8", "hybrid"}, {"precision", "fp32"}}); },
                      {"strategy.fp8 = \"hybrid\"", "needs precision \"bf16\" or \"fp16\"",
                       "precision is \"fp32\""});
  EXPECT_EQ(strategy({{"fp8", "hybrid"}, {"precision", "fp16"}}).fp8, Fp8Format::kHybrid);
  // Scaling settings with nothing to scale would be silently unused.
  expect_config_error([&] { strategy({{"fp8_amax_history_len", 16}}); },
                      {"strategy.fp8_amax_history_len = 16", "no layer runs FP8"});
  expect_config_error([&] { strategy({{"fp8_amax_compute_algo", "max"}}); },
                      {"strategy.fp8_amax_compute_algo = \"max\"", "no layer runs FP8"});
}

TEST(StrategyParse, Fp8PerLayerOverrides) {
  // Keep the first and last layers in 16 bits (Megatron-Core's --first-last-layers-bf16).
  const StrategySpec s = strategy(
      {{"fp8", "hybrid"},
       {"layer_overrides",
        {{{"layers", {0, 0}}, {"fp8", "none"}}, {{"layers", {31, 31}}, {"fp8", "none"}}}}});
  EXPECT_EQ(layer_strategy(s, 0).fp8, Fp8Format::kNone);
  EXPECT_EQ(layer_strategy(s, 1).fp8, Fp8Format::kHybrid);
  EXPECT_EQ(layer_strategy(s, 30).fp8, Fp8Format::kHybrid);
  EXPECT_EQ(layer_strategy(s, 31).fp8, Fp8Format::kNone);
  // Or the other way: FP8 only in some layers.
  const StrategySpec some = strategy({{"layer_overrides", {{{"layers", {4, 7}}, {"fp8", "e4m3"}}}},
                                      {"fp8_amax_history_len", 16}});
  EXPECT_TRUE(some.uses_fp8());
  EXPECT_EQ(layer_strategy(some, 3).fp8, Fp8Format::kNone);
  EXPECT_EQ(layer_strategy(some, 4).fp8, Fp8Format::kE4m3);
  expect_config_error(
      [&] {
        strategy({{"precision", "fp32"},
                  {"layer_overrides", {{{"layers", {0, 0}}, {"fp8", "hybrid"}}}}});
      },
      {"strategy.layer_overrides[0].fp8 = \"hybrid\"", "needs precision"});
  expect_config_error(
      [&] { strategy({{"layer_overrides", {{{"layers", {0, 0}}, {"fp8", "e5m2"}}}}}); },
      {"strategy.layer_overrides[0].fp8 = \"e5m2\""});
  expect_config_error([&] { strategy({{"layer_overrides", {{{"layers", {0, 0}}}}}}); },
                      {"an override must set tp, recompute or fp8"});
}

TEST(StrategySpec, Fp8RoundTripsAndKeepsOldHashes) {
  const StrategySpec s = strategy(
      {{"fp8", "hybrid"},
       {"fp8_amax_history_len", 16},
       {"fp8_amax_compute_algo", "most_recent"},
       {"layer_overrides", {{{"layers", {0, 0}}, {"fp8", "none"}}}}});
  const Json once = to_json(s);
  EXPECT_EQ(once["fp8"], "hybrid");
  EXPECT_EQ(once["fp8_amax_history_len"], 16);
  EXPECT_EQ(once["fp8_amax_compute_algo"], "most_recent");
  EXPECT_EQ(once["layer_overrides"][0]["fp8"], "none");
  const StrategySpec again = parse_strategy(once);
  EXPECT_EQ(to_json(again), once);
  EXPECT_EQ(again.layer_overrides[0].fp8, static_cast<int>(Fp8Format::kNone));
  // Without FP8 nothing new is written, so existing specs keep their hashes.
  const Json plain = to_json(strategy({{"layer_overrides", {{{"layers", {0, 0}}, {"tp", 1}}}}}));
  EXPECT_FALSE(plain.contains("fp8"));
  EXPECT_FALSE(plain["layer_overrides"][0].contains("fp8"));
}

TEST(StrategySpec, Fp8NeedsADeviceWithAnFp8Peak) {
  const ClusterSpec h100 = load_cluster(kRoot + "/configs/clusters/dgx-h100-128n.json");
  const ClusterSpec a100 = load_cluster(kRoot + "/configs/clusters/dgx-a100-128n.json");
  const ClusterSpec hetero = load_cluster(kRoot + "/configs/clusters/hetero-a100-h100.json");
  const StrategySpec s = strategy({{"fp8", "hybrid"}});
  EXPECT_NO_THROW(validate_devices(h100, s, 8));
  EXPECT_NO_THROW(validate_devices(a100, strategy(Json::object()), 8));  // no FP8: no rule
  expect_config_error([&] { validate_devices(a100, s, 8); },
                      {"strategy.fp8 = \"hybrid\"", "device \"A100-SXM4-80GB\"",
                       "cluster.gpu.peak_tflops.fp8", "FP8 tensor cores"});
  // Ranks are numbered group by group: the A100 group comes first.
  expect_config_error([&] { validate_devices(hetero, s, 64); },
                      {"device \"A100-SXM4-80GB\"", "cluster.node_groups[0].gpu.peak_tflops.fp8"});
  // Through an override alone.
  const StrategySpec layer =
      strategy({{"layer_overrides", {{{"layers", {1, 1}}, {"fp8", "hybrid"}}}}});
  expect_config_error([&] { validate_devices(a100, layer, 8); },
                      {"strategy.layer_overrides", "device \"A100-SXM4-80GB\""});
}

TEST(StrategySpec, TpCommOverlapRules) {
  const StrategySpec s = strategy({{"tp", 4}, {"sequence_parallel", true}, {"tp_comm_overlap", true}});
  EXPECT_TRUE(s.tp_comm_overlap);
  EXPECT_EQ(s.tp_comm_overlap_sms, 1);  // Transformer Engine's ring exchange
  EXPECT_NO_THROW(validate(model(), s, 4));
  EXPECT_EQ(strategy({{"tp_comm_overlap", true}, {"tp_comm_overlap_sms", 16}}).tp_comm_overlap_sms,
            16);
  // Round trip; strategies without it keep their JSON (and hashes).
  EXPECT_EQ(to_json(parse_strategy(to_json(s))), to_json(s));
  EXPECT_FALSE(to_json(strategy(Json::object())).contains("tp_comm_overlap"));
  // It splits sequence parallelism's collectives: without them there is nothing to overlap.
  expect_config_error(
      [&] { validate(model(), strategy({{"tp", 4}, {"tp_comm_overlap", true}}), 4); },
      {"strategy.tp_comm_overlap = true", "sequence_parallel = true (it is false)"});
  expect_config_error(
      [&] {
        validate(model(), strategy({{"sequence_parallel", true}, {"tp_comm_overlap", true}}), 1);
      },
      {"strategy.tp_comm_overlap = true", "tp >= 2 (tp = 1)"});
  expect_config_error([&] { strategy({{"tp_comm_overlap_sms", 4}}); },
                      {"strategy.tp_comm_overlap_sms = 4", "tp_comm_overlap is false"});
  expect_config_error([&] { strategy({{"tp_comm_overlap", true}, {"tp_comm_overlap_sms", -1}}); },
                      {"strategy.tp_comm_overlap_sms = -1", "from 0 to 1024"});
  // The device's SM count prices the overlapped GEMMs.
  const ClusterSpec h100 = load_cluster(kRoot + "/configs/clusters/dgx-h100-128n.json");
  EXPECT_EQ(h100.node_groups[0].gpu.sms, 132);
  EXPECT_NO_THROW(validate_devices(h100, s, 8));
  ClusterSpec bare = h100;
  bare.node_groups[0].gpu.sms = 0;
  expect_config_error([&] { validate_devices(bare, s, 8); },
                      {"strategy.tp_comm_overlap = true", "device \"H100-SXM5-80GB\"",
                       "cluster.gpu.sms is not given"});
  expect_config_error(
      [&] {
        validate_devices(h100, strategy({{"tp_comm_overlap", true}, {"tp_comm_overlap_sms", 132}}),
                         8);
      },
      {"strategy.tp_comm_overlap_sms = 132", "fewer than", "132 SMs"});
}

// Every bundled strategy is validated against the model its name starts with.
TEST(StrategySpec, EveryBundledStrategyValidatesAgainstItsModel) {
  const std::map<std::string, std::string> model_of = {
      {"gpt3-175b-", "gpt3-175b"}, {"llama2-7b-", "llama2-7b"}, {"tiny-", "gpt-tiny"},
      {"bench-10m-", "gpt-10m"},   {"gpt2-", "gpt2-124m"},      {"mixtral-8x7b-", "mixtral-8x7b"}};
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kRoot + "/configs/strategies")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    const StrategySpec s = load_strategy(entry.path().string());
    const std::string stem = entry.path().stem().string();
    EXPECT_EQ(s.name, stem);
    EXPECT_FALSE(s.source.empty());
    if (stem.rfind("ctr-", 0) == 0) {  // parameter servers for the recommendation model
      ASSERT_TRUE(s.ps.has_value());
      const RecModelSpec m = parse_rec_model(
          json::parse_file(kRoot + "/configs/models/ctr-criteo.json"));
      EXPECT_EQ(s.global_batch_size % s.dp, 0);
      EXPECT_GT(rec_ps_traffic(m, s).pull_bytes.size(), 0u);
      EXPECT_EQ(to_json(parse_strategy(to_json(s))), to_json(s));
      ++count;
      continue;
    }
    std::string model_name;
    for (const auto& [prefix, name] : model_of) {
      if (stem.rfind(prefix, 0) == 0) model_name = name;
    }
    ASSERT_FALSE(model_name.empty()) << "no model known for strategy " << stem;
    const ModelSpec m = load_model(kRoot + "/configs/models/" + model_name + ".json");
    EXPECT_NO_THROW(validate(m, s, s.world_size()));
    int layers = 0;
    for (int n : stage_partition(m, s)) layers += n;
    EXPECT_EQ(layers, m.num_hidden_layers);
    EXPECT_EQ(to_json(parse_strategy(to_json(s))), to_json(s));
    ++count;
  }
  EXPECT_GE(count, 7);
}

TEST(StrategySpec, BundledGpt3Layouts) {
  const StrategySpec a = load_strategy(kRoot + "/configs/strategies/gpt3-175b-tp8-pp8-dp16.json");
  EXPECT_EQ(a.world_size(), 1024);
  EXPECT_EQ(a.num_micro_batches(), 96);
  EXPECT_EQ(a.zero_stage, 1);
  EXPECT_EQ(a.recompute, Recompute::kSelective);
  EXPECT_TRUE(a.sequence_parallel);
  const StrategySpec b =
      load_strategy(kRoot + "/configs/strategies/gpt3-175b-tp8-pp16-dp8-interleaved.json");
  EXPECT_EQ(b.world_size(), 1024);
  EXPECT_EQ(b.schedule, Schedule::kInterleaved);
  EXPECT_EQ(b.num_micro_batches() % b.pp, 0);
  const ModelSpec m = load_model(kRoot + "/configs/models/gpt3-175b.json");
  EXPECT_EQ(stage_partition(m, b), std::vector<int>(b.pp * b.virtual_stages, 2));
}

TEST(StrategySpec, LoadErrorsNameTheFile) {
  expect_config_error([&] { load_strategy(kRoot + "/configs/models/gpt-tiny.json"); },
                      {"gpt-tiny.json: strategy.", "unknown key"});
}

}  // namespace
}  // namespace strata::strategies
