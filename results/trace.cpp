// trace.json: the writer (lanes for concurrent tasks, tracks only where there are tasks, flow
// arrows from sends to receives) and its reader.
#include "results/trace.hpp"

#include <algorithm>
#include <set>
#include <tuple>

#include "common/error.hpp"
#include "results/detail/read.hpp"
#include "strategies/plan_json.hpp"

namespace strata::results {

using strategies::Plan;
using strategies::Stream;
using strategies::Task;
using strategies::TaskKind;
using strategies::TaskSpan;

namespace {

constexpr int kStreams = 6;  // strategies::Stream's values: tid = stream + kStreams * lane
static_assert(static_cast<int>(Stream::kPp) == kStreams - 1, "a stream was added: update kStreams");
constexpr const char* kFlowName = "transfer";
// Slices that overlap by less than this share a thread: that is rounding of the timestamps (the
// 175B trace's consecutive compute tasks overlap by up to 4e-9 us), not concurrency.
constexpr double kTouchUs = kTraceTouchS * 1e6;

const Task& task_of(const Plan& plan, const TaskSpan& s) {
  STRATA_CHECK(s.rank >= 0 && s.rank < plan.world_size, "trace span of a rank outside the world");
  const auto& tasks = plan.program_of(s.rank).tasks;
  STRATA_CHECK(s.task < tasks.size(), "trace span of a task outside the rank's program");
  return tasks[s.task];
}

// Where and when a span is drawn: its thread and its time in microseconds.
struct Slice {
  int tid = 0;
  double ts_us = 0;
  double dur_us = 0;
  double mid_us() const { return ts_us + dur_us / 2; }
};

// Per rank and stream, slices in order of start go to the first lane that is free by then, so
// no two slices of one thread overlap and a stream whose tasks never overlap keeps one thread.
// First fit in order of start uses as few lanes as the most slices in flight at once.
std::vector<Slice> place(const Plan& plan, const std::vector<TaskSpan>& spans) {
  std::vector<Slice> out(spans.size());
  std::map<std::pair<int, int>, std::vector<std::size_t>> by_stream;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const TaskSpan& s = spans[i];
    // end - start in microseconds, so that a slice ends where the next one starts when the
    // spans touch (up to rounding of the sum).
    out[i].ts_us = s.start_s * 1e6;
    out[i].dur_us = s.end_s * 1e6 - out[i].ts_us;
    by_stream[{s.rank, static_cast<int>(task_of(plan, s).stream)}].push_back(i);
  }
  for (auto& [key, indices] : by_stream) {
    std::stable_sort(indices.begin(), indices.end(),
                     [&](std::size_t a, std::size_t b) { return out[a].ts_us < out[b].ts_us; });
    std::vector<double> lane_end;
    for (std::size_t i : indices) {
      std::size_t lane = 0;
      while (lane < lane_end.size() && lane_end[lane] - kTouchUs > out[i].ts_us) ++lane;
      if (lane == lane_end.size()) lane_end.push_back(0);
      lane_end[lane] = out[i].ts_us + out[i].dur_us;
      out[i].tid = key.second + kStreams * static_cast<int>(lane);
    }
  }
  return out;
}

std::string thread_name(int tid) {
  const std::string stream = strategies::stream_name(static_cast<Stream>(tid % kStreams));
  const int lane = tid / kStreams;
  return lane == 0 ? stream : stream + " " + std::to_string(lane + 1);
}

json::Json metadata(const char* name, int pid, int tid, json::Json args) {
  return {{"ph", "M"}, {"name", name}, {"pid", pid}, {"tid", tid}, {"args", std::move(args)}};
}

json::Json task_args(const Plan& plan, const TaskSpan& s, const Task& t) {
  json::Json args = {{"task", s.task},
                     {"kind", task_kind_name(t.kind)},
                     {"phase", phase_name(t.phase)},
                     {"block", block_name(t.block)},
                     {"layer", t.layer},
                     {"micro_batch", t.micro_batch},
                     {"chunk", t.chunk},
                     {"flops", t.flops},
                     {"bytes", t.bytes},
                     {"elementwise_bytes", t.elementwise_bytes}};
  if (t.kind == TaskKind::kCollective) {
    args["collective"] = collective_name(t.collective);
    args["purpose"] = purpose_name(t.purpose);
    args["group"] = plan.group_ranks(s.rank, t.group);
  } else if (t.kind == TaskKind::kSend || t.kind == TaskKind::kRecv) {
    args["peer"] = plan.peer_rank(s.rank, t);
  }
  if (s.waited_s > 0) args["waited_us"] = s.waited_s * 1e6;
  return args;
}

// Flow events from each send to its receive when both are traced, numbered from 1 in the order
// of the sends.
void add_transfers(const Plan& plan, const std::vector<TaskSpan>& spans,
                   const std::vector<Slice>& slices, json::Json& events) {
  // (sender, receiver, tag) -> the send's and the receive's span index
  std::map<std::tuple<int, int, std::uint32_t>, std::pair<long long, long long>> ends;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Task& t = task_of(plan, spans[i]);
    if (t.kind != TaskKind::kSend && t.kind != TaskKind::kRecv) continue;
    const int peer = plan.peer_rank(spans[i].rank, t);
    const bool send = t.kind == TaskKind::kSend;
    const auto it = ends.try_emplace(send ? std::tuple{spans[i].rank, peer, t.tag}
                                          : std::tuple{peer, spans[i].rank, t.tag},
                                     std::pair{-1LL, -1LL})
                        .first;
    (send ? it->second.first : it->second.second) = static_cast<long long>(i);
  }
  long long id = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Task& t = task_of(plan, spans[i]);
    if (t.kind != TaskKind::kSend) continue;
    const long long recv = ends.at({spans[i].rank, plan.peer_rank(spans[i].rank, t), t.tag}).second;
    if (recv < 0) continue;
    ++id;
    const char* cat = strategies::stream_name(t.stream);
    for (const std::size_t end : {i, static_cast<std::size_t>(recv)}) {
      json::Json e = {{"ph", end == i ? "s" : "f"},
                      {"id", id},
                      {"cat", cat},
                      {"name", kFlowName},
                      {"pid", spans[end].rank},
                      {"tid", slices[end].tid},
                      {"ts", slices[end].mid_us()},
                      {"args", {{"task", spans[end].task}}}};
      if (end != i) e["bp"] = "e";
      events.push_back(std::move(e));
    }
  }
}

}  // namespace

