// The op timer (op_timer.hpp): one compute op's operands resolved to the spans of their root
// buffers, copied into rotated input sets of seeded values, and the op run through the
// interpreter's dispatch (detail::run_compute) on a context that sees those copies.
//
// defines: untimed_reason(), last_level_cache_bytes(), time_op(); internally Span, Operands
//          (operands_of), InputSet (fill), TimerContext, set_count()
#include "executor/op_timer.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "common/error.hpp"
#include "executor/detail/ops.hpp"
#include "executor/interpreter.hpp"
#include "executor/op_context.hpp"
#include "kernels/backend.hpp"
#include "kernels/dtype.hpp"

namespace strata::exec {

using strategies::Buffer;
using strategies::DType;
using strategies::Op;
using strategies::OpKind;
using strategies::Program;
using strategies::ProgramSet;

namespace {

// A byte range [begin, end) of one root buffer (not a view) that the op's operands cover.
struct Span {
  std::int32_t root = -1;
  std::int64_t begin = 0, end = 0;
  std::int64_t bytes() const { return end - begin; }
};

// Where each operand of an op lives: the spans to allocate, and per operand (inputs, then
// outputs) its span and byte offset in it.
struct Operands {
  std::vector<Span> spans;
  std::vector<std::int32_t> ids;  // the operands' buffer ids
  std::vector<std::size_t> span_of;
  std::vector<std::int64_t> offset_of;
  double bytes() const {
    double sum = 0;
    for (const Span& s : spans) sum += static_cast<double>(s.bytes());
    return sum;
  }
};

// Buffer `id`'s root buffer and its byte offset there, as Interpreter::view resolves it.
std::pair<std::int32_t, std::int64_t> root_of(const ProgramSet& plan, int rank, const Program& p,
                                              std::int32_t id) {
  std::int64_t offset = 0;
  for (std::size_t depth = 0; depth <= p.buffers.size(); ++depth) {
    if (id < 0 || static_cast<std::size_t>(id) >= p.buffers.size()) break;
    const Buffer& b = p.buffers[id];
    if (!b.is_view()) return {id, offset};
    const std::int64_t at = view_offset_elements(plan, rank, b);
    if (b.view_of < 0 || static_cast<std::size_t>(b.view_of) >= p.buffers.size() || at < 0 ||
        at + b.elements() > p.buffers[b.view_of].elements()) {
      break;
    }
    offset += at * strategies::dtype_bytes(b.dtype);
    id = b.view_of;
  }
  throw std::runtime_error("buffer " + std::to_string(id) +
                           " is not a well-formed view of the program's buffer table");
}

Operands operands_of(const ProgramSet& plan, int rank, const Program& p, const Op& op) {
  Operands out;
  for (int k = 0; k < op.n_in + op.n_out; ++k) {
    const std::int32_t id = p.operands.at(op.operands + k);
    const auto [root, offset] = root_of(plan, rank, p, id);
    const auto bytes = static_cast<std::int64_t>(p.buffers[id].bytes());
    auto it = std::find_if(out.spans.begin(), out.spans.end(),
                           [&](const Span& s) { return s.root == root; });
    if (it == out.spans.end()) {
      out.spans.push_back({root, offset, offset + bytes});
      it = out.spans.end() - 1;
    } else {
      it->begin = std::min(it->begin, offset);
      it->end = std::max(it->end, offset + bytes);
    }
    out.ids.push_back(id);
    out.span_of.push_back(static_cast<std::size_t>(it - out.spans.begin()));
    out.offset_of.push_back(offset);
  }
  for (std::size_t k = 0; k < out.ids.size(); ++k)
    out.offset_of[k] -= out.spans[out.span_of[k]].begin;
  return out;
}

// splitmix64 (Steele, Lea and Flood 2014): a seeded, portable stream of 64-bit values.
std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The token ids and targets an op may read lie in [0, this): its whole vocabulary (the rank's
// shard times the group's size), or 1 (zeros) for ops that read no ids.
std::int64_t id_range(const ProgramSet& plan, int rank, const Op& op) {
  std::int64_t shard = 0;
  if (op.kind == OpKind::kEmbedding || op.kind == OpKind::kEmbeddingBwd) shard = op.dims[2];
  if (op.kind == OpKind::kSoftmaxStats || op.kind == OpKind::kCrossEntropyBwd) shard = op.dims[1];
  const auto parts = static_cast<std::int64_t>(plan.group_ranks(rank, op.group).size());
  return std::max<std::int64_t>(1, shard * parts);
}

// One copy of the op's operands: a buffer per span.
struct InputSet {
  std::vector<kernels::Buffer> spans;
};

// Fills `set` with the seeded values of op_timer.hpp, by the dtype of each span's root buffer:
// made on the host, then copied to the set's backend (in place for the CPU).
void fill(const kernels::Stream& stream, InputSet& set, const Operands& ops, const Program& p,
          std::int64_t ids, std::uint64_t seed) {
  std::uint64_t state = seed;
  std::vector<unsigned char> host;
  for (std::size_t s = 0; s < ops.spans.size(); ++s) {
    kernels::Buffer& buf = set.spans[s];
    const DType dtype = p.buffers[ops.spans[s].root].dtype;
    const std::size_t bytes = buf.size_bytes();
    const bool on_host = buf.backend() == kernels::Backend::kCpu;
    if (!on_host) host.assign(bytes, 0);
    void* data = on_host ? buf.data() : host.data();
    if (dtype == DType::kFp32) {
      float* x = static_cast<float*>(data);
      for (std::size_t i = 0; i < bytes / sizeof(float); ++i) {
        x[i] = 0.5f + static_cast<float>(splitmix64(state) >> 40) * 0x1.0p-24f;
      }
    } else if (dtype == DType::kBf16) {  // the same values, rounded
      kernels::bf16* x = static_cast<kernels::bf16*>(data);
      for (std::size_t i = 0; i < bytes / sizeof(kernels::bf16); ++i) {
        x[i] = kernels::to_bf16(0.5f + static_cast<float>(splitmix64(state) >> 40) * 0x1.0p-24f);
      }
    } else if (dtype == DType::kInt32) {
      std::int32_t* x = static_cast<std::int32_t*>(data);
      for (std::size_t i = 0; i < bytes / sizeof(std::int32_t); ++i) {
        x[i] = static_cast<std::int32_t>(splitmix64(state) % static_cast<std::uint64_t>(ids));
      }
    } else {
      std::memset(data, 0, bytes);  // the loss (fp64); other dtypes are refused earlier
    }
    if (!on_host) kernels::copy_to_buffer(stream, buf, host.data(), bytes).synchronize();
  }
}

// The stream ops are timed on: the CPU, or CUDA device `device` (ConfigError with the reason
// when this build or machine has none).
kernels::Stream timing_stream(const OpTimerOptions& o) {
  try {
    return open_stream(o.backend, o.device);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()) + "; time the ops on the CPU");
  }
}

// The OpContext of a timed op: the operand views of the input set in use, the given rank's
// groups, step 1 and default AdamW settings, no training data.
class TimerContext final : public OpContext {
 public:
  TimerContext(const ProgramSet& plan, int rank, const Operands& ops, kernels::Stream stream)
      : plan_(plan),
        program_(plan.program_of(rank)),
        rank_(rank),
        ops_(ops),
        stream_(std::move(stream)) {}

