// What one compute op sees of the rank that runs it: its program's buffers as tensor views, the
// rank's index in the op's groups, the stream, and the step's settings. compute_ops.cpp runs every
// compute op against this interface, so the same dispatch serves two callers: the Interpreter
// (interpreter.hpp: the whole program, buffers living as the Plan says) and the op timer
// (op_timer.hpp: one op alone, on copies of its operands).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/dtype.hpp"
#include "kernels/model_ops.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

class Corpus;

// A tensor as the kernels see it.
struct TensorView {
  void* data = nullptr;
  std::array<std::int64_t, 4> shape{};
  int ndim = 0;
  strategies::DType dtype = strategies::DType::kFp32;
  kernels::Backend backend = kernels::Backend::kCpu;

  std::int64_t elements() const;
  float* f32() const { return static_cast<float*>(data); }
  kernels::bf16* bf() const { return static_cast<kernels::bf16*>(data); }
  std::int32_t* i32() const { return static_cast<std::int32_t*>(data); }
};

// The element offset of view `b` (b.is_view()) into its parent for `rank`: view_offset, times
// the rank's index in view_group when set (plus view_rotate, modulo the group's size), as
// strategies/program.hpp defines it.
std::int64_t view_offset_elements(const strategies::ProgramSet& plan, int rank,
                                  const strategies::Buffer& b);

// Mixture of experts: d(step loss)/d(one rank's auxiliary loss of one layer and micro-batch),
// 1 / (micro-batches x dp x tp). The step's loss is the mean over micro-batches and replicas
// (like the LM loss) of each micro-batch's auxiliary losses, summed over the MoE layers, each the
// mean over the tp ranks' row blocks (sequence parallelism: a rank routes 1/tp of the rows and
// its loss is Switch's over those rows). The reductions of the gradients then sum the replicas
// (dp) and the tp ranks' partial router gradients.
double moe_aux_loss_scale(const strategies::ProgramSet& plan, int rank);

class OpContext {
 public:
  virtual ~OpContext() = default;

  virtual const strategies::ProgramSet& plan() const = 0;
  virtual const strategies::Program& program() const = 0;
  virtual int rank() const = 0;
  // Buffer `buffer` of program() as a view; only the buffers the running op names are asked for.
  virtual TensorView view(std::int32_t buffer) const = 0;
  // rank()'s index in its group `g` (0 for kNone).
  virtual int group_index(const strategies::GroupRef& g) const = 0;
  virtual const kernels::Stream& stream() const = 0;
  // The optimizer step being run (1 for the first): AdamW's bias correction.
  virtual int step() const = 0;
  virtual const kernels::AdamWOptions& adam() const = 0;
  // The logits' gradient scale (fault injection for the tests; 1 = none).
  virtual float test_gradient_scale() const = 0;
  // The training data of load_batch; nullptr where there is none (the op timer).
  virtual const Corpus* corpus() const = 0;
  // A float of device memory on stream()'s device that an op may use within its task (the
  // loss scalar on its way to the host), allocated once; nullptr where there is none.
  virtual float* device_scalar() const { return nullptr; }
  // Mixture of experts: the rank's sum of its auxiliary (load-balancing) losses in this step, a
  // double in stream()'s memory that kMoeRoute adds to; nullptr where there is none (the op
  // timer: the op then adds nothing).
  virtual double* aux_loss() const { return nullptr; }
  // Scratch memory on stream()'s backend for the op being run: slot `slot` holds at least
  // `bytes` until the next request for that slot (grown as needed, kept across ops, so work
  // enqueued on the stream may use it without waiting); nullptr where the context keeps none
  // (the op then allocates its own).
  virtual void* scratch(int slot, std::size_t bytes) const {
    (void)slot;
    (void)bytes;
    return nullptr;
  }
};

}  // namespace strata::exec