json::Json trace_other_data(const std::string& source, const strategies::Provenance& p) {
  return {{"schema_version", kTraceSchemaVersion},
          {"kind", kTraceKind},
          {"source", source},
          {"provenance", strategies::provenance_to_json(p)}};
}

json::Json trace_to_json(const Plan& plan, const std::vector<TaskSpan>& spans,
                         json::Json other_data) {
  const std::vector<Slice> slices = place(plan, spans);
  json::Json events = json::Json::array();

  // Names of the processes (ranks, in order of appearance) and of the threads they use.
  std::vector<int> ranks;
  std::map<int, std::set<int>> tids;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    if (!tids.count(spans[i].rank)) ranks.push_back(spans[i].rank);
    tids[spans[i].rank].insert(slices[i].tid);
  }
  for (const int rank : ranks) {
    events.push_back(metadata("process_name", rank, 0,
                              {{"name", "rank " + std::to_string(rank) + " (stage " +
                                            std::to_string(plan.stage_of(rank)) + ")"}}));
    for (const int tid : tids[rank]) {
      events.push_back(metadata("thread_name", rank, tid, {{"name", thread_name(tid)}}));
      events.push_back(metadata("thread_sort_index", rank, tid,
                                {{"sort_index", 1000 * (tid % kStreams) + tid / kStreams}}));
    }
  }

  for (std::size_t i = 0; i < spans.size(); ++i) {
    const TaskSpan& s = spans[i];
    const Task& t = task_of(plan, s);
    events.push_back({{"ph", "X"},
                      {"name", plan.task_name(t)},
                      {"cat", task_kind_name(t.kind)},
                      {"pid", s.rank},
                      {"tid", slices[i].tid},
                      {"ts", slices[i].ts_us},
                      {"dur", slices[i].dur_us},
                      {"args", task_args(plan, s, t)}});
  }
  add_transfers(plan, spans, slices, events);
  return {{"traceEvents", std::move(events)},
          {"displayTimeUnit", "ms"},
          {"otherData", std::move(other_data)}};
}