  void use(InputSet& set) { set_ = &set; }

  const ProgramSet& plan() const override { return plan_; }
  const Program& program() const override { return program_; }
  int rank() const override { return rank_; }
  TensorView view(std::int32_t id) const override {
    const auto it = std::find(ops_.ids.begin(), ops_.ids.end(), id);
    if (it == ops_.ids.end() || set_ == nullptr) {
      throw std::runtime_error("the timed op reads buffer " + program_.buffer_name(id) +
                               ", which is not one of its operands");
    }
    const auto k = static_cast<std::size_t>(it - ops_.ids.begin());
    const Buffer& b = program_.buffers[id];
    TensorView v;
    v.shape = b.shape;
    v.ndim = b.ndim;
    v.dtype = b.dtype;
    v.backend = stream_.backend();
    v.data = static_cast<char*>(set_->spans[ops_.span_of[k]].data()) + ops_.offset_of[k];
    return v;
  }
  int group_index(const strategies::GroupRef& g) const override {
    return plan_.group_index(rank_, g);
  }
  const kernels::Stream& stream() const override { return stream_; }
  int step() const override { return 1; }
  const kernels::AdamWOptions& adam() const override { return adam_; }
  float test_gradient_scale() const override { return 1.0f; }
  const Corpus* corpus() const override { return nullptr; }

