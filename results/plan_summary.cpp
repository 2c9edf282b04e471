// The plan summary's text rendering (`strata plan` without --json).
#include "results/plan_summary.hpp"

#include <sstream>
#include <vector>

#include "common/units.hpp"

namespace strata::results {

namespace {

// "0-7" for consecutive ranks, otherwise the first four and the last: "0, 8, 16, 24, ... 120".
std::string format_group(const json::Json& ranks) {
  std::vector<int> r = ranks.get<std::vector<int>>();
  if (r.size() == 1) return std::to_string(r[0]);
  bool consecutive = true;
  for (std::size_t i = 1; i < r.size(); ++i) consecutive = consecutive && r[i] == r[i - 1] + 1;
  if (consecutive) return std::to_string(r.front()) + "-" + std::to_string(r.back());
  std::string out;
  for (std::size_t i = 0; i < r.size() && i < 4; ++i) out += (i ? ", " : "") + std::to_string(r[i]);
  if (r.size() > 4) out += ", ... " + std::to_string(r.back());
  return out;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s += std::string(width - s.size(), ' ');
  return s;
}
std::string lpad(std::string s, std::size_t width) {
  if (s.size() < width) s = std::string(width - s.size(), ' ') + s;
  return s;
}

std::string count(double n) {
  std::ostringstream os;
  os.precision(0);
  os << std::fixed << n;
  return os.str();
}

}  // namespace

std::string render_plan_summary(const json::Json& j) {
  using units::format_bytes;
  std::ostringstream os;
  const auto& d = j["degrees"];
  os << "Strata plan: " << j["model"].get<std::string>() << " on "
     << j["cluster"].get<std::string>() << ", strategy " << j["strategy"].get<std::string>()
     << "\n";
  if (j.contains("seq_length")) {
    os << "  model          sequence length " << j["seq_length"] << ", vocabulary "
       << j["vocab_size"];
    if (j.contains("unpadded_vocab_size")) {
      os << " (" << j["unpadded_vocab_size"] << " padded to a multiple of "
         << j["make_vocab_size_divisible_by"] << " x tp " << j["degrees"]["tp"] << ")";
    }
    os << "\n";
  }
  os << "  world          " << j["world_size"] << " ranks = dp " << d["dp"] << " x tp " << d["tp"]
     << " x pp " << d["pp"] << " x cp " << d["cp"] << " (ep " << d["ep"] << " inside dp), order "
     << j["order"].get<std::string>() << "\n";
  os << "  schedule       " << j["schedule"].get<std::string>();
  if (j["virtual_stages"].get<int>() > 1) os << " x" << j["virtual_stages"] << " virtual stages";
  os << ", " << j["num_micro_batches"] << " micro-batches of " << j["micro_batch_size"]
     << " (global batch " << j["global_batch_size"] << ")\n";
  os << "  options        ZeRO-" << j["zero_stage"];
  if (j.contains("zero_shard_group")) {
    os << " in shard groups of " << j["zero_shard_group"] << " (hybrid sharding)";
  }
  os << ", recompute " << j["recompute"].get<std::string>() << ", sequence parallel "
     << (j["sequence_parallel"].get<bool>() ? "on" : "off");
  if (j.contains("tp_comm_overlap_sms")) {
    const int sms = j["tp_comm_overlap_sms"].get<int>();
    os << ", tp communication overlapped (rings beside the GEMMs; communication holds " << sms
       << (sms == 1 ? " SM)" : " SMs)");
  }
  os << ", " << j["precision"].get<std::string>();
  if (j["layer_overrides"].get<int>() > 0) os << ", " << j["layer_overrides"] << " layer overrides";
  os << "\n";
  if (j.contains("stages")) {
    for (const auto& st : j["stages"]) {
      os << (st["stage"].get<int>() == 0 ? "  stages         " : "                 ") << "stage "
         << st["stage"] << ": " << st["layers"] << " layers, tp " << st["tp"] << " x dp "
         << st["dp"] << ", on " << st["node_group"].get<std::string>() << " ("
         << st["device"].get<std::string>() << ")\n";
    }
  }
  os << "  groups         ";
  bool first = true;
  for (const char* dim : {"tp", "dp", "pp", "cp", "ep"}) {
    const auto& g = j["groups"][dim];
    if (g["size"].get<int>() == 1) continue;
    os << (first ? "" : "\n                 ") << dim << ": " << g["count"] << " groups of "
       << g["size"] << " (rank 0's: " << format_group(g["rank0"]) << ")";
    first = false;
  }
  if (first) os << "none (one rank)";
  os << "\n";
  os << "  parameters     " << units::format_count(j["params"]["total"].get<double>()) << "\n";
  const auto& f = j["flops_per_step"];
  os << "  FLOPs / step   model " << units::format_flops(f["model"].get<double>())
     << ", hardware (with recompute) " << units::format_flops(f["hardware"].get<double>())
     << "; Megatron eq. 3: " << units::format_flops(f["megatron_eq3"].get<double>()) << "\n";
  const auto& t = j["tasks"];
  os << "  tasks          " << count(t["total"].get<double>()) << " over all ranks ("
     << count(t["compute"].get<double>()) << " compute, " << count(t["collective"].get<double>())
     << " collective, " << count(t["send"].get<double>()) << " send, "
     << count(t["recv"].get<double>()) << " recv); " << count(t["per_rank_max"].get<double>())
     << " per rank at most, " << t["distinct_programs"] << " distinct programs\n";
  os << "  communication  (per step)\n";
  os << "    " << pad("kind", 16) << pad("purpose", 11) << lpad("count", 12) << lpad("per rank", 14)
     << lpad("all ranks", 14) << "\n";
  for (const auto& c : j["communication"]) {
    os << "    " << pad(c["kind"].get<std::string>(), 16)
       << pad(c["purpose"].get<std::string>(), 11) << lpad(count(c["count"].get<double>()), 12)
       << lpad(format_bytes(c["bytes_per_rank"].get<double>()), 14)
       << lpad(format_bytes(c["bytes"].get<double>()), 14) << "\n";
  }
  os << "  memory per rank, by pipeline stage\n";
  os << "    " << pad("stage", 7) << lpad("ranks", 6) << lpad("params", 12) << lpad("grads", 12)
     << lpad("optimizer", 12) << lpad("transient", 13) << lpad("peak", 12) << lpad("capacity", 12)
     << "  fits\n";
  for (const auto& s : j["memory"]["stages"]) {
    os << "    " << pad(std::to_string(s["stage"].get<int>()), 7)
       << lpad(std::to_string(s["ranks"].get<int>()), 6)
       << lpad(format_bytes(s["params_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["grads_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["optimizer_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["dynamic_peak_bytes"].get<double>()), 13)
       << lpad(format_bytes(s["peak_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["capacity_bytes"].get<double>()), 12) << "  "
       << (s["fits"].get<bool>() ? "yes" : "NO") << "\n";
  }
  os << "  fits           " << (j["memory"]["fits"].get<bool>() ? "yes" : "NO") << " (peak "
     << format_bytes(j["memory"]["max_peak_bytes"].get<double>()) << ")\n";
  return os.str();
}

}  // namespace strata::results
