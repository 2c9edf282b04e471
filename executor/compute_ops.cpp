// Compute ops of a Plan, each dispatched by kind to kernels/ on the buffers it names (the op
// contracts are in strategies/program.hpp; the kernels' in kernels/*.hpp).
#include <algorithm>
#include <cstring>

#include "common/error.hpp"
#include "executor/detail/ops.hpp"
#include "kernels/elementwise_ops.hpp"
#include "kernels/model_ops.hpp"
#include "kernels/ops.hpp"
#include "kernels/parallel_ops.hpp"

namespace strata::exec::detail {

using strategies::Op;
using strategies::OpKind;

namespace {

// The operands of one op as views, and its flags.
class Args {
 public:
  Args(Interpreter& in, const Op& op) : in_(in), op_(op) {}
  TensorView input(int i) const { return in_.view(in_.program().input(op_, i)); }
  TensorView output(int i) const { return in_.view(in_.program().output(op_, i)); }
  float* in(int i) const { return input(i).f32(); }
  float* out(int i) const { return output(i).f32(); }
  bool has_in(int i) const { return i < op_.n_in; }
  bool has_out(int i) const { return i < op_.n_out; }
  bool flag(std::uint8_t f) const { return (op_.flags & f) != 0; }
  std::int64_t dim(int i) const { return op_.dims[i]; }
  int index() const { return in_.group_index(op_.group); }
  const kernels::Stream& stream() const { return in_.stream(); }
  // Parameter gradients are added into their accumulators unless the op overwrites them.
  bool accumulate() const { return !flag(strategies::kOverwrite); }
  void zero_unless_accumulating(int out_index) const {
    if (accumulate()) return;
    const TensorView v = output(out_index);
    kernels::fill_zero(stream(), v.data, static_cast<std::size_t>(v.elements()) * sizeof(float));
  }

