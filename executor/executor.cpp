// The training loop around the interpreter: a step, its loss and time, the trace and memory
// gathered on rank 0, the reduced gradients captured for the tests.
//
// defines: Executor (step, parameters, capture, gather_last_step, gather_memory)
#include "executor/executor.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/error.hpp"
#include "executor/params.hpp"
#include "kernels/dtype.hpp"

namespace strata::exec {

using strategies::Block;
using strategies::Buffer;
using strategies::Task;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Doubles through the float-only Comm, bit for bit (bookkeeping, not arithmetic).
std::vector<float> pack(const std::vector<double>& v) {
  std::vector<float> out(2 * v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(double));
  return out;
}
std::vector<double> unpack(const float* f, std::size_t n) {
  std::vector<double> out(n);
  std::memcpy(out.data(), f, n * sizeof(double));
  return out;
}

}  // namespace

Executor::Executor(const strategies::ProgramSet& plan, Comm& comm, const Corpus& corpus,
                   const RunOptions& options, Comm* plan_comm)
    : plan_(plan), comm_(comm), options_(options) {
  Comm& ops = plan_comm != nullptr ? *plan_comm : comm;
  if (comm.size() != plan.world_size) {
    throw ConfigError("world size = " + std::to_string(comm.size()) + ": the Plan has " +
                      std::to_string(plan.world_size) + " ranks (dp * tp * pp * cp)");
  }
  const std::string why = refusal(plan, comm.rank(), options.backend);
  if (!why.empty()) throw ConfigError("the executor cannot run this Plan: " + why);
  if (ops.device_buffers() && options.backend != kernels::Backend::kCuda) {
    throw ConfigError("the " + ops.backend() +
                      " communicator moves device memory: run on a CUDA device (--device cuda)");
  }
  if (ops.device_buffers()) {
    for (const strategies::Buffer& b : plan.program_of(comm.rank()).buffers) {
      if (b.dtype == strategies::DType::kBf16) {
        throw ConfigError("the " + ops.backend() + " communicator moves fp32 tensors so far: run "
                          "bf16 Plans with the MPI communicator (or set \"precision\": "
                          "\"fp32\")");
      }
    }
  }
  interp_ = std::make_unique<Interpreter>(plan, ops, corpus,
                                          open_stream(options.backend, options.device));
  interp_->set_adam(options.adam);
  interp_->set_test_gradient_scale(options.test_gradient_scale);
  std::vector<int> everyone;
  for (int r = 0; r < comm.size(); ++r) everyone.push_back(r);
  world_ = comm.split(everyone);
  initialise_parameters(*interp_, options.seed);
}

Executor::~Executor() = default;

StepResult Executor::step(bool capture_gradients) {
  ++steps_;
  timings_.clear();
  gradients_.clear();
  const strategies::Program& prog = interp_->program();
  comm_.barrier();
  const double t0 = now_s();
  std::vector<std::tuple<std::uint32_t, double, double>> done;
  done.reserve(prog.tasks.size());
  auto before = [&](std::uint32_t i) {
    if (capture_gradients && prog.tasks[i].block == Block::kOptimizer) capture();
  };
  interp_->run_step(steps_, before, &done, t0);
  const double seconds = now_s() - t0;
  for (const auto& [task, start, end] : done) timings_.push_back({task, start, end});

  // Bookkeeping outside the Plan: the step's loss (each replica's last stage counts its
  // micro-batches' mean losses once) and the slowest rank's time.
  // MoE: every rank's auxiliary losses, weighed as their gradients are (moe_aux_loss_scale).
  float totals[3] = {static_cast<float>(interp_->loss_sum()), interp_->loss_owner() ? 1.0f : 0.0f,
                     static_cast<float>(interp_->aux_loss_sum() *
                                        moe_aux_loss_scale(plan_, comm_.rank()))};
  comm_.all_reduce(world_, totals, 3, ReduceOp::kSum).wait();
  std::vector<float> times(static_cast<std::size_t>(comm_.size()));
  const auto mine = static_cast<float>(seconds);
  comm_.all_gather(world_, &mine, times.data(), 1).wait();
  StepResult r;
  r.step = steps_;
  r.loss = (totals[1] > 0 ? totals[0] / (static_cast<double>(plan_.num_micro_batches) * totals[1])
                          : 0.0) +
           totals[2];
  for (float x : times) r.seconds = std::max(r.seconds, static_cast<double>(x));
  return r;
}

std::vector<ParameterSpan> Executor::parameters() {
  if (options_.backend != kernels::Backend::kCpu) {
    throw ConfigError("the parameters of a rank are read and written in host memory: run on the "
                      "CPU (--device cpu)");
  }
  std::vector<std::string> uncovered;
  std::vector<ParameterSpan> out;
  for (StateSlice& s : state_slices(*interp_, &uncovered)) {
    if (s.state == "master") {
      throw ConfigError("tensor '" + s.tensor + "': the optimizer keeps fp32 master weights apart "
                        "from the parameters (bf16 or ZeRO), which averaging the parameters "
                        "would not reach; use \"precision\": \"fp32\" and \"zero_stage\": 0");
    }
    if (s.state != "param") continue;
    if (s.dtype != strategies::DType::kFp32) {
      throw ConfigError("tensor '" + s.tensor + "': its parameters are not fp32");
    }
    float* base = static_cast<float*>(interp_->view(s.buffer).data);
    const std::int64_t offset = s.buffer_offset;
    out.push_back({std::move(s), base + offset});
  }
  if (!uncovered.empty()) {
    throw ConfigError("buffer '" + uncovered.front() + "' holds parameters no bucket describes");
  }
  return out;
}

