// run.json: what `strata run --json` measured, as plain data. run_to_json() writes it,
// run_from_json() reads it back.
//
// Contract of the file (kind "strata.run", schema_version 1): one object with the run's inputs
// (model, strategy and cluster names, world size, communication backend, seed, learning rate,
// data file), the steps it ran (1-based; `first_step` > 1 when resumed from a checkpoint), each
// step's loss (the mean cross-entropy over the global batch), wall seconds (the slowest rank's)
// and tokens/s, the median tokens/s, each rank's peak memory as the executor measured it beside
// the Plan's prediction (static and peak bytes; staging and alignment padding are outside the
// Plan's tensors), and the provenance of the specs with the host and the (UTC) date. `losses`
// repeats the steps' losses for scripts. A run that switches strategies (`strata run --switch`)
// also has its schedule's name ("schedule"), each step's strategy ("strategy" in each step) and
// each switch ("switches": at which step, from and to which strategy, its measured seconds and
// the bytes sent over the network, in total and by the busiest rank); a plain run has none of
// these keys. A federated run (`strata run` of a federated strategy, docs/federated.md "Running
// it for real") has a "federated" object (sites, rounds, participants, bytes per site, secure
// aggregation, DP sigma and epsilon), its steps' losses the mean over the sites; its content is
// carried as JSON, not read into members. A parameter-server run (docs/parameter-server.md
// "Running it for real") has a "ps" object the same way (servers, consistency, per worker the
// bytes, rows, waiting and staleness, per server the bytes and updates); its tokens_per_step
// counts samples. Measured, so not reproducible byte for byte: host, date and timings differ
// between runs.
//
// The reader is strict like report_from_json. Adding a block means a member here, its key in
// run_to_json and run_from_json, and a case in tests/results/run_test.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/plan.hpp"

namespace strata::results {

inline constexpr int kRunSchemaVersion = 1;
inline constexpr const char* kRunKind = "strata.run";

struct RunStep {
  int step = 0;        // 1 for the first step of the training run
  double loss = 0;     // mean cross-entropy over the global batch
  double seconds = 0;  // the slowest rank's wall time
  double tokens_per_s = 0;
  std::string strategy;  // the strategy that ran it, in a run that switches ("" otherwise)

  bool operator==(const RunStep&) const = default;
};

// One switch of strategies at a step boundary (executor/switch_state.hpp).
struct RunSwitch {
  int at_step = 0;              // the first step under `to`
  std::string from, to;         // the strategies' names
  double measured_seconds = 0;  // the slowest rank's wall time of the switch
  double bytes_sent = 0;        // over the network, every rank's
  double max_rank_bytes_sent = 0;
  // The simulator's prediction of the same switch (cli/switching.hpp simulate_switch: the bytes
  // of strategies::switch_traffic, the seconds of their all-to-all on the run's cluster); -1
  // when it was not simulated (a build without SimGrid).
  double simulated_seconds = -1;
  double simulated_bytes = -1;

  bool operator==(const RunSwitch&) const = default;
};

// One rank's memory: the Plan's prediction and what the executor held (executor/memory.hpp).
struct RunMemory {
  int rank = 0;
  double planned_peak_bytes = 0, measured_peak_bytes = 0;
  strategies::StaticMemory planned_static, measured_static;
  double measured_peak_transient_bytes = 0;
  double staging_peak_bytes = 0;       // communication copies outside the Plan's tensors
  double alignment_padding_bytes = 0;  // the allocator's, at the peak
  double reserved_peak_bytes = 0;      // the most held at once, with the executor's buffer cache

  bool operator==(const RunMemory& o) const;
};

struct RunRecord {
  std::string source = "measured";
  std::string model, strategy, cluster;  // the specs' names
  int world_size = 0;
  std::string backend;  // the communication backend ("mpi", "local")
  // Where the tensors lived: "cpu", or "cuda:N (the GPU's name)"; "cpu" when a file lacks it.
  std::string device = "cpu";
  std::uint64_t seed = 0;
  int first_step = 1;               // the first step this run executed
  double lr = 0;                    // AdamW learning rate
  std::string data;                 // the training text's path
  double tokens_per_step = 0;       // global batch x sequence length
  std::vector<RunStep> steps;       // the steps run, in order
  std::string schedule;             // --switch: the schedule's name ("" for a run of one strategy)
  std::vector<RunSwitch> switches;  // --switch: in order
  json::Json federated;             // a federated run's section (null for any other run)
  json::Json ps;                    // a parameter-server run's section (null for any other run)
  double median_tokens_per_s = 0;
  std::vector<RunMemory> memory;  // per rank
  strategies::Provenance provenance;
  std::string host;
  std::string date;  // UTC, ISO 8601 ("2026-01-31T12:00:00Z")
};

json::Json run_to_json(const RunRecord& r);

// Reads run.json's content; `file` names it in errors ("out.json: run.steps[2].loss = ...").
RunRecord run_from_json(const json::Json& j, const std::string& file = "run.json");
RunRecord read_run(const std::string& path);

}  // namespace strata::results
