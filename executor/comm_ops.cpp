// Collectives and pipeline transfers of a Plan on the Comm, on the buffers each op names. Every
// message's size is checked against the task's bytes: a disagreement is a bug in the Plan or
// here, and stops the run. Tensors on a device with a host Comm (CUDA with MPI or the local
// backend) go through host copies, counted as staging; a device Comm (NCCL) takes them as
// they are.
#include <algorithm>

#include "common/error.hpp"
#include "executor/detail/ops.hpp"
#include "kernels/dtype.hpp"
#include "kernels/elementwise_ops.hpp"

namespace strata::exec::detail {

using strategies::Op;
using strategies::OpKind;
using strategies::Task;

namespace {

// The Plan's message size against the operands': `elements` of `dtype`.
void check_bytes(const Interpreter& in, const Task& t, std::int64_t elements,
                 strategies::DType dtype) {
  const double bytes = static_cast<double>(elements) * strategies::dtype_bytes(dtype);
  STRATA_CHECK(std::abs(bytes - t.bytes) < 0.5,
               in.plan().task_name(t) + ": the Plan says " + std::to_string(t.bytes) +
                   " bytes, the executor has " + std::to_string(bytes));
}

std::vector<int> part_counts(std::int64_t elements, int parts) {
  std::vector<int> counts;
  for (int i = 0; i < parts; ++i) {
    counts.push_back(static_cast<int>(strategies::partition(elements, parts, i).count));
  }
  return counts;
}

// Whether the Comm reads the memory the rank's tensors live in: host tensors with the local and
// MPI backends, device tensors with NCCL. Otherwise (device tensors, a host Comm) every operand
// goes through a host copy.
bool comm_reads_tensors(Interpreter& in) {
  return (in.stream().backend() == kernels::Backend::kCuda) == in.comm().device_buffers();
}

// Whether the Comm is a device communicator taking the tensors as they are (NCCL on CUDA).
bool device_comm(Interpreter& in) { return comm_reads_tensors(in) && in.comm().device_buffers(); }

// The Comm's view of `n` elements of a tensor at `data`: the tensor itself where the Comm reads
// its memory and its elements are fp32, else a host fp32 copy (staging, counted apart from the
// Plan's tensors), loaded from the tensor when `load` (after the stream's work that writes it)
// and written back by store(). bf16 tensors travel widened to fp32 (the communicators move
// fp32) and are rounded back on arrival: the sums of a reduction are fp32 sums.
class Staged {
 public:
  // `copy`: always through a host copy (a send buffer that overlaps the receive buffer).
  Staged(Interpreter& in, void* data, strategies::DType dtype, std::int64_t n, bool load,
         bool copy = false)
      : in_(in),
        data_(data),
        n_(n),
        half_(dtype == strategies::DType::kBf16),
        staged_(copy || half_ || !comm_reads_tensors(in)) {
    STRATA_CHECK(dtype == strategies::DType::kFp32 || half_,
                 std::string("collectives move fp32 and bf16 tensors, not ") +
                     strategies::dtype_name(dtype));
    if (!staged_) return;
    copy_.resize(static_cast<std::size_t>(n));
    in_.arena().stage(static_cast<double>(n) * sizeof(float));
    if (!load) return;
    if (half_) {
      std::vector<kernels::bf16> raw(copy_.size());
      kernels::copy_to_host(in_.stream(), raw.data(), data_, raw.size() * sizeof(kernels::bf16))
          .synchronize();
      for (std::size_t i = 0; i < raw.size(); ++i) copy_[i] = kernels::to_float(raw[i]);
    } else {
      kernels::copy_to_host(in_.stream(), copy_.data(), data_, copy_.size() * sizeof(float))
          .synchronize();
    }
  }
  Staged(Interpreter& in, const TensorView& v, bool load)
      : Staged(in, v.data, v.dtype, v.elements(), load) {}
  ~Staged() {
    if (staged_) in_.arena().unstage(static_cast<double>(n_) * sizeof(float));
  }
  Staged(const Staged&) = delete;
  Staged& operator=(const Staged&) = delete;
  float* get() { return staged_ ? copy_.data() : static_cast<float*>(data_); }
  void store() {
    if (!staged_) return;
    if (half_) {
      std::vector<kernels::bf16> raw(copy_.size());
      kernels::narrow(raw.data(), copy_.data(), n_);
      kernels::copy_from_host(in_.stream(), data_, raw.data(), raw.size() * sizeof(kernels::bf16))
          .synchronize();
    } else {
      kernels::copy_from_host(in_.stream(), data_, copy_.data(), copy_.size() * sizeof(float))
          .synchronize();
    }
  }

