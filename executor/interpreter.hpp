// The interpreter: runs one rank's program of a Plan task by task, in program order. Every
// tensor it touches is a buffer of the program's table, allocated when the Plan says (memory.hpp);
// each compute op is dispatched by kind to kernels/ on the buffers it names (compute_ops.cpp),
// each collective and transfer to the communication layer (comm_ops.cpp). It knows no strategy:
// tp, sp, pp, dp, ZeRO and recompute are all in which ops the Plan names, on which buffers and
// groups (DESIGN.md "Executor"; docs/executor.md).
//
// Kernels see backend-neutral tensor views (pointer, shape, dtype, backend): the same program
// runs on the CPU or, given a CUDA stream, with every tensor in device memory and every op a
// CUDA kernel (docs/executor.md "On a GPU"). It runs fp32 and refuses, before any work, a
// program that needs anything else (refusal()).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/memory.hpp"
#include "executor/op_context.hpp"
#include "kernels/backend.hpp"
#include "kernels/model_ops.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

// What the program of `rank` needs that this executor cannot run on `backend` (an op kind, a
// dtype, a feature flag), as one message naming the first such op and buffer; empty when it
// can run.
std::string refusal(const strategies::ProgramSet& plan, int rank,
                    kernels::Backend backend = kernels::Backend::kCpu);

// A stream of `backend`: the CPU, or CUDA device `device` (ConfigError with the reason when
// this build or machine has none).
kernels::Stream open_stream(kernels::Backend backend, int device);

class Interpreter final : public OpContext {
 public:
  // Makes this rank's communication groups (collective over the world: every rank constructs
  // its Interpreter at the same time), places its buffers (memory.hpp) and allocates the
  // arena, persistent buffers zeroed, on `stream`'s backend.
  Interpreter(const strategies::ProgramSet& plan, Comm& comm, const Corpus& corpus,
              kernels::Stream stream = kernels::Stream::cpu());

  // Runs every task once: one optimizer step, numbered `step` (1 for the first), and waits for
  // the stream. `before_task` (if set) is called before each task with its id; `done` receives
  // each task's start and end (seconds since `t0`; on a device, from timing events around it).
  void run_step(int step, const std::function<void(std::uint32_t)>& before_task,
                std::vector<std::tuple<std::uint32_t, double, double>>* done, double t0);

  const strategies::ProgramSet& plan() const override { return plan_; }
  const strategies::Program& program() const override { return program_; }
  int rank() const override { return rank_; }
  Comm& comm() { return comm_; }
  // A buffer of the table as a view (views of other buffers resolved).
  TensorView view(std::int32_t buffer) const override;
  int group_index(const strategies::GroupRef& g) const override;
  GroupId group(const strategies::GroupRef& g) const;
  const MemoryStats& memory() const { return arena_.stats(); }
  Arena& arena() { return arena_; }
  const kernels::Stream& stream() const override { return stream_; }
  const Corpus* corpus() const override { return &corpus_; }
  void* scratch(int slot, std::size_t bytes) const override;
  float* device_scalar() const override {
    return stream_.backend() == kernels::Backend::kCuda ? const_cast<float*>(scalar_.as<float>())
                                                        : nullptr;
  }
  int step() const override { return step_; }
  // Tag of the executor's own transfers outside the Plan (trace gathering), above every Plan tag.
  int bookkeeping_tag() const { return comm_.max_tag() - 1; }
  const kernels::AdamWOptions& adam() const override { return adam_; }
  void set_adam(const kernels::AdamWOptions& o) { adam_ = o; }
  float test_gradient_scale() const override { return test_gradient_scale_; }
  void set_test_gradient_scale(float s) { test_gradient_scale_ = s; }
  // The sum of this rank's micro-batch mean losses in the last step (0 without a loss), and
  // whether it counts them: one rank per tensor-parallel group of each replica's last stage.
  double loss_sum() const;
  bool loss_owner() const { return loss_owner_; }
  // The sum of this rank's MoE auxiliary losses in the last step (each layer's and micro-batch's
  // over the rank's rows, times its coefficient; 0 without): moe_aux_loss_scale() weighs it.
  double aux_loss_sum() const;
  double* aux_loss() const override { return const_cast<double*>(aux_loss_.as<double>()); }
  // A send in flight: its data stays in `copy` (staging) until the step ends.
  void keep_send(Request request, std::vector<float> copy);
  // Mixture of experts: the rows this rank sends to and receives from each member of its
  // expert-parallel group in the dispatch direction of an MoE layer's micro-batch, found by the
  // forward dispatch (from the routing's counts) and reused by the combine and by the backward
  // all-to-alls of the same layer and micro-batch (which carry no counts).
  struct MoeRoutes {
    std::vector<int> send_rows, recv_rows;
    std::vector<int> tp_rows;  // expert_tp > 1: the rows each member of the tp group received
  };
  MoeRoutes& moe_routes(int layer, int micro_batch) { return moe_routes_[{layer, micro_batch}]; }

 private:
  void make_groups();
  void allocate_starting(std::uint32_t task);
  void release_ending(std::uint32_t task);
  void run_task(std::uint32_t task);
  void finish_sends();

  const strategies::ProgramSet& plan_;
  Comm& comm_;
  const Corpus& corpus_;
  int rank_ = 0;
  // The rank's program with the MoE routed buffers sized for the most rows (memory.hpp
  // with_moe_row_bounds); program_ refers to it.
  strategies::Program own_program_;
  const strategies::Program& program_;
  kernels::Stream stream_;
  Arena arena_;
  kernels::Buffer scalar_;  // device_scalar() (a CUDA stream's)
  kernels::Buffer aux_loss_;  // aux_loss(): one double on the stream's backend
  // scratch(): per slot, grown as needed (the widened copies of bf16 ops without bf16 kernels),
  // counted as staging beside the Plan's tensors.
  mutable std::vector<kernels::Buffer> scratch_;
  std::map<std::tuple<int, int, int>, GroupId> groups_;  // (kind, layout, layout_from)
  std::vector<std::vector<std::int32_t>> starts_, ends_;  // per task: buffers it allocates, frees
  int step_ = 0;
  kernels::AdamWOptions adam_;
  float test_gradient_scale_ = 1.0f;
  std::int32_t loss_ = -1;
  bool loss_owner_ = false;
  struct PendingSend {
    Request request;
    std::vector<float> copy;
  };
  std::vector<PendingSend> sends_;
  std::map<std::pair<int, int>, MoeRoutes> moe_routes_;
};

}  // namespace strata::exec
