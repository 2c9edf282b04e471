// Efficiencies: strict parsing of the efficiencies document and the device-class look-up.
#include "profiler/efficiency.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "common/error.hpp"

#ifndef STRATA_PROFILER_DATA_DIR
#error "STRATA_PROFILER_DATA_DIR must name the folder of efficiencies.json (see CMakeLists.txt)"
#endif

namespace strata::profiler {
namespace {

using json::Json;
using strategies::Block;
using strategies::DeviceKind;
using strategies::Precision;

constexpr int kSchemaVersion = 1;
const std::vector<std::string> kDeviceKinds = {"gpu", "cpu"};           // index = DeviceKind
const std::vector<std::string> kPrecisions = {"bf16", "fp16", "fp32"};  // index = Precision

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Every entry says where its numbers come from: a non-empty "source" is required.
std::string require_source(const json::ObjectReader& r, const Json& object) {
  if (!r.has("source")) {
    throw ConfigError(r.field("source") +
                      ": required key is missing (every entry states where its numbers come "
                      "from)");
  }
  const std::string source = strategies::detail::read_source(object);
  if (source.empty()) json::fail(r.field("source"), object.at("source"), "must not be empty");
  return source;
}

// An efficiency: a fraction of a peak, in (0, 1].
double read_fraction(json::ObjectReader& r, const std::string& key) {
  const double v = r.get_number(key);
  if (!(v > 0 && v <= 1)) {
    json::fail(r.field(key), v, "must be in (0, 1]: an efficiency is a fraction of the peak");
  }
  return v;
}

double read_fraction_or(json::ObjectReader& r, const std::string& key, double fallback) {
  if (!r.has(key)) {
    r.accept(key);
    return fallback;
  }
  return read_fraction(r, key);
}

double read_non_negative_or(json::ObjectReader& r, const std::string& key, double fallback) {
  const double v = r.get_number_or(key, fallback);
  if (v < 0) json::fail(r.field(key), v, "must be >= 0");
  return v;
}

OpEfficiency parse_op(const Json& object, const std::string& path) {
  json::ObjectReader r(object, path);
  r.finish({"flop_efficiency", "backward_flop_efficiency", "memory_efficiency",
            "backward_memory_efficiency", "half_efficiency_flops"});
  OpEfficiency e;
  e.source = require_source(r, object);
  e.flop_forward = read_fraction(r, "flop_efficiency");
  e.flop_backward = read_fraction_or(r, "backward_flop_efficiency", e.flop_forward);
  e.memory_forward = read_fraction(r, "memory_efficiency");
  e.memory_backward = read_fraction_or(r, "backward_memory_efficiency", e.memory_forward);
  e.half_efficiency_flops = read_non_negative_or(r, "half_efficiency_flops", 0);
  return e;
}

// `parent`'s link entry `key`: {"bandwidth_efficiency": f in (0, 1], "source": ...} -> f.
double read_link_efficiency(json::ObjectReader& parent, const std::string& key) {
  json::ObjectReader link = parent.get_object(key);
  link.finish({"bandwidth_efficiency"});
  require_source(link, parent.get_raw(key));
  return read_fraction(link, "bandwidth_efficiency");
}

DeviceClass parse_device_class(const Json& object, const std::string& path) {
  json::ObjectReader r(object, path);
  r.finish({"name", "kind", "match", "launch_overhead_us", "compute_precision", "ops", "links"});
  DeviceClass d;
  d.source = require_source(r, object);
  d.name = r.get_string("name");
  if (d.name.empty()) json::fail(r.field("name"), d.name, "must not be empty");
  d.kind = static_cast<DeviceKind>(strategies::detail::read_choice(r, "kind", kDeviceKinds));

  const Json& match = r.get_raw("match");
  if (!match.is_array()) {
    json::fail(r.field("match"), match,
               "must be a list of device-name substrings ([] for the fallback of its kind)");
  }
  for (std::size_t i = 0; i < match.size(); ++i) {
    const std::string at = r.field("match") + "[" + std::to_string(i) + "]";
    if (!match[i].is_string() || match[i].get<std::string>().empty()) {
      json::fail(at, match[i], "must be a non-empty string (a substring of the device name)");
    }
    d.match.push_back(lower(match[i].get<std::string>()));
  }

  const double overhead_us = r.get_number("launch_overhead_us");
  if (overhead_us < 0) json::fail(r.field("launch_overhead_us"), overhead_us, "must be >= 0");
  d.launch_overhead_s = overhead_us * 1e-6;
  if (r.has("compute_precision")) {
    d.compute_precision = static_cast<Precision>(
        strategies::detail::read_choice(r, "compute_precision", kPrecisions));
  } else {
    r.accept("compute_precision");
  }

  json::ObjectReader ops = r.get_object("ops");
  std::vector<std::string> names;
  for (int c = 0; c < kNumOpClasses; ++c) names.push_back(op_class_name(static_cast<OpClass>(c)));
  ops.finish(names);
  for (int c = 0; c < kNumOpClasses; ++c) {
    // Required: every device class states every kind, except FP8 GEMMs (only devices with FP8
    // tensor cores have them).
    if (static_cast<OpClass>(c) == OpClass::kFp8Gemm && !ops.has(names[c])) {
      ops.accept(names[c]);
      continue;
    }
    const Json& op = ops.get_raw(names[c]);
    d.ops[c] = parse_op(op, ops.field(names[c]));
    d.has_op[c] = true;
  }
  if (r.has("links")) {
    json::ObjectReader links = r.get_object("links");
    links.finish({"nvswitch"});
    d.nvswitch_efficiency = read_link_efficiency(links, "nvswitch");
  }
  return d;
}

std::array<OpClass, kNumBlocks> parse_blocks(const Json& object, const std::string& path) {
  json::ObjectReader r(object, path);
  std::vector<std::string> block_names;
  for (int b = 1; b < kNumBlocks; ++b) {
    block_names.push_back(strategies::block_name(static_cast<Block>(b)));
  }
  r.finish(block_names);  // unknown block names
  std::vector<std::string> class_names;
  for (int c = 0; c < kNumOpClasses; ++c) {
    class_names.push_back(op_class_name(static_cast<OpClass>(c)));
  }
  std::array<OpClass, kNumBlocks> out{};
  for (int b = 1; b < kNumBlocks; ++b) {
    // Required: every block of the Plan gets an op class, none by default.
    out[b] =
        static_cast<OpClass>(strategies::detail::read_choice(r, block_names[b - 1], class_names));
  }
  return out;
}

}  // namespace

const char* op_class_name(OpClass c) {
  switch (c) {
    case OpClass::kGemm:
      return "gemm";
    case OpClass::kAttentionCore:
      return "attention_core";
    case OpClass::kNorm:
      return "norm";
    case OpClass::kEmbedding:
      return "embedding";
    case OpClass::kOptimizer:
      return "optimizer";
    case OpClass::kFusedAttention:
      return "fused_attention";
    case OpClass::kFp8Gemm:
      return "fp8_gemm";
  }
  return "?";
}

Efficiencies::Efficiencies(std::array<OpClass, kNumBlocks> block_classes,
                           std::vector<DeviceClass> devices, std::string source)
    : block_classes_(block_classes), devices_(std::move(devices)), source_(std::move(source)) {}

OpClass Efficiencies::op_class(Block b) const {
  STRATA_CHECK(b != Block::kNone, "a compute task without a block has no op class");
  return block_classes_[static_cast<int>(b)];
}

namespace {
// The first of `classes` (each with .kind and lower-case .match) of the device's kind whose match
// names it, else that kind's first fallback (empty match); nullptr when there is neither.
template <typename T>
const T* class_of(const std::vector<T>& classes, const strategies::DeviceSpec& device) {
  const std::string name = lower(device.name);
  const T* fallback = nullptr;
  for (const T& d : classes) {
    if (d.kind != device.kind) continue;
    if (d.match.empty()) {
      if (fallback == nullptr) fallback = &d;
      continue;
    }
    for (const std::string& m : d.match) {
      if (name.find(m) != std::string::npos) return &d;
    }
  }
  return fallback;
}
}  // namespace

const DeviceClass& Efficiencies::device_class(const strategies::DeviceSpec& device) const {
  const DeviceClass* d = class_of(devices_, device);
  STRATA_CHECK(d != nullptr, "no fallback device class for device \"" + device.name +
                                 "\" (parse_efficiencies requires one per kind)");
  return *d;
}

namespace {
// "links": {"nvswitch": {"bandwidth_efficiency": f, "source": ...}, "pcie", "shared", "network",
// "software_latency": {"model": "nccl" | "none", "source": ...}, "nccl_sms": {"sms": n,
// "source": ...}}, each optional (1 = line rate, no software latency, no SMs held), each with
// its source.
LinkEfficiencies parse_links(const Json& object, const std::string& path) {
  json::ObjectReader r(object, path);
  r.finish({"nvswitch", "pcie", "shared", "network", "software_latency", "nccl_sms"});
  LinkEfficiencies out;
  for (auto [key, field] : {std::pair{"nvswitch", &out.nvswitch}, std::pair{"pcie", &out.pcie},
                            std::pair{"shared", &out.shared}, std::pair{"network", &out.network}}) {
    if (r.has(key)) *field = read_link_efficiency(r, key);
  }
  if (r.has("software_latency")) {
    json::ObjectReader latency = r.get_object("software_latency");
    latency.finish({"model"});
    require_source(latency, r.get_raw("software_latency"));
    const std::string model = latency.get_string("model");
    if (model != "nccl" && model != "none") {
      json::fail(latency.field("model"), model, "must be \"nccl\" or \"none\"");
    }
    out.nccl_latency = model == "nccl";
  }
  if (r.has("nccl_sms")) {
    json::ObjectReader sms = r.get_object("nccl_sms");
    sms.finish({"sms"});
    require_source(sms, r.get_raw("nccl_sms"));
    const long long n = sms.get_int("sms");
    if (n < 1 || n > 4096) json::fail(sms.field("sms"), n, "must be an SM count from 1 to 4096");
    out.nccl_sms = static_cast<int>(n);
  }
  return out;
}
}  // namespace

double LinkEfficiencies::intra(strategies::IntraFabric f,
                               const strategies::DeviceSpec& device) const {
  switch (f) {
    case strategies::IntraFabric::kNvSwitch: {
      const ByDevice* d = class_of(by_device, device);
      return d != nullptr && d->nvswitch ? *d->nvswitch : nvswitch;
    }
    case strategies::IntraFabric::kPcie:
      return pcie;
    case strategies::IntraFabric::kShared:
      return shared;
  }
  return 1;
}

Efficiencies parse_efficiencies(const Json& j, const std::string& what) {
  json::ObjectReader r(j, what);
  r.finish({"schema_version", "blocks", "devices", "links"});
  const long long version = r.get_int("schema_version");
  if (version != kSchemaVersion) {
    json::fail(r.field("schema_version"), version,
               "unsupported; this Strata reads schema_version " + std::to_string(kSchemaVersion));
  }
  const std::array<OpClass, kNumBlocks> blocks =
      parse_blocks(r.get_raw("blocks"), r.field("blocks"));

  const Json& list = r.get_raw("devices");
  if (!list.is_array() || list.empty()) {
    json::fail(r.field("devices"), list, "must be a non-empty list of device classes");
  }
  std::vector<DeviceClass> devices;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string at = r.field("devices") + "[" + std::to_string(i) + "]";
    DeviceClass d = parse_device_class(list[i], at);
    for (const DeviceClass& other : devices) {
      if (other.name == d.name) {
        json::fail(at + ".name", d.name, "duplicate device class name");
      }
      if (other.kind == d.kind && other.match.empty() && d.match.empty()) {
        const std::string kind = kDeviceKinds[static_cast<int>(d.kind)];
        json::fail(at + ".match", Json::array(),
                   "a second fallback for kind \"" + kind + "\" (\"" + other.name +
                       "\" is one); give it device-name substrings to match");
      }
    }
    devices.push_back(std::move(d));
  }
  for (std::size_t k = 0; k < kDeviceKinds.size(); ++k) {
    const bool has_fallback = std::any_of(devices.begin(), devices.end(), [&](const auto& d) {
      return static_cast<std::size_t>(d.kind) == k && d.match.empty();
    });
    if (!has_fallback) {
      json::fail(r.field("devices"), list.size(),
                 "no fallback class (\"match\": []) for kind \"" + kDeviceKinds[k] +
                     "\": devices of that kind that no class matches would have no efficiencies");
    }
  }
  LinkEfficiencies links;
  if (r.has("links")) links = parse_links(r.get_raw("links"), r.field("links"));
  for (const DeviceClass& d : devices) {
    links.by_device.push_back({d.kind, d.match, d.nvswitch_efficiency});
  }
  Efficiencies out(blocks, std::move(devices), strategies::detail::read_source(j));
  out.set_links(links);
  return out;
}

Efficiencies load_efficiencies(const std::string& path) {
  const Json j = json::parse_file(path);
  try {
    return parse_efficiencies(j, "efficiencies");
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

std::string default_efficiencies_path() {
  if (const char* path = std::getenv("STRATA_EFFICIENCIES")) return path;
  return std::string(STRATA_PROFILER_DATA_DIR) + "/efficiencies.json";
}

}  // namespace strata::profiler
