// The pipeline pass: one stage's materialised schedule walked unit by unit -- the forward and
// backward of a micro-batch on a model chunk -- with the transfers between virtual stages
// (activations forward, their gradients backward; scattered over tp with pp_scatter_gather),
// calling the model description for the layers and the data-parallel pass for the gradients.
#include <optional>
#include <tuple>

#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {
namespace {

using K = TensorKind;

// The state of one micro-batch on one chunk of this stage between its forward and backward.
struct Flow {
  BufId out = kNoBuf;              // the chunk's output (sent forward or fed to the head)
  std::map<int, Instance> layers;  // layer -> its forward buffers
};

class StageWalk {
 public:
  StageWalk(const Plan& plan, int stage, Program& prog)
      : c_(plan, stage, prog), tp_(c_), dp_(c_), graph_(c_, tp_, dp_) {}

  void run() {
    const StrategySpec& s = c_.s;
    const auto order =
        stage_schedule(s.schedule, c_.pp, c_.stage, c_.plan.num_micro_batches, c_.v,
                       &c_.plan.schedule_costs);
    // The first and last backward units of each chunk: gradient accumulation starts and ends.
    // With split backwards the W units end it: the gradients are final after the last W.
    split_ = splits_backward(s.schedule);
    graph_.set_split_backward(split_);
    const UnitPhase ends = split_ ? UnitPhase::kWeight : UnitPhase::kBackward;
    std::vector<std::size_t> first_backward(c_.v, order.size()), last_backward(c_.v, 0);
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (order[i].phase == ends) last_backward[order[i].chunk] = i;
      if (order[i].phase != UnitPhase::kBackward) continue;
      first_backward[order[i].chunk] = std::min(first_backward[order[i].chunk], i);
    }
    std::vector<int> rounds(c_.v, 0);
    std::vector<std::array<TaskId, 2>> unit_end;  // the last compute and tp task of each unit
    Program& prog = c_.emit.program();
    prog.unit_begin.reserve(order.size() + 1);
    for (std::size_t i = 0; i < order.size(); ++i) {
      const ScheduleUnit& u = order[i];
      prog.unit_begin.push_back(static_cast<std::uint32_t>(prog.tasks.size()));
      const std::size_t post = receive_posted_after(order, i);
      posted_after_ = post < i ? unit_end[post] : std::array<TaskId, 2>{kNoTask, kNoTask};
      if (u.phase == UnitPhase::kForward) {
        // Megatron-LM of 2021's interleaved steady state sends a forward's output in the
        // exchange after the backward that follows it (one exchange per pair).
        defer_send_ = c_.s.collectives.blocking_p2p && s.schedule == Schedule::kInterleaved &&
                      i + 1 < order.size() && order[i + 1].phase == UnitPhase::kBackward;
        forward_unit(u.micro_batch, u.chunk);
      } else if (u.phase == UnitPhase::kWeight) {
        const Producers p = producers_.at({u.chunk, u.micro_batch});
        producers_.erase({u.chunk, u.micro_batch});
        dp_.begin_backward(u.chunk, p.round, u.micro_batch, i == last_backward[u.chunk]);
        weight_unit(u.micro_batch, u.chunk, p, i == last_backward[u.chunk]);
      } else {
        graph_.set_first_round(i == first_backward[u.chunk]);
        rounds_of_unit_ = rounds[u.chunk]++;
        dp_.begin_backward(u.chunk, rounds_of_unit_, u.micro_batch, i == last_backward[u.chunk]);
        backward_unit(u.micro_batch, u.chunk, i == last_backward[u.chunk]);
        if (deferred_.has_value()) {
          const Deferred d = *deferred_;
          deferred_.reset();
          transfer(TaskKind::kSend, UnitPhase::kForward, d.vs + 1, d.vs + 1, d.layer, d.mb,
                   d.chunk, d.after, d.buffer, c_.emit.last_on(Stream::kCompute));
        }
      }
      unit_end.push_back({c_.emit.last_on(Stream::kCompute), c_.emit.last_on(Stream::kTp)});
    }
    prog.unit_begin.push_back(static_cast<std::uint32_t>(prog.tasks.size()));
    dp_.finish_step();
  }

 private:
  // With blocking transfers, the unit after which the receive of unit `i` is posted (i when it
  // is posted at the start, before any unit). Megatron-LM of 2021 (schedules.py) receives a
  // unit's input in the exchange that ends the unit before it, except that the interleaved
  // schedule's steady state exchanges once per forward-backward pair: the receive of the next
  // backward travels with that of the next forward, after the previous backward.
  std::size_t receive_posted_after(const std::vector<ScheduleUnit>& order, std::size_t i) const {
    if (i == 0) return 0;
    if (c_.s.schedule == Schedule::kInterleaved && order[i].phase == UnitPhase::kBackward &&
        order[i - 1].phase == UnitPhase::kForward && i >= 2) {
      return i - 2;
    }
    return i - 1;
  }

