// Failures over a span of many steps: a discrete-event simulation at step granularity of a
// training job whose step time the SimGrid step simulation gave, with checkpoints, failures
// (a Poisson process plus explicit events), detection, restart or shrinking, and the goodput
// report (docs/failures.md has the spec, the model and the formulas).
//
// Contract:
//  - Simulated time only, in seconds; the same spec, job and seed give the same report.
//  - A failure stops the whole job (synchronous data parallelism). `restart`: after
//    detection_s and restart_s the job resumes from the last completed checkpoint; the steps
//    since it (and a checkpoint being written) are lost. `shrink`: after detection_s the step in
//    flight is re-run with the failed GPU's data-parallel replica removed (its step time
//    re-simulated at the smaller dp, tokens per step scaled by the replicas left); the replica
//    rejoins replacement_s after its failure at the next step boundary (pausing rejoin_s); a
//    failure that would leave fewer than min_dp replicas restarts instead.
//  - Checkpoints are synchronous: every `interval` useful steps the job writes for
//    checkpoint_s. Useful work is counted in full-dp steps (tokens / tokens per full step).
//  - goodput = useful work x failure-free step time / wall time (= effective tokens/s over the
//    failure-free, checkpoint-free tokens/s).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/plan.hpp"

namespace strata::sim {

enum class FailureTarget { kGpu, kNode, kLink };  // a link: a node's network link (its NICs)
enum class FailureReaction { kRestart, kShrink };

// One explicit failure: `target` number `index` fails at simulated time `time_s`.
struct FailureEvent {
  double time_s = 0;
  double time_h = 0;  // as given (time_s = time_h x 3600)
  FailureTarget target = FailureTarget::kGpu;
  int index = 0;
};

// A checkpoint interval as given: "auto" (Young/Daly, rounded to whole steps), a number of
// steps, or seconds (rounded to whole steps).
struct IntervalChoice {
  enum class Kind { kAuto, kSteps, kSeconds } kind = Kind::kAuto;
  double value = 0;
  std::string label() const;  // "auto", "100 steps", "3600 s"
};

// The failure spec (docs/failures.md), validated except for what needs the job (indices
// against the cluster, events against a span given in steps): simulate_failures checks those.
struct FailureSpec {
  double span_s = 0;                            // span.hours x 3600, or 0 when the span is in steps
  std::int64_t span_steps = 0;                  // span.steps, or 0 when it is in hours
  std::vector<double> rates_per_gpu_hour{0.0};  // one report row per rate (x interval)
  std::vector<FailureEvent> events;             // sorted by time
  FailureReaction reaction = FailureReaction::kRestart;
  double detection_s = 60;
  double restart_s = 600;
  int min_dp = 0;  // shrink: the fewest replicas the job runs with; 0 = dp - 1
  double replacement_s = 3600;
  double rejoin_s = 0;
  std::vector<IntervalChoice> intervals{IntervalChoice{}};
  double checkpoint_cost_s = -1;  // < 0: derived from the Plan's state bytes
  double write_bytes_per_s_per_node = 5e9;
  int trials = 10;
  std::uint64_t seed = 1;
};

// ConfigError naming the field, the value and the rule ("failures.rate_per_gpu_hour = -1:
// must be >= 0").
FailureSpec parse_failure_spec(const json::Json& j, const std::string& what = "failures");
FailureSpec load_failure_spec(const std::string& path);

// What the event simulation needs to know about the job.
struct FailureJob {
  double step_time_s = 0;      // the failure-free step at full dp (the SimGrid step)
  double tokens_per_step = 0;  // at full dp
  int dp = 1;
  std::vector<int> node_of_gpu;     // per GPU of the job
  std::vector<int> replica_of_gpu;  // its data-parallel coordinate
  // Bytes of persistent state (parameters and optimizer state) each node writes per checkpoint:
  // the largest over the nodes.
  double checkpoint_bytes_per_node = 0;
  std::map<int, double> step_time_at_dp;  // shrink: the re-simulated step at each smaller dp
};

// The job of a Plan on its cluster (step time and step_time_at_dp left for the caller).
FailureJob failure_job(const strategies::Plan& plan, const strategies::ClusterSpec& cluster,
                       int global_batch_size, int seq_length);

// The dp values whose step time a shrink needs (min_dp .. dp-1; empty for restart).
std::vector<int> shrink_dps(const FailureSpec& spec, int dp);

// Young (1974): sqrt(2 C M); Daly (2006), for C < 2M:
// sqrt(2 C M) [1 + sqrt(C/(2M))/3 + C/(18 M)] - C, else M. Seconds; M = inf gives inf.
double young_interval_s(double checkpoint_s, double mtbf_s);
double daly_interval_s(double checkpoint_s, double mtbf_s);

// Mean, population standard deviation, min and max over the trials.
struct Spread {
  double mean = 0, stddev = 0, min = 0, max = 0;
};

// One trial's totals.
struct TrialResult {
  double wall_s = 0;
  double useful_steps = 0;  // full-dp step equivalents
  int failures = 0;         // every failure that happened (also those that hit nothing)
  double lost_work_s = 0;   // step and checkpoint time thrown away
  double downtime_s = 0;    // detection + restart (+ rejoin) time
  double checkpoint_s = 0;  // checkpoint writes that completed or were cut
};

// One (rate, interval) row.
struct FailureRow {
  double rate_per_gpu_hour = 0;
  std::string interval_label;
  int interval_steps = 0;
  double mtbf_s = 0;  // of the job: 1 / (rate x GPUs); inf for rate 0
  Spread wall_s, useful_steps, failures, lost_work_s, downtime_s, checkpoint_s, goodput,
      tokens_per_s;
  double young_interval_s = 0, daly_interval_s = 0;
  int young_interval_steps = 0;
  // The sweep: mean goodput at intervals around Young's; the best of them.
  std::vector<std::pair<int, double>> sweep;  // (interval steps, mean goodput)
  int best_interval_steps = 0;
  double best_goodput = 0;
};

struct FailureReport {
  std::string reaction;
  double span_s = 0;
  std::int64_t span_steps = 0;
  double step_time_s = 0, tokens_per_step = 0, checkpoint_s = 0, detection_s = 0, restart_s = 0;
  double checkpoint_bytes_per_node = 0;
  bool checkpoint_cost_derived = false;
  int gpus = 0, dp = 0, explicit_events = 0, trials = 0;
  std::uint64_t seed = 0;
  std::map<int, double> step_time_at_dp;
  std::vector<FailureRow> rows;
};

// One trial of the event simulation with `interval_steps`, failures at `rate_per_gpu_hour`
// (seeded by `seed`) plus the spec's events.
TrialResult simulate_trial(const FailureSpec& spec, const FailureJob& job, double checkpoint_s,
                           int interval_steps, double rate_per_gpu_hour, std::uint64_t seed);

// ConfigError for what the spec cannot ask of this job: an event's gpu/node/link index outside
// it, an event after a span given in steps (checked once step_time_s > 0), shrink with dp < 2 or
// min_dp >= dp. simulate_failures() calls it first.
void check_failures(const FailureSpec& spec, const FailureJob& job);

// Every row: the trials (seeds seed, seed+1, ...), the spread, Young/Daly and the sweep.
FailureReport simulate_failures(const FailureSpec& spec, const FailureJob& job);

json::Json failure_report_to_json(const FailureReport& r);
std::string render_failure_report(const FailureReport& r);

}  // namespace strata::sim
