// Model specs: our format and Hugging Face configs, every shape rule, and parameter counts
// against Megatron's eq. 2 (SC'21 Table 1) and published checkpoint sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "expect_config_error.hpp"
#include "strategies/rec_model.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

using json::Json;

const std::string kRoot = STRATA_SOURCE_DIR;

using testing::expect_config_error;

Json gpt_json() {
  return {{"name", "g"},       {"family", "gpt"},          {"num_hidden_layers", 4},
          {"hidden_size", 64}, {"num_attention_heads", 4}, {"vocab_size", 256},
          {"seq_length", 32}};
}

Json llama_json() {
  return {{"name", "l"},
          {"family", "llama"},
          {"num_hidden_layers", 2},
          {"hidden_size", 64},
          {"num_attention_heads", 8},
          {"num_key_value_heads", 2},
          {"intermediate_size", 160},
          {"vocab_size", 100},
          {"seq_length", 16}};
}

TEST(ModelSpec, ParsesGptWithFamilyDefaults) {
  const ModelSpec m = parse_model(gpt_json());
  EXPECT_EQ(m.name, "g");
  EXPECT_EQ(m.family, ModelFamily::kGpt);
  EXPECT_EQ(m.num_hidden_layers, 4);
  EXPECT_EQ(m.num_key_value_heads, 4);
  EXPECT_EQ(m.intermediate_size, 256);  // 4 * hidden
  EXPECT_EQ(m.hidden_act, Activation::kGelu);
  EXPECT_EQ(m.norm, NormKind::kLayerNorm);
  EXPECT_TRUE(m.tie_word_embeddings);
  EXPECT_TRUE(m.learned_position_embeddings);
  EXPECT_TRUE(m.bias);
  EXPECT_TRUE(m.dropout);
  EXPECT_DOUBLE_EQ(m.norm_eps, 1e-5);
  EXPECT_EQ(m.origin, "strata");
  EXPECT_EQ(m.head_dim(), 16);
  EXPECT_EQ(m.kv_hidden(), 64);
}

TEST(ModelSpec, ParsesLlamaWithFamilyDefaults) {
  const ModelSpec m = parse_model(llama_json());
  EXPECT_EQ(m.family, ModelFamily::kLlama);
  EXPECT_EQ(m.num_key_value_heads, 2);
  EXPECT_EQ(m.kv_hidden(), 16);
  EXPECT_EQ(m.hidden_act, Activation::kSwiglu);
  EXPECT_EQ(m.norm, NormKind::kRmsNorm);
  EXPECT_FALSE(m.tie_word_embeddings);
  EXPECT_FALSE(m.learned_position_embeddings);
  EXPECT_FALSE(m.bias);
  EXPECT_FALSE(m.dropout);
}

TEST(ModelSpec, ExplicitValuesOverrideFamilyDefaults) {
  Json j = gpt_json();
  j["hidden_act"] = "swiglu";
  j["norm"] = "rmsnorm";
  j["rms_norm_eps"] = 1e-6;
  j["tie_word_embeddings"] = false;
  j["position_embeddings"] = "rope";
  j["bias"] = false;
  j["dropout"] = false;
  j["intermediate_size"] = 96;
  const ModelSpec m = parse_model(j);
  EXPECT_EQ(m.hidden_act, Activation::kSwiglu);
  EXPECT_EQ(m.norm, NormKind::kRmsNorm);
  EXPECT_DOUBLE_EQ(m.norm_eps, 1e-6);
  EXPECT_FALSE(m.tie_word_embeddings);
  EXPECT_FALSE(m.learned_position_embeddings);
  EXPECT_FALSE(m.bias);
  EXPECT_FALSE(m.dropout);
  EXPECT_EQ(m.intermediate_size, 96);
}

TEST(ModelSpec, LlamaRequiresIntermediateSize) {
  Json j = llama_json();
  j.erase("intermediate_size");
  expect_config_error([&] { parse_model(j); },
                      {"model.intermediate_size", "required key is missing"});
}

TEST(ModelSpec, RejectsUnknownKeyAndListsKnownOnes) {
  Json j = gpt_json();
  j["hiden_size"] = 64;
  expect_config_error([&] { parse_model(j); },
                      {"model.hiden_size", "unknown key", "hidden_size", "source, notes"});
}

// 2^31 - 1 layers never finished lowering (issue 16): at most 10,000 (Hugging Face configs too).
TEST(ModelSpec, AtMostTenThousandLayers) {
  Json j = gpt_json();
  j["num_hidden_layers"] = 10000;
  EXPECT_EQ(parse_model(j).num_hidden_layers, 10000);
  j["num_hidden_layers"] = 2147483647;
  expect_config_error([&] { parse_model(j); },
                      {"model.num_hidden_layers = 2147483647", "at most 10000 layers"});
}