  // ---- transfers ------------------------------------------------------------------------------
  std::uint32_t tag(UnitPhase phase, int dest_vs, int mb) const {
    const auto vstages = static_cast<std::uint32_t>(c_.pp * c_.v);
    return (static_cast<std::uint32_t>(phase) * vstages + static_cast<std::uint32_t>(dest_vs)) *
               static_cast<std::uint32_t>(c_.plan.num_micro_batches) +
           static_cast<std::uint32_t>(mb);
  }
  // Megatron's scatter/gather: 1/tp of an activation crosses the stages and is all-gathered
  // over tp after receipt (with sequence parallelism the rank's rows are already 1/tp).
  bool scattered(int boundary_layer) const {
    const int layout = c_.layout_of(boundary_layer);
    return c_.s.collectives.pp_scatter_gather && !c_.s.sequence_parallel && c_.tp_of(layout) > 1;
  }
  TaskId transfer(TaskKind kind, UnitPhase phase, int peer_vs, int dest_vs, int boundary_layer,
                  int mb, int chunk, TaskId after, BufId buffer, TaskId also_after = kNoTask) {
    Task t;
    t.kind = kind;
    t.stream = Stream::kPp;
    t.phase = phase == UnitPhase::kForward ? Phase::kForward : Phase::kBackward;
    t.purpose = Purpose::kPp;
    t.micro_batch = mb;
    t.chunk = static_cast<std::int16_t>(chunk);
    t.layer = static_cast<std::int16_t>(boundary_layer);
    t.peer_stage = c_.stage_of(peer_vs);
    t.tag = tag(phase, dest_vs, mb);
    OpSpec op;
    op.kind = kind == TaskKind::kSend ? OpKind::kSend : OpKind::kRecv;
    op.dtype = c_.act;
    op.dims[0] = c_.emit.elements(buffer);
    (kind == TaskKind::kSend ? op.in : op.out) = {buffer};
    std::vector<TaskId> deps{after, also_after};
    if (kind == TaskKind::kRecv && c_.s.collectives.blocking_p2p) {
      // A blocking exchange posts its receive when the rank reaches the call: after the work
      // of the unit that ends with that call (receive_posted_after), with the sends of the
      // same call (not after them: NCCL's grouped sends and receives progress together). The simulator starts a transfer once both ends are
      // posted, so a sender waits for a receiver that is still computing.
      deps.push_back(posted_after_[0]);
      deps.push_back(posted_after_[1]);
    }
    const TaskId id = c_.emit.add(t, {op}, deps);
    // Megatron-LM of 2021 (p2p_communication.py): batch_isend_irecv, wait on every request,
    // then torch.cuda.synchronize(): nothing runs after a send until it has completed. The
    // receive of the same call is already a data dependency of the work that follows it.
    if (kind == TaskKind::kSend && c_.s.collectives.blocking_p2p) c_.emit.block_on(id);
    return id;
  }
  // The buffer a boundary tensor `whole` travels in: itself, or this rank's 1/tp of it.
  BufId outgoing(BufId whole, int boundary_layer) {
    if (!scattered(boundary_layer)) return whole;
    const Buffer& w = c_.emit.buf(whole);
    const std::int64_t part = w.elements() / c_.tp_of(c_.layout_of(boundary_layer));
    Buffer v = w;  // named "<the tensor>.part" (Program::buffer_name)
    v.ndim = 1;
    v.shape = {part, 0, 0, 0};
    v.view_of = whole;
    v.view_offset = part;
    v.view_group = c_.tp_group(c_.layout_of(boundary_layer));
    return c_.emit.buffer(v);
  }
  // Receives boundary tensor `kind` of `layer` (layout of `boundary_layer`): whole, or 1/tp of
  // it all-gathered over tp.
  TaskId receive(UnitPhase phase, int peer_vs, int dest_vs, int boundary_layer, int layer,
                 K kind, bool grad, int mb, int chunk, BufId* out) {
    const int layout = c_.layout_of(boundary_layer);
    const std::int64_t rows = c_.rows(layout), C = c_.m.hidden_size;
    const Phase p = phase == UnitPhase::kForward ? Phase::kForward : Phase::kBackward;
    if (!scattered(boundary_layer)) {
      *out = c_.tensor(kind, layer, mb, 0, c_.act, {rows, C}, grad);
      return transfer(TaskKind::kRecv, phase, peer_vs, dest_vs, boundary_layer, mb, chunk, kNoTask,
                      *out);
    }
    const BufId slice = c_.tensor(K::kReceived, layer, mb, 0, c_.act,
                                  {rows * C / c_.tp_of(layout)}, grad);
    c_.emit.buf(slice).role = Role::kComm;
    const TaskId x = transfer(TaskKind::kRecv, phase, peer_vs, dest_vs, boundary_layer, mb, chunk,
                              kNoTask, slice);
    *out = c_.tensor(kind, layer, mb, 0, c_.act, {rows, C}, grad);
    OpSpec ag;
    ag.kind = OpKind::kAllGather;
    ag.dtype = c_.act;
    ag.in = {slice};
    ag.out = {*out};
    ag.dims[0] = rows * C;
    return c_.emit.add(c_.collective_task(CollectiveKind::kAllGather, Purpose::kTp,
                                          c_.tp_group(layout), p, boundary_layer, mb, chunk),
                       {ag}, {x});
  }