 private:
  Interpreter& in_;
  void* data_;
  std::int64_t n_;
  bool half_, staged_;
  std::vector<float> copy_;
};

// The element at `offset` of a view, as an address.
void* at(const TensorView& v, std::int64_t offset) {
  return static_cast<char*>(v.data) + offset * strategies::dtype_bytes(v.dtype);
}

void all_reduce(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const ReduceOp reduce =
      (op.flags & strategies::kSoftmaxReduce) != 0 ? ReduceOp::kSoftmaxStats : ReduceOp::kSum;
  std::vector<TensorView> views;
  std::int64_t total = 0;
  for (int i = 0; i < op.n_in; ++i) {
    views.push_back(in.view(in.program().input(op, i)));
    total += views.back().elements();
  }
  check_bytes(in, t, total, views[0].dtype);
  if (op.n_in == 1) {
    Staged buf(in, views[0], true);
    in.comm().all_reduce(g, buf.get(), static_cast<std::size_t>(total), reduce).wait();
    buf.store();
    return;
  }
  // Several buffers (e.g. the replicated parameters' gradients) reduced as one message: packed
  // into a host message, or on a device Comm reduced one by one (element-wise sums either way).
  if (device_comm(in) && views[0].dtype == strategies::DType::kFp32) {
    std::vector<Request> pending;
    for (const TensorView& v : views) {
      pending.push_back(
          in.comm().all_reduce(g, v.f32(), static_cast<std::size_t>(v.elements()), reduce));
    }
    for (Request& r : pending) r.wait();
    return;
  }
  std::vector<float> packed(static_cast<std::size_t>(total));
  in.arena().stage(static_cast<double>(total) * sizeof(float));
  std::int64_t offset = 0;
  for (const TensorView& v : views) {
    Staged part(in, v, true);
    std::copy(part.get(), part.get() + v.elements(), packed.begin() + offset);
    offset += v.elements();
  }
  in.comm().all_reduce(g, packed.data(), packed.size(), reduce).wait();
  offset = 0;
  for (const TensorView& v : views) {
    Staged part(in, v, false);
    std::copy(packed.begin() + offset, packed.begin() + offset + v.elements(), part.get());
    part.store();
    offset += v.elements();
  }
  in.arena().unstage(static_cast<double>(total) * sizeof(float));
}

void all_gather(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const TensorView src = in.view(in.program().input(op, 0));
  const TensorView dst = in.view(in.program().output(op, 0));
  check_bytes(in, t, dst.elements(), dst.dtype);
  Staged out(in, dst, false);
  if ((op.flags & strategies::kPartitioned) == 0) {
    Staged send(in, src, true);
    in.comm().all_gather(g, send.get(), out.get(), static_cast<std::size_t>(src.elements())).wait();
    out.store();
    return;
  }
  // ZeRO: every member's part of the bucket, from a shard or from its place in the bucket.
  const std::int64_t elements = op.dims[0];
  const int parts = in.comm().group_size(g);
  const strategies::Part part = strategies::partition(elements, parts, in.comm().group_rank(g));
  // The part may lie inside the output (ZeRO-1's bucket): sent from a copy on a host
  // communicator (MPI's buffers must not overlap); NCCL takes it in place (the root's part of
  // each broadcast is where it lands).
  Staged send(in, at(src, src.elements() == elements ? part.offset : 0), src.dtype, part.count,
              true, !in.comm().device_buffers());
  in.comm().all_gather_v(g, send.get(), out.get(), part_counts(elements, parts)).wait();
  out.store();
}

void reduce_scatter(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const TensorView src = in.view(in.program().input(op, 0));
  const TensorView dst = in.view(in.program().output(op, 0));
  check_bytes(in, t, src.elements(), src.dtype);
  const int parts = in.comm().group_size(g);
  Staged send(in, src, true);
  if ((op.flags & strategies::kPartitioned) == 0) {  // sequence parallelism: equal row blocks
    Staged out(in, dst, false);
    in.comm().reduce_scatter(g, send.get(), out.get(),
                             std::vector<int>(parts, static_cast<int>(dst.elements()))).wait();
    out.store();
    return;
  }
  // ZeRO: this member's part of the sum, into its place in the same bucket (ZeRO-1, in place as
  // Megatron's) or added into its shard (ZeRO-2/3, once per micro-batch).
  const std::int64_t elements = op.dims[0];
  const strategies::Part part = strategies::partition(elements, parts, in.comm().group_rank(g));
  void* into = at(dst, dst.elements() == elements ? part.offset : 0);
  const bool accumulate = (op.flags & strategies::kAccumulate) != 0;
  if (device_comm(in) && dst.dtype == strategies::DType::kFp32) {
    float* into_f = static_cast<float*>(into);
    if (!accumulate) {
      in.comm().reduce_scatter(g, send.get(), into_f, part_counts(elements, parts)).wait();
      return;
    }
    kernels::Buffer sum(in.stream(), static_cast<std::size_t>(std::max<std::int64_t>(1, part.count)) * sizeof(float));
    in.arena().stage(static_cast<double>(part.count) * sizeof(float));
    in.comm().reduce_scatter(g, send.get(), sum.as<float>(), part_counts(elements, parts)).wait();
    kernels::add_inplace(in.stream(), into_f, sum.as<float>(), part.count);
    in.stream().synchronize();
    in.arena().unstage(static_cast<double>(part.count) * sizeof(float));
    return;
  }
  std::vector<float> sum(static_cast<std::size_t>(part.count));
  in.arena().stage(static_cast<double>(part.count) * sizeof(float));
  in.comm().reduce_scatter(g, send.get(), sum.data(), part_counts(elements, parts)).wait();
  Staged out(in, into, dst.dtype, part.count, accumulate);
  float* o = out.get();
  if (accumulate) {
    for (std::int64_t i = 0; i < part.count; ++i) o[i] += sum[i];
  } else {
    std::copy(sum.begin(), sum.end(), o);
  }
  out.store();
  in.arena().unstage(static_cast<double>(part.count) * sizeof(float));
}

// The counts of an int32 tensor, read to the host.
std::vector<std::int32_t> read_counts(Interpreter& in, const TensorView& v) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(v.elements()));
  kernels::copy_to_host(in.stream(), out.data(), v.data, out.size() * sizeof(std::int32_t))
      .synchronize();
  return out;
}

