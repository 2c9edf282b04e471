// Compute ops of a Plan, each dispatched by kind to kernels/ on the buffers it names (the op
// contracts are in strategies/program.hpp; the kernels' in kernels/*.hpp). They see their rank
// through OpContext (op_context.hpp): the interpreter's, or the op timer's.
#include <algorithm>
#include <cstring>
#include <map>

#include "common/error.hpp"
#include "executor/data.hpp"
#include "executor/detail/ops.hpp"
#include "kernels/bf16_ops.hpp"
#include "kernels/elementwise_ops.hpp"
#include "kernels/model_ops.hpp"
#include "kernels/moe_ops.hpp"
#include "kernels/ops.hpp"
#include "kernels/parallel_ops.hpp"

namespace strata::exec::detail {

using strategies::Op;
using strategies::OpKind;

namespace {

// The operands of one op as views, and its flags.
class Args {
 public:
  Args(const OpContext& in, const Op& op) : in_(in), op_(op) {}
  TensorView input(int i) const { return in_.view(in_.program().input(op_, i)); }
  TensorView output(int i) const { return in_.view(in_.program().output(op_, i)); }
  float* in(int i) const { return input(i).f32(); }
  float* out(int i) const { return output(i).f32(); }
  kernels::bf16* bin(int i) const { return input(i).bf(); }
  kernels::bf16* bout(int i) const { return output(i).bf(); }
  // The op runs on bf16 tensors through the bf16 kernels (native_bf16(); run on widened fp32
  // copies instead, its views are fp32).
  bool bf16() const { return output(0).dtype == strategies::DType::kBf16; }
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
  const OpContext& in_;
  const Op& op_;
};

// Context parallelism (cp > 1): rank r of the cp group holds chunks r and 2cp-1-r of the 2cp
// equal chunks of every sequence of length t (kernels::context_parallel_segments); with cp 1,
// the whole sequence. Its local rows of a sequence as runs of consecutive positions.
struct CpRows {
  std::vector<kernels::AttentionSegment> segments;
  std::int64_t local = 0;  // rows of one sequence held
  // The position of local row j (0 <= j < local).
  std::int64_t position(std::int64_t j) const {
    for (const kernels::AttentionSegment& g : segments) {
      if (j < g.length) return g.position + j;
      j -= g.length;
    }
    STRATA_CHECK(false, "row beyond the rank's part of the sequence");
    return 0;
  }
  // Calls f(first_row, rows, position) for each run of consecutive positions among local rows
  // [first, first + rows) of sequences laid one after another.
  template <class F>
  void runs(std::int64_t first, std::int64_t rows, F f) const {
    for (std::int64_t g = first; g < first + rows;) {
      std::int64_t j = g % local, n = 0, pos = 0;
      for (const kernels::AttentionSegment& seg : segments) {
        if (j < seg.length) {
          n = std::min(seg.length - j, first + rows - g);
          pos = seg.position + j;
          break;
        }
        j -= seg.length;
      }
      f(g - first, n, pos);
      g += n;
    }
  }
};

// The rank's index in its context-parallel group (that of layout 0: every layout has the same).
int cp_rank(const OpContext& in) { return in.group_index({strategies::GroupKind::kCp, 0, 0}); }

CpRows cp_rows(const OpContext& in, std::int64_t cp, std::int64_t t) {
  CpRows out;
  out.segments = kernels::context_parallel_segments(t, static_cast<int>(std::max<std::int64_t>(cp, 1)),
                                                    cp > 1 ? cp_rank(in) : 0);
  out.local = t / std::max<std::int64_t>(cp, 1);
  return out;
}

void load_batch(const OpContext& in, const Args& a, const Op& op) {
  // Samples of replica d in step k: k*B_global + d*B_replica + the micro-batch's offset.
  const std::int64_t per_replica = a.dim(3);
  const int replicas = static_cast<int>(in.plan().group_ranks(in.rank(), op.group).size());
  const std::int64_t first = static_cast<std::int64_t>(in.step() - 1) * per_replica * replicas +
                             a.index() * per_replica + a.dim(2);
  STRATA_CHECK(in.corpus() != nullptr, "load_batch needs the training data (the interpreter's)");
  std::vector<std::int32_t> tokens, targets;
  in.corpus()->batch(first, static_cast<int>(a.dim(0)), tokens, targets);
  if (a.dim(4) > 1) {  // context parallelism: the rank's two chunks of each sequence
    const std::int64_t local = a.dim(1), t = local * a.dim(4);
    const CpRows cp = cp_rows(in, a.dim(4), t);
    auto pick = [&](std::vector<std::int32_t>& v) {
      std::vector<std::int32_t> mine;
      for (std::int64_t b = 0; b < a.dim(0); ++b) {
        for (std::int64_t j = 0; j < local; ++j) mine.push_back(v[b * t + cp.position(j)]);
      }
      v.swap(mine);
    };
    pick(tokens);
    pick(targets);
  }
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
  if (a.bf16()) {  // LayerNorm only (native_bf16)
    kernels::layer_norm_backward(a.stream(), a.bout(0), a.bout(1), a.has_out(2) ? a.bout(2) : nullptr,
                                 a.bin(0), a.bin(1), a.bin(2), a.in(3), a.in(4), rows, c,
                                 a.accumulate());
    if (a.flag(strategies::kResidualGrad)) {
      kernels::add_inplace(a.stream(), a.bout(0), a.bin(5), rows * c);
    }
    return;
  }
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

void adamw(const OpContext& in, const Args& a, const Op& op, const kernels::AdamWOptions& options) {
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
    // fp32 master weights (16-bit parameters): the step updates the master copy, and the
    // parameters are the master's values (rounded to 16 bits when the widened parameters
    // are stored back: Widened).
    const TensorView master = a.output(3);
    kernels::adamw_step(a.stream(), at(master), at(m), at(v), at(grads), part.count, in.step(),
                        options);
    kernels::copy_columns(a.stream(), at(params), part.count, at(master), part.count, 1,
                          part.count);
    return;
  }
  kernels::adamw_step(a.stream(), at(params), at(m), at(v), at(grads), part.count, in.step(),
                      options);
}

// --- bf16 ----------------------------------------------------------------------------------

// Whether `op` runs on bf16 tensors through a bf16 kernel of kernels/bf16_ops.hpp: the GEMMs,
// GELU and LayerNorm with every tensor bf16 (LayerNorm's mean and rstd fp32).
bool native_bf16(const OpContext& in, const Op& op) {
  using strategies::DType;
  if (op.dtype != DType::kBf16) return false;
  const strategies::Program& p = in.program();
  auto dtype = [&](std::int32_t id) { return p.buffers[id].dtype; };
  auto all_bf16 = [&](int skip_from, int skip_count) {
    for (int i = 0; i < op.n_in + op.n_out; ++i) {
      const std::int32_t id = p.operands[op.operands + i];
      const bool skipped = i >= skip_from && i < skip_from + skip_count;
      if (dtype(id) != (skipped ? DType::kFp32 : DType::kBf16)) return false;
    }
    return true;
  };
  switch (op.kind) {
    case OpKind::kLinear:
    case OpKind::kLinearBwdData:
    case OpKind::kLinearBwdWeight:
    case OpKind::kGelu:
    case OpKind::kGeluBwd:
      return all_bf16(0, 0);
    case OpKind::kLayerNorm:  // in {x, weight, bias}; out {y, mean, rstd}
      return op.dims[2] == 0 && all_bf16(4, 2);
    case OpKind::kLayerNormBwd:  // in {dy, x, weight, mean, rstd, [residual grad]}; out {...}
      return all_bf16(3, 2);
    default:
      return false;
  }
}

// An op with bf16 operands and no bf16 kernel (or operands of mixed types no kernel takes) runs
// its fp32 kernels on widened copies: every bf16 operand widened to fp32 before the op (outputs
// too, so that ops adding into their outputs add to the old values), every bf16 output rounded
// back after it. The arithmetic is fp32 and each stored element is rounded once, as in the bf16
// kernels; the copies are scratch of the op (allocated per op: slow on a GPU, where the hot ops
// have bf16 kernels).
class Widened final : public OpContext {
 public:
  Widened(const OpContext& in, const Op& op) : in_(in) {
    const strategies::Program& p = in.program();
    int slot = 0;
    for (int i = 0; i < op.n_in + op.n_out; ++i) {
      const std::int32_t id = p.operands[op.operands + i];
      if (p.buffers[id].dtype != strategies::DType::kBf16) continue;
      if (const auto it = copies_.find(id); it != copies_.end()) {  // both read and written
        it->second.written = it->second.written || i >= op.n_in;
        continue;
      }
      const TensorView v = in.view(id);
      const std::size_t bytes = std::max<std::size_t>(1, sizeof(float) * v.elements());
      Copy c{v, i >= op.n_in, in.scratch(slot++, bytes), kernels::Buffer()};
      if (c.wide == nullptr) {  // a context without scratch: the copy is the op's own
        c.own = kernels::Buffer(in.stream(), bytes);
        c.wide = c.own.data();
        owns_ = true;
      }
      kernels::convert(in.stream(), static_cast<float*>(c.wide), v.bf(), v.elements());
      copies_.emplace(id, std::move(c));
    }
  }
  // Rounds the bf16 outputs back into their tensors.
  void store() {
    for (auto& [id, c] : copies_) {
      if (c.written) {
        kernels::convert(in_.stream(), c.bf16.bf(), static_cast<float*>(c.wide),
                         c.bf16.elements());
      }
    }
    // Copies of the op's own are freed with this context: the stream must be done with them.
    // The context's scratch stays for the next op, ordered after this one on the stream.
    if (owns_) in_.stream().synchronize();
  }

