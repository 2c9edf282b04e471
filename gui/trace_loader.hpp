// A fast reader of trace.json for display: one pass over the file's bytes, no JSON document,
// each task into a compact TimelineEvent (its name into one shared buffer). What the timeline,
// its tooltips and the memory timeline need, not the whole trace: flow arrows and arguments it
// does not know are skipped (results::read_trace reads everything, for `strata compare`). A
// trace of a million tasks (about 330 MB) loads in about a second here, against many seconds
// and gigabytes for the general reader (docs/benchmarks.md).
//
// The file must be what results/trace.hpp describes: otherData of kind "strata.trace" and
// schema_version 1, complete events ("ph": "X") with name, pid, tid, ts, dur and args.task.
// Anything else is a ConfigError naming the file and either the byte offset (bad JSON) or the
// event ("traceEvents[12].dur") and the rule.
//
// defines: load_timeline(), parse_timeline()
#pragma once

#include <string>

#include "gui/timeline_model.hpp"

namespace strata::gui {

TimelineData load_timeline(const std::string& path);
// The same on the file's text (`file` names it in errors).
TimelineData parse_timeline(const std::string& text, const std::string& file);

}  // namespace strata::gui