// Mixture of experts: the all-to-all over the expert-parallel group (group order = ep index;
// member j holds experts [j E/ep, (j+1) E/ep)). Rows are ragged, so the rows each pair exchanges
// are counted first:
//  - the forward dispatch (tag 1, in {rows, counts (E)}, out {rows, received counts (ep, E/ep)})
//    sends each member the counts of its experts, receives the counts of the rank's experts
//    from every member (written to the received counts, the grouped GEMMs' segments (source,
//    local expert)), then the rows: block j of the permuted rows (expert-major) to member j,
//    the received rows packed source after source, the rows after them zero;
//  - every other all-to-all of the layer and micro-batch (the combine, tag 2, and the
//    backward's two, without counts) reuses those row counts: tag 1 sends as the dispatch did,
//    tag 2 sends back to each member the rows received from it, in the same order.
// bf16 rows travel widened (Staged), as every collective's.
void moe_all_to_all(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const int members = in.comm().group_size(g);
  Interpreter::MoeRoutes& routes = in.moe_routes(t.layer, t.micro_batch);
  const TensorView src = in.view(in.program().input(op, 0));
  const TensorView dst = in.view(in.program().output(op, 0));
  const std::int64_t c = src.shape[1];
  STRATA_CHECK(dst.shape[1] == c, in.plan().task_name(t) + ": rows of different widths");
  if (op.n_in == 2) {
    const std::vector<std::int32_t> counts = read_counts(in, in.view(in.program().input(op, 1)));
    const TensorView recv_counts = in.view(in.program().output(op, 1));
    const std::int64_t local = recv_counts.shape[1];
    STRATA_CHECK(static_cast<std::int64_t>(counts.size()) == members * local &&
                     recv_counts.shape[0] == members,
                 in.plan().task_name(t) + ": the counts do not match the group");
    std::vector<float> send(counts.begin(), counts.end()), recv(counts.size());
    in.comm().all_to_all(g, send.data(), recv.data(), static_cast<std::size_t>(local)).wait();
    std::vector<std::int32_t> received(recv.size());
    routes.send_rows.assign(static_cast<std::size_t>(members), 0);
    routes.recv_rows.assign(static_cast<std::size_t>(members), 0);
    for (std::size_t i = 0; i < recv.size(); ++i) {
      received[i] = static_cast<std::int32_t>(recv[i]);
      routes.send_rows[i / static_cast<std::size_t>(local)] += counts[i];
      routes.recv_rows[i / static_cast<std::size_t>(local)] += received[i];
    }
    kernels::copy_from_host(in.stream(), recv_counts.data, received.data(),
                            received.size() * sizeof(std::int32_t))
        .synchronize();
  }
  STRATA_CHECK(static_cast<int>(routes.send_rows.size()) == members,
               in.plan().task_name(t) + ": no dispatch of this layer and micro-batch before it");
  const bool dispatch = t.tag == 1;
  const std::vector<int>& send_rows = dispatch ? routes.send_rows : routes.recv_rows;
  const std::vector<int>& recv_rows = dispatch ? routes.recv_rows : routes.send_rows;
  std::vector<int> send_counts, recv_counts;
  std::int64_t sent = 0, received = 0;
  for (int j = 0; j < members; ++j) {
    send_counts.push_back(static_cast<int>(send_rows[j] * c));
    recv_counts.push_back(static_cast<int>(recv_rows[j] * c));
    sent += send_counts.back();
    received += recv_counts.back();
  }
  STRATA_CHECK(sent <= src.elements() && received <= dst.elements(),
               in.plan().task_name(t) + ": the routed rows exceed the buffers (" +
                   std::to_string(sent / c) + " sent, " + std::to_string(received / c) +
                   " received, of " + std::to_string(src.shape[0]) + " and " +
                   std::to_string(dst.shape[0]) + ")");
  Staged send(in, src, true);
  Staged out(in, dst, false);
  in.comm().all_to_all_v(g, send.get(), send_counts, out.get(), recv_counts).wait();
  std::fill(out.get() + received, out.get() + dst.elements(), 0.0f);
  out.store();
}

