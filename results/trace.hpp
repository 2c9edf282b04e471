// trace.json: a step's tasks on a timeline, in Chrome's trace event format, which Perfetto
// (ui.perfetto.dev) and chrome://tracing open. The simulator (predicted) and the executor
// (measured) both produce TaskSpans of the same Plan, and this one writer turns them into the
// same format, so the two traces line up task by task.
//
// Contract of the file:
//  - {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}; otherData carries
//    kind "strata.trace", schema_version 1, source ("simulated" or "measured"), provenance and
//    whatever else the producer records (the executor: step, backend, host, date).
//  - One process per traced rank (pid = rank, named "rank R (stage S)"), one thread per stream
//    the rank has tasks on (tid = stream index: compute 0, tp 1, cp 2, ep 3, dp 4, pp 5, named
//    after the stream). Streams a rank has no task on get no thread.
//  - Every task is one complete event ("ph": "X"; name = Plan::task_name, cat = task kind;
//    ts and dur in microseconds from the start of the step) with args: task (its id in the
//    rank's program), kind, phase, block, layer, micro_batch, chunk, flops, bytes,
//    elementwise_bytes; collectives add collective, purpose and group (the ranks, ascending);
//    sends and receives add peer; in a simulated trace a collective or a receive adds
//    waited_us when its rank issued it that long before its span (waiting for the other members
//    or the sender: the span is the communication alone). More args may be added; readers keep
//    the ones they don't know.
//  - No two complete events of one thread overlap in time (by more than kTraceTouchS, the
//    rounding of microsecond timestamps; consecutive tasks touch). Tasks of a stream that run
//    concurrently (the pipeline's sends and receives are independent, non-blocking transfers)
//    go to extra threads of that stream, its lanes: lane k >= 1 of stream s has tid s + 6k and
//    is named "<stream> <k+1>" ("pp 2"). Each thread has a thread_sort_index of
//    1000 * stream + lane, so lanes sit under their stream.
//  - A send and its receive (matched by sender, receiver and tag) are joined by a flow arrow
//    when both ranks are traced: a flow start ("ph": "s") inside the send's slice and a flow end
//    ("ph": "f", "bp": "e") inside the receive's slice, with the same id, cat = the stream
//    ("pp") and name "transfer"; args.task names each end's task.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/plan.hpp"
#include "strategies/task_span.hpp"

namespace strata::results {

inline constexpr int kTraceSchemaVersion = 1;
inline constexpr const char* kTraceKind = "strata.trace";
// Complete events of one thread overlap by less than this (1 ns): rounding, not concurrency.
inline constexpr double kTraceTouchS = 1e-9;

// otherData's required part: kind, schema_version, `source` and the provenance. Producers add
// their own keys to it.
json::Json trace_other_data(const std::string& source, const strategies::Provenance& p);

// The trace of `spans` (any order; each (rank, task) at most once) of `plan`'s tasks.
json::Json trace_to_json(const strategies::Plan& plan,
                         const std::vector<strategies::TaskSpan>& spans, json::Json other_data);

// One complete event: one task of one rank.
struct TraceEvent {
  int rank = 0;
  strategies::Stream stream = strategies::Stream::kCompute;
  int lane = 0;  // 0: the stream's own thread; k > 0: its lane k (concurrent tasks)
  std::uint32_t task = 0;
  std::string name;
  strategies::TaskKind kind = strategies::TaskKind::kCompute;
  strategies::Phase phase = strategies::Phase::kNone;
  strategies::Block block = strategies::Block::kNone;
  int layer = -1;
  int micro_batch = -1;
  int chunk = 0;
  double flops = 0;
  double bytes = 0;
  double elementwise_bytes = 0;
  strategies::CollectiveKind collective = strategies::CollectiveKind::kNone;  // collectives
  strategies::Purpose purpose = strategies::Purpose::kNone;                   // collectives
  std::vector<int> group;  // collectives: the group's ranks
  int peer = -1;           // sends and receives
  // Simulated collectives and receives: seconds the rank waited for its peers before start_s
  // (args.waited_us); measured events include such waits in their duration.
  double waited_s = 0;
  double start_s = 0;
  double duration_s = 0;
  json::Json other_args = json::Json::object();  // args this reader does not know, as written
};

// A thread of the trace: one stream (or one lane of it) of one rank.
struct TraceTrack {
  int rank = 0;
  strategies::Stream stream = strategies::Stream::kCompute;
  int lane = 0;
  std::string name;
};

// A send and its receive, as indices into Trace::events.
struct TraceTransfer {
  std::size_t send = 0;
  std::size_t recv = 0;
};

struct Trace {
  json::Json other_data;                     // as written (kind and schema_version checked)
  std::map<int, std::string> process_names;  // by rank
  std::vector<TraceTrack> tracks;            // in file order
  std::vector<TraceEvent> events;            // the complete events, in file order
  std::vector<TraceTransfer> transfers;      // in file order of their flow starts
};

// Reads what trace_to_json writes; ConfigError naming the file, the event
// ("trace.traceEvents[12].args.layer") and the value otherwise.
Trace trace_from_json(const json::Json& j, const std::string& file = "trace.json");
Trace read_trace(const std::string& path);

}  // namespace strata::results