TEST(ModelSpec, AcceptsSourceAndNotes) {
  Json j = gpt_json();
  j["source"] = Json::array({"paper", "config"});
  j["notes"] = "anything";
  EXPECT_EQ(parse_model(j).source, "paper; config");
  j["source"] = 3;
  expect_config_error([&] { parse_model(j); }, {"model.source = 3", "must be a string"});
}

TEST(ModelSpec, RejectsNonPositiveAndNonIntegerSizes) {
  for (const char* key :
       {"num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "seq_length"}) {
    Json j = gpt_json();
    j[key] = 0;
    expect_config_error([&] { parse_model(j); },
                        {std::string("model.") + key + " = 0", "must be a positive integer"});
    j[key] = 2.5;
    expect_config_error([&] { parse_model(j); },
                        {std::string("model.") + key + " = 2.5", "must be an integer"});
    j[key] = "8";
    expect_config_error([&] { parse_model(j); },
                        {std::string("model.") + key + " = \"8\"", "must be an integer"});
  }
  Json j = gpt_json();
  j["intermediate_size"] = -4;
  expect_config_error([&] { parse_model(j); },
                      {"model.intermediate_size = -4", "must be a positive integer"});
}

TEST(ModelSpec, HiddenMustBeDivisibleByHeads) {
  Json j = gpt_json();
  j["num_attention_heads"] = 5;
  expect_config_error([&] { parse_model(j); },
                      {"model.hidden_size = 64", "must be divisible by num_attention_heads (5)"});
}

TEST(ModelSpec, HeadsMustBeDivisibleByKvHeads) {
  Json j = llama_json();
  j["num_key_value_heads"] = 3;
  expect_config_error([&] { parse_model(j); },
                      {"model.num_key_value_heads = 3",
                       "num_attention_heads (8) must be divisible by num_key_value_heads"});
}

TEST(ModelSpec, NameMustNotBeEmpty) {
  Json j = gpt_json();
  j["name"] = "";
  expect_config_error([&] { parse_model(j); }, {"model.name = \"\"", "must not be empty"});
}

TEST(ModelSpec, RejectsUnknownEnumValues) {
  Json j = gpt_json();
  j["family"] = "bert";
  expect_config_error([&] { parse_model(j); },
                      {"model.family = \"bert\"", "must be one of \"gpt\", \"llama\""});
  j = gpt_json();
  j["hidden_act"] = "relu";
  expect_config_error([&] { parse_model(j); },
                      {"model.hidden_act = \"relu\"", "\"gelu\", \"swiglu\""});
  j = gpt_json();
  j["norm"] = "batchnorm";
  expect_config_error([&] { parse_model(j); }, {"model.norm", "\"layernorm\", \"rmsnorm\""});
  j = gpt_json();
  j["position_embeddings"] = "alibi";
  expect_config_error([&] { parse_model(j); },
                      {"model.position_embeddings", "\"learned\", \"rope\""});
}

TEST(ModelSpec, EpsilonKeyMustMatchTheNorm) {
  Json j = gpt_json();
  j["rms_norm_eps"] = 1e-6;
  expect_config_error([&] { parse_model(j); },
                      {"model.rms_norm_eps", "norm is \"layernorm\"", "layer_norm_eps"});
  j = gpt_json();
  j["layer_norm_eps"] = 0;
  expect_config_error([&] { parse_model(j); }, {"model.layer_norm_eps = 0", "must be > 0"});
  j["layer_norm_eps"] = 1e-6;
  EXPECT_DOUBLE_EQ(parse_model(j).norm_eps, 1e-6);
}

TEST(ModelSpec, RejectsNonObject) {
  expect_config_error([&] { parse_model(Json::array()); }, {"model = []", "must be a JSON object"});
}

// --- parameter counts ------------------------------------------------------------------------

TEST(ModelParams, GptLayerIsTwelveHSquaredPlusThirteenH) {
  for (int h : {64, 768, 4096, 12288}) {
    Json j = gpt_json();
    j["hidden_size"] = h;
    const std::int64_t hh = h;
    EXPECT_EQ(layer_params(parse_model(j)), 12 * hh * hh + 13 * hh) << "h = " << h;
  }
}

TEST(ModelParams, GeneralFormulaByHand) {
  // h 64, 8 heads of 8, kv 2 heads -> kv_hidden 16, f 160, swiglu, rmsnorm, no bias, untied.
  const ModelSpec m = parse_model(llama_json());
  const std::int64_t attention = 2 * 64 * 64 + 2 * 64 * 16;
  const std::int64_t mlp = 3 * 64 * 160;
  EXPECT_EQ(layer_params(m), attention + mlp + 2 * 64);
  EXPECT_EQ(embedding_params(m), 100 * 64 + 64 + 100 * 64);
  EXPECT_EQ(total_params(m), 2 * layer_params(m) + embedding_params(m));

  Json j = llama_json();  // the same with biases: q,o +h, k,v +kv_hidden, gate/up +f, down +h
  j["bias"] = true;
  EXPECT_EQ(layer_params(parse_model(j)), layer_params(m) + 2 * 64 + 2 * 16 + 2 * 160 + 64);
  j = gpt_json();  // GPT, untied, rope: + V*h for the head, - s*h for the position table
  const std::int64_t tied = embedding_params(parse_model(j));
  j["tie_word_embeddings"] = false;
  j["position_embeddings"] = "rope";
  EXPECT_EQ(embedding_params(parse_model(j)), tied + 256 * 64 - 32 * 64);
}

// Megatron-LM SC'21 (arXiv:2104.04473) Table 1: params_billion, heads, hidden, layers (also in
// shared/data/published-reference.json); vocab 51200 and sequence 2048 for every row.
struct Table1Row {
  double params_billion;
  int heads, hidden, layers;
};
constexpr Table1Row kTable1[] = {{1.7, 24, 2304, 24},      {3.6, 32, 3072, 30},
                                 {7.5, 32, 4096, 36},      {18.4, 48, 6144, 40},
                                 {39.1, 64, 8192, 48},     {76.1, 80, 10240, 60},
                                 {145.6, 96, 12288, 80},   {310.1, 128, 16384, 96},
                                 {529.6, 128, 20480, 105}, {1008.0, 160, 25600, 128}};

TEST(ModelParams, ReproducesMegatronEquationTwoAndTable1) {
  for (const auto& row : kTable1) {
    Json j = gpt_json();
    j["num_hidden_layers"] = row.layers;
    j["hidden_size"] = row.hidden;
    j["num_attention_heads"] = row.heads;
    j["vocab_size"] = 51200;
    j["seq_length"] = 2048;
    const ModelSpec m = parse_model(j);
    const double l = row.layers, h = row.hidden, v = 51200, s = 2048;
    // Eq. 2: P = 12 l h^2 (1 + 13/(12h) + (V+s)/(12 l h)); it omits the final layernorm (2h).
    const double eq2 = 12 * l * h * h * (1 + 13 / (12 * h) + (v + s) / (12 * l * h));
    const std::int64_t final_norm = 2 * static_cast<std::int64_t>(row.hidden);
    EXPECT_EQ(total_params(m) - final_norm, std::llround(eq2)) << row.params_billion;
    EXPECT_DOUBLE_EQ(std::round(static_cast<double>(total_params(m)) / 1e8) / 10,
                     row.params_billion);
  }
}

TEST(ModelParams, Llama2_7bHuggingFaceConfig) {
  const ModelSpec m = load_model(kRoot + "/configs/models/llama2-7b-hf-config.json");
  EXPECT_EQ(total_params(m), 6'738'415'616);
  EXPECT_EQ(m.name, "meta-llama/Llama-2-7b-hf");
  EXPECT_EQ(m.origin, "huggingface:llama");
  EXPECT_EQ(m.seq_length, 4096);
  EXPECT_DOUBLE_EQ(m.norm_eps, 1e-5);
  // Our own llama2-7b.json describes the same model.
  const ModelSpec ours = load_model(kRoot + "/configs/models/llama2-7b.json");
  EXPECT_EQ(total_params(ours), 6'738'415'616);
  Json a = to_json(m), b = to_json(ours);
  for (const char* key : {"name", "source"}) {
    a.erase(key);
    b.erase(key);
  }
  EXPECT_EQ(a, b);
}

TEST(ModelParams, Llama2_70bGroupedQueryAttention) {
  // meta-llama/Llama-2-70b-hf: 68,976,648,192 parameters.
  const Json hf = {{"model_type", "llama"},    {"num_hidden_layers", 80},
                   {"hidden_size", 8192},      {"num_attention_heads", 64},
                   {"num_key_value_heads", 8}, {"intermediate_size", 28672},
                   {"vocab_size", 32000},      {"max_position_embeddings", 4096},
                   {"seq_length", 4096}};
  EXPECT_EQ(total_params(parse_model(hf)), 68'976'648'192);
}

TEST(ModelParams, Gpt2HuggingFaceConfig) {
  const ModelSpec m = load_model(kRoot + "/configs/models/gpt2-hf-config.json");
  EXPECT_EQ(total_params(m), 124'439'808);  // GPT-2 small, tied, with ln_f
  EXPECT_EQ(m.name, "gpt2");
  EXPECT_EQ(m.origin, "huggingface:gpt2");
  EXPECT_EQ(m.intermediate_size, 3072);
  EXPECT_EQ(m.seq_length, 1024);
  EXPECT_EQ(m.hidden_act, Activation::kGelu);
  EXPECT_TRUE(m.dropout);
  EXPECT_TRUE(m.tie_word_embeddings);
}

TEST(ModelParams, BundledGpt3And175bAndTiny) {
  EXPECT_EQ(total_params(load_model(kRoot + "/configs/models/gpt3-175b.json")), 174'615'846'912);
  const ModelSpec tiny = load_model(kRoot + "/configs/models/gpt-tiny.json");
  EXPECT_EQ(total_params(tiny), 218'496);
  EXPECT_FALSE(tiny.dropout);
}

// --- Hugging Face configs --------------------------------------------------------------------

Json hf_gpt2() {
  return {{"model_type", "gpt2"}, {"n_layer", 2},
          {"n_embd", 32},         {"n_head", 4},
          {"n_inner", nullptr},   {"vocab_size", 50},
          {"n_ctx", 64},          {"seq_length", 64},
          {"some_framework_key", {{"x", 1}}}};
}

TEST(HuggingFace, Gpt2DefaultsAndFallbacks) {
  const ModelSpec m = parse_model(hf_gpt2());
  EXPECT_EQ(m.intermediate_size, 128);  // n_inner null -> 4 * n_embd
  EXPECT_EQ(m.seq_length, 64);          // ours, at most n_ctx when n_positions is absent
  EXPECT_TRUE(m.dropout);               // GPT2Config's pdrop defaults are 0.1
  EXPECT_EQ(m.name, "gpt2");
  Json j = hf_gpt2();
  j["n_positions"] = 128;
  j["resid_pdrop"] = 0.0;
  j["attn_pdrop"] = 0.0;
  j["embd_pdrop"] = 0;
  j["activation_function"] = "gelu_pytorch_tanh";
  j["_name_or_path"] = "my/gpt";
  j["tie_word_embeddings"] = false;
  j["seq_length"] = 128;
  const ModelSpec n = parse_model(j);
  EXPECT_EQ(n.seq_length, 128);
  EXPECT_FALSE(n.dropout);
  EXPECT_EQ(n.name, "my/gpt");
  EXPECT_FALSE(n.tie_word_embeddings);
}

TEST(HuggingFace, UsedKeyWithWrongTypeIsAnError) {
  Json j = hf_gpt2();
  j["n_layer"] = "2";
  expect_config_error([&] { parse_model(j); }, {"model.n_layer = \"2\"", "must be an integer"});
  j = hf_gpt2();
  j["tie_word_embeddings"] = "yes";
  expect_config_error([&] { parse_model(j); },
                      {"model.tie_word_embeddings = \"yes\"", "must be true or false"});
}

TEST(HuggingFace, ShapeErrorsNameTheFilesKeys) {
  Json j = hf_gpt2();
  j["n_head"] = 5;
  expect_config_error([&] { parse_model(j); },
                      {"model.n_embd = 32", "must be divisible by n_head (5)"});
}

TEST(HuggingFace, UnsupportedModelTypeListsSupportedOnes) {
  Json j = hf_gpt2();
  j["model_type"] = "bert";
  expect_config_error([&] { parse_model(j); },
                      {"model.model_type = \"bert\"", "supported: \"gpt2\", \"llama\""});
}

TEST(HuggingFace, UnsupportedActivations) {
  Json j = hf_gpt2();
  j["activation_function"] = "relu";
  expect_config_error([&] { parse_model(j); },
                      {"model.activation_function = \"relu\"", "gelu_new"});
  Json l = {{"model_type", "llama"},        {"num_hidden_layers", 2},  {"hidden_size", 32},
            {"num_attention_heads", 4},     {"intermediate_size", 64}, {"vocab_size", 10},
            {"max_position_embeddings", 8}, {"seq_length", 8}, {"hidden_act", "gelu"}};
  expect_config_error([&] { parse_model(l); }, {"model.hidden_act = \"gelu\"", "\"silu\""});
  l["hidden_act"] = "silu";
  l["attention_bias"] = true;
  expect_config_error([&] { parse_model(l); },
                      {"model.mlp_bias = false", "must equal attention_bias (true)"});
  l["mlp_bias"] = true;
  EXPECT_TRUE(parse_model(l).bias);
  l["head_dim"] = 16;
  expect_config_error([&] { parse_model(l); },
                      {"model.head_dim = 16", "hidden_size / num_attention_heads (8)"});
}

TEST(HuggingFace, TrainingSequenceLengthIsRequiredAndBounded) {
  Json j = hf_gpt2();
  j.erase("seq_length");
  expect_config_error([&] { parse_model(j); },
                      {"model.seq_length: required for a Hugging Face config",
                       "not n_ctx (64, the longest the model takes)",
                       "--set model.seq_length=N"});
  j["seq_length"] = 65;
  expect_config_error([&] { parse_model(j); },
                      {"model.seq_length = 65: must be at most n_ctx (64)"});
  Json l = {{"model_type", "llama"},    {"num_hidden_layers", 2},  {"hidden_size", 32},
            {"num_attention_heads", 4}, {"intermediate_size", 64}, {"vocab_size", 10},
            {"max_position_embeddings", 4096}};
  expect_config_error([&] { parse_model(l); }, {"not max_position_embeddings (4096"});
  l["seq_length"] = 2048;
  EXPECT_EQ(parse_model(l).seq_length, 2048);
  l["seq_length"] = 8192;
  expect_config_error([&] { parse_model(l); },
                      {"model.seq_length = 8192: must be at most max_position_embeddings (4096)",
                       "RoPE scaling"});
}

TEST(VocabPadding, PadsOnlyWhatTpDoesNotDivideAsMegatronDoes) {
  ModelSpec m = load_model(kRoot + "/configs/models/gpt2-hf-config.json");
  ASSERT_EQ(m.vocab_size, 50257);
  EXPECT_EQ(padded_for_tp(m, 1).vocab_size, 50257);  // one rank: the vocabulary as it is
  const ModelSpec two = padded_for_tp(m, 2);
  EXPECT_EQ(two.vocab_size, 50432);  // Megatron-LM: 197 * 256, a multiple of 128 * 2
  EXPECT_EQ(two.unpadded_vocab_size, 50257);
  EXPECT_EQ(padded_for_tp(m, 8).vocab_size, 51200);  // 49 * 1024 < 50257 <= 50 * 1024
  m.make_vocab_size_divisible_by = 1;
  EXPECT_EQ(padded_for_tp(m, 2).vocab_size, 50258);
  // Vocabularies tp divides keep their size: every bundled model stays as it was.
  for (const char* name : {"gpt3-175b", "llama2-7b", "llama3-405b", "gpt-tiny"}) {
    const ModelSpec ours = load_model(kRoot + "/configs/models/" + std::string(name) + ".json");
    for (int tp : {1, 2, 4, 8}) {
      EXPECT_EQ(padded_for_tp(ours, tp).vocab_size, ours.vocab_size) << name << " tp " << tp;
      EXPECT_EQ(padded_for_tp(ours, tp).unpadded_vocab_size, 0);
    }
  }
  Json j = hf_gpt2();
  j["make_vocab_size_divisible_by"] = 0;
  expect_config_error([&] { parse_model(j); },
                      {"model.make_vocab_size_divisible_by = 0", "positive integer"});
}

// --- round trip and bundled files ------------------------------------------------------------

TEST(ModelSpec, ToJsonRoundTrips) {
  for (const Json& j : {gpt_json(), llama_json(), hf_gpt2()}) {
    const ModelSpec m = parse_model(j);
    const Json once = to_json(m);
    const ModelSpec again = parse_model(once);
    EXPECT_EQ(to_json(again), once);
    EXPECT_EQ(total_params(again), total_params(m));
    EXPECT_EQ(again.name, m.name);
    EXPECT_EQ(again.norm_eps, m.norm_eps);
  }
  EXPECT_EQ(to_json(parse_model(hf_gpt2()))["source"], "(converted from huggingface:gpt2)");
}

TEST(ModelSpec, LoadsEveryBundledModel) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kRoot + "/configs/models")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    const json::Json j = json::parse_file(entry.path().string());
    if (is_recommendation_model(j)) {  // read by parse_rec_model (ps strategies only)
      const RecModelSpec r = parse_rec_model(j);
      EXPECT_EQ(r.name, entry.path().stem().string());
      EXPECT_GT(rec_total_params(r), 0);
      EXPECT_FALSE(r.source.empty());
      EXPECT_THROW(load_model(entry.path().string()), ConfigError);
      ++count;
      continue;
    }
    const ModelSpec m = load_model(entry.path().string());
    EXPECT_GT(total_params(m), 0);
    EXPECT_FALSE(m.source.empty());
    const std::string stem = entry.path().stem().string();
    if (m.origin == "strata") {
      EXPECT_EQ(m.name, stem);
    }
    ++count;
  }
  EXPECT_GE(count, 5);
}

TEST(ModelSpec, LoadErrorsNameTheFile) {
  expect_config_error([&] { load_model(kRoot + "/configs/models/no-such-model.json"); },
                      {"no-such-model.json", "cannot open"});
  expect_config_error([&] { load_model(kRoot + "/configs/strategies/tiny-dp2.json"); },
                      {"tiny-dp2.json: model.", "unknown key"});
}

// --- mixture of experts ----------------------------------------------------------------------

Json moe_json() {
  Json j = llama_json();
  j["num_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  return j;
}

TEST(MoeSpec, DefaultsMakeEveryLayerMoeWithExpertsOfIntermediateSize) {
  const ModelSpec m = parse_model(moe_json());
  EXPECT_TRUE(m.is_moe());
  EXPECT_EQ(m.moe.num_experts, 8);
  EXPECT_EQ(m.moe.num_experts_per_tok, 2);
  EXPECT_EQ(m.moe.moe_intermediate_size, 160);  // intermediate_size
  EXPECT_EQ(m.moe.n_shared_experts, 0);
  EXPECT_EQ(m.moe.shared_expert_intermediate_size, 0);
  EXPECT_EQ(m.moe.first_k_dense_replace, 0);
  EXPECT_EQ(m.moe.moe_layer_freq, 1);
  EXPECT_EQ(m.moe.router_aux_loss_coef, 0.0);
  EXPECT_EQ(m.num_moe_layers(), 2);
}

TEST(MoeSpec, DenseModelHasNoExpertsAndWritesNoMoeKeys) {
  const ModelSpec m = parse_model(llama_json());
  EXPECT_FALSE(m.is_moe());
  EXPECT_EQ(m.num_moe_layers(), 0);
  EXPECT_FALSE(m.is_moe_layer(0));
  EXPECT_EQ(active_params(m), total_params(m));
  EXPECT_EQ(moe_layer_params(m), 0);
  const Json j = to_json(m);
  for (const char* key :
       {"num_experts", "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts",
        "first_k_dense_replace", "moe_layer_freq", "router_aux_loss_coef"}) {
    EXPECT_FALSE(j.contains(key)) << key;
  }
}

TEST(MoeSpec, DenseLayersFirstThenEveryFreqthLayer) {
  Json j = moe_json();
  j["num_hidden_layers"] = 8;
  j["first_k_dense_replace"] = 3;
  j["moe_layer_freq"] = 2;
  const ModelSpec m = parse_model(j);
  std::vector<int> moe;
  for (int l = 0; l < 8; ++l) {
    if (m.is_moe_layer(l)) moe.push_back(l);
  }
  EXPECT_EQ(moe, (std::vector<int>{4, 6}));
  EXPECT_EQ(m.num_moe_layers(), 2);
}

TEST(MoeSpec, EveryFieldIsValidated) {
  const auto bad = [](const Json& changes, const std::vector<std::string>& parts) {
    Json j = moe_json();
    j.update(changes);
    SCOPED_TRACE(changes.dump());
    expect_config_error([&] { parse_model(j); }, parts);
  };
  bad({{"num_experts", 0}}, {"model.num_experts = 0", "positive integer"});
  bad({{"num_experts", 5000}}, {"model.num_experts = 5000", "at most 4096"});
  bad({{"num_experts_per_tok", 9}}, {"model.num_experts_per_tok = 9", "at most num_experts (8)"});
  bad({{"num_experts_per_tok", 0}}, {"model.num_experts_per_tok = 0", "positive integer"});
  bad({{"num_experts_per_tok", 1.5}}, {"model.num_experts_per_tok = 1.5"});
  bad({{"moe_intermediate_size", 0}}, {"model.moe_intermediate_size = 0", "positive integer"});
  bad({{"n_shared_experts", -1}}, {"model.n_shared_experts = -1", "non-negative integer"});
  bad({{"shared_expert_intermediate_size", 64}},
      {"model.shared_expert_intermediate_size = 64", "no shared experts"});
  bad({{"n_shared_experts", 1}, {"shared_expert_intermediate_size", 0}},
      {"model.shared_expert_intermediate_size = 0", "positive integer"});
  bad({{"first_k_dense_replace", 2}},
      {"model.first_k_dense_replace = 2", "less than num_hidden_layers (2)"});
  bad({{"first_k_dense_replace", -1}}, {"model.first_k_dense_replace = -1", "non-negative"});
  bad({{"first_k_dense_replace", 1}, {"moe_layer_freq", 2}},
      {"model.moe_layer_freq = 2", "leaves no MoE layer", "first such layer (2)"});
  bad({{"moe_layer_freq", 0}}, {"model.moe_layer_freq = 0", "positive integer"});
  bad({{"router_aux_loss_coef", -0.01}},
      {"model.router_aux_loss_coef = -0.01", "finite number >= 0"});
  bad({{"router_aux_loss_coef", "high"}}, {"model.router_aux_loss_coef"});
  // A dense model with an MoE key is refused, naming the key.
  Json dense = llama_json();
  dense["num_experts_per_tok"] = 2;
  expect_config_error([&] { parse_model(dense); },
                      {"model.num_experts_per_tok = 2", "model has no experts", "num_experts"});
}

TEST(MoeParams, ByHandWithSharedExpertsAndADenseLayer) {
  Json j = moe_json();  // h 64, 8 heads, 2 kv-heads (kv_hidden 16), swiglu, rmsnorm, no biases
  j.update({{"num_hidden_layers", 3},
            {"first_k_dense_replace", 1},
            {"moe_intermediate_size", 32},
            {"n_shared_experts", 2},
            {"shared_expert_intermediate_size", 48}});
  const ModelSpec m = parse_model(j);
  const std::int64_t attention = 2 * 64 * 64 + 2 * 64 * 16 + 2 * 64;  // q, o, k, v, two norms
  const std::int64_t router = 64 * 8;
  const std::int64_t expert = 3 * 64 * 32, shared = 3 * 64 * 48;
  EXPECT_EQ(layer_params(m), attention + 3 * 64 * 160);
  EXPECT_EQ(moe_layer_params(m), attention + router + 8 * expert + 2 * shared);
  EXPECT_EQ(moe_layer_active_params(m), attention + router + 2 * expert + 2 * shared);
  EXPECT_EQ(total_params(m), layer_params(m) + 2 * moe_layer_params(m) + embedding_params(m));
  EXPECT_EQ(active_params(m),
            layer_params(m) + 2 * moe_layer_active_params(m) + embedding_params(m));
}

// Mixtral-8x7B: the published 46.7B parameters, 12.9B active per token (Jiang et al. 2024),
// from our JSON and from the Hugging Face config alike.
TEST(MoeParams, Mixtral8x7bOursAndHuggingFace) {
  const ModelSpec ours = load_model(kRoot + "/configs/models/mixtral-8x7b.json");
  const ModelSpec hf = load_model(kRoot + "/configs/models/mixtral-8x7b-hf-config.json");
  for (const ModelSpec* m : {&ours, &hf}) {
    EXPECT_EQ(total_params(*m), 46'702'792'704);
    EXPECT_EQ(active_params(*m), 12'879'925'248);
    EXPECT_EQ(m->num_moe_layers(), 32);
    EXPECT_EQ(m->moe.num_experts, 8);
    EXPECT_EQ(m->moe.num_experts_per_tok, 2);
    EXPECT_EQ(m->moe.moe_intermediate_size, 14336);
    EXPECT_DOUBLE_EQ(m->moe.router_aux_loss_coef, 0.02);
    EXPECT_EQ(m->num_key_value_heads, 8);
    EXPECT_EQ(m->hidden_act, Activation::kSwiglu);
  }
  EXPECT_EQ(hf.origin, "huggingface:mixtral");
  Json a = to_json(ours), b = to_json(hf);
  for (Json* j : {&a, &b}) {
    j->erase("name");
    j->erase("source");
  }
  EXPECT_EQ(a, b);
}

TEST(HuggingFace, MixtralDefaultsAndSlidingWindow) {
  Json j = json::parse_file(kRoot + "/configs/models/mixtral-8x7b-hf-config.json");
  j.erase("num_local_experts");
  j.erase("num_experts_per_tok");
  j.erase("router_aux_loss_coef");
  const ModelSpec m = parse_model(j);  // MixtralConfig's defaults: 8 experts, top-2, 0.001
  EXPECT_EQ(m.moe.num_experts, 8);
  EXPECT_EQ(m.moe.num_experts_per_tok, 2);
  EXPECT_DOUBLE_EQ(m.moe.router_aux_loss_coef, 0.001);
  j["sliding_window"] = 4096;  // = seq_length: every key is in the window
  EXPECT_NO_THROW(parse_model(j));
  j["sliding_window"] = 1024;
  expect_config_error([&] { parse_model(j); },
                      {"model.sliding_window = 1024", "not modelled", "seq_length (4096)"});
  j["sliding_window"] = nullptr;
  j["num_experts_per_tok"] = 3;
  j["num_local_experts"] = 2;
  expect_config_error([&] { parse_model(j); },
                      {"model.num_experts_per_tok = 3", "at most num_local_experts (2)"});
}

// DeepSeekMoE 16B: 16.4B parameters, 2.8B active (Dai et al. 2024, Table of model settings):
// one dense layer, then 27 MoE layers of 2 shared + 64 routed experts (top-6).
TEST(MoeParams, DeepSeekMoe16bHuggingFace) {
  const ModelSpec m = load_model(kRoot + "/configs/models/deepseek-moe-16b-hf-config.json");
  EXPECT_EQ(m.origin, "huggingface:deepseek");
  EXPECT_FALSE(m.is_moe_layer(0));
  EXPECT_TRUE(m.is_moe_layer(1));
  EXPECT_EQ(m.num_moe_layers(), 27);
  EXPECT_EQ(m.moe.num_experts, 64);
  EXPECT_EQ(m.moe.num_experts_per_tok, 6);
  EXPECT_EQ(m.moe.moe_intermediate_size, 1408);
  EXPECT_EQ(m.moe.n_shared_experts, 2);
  EXPECT_EQ(m.moe.shared_expert_intermediate_size, 1408);
  EXPECT_EQ(m.intermediate_size, 10944);  // the dense layer
  EXPECT_DOUBLE_EQ(m.moe.router_aux_loss_coef, 0.001);
  EXPECT_EQ(total_params(m), 16'375'728'128);
  EXPECT_EQ(active_params(m), 2'828'650'496);
  // Round trip through our format.
  const ModelSpec again = parse_model(to_json(m));
  EXPECT_EQ(to_json(again), to_json(m));
  EXPECT_EQ(total_params(again), total_params(m));
  // A null n_routed_experts is a dense DeepSeek model; null shared experts are none.
  Json j = json::parse_file(kRoot + "/configs/models/deepseek-moe-16b-hf-config.json");
  j["n_shared_experts"] = nullptr;
  EXPECT_EQ(parse_model(j).moe.n_shared_experts, 0);
  j["n_routed_experts"] = nullptr;
  EXPECT_FALSE(parse_model(j).is_moe());
}

// DeepSeek-V2/V3 use multi-head latent attention: refused unless the file asks for the
// multi-head approximation.
TEST(HuggingFace, DeepSeekV2MlaIsRefusedOrApproximatedOnRequest) {
  const std::string path = kRoot + "/tests/strategies/data/deepseek-v2-lite-hf-config.json";
  expect_config_error(
      [&] { load_model(path); },
      {"model.kv_lora_rank = 512", "multi-head latent attention", "\"mla_as_mha\": true"});
  Json j = json::parse_file(path);
  j.erase("kv_lora_rank");  // DeepseekV2Config's default is MLA too
  j["model_type"] = "deepseek_v3";
  expect_config_error([&] { parse_model(j); }, {"model.kv_lora_rank = 512", "mla_as_mha"});
  j = json::parse_file(path);
  j["mla_as_mha"] = true;
  const ModelSpec m = parse_model(j);
  EXPECT_EQ(m.origin, "huggingface:deepseek_v2");
  EXPECT_EQ(m.num_hidden_layers, 27);
  EXPECT_EQ(m.head_dim(), 128);
  EXPECT_EQ(m.num_moe_layers(), 26);
  // DeepSeekMoE 16B less one MoE layer: attention approximated as multi-head (4 h^2).
  EXPECT_EQ(total_params(m), 15'787'866'112);
  EXPECT_EQ(active_params(m), 2'742'532'096);
  const std::vector<std::string> keys = huggingface_keys("deepseek_v2");
  for (const char* key : {"n_routed_experts", "moe_intermediate_size", "mla_as_mha"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
  const std::vector<std::string> mixtral = huggingface_keys("mixtral");
  EXPECT_NE(std::find(mixtral.begin(), mixtral.end(), "num_local_experts"), mixtral.end());
  EXPECT_EQ(std::find(mixtral.begin(), mixtral.end(), "mla_as_mha"), mixtral.end());
}

TEST(MoeSpec, ToJsonRoundTrips) {
  Json j = moe_json();
  j.update({{"num_hidden_layers", 4},
            {"first_k_dense_replace", 1},
            {"moe_layer_freq", 1},
            {"n_shared_experts", 1},
            {"shared_expert_intermediate_size", 96},
            {"router_aux_loss_coef", 0.01}});
  const ModelSpec m = parse_model(j);
  const Json once = to_json(m);
  EXPECT_EQ(once["shared_expert_intermediate_size"], 96);
  const ModelSpec again = parse_model(once);
  EXPECT_EQ(to_json(again), once);
  EXPECT_EQ(total_params(again), total_params(m));
  EXPECT_EQ(active_params(again), active_params(m));
}

}  // namespace
}  // namespace strata::strategies