  // ---- units ----------------------------------------------------------------------------------
  void forward_unit(int mb, int chunk) {
    const int vs = c_.virtual_stage(chunk);
    const int first = c_.first_layer(vs), end = c_.end_layer(vs);
    Flow& f = flows_[{chunk, mb}];
    dp_.begin_unit(true, mb, chunk);
    BufId x_buf = kNoBuf;
    TaskId x;
    if (vs > 0 && c_.stage_of(vs - 1) == c_.stage) {  // ZB-V's turn: from this rank's chunk 0
      std::tie(x, x_buf) = handoff_fwd_.at(mb);
      handoff_fwd_.erase(mb);
    } else if (vs > 0) {
      x = receive(UnitPhase::kForward, vs - 1, vs, first - 1, first, K::kLayerIn, false, mb, chunk,
                  &x_buf);
    } else {
      x = graph_.embedding_forward(mb, chunk, &x_buf);
    }
    for (int l = first; l < end; ++l) {
      Instance unused;
      x = graph_.layer_forward(x, l, mb, chunk, Phase::kForward, f.layers[l], unused, &x_buf);
    }
    if (c_.last_virtual_stage(vs)) {
      x = tp_.reshard(x, c_.layout_of(c_.m.num_hidden_layers - 1), 0, x_buf, -1, mb, chunk,
                      Phase::kForward, &x_buf);
      graph_.head_forward(x, mb, chunk, x_buf);
    } else if (c_.stage_of(vs + 1) == c_.stage) {
      handoff_fwd_[mb] = {x, x_buf};
    } else {
      const BufId out = outgoing(x_buf, end - 1);
      if (defer_send_) {
        deferred_ = Deferred{vs, end - 1, mb, chunk, x, out};
      } else {
        transfer(TaskKind::kSend, UnitPhase::kForward, vs + 1, vs + 1, end - 1, mb, chunk, x, out);
      }
    }
  }

  void backward_unit(int mb, int chunk, bool last_for_chunk) {
    const int vs = c_.virtual_stage(chunk);
    const int first = c_.first_layer(vs), end = c_.end_layer(vs);
    // With split backwards the gradients are reduced by the W unit (weight_unit), which
    // replays these calls with the producers recorded here.
    const bool reduce_now = !split_ && (c_.s.zero_stage >= 2 || last_for_chunk);
    Producers rec;
    rec.round = rounds_of_unit_;
    Flow& f = flows_[{chunk, mb}];
    dp_.begin_unit(false, mb, chunk);
    BufId grad = kNoBuf;
    TaskId x;
    if (c_.last_virtual_stage(vs)) {
      x = graph_.head_backward(mb, chunk, &grad);
      rec.head = x;
      if (reduce_now) output_grads_ready(x, mb, chunk);
      x = tp_.reshard_grad(x, c_.layout_of(c_.m.num_hidden_layers - 1), 0, grad, -1, mb, chunk,
                           &grad);
    } else if (c_.stage_of(vs + 1) == c_.stage) {  // ZB-V's turn: from this rank's chunk 1
      std::tie(x, grad) = handoff_bwd_.at(mb);
      handoff_bwd_.erase(mb);
    } else {
      x = receive(UnitPhase::kBackward, vs + 1, vs, end - 1, end - 1, K::kLayerOut, true, mb,
                  chunk, &grad);
    }
    for (int l = end - 1; l >= first; --l) {
      x = graph_.layer_backward(x, l, mb, chunk, f.layers.at(l), grad, &grad);
      rec.layers[l] = x;
      if (split_) continue;
      if (reduce_now || c_.s.zero_stage == 3) {
        dp_.grad_ready(x, DataParallel::Group::kLayer, l, mb, chunk);
      }
    }
    if (vs > 0 && c_.stage_of(vs - 1) == c_.stage) {
      handoff_bwd_[mb] = {x, grad};
    } else if (vs > 0) {
      transfer(TaskKind::kSend, UnitPhase::kBackward, vs - 1, vs - 1, first - 1, mb, chunk, x,
               outgoing(grad, first - 1));
    } else {
      x = graph_.embedding_backward(x, mb, chunk, grad);
      rec.embedding = x;
      if (reduce_now) input_grads_ready(x, mb, chunk);
    }
    if (reduce_now) dp_.flush(mb, chunk);
    flows_.erase({chunk, mb});
    if (split_) producers_[{chunk, mb}] = std::move(rec);
  }

