// The GUI's display reader of trace.json (gui/trace_loader.hpp): what it keeps, and the errors
// it gives for what Strata does not write.
#include "gui/trace_loader.hpp"

#include <gtest/gtest.h>

#include <string>

#include "common/error.hpp"

namespace strata::gui {
namespace {

const std::string kHeader =
    R"({"displayTimeUnit": "ms", "otherData": {"kind": "strata.trace", "schema_version": 1, "source": "simulated"}, "traceEvents": [)";

std::string trace_of(const std::string& events) { return kHeader + events + "]}"; }

const std::string kTwo =
    R"({"ph": "M", "name": "thread_name", "pid": 3, "tid": 5, "args": {"name": "pp"}},)"
    R"({"ph": "X", "name": "L0.fwd\"q\u00e9", "cat": "compute", "pid": 3, "tid": 0, "ts": 10.5, "dur": 2,)"
    R"( "args": {"task": 7, "kind": "compute", "phase": "forward", "block": "attn_core", "layer": 0,)"
    R"( "micro_batch": 1, "chunk": 0, "flops": 1e12, "bytes": 4096, "elementwise_bytes": 0, "extra": [1, {"x": null}]}},)"
    R"({"ph": "X", "name": "send", "cat": "send", "pid": 3, "tid": 11, "ts": 20, "dur": 5,)"
    R"( "args": {"task": 8, "kind": "send", "phase": "forward", "block": "none", "layer": -1,)"
    R"( "micro_batch": 1, "chunk": 0, "flops": 0, "bytes": 8192, "elementwise_bytes": 0, "peer": 4}},)"
    R"({"ph": "s", "id": 1, "pid": 3, "tid": 11, "ts": 21, "cat": "pp", "name": "transfer", "args": {"task": 8}})";

std::string error_of(const std::string& text) {
  try {
    parse_timeline(text, "t.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TraceLoader, KeepsWhatTheTimelineNeeds) {
  const TimelineData d = parse_timeline(trace_of(kTwo), "t.json");
  ASSERT_EQ(d.events.size(), 2u);
  ASSERT_EQ(d.tracks.size(), 1u);
  EXPECT_EQ(d.tracks[0].stream, strategies::Stream::kPp);
  EXPECT_EQ(d.tracks[0].name, "pp");
  const TimelineEvent& a = d.events[0];
  EXPECT_EQ(a.rank, 3);
  EXPECT_EQ(a.task, 7u);
  EXPECT_DOUBLE_EQ(a.start_s, 10.5e-6);
  EXPECT_DOUBLE_EQ(a.duration_s, 2e-6);
  EXPECT_EQ(a.block, strategies::Block::kAttnCore);
  EXPECT_EQ(a.phase, strategies::Phase::kForward);
  EXPECT_EQ(a.micro_batch, 1);
  EXPECT_DOUBLE_EQ(a.flops, 1e12);
  EXPECT_EQ(d.names.substr(a.name_begin, a.name_size), "L0.fwd\"q\xC3\xA9");
  const TimelineEvent& b = d.events[1];
  EXPECT_EQ(b.kind, strategies::TaskKind::kSend);
  EXPECT_EQ(b.stream, strategies::Stream::kPp);  // tid 11 = pp (5) + 6 x lane 1
  EXPECT_EQ(b.lane, 1);
  EXPECT_EQ(b.peer, 4);
  const TimelineModel m(parse_timeline(trace_of(kTwo), "t.json"));
  EXPECT_EQ(m.rows().size(), 2u);
  EXPECT_EQ(m.rows()[1].label, "rank 3 pp 2");
}

TEST(TraceLoader, SaysWhatIsWrongAndWhere) {
  EXPECT_NE(error_of(trace_of(kTwo).substr(0, 300)).find("cut short"), std::string::npos)
      << error_of(trace_of(kTwo).substr(0, 300));
  EXPECT_NE(error_of("{\"traceEvents\": []}").find("otherData is missing"), std::string::npos);
  EXPECT_NE(error_of(R"({"otherData": {"kind": "strata.report", "schema_version": 1}, "traceEvents": []})")
                .find("otherData.kind must be \"strata.trace\""),
            std::string::npos);
  EXPECT_NE(error_of(R"({"otherData": {"kind": "strata.trace", "schema_version": 2}, "traceEvents": []})")
                .find("schema_version must be 1"),
            std::string::npos);
  EXPECT_NE(error_of(trace_of(R"({"ph": "X", "name": "a", "pid": 0, "tid": 0, "ts": 0, "args": {"task": 1}})"))
                .find("t.json: traceEvents[0].dur is missing"),
            std::string::npos);
  EXPECT_NE(error_of(trace_of(R"({"ph": "X", "name": "a", "pid": 0, "tid": 0, "ts": 0, "dur": -1, "args": {"task": 1}})"))
                .find("traceEvents[0].dur = -1"),
            std::string::npos);
  EXPECT_NE(error_of(trace_of(R"({"ph": "X", "name": "a", "pid": 0, "tid": 0, "ts": 0, "dur": 1, "args": {"task": 1, "kind": "teleport"}})"))
                .find("args.kind = \"teleport\""),
            std::string::npos);
  EXPECT_NE(error_of(trace_of(R"({"ph": "X", "name": "a", "pid": 0, "tid": 0, "ts": 1e999, "dur": 1, "args": {"task": 1}})"))
                .find("out of range"),
            std::string::npos);
  EXPECT_NE(error_of(trace_of(R"({"ph": "X", "name": "a", "pid": 0.5, "tid": 0, "ts": 0, "dur": 1, "args": {"task": 1}})"))
                .find("pid = 0.5"),
            std::string::npos);
  EXPECT_NE(error_of(trace_of(kTwo) + " x").find("more after"), std::string::npos);
  // Deeply nested junk in an unknown field is refused, not a stack overflow.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_NE(error_of(trace_of(R"({"ph": "X", "junk": )" + deep + "}")).find("nested deeper"),
            std::string::npos);
  EXPECT_NE(error_of("").find("ends too early"), std::string::npos);
  EXPECT_THROW(load_timeline("/nonexistent/trace.json"), ConfigError);
}

TEST(TraceLoader, EveryCutOfAValidTraceIsAClearError) {
  const std::string text = trace_of(kTwo);
  for (std::size_t n = 0; n < text.size(); ++n) {
    EXPECT_THROW(parse_timeline(text.substr(0, n), "t.json"), ConfigError) << "cut at " << n;
  }
  EXPECT_NO_THROW(parse_timeline(text, "t.json"));
}

}  // namespace
}  // namespace strata::gui
