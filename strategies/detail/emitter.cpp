// The Emitter (tasks, deps, stream order, buffers, ops) and the StageContext's sizes.
#include <algorithm>

#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {

Emitter::Emitter(Program& program) : prog_(program) { last_on_stream_.fill(kNoTask); }

BufId Emitter::buffer(const Buffer& b) {
  prog_.buffers.push_back(b);
  return static_cast<BufId>(prog_.buffers.size() - 1);
}

TaskId Emitter::add(Task t, const std::vector<OpSpec>& ops, std::vector<TaskId> deps) {
  // Blocking pipeline transfers (collectives.blocking_p2p): the next compute or tensor-parallel
  // task waits for the sends issued before it.
  if (!blocking_sends_.empty() && (t.stream == Stream::kCompute || t.stream == Stream::kTp)) {
    deps.insert(deps.end(), blocking_sends_.begin(), blocking_sends_.end());
    blocking_sends_.clear();
  }
  const auto id = static_cast<std::uint32_t>(prog_.tasks.size());
  prog_.dep_begin.push_back(static_cast<std::uint32_t>(prog_.deps.size()));
  const auto begin = prog_.deps.size();
  auto push = [&](TaskId d) {
    if (d < 0) return;
    const auto dep = static_cast<std::uint32_t>(d);
    for (auto k = begin; k < prog_.deps.size(); ++k) {
      if (prog_.deps[k] == dep) return;
    }
    prog_.deps.push_back(dep);
  };
  for (auto d : deps) push(d);
  const auto stream = static_cast<int>(t.stream);
  if (t.stream != Stream::kPp) {
    push(last_on_stream_[stream]);
    last_on_stream_[stream] = id;
  }
  t.op_begin = static_cast<std::uint32_t>(prog_.ops.size());
  t.op_count = static_cast<std::uint32_t>(ops.size());
  for (const OpSpec& s : ops) {
    STRATA_CHECK(s.in.size() < 256 && s.out.size() < 256, "too many operands");
    Op op;
    op.kind = s.kind;
    op.dtype = s.dtype;
    op.flags = s.flags;
    op.group = s.group;
    op.n_in = static_cast<std::uint8_t>(s.in.size());
    op.n_out = static_cast<std::uint8_t>(s.out.size());
    op.operands = static_cast<std::uint32_t>(prog_.operands.size());
    op.dims = s.dims;
    op.param = s.param;
    for (BufId b : s.in) {
      STRATA_CHECK(b >= 0, std::string("an input of op ") + op_kind_name(s.kind) + " has no buffer");
      prog_.operands.push_back(b);
    }
    for (BufId b : s.out) {
      STRATA_CHECK(b >= 0, std::string("an output of op ") + op_kind_name(s.kind) + " has no buffer");
      prog_.operands.push_back(b);
    }
    prog_.ops.push_back(op);
  }
  prog_.tasks.push_back(t);
  return id;
}

StageContext::StageContext(const Plan& p, int st, Program& program)
    : plan(p), m(p.model), s(p.strategy), stage(st), emit(program) {
  pp = s.pp;
  v = s.virtual_stages;
  act = s.precision == Precision::kFp32   ? DType::kFp32
        : s.precision == Precision::kFp16 ? DType::kFp16
                                          : DType::kBf16;
  grad = grad_bytes(s.precision, s.main_grads_fp32) == 4 ? DType::kFp32 : act;
  fp8_layers.resize(m.num_hidden_layers);
  for (int l = 0; l < m.num_hidden_layers; ++l) {
    fp8_layers[l] = layer_strategy(s, l).fp8 != Fp8Format::kNone;
  }
}

std::int64_t StageContext::samples(int layout) const {
  return static_cast<std::int64_t>(s.micro_batch_size) * s.dp / dp_of(layout);
}

std::int64_t StageContext::rows(int layout) const {
  return sp(layout) ? tokens(layout) / tp_of(layout) : tokens(layout);
}

BufId StageContext::tensor(TensorKind kind, int layer, int mb, std::uint8_t instance, DType dtype,
                           std::initializer_list<std::int64_t> shape, bool grad_of) {
  STRATA_CHECK(shape.size() >= 1 && shape.size() <= 4, "a buffer has 1 to 4 dimensions");
  Buffer b;
  b.kind = kind;
  b.grad = grad_of;
  b.role = Role::kWorkspace;  // activations and their gradients; memory.cpp refines it
  b.dtype = dtype;
  b.ndim = static_cast<std::uint8_t>(shape.size());
  b.instance = instance;
  b.layer = static_cast<std::int16_t>(layer);
  b.micro_batch = mb;
  std::copy(shape.begin(), shape.end(), b.shape.begin());
  return emit.buffer(b);
}

Task StageContext::compute_task(Phase phase, Block block, int layer, int mb, int chunk) const {
  Task t;
  t.kind = TaskKind::kCompute;
  t.stream = Stream::kCompute;
  t.phase = phase;
  t.block = block;
  t.layer = static_cast<std::int16_t>(layer);
  t.micro_batch = mb;
  t.chunk = static_cast<std::int16_t>(chunk);
  return t;
}

Task StageContext::collective_task(CollectiveKind kind, Purpose purpose, GroupRef group,
                                   Phase phase, int layer, int mb, int chunk) const {
  Task t;
  t.kind = TaskKind::kCollective;
  t.stream = purpose == Purpose::kTp || purpose == Purpose::kReshard ? Stream::kTp
             : purpose == Purpose::kCp                              ? Stream::kCp
             : purpose == Purpose::kEp                              ? Stream::kEp
                                                                    : Stream::kDp;
  t.phase = phase;
  t.collective = kind;
  t.purpose = purpose;
  t.group = group;
  t.layer = static_cast<std::int16_t>(layer);
  t.micro_batch = mb;
  t.chunk = static_cast<std::int16_t>(chunk);
  return t;
}

}  // namespace strata::strategies::detail