// ---------------------------------------------------------------------------------------------
// Reading

namespace {

const std::vector<std::string> kKnownArgs = {
    "task",        "kind",    "phase", "block", "layer",
    "micro_batch", "chunk",   "flops", "bytes", "elementwise_bytes",
    "collective",  "purpose", "group", "peer",  "waited_us"};

// A thread id: its stream and lane.
void read_tid(json::ObjectReader& r, Stream* stream, int* lane) {
  const long long tid = detail::checked_int(r, "tid", 0, 1 << 30);
  *stream = static_cast<Stream>(tid % kStreams);
  *lane = static_cast<int>(tid / kStreams);
}

void read_args(const json::Json& raw, const std::string& path, TraceEvent* e) {
  // ObjectReader treats "source" and "notes" as provenance strings; args are not specs, so an
  // arg of either name is kept as an unknown arg instead.
  json::Json stripped;
  const json::Json* known = &raw;
  if (raw.is_object() && (raw.contains("source") || raw.contains("notes"))) {
    stripped = raw;
    stripped.erase("source");
    stripped.erase("notes");
    known = &stripped;
  }
  json::ObjectReader a(*known, path);
  using namespace strategies;
  e->task = static_cast<std::uint32_t>(detail::checked_int(a, "task", 0, 0xFFFFFFFFLL));
  e->kind = detail::enum_from_name(task_kind_name, a.get_string("kind"), a.field("kind"));
  e->phase = detail::enum_from_name(phase_name, a.get_string("phase"), a.field("phase"));
  e->block = detail::enum_from_name(block_name, a.get_string("block"), a.field("block"));
  e->layer = detail::small_int(a, "layer", -1);
  e->micro_batch = detail::small_int(a, "micro_batch", -1);
  e->chunk = detail::small_int(a, "chunk", 0);
  e->flops = a.get_number("flops");
  e->bytes = a.get_number("bytes");
  e->elementwise_bytes = a.get_number("elementwise_bytes");
  if (a.has("collective")) {
    e->collective =
        detail::enum_from_name(collective_name, a.get_string("collective"), a.field("collective"));
  }
  if (a.has("purpose")) {
    e->purpose = detail::enum_from_name(purpose_name, a.get_string("purpose"), a.field("purpose"));
  }
  if (a.has("group")) e->group = detail::read_ints(a.get_raw("group"), a.field("group"));
  if (a.has("peer")) e->peer = detail::small_int(a, "peer", 0);
  if (a.has("waited_us")) {
    const double w = a.get_number("waited_us");
    if (!(w >= 0)) json::fail(a.field("waited_us"), w, "must be >= 0");
    e->waited_s = w / 1e6;
  }
  for (const auto& [key, value] : raw.items()) {
    if (std::find(kKnownArgs.begin(), kKnownArgs.end(), key) == kKnownArgs.end()) {
      e->other_args[key] = value;
    }
  }
}

TraceEvent read_complete(json::ObjectReader& r) {
  TraceEvent e;
  e.name = r.get_string("name");
  r.get_string("cat");  // the task kind again, for the viewers' filters
  e.rank = detail::small_int(r, "pid", 0);
  read_tid(r, &e.stream, &e.lane);
  e.start_s = r.get_number("ts") / 1e6;
  const double dur = r.get_number("dur");
  if (dur < 0) json::fail(r.field("dur"), dur, "must be >= 0");
  e.duration_s = dur / 1e6;
  read_args(r.get_raw("args"), r.field("args"), &e);
  return e;
}

void read_metadata(json::ObjectReader& r, Trace* t) {
  const std::string name = r.get_string("name");
  const int pid = detail::small_int(r, "pid", 0);
  json::ObjectReader args = r.get_object("args");
  if (name == "process_name") {
    r.get_int("tid");
    t->process_names[pid] = args.get_string("name");
  } else if (name == "thread_name") {
    TraceTrack track;
    track.rank = pid;
    read_tid(r, &track.stream, &track.lane);
    track.name = args.get_string("name");
    t->tracks.push_back(track);
  } else if (name == "thread_sort_index") {
    r.get_int("tid");
    args.get_int("sort_index");
  } else {
    json::fail(r.field("name"), name,
               "must be process_name, thread_name or thread_sort_index (the metadata "
               "trace_to_json writes)");
  }
  args.finish({});
}

// One end of a flow arrow: the event it binds to, named by rank and task.
struct FlowEnd {
  long long id = 0;
  int rank = 0;
  std::uint32_t task = 0;
  std::string path;
};

FlowEnd read_flow_end(json::ObjectReader& r, bool finish) {
  FlowEnd f;
  f.path = r.path();
  f.id = r.get_int("id");
  r.get_string("cat");
  const std::string name = r.get_string("name");
  if (name != kFlowName) json::fail(r.field("name"), name, "must be \"transfer\"");
  f.rank = detail::small_int(r, "pid", 0);
  r.get_int("tid");
  r.get_number("ts");
  if (finish && r.get_string("bp") != "e") {
    json::fail(r.field("bp"), r.get_raw("bp"), "must be \"e\" (bind to the enclosing slice)");
  }
  json::ObjectReader args = r.get_object("args");
  f.task = static_cast<std::uint32_t>(detail::checked_int(args, "task", 0, 0xFFFFFFFFLL));
  args.finish({});
  return f;
}

}  // namespace

