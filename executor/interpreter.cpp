// The interpreter's loop: groups, buffer lifetimes, and the dispatch of each task (see
// interpreter.hpp); the ops themselves are in compute_ops.cpp and comm_ops.cpp.
//
// defines: TensorView::elements(), view_offset_elements(), moe_aux_loss_scale(), refusal(),
//          Interpreter (make_groups, run_step, run_task, view, group_index, aux_loss_sum)
#include "executor/interpreter.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "common/error.hpp"
#include "executor/detail/ops.hpp"

namespace strata::exec {

using strategies::Buffer;
using strategies::DType;
using strategies::GroupKind;
using strategies::GroupRef;
using strategies::Op;
using strategies::OpKind;
using strategies::Task;
using strategies::TaskKind;

std::int64_t TensorView::elements() const {
  std::int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::tuple<int, int, int> key(const GroupRef& g) {
  return {static_cast<int>(g.kind), g.layout, g.layout_from};
}

}  // namespace

std::int64_t view_offset_elements(const strategies::ProgramSet& plan, int rank, const Buffer& b) {
  if (b.view_group.kind == GroupKind::kNone) return b.view_offset;
  std::int64_t part = plan.group_index(rank, b.view_group);
  if (b.view_rotate != 0) {
    const auto size = static_cast<std::int64_t>(plan.group_ranks(rank, b.view_group).size());
    part = (part + b.view_rotate) % size;
  }
  return b.view_offset * part;
}

double moe_aux_loss_scale(const strategies::ProgramSet& plan, int rank) {
  const auto size = [&](GroupKind k) {
    return static_cast<double>(plan.group_ranks(rank, GroupRef{k, 0, 0}).size());
  };
  return 1.0 / (plan.num_micro_batches * size(GroupKind::kDp) * size(GroupKind::kCp) *
                size(GroupKind::kTp));
}

kernels::Stream open_stream(kernels::Backend backend, int device) {
  if (backend == kernels::Backend::kCpu) return kernels::Stream::cpu();
  if (device < 0) throw ConfigError("device = " + std::to_string(device) + ": must be >= 0");
  const int count = kernels::cuda_device_count();
  if (count <= device) {
    const std::string why = count == 0 ? kernels::cuda_unavailable_reason()
                                       : std::to_string(count) + " device(s)";
    throw ConfigError("device cuda:" + std::to_string(device) + " is not available (" + why +
                      "): run on the CPU, or on a machine with a GPU");
  }
  return kernels::Stream::cuda(device);
}

std::string refusal(const strategies::ProgramSet& plan, int rank, kernels::Backend backend) {
  const strategies::Program& p = plan.program_of(rank);
  const bool cuda = backend == kernels::Backend::kCuda;
  const std::string executor = cuda ? "the CUDA executor" : "the CPU executor";
  // FP8 first: its 16-bit buffers would otherwise be reported as a precision to change.
  for (const Op& op : p.ops) {
    if (op.kind == OpKind::kFp8Cast || op.dtype == DType::kFp8) {
      return std::string("op ") + strategies::op_kind_name(op.kind) +
             " runs in FP8 (strategy \"fp8\"): " + executor + " computes in fp32 and does not "
             "emulate FP8; FP8 plans are simulated only (set the strategy's \"fp8\": \"none\" "
             "to run it)";
    }
  }
  for (std::size_t i = 0; i < p.buffers.size(); ++i) {
    const Buffer& b = p.buffers[i];
    // Token ids, and the routing's indices and counts of MoE layers.
    const bool ids = b.kind == strategies::TensorKind::kTokens ||
                     b.kind == strategies::TensorKind::kTargets || b.dtype == DType::kInt32;
    if (b.dtype == DType::kUint8) {
      return "buffer " + p.buffer_name(static_cast<std::int32_t>(i)) +
             " is a dropout mask: the executor does not implement dropout yet (set the model's "
             "\"dropout\": false)";
    }
    const bool loss = b.kind == strategies::TensorKind::kLoss;
    if (!ids && !loss && b.dtype != DType::kFp32 && b.dtype != DType::kBf16) {
      return "buffer " + p.buffer_name(static_cast<std::int32_t>(i)) + " is " +
             strategies::dtype_name(b.dtype) + ": " + executor +
             " computes in fp32 and bf16 (set the strategy's \"precision\": \"bf16\" or "
             "\"fp32\")";
    }
  }
  for (const Op& op : p.ops) {
    if ((op.flags & strategies::kRotary) != 0) {
      return "op attention uses rotary position embeddings, which the executor does not "
             "implement yet (GPT models with learned positions run)";
    }
    const bool attention = op.kind == OpKind::kAttention || op.kind == OpKind::kFlashAttention;
    if (attention && op.dims[4] != op.dims[2]) {
      return std::string("op ") + strategies::op_kind_name(op.kind) + " has " + std::to_string(op.dims[4]) + " key/value channels for " +
             std::to_string(op.dims[2]) + " query channels: the executor runs multi-head "
             "attention only (num_key_value_heads = num_attention_heads)";
    }
  }
  return "";
}

Interpreter::Interpreter(const strategies::ProgramSet& plan, Comm& comm, const Corpus& corpus,
                         kernels::Stream stream)
    : plan_(plan),
      comm_(comm),
      corpus_(corpus),
      rank_(comm.rank()),
      own_program_(with_moe_row_bounds(plan.program_of(comm.rank()))),
      program_(own_program_),
      stream_(std::move(stream)),
      arena_(stream_) {
  for (const Task& t : program_.tasks) {
    if ((t.kind == TaskKind::kSend || t.kind == TaskKind::kRecv) &&
        static_cast<int>(t.tag) >= bookkeeping_tag()) {
      throw ConfigError("pipeline tag " + std::to_string(t.tag) + " exceeds the MPI tag bound " +
                        std::to_string(comm_.max_tag()) + ": use fewer micro-batches or stages");
    }
  }
  make_groups();
  for (const Op& op : program_.ops) {
    if (op.kind != OpKind::kCrossEntropyBwd) continue;
    loss_ = program_.output(op, 1);
    loss_owner_ = group_index(op.group) == 0;
  }
  starts_.resize(program_.tasks.size());
  ends_.resize(program_.tasks.size());
  arena_.plan(program_);
  if (stream_.backend() == kernels::Backend::kCuda) scalar_ = kernels::Buffer(stream_, sizeof(float));
  aux_loss_ = kernels::Buffer(stream_, sizeof(double));
  for (std::size_t id = 0; id < program_.buffers.size(); ++id) {
    const Buffer& b = program_.buffers[id];
    if (b.is_view()) continue;
    if (b.persistent) {
      arena_.allocate(static_cast<std::int32_t>(id), b, true);
      continue;
    }
    if (b.first_task >= program_.tasks.size()) continue;  // never used
    starts_[b.first_task].push_back(static_cast<std::int32_t>(id));
    ends_[b.last_task].push_back(static_cast<std::int32_t>(id));
  }
}

// Every rank walks the same sorted list of the Plan's groups and splits the world once per
// group (MPI_Comm_split is collective over the world, so the order must agree everywhere).
void Interpreter::make_groups() {
  auto collective_groups = [&](const strategies::Program& p, std::set<std::tuple<int, int, int>>& out) {
    for (const Task& t : p.tasks) {
      if (t.kind == TaskKind::kCollective) out.insert(key(t.group));
    }
  };
  std::set<std::tuple<int, int, int>> all, mine;
  for (const auto& p : plan_.programs) collective_groups(p, all);
  collective_groups(program_, mine);
  for (const auto& k : all) {
    const GroupRef g{static_cast<GroupKind>(std::get<0>(k)), static_cast<std::uint8_t>(std::get<1>(k)),
                     static_cast<std::uint8_t>(std::get<2>(k))};
    const bool member = mine.count(k) > 0;
    const GroupId id = comm_.split(member ? plan_.group_ranks(rank_, g) : std::vector<int>{});
    if (member) groups_[k] = id;
  }
}

GroupId Interpreter::group(const GroupRef& g) const {
  const auto it = groups_.find(key(g));
  STRATA_CHECK(it != groups_.end(), std::string("no communicator for group ") +
                                        strategies::group_kind_name(g.kind));
  return it->second;
}

int Interpreter::group_index(const GroupRef& g) const { return plan_.group_index(rank_, g); }

TensorView Interpreter::view(std::int32_t id) const {
  const Buffer& b = program_.buffers.at(id);
  TensorView v;
  v.shape = b.shape;
  v.ndim = b.ndim;
  v.dtype = b.dtype;
  v.backend = stream_.backend();
  if (!b.is_view()) {
    v.data = arena_.data(id);
    return v;
  }
  const TensorView parent = view(b.view_of);
  const std::int64_t offset = view_offset_elements(plan_, rank_, b);
  STRATA_CHECK(offset + b.elements() <= parent.elements(),
               "view " + program_.buffer_name(id) + " reaches past its buffer");
  v.data = static_cast<char*>(parent.data) + offset * strategies::dtype_bytes(b.dtype);
  return v;
}

void Interpreter::allocate_starting(std::uint32_t task) {
  for (std::int32_t id : starts_[task]) {
    const Buffer& b = program_.buffers[id];
    // Gradient buffers start at zero (they are accumulated into); others are written first.
    arena_.allocate(id, b, b.role == strategies::Role::kGrad);
  }
}

void Interpreter::release_ending(std::uint32_t task) {
  for (std::int32_t id : ends_[task]) arena_.release(id);
}

void Interpreter::run_step(int step, const std::function<void(std::uint32_t)>& before_task,
                           std::vector<std::tuple<std::uint32_t, double, double>>* done,
                           double t0) {
  step_ = step;
  kernels::fill_zero(stream_, aux_loss_.data(), sizeof(double));
  // Persistent gradients and the loss start every step at zero (docs/plan.md).
  for (std::size_t id = 0; id < program_.buffers.size(); ++id) {
    const Buffer& b = program_.buffers[id];
    if (b.persistent && !b.is_view() &&
        (b.role == strategies::Role::kGrad || b.role == strategies::Role::kLogits)) {
      const TensorView v = view(static_cast<std::int32_t>(id));
      kernels::fill_zero(stream_, v.data,
                         static_cast<std::size_t>(v.elements() * strategies::dtype_bytes(v.dtype)));
    }
  }
  // On a device the host only enqueues: each task's span is read from timing events recorded
  // on the stream around it, counted from one recorded at the start of the step (when the
  // stream is idle: the previous step ended with it synchronized).
  const bool device = stream_.backend() == kernels::Backend::kCuda && done != nullptr;
  std::vector<kernels::Event> marks;
  const double step_start = now_s() - t0;
  if (device) {
    marks.reserve(2 * program_.tasks.size() + 1);
    marks.push_back(stream_.record_event(kernels::EventTiming::kOn));
  }
  for (std::uint32_t i = 0; i < program_.tasks.size(); ++i) {
    if (before_task) before_task(i);
    const double start = now_s();
    if (device) marks.push_back(stream_.record_event(kernels::EventTiming::kOn));
    allocate_starting(i);
    run_task(i);
    release_ending(i);
    if (device) {
      marks.push_back(stream_.record_event(kernels::EventTiming::kOn));
    } else if (done != nullptr) {
      done->emplace_back(i, start - t0, now_s() - t0);
    }
  }
  finish_sends();
  stream_.synchronize();
  for (std::uint32_t i = 0; device && i < program_.tasks.size(); ++i) {
    const double begin = kernels::Event::elapsed_ms(marks[0], marks[1 + 2 * i]) * 1e-3;
    const double end = kernels::Event::elapsed_ms(marks[0], marks[2 + 2 * i]) * 1e-3;
    done->emplace_back(i, step_start + begin, step_start + end);
  }
}

void Interpreter::run_task(std::uint32_t i) {
  const Task& t = program_.tasks[i];
  const Op* ops = program_.ops_of(t);
  try {
    for (std::uint32_t k = 0; k < t.op_count; ++k) {
      if (t.kind == TaskKind::kCompute) {
        detail::run_compute(*this, ops[k]);
      } else {
        detail::run_comm(*this, t, ops[k]);
      }
    }
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error("task " + std::to_string(i) + " (" + plan_.task_name(t) +
                             "): " + e.what());
  }
}

void* Interpreter::scratch(int slot, std::size_t bytes) const {
  if (static_cast<std::size_t>(slot) >= scratch_.size()) scratch_.resize(slot + 1);
  kernels::Buffer& b = scratch_[slot];
  if (b.size_bytes() < bytes) {
    // Freeing the smaller buffer waits for the work that may still read it (cudaFree).
    const double before = static_cast<double>(b.size_bytes());
    b = kernels::Buffer(stream_, bytes);
    const_cast<Arena&>(arena_).stage(static_cast<double>(bytes) - before);
  }
  return b.data();
}

double Interpreter::aux_loss_sum() const {
  double sum = 0;
  kernels::copy_to_host(stream_, &sum, aux_loss_.data(), sizeof sum).synchronize();
  return sum;
}

double Interpreter::loss_sum() const {
  double sum = 0;
  if (loss_ >= 0) kernels::copy_to_host(stream_, &sum, view(loss_).data, sizeof sum).synchronize();
  return sum;
}

void Interpreter::keep_send(Request request, std::vector<float> copy) {
  arena_.stage(static_cast<double>(copy.size()) * sizeof(float));
  sends_.push_back({std::move(request), std::move(copy)});
}

void Interpreter::finish_sends() {
  for (PendingSend& s : sends_) {
    s.request.wait();
    arena_.unstage(static_cast<double>(s.copy.size()) * sizeof(float));
  }
  sends_.clear();
}

}  // namespace strata::exec