 private:
  const ProgramSet& plan_;
  const Program& program_;
  int rank_;
  const Operands& ops_;
  kernels::Stream stream_;
  kernels::AdamWOptions adam_;
  InputSet* set_ = nullptr;
};

// How many input sets to rotate (op_timer.hpp, OpTimerOptions).
int set_count(double set_bytes, const OpTimerOptions& o) {
  const double target = o.rotate_bytes > 0 ? o.rotate_bytes : 2 * last_level_cache_bytes();
  const double wanted = std::ceil(target / std::max(set_bytes, 1.0));
  const double fitting = std::floor(o.max_bytes / std::max(set_bytes, 1.0));
  return static_cast<int>(
      std::max(1.0, std::min({wanted, fitting, static_cast<double>(o.max_sets)})));
}

void check_options(const OpTimerOptions& o) {
  if (o.warmup < 0) throw ConfigError("warmup = " + std::to_string(o.warmup) + ": must be >= 0");
  if (o.repetitions < 1) {
    throw ConfigError("repetitions = " + std::to_string(o.repetitions) + ": must be >= 1");
  }
  if (o.device < 0) throw ConfigError("device = " + std::to_string(o.device) + ": must be >= 0");
  if (o.max_sets < 1) {
    throw ConfigError("max_sets = " + std::to_string(o.max_sets) + ": must be >= 1");
  }
  if (!(o.max_bytes > 0) || !(o.rotate_bytes >= 0)) {
    throw ConfigError("max_bytes must be > 0 and rotate_bytes >= 0");
  }
}

// The compute op named by (rank, task, op_index), after the range checks of time_op().
const Op& op_at(const ProgramSet& plan, int rank, std::uint32_t task, std::uint32_t op_index) {
  if (rank < 0 || rank >= plan.world_size) {
    throw std::invalid_argument("rank " + std::to_string(rank) + " is not in the Plan's world of " +
                                std::to_string(plan.world_size));
  }
  const Program& p = plan.program_of(rank);
  if (task >= p.tasks.size()) {
    throw std::invalid_argument("task " + std::to_string(task) + " is not in the program (" +
                                std::to_string(p.tasks.size()) + " tasks)");
  }
  const strategies::Task& t = p.tasks[task];
  if (t.kind != strategies::TaskKind::kCompute) {
    throw std::invalid_argument("task " + std::to_string(task) + " (" + plan.task_name(t) +
                                ") is not a compute task");
  }
  if (op_index >= t.op_count) {
    throw std::invalid_argument("op " + std::to_string(op_index) + " of task " +
                                std::to_string(task) + ": the task has " +
                                std::to_string(t.op_count) + " ops");
  }
  return p.ops_of(t)[op_index];
}

}  // namespace

std::string untimed_reason(const Op& op) {
  switch (op.kind) {
    case OpKind::kLoadBatch:
      return "load_batch is the data loader's host work, not a kernel (the cost model prices it "
             "at 0)";
    case OpKind::kAllReduce:
    case OpKind::kAllGather:
    case OpKind::kReduceScatter:
    case OpKind::kSend:
    case OpKind::kRecv:
    case OpKind::kRingShift:
    case OpKind::kAllToAll:
      return std::string(strategies::op_kind_name(op.kind)) +
             " is communication: links are measured apart (`strata profile links`)";
    case OpKind::kMoeRouteBwd:
    case OpKind::kMoePermute:
    case OpKind::kMoePermuteBwd:
    case OpKind::kMoeUnpermute:
    case OpKind::kMoeUnpermuteBwd:
    case OpKind::kGroupedLinear:
    case OpKind::kGroupedLinearBwdData:
    case OpKind::kGroupedLinearBwdWeight:
      return std::string(strategies::op_kind_name(op.kind)) +
             " reads a routing (expert indices, rows, counts) that seeded inputs do not make "
             "valid: not timed yet";
    default:
      return "";
  }
}