  TensorView view(std::int32_t id) const override {
    const auto it = copies_.find(id);
    if (it == copies_.end()) return in_.view(id);
    TensorView v = it->second.bf16;
    v.data = it->second.wide;
    v.dtype = strategies::DType::kFp32;
    return v;
  }
  const strategies::ProgramSet& plan() const override { return in_.plan(); }
  const strategies::Program& program() const override { return in_.program(); }
  int rank() const override { return in_.rank(); }
  int group_index(const strategies::GroupRef& g) const override { return in_.group_index(g); }
  const kernels::Stream& stream() const override { return in_.stream(); }
  int step() const override { return in_.step(); }
  const kernels::AdamWOptions& adam() const override { return in_.adam(); }
  float test_gradient_scale() const override { return in_.test_gradient_scale(); }
  const Corpus* corpus() const override { return in_.corpus(); }
  float* device_scalar() const override { return in_.device_scalar(); }
  double* aux_loss() const override { return in_.aux_loss(); }
  // The op run inside takes its own scratch after the copies' slots.
  void* scratch(int slot, std::size_t bytes) const override {
    return in_.scratch(static_cast<int>(copies_.size()) + slot, bytes);
  }

 private:
  struct Copy {
    TensorView bf16;
    bool written;
    void* wide;           // the fp32 copy: the context's scratch, or `own`
    kernels::Buffer own;
  };
  const OpContext& in_;
  std::map<std::int32_t, Copy> copies_;
  bool owns_ = false;
};

}  // namespace

// The context-parallel attention core (dims {B, Tq, C, heads, h_kv, Tk}, group cp): the rank's
// queries (its two chunks of every sequence) against one rank's keys and values (a ring step:
// param = step i, the block of group rank r - i) or every rank's, gathered rank-major
// (param = -1), with kernels::attention_segments_* over the rows' positions.
struct CpAttention {
  std::int64_t b, tq, c, h, hk, tk, cp, t;
  int rank;
  int step;  // -1: gathered
  std::vector<kernels::AttentionSegment> q_segments;
  // The group rank whose rows block `j` of the key operand holds (ring: one block).
  int owner(int j) const { return step < 0 ? j : static_cast<int>((rank - step + cp) % cp); }
  std::vector<kernels::AttentionSegment> kv_segments(int j) const {
    return kernels::context_parallel_segments(t, static_cast<int>(cp), owner(j));
  }
  int blocks() const { return step < 0 ? static_cast<int>(cp) : 1; }
};

CpAttention cp_attention_of(const OpContext& in, const Args& a, const Op& op) {
  CpAttention c;
  c.b = a.dim(0);
  c.tq = a.dim(1);
  c.c = a.dim(2);
  c.h = a.dim(3);
  c.hk = a.dim(4);
  c.tk = a.dim(5);
  STRATA_CHECK(c.hk == c.c, "context-parallel attention runs multi-head attention only (no GQA)");
  c.cp = static_cast<std::int64_t>(in.plan().group_ranks(in.rank(), op.group).size());
  c.t = c.tq * c.cp;
  c.rank = a.index();
  c.step = static_cast<int>(op.param);
  c.q_segments = kernels::context_parallel_segments(c.t, static_cast<int>(c.cp), c.rank);
  STRATA_CHECK(c.tk == c.tq * c.blocks(), "context-parallel attention: key rows mismatch");
  return c;
}

// in {qkv, keys and values (B Tk, 2 h_kv)}; out {ctx, lse}, merged into with kAccumulate. The
// gathered block is rank-major (cp, B, Tq): each rank's rows are attended to one call per batch
// row, merged in rank order (the same result as one call over all keys, within fp32 rounding).
void cp_attention(const OpContext& in, const Args& a, const Op& op) {
  const CpAttention c = cp_attention_of(in, a, op);
  const kernels::Stream& s = in.stream();
  const std::int64_t ldq = c.c + 2 * c.hk, ldkv = 2 * c.hk;
  float *ctx = a.out(0), *lse = a.out(1);
  const float *qkv = a.in(0), *kv = a.in(1);
  if (c.step >= 0) {
    kernels::attention_segments_forward(s, ctx, lse, qkv, ldq, kv, kv + c.hk, ldkv, c.b, c.tq,
                                        c.tq, c.q_segments, c.kv_segments(0), c.c, c.h,
                                        a.flag(strategies::kAccumulate));
    return;
  }
  for (std::int64_t i = 0; i < c.b; ++i) {
    for (int j = 0; j < c.cp; ++j) {
      const float* block = kv + (j * c.b + i) * c.tq * ldkv;
      kernels::attention_segments_forward(s, ctx + i * c.tq * c.c, lse + i * c.h * c.tq,
                                          qkv + i * c.tq * ldq, ldq, block, block + c.hk, ldkv, 1,
                                          c.tq, c.tq, c.q_segments, c.kv_segments(j), c.c, c.h,
                                          j > 0);
    }
  }
}

// in {d(ctx), qkv, keys and values, ctx, lse}; out {d(qkv) (its q columns), the keys' and
// values' gradient}: written, or (kAccumulate) added to. Gathered: every rank's rows of the
// gradient are written (the reduce-scatter that follows sums them), dq summed over the ranks.
void cp_attention_backward(const OpContext& in, const Args& a, const Op& op) {
  const CpAttention c = cp_attention_of(in, a, op);
  const kernels::Stream& s = in.stream();
  const std::int64_t ldq = c.c + 2 * c.hk, ldkv = 2 * c.hk;
  const float *dctx = a.in(0), *qkv = a.in(1), *kv = a.in(2), *ctx = a.in(3), *lse = a.in(4);
  float *dqkv = a.out(0), *dkv = a.out(1);
  if (c.step >= 0) {
    const bool acc = a.flag(strategies::kAccumulate);
    kernels::attention_segments_backward(s, dqkv, ldq, dkv, dkv + c.hk, ldkv, dctx, qkv, ldq, kv,
                                         kv + c.hk, ldkv, ctx, lse, c.b, c.tq, c.tq, c.q_segments,
                                         c.kv_segments(0), c.c, c.h, acc, acc);
    return;
  }
  for (std::int64_t i = 0; i < c.b; ++i) {
    for (int j = 0; j < c.cp; ++j) {
      const std::int64_t at = (j * c.b + i) * c.tq * ldkv;
      kernels::attention_segments_backward(
          s, dqkv + i * c.tq * ldq, ldq, dkv + at, dkv + at + c.hk, ldkv, dctx + i * c.tq * c.c,
          qkv + i * c.tq * ldq, ldq, kv + at, kv + at + c.hk, ldkv, ctx + i * c.tq * c.c,
          lse + i * c.h * c.tq, 1, c.tq, c.tq, c.q_segments, c.kv_segments(j), c.c, c.h, j > 0,
          false);
    }
  }
}

void run_kernels(const OpContext& in, const Op& op) {
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
      // dims[4] = cp > 1: the rows are the rank's chunks (their positions from cp_rows).
      const std::int64_t n = a.dim(0), c = a.dim(1), vs = a.dim(2), t = a.dim(3);
      const int idx = a.index();
      kernels::embedding_shard_forward(s, a.out(0), a.input(0).i32(), a.in(1), idx * vs, vs, n, c);
      if (a.has_in(2)) {
        const int parts = static_cast<int>(in.plan().group_ranks(in.rank(), op.group).size());
        const CpRows cp = cp_rows(in, a.dim(4), t);
        const auto add = [&](float* x, std::int64_t first, std::int64_t rows) {
          cp.runs(first, rows, [&](std::int64_t at, std::int64_t k, std::int64_t pos) {
            kernels::add_positions(s, x + at * c, a.in(2), pos, k, t, c);
          });
        };
        if (a.flag(kOwnRows)) {
          const std::int64_t rows = n / parts;
          add(a.out(0) + idx * rows * c, idx * rows, rows);
        } else if (idx == 0) {
          add(a.out(0), 0, n);
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
        const CpRows cp = cp_rows(in, a.dim(4), t);
        cp.runs(a.flag(kOwnRows) ? idx * r : 0, r,
                      [&](std::int64_t at, std::int64_t k, std::int64_t pos) {
                        kernels::positions_backward(s, a.out(1), rows.f32() + at * c, pos, k, t, c);
                      });
      }
      return;
    }
    case OpKind::kLayerNorm:
      if (a.bf16()) {
        kernels::layer_norm_forward(s, a.bout(0), a.out(1), a.out(2), a.bin(0), a.bin(1),
                                    a.bin(2), a.dim(0), a.dim(1), op.param);
        return;
      }
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
      if (a.bf16()) {
        kernels::linear_forward(s, a.bout(0), a.bin(0), a.bin(1),
                                a.has_in(2) ? a.bin(2) : nullptr, a.dim(0), a.dim(1), a.dim(2));
        return;
      }
      kernels::linear_forward(s, a.out(0), a.in(0), a.in(1), a.has_in(2) ? a.in(2) : nullptr,
                              a.dim(0), a.dim(1), a.dim(2));
      return;
    case OpKind::kLinearBwdData:
      if (a.bf16()) {
        kernels::linear_backward_data(s, a.bout(0), a.bin(0), a.bin(1), a.dim(0), a.dim(1),
                                      a.dim(2));
        return;
      }
      kernels::linear_backward_data(s, a.out(0), a.in(0), a.in(1), a.dim(0), a.dim(1), a.dim(2));
      return;
    case OpKind::kLinearBwdWeight:
      if (a.bf16()) {
        kernels::linear_backward_weight(s, a.bout(0), a.has_out(1) ? a.bout(1) : nullptr,
                                        a.bin(0), a.bin(1), a.dim(0), a.dim(1), a.dim(2),
                                        a.accumulate());
        return;
      }
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
    case OpKind::kKvPack:  // dims {N, C, h_kv}: k and v out of qkv (N, C + 2 h_kv)
      kernels::copy_columns(s, a.out(0), 2 * a.dim(2), a.in(0) + a.dim(1), a.dim(1) + 2 * a.dim(2),
                            a.dim(0), 2 * a.dim(2));
      return;
    case OpKind::kKvUnpack:  // dims {N, C, h_kv}: d(k, v) into d(qkv)'s k and v columns
      kernels::copy_columns(s, a.out(0) + a.dim(1), a.dim(1) + 2 * a.dim(2), a.in(0), 2 * a.dim(2),
                            a.dim(0), 2 * a.dim(2));
      return;
    case OpKind::kCpAttention:
      cp_attention(in, a, op);
      return;
    case OpKind::kCpAttentionBwd:
      cp_attention_backward(in, a, op);
      return;
    case OpKind::kGelu:
      if (a.bf16()) {
        kernels::gelu_forward(s, a.bout(0), a.bin(0), a.dim(0) * a.dim(1));
        return;
      }
      kernels::gelu_forward(s, a.out(0), a.in(0), a.dim(0) * a.dim(1));
      return;
    case OpKind::kGeluBwd:
      if (a.bf16()) {
        kernels::gelu_backward(s, a.bout(0), a.bin(0), a.bin(1), a.dim(0) * a.dim(1));
        return;
      }
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
      // The micro-batch's mean loss, counted once per tensor-parallel group: host arithmetic on
      // the fp64 loss buffer. On a device the loss sum comes through a device scalar and the
      // loss buffer is read, added to and written back.
      if (a.index() == 0) {
        float sum = 0;
        void* loss = a.output(1).data;
        if (s.backend() == kernels::Backend::kCpu) {
          kernels::cross_entropy_from_stats(s, nullptr, &sum, a.in(1), n);
          *static_cast<double*>(loss) += static_cast<double>(sum) / static_cast<double>(n);
        } else {
          kernels::Buffer own;
          float* scalar = in.device_scalar();
          if (scalar == nullptr) {
            own = kernels::Buffer(s, sizeof(float));
            scalar = own.as<float>();
          }
          kernels::cross_entropy_from_stats(s, nullptr, scalar, a.in(1), n);
          kernels::copy_to_host(s, &sum, scalar, sizeof sum);
          double total = 0;
          kernels::copy_to_host(s, &total, loss, sizeof total).synchronize();
          total += static_cast<double>(sum) / static_cast<double>(n);
          kernels::copy_from_host(s, loss, &total, sizeof total).synchronize();
        }
      }
      return;
    }
    case OpKind::kMoeRoute: {  // dims {R, E, k, normalize}; out {probs, indices, weights}
      kernels::moe_router_forward(s, a.out(0), a.output(1).i32(), a.out(2), a.in(0), a.dim(0),
                                  a.dim(1), a.dim(2), a.dim(3) != 0);
      // param = the auxiliary loss's coefficient: coef L_aux of the rank's rows added to the
      // rank's sum, once per layer and micro-batch (not again in a recompute, whose outputs are
      // instance 1). moe_aux_loss_scale() weighs the sum into the step's loss.
      const bool first = in.program().buffers[in.program().output(op, 0)].instance == 0;
      if (op.param != 0 && first && in.aux_loss() != nullptr) {
        kernels::moe_aux_loss_forward(s, in.aux_loss(), a.out(0), a.output(1).i32(), a.dim(0),
                                      a.dim(1), a.dim(2), op.param, 1.0f);
      }
      return;
    }
    case OpKind::kMoeRouteBwd:  // in {d(weights), probs, indices}; out {d(logits)}
      kernels::moe_router_backward(s, a.out(0), a.in(0), a.in(1), a.input(2).i32(), a.dim(0),
                                   a.dim(1), a.dim(2), a.dim(3) != 0, op.param,
                                   static_cast<float>(moe_aux_loss_scale(in.plan(), in.rank())));
      return;
    case OpKind::kMoePermute: {  // dims {R, C, E, k, S, capacity}; out {rows, row of, counts}
      const std::int64_t capacity = a.dim(5);
      kernels::moe_permute_forward(s, a.out(0), a.output(1).i32(), a.output(2).i32(), a.in(0),
                                   a.input(1).i32(), capacity > 0 ? a.in(2) : nullptr, a.dim(0),
                                   a.dim(1), a.dim(2), a.dim(3), a.dim(4), capacity);
      return;
    }
    case OpKind::kMoePermuteBwd:  // in {d(rows), row of}; out {dx}
      kernels::moe_permute_backward(s, a.out(0), a.in(0), a.input(1).i32(), a.dim(0), a.dim(1),
                                    a.dim(3), a.dim(4), a.flag(strategies::kAccumulate));
      return;
    case OpKind::kMoeUnpermute:  // dims {R, C, k, S}; in {rows, row of, weights}; out {y}
      // y (the layer's output) is first written here in the Plan (the residual is added next),
      // so the weighted sum is written rather than added to a buffer nobody zeroed.
      kernels::moe_unpermute_forward(s, a.out(0), a.in(0), a.input(1).i32(), a.in(2), a.dim(0),
                                     a.dim(1), a.dim(2), a.dim(3), false);
      return;
    case OpKind::kMoeUnpermuteBwd:  // in {dy, rows, row of, weights}; out {d(rows), d(weights)}
      kernels::moe_unpermute_backward(s, a.out(0), a.out(1), a.in(0), a.in(1), a.input(2).i32(),
                                      a.in(3), a.dim(0), a.dim(1), a.dim(2), a.dim(3));
      return;
    // dims {M rows, K, N, segments, G}: M the rows of the executor's (bounded) buffers.
    case OpKind::kGroupedLinear:  // in {x, weights, counts}; out {y}
      kernels::grouped_linear_forward(s, a.out(0), a.in(0), a.in(1), a.input(2).i32(), a.dim(3),
                                      a.dim(4), a.dim(1), a.dim(2), a.dim(0));
      return;
    case OpKind::kGroupedLinearBwdData:  // in {dy, weights, counts}; out {dx}
      kernels::grouped_linear_backward_data(s, a.out(0), a.in(0), a.in(1), a.input(2).i32(),
                                            a.dim(3), a.dim(4), a.dim(1), a.dim(2), a.dim(0));
      return;
    case OpKind::kGroupedLinearBwdWeight:  // in {dy, x, counts}; out {weight grads}
      kernels::grouped_linear_backward_weight(s, a.out(0), a.in(0), a.in(1), a.input(2).i32(),
                                              a.dim(3), a.dim(4), a.dim(1), a.dim(2), a.dim(0),
                                              a.accumulate());
      return;
    case OpKind::kCopy:  // one row of n columns
      kernels::copy_columns(s, a.out(0), a.dim(0), a.in(0), a.dim(0), 1, a.dim(0));
      return;
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

void run_compute(const OpContext& in, const Op& op) {
  const strategies::Program& p = in.program();
  bool any_bf16 = false;
  for (int i = 0; i < op.n_in + op.n_out; ++i) {
    any_bf16 = any_bf16 || p.buffers[p.operands[op.operands + i]].dtype == strategies::DType::kBf16;
  }
  if (!any_bf16 || native_bf16(in, op)) {
    run_kernels(in, op);
    return;
  }
  Widened wide(in, op);
  run_kernels(wide, op);
  wide.store();
}

}  // namespace strata::exec::detail
