// Programs as JSON, both ways (see program_json.hpp). Output is deterministic.
#include "strategies/program_json.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/error.hpp"

namespace strata::strategies {

const std::vector<std::string> kTaskColumns = {
    "kind",  "stream", "phase",      "block", "collective", "purpose",     "group",
    "layout", "layout_from", "layer", "chunk", "micro_batch", "peer_stage", "tag",
    "flops", "bytes", "elementwise_bytes", "op_begin", "op_count"};
const std::vector<std::string> kOpColumns = {"kind", "dtype", "flags", "group", "layout",
                                             "layout_from", "n_in", "n_out", "operands", "dims",
                                             "param"};
const std::vector<std::string> kBufferColumns = {
    "name",  "kind",     "grad",       "persistent",  "role",       "dtype",
    "instance", "layer", "micro_batch", "bucket",     "shape",      "view_of",
    "view_offset", "view_group", "view_layout", "view_layout_from", "view_rotate", "first_task",
    "last_task"};
const std::vector<std::string> kParamColumns = {
    "init_name", "kind",      "layer",  "rows",     "cols",     "shard",        "row_blocks",
    "layout",    "parts",     "init",   "init_std", "tied_copy", "bucket",      "bucket_offset",
    "elements",  "value",     "grad"};
const std::vector<std::string> kBucketColumns = {
    "elements", "group",      "layout", "zero_stage", "gathered_per_use", "params",
    "grads",    "grad_shard", "master", "adam_m",     "adam_v",           "members"};

namespace {

// The enumerator of `E` whose name is `s` (names from `name_of` over [0, count)).
template <typename E, typename F>
E parse_enum(const std::string& s, const std::string& field, F name_of, int count) {
  std::string known;
  for (int i = 0; i < count; ++i) {
    const std::string n = name_of(static_cast<E>(i));
    if (n == s) return static_cast<E>(i);
    known += (known.empty() ? "" : ", ") + n;
  }
  throw ConfigError(field + " = \"" + s + "\": unknown; expected one of " + known);
}

constexpr int kTaskKinds = 4, kStreams = 6, kPhases = 5, kBlocks = 15, kPurposes = 9,
              kDTypes = 7, kShards = 4, kInits = 3;
constexpr int kCollectives = static_cast<int>(CollectiveKind::kRingShift) + 1;
constexpr int kGroupKinds = static_cast<int>(GroupKind::kExpertDp) + 1;
constexpr int kOpKinds = static_cast<int>(OpKind::kAllToAll) + 1;           // the last kind
constexpr int kTensorKinds = static_cast<int>(TensorKind::kMoeSharedOut) + 1;  // the last kind

const char* init_kind_name(Init i) {
  switch (i) {
    case Init::kNormal: return "normal";
    case Init::kZero: return "zero";
    case Init::kOne: return "one";
  }
  return "?";
}

// Reads row `row` (an array of `columns.size()` values) of table `table` element by element.
class Row {
 public:
  Row(const json::Json& row, std::size_t columns, std::string where)
      : row_(row), where_(std::move(where)) {
    if (!row.is_array() || row.size() != columns) {
      throw ConfigError(where_ + " = " + json::show(row) + ": must be an array of " +
                        std::to_string(columns) + " values");
    }
  }
  const json::Json& next() { return row_.at(i_++); }
  std::string field() const { return where_ + "[" + std::to_string(i_) + "]"; }
  long long integer() {
    const std::string f = field();
    const json::Json& v = next();
    if (!v.is_number_integer()) json::fail(f, v, "must be an integer");
    return v.get<long long>();
  }
  double number() {
    const std::string f = field();
    const json::Json& v = next();
    if (!v.is_number()) json::fail(f, v, "must be a number");
    return v.get<double>();
  }
  bool boolean() {
    const std::string f = field();
    const json::Json& v = next();
    if (!v.is_boolean()) json::fail(f, v, "must be true or false");
    return v.get<bool>();
  }
  std::string string() {
    const std::string f = field();
    const json::Json& v = next();
    if (!v.is_string()) json::fail(f, v, "must be a string");
    return v.get<std::string>();
  }
  template <typename E, typename F>
  E name(F name_of, int count) {
    const std::string f = field();
    return parse_enum<E>(string(), f, name_of, count);
  }
  std::vector<long long> integers() {
    const std::string f = field();
    const json::Json& v = next();
    if (!v.is_array()) json::fail(f, v, "must be an array of integers");
    std::vector<long long> out;
    for (const auto& x : v) {
      if (!x.is_number_integer()) json::fail(f, x, "must be an integer");
      out.push_back(x.get<long long>());
    }
    return out;
  }

