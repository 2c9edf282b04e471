// Model specs: our JSON format and Hugging Face config.json (GPT-2, Llama, Mixtral, DeepSeek),
// their shape rules, mixture-of-experts blocks, and the parameter counts. Formats, rules and the
// parameter formula: docs/specs.md.
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "strategies/rec_model.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

// ---------------------------------------------------------------------------------------------
// Reading helpers shared by the three parsers.
namespace detail {

int read_positive_int(json::ObjectReader& r, const std::string& key, int fallback) {
  if (fallback > 0 && !r.has(key)) return static_cast<int>(r.get_int_or(key, fallback));
  const long long v = r.get_int(key);
  if (v < 1) json::fail(r.field(key), v, "must be a positive integer");
  if (v > INT_MAX) json::fail(r.field(key), v, "must be at most " + std::to_string(INT_MAX));
  return static_cast<int>(v);
}

int read_int_in(json::ObjectReader& r, const std::string& key, long long lo, long long hi,
                const std::string& rule) {
  const long long v = r.get_int(key);
  if (v < lo || v > hi) json::fail(r.field(key), v, rule);
  return static_cast<int>(v);
}

int read_choice(json::ObjectReader& r, const std::string& key,
                const std::vector<std::string>& names, int fallback) {
  if (fallback >= 0 && !r.has(key)) {
    r.accept(key);
    return fallback;
  }
  const std::string value = r.get_string(key);
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == value) return static_cast<int>(i);
  }
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "\"" : ", \"") + n + "\"";
  json::fail(r.field(key), value, "must be one of " + list);
}

std::string read_source(const json::Json& object) {
  if (!object.is_object() || !object.contains("source")) return "";
  const json::Json& v = object.at("source");
  if (v.is_string()) return v.get<std::string>();
  std::string joined;  // ObjectReader has checked it is a list of strings
  for (const auto& part : v) {
    if (!joined.empty()) joined += "; ";
    joined += part.get<std::string>();
  }
  return joined;
}

}  // namespace detail

