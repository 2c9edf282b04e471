// Collectives and pipeline transfers of a Plan on the Comm, on the buffers each op names. Every
// message's size is checked against the task's bytes: a disagreement is a bug in the Plan or
// here, and stops the run.
#include <algorithm>

#include "common/error.hpp"
#include "executor/detail/ops.hpp"

namespace strata::exec::detail {

using strategies::Op;
using strategies::OpKind;
using strategies::Task;

namespace {

void check_bytes(const Interpreter& in, const Task& t, std::int64_t floats) {
  STRATA_CHECK(std::abs(static_cast<double>(floats) * 4.0 - t.bytes) < 0.5,
               in.plan().task_name(t) + ": the Plan says " + std::to_string(t.bytes) +
                   " bytes, the executor has " + std::to_string(floats * 4));
}

std::vector<int> part_counts(std::int64_t elements, int parts) {
  std::vector<int> counts;
  for (int i = 0; i < parts; ++i) {
    counts.push_back(static_cast<int>(strategies::partition(elements, parts, i).count));
  }
  return counts;
}

void all_reduce(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const ReduceOp reduce =
      (op.flags & strategies::kSoftmaxReduce) != 0 ? ReduceOp::kSoftmaxStats : ReduceOp::kSum;
  if (op.n_in == 1) {
    const TensorView v = in.view(in.program().input(op, 0));
    check_bytes(in, t, v.elements());
    in.comm().all_reduce(g, v.f32(), static_cast<std::size_t>(v.elements()), reduce).wait();
    return;
  }
  // Several buffers (e.g. the replicated parameters' gradients) reduced as one message.
  std::vector<TensorView> views;
  std::int64_t total = 0;
  for (int i = 0; i < op.n_in; ++i) {
    views.push_back(in.view(in.program().input(op, i)));
    total += views.back().elements();
  }
  check_bytes(in, t, total);
  std::vector<float> packed;
  packed.reserve(static_cast<std::size_t>(total));
  for (const TensorView& v : views) packed.insert(packed.end(), v.f32(), v.f32() + v.elements());
  in.arena().stage(static_cast<double>(total) * sizeof(float));
  in.comm().all_reduce(g, packed.data(), packed.size(), reduce).wait();
  auto at = packed.begin();
  for (const TensorView& v : views) {
    std::copy(at, at + v.elements(), v.f32());
    at += v.elements();
  }
  in.arena().unstage(static_cast<double>(total) * sizeof(float));
}

void all_gather(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const TensorView src = in.view(in.program().input(op, 0));
  const TensorView dst = in.view(in.program().output(op, 0));
  check_bytes(in, t, dst.elements());
  if ((op.flags & strategies::kPartitioned) == 0) {
    in.comm().all_gather(g, src.f32(), dst.f32(), static_cast<std::size_t>(src.elements())).wait();
    return;
  }
  // ZeRO: every member's part of the bucket, from a shard or from its place in the bucket.
  const std::int64_t elements = op.dims[0];
  const int parts = in.comm().group_size(g);
  const strategies::Part part = strategies::partition(elements, parts, in.comm().group_rank(g));
  const float* mine = src.f32() + (src.elements() == elements ? part.offset : 0);
  std::vector<float> send(mine, mine + part.count);
  in.arena().stage(static_cast<double>(part.count) * sizeof(float));
  in.comm().all_gather_v(g, send.data(), dst.f32(), part_counts(elements, parts)).wait();
  in.arena().unstage(static_cast<double>(part.count) * sizeof(float));
}

void reduce_scatter(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const TensorView src = in.view(in.program().input(op, 0));
  const TensorView dst = in.view(in.program().output(op, 0));
  check_bytes(in, t, src.elements());
  const int parts = in.comm().group_size(g);
  if ((op.flags & strategies::kPartitioned) == 0) {  // sequence parallelism: equal row blocks
    in.comm().reduce_scatter(g, src.f32(), dst.f32(),
                             std::vector<int>(parts, static_cast<int>(dst.elements()))).wait();
    return;
  }
  // ZeRO: this member's part of the sum, into its place in the same bucket (ZeRO-1, in place as
  // Megatron's) or added into its shard (ZeRO-2/3, once per micro-batch).
  const std::int64_t elements = op.dims[0];
  const strategies::Part part = strategies::partition(elements, parts, in.comm().group_rank(g));
  std::vector<float> sum(static_cast<std::size_t>(part.count));
  in.arena().stage(static_cast<double>(part.count) * sizeof(float));
  in.comm().reduce_scatter(g, src.f32(), sum.data(), part_counts(elements, parts)).wait();
  float* into = dst.f32() + (dst.elements() == elements ? part.offset : 0);
  if ((op.flags & strategies::kAccumulate) != 0) {
    for (std::int64_t i = 0; i < part.count; ++i) into[i] += sum[i];
  } else {
    std::copy(sum.begin(), sum.end(), into);
  }
  in.arena().unstage(static_cast<double>(part.count) * sizeof(float));
}

}  // namespace

void run_comm(Interpreter& in, const Task& t, const Op& op) {
  switch (op.kind) {
    case OpKind::kAllReduce:
      all_reduce(in, t, op);
      return;
    case OpKind::kAllGather:
      all_gather(in, t, op);
      return;
    case OpKind::kReduceScatter:
      reduce_scatter(in, t, op);
      return;
    case OpKind::kSend: {
      // Non-blocking: the data is copied so the Plan's buffer can be freed as planned; the send
      // completes by the end of the step (local-cpu: comm_overlaps_compute false).
      const TensorView v = in.view(in.program().input(op, 0));
      check_bytes(in, t, v.elements());
      std::vector<float> copy(v.f32(), v.f32() + v.elements());
      Request r = in.comm().send(in.plan().peer_rank(in.rank(), t), static_cast<int>(t.tag),
                                 copy.data(), copy.size());
      in.keep_send(std::move(r), std::move(copy));
      return;
    }
    case OpKind::kRecv: {
      const TensorView v = in.view(in.program().output(op, 0));
      check_bytes(in, t, v.elements());
      in.comm().recv(in.plan().peer_rank(in.rank(), t), static_cast<int>(t.tag), v.f32(),
                     static_cast<std::size_t>(v.elements())).wait();
      return;
    }
    case OpKind::kRingShift: {
      // Context parallelism: send the buffer to the next member of the group (in group order)
      // and receive the previous member's, matched by the task's tag (the same on every member).
      const std::vector<int> ranks = in.plan().group_ranks(in.rank(), t.group);
      const int n = static_cast<int>(ranks.size()), i = in.group_index(t.group);
      const TensorView src = in.view(in.program().input(op, 0));
      const TensorView dst = in.view(in.program().output(op, 0));
      check_bytes(in, t, src.elements());
      STRATA_CHECK(src.elements() == dst.elements(), "a ring shift moves equal buffers");
      STRATA_CHECK(static_cast<int>(t.tag) < in.comm().max_tag(),
                   in.plan().task_name(t) + ": tag " + std::to_string(t.tag) +
                       " is beyond the communicator's largest tag " +
                       std::to_string(in.comm().max_tag()));
      // Both complete before the task ends, so the send reads the Plan's buffer in place.
      Request r = in.comm().send(ranks[(i + 1) % n], static_cast<int>(t.tag), src.f32(),
                                 static_cast<std::size_t>(src.elements()));
      in.comm().recv(ranks[(i + n - 1) % n], static_cast<int>(t.tag), dst.f32(),
                     static_cast<std::size_t>(dst.elements())).wait();
      r.wait();
      return;
    }
    default:
      break;
  }
  STRATA_CHECK(false, std::string("op ") + strategies::op_kind_name(op.kind) +
                          " is not a communication op");
}

}  // namespace strata::exec::detail