 private:
  const json::Json& row_;
  std::string where_;
  std::size_t i_ = 0;
};

const json::Json& table(const json::Json& j, const std::string& key, const std::string& what) {
  if (!j.contains(key) || !j.at(key).is_array()) {
    throw ConfigError(what + "." + key + ": missing or not an array");
  }
  return j.at(key);
}

// The integer list `key` of `j`, each element from `lo` to `hi`.
template <typename T>
std::vector<T> int_list(const json::Json& j, const std::string& key, const std::string& what,
                        long long lo, long long hi) {
  const json::Json& list = table(j, key, what);
  std::vector<T> out;
  out.reserve(list.size());
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json::Json& v = list[i];
    const bool ok = v.is_number_unsigned()  ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(hi)
                    : v.is_number_integer() ? v.get<long long>() >= lo && v.get<long long>() <= hi
                                            : false;
    if (!ok) {
      json::fail(what + "." + key + "[" + std::to_string(i) + "]", v,
                 "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
    }
    out.push_back(static_cast<T>(v.get<long long>()));
  }
  return out;
}

// The number `key` of the object `m` (at `what`).
double number_at(const json::Json& m, const std::string& key, const std::string& what) {
  if (!m.is_object() || !m.contains(key) || !m.at(key).is_number()) {
    throw ConfigError(what + "." + key + ": missing or not a number");
  }
  return m.at(key).get<double>();
}

void check_index(long long v, std::size_t size, const std::string& field) {
  if (v < -1 || v >= static_cast<long long>(size)) {
    throw ConfigError(field + " = " + std::to_string(v) + ": out of range [-1, " +
                      std::to_string(size) + ")");
  }
}

}  // namespace

TaskKind parse_task_kind(const std::string& s, const std::string& f) {
  return parse_enum<TaskKind>(s, f, task_kind_name, kTaskKinds);
}
Stream parse_stream(const std::string& s, const std::string& f) {
  return parse_enum<Stream>(s, f, stream_name, kStreams);
}
Phase parse_phase(const std::string& s, const std::string& f) {
  return parse_enum<Phase>(s, f, phase_name, kPhases);
}
Block parse_block(const std::string& s, const std::string& f) {
  return parse_enum<Block>(s, f, block_name, kBlocks);
}
CollectiveKind parse_collective(const std::string& s, const std::string& f) {
  return parse_enum<CollectiveKind>(s, f, collective_name, kCollectives);
}
Purpose parse_purpose(const std::string& s, const std::string& f) {
  return parse_enum<Purpose>(s, f, purpose_name, kPurposes);
}
GroupKind parse_group_kind(const std::string& s, const std::string& f) {
  return parse_enum<GroupKind>(s, f, group_kind_name, kGroupKinds);
}

json::Json provenance_to_json(const Provenance& p) {
  json::Json j = {{"strata_version", p.strata_version},
                  {"model_hash", p.model_hash},
                  {"cluster_hash", p.cluster_hash},
                  {"strategy_hash", p.strategy_hash}};
  if (!p.overrides.empty()) j["overrides"] = p.overrides;
  return j;
}

json::Json memory_to_json(const MemorySummary& m) {
  json::Json by_role = json::Json::object();
  for (int r = 0; r < kNumRoles; ++r) {
    by_role[role_name(static_cast<Role>(r))] = json::count(m.peak_by_role[r]);
  }
  return {{"params_bytes", json::count(m.static_bytes.params)},
          {"grads_bytes", json::count(m.static_bytes.grads)},
          {"optimizer_bytes", json::count(m.static_bytes.optimizer)},
          {"other_static_bytes", json::count(m.static_bytes.other)},
          {"params_count", static_cast<long long>(m.params_count)},
          {"peak_dynamic_bytes", json::count(m.peak_dynamic_bytes)},
          {"peak_by_role", by_role},
          {"peak_activation_bytes", json::count(m.peak_activation_bytes)},
          {"max_activation_bytes", json::count(m.max_activation_bytes)},
          {"peak_task", m.peak_task},
          {"peak_bytes", json::count(m.peak_bytes())}};
}

json::Json program_to_json(const Program& p) {
  json::Json pj;
  pj["stage"] = p.stage;
  json::Json tasks = json::Json::array();
  for (const Task& t : p.tasks) {
    tasks.push_back({task_kind_name(t.kind), stream_name(t.stream), phase_name(t.phase),
                     block_name(t.block), collective_name(t.collective), purpose_name(t.purpose),
                     group_kind_name(t.group.kind), t.group.layout, t.group.layout_from, t.layer,
                     t.chunk, t.micro_batch, t.peer_stage, t.tag, json::count(t.flops),
                     json::count(t.bytes), json::count(t.elementwise_bytes), t.op_begin,
                     t.op_count});
  }
  pj["tasks"] = std::move(tasks);
  pj["deps_begin"] = p.dep_begin;
  pj["deps"] = p.deps;
  json::Json ops = json::Json::array();
  for (const Op& op : p.ops) {
    ops.push_back({op_kind_name(op.kind), dtype_name(op.dtype), op.flags,
                   group_kind_name(op.group.kind), op.group.layout, op.group.layout_from, op.n_in,
                   op.n_out, op.operands, op.dims, op.param});
  }
  pj["ops"] = std::move(ops);
  pj["operands"] = p.operands;
  json::Json buffers = json::Json::array();
  for (std::size_t i = 0; i < p.buffers.size(); ++i) {
    const Buffer& b = p.buffers[i];
    std::vector<std::int64_t> shape(b.shape.begin(), b.shape.begin() + b.ndim);
    buffers.push_back({p.buffer_name(static_cast<std::int32_t>(i)), tensor_kind_name(b.kind),
                       b.grad, b.persistent, role_name(b.role), dtype_name(b.dtype), b.instance,
                       b.layer, b.micro_batch, b.bucket, shape, b.view_of, b.view_offset,
                       group_kind_name(b.view_group.kind), b.view_group.layout,
                       b.view_group.layout_from, b.view_rotate, b.first_task, b.last_task});
  }
  pj["buffers"] = std::move(buffers);
  json::Json params = json::Json::array();
  for (const ParamInfo& q : p.params) {
    params.push_back({q.init_name(), tensor_kind_name(q.kind), q.layer, q.rows, q.cols,
                      shard_name(q.shard), q.row_blocks, q.shard_group.layout, q.shard_parts,
                      init_kind_name(q.init), q.init_std, q.tied_copy, q.bucket, q.bucket_offset,
                      q.elements, q.value, q.grad});
  }
  pj["params"] = std::move(params);
  json::Json buckets = json::Json::array();
  for (const BucketInfo& b : p.buckets) {
    buckets.push_back({b.elements, group_kind_name(b.dp_group.kind), b.dp_group.layout,
                       b.zero_stage, b.gathered_per_use, b.params, b.grads, b.grad_shard, b.master,
                       b.adam_m, b.adam_v, b.members});
  }
  pj["buckets"] = std::move(buckets);
  pj["memory"] = memory_to_json(p.memory);
  return pj;
}

Program program_from_json(const json::Json& j, const std::string& what) {
  if (!j.is_object()) throw ConfigError(what + ": a program must be a JSON object");
  Program p;
  if (!j.contains("stage") || !j.at("stage").is_number_integer()) {
    throw ConfigError(what + ".stage: missing or not an integer");
  }
  p.stage = j.at("stage").get<int>();
  const json::Json& tasks = table(j, "tasks", what);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    Row r(tasks[i], kTaskColumns.size(), what + ".tasks[" + std::to_string(i) + "]");
    Task t;
    t.kind = r.name<TaskKind>(task_kind_name, kTaskKinds);
    t.stream = r.name<Stream>(stream_name, kStreams);
    t.phase = r.name<Phase>(phase_name, kPhases);
    t.block = r.name<Block>(block_name, kBlocks);
    t.collective = r.name<CollectiveKind>(collective_name, kCollectives);
    t.purpose = r.name<Purpose>(purpose_name, kPurposes);
    t.group.kind = r.name<GroupKind>(group_kind_name, kGroupKinds);
    t.group.layout = static_cast<std::uint8_t>(r.integer());
    t.group.layout_from = static_cast<std::uint8_t>(r.integer());
    t.layer = static_cast<std::int16_t>(r.integer());
    t.chunk = static_cast<std::int16_t>(r.integer());
    t.micro_batch = static_cast<std::int32_t>(r.integer());
    t.peer_stage = static_cast<std::int32_t>(r.integer());
    t.tag = static_cast<std::uint32_t>(r.integer());
    t.flops = r.number();
    t.bytes = r.number();
    t.elementwise_bytes = r.number();
    t.op_begin = static_cast<std::uint32_t>(r.integer());
    t.op_count = static_cast<std::uint32_t>(r.integer());
    p.tasks.push_back(t);
  }
  constexpr long long kMaxIndex = 0xFFFFFFFFLL;  // indices are uint32
  p.dep_begin = int_list<std::uint32_t>(j, "deps_begin", what, 0, kMaxIndex);
  p.deps = int_list<std::uint32_t>(j, "deps", what, 0, kMaxIndex);
  if (p.dep_begin.size() != p.tasks.size() + 1) {
    throw ConfigError(what + ".deps_begin: " + std::to_string(p.dep_begin.size()) +
                      " entries for " + std::to_string(p.tasks.size()) + " tasks (want tasks + 1)");
  }
  // Task t's dependencies are deps[deps_begin[t] .. deps_begin[t + 1]).
  if (p.dep_begin.front() != 0 || p.dep_begin.back() != p.deps.size() ||
      !std::is_sorted(p.dep_begin.begin(), p.dep_begin.end())) {
    throw ConfigError(what + ".deps_begin: must ascend from 0 to the length of deps (" +
                      std::to_string(p.deps.size()) + ")");
  }
  for (std::uint32_t d : p.deps) check_index(d, p.tasks.size(), what + ".deps");
  const json::Json& ops = table(j, "ops", what);
  p.operands = int_list<std::int32_t>(j, "operands", what, -1, 0x7FFFFFFF);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const std::string where = what + ".ops[" + std::to_string(i) + "]";
    Row r(ops[i], kOpColumns.size(), where);
    Op op;
    op.kind = r.name<OpKind>(op_kind_name, kOpKinds);
    op.dtype = r.name<DType>(dtype_name, kDTypes);
    op.flags = static_cast<std::uint8_t>(r.integer());
    op.group.kind = r.name<GroupKind>(group_kind_name, kGroupKinds);
    op.group.layout = static_cast<std::uint8_t>(r.integer());
    op.group.layout_from = static_cast<std::uint8_t>(r.integer());
    op.n_in = static_cast<std::uint8_t>(r.integer());
    op.n_out = static_cast<std::uint8_t>(r.integer());
    op.operands = static_cast<std::uint32_t>(r.integer());
    const std::vector<long long> dims = r.integers();
    if (dims.size() != op.dims.size()) {
      throw ConfigError(where + ".dims: want " + std::to_string(op.dims.size()) + " sizes");
    }
    std::copy(dims.begin(), dims.end(), op.dims.begin());
    op.param = static_cast<float>(r.number());
    if (op.operands + op.n_in + op.n_out > p.operands.size()) {
      throw ConfigError(where + ".operands = " + std::to_string(op.operands) +
                        ": past the end of the operand list");
    }
    p.ops.push_back(op);
  }
  for (std::size_t i = 0; i < p.tasks.size(); ++i) {
    const Task& t = p.tasks[i];
    if (static_cast<std::uint64_t>(t.op_begin) + t.op_count > p.ops.size()) {
      throw ConfigError(what + ".tasks[" + std::to_string(i) + "]: ops " +
                        std::to_string(t.op_begin) + " + " + std::to_string(t.op_count) +
                        " past the end of the op list (" + std::to_string(p.ops.size()) + ")");
    }
  }
  const json::Json& buffers = table(j, "buffers", what);
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    const std::string where = what + ".buffers[" + std::to_string(i) + "]";
    Row r(buffers[i], kBufferColumns.size(), where);
    Buffer b;
    r.string();  // the name, rendered from the fields below
    b.kind = r.name<TensorKind>(tensor_kind_name, kTensorKinds);
    b.grad = r.boolean();
    b.persistent = r.boolean();
    b.role = r.name<Role>(role_name, kNumRoles);
    b.dtype = r.name<DType>(dtype_name, kDTypes);
    b.instance = static_cast<std::uint8_t>(r.integer());
    b.layer = static_cast<std::int16_t>(r.integer());
    b.micro_batch = static_cast<std::int32_t>(r.integer());
    b.bucket = static_cast<std::int32_t>(r.integer());
    const std::vector<long long> shape = r.integers();
    if (shape.empty() || shape.size() > 4) {
      throw ConfigError(where + ".shape: a buffer has 1 to 4 dimensions");
    }
    b.ndim = static_cast<std::uint8_t>(shape.size());
    std::copy(shape.begin(), shape.end(), b.shape.begin());
    b.view_of = static_cast<std::int32_t>(r.integer());
    b.view_offset = r.integer();
    b.view_group.kind = r.name<GroupKind>(group_kind_name, kGroupKinds);
    b.view_group.layout = static_cast<std::uint8_t>(r.integer());
    b.view_group.layout_from = static_cast<std::uint8_t>(r.integer());
    const long long rotate = r.integer();
    if (rotate < 0 || rotate > 255) {
      throw ConfigError(where + ".view_rotate = " + std::to_string(rotate) + ": must be 0 to 255");
    }
    b.view_rotate = static_cast<std::uint8_t>(rotate);
    b.first_task = static_cast<std::uint32_t>(r.integer());
    b.last_task = static_cast<std::uint32_t>(r.integer());
    p.buffers.push_back(b);
  }
  for (std::size_t i = 0; i < p.buffers.size(); ++i) {
    check_index(p.buffers[i].view_of, p.buffers.size(),
                what + ".buffers[" + std::to_string(i) + "].view_of");
  }
  for (std::int32_t b : p.operands) check_index(b, p.buffers.size(), what + ".operands");
  const json::Json& params = table(j, "params", what);
  for (std::size_t i = 0; i < params.size(); ++i) {
    Row r(params[i], kParamColumns.size(), what + ".params[" + std::to_string(i) + "]");
    ParamInfo q;
    r.string();  // init_name, rendered from the fields below
    q.kind = r.name<TensorKind>(tensor_kind_name, kTensorKinds);
    q.layer = static_cast<std::int16_t>(r.integer());
    q.rows = r.integer();
    q.cols = r.integer();
    q.shard = r.name<Shard>(shard_name, kShards);
    const std::vector<long long> blocks = r.integers();
    for (std::size_t k = 0; k < std::min<std::size_t>(3, blocks.size()); ++k) q.row_blocks[k] = blocks[k];
    q.shard_group = {GroupKind::kTp, static_cast<std::uint8_t>(r.integer()), 0};
    q.shard_parts = static_cast<int>(r.integer());
    q.init = r.name<Init>(init_kind_name, kInits);
    q.init_std = static_cast<float>(r.number());
    q.tied_copy = r.boolean();
    q.bucket = static_cast<std::int32_t>(r.integer());
    q.bucket_offset = r.integer();
    q.elements = r.integer();
    q.value = static_cast<std::int32_t>(r.integer());
    q.grad = static_cast<std::int32_t>(r.integer());
    p.params.push_back(q);
  }
  mark_shared_experts(p.params);
  const json::Json& buckets = table(j, "buckets", what);
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    Row r(buckets[i], kBucketColumns.size(), what + ".buckets[" + std::to_string(i) + "]");
    BucketInfo b;
    b.elements = r.integer();
    b.dp_group.kind = r.name<GroupKind>(group_kind_name, kGroupKinds);
    b.dp_group.layout = static_cast<std::uint8_t>(r.integer());
    b.zero_stage = static_cast<int>(r.integer());
    b.gathered_per_use = r.boolean();
    b.params = static_cast<std::int32_t>(r.integer());
    b.grads = static_cast<std::int32_t>(r.integer());
    b.grad_shard = static_cast<std::int32_t>(r.integer());
    b.master = static_cast<std::int32_t>(r.integer());
    b.adam_m = static_cast<std::int32_t>(r.integer());
    b.adam_v = static_cast<std::int32_t>(r.integer());
    for (long long m : r.integers()) b.members.push_back(static_cast<std::int32_t>(m));
    p.buckets.push_back(b);
  }
  if (j.contains("memory")) {
    const json::Json& m = j.at("memory");
    const std::string at = what + ".memory";
    p.memory.static_bytes.params = number_at(m, "params_bytes", at);
    p.memory.static_bytes.grads = number_at(m, "grads_bytes", at);
    p.memory.static_bytes.optimizer = number_at(m, "optimizer_bytes", at);
    p.memory.static_bytes.other = number_at(m, "other_static_bytes", at);
    p.memory.params_count = number_at(m, "params_count", at);
    p.memory.peak_dynamic_bytes = number_at(m, "peak_dynamic_bytes", at);
    if (!m.contains("peak_by_role")) throw ConfigError(at + ".peak_by_role: missing");
    for (int r = 0; r < kNumRoles; ++r) {
      p.memory.peak_by_role[r] =
          number_at(m.at("peak_by_role"), role_name(static_cast<Role>(r)), at + ".peak_by_role");
    }
    p.memory.peak_activation_bytes = number_at(m, "peak_activation_bytes", at);
    p.memory.max_activation_bytes = number_at(m, "max_activation_bytes", at);
    const double peak_task = number_at(m, "peak_task", at);
    if (!(peak_task >= 0 && peak_task <= 4294967295.0) || peak_task != std::floor(peak_task)) {
      json::fail(at + ".peak_task", peak_task, "must be a task index");
    }
    p.memory.peak_task = static_cast<std::uint32_t>(peak_task);
  }
  return p;
}

}  // namespace strata::strategies