Trace trace_from_json(const json::Json& j, const std::string& file) {
  return detail::naming_file(file, [&] {
    json::ObjectReader top(j, "trace");
    Trace t;
    {
      json::ObjectReader other = top.get_object("otherData");
      detail::check_header(other, kTraceKind, kTraceSchemaVersion, "trace");
      other.get_string("source");
      detail::read_provenance(other);  // checked; kept as written in other_data
      t.other_data = top.get_raw("otherData");
    }
    top.get_string("displayTimeUnit");
    const json::Json& events = top.get_raw("traceEvents");
    if (!events.is_array()) json::fail(top.field("traceEvents"), events, "must be a list");

    std::map<std::pair<int, std::uint32_t>, std::size_t> event_of;  // (rank, task) -> index
    std::vector<FlowEnd> starts, finishes;
    for (std::size_t i = 0; i < events.size(); ++i) {
      json::ObjectReader r(events[i], top.field("traceEvents") + "[" + std::to_string(i) + "]");
      const std::string ph = r.get_string("ph");
      if (ph == "X") {
        t.events.push_back(read_complete(r));
        const TraceEvent& e = t.events.back();
        if (!event_of.try_emplace({e.rank, e.task}, t.events.size() - 1).second) {
          json::fail(r.field("args.task"), e.task,
                     "rank " + std::to_string(e.rank) + " has this task twice");
        }
      } else if (ph == "M") {
        read_metadata(r, &t);
      } else if (ph == "s" || ph == "f") {
        (ph == "s" ? starts : finishes).push_back(read_flow_end(r, ph == "f"));
      } else {
        json::fail(r.field("ph"), ph, "must be X, M, s or f (the events trace_to_json writes)");
      }
      r.finish({});
    }

    auto event_index = [&](const FlowEnd& f) {
      const auto it = event_of.find({f.rank, f.task});
      if (it == event_of.end()) {
        json::fail(f.path + ".args.task", f.task,
                   "no complete event of rank " + std::to_string(f.rank) + " has this task");
      }
      return it->second;
    };
    std::map<long long, std::size_t> finish_of;  // flow id -> index into finishes
    for (std::size_t i = 0; i < finishes.size(); ++i) {
      if (!finish_of.try_emplace(finishes[i].id, i).second) {
        json::fail(finishes[i].path + ".id", finishes[i].id, "a second flow end with this id");
      }
    }
    for (const FlowEnd& s : starts) {
      const auto it = finish_of.find(s.id);
      if (it == finish_of.end()) json::fail(s.path + ".id", s.id, "flow start without an end");
      t.transfers.push_back({event_index(s), event_index(finishes[it->second])});
      finish_of.erase(it);
    }
    if (!finish_of.empty()) {
      const FlowEnd& f = finishes[finish_of.begin()->second];
      json::fail(f.path + ".id", f.id, "flow end without a start");
    }
    top.finish({});
    return t;
  });
}

Trace read_trace(const std::string& path) { return trace_from_json(json::parse_file(path), path); }

}  // namespace strata::results