  // The output parameters' gradients (LM head and final norm) are final at `producer`, the
  // final norm's backward: the data-parallel calls for them (a tied word embedding in a bucket
  // of its own).
  void output_grads_ready(TaskId producer, int mb, int chunk) {
    end_grads_ready(producer, mb, chunk, DataParallel::Group::kOutput,
                    DataParallel::Group::kRestOut, true);
  }
  // The same for the input embedding's gradients, final at the embedding's backward.
  void input_grads_ready(TaskId producer, int mb, int chunk) {
    end_grads_ready(producer, mb, chunk, DataParallel::Group::kInput,
                    DataParallel::Group::kRestIn, c_.m.learned_position_embeddings);
  }
  // An end's calls: its parameters as one group `whole`, or with the tied word embedding in a
  // bucket of its own (shared_embedding_bucket) the word embedding, then the `rest` (if any).
  void end_grads_ready(TaskId producer, int mb, int chunk, DataParallel::Group whole,
                       DataParallel::Group rest, bool has_rest) {
    if (!dp_.shared_embedding_bucket()) {
      dp_.grad_ready(producer, whole, -1, mb, chunk);
      return;
    }
    dp_.flush(mb, chunk);
    dp_.grad_ready(producer, DataParallel::Group::kWord, -1, mb, chunk);
    dp_.flush(mb, chunk);
    if (has_rest) dp_.grad_ready(producer, rest, -1, mb, chunk);
  }

  // What a split backward leaves to its W unit: the tasks after which each parameter group's
  // gradients are final (the head's and the embedding's are not split), and its round.
  struct Producers {
    int round = 0;
    TaskId head = kNoTask, embedding = kNoTask;
    std::map<int, TaskId> layers;
  };

  // The W unit of (mb, chunk): the deferred weight gradients, then the gradient reduction calls
  // of the backward (backward_unit's, in the same order).
  void weight_unit(int mb, int chunk, const Producers& p, bool last_for_chunk) {
    const int vs = c_.virtual_stage(chunk);
    const int first = c_.first_layer(vs), end = c_.end_layer(vs);
    const bool reduce_now = c_.s.zero_stage >= 2 || last_for_chunk;
    const std::map<int, TaskId> w = graph_.emit_weight(mb, chunk);
    if (c_.last_virtual_stage(vs) && reduce_now) output_grads_ready(p.head, mb, chunk);
    for (int l = end - 1; l >= first; --l) {
      const auto it = w.find(l);
      const TaskId x = it != w.end() ? it->second : p.layers.at(l);
      if (reduce_now || c_.s.zero_stage == 3) {
        dp_.grad_ready(x, DataParallel::Group::kLayer, l, mb, chunk);
      }
    }
    if (vs == 0 && reduce_now) input_grads_ready(p.embedding, mb, chunk);
    if (reduce_now) dp_.flush(mb, chunk);
  }

  StageContext c_;
  TensorParallel tp_;
  DataParallel dp_;
  ModelGraph graph_;
  std::map<std::pair<int, int>, Flow> flows_;
  // ZB-V: a micro-batch's boundary tensor between two virtual stages of this rank (its chunk 0's
  // output for its chunk 1, chunk 1's input gradient for chunk 0), with the task that made it.
  std::map<int, std::pair<TaskId, BufId>> handoff_fwd_, handoff_bwd_;
  bool split_ = false;                                  // splits_backward(schedule)
  std::map<std::pair<int, int>, Producers> producers_;  // (chunk, mb) -> for its W unit
  int rounds_of_unit_ = 0;                              // the backward unit's round
  std::array<TaskId, 2> posted_after_{kNoTask, kNoTask};  // deps of a blocking receive
  // A forward's send held for the exchange after the next backward (defer_send_).
  struct Deferred {
    int vs, layer, mb, chunk;
    TaskId after;
    BufId buffer;
  };
  bool defer_send_ = false;
  std::optional<Deferred> deferred_;
};

}  // namespace

Program build_stage(const Plan& plan, int stage) {
  Program prog;
  prog.stage = stage;
  {
    StageWalk walk(plan, stage, prog);
    walk.run();
  }
  prog.dep_begin.push_back(static_cast<std::uint32_t>(prog.deps.size()));
  finish_program(prog);
  return prog;
}

}  // namespace strata::strategies::detail