namespace {

using json::Json;

const std::vector<std::string> kFamilies = {"gpt", "llama"};
const std::vector<std::string> kActivations = {"gelu", "swiglu"};
const std::vector<std::string> kNorms = {"layernorm", "rmsnorm"};
const std::vector<std::string> kPositions = {"learned", "rope"};

// The names a format gives the shape fields, so errors name the key actually in the file.
struct ShapeKeys {
  std::string hidden, heads, kv_heads;
  std::string layers = "num_hidden_layers";
};

// Rules every model obeys, whatever format it came from.
void check_shape(const ModelSpec& m, const std::string& what, const ShapeKeys& keys) {
  // Every layer is in the Plan: 2^31 - 1 layers never finished lowering. The deepest trained
  // transformers have about 100 (docs/specs.md).
  constexpr int kMaxLayers = 10000;
  if (m.num_hidden_layers > kMaxLayers) {
    json::fail(what + "." + keys.layers, m.num_hidden_layers,
               "must be at most " + std::to_string(kMaxLayers) + " layers");
  }
  if (m.hidden_size % m.num_attention_heads != 0) {
    json::fail(
        what + "." + keys.hidden, m.hidden_size,
        "must be divisible by " + keys.heads + " (" + std::to_string(m.num_attention_heads) + ")");
  }
  if (m.num_attention_heads % m.num_key_value_heads != 0) {
    json::fail(what + "." + keys.kv_heads, m.num_key_value_heads,
               keys.heads + " (" + std::to_string(m.num_attention_heads) +
                   ") must be divisible by " + keys.kv_heads);
  }
}

// 4 * hidden, the GPT default FFN width, checked against int overflow.
int four_times(json::ObjectReader& r, const std::string& hidden_key, int hidden) {
  const long long f = 4LL * hidden;
  if (f > INT_MAX) json::fail(r.field(hidden_key), hidden, "4 * hidden is too large");
  return static_cast<int>(f);
}

// An integer in [0, INT_MAX], `fallback` when absent (or null).
int read_count(json::ObjectReader& r, const std::string& key, int fallback) {
  if (!r.has(key)) {
    r.accept(key);
    return fallback;
  }
  const long long v = r.get_int(key);
  if (v < 0) json::fail(r.field(key), v, "must be a non-negative integer");
  if (v > INT_MAX) json::fail(r.field(key), v, "must be at most " + std::to_string(INT_MAX));
  return static_cast<int>(v);
}

// The names a format gives the mixture-of-experts fields; an empty name is a field the format
// does not have (its default applies). Ours are the first column.
struct MoeKeys {
  std::string experts = "num_experts";
  std::string top_k = "num_experts_per_tok";
  std::string expert_size = "moe_intermediate_size";
  std::string shared = "n_shared_experts";
  std::string shared_size = "shared_expert_intermediate_size";
  std::string first_dense = "first_k_dense_replace";
  std::string freq = "moe_layer_freq";
  std::string aux = "router_aux_loss_coef";
  std::string norm = "norm_topk_prob";
};

// Defaults of the fields a format may leave out (0 = required).
struct MoeDefaults {
  int experts = 0;
  int top_k = 0;
  double aux = 0;
  bool norm = true;
};

// Reads the MoE fields (m's layers and intermediate_size already read) and checks every rule:
// 1 <= top_k <= experts, positive sizes, at least one MoE layer, a finite coefficient >= 0.
void read_moe(json::ObjectReader& r, ModelSpec& m, const MoeKeys& keys, const MoeDefaults& d) {
  MoeSpec& e = m.moe;
  e.num_experts = detail::read_positive_int(r, keys.experts, d.experts);
  // The Plan holds a task per expert; DeepSeek-V3 has 256 routed experts per layer.
  constexpr int kMaxExperts = 4096;
  if (e.num_experts > kMaxExperts) {
    json::fail(r.field(keys.experts), e.num_experts,
               "must be at most " + std::to_string(kMaxExperts) + " experts");
  }
  e.num_experts_per_tok = detail::read_positive_int(r, keys.top_k, d.top_k);
  if (e.num_experts_per_tok > e.num_experts) {
    json::fail(r.field(keys.top_k), e.num_experts_per_tok,
               "must be at most " + keys.experts + " (" + std::to_string(e.num_experts) +
                   "): each token goes to that many distinct experts");
  }
  e.moe_intermediate_size =
      keys.expert_size == "intermediate_size"
          ? m.intermediate_size
          : detail::read_positive_int(r, keys.expert_size, m.intermediate_size);
  e.n_shared_experts = keys.shared.empty() ? 0 : read_count(r, keys.shared, 0);
  if (!keys.shared_size.empty() && r.has(keys.shared_size)) {
    if (e.n_shared_experts == 0) {
      json::fail(r.field(keys.shared_size), r.get_raw(keys.shared_size),
                 "is set but the model has no shared experts (" + keys.shared + " is 0); set " +
                     keys.shared + " or remove it");
    }
    e.shared_expert_intermediate_size = detail::read_positive_int(r, keys.shared_size);
  } else {
    if (!keys.shared_size.empty()) r.accept(keys.shared_size);
    e.shared_expert_intermediate_size = e.n_shared_experts > 0 ? e.moe_intermediate_size : 0;
  }
  e.first_k_dense_replace = keys.first_dense.empty() ? 0 : read_count(r, keys.first_dense, 0);
  if (e.first_k_dense_replace >= m.num_hidden_layers) {
    json::fail(r.field(keys.first_dense), e.first_k_dense_replace,
               "must be less than num_hidden_layers (" + std::to_string(m.num_hidden_layers) +
                   "): an MoE model needs at least one MoE layer");
  }
  e.moe_layer_freq = keys.freq.empty() ? 1 : detail::read_positive_int(r, keys.freq, 1);
  const long long first_moe =
      (static_cast<long long>(e.first_k_dense_replace) + e.moe_layer_freq - 1) / e.moe_layer_freq *
      e.moe_layer_freq;
  if (first_moe >= m.num_hidden_layers) {
    json::fail(r.field(keys.freq), e.moe_layer_freq,
               "leaves no MoE layer: layer l is MoE when l >= " + keys.first_dense + " (" +
                   std::to_string(e.first_k_dense_replace) + ") and l % " + keys.freq +
                   " == 0, and the first such layer (" + std::to_string(first_moe) +
                   ") is past the last (" + std::to_string(m.num_hidden_layers - 1) + ")");
  }
  e.router_aux_loss_coef = r.get_number_or(keys.aux, d.aux);
  if (!(e.router_aux_loss_coef >= 0) || !std::isfinite(e.router_aux_loss_coef)) {
    json::fail(r.field(keys.aux), e.router_aux_loss_coef, "must be a finite number >= 0");
  }
  e.norm_topk_prob = keys.norm.empty() ? d.norm : r.get_bool_or(keys.norm, d.norm);
}

const std::vector<std::string> kOurMoeKeys = {"num_experts",
                                              "num_experts_per_tok",
                                              "moe_intermediate_size",
                                              "n_shared_experts",
                                              "shared_expert_intermediate_size",
                                              "first_k_dense_replace",
                                              "moe_layer_freq",
                                              "router_aux_loss_coef",
                                              "norm_topk_prob"};

ModelSpec parse_ours(const Json& j, const std::string& what) {
  json::ObjectReader r(j, what);
  std::vector<std::string> known = {"name",
                                    "family",
                                    "num_hidden_layers",
                                    "hidden_size",
                                    "num_attention_heads",
                                    "num_key_value_heads",
                                    "intermediate_size",
                                    "vocab_size",
                                    "seq_length",
                                    "hidden_act",
                                    "norm",
                                    "tie_word_embeddings",
                                    "position_embeddings",
                                    "bias",
                                    "dropout",
                                    "layer_norm_eps",
                                    "rms_norm_eps",
                                    "make_vocab_size_divisible_by"};
  known.insert(known.end(), kOurMoeKeys.begin(), kOurMoeKeys.end());
  r.finish(known);
  ModelSpec m;
  m.name = r.get_string("name");
  if (m.name.empty()) json::fail(r.field("name"), m.name, "must not be empty");
  m.family = static_cast<ModelFamily>(detail::read_choice(r, "family", kFamilies));
  const bool gpt = m.family == ModelFamily::kGpt;
  m.num_hidden_layers = detail::read_positive_int(r, "num_hidden_layers");
  m.hidden_size = detail::read_positive_int(r, "hidden_size");
  m.num_attention_heads = detail::read_positive_int(r, "num_attention_heads");
  m.num_key_value_heads =
      detail::read_positive_int(r, "num_key_value_heads", m.num_attention_heads);
  if (gpt) {
    m.intermediate_size = detail::read_positive_int(r, "intermediate_size",
                                                    four_times(r, "hidden_size", m.hidden_size));
  } else {
    m.intermediate_size = detail::read_positive_int(r, "intermediate_size");
  }
  m.vocab_size = detail::read_positive_int(r, "vocab_size");
  m.seq_length = detail::read_positive_int(r, "seq_length");
  m.make_vocab_size_divisible_by = detail::read_positive_int(r, "make_vocab_size_divisible_by", 128);
  m.hidden_act =
      static_cast<Activation>(detail::read_choice(r, "hidden_act", kActivations, gpt ? 0 : 1));
  m.norm = static_cast<NormKind>(detail::read_choice(r, "norm", kNorms, gpt ? 0 : 1));
  m.tie_word_embeddings = r.get_bool_or("tie_word_embeddings", gpt);
  m.learned_position_embeddings =
      detail::read_choice(r, "position_embeddings", kPositions, gpt ? 0 : 1) == 0;
  m.bias = r.get_bool_or("bias", gpt);
  m.dropout = r.get_bool_or("dropout", gpt);

  // The epsilon key must match the norm, so a file never silently carries an unused value.
  const bool layernorm = m.norm == NormKind::kLayerNorm;
  const std::string eps_key = layernorm ? "layer_norm_eps" : "rms_norm_eps";
  const std::string other_key = layernorm ? "rms_norm_eps" : "layer_norm_eps";
  if (r.has(other_key)) {
    json::fail(r.field(other_key), r.get_raw(other_key),
               std::string("the model's norm is \"") + kNorms[static_cast<int>(m.norm)] +
                   "\"; give its epsilon as " + eps_key);
  }
  r.accept(other_key);
  m.norm_eps = r.get_number_or(eps_key, 1e-5);
  if (!(m.norm_eps > 0 && m.norm_eps < 1)) {
    json::fail(r.field(eps_key), m.norm_eps, "must be > 0 and < 1");
  }

  if (r.has("num_experts")) {
    read_moe(r, m, MoeKeys{}, MoeDefaults{});
  } else {
    for (const std::string& key : kOurMoeKeys) {
      if (r.has(key)) {
        json::fail(r.field(key), r.get_raw(key),
                   "is a mixture-of-experts field, but the model has no experts; set "
                   "num_experts or remove it");
      }
      r.accept(key);
    }
  }

  m.source = detail::read_source(j);
  m.origin = "strata";
  check_shape(m, what, {"hidden_size", "num_attention_heads", "num_key_value_heads"});
  return m;
}

// A Hugging Face config's training sequence length: our key seq_length, required (the config
// says how long a sequence the model can take, not how long the sequences it is trained on
// are), at most the config's `max_key` (`max_positions`, the reason in `why`). Also our
// make_vocab_size_divisible_by.
void read_training_seq_length(json::ObjectReader& r, ModelSpec& m, const std::string& max_key,
                              int max_positions, const std::string& why) {
  if (!r.has("seq_length")) {
    throw ConfigError(r.field("seq_length") + ": required for a Hugging Face config: the "
                      "training sequence length is a training choice, not " + max_key + " (" +
                      std::to_string(max_positions) + ", the longest the model takes); add "
                      "\"seq_length\": N to the file or give --set model.seq_length=N");
  }
  m.seq_length = detail::read_positive_int(r, "seq_length");
  if (m.seq_length > max_positions) {
    json::fail(r.field("seq_length"), m.seq_length,
               "must be at most " + max_key + " (" + std::to_string(max_positions) + "): " + why);
  }
  m.make_vocab_size_divisible_by = detail::read_positive_int(r, "make_vocab_size_divisible_by", 128);
}

// Hugging Face GPT-2 (transformers' GPT2Config key names and defaults).
void read_hf_gpt2(json::ObjectReader& r, ModelSpec& m) {
  m.family = ModelFamily::kGpt;
  m.num_hidden_layers = detail::read_positive_int(r, "n_layer");
  m.hidden_size = detail::read_positive_int(r, "n_embd");
  m.num_attention_heads = detail::read_positive_int(r, "n_head");
  m.num_key_value_heads = m.num_attention_heads;
  m.intermediate_size =
      detail::read_positive_int(r, "n_inner", four_times(r, "n_embd", m.hidden_size));
  m.vocab_size = detail::read_positive_int(r, "vocab_size");
  const std::string positions = r.has("n_positions") || !r.has("n_ctx") ? "n_positions" : "n_ctx";
  const int max_positions = detail::read_positive_int(r, positions);
  read_training_seq_length(r, m, positions, max_positions,
                           "the learned position table has that many rows");
  const std::string act = r.get_string_or("activation_function", "gelu_new");
  if (act != "gelu" && act != "gelu_new" && act != "gelu_fast" && act != "gelu_pytorch_tanh") {
    json::fail(r.field("activation_function"), act,
               "unsupported; Strata models GPT-2 with gelu (\"gelu\", \"gelu_new\", "
               "\"gelu_fast\", \"gelu_pytorch_tanh\")");
  }
  m.hidden_act = Activation::kGelu;
  m.norm = NormKind::kLayerNorm;
  m.norm_eps = r.get_number_or("layer_norm_epsilon", 1e-5);
  m.tie_word_embeddings = r.get_bool_or("tie_word_embeddings", true);
  m.learned_position_embeddings = true;
  m.bias = true;
  bool dropout = false;
  for (const char* key : {"resid_pdrop", "attn_pdrop", "embd_pdrop"}) {
    dropout = r.get_number_or(key, 0.1) > 0 || dropout;  // GPT2Config defaults them to 0.1
  }
  m.dropout = dropout;
}

// Hugging Face Llama (transformers' LlamaConfig key names and defaults).
void read_hf_llama(json::ObjectReader& r, ModelSpec& m) {
  m.family = ModelFamily::kLlama;
  m.num_hidden_layers = detail::read_positive_int(r, "num_hidden_layers");
  m.hidden_size = detail::read_positive_int(r, "hidden_size");
  m.num_attention_heads = detail::read_positive_int(r, "num_attention_heads");
  m.num_key_value_heads =
      detail::read_positive_int(r, "num_key_value_heads", m.num_attention_heads);
  m.intermediate_size = detail::read_positive_int(r, "intermediate_size");
  m.vocab_size = detail::read_positive_int(r, "vocab_size");
  read_training_seq_length(r, m, "max_position_embeddings",
                           detail::read_positive_int(r, "max_position_embeddings"),
                           "longer sequences need RoPE scaling, which Strata does not model");
  const std::string act = r.get_string_or("hidden_act", "silu");
  if (act != "silu") {
    json::fail(r.field("hidden_act"), act,
               "unsupported; Strata models Llama's MLP as \"silu\" (SwiGLU)");
  }
  m.hidden_act = Activation::kSwiglu;
  m.norm = NormKind::kRmsNorm;
  m.norm_eps = r.get_number_or("rms_norm_eps", 1e-6);
  m.tie_word_embeddings = r.get_bool_or("tie_word_embeddings", false);
  m.learned_position_embeddings = false;
  // Strata has one bias flag for every linear layer; a config mixing the two is not modelled.
  const bool attention_bias = r.get_bool_or("attention_bias", false);
  const bool mlp_bias = r.get_bool_or("mlp_bias", false);
  if (attention_bias != mlp_bias) {
    json::fail(r.field("mlp_bias"), mlp_bias,
               "must equal attention_bias (" + std::string(attention_bias ? "true" : "false") +
                   "): Strata has one bias flag for all linear layers");
  }
  m.bias = attention_bias;
  m.dropout = r.get_number_or("attention_dropout", 0.0) > 0;
  if (r.has("head_dim") && m.hidden_size % m.num_attention_heads == 0 &&
      r.get_int("head_dim") != m.hidden_size / m.num_attention_heads) {
    json::fail(r.field("head_dim"), r.get_raw("head_dim"),
               "must equal hidden_size / num_attention_heads (" +
                   std::to_string(m.hidden_size / m.num_attention_heads) + ")");
  }
}

// Hugging Face Mixtral (transformers' MixtralConfig): Llama's keys, and every layer an MoE
// layer whose experts are intermediate_size wide.
void read_hf_mixtral(json::ObjectReader& r, ModelSpec& m) {
  read_hf_llama(r, m);
  if (r.has("sliding_window") && r.get_int("sliding_window") < m.seq_length) {
    json::fail(r.field("sliding_window"), r.get_raw("sliding_window"),
               "sliding-window attention is not modelled: it must be null or at least "
               "seq_length (" +
                   std::to_string(m.seq_length) + ")");
  }
  MoeKeys keys;
  keys.experts = "num_local_experts";
  keys.expert_size = "intermediate_size";
  keys.shared = keys.shared_size = keys.first_dense = keys.freq = keys.norm = "";
  // MixtralConfig's defaults; Mixtral's weights are the softmax over the top k (normalised).
  read_moe(r, m, keys, {8, 2, 0.001, true});
}

// Hugging Face DeepSeek-MoE ("deepseek") and DeepSeek-V2/V3 ("deepseek_v2", "deepseek_v3"):
// Llama's keys for attention and the dense layers, DeepSeek's for the MoE layers (a null
// n_routed_experts is a dense model). V2 and V3 use multi-head latent attention (MLA), which
// Strata does not model: they are read only with our key "mla_as_mha": true, which
// approximates MLA by multi-head attention of num_attention_heads heads of hidden_size /
// num_attention_heads (docs/specs.md "Hugging Face configs").
void read_hf_deepseek(json::ObjectReader& r, ModelSpec& m, bool mla) {
  if (mla) {
    const bool as_mha = r.get_bool_or("mla_as_mha", false);
    if (!as_mha) {
      const Json rank = r.has("kv_lora_rank") ? r.get_raw("kv_lora_rank") : Json(512);
      json::fail(r.field("kv_lora_rank"), rank,
                 "DeepSeek-V2/V3 attention is multi-head latent attention (MLA), which Strata "
                 "does not model; add \"mla_as_mha\": true to approximate it by multi-head "
                 "attention of num_attention_heads heads (docs/specs.md), or use a DeepSeek-MoE "
                 "config (model_type \"deepseek\")");
    }
    for (const char* key :
         {"kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}) {
      r.accept(key);  // approximated away, on request
    }
  }
  read_hf_llama(r, m);
  if (!r.has("n_routed_experts")) {
    r.accept("n_routed_experts");
    return;  // a dense DeepSeek model
  }
  MoeKeys keys;
  keys.experts = "n_routed_experts";
  keys.shared_size = "";  // each shared expert is moe_intermediate_size wide
  keys.aux = "aux_loss_alpha";
  // DeepseekV2Config's aux_loss_alpha and norm_topk_prob (false: the weights are the top k's
  // softmax probabilities as they are).
  read_moe(r, m, keys, {0, 0, 0.001, false});
}

ModelSpec parse_huggingface(const Json& j, const std::string& what) {
  // Other keys are ignored (config.json carries many framework settings); keys we use are
  // type-checked like ours.
  json::ObjectReader r(j, what);
  const std::string type = r.get_string("model_type");
  ModelSpec m;
  ShapeKeys keys;
  if (type == "gpt2") {
    read_hf_gpt2(r, m);
    keys = {"n_embd", "n_head", "n_head"};
  } else if (type == "llama" || type == "mixtral" || type == "deepseek" || type == "deepseek_v2" ||
             type == "deepseek_v3") {
    if (type == "llama") {
      read_hf_llama(r, m);
    } else if (type == "mixtral") {
      read_hf_mixtral(r, m);
    } else {
      read_hf_deepseek(r, m, type != "deepseek");
    }
    keys = {"hidden_size", "num_attention_heads", "num_key_value_heads"};
  } else {
    json::fail(r.field("model_type"), type,
               "unsupported Hugging Face model_type; supported: \"gpt2\", \"llama\", "
               "\"mixtral\", \"deepseek\", \"deepseek_v2\", \"deepseek_v3\"");
  }
  if (m.norm_eps <= 0) {
    const std::string key = type == "gpt2" ? "layer_norm_epsilon" : "rms_norm_eps";
    json::fail(r.field(key), m.norm_eps, "must be > 0");
  }
  m.name = r.get_string_or("_name_or_path", "");
  if (m.name.empty()) m.name = type;
  m.source = detail::read_source(j);
  m.origin = "huggingface:" + type;
  check_shape(m, what, keys);
  return m;
}

std::int64_t norm_params(const ModelSpec& m) {
  const std::int64_t h = m.hidden_size;
  return m.norm == NormKind::kLayerNorm ? 2 * h : h;  // layernorm: gain + bias; rmsnorm: gain
}

}  // namespace

ModelSpec parse_model(const Json& j, const std::string& what) {
  if (is_recommendation_model(j)) {
    const std::string name =
        j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>() : "?";
    json::fail(what + ".family", "recommendation",
               "model '" + name + "' is a recommendation model: only a parameter-server "
               "strategy (strategy.ps) reads one, with `strata plan` and `strata simulate` "
               "(docs/parameter-server.md)");
  }
  if (j.is_object() && j.contains("model_type")) return parse_huggingface(j, what);
  return parse_ours(j, what);
}

ModelSpec padded_for_tp(const ModelSpec& m, int tp) {
  if (tp <= 1 || m.vocab_size % tp == 0) return m;
  const long long multiple = static_cast<long long>(m.make_vocab_size_divisible_by) * tp;
  const long long padded = (m.vocab_size + multiple - 1) / multiple * multiple;
  if (padded > INT_MAX) {
    json::fail("model.make_vocab_size_divisible_by", m.make_vocab_size_divisible_by,
               "the vocabulary padded to a multiple of it times tp (" + std::to_string(tp) +
                   ") is too large");
  }
  ModelSpec p = m;
  p.unpadded_vocab_size = m.unpadded_vocab_size > 0 ? m.unpadded_vocab_size : m.vocab_size;
  p.vocab_size = static_cast<int>(padded);
  return p;
}

std::vector<std::string> huggingface_keys(const std::string& model_type) {
  std::vector<std::string> common = {"model_type",          "_name_or_path", "vocab_size",
                                     "tie_word_embeddings", "seq_length",
                                     "make_vocab_size_divisible_by", "source", "notes"};
  std::vector<std::string> own;
  if (model_type == "gpt2") {
    own = {"n_layer", "n_embd", "n_head", "n_inner", "n_positions", "n_ctx",
           "activation_function", "layer_norm_epsilon", "resid_pdrop", "attn_pdrop",
           "embd_pdrop"};
  } else if (model_type == "llama" || model_type == "mixtral" || model_type == "deepseek" ||
             model_type == "deepseek_v2" || model_type == "deepseek_v3") {
    own = {"num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
           "intermediate_size", "max_position_embeddings", "hidden_act", "rms_norm_eps",
           "attention_bias", "mlp_bias", "attention_dropout", "head_dim"};
    if (model_type == "mixtral") {
      own.insert(own.end(), {"num_local_experts", "num_experts_per_tok", "router_aux_loss_coef",
                             "sliding_window"});
    } else if (model_type != "llama") {
      own.insert(own.end(),
                 {"n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
                  "n_shared_experts", "first_k_dense_replace", "moe_layer_freq", "aux_loss_alpha",
                  "norm_topk_prob"});
    }
    if (model_type == "deepseek_v2" || model_type == "deepseek_v3") {
      own.insert(own.end(), {"mla_as_mha", "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim",
                             "qk_rope_head_dim", "v_head_dim"});
    }
  } else {
    return {};
  }
  common.insert(common.end(), own.begin(), own.end());
  return common;
}

ModelSpec load_model(const std::string& path) {
  const Json j = json::parse_file(path);
  try {
    return parse_model(j, "model");
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

Json to_json(const ModelSpec& m) {
  Json j = Json::object();
  j["name"] = m.name;
  j["family"] = kFamilies[static_cast<int>(m.family)];
  j["num_hidden_layers"] = m.num_hidden_layers;
  j["hidden_size"] = m.hidden_size;
  j["num_attention_heads"] = m.num_attention_heads;
  j["num_key_value_heads"] = m.num_key_value_heads;
  j["intermediate_size"] = m.intermediate_size;
  j["vocab_size"] = m.vocab_size;
  j["seq_length"] = m.seq_length;
  if (m.make_vocab_size_divisible_by != 128) {
    j["make_vocab_size_divisible_by"] = m.make_vocab_size_divisible_by;
  }
  j["hidden_act"] = kActivations[static_cast<int>(m.hidden_act)];
  j["norm"] = kNorms[static_cast<int>(m.norm)];
  j["tie_word_embeddings"] = m.tie_word_embeddings;
  j["position_embeddings"] = m.learned_position_embeddings ? "learned" : "rope";
  j["bias"] = m.bias;
  j["dropout"] = m.dropout;
  j[m.norm == NormKind::kLayerNorm ? "layer_norm_eps" : "rms_norm_eps"] = m.norm_eps;
  if (m.is_moe()) {  // only for an MoE model, so that dense specs (and their hashes) stay as were
    const MoeSpec& e = m.moe;
    j["num_experts"] = e.num_experts;
    j["num_experts_per_tok"] = e.num_experts_per_tok;
    j["moe_intermediate_size"] = e.moe_intermediate_size;
    if (e.n_shared_experts > 0) {
      j["n_shared_experts"] = e.n_shared_experts;
      j["shared_expert_intermediate_size"] = e.shared_expert_intermediate_size;
    }
    j["first_k_dense_replace"] = e.first_k_dense_replace;
    j["moe_layer_freq"] = e.moe_layer_freq;
    j["router_aux_loss_coef"] = e.router_aux_loss_coef;
    j["norm_topk_prob"] = e.norm_topk_prob;
  }
  // Our format has no origin key: a converted config records it in its provenance instead.
  std::string source = m.source;
  if (m.origin != "strata") {
    if (!source.empty()) source += ' ';
    source += "(converted from " + m.origin + ")";
  }
  if (!source.empty()) j["source"] = source;
  return j;
}

int ModelSpec::num_moe_layers() const {
  int n = 0;
  for (int l = 0; l < num_hidden_layers; ++l) n += is_moe_layer(l) ? 1 : 0;
  return n;
}

namespace {

// Attention (q and o are h x h, k and v are h x kv_hidden under GQA) and the two norms.
std::int64_t attention_and_norm_params(const ModelSpec& m) {
  const std::int64_t h = m.hidden_size;
  const std::int64_t kv = m.kv_hidden();
  std::int64_t attention = 2 * h * h + 2 * h * kv;
  if (m.bias) attention += 2 * h + 2 * kv;
  return attention + 2 * norm_params(m);  // two norms per layer (pre-attention, pre-MLP)
}

// One MLP of ffn width f: gelu has fc1 (h x f) and fc2 (f x h); swiglu has gate and up (h x f)
// and down (f x h); the model's biases unless `bias` is false.
std::int64_t mlp_params(const ModelSpec& m, std::int64_t f, bool bias = true) {
  const std::int64_t h = m.hidden_size;
  const bool swiglu = m.hidden_act == Activation::kSwiglu;
  std::int64_t mlp = (swiglu ? 3 : 2) * h * f;
  if (m.bias && bias) mlp += (swiglu ? 2 : 1) * f + h;
  return mlp;
}

// An MoE layer with `routed` of its routed experts: attention, norms, router, those experts
// (without biases: Megatron-Core's grouped-GEMM experts have none, nor do Mixtral's and
// DeepSeek's) and the shared experts: one dense MLP of their summed width, with the model's
// biases (Megatron-Core's SharedExpertMLP, DeepSeek's shared_experts).
std::int64_t moe_params_with(const ModelSpec& m, std::int64_t routed) {
  if (!m.is_moe()) return 0;
  const MoeSpec& e = m.moe;
  const std::int64_t router = static_cast<std::int64_t>(m.hidden_size) * e.num_experts;
  const std::int64_t shared =
      e.n_shared_experts > 0
          ? mlp_params(m, static_cast<std::int64_t>(e.n_shared_experts) *
                              e.shared_expert_intermediate_size)
          : 0;
  return attention_and_norm_params(m) + router +
         routed * mlp_params(m, e.moe_intermediate_size, false) + shared;
}

}  // namespace

std::int64_t layer_params(const ModelSpec& m) {
  return attention_and_norm_params(m) + mlp_params(m, m.intermediate_size);
}

std::int64_t moe_layer_params(const ModelSpec& m) { return moe_params_with(m, m.moe.num_experts); }

std::int64_t moe_layer_active_params(const ModelSpec& m) {
  return moe_params_with(m, m.moe.num_experts_per_tok);
}

std::int64_t embedding_params(const ModelSpec& m) {
  const std::int64_t h = m.hidden_size;
  std::int64_t p = static_cast<std::int64_t>(m.vocab_size) * h;  // token embedding
  if (m.learned_position_embeddings) p += static_cast<std::int64_t>(m.seq_length) * h;
  p += norm_params(m);                                                           // final norm
  if (!m.tie_word_embeddings) p += static_cast<std::int64_t>(m.vocab_size) * h;  // LM head
  return p;
}

std::int64_t total_params(const ModelSpec& m) {
  if (!m.is_moe()) return m.num_hidden_layers * layer_params(m) + embedding_params(m);
  const std::int64_t moe_layers = m.num_moe_layers();
  return (m.num_hidden_layers - moe_layers) * layer_params(m) + moe_layers * moe_layer_params(m) +
         embedding_params(m);
}

std::int64_t active_params(const ModelSpec& m) {
  if (!m.is_moe()) return total_params(m);
  const std::int64_t moe_layers = m.num_moe_layers();
  return (m.num_hidden_layers - moe_layers) * layer_params(m) +
         moe_layers * moe_layer_active_params(m) + embedding_params(m);
}

}  // namespace strata::strategies
