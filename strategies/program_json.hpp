// One program of a Plan as JSON, both ways: its tasks, deps, ops, operands, buffer table,
// parameters, buckets and memory, stored column-wise (the *_columns lists name the fields of
// each row) so that 10^5-10^6 tasks stay compact. plan.json holds one per pipeline stage
// (plan_json.hpp); results/ reads a whole Plan back with program_from_json.
#pragma once

#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/program.hpp"

namespace strata::strategies {

extern const std::vector<std::string> kTaskColumns;
extern const std::vector<std::string> kOpColumns;
extern const std::vector<std::string> kBufferColumns;
extern const std::vector<std::string> kParamColumns;
extern const std::vector<std::string> kBucketColumns;

json::Json program_to_json(const Program& p);
// Reads a program written by program_to_json. ConfigError naming `what`, the field and the value
// for anything malformed (a wrong column count, an unknown name, an index out of range).
Program program_from_json(const json::Json& j, const std::string& what);

json::Json memory_to_json(const MemorySummary& m);

// Strata's version and the hashes of the three specs, as every output file carries them.
json::Json provenance_to_json(const Provenance& p);

// The enums by name (the inverse of the *_name() functions); ConfigError naming `field`.
TaskKind parse_task_kind(const std::string& s, const std::string& field);
Stream parse_stream(const std::string& s, const std::string& field);
Phase parse_phase(const std::string& s, const std::string& field);
Block parse_block(const std::string& s, const std::string& field);
CollectiveKind parse_collective(const std::string& s, const std::string& field);
Purpose parse_purpose(const std::string& s, const std::string& field);
GroupKind parse_group_kind(const std::string& s, const std::string& field);

}  // namespace strata::strategies