 private:
  Interpreter& in_;
  const Op& op_;
};

void load_batch(Interpreter& in, const Args& a, const Op& op) {
  // Samples of replica d in step k: k*B_global + d*B_replica + the micro-batch's offset.
  const std::int64_t per_replica = a.dim(3);
  const int replicas = static_cast<int>(in.plan().group_ranks(in.rank(), op.group).size());
  const std::int64_t first = static_cast<std::int64_t>(in.step() - 1) * per_replica * replicas +
                             a.index() * per_replica + a.dim(2);
  std::vector<std::int32_t> tokens, targets;
  in.corpus().batch(first, static_cast<int>(a.dim(0)), tokens, targets);
  for (int i = 0; i < op.n_out; ++i) {
    const std::int32_t id = in.program().output(op, i);
    const bool want_tokens = in.program().buffers[id].kind == strategies::TensorKind::kTokens;
    const std::vector<std::int32_t>& src = want_tokens ? tokens : targets;
    const TensorView v = in.view(id);
    STRATA_CHECK(static_cast<std::int64_t>(src.size()) == v.elements(), "batch size mismatch");
    kernels::copy_from_host(in.stream(), v.data, src.data(), src.size() * sizeof(std::int32_t))
        .synchronize();
  }
}

void norm_backward(const Args& a, bool layer_norm) {
  const std::int64_t rows = a.dim(0), c = a.dim(1);
  if (layer_norm) {
    kernels::layer_norm_backward(a.stream(), a.out(0), a.out(1), a.has_out(2) ? a.out(2) : nullptr,
                                 a.in(0), a.in(1), a.in(2), a.in(3), a.in(4), rows, c,
                                 a.accumulate());
  } else {
    kernels::rms_norm_backward(a.stream(), a.out(0), a.out(1), a.in(0), a.in(1), a.in(2), a.in(3),
                               rows, c, a.accumulate());
  }
  if (a.flag(strategies::kResidualGrad)) {
    // dx of the norm plus the residual stream's gradient from the block output.
    kernels::add_inplace(a.stream(), a.out(0), a.in(layer_norm ? 5 : 4), rows * c);
  }
}

void adamw(Interpreter& in, const Args& a, const Op& op, const kernels::AdamWOptions& options) {
  // Whole buckets, or (ZeRO) the rank's part: operands holding every element of the bucket are
  // indexed at the part's offset, those holding a part from 0.
  const std::int64_t elements = a.dim(0);
  strategies::Part part{0, elements};
  if (a.flag(strategies::kPartitioned)) part = strategies::partition(elements, static_cast<int>(a.dim(1)), a.index());
  auto at = [&](const TensorView& v) {
    return v.f32() + (v.elements() == elements ? part.offset : 0);
  };
  const TensorView grads = a.input(0), params = a.output(0), m = a.output(1), v = a.output(2);
  if (op.n_out > 3) {
    STRATA_CHECK(false, "AdamW with fp32 master weights needs 16-bit parameters: not on the CPU");
  }
  kernels::adamw_step(a.stream(), at(params), at(m), at(v), at(grads), part.count, in.step(),
                      options);
}

}  // namespace

void run_compute(Interpreter& in, const Op& op) {
  const Args a(in, op);
  const kernels::Stream& s = in.stream();
  using strategies::kOwnRows;
  switch (op.kind) {
    case OpKind::kLoadBatch:
      load_batch(in, a, op);
      return;
    case OpKind::kEmbedding: {
      // dims {N, C, V shard, T}: this rank's vocabulary shard, positions where the reduction
      // that follows counts them once.
      const std::int64_t n = a.dim(0), c = a.dim(1), vs = a.dim(2), t = a.dim(3);
      const int idx = a.index();
      kernels::embedding_shard_forward(s, a.out(0), a.input(0).i32(), a.in(1), idx * vs, vs, n, c);
      if (a.has_in(2)) {
        const int parts = static_cast<int>(in.plan().group_ranks(in.rank(), op.group).size());
        if (a.flag(kOwnRows)) {
          const std::int64_t rows = n / parts;
          kernels::add_positions(s, a.out(0) + idx * rows * c, a.in(2), idx * rows, rows, t, c);
        } else if (idx == 0) {
          kernels::add_positions(s, a.out(0), a.in(2), 0, n, t, c);
        }
      }
      return;
    }
    case OpKind::kEmbeddingBwd: {
      // in {gradient (N,C), tokens, the rank's rows of the gradient}; out {word, [positions]}
      const std::int64_t n = a.dim(0), c = a.dim(1), vs = a.dim(2), t = a.dim(3);
      const int idx = a.index();
      a.zero_unless_accumulating(0);
      kernels::embedding_shard_backward(s, a.out(0), a.in(0), a.input(1).i32(), idx * vs, vs, n, c);
      if (a.has_out(1)) {
        a.zero_unless_accumulating(1);
        const TensorView rows = a.input(2);
        const std::int64_t r = rows.shape[0];
        kernels::positions_backward(s, a.out(1), rows.f32(), a.flag(kOwnRows) ? idx * r : 0, r, t, c);
      }
      return;
    }
    case OpKind::kLayerNorm:
      kernels::layer_norm_forward(s, a.out(0), a.out(1), a.out(2), a.in(0), a.in(1), a.in(2),
                                  a.dim(0), a.dim(1), op.param);
      return;
    case OpKind::kRmsNorm:
      kernels::rms_norm_forward(s, a.out(0), a.out(1), a.in(0), a.in(1), a.dim(0), a.dim(1),
                                op.param);
      return;
    case OpKind::kLayerNormBwd:
      norm_backward(a, true);
      return;
    case OpKind::kRmsNormBwd:
      norm_backward(a, false);
      return;
    case OpKind::kLinear:
      kernels::linear_forward(s, a.out(0), a.in(0), a.in(1), a.has_in(2) ? a.in(2) : nullptr,
                              a.dim(0), a.dim(1), a.dim(2));
      return;
    case OpKind::kLinearBwdData:
      kernels::linear_backward_data(s, a.out(0), a.in(0), a.in(1), a.dim(0), a.dim(1), a.dim(2));
      return;
    case OpKind::kLinearBwdWeight:
      kernels::linear_backward_weight(s, a.out(0), a.has_out(1) ? a.out(1) : nullptr, a.in(0),
                                      a.in(1), a.dim(0), a.dim(1), a.dim(2), a.accumulate());
      return;
    case OpKind::kAttention:
      kernels::attention_forward(s, a.out(0), a.out(1), a.in(0), a.dim(0), a.dim(1), a.dim(2),
                                 a.dim(3));
      return;
    case OpKind::kAttentionBwd:
      kernels::attention_backward(s, a.out(0), a.in(0), a.in(1), a.in(2), a.dim(0), a.dim(1),
                                  a.dim(2), a.dim(3));
      return;
    case OpKind::kFlashAttention:  // out: context, lse
      kernels::flash_attention_forward(s, a.out(0), a.out(1), a.in(0), a.dim(0), a.dim(1),
                                       a.dim(2), a.dim(3));
      return;
    case OpKind::kFlashAttentionBwd:  // in: d(context), qkv, context, lse
      kernels::flash_attention_backward(s, a.out(0), a.in(0), a.in(1), a.in(2), a.in(3), a.dim(0),
                                        a.dim(1), a.dim(2), a.dim(3));
      return;
    case OpKind::kGelu:
      kernels::gelu_forward(s, a.out(0), a.in(0), a.dim(0) * a.dim(1));
      return;
    case OpKind::kGeluBwd:
      kernels::gelu_backward(s, a.out(0), a.in(0), a.in(1), a.dim(0) * a.dim(1));
      return;
    case OpKind::kSwiglu:
      kernels::swiglu_forward(s, a.out(0), a.in(0), a.dim(0), a.dim(1));
      return;
    case OpKind::kSwigluBwd:
      kernels::swiglu_backward(s, a.out(0), a.in(0), a.in(1), a.dim(0), a.dim(1));
      return;
    case OpKind::kResidualAdd: {
      // The residual and the bias folded into the partial sum where the reduction that follows
      // counts them once: the rank's row block (sequence parallelism), or group index 0.
      const std::int64_t rows = a.dim(0), c = a.dim(1);
      const float* bias = a.has_in(1) ? a.in(1) : nullptr;
      if (a.flag(kOwnRows)) {
        kernels::add_residual_bias(s, a.out(0) + a.index() * rows * c, a.in(0), bias, rows, c);
      } else if (a.index() == 0) {
        kernels::add_residual_bias(s, a.out(0), a.in(0), bias, rows, c);
      }
      return;
    }
    case OpKind::kResidualAddBwd:
      if (a.has_out(0)) {
        a.zero_unless_accumulating(0);
        kernels::bias_backward(s, a.out(0), a.in(0), a.dim(0), a.dim(1));
      }
      return;
    case OpKind::kSoftmaxStats:
      kernels::softmax_stats(s, a.out(0), a.in(0), a.input(1).i32(), a.index() * a.dim(1),
                             a.dim(1), a.dim(0));
      return;
    case OpKind::kCrossEntropyBwd: {
      const std::int64_t n = a.dim(0), cols = a.dim(1);
      kernels::cross_entropy_shard_backward_from_stats(s, a.out(0), a.in(0), a.in(1),
                                                       a.input(2).i32(), a.index() * cols, cols, n,
                                                       op.param * in.test_gradient_scale());
      // The micro-batch's mean loss, counted once per tensor-parallel group (host arithmetic on
      // the loss buffer: the CPU backend's; a device backend stages the scalar).
      if (a.index() == 0) {
        float sum = 0;
        kernels::cross_entropy_from_stats(s, nullptr, &sum, a.in(1), n);
        *static_cast<double*>(a.output(1).data) += static_cast<double>(sum) / static_cast<double>(n);
      }
      return;
    }
    case OpKind::kGradAccumulate:
      for (int i = 0; i < op.n_in; ++i) {
        const TensorView add = a.input(i);
        kernels::add_inplace(s, a.out(i), add.f32(), add.elements());
      }
      return;
    case OpKind::kAdamW:
      adamw(in, a, op, in.adam());
      return;
    default:
      break;
  }
  STRATA_CHECK(false, std::string("op ") + strategies::op_kind_name(op.kind) +
                          " is not a compute op");
}

}  // namespace strata::exec::detail