double last_level_cache_bytes() {
#if defined(_SC_LEVEL3_CACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  for (const int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = ::sysconf(name);
    if (bytes > 0) return static_cast<double>(bytes);
  }
#endif
  return 32.0 * 1024 * 1024;
}

OpTiming time_op(const ProgramSet& plan, int rank, std::uint32_t task, std::uint32_t op_index,
                 const OpTimerOptions& options) {
  check_options(options);
  const Op& op = op_at(plan, rank, task, op_index);
  if (const std::string why = untimed_reason(op); !why.empty()) {
    throw ConfigError("op " + std::to_string(op_index) + " of task " + std::to_string(task) +
                      " is not timed: " + why);
  }
  if (const std::string why = refusal(plan, rank); !why.empty()) {
    throw ConfigError("the executor cannot run this Plan: " + why);
  }
  const Program& p = plan.program_of(rank);
  const Operands ops = operands_of(plan, rank, p, op);
  OpTiming timing;
  timing.set_bytes = ops.bytes();
  timing.input_sets = set_count(timing.set_bytes, options);

  TimerContext context(plan, rank, ops, timing_stream(options));
  std::vector<InputSet> sets(static_cast<std::size_t>(timing.input_sets));
  const std::int64_t ids = id_range(plan, rank, op);
  for (std::size_t s = 0; s < sets.size(); ++s) {
    for (const Span& span : ops.spans) {
      sets[s].spans.emplace_back(context.stream(), static_cast<std::size_t>(span.bytes()));
    }
    if (s > 0 && context.stream().backend() == kernels::Backend::kCpu) {
      // On the CPU the other sets are copies of the first: the values do not change an op's
      // time (they stay clear of subnormals and NaN), where a set lives does, and copying is
      // several times faster than drawing the values again, so many passes (op_bench.hpp) stay
      // cheap.
      for (std::size_t k = 0; k < ops.spans.size(); ++k) {
        std::memcpy(sets[s].spans[k].data(), sets[0].spans[k].data(),
                    sets[s].spans[k].size_bytes());
      }
    } else {
      fill(context.stream(), sets[s], ops, p, ids, options.seed * 0x100000001B3ULL + s);
    }
  }

  // Events around each run: on the CPU the host clock at their recording (the op ran inline in
  // between), on CUDA cudaEvents enqueued around the op's kernels on its stream.
  using Clock = std::chrono::steady_clock;
  // A run faster than the clock can tell is counted as one tick, so every duration is > 0.
  const double tick_s = std::chrono::duration<double>(Clock::duration(1)).count();
  const int runs = options.warmup + options.repetitions;
  const kernels::Stream& stream = context.stream();
  for (int i = 0; i < runs; ++i) {
    context.use(sets[static_cast<std::size_t>(i) % sets.size()]);
    const kernels::Event start = stream.record_event(kernels::EventTiming::kOn);
    try {
      detail::run_compute(context, op);
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {
      if (stream.backend() == kernels::Backend::kCuda) {
        // An op without a CUDA kernel (kernels/README.md): what to change is where it is timed.
        throw ConfigError("op " + std::string(strategies::op_kind_name(op.kind)) + " of task " +
                          std::to_string(task) + " (" + plan.task_name(p.tasks[task]) +
                          ") cannot run on cuda: " + e.what());
      }
      throw std::runtime_error("timing task " + std::to_string(task) + " (" +
                               plan.task_name(p.tasks[task]) + "): " + e.what());
    }
    const kernels::Event end = stream.record_event(kernels::EventTiming::kOn);
    const double seconds = 1e-3 * kernels::Event::elapsed_ms(start, end);
    if (i >= options.warmup) timing.seconds.push_back(std::max(seconds, tick_s));
  }
  return timing;
}

}  // namespace strata::exec