// The reduced gradients this rank holds before the optimizer: each bucket's whole gradient, or
// (ZeRO) the rank's part of it, cut into pieces of the bucket's parameters.
void Executor::capture() {
  const strategies::Program& prog = interp_->program();
  for (const strategies::BucketInfo& b : prog.buckets) {
    const bool sharded = b.grad_shard >= 0;
    const TensorView grads = interp_->view(sharded ? b.grad_shard : b.grads);
    strategies::Part part{0, b.elements};
    if (b.zero_stage >= 1) {
      part = strategies::partition(
          b.elements, static_cast<int>(plan_.group_ranks(comm_.rank(), b.dp_group).size()),
          interp_->group_index(b.dp_group));
    }
    // A shard holds the part from its element 0; the whole bucket at the part's offset.
    const std::int64_t shift = sharded ? part.offset : 0;
    for (std::int32_t m : b.members) {
      const strategies::ParamInfo& p = prog.params[m];
      // Piece by piece: an MoE layer's experts are tensors of their own (params.hpp).
      for (const ParamPiece& piece : param_pieces(p, expert_slice(*interp_, p))) {
        const std::int64_t first = p.bucket_offset + piece.first;
        const std::int64_t lo = std::max(part.offset, first);
        const std::int64_t hi = std::min(part.offset + part.count, first + piece.info.elements);
        if (lo >= hi) continue;
        GradientPiece g;
        g.name = piece.name;
        g.rows = piece.info.rows;
        g.cols = piece.info.cols;
        g.shard = piece.info.shard;
        g.row_blocks = piece.info.row_blocks;
        g.parts = piece.info.shard_parts;
        g.index = interp_->group_index(p.shard_group);
        g.begin = lo - first;
        g.values.resize(static_cast<std::size_t>(hi - lo));
        const std::size_t bytes = static_cast<std::size_t>(strategies::dtype_bytes(grads.dtype));
        std::vector<char> raw(g.values.size() * bytes);
        kernels::copy_to_host(interp_->stream(), raw.data(),
                              static_cast<const char*>(grads.data) + (lo - shift) * bytes,
                              raw.size())
            .synchronize();
        if (grads.dtype == strategies::DType::kBf16) {
          g.values = kernels::widen(reinterpret_cast<const kernels::bf16*>(raw.data()),
                                    static_cast<std::int64_t>(g.values.size()));
        } else {
          std::memcpy(g.values.data(), raw.data(), raw.size());
        }
        gradients_.push_back(std::move(g));
      }
    }
  }
}

std::vector<strategies::TaskSpan> Executor::gather_last_step() {
  std::vector<strategies::TaskSpan> out;
  auto flat = [](const std::vector<TaskTiming>& ts) {
    std::vector<double> v;
    for (const TaskTiming& t : ts) v.insert(v.end(), {double(t.task), t.start_s, t.end_s});
    return pack(v);
  };
  // Above every Plan tag of the host communicator (the Plan's may run on another).
  const int tag = comm_.max_tag() - 1;
  if (comm_.rank() != 0) {
    std::vector<float> mine = flat(timings_);
    comm_.send(0, tag, mine.data(), mine.size()).wait();
    return out;
  }
  for (int r = 0; r < comm_.size(); ++r) {
    std::vector<float> v;
    if (r == 0) {
      v = flat(timings_);
    } else {
      v.resize(6 * plan_.program_of(r).tasks.size());
      comm_.recv(r, tag, v.data(), v.size()).wait();
    }
    const std::vector<double> d = unpack(v.data(), v.size() / 2);
    for (std::size_t i = 0; i + 2 < d.size(); i += 3) {
      out.push_back({r, static_cast<std::uint32_t>(d[i]), d[i + 1], d[i + 2]});
    }
  }
  return out;
}

std::vector<RankMemory> Executor::gather_memory() {
  const MemoryStats& m = interp_->memory();
  const strategies::MemorySummary& planned = interp_->program().memory;
  const std::vector<double> mine = {
      planned.peak_bytes(),         planned.static_bytes.params, planned.static_bytes.grads,
      planned.static_bytes.optimizer, planned.static_bytes.other, m.peak_bytes,
      m.static_bytes.params,        m.static_bytes.grads,        m.static_bytes.optimizer,
      m.static_bytes.other,         m.peak_transient_bytes,      m.alignment_padding_bytes,
      m.staging_peak_bytes,         m.reserved_peak_bytes};
  const std::vector<float> packed = pack(mine);
  std::vector<float> all(packed.size() * static_cast<std::size_t>(comm_.size()));
  comm_.all_gather(world_, packed.data(), all.data(), packed.size()).wait();
  std::vector<RankMemory> out;
  if (comm_.rank() != 0) return out;
  for (int r = 0; r < comm_.size(); ++r) {
    const std::vector<double> d = unpack(all.data() + r * packed.size(), mine.size());
    RankMemory x;
    x.rank = r;
    x.planned_peak_bytes = d[0];
    x.planned_static = {d[1], d[2], d[3], d[4]};
    x.measured.peak_bytes = d[5];
    x.measured.static_bytes = {d[6], d[7], d[8], d[9]};
    x.measured.peak_transient_bytes = d[10];
    x.measured.alignment_padding_bytes = d[11];
    x.measured.staging_peak_bytes = d[12];
    x.measured.reserved_peak_bytes = d[13];
    out.push_back(x);
  }
  return out;
}

}  // namespace strata::exec