// Mixture of experts with expert_tp > 1: whether `op` (an all-gather or reduce-scatter over the
// experts' tp group) moves routed rows: the received rows gathered for the experts (forward:
// kMoeReceived, with the counts; backward: d(kMoeReturned)) or the experts' partial sums
// reduce-scattered back (forward: kMoeExpertOut; backward: d(kMoeExpertIn)). Without expert
// parallelism (ep 1: no all-to-all) the permuted rows are the received ones, and the combined
// rows' gradient the returned ones'.
bool moe_tp_exchange(Interpreter& in, const Op& op) {
  using strategies::TensorKind;
  const strategies::Buffer& b = in.program().buffers[in.program().input(op, 0)];
  if (op.kind == OpKind::kAllGather) {
    return b.grad ? b.kind == TensorKind::kMoeReturned || b.kind == TensorKind::kMoeCombined
                  : b.kind == TensorKind::kMoeReceived || b.kind == TensorKind::kMoePermuted;
  }
  return op.kind == OpKind::kReduceScatter &&
         b.kind == (b.grad ? TensorKind::kMoeExpertIn : TensorKind::kMoeExpertOut);
}

// The ragged exchange over the experts' tp group: each tp rank's received rows (a packed block of
// tp_rows[r] rows) gathered in tp order, packed, the rows after them zero; or the sum of the
// gathered blocks' partial sums scattered back, each rank its own block. The forward gather also
// gathers the received counts (ep, E/ep) into (tp, ep, E/ep) (the grouped GEMMs' segments) and
// records each tp rank's rows for the layer's and micro-batch's other exchanges.
void moe_tp_exchange_run(Interpreter& in, const Task& t, const Op& op) {
  const GroupId g = in.group(t.group);
  const int members = in.comm().group_size(g), me = in.comm().group_rank(g);
  Interpreter::MoeRoutes& routes = in.moe_routes(t.layer, t.micro_batch);
  const TensorView src = in.view(in.program().input(op, 0));
  const TensorView dst = in.view(in.program().output(op, 0));
  const std::int64_t c = src.shape[1];
  if (op.kind == OpKind::kAllGather && op.n_in == 2) {
    const std::vector<std::int32_t> counts = read_counts(in, in.view(in.program().input(op, 1)));
    const TensorView all = in.view(in.program().output(op, 1));
    STRATA_CHECK(all.elements() == members * static_cast<std::int64_t>(counts.size()),
                 in.plan().task_name(t) + ": the gathered counts do not match the group");
    std::vector<float> send(counts.begin(), counts.end()), recv(all.elements());
    in.comm().all_gather(g, send.data(), recv.data(), send.size()).wait();
    std::vector<std::int32_t> gathered(recv.size());
    routes.tp_rows.assign(static_cast<std::size_t>(members), 0);
    for (std::size_t i = 0; i < recv.size(); ++i) {
      gathered[i] = static_cast<std::int32_t>(recv[i]);
      routes.tp_rows[i / counts.size()] += gathered[i];
    }
    kernels::copy_from_host(in.stream(), all.data, gathered.data(),
                            gathered.size() * sizeof(std::int32_t))
        .synchronize();
  }
  STRATA_CHECK(static_cast<int>(routes.tp_rows.size()) == members,
               in.plan().task_name(t) + ": no gather of this layer and micro-batch before it");
  std::vector<int> counts;
  std::int64_t total = 0;
  for (int r : routes.tp_rows) {
    counts.push_back(static_cast<int>(r * c));
    total += counts.back();
  }
  const TensorView& whole = op.kind == OpKind::kAllGather ? dst : src;
  STRATA_CHECK(total <= whole.elements() && counts[me] <= (op.kind == OpKind::kAllGather
                                                               ? src.elements()
                                                               : dst.elements()),
               in.plan().task_name(t) + ": the routed rows exceed the buffers");
  Staged send(in, src, true);
  Staged out(in, dst, false);
  if (op.kind == OpKind::kAllGather) {
    in.comm().all_gather_v(g, send.get(), out.get(), counts).wait();
    std::fill(out.get() + total, out.get() + dst.elements(), 0.0f);
  } else {
    in.comm().reduce_scatter(g, send.get(), out.get(), counts).wait();
    std::fill(out.get() + counts[me], out.get() + dst.elements(), 0.0f);
  }
  out.store();
}

}  // namespace

