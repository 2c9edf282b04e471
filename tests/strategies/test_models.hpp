// Model and strategy specs built in code for the strategies tests (no file parsing involved).
#pragma once

#include <string>

#include "strategies/plan.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies::testing {

// A GPT in Megatron's shape: 4h MLP, GELU, LayerNorm, biases, learned positions, tied
// embeddings, dropout (the assumptions behind Megatron eq. 3 and Korthikanti's formulas).
inline ModelSpec gpt(int layers, int hidden, int heads, int vocab, int seq,
                     const std::string& name = "gpt-test") {
  ModelSpec m;
  m.name = name;
  m.family = ModelFamily::kGpt;
  m.num_hidden_layers = layers;
  m.hidden_size = hidden;
  m.num_attention_heads = heads;
  m.num_key_value_heads = heads;
  m.intermediate_size = 4 * hidden;
  m.vocab_size = vocab;
  m.seq_length = seq;
  return m;
}

// A Llama-style model: SwiGLU, RMSNorm, no biases, RoPE, untied embeddings, GQA, no dropout.
inline ModelSpec llama(int layers, int hidden, int heads, int kv_heads, int ffn, int vocab,
                       int seq) {
  ModelSpec m = gpt(layers, hidden, heads, vocab, seq, "llama-test");
  m.family = ModelFamily::kLlama;
  m.num_key_value_heads = kv_heads;
  m.intermediate_size = ffn;
  m.hidden_act = Activation::kSwiglu;
  m.norm = NormKind::kRmsNorm;
  m.tie_word_embeddings = false;
  m.learned_position_embeddings = false;
  m.bias = false;
  m.dropout = false;
  return m;
}

inline StrategySpec strategy(int dp, int tp, int pp, int mbs, int gbs,
                             Schedule schedule = Schedule::kOneFOneB, int virtual_stages = 1) {
  StrategySpec s;
  s.name = "test";
  s.dp = dp;
  s.tp = tp;
  s.pp = pp;
  s.micro_batch_size = mbs;
  s.global_batch_size = gbs;
  s.schedule = schedule;
  s.virtual_stages = virtual_stages;
  return s;
}

// A uniform A100-like cluster (80 GiB per GPU, NVSwitch, fat-tree) built in code.
inline ClusterSpec cluster(int nodes, int gpus_per_node, double memory_bytes = 80.0 * (1ull << 30)) {
  ClusterSpec c;
  c.name = "test-cluster";
  NodeGroup g;
  g.name = "a100";
  g.nodes = nodes;
  g.gpus_per_node = gpus_per_node;
  g.gpu.name = "A100-SXM4-80GB";
  g.gpu.peak_bf16_flops = 312e12;
  g.gpu.peak_fp16_flops = 312e12;
  g.gpu.peak_fp32_flops = 19.5e12;
  g.gpu.memory_bytes = memory_bytes;
  g.gpu.memory_bandwidth_Bps = 2.039e12;
  g.gpu.sms = 108;
  g.intra_node.bandwidth_Bps = 300e9;
  g.intra_node.latency_s = 2e-6;
  c.node_groups.push_back(g);
  c.inter_node.nics_per_node = 8;
  c.inter_node.nic_bandwidth_Bps = 25e9;
  c.inter_node.latency_s = 5e-6;
  return c;
}

// `s` lowered on the smallest cluster() of 8-GPU nodes that holds its world.
inline Plan lower_on_cluster(const ModelSpec& m, const StrategySpec& s) {
  const int world = s.world_size();
  return lower(m, cluster((world + 7) / 8, 8), s, world);
}

}  // namespace strata::strategies::testing
