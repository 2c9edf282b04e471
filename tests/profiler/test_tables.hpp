// Hand-made efficiency tables and devices for the profiler tests: small round numbers, so that
// every expected duration can be written down by hand.
#pragma once

#include <string>

#include "common/json.hpp"
#include "strategies/spec.hpp"

namespace strata::profiler::testing {

using json::Json;

inline Json op_json(double flop, double memory) {
  return {{"flop_efficiency", flop}, {"memory_efficiency", memory}, {"source", "test"}};
}

// Every op class at (flop, memory); callers overwrite the ones a test is about.
inline Json ops_json(double flop = 0.5, double memory = 0.8) {
  return {{"gemm", op_json(flop, memory)},
          {"attention_core", op_json(flop, memory)},
          {"norm", op_json(flop, memory)},
          {"embedding", op_json(flop, memory)},
          {"optimizer", op_json(flop, memory)},
          {"fused_attention", op_json(flop, memory)}};
}

inline Json device_class_json(const std::string& name, const std::string& kind,
                              Json match = Json::array()) {
  return {{"name", name},
          {"kind", kind},
          {"match", std::move(match)},
          {"launch_overhead_us", 2},
          {"ops", ops_json()},
          {"source", "test"}};
}

inline Json blocks_json() {
  return {{"embedding", "embedding"}, {"attn_norm", "norm"},
          {"attn_qkv", "gemm"},       {"attn_core", "attention_core"},
          {"attn_out", "gemm"},       {"mlp_norm", "norm"},
          {"mlp_fc1", "gemm"},        {"mlp_fc2", "gemm"},
          {"final_norm", "norm"},     {"lm_head", "gemm"},
          {"optimizer", "optimizer"},  {"moe_router", "gemm"},
          {"moe_experts", "gemm"},    {"moe_combine", "norm"}};
}

// A valid document: devices[0] "test_gpu" matches "TestGPU", devices[1] and [2] are the gpu and
// cpu fallbacks.
inline Json table_json() {
  return {{"schema_version", 1},
          {"source", "test"},
          {"blocks", blocks_json()},
          {"devices", Json::array({device_class_json("test_gpu", "gpu", {"TestGPU"}),
                                   device_class_json("any_gpu", "gpu"),
                                   device_class_json("any_cpu", "cpu")})}};
}

// 100 TFLOP/s bf16 and fp16, 10 TFLOP/s fp32, 1 TB/s.
inline strategies::DeviceSpec test_gpu(const std::string& name = "TestGPU-80GB") {
  strategies::DeviceSpec d;
  d.name = name;
  d.kind = strategies::DeviceKind::kGpu;
  d.peak_bf16_flops = 100e12;
  d.peak_fp16_flops = 100e12;
  d.peak_fp32_flops = 10e12;
  d.memory_bytes = 80e9;
  d.memory_bandwidth_Bps = 1e12;
  return d;
}

}  // namespace strata::profiler::testing