void run_comm(Interpreter& in, const Task& t, const Op& op) {
  // A device communicator enqueues on a stream of its own: the tensors it reads must be
  // complete first. Its operations are complete when their requests are waited for.
  if (device_comm(in)) in.stream().synchronize();
  if (moe_tp_exchange(in, op)) {
    moe_tp_exchange_run(in, t, op);
    return;
  }
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
      // completes by the end of the step (local-cpu: comm_overlaps_compute false). A device
      // Comm sends fp32 from the buffer itself, ordered on the stream before whatever reuses it.
      const TensorView v = in.view(in.program().input(op, 0));
      check_bytes(in, t, v.elements(), v.dtype);
      const int peer = in.plan().peer_rank(in.rank(), t);
      if (device_comm(in) && v.dtype == strategies::DType::kFp32) {
        in.keep_send(in.comm().send(peer, static_cast<int>(t.tag), v.f32(),
                                    static_cast<std::size_t>(v.elements())),
                     {});
        return;
      }
      Staged data(in, v, true);
      std::vector<float> copy(data.get(), data.get() + v.elements());
      Request r = in.comm().send(peer, static_cast<int>(t.tag), copy.data(), copy.size());
      in.keep_send(std::move(r), std::move(copy));
      return;
    }
    case OpKind::kRecv: {
      const TensorView v = in.view(in.program().output(op, 0));
      check_bytes(in, t, v.elements(), v.dtype);
      Staged out(in, v, false);
      in.comm().recv(in.plan().peer_rank(in.rank(), t), static_cast<int>(t.tag), out.get(),
                     static_cast<std::size_t>(v.elements())).wait();
      out.store();
      return;
    }
    case OpKind::kAllToAll:
      moe_all_to_all(in, t, op);
      return;
    case OpKind::kRingShift: {
      // Context parallelism: send the buffer to the next member of the group (in group order)
      // and receive the previous member's, matched by the task's tag (the same on every member).
      const std::vector<int> ranks = in.plan().group_ranks(in.rank(), t.group);
      const int n = static_cast<int>(ranks.size()), i = in.group_index(t.group);
      const TensorView src = in.view(in.program().input(op, 0));
      const TensorView dst = in.view(in.program().output(op, 0));
      check_bytes(in, t, src.elements(), src.dtype);
      STRATA_CHECK(src.elements() == dst.elements(), "a ring shift moves equal buffers");
      STRATA_CHECK(static_cast<int>(t.tag) < in.comm().max_tag(),
                   in.plan().task_name(t) + ": tag " + std::to_string(t.tag) +
                       " is beyond the communicator's largest tag " +
                       std::to_string(in.comm().max_tag()));
      // Both complete before the task ends, so the send reads the Plan's buffer in place.
      Staged send(in, src, true);
      Staged out(in, dst, false);
      Request r = in.comm().send(ranks[(i + 1) % n], static_cast<int>(t.tag), send.get(),
                                 static_cast<std::size_t>(src.elements()));
      in.comm().recv(ranks[(i + n - 1) % n], static_cast<int>(t.tag), out.get(),
                     static_cast<std::size_t>(dst.elements())).wait();
      r.wait();
      out.store();
      return;
    }
    default:
      break;
  }
  STRATA_CHECK(false, std::string("op ") + strategies::op_kind_name(op.kind) +
                          " is not a communication op");
}

}  // namespace strata::exec::detail
