// The executor's training step: every task of the rank's program, in program order.
//
// defines:
//   check_supported()     what the executor refuses before any work
//   Executor::Impl        groups, parameters, per-micro-batch state (Flow), the task loop
//     compute()             one compute task: forward, recompute or backward of a block
//     collective()          tp all-reduce / all-gather, dp gradient buckets, tied embeddings
//     transfer()            pipeline sends and receives
//     optimizer_step()      AdamW over every parameter shard
//
// Tensor-parallel blocks whose output is a partial sum (attn_out, mlp_fc2, the embedding, the
// LM head's softmax statistics, and the input gradients of attn_qkv, mlp_fc1 and lm_head) leave
// it "pending" on their micro-batch; the Plan's next tp collective of that micro-batch reduces it
// and runs the block's epilogue (bias and residual add, positions, loss). With tp = 1 the Plan
// has no such collective and the epilogue runs at once.
#include "executor/executor.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "common/error.hpp"
#include "executor/detail/vocab_parallel.hpp"
#include "kernels/ops.hpp"
#include "strategies/accounting.hpp"

namespace strata::exec {

using strategies::Block;
using strategies::CollectiveKind;
using strategies::Dim;
using strategies::GroupKind;
using strategies::GroupRef;
using strategies::Phase;
using strategies::Plan;
using strategies::Purpose;
using strategies::Recompute;
using strategies::Task;
using strategies::TaskKind;

void check_supported(const Plan& plan) {
  const auto& m = plan.model;
  const auto& s = plan.strategy;
  auto refuse = [](const std::string& field, const std::string& value, const std::string& rule) {
    throw ConfigError(field + " = " + value + ": " + rule);
  };
  if (m.family != strategies::ModelFamily::kGpt || m.norm != strategies::NormKind::kLayerNorm ||
      m.hidden_act != strategies::Activation::kGelu || !m.learned_position_embeddings ||
      !m.bias) {
    refuse("model.family", m.family == strategies::ModelFamily::kGpt ? "\"gpt\"" : "\"llama\"",
           "the executor runs GPT models (LayerNorm, GELU, learned positions, biases) so far");
  }
  if (m.num_key_value_heads != m.num_attention_heads) {
    refuse("model.num_key_value_heads", std::to_string(m.num_key_value_heads),
           "the executor runs multi-head attention only (num_key_value_heads = "
           "num_attention_heads)");
  }
  if (m.dropout) {
    refuse("model.dropout", "true",
           "the executor does not implement dropout yet; set \"dropout\": false");
  }
  if (s.precision != strategies::Precision::kFp32) {
    refuse("strategy.precision", "\"" + std::string(strategies::precision_name(s.precision)) + "\"",
           "the CPU executor computes in fp32; set \"precision\": \"fp32\"");
  }
  if (s.cp != 1) refuse("strategy.cp", std::to_string(s.cp), "the executor runs cp 1 only");
  if (s.ep != 1) refuse("strategy.ep", std::to_string(s.ep), "the executor runs ep 1 only");
  for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
    const int tp = s.layer_overrides[i].tp;
    if (tp != 0 && tp != s.tp) {
      refuse("strategy.layer_overrides[" + std::to_string(i) + "].tp", std::to_string(tp),
             "the executor does not reshard between layers yet; per-layer recompute is fine");
    }
  }
}

namespace {

// Activations one layer keeps for one micro-batch (t = tp, N = tokens, C, F = ffn).
struct LayerActs {
  std::vector<float> x_in;               // (N, C) layer input
  std::vector<float> ln1, mean1, rstd1;  // (N, C), (N), (N)
  std::vector<float> qkv;                // (N, 3C/t)
  std::vector<float> att;                // (B, H/t, T, T) softmax probabilities
  std::vector<float> attn;               // (N, C/t) attention output
  std::vector<float> x_mid;              // (N, C) after the attention residual
  std::vector<float> ln2, mean2, rstd2;
  std::vector<float> pre, act;           // (N, F/t) fc1 output before and after GELU
};

// The LM head's saved tensors for one micro-batch.
struct HeadActs {
  std::vector<float> x, lnf, mean, rstd;  // final norm input and output
  std::vector<float> logits;              // (N, V/t)
  std::vector<float> stats, lse;          // (N, 3), (N)
};

// One micro-batch of one model chunk on this rank, from its first task to its last.
struct Flow {
  std::vector<std::int32_t> tokens, targets;
  std::vector<float> act;       // (N, C) activation travelling forward
  std::vector<float> grad;      // (N, C) gradient travelling backward
  std::vector<float> grad_mid;  // (N, C) gradient of a layer's x_mid
  std::map<int, LayerActs> layers;
  HeadActs head;
  // Scratch of the backward pass.
  std::vector<float> d_act, d_pre, d_ln, d_attn, d_qkv, dx, scratch;
  std::vector<float> partial;   // a tp-partial result waiting for its all-reduce
  // The pending partial sum: which buffer, how to reduce it, what runs after.
  std::vector<float>* pending = nullptr;
  ReduceOp pending_op = ReduceOp::kSum;
  std::function<void()> epilogue;
  std::vector<float> slice;     // pipeline scatter/gather: the received 1/tp of a tensor
  // Sequence parallelism: the residual stream (act, grad, grad_mid, norm inputs) holds this
  // rank's slice of the rows; the next tp all-gather of the micro-batch gathers `gather_src`
  // into `gather_dst` (in place for the norm outputs, into the *_full copies for gradients).
  std::vector<float>* gather_src = nullptr;
  std::vector<float>* gather_dst = nullptr;
  std::vector<float> grad_full, grad_mid_full;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void accumulate(std::vector<float>& into, const std::vector<float>& add) {
  STRATA_CHECK(into.size() == add.size(), "gradient size mismatch");
  for (std::size_t i = 0; i < into.size(); ++i) into[i] += add[i];
}

}  // namespace

struct Executor::Impl {
  const Plan& plan;
  Comm& comm;
  const Corpus& corpus;
  RunOptions opt;
  kernels::Stream stream = kernels::Stream::cpu();
  int rank = 0, stage = 0, tp = 1, tp_rank = 0, dp = 1, dp_rank = 0;
  bool sp = false;  // sequence parallelism over a tp group of more than one rank
  std::int64_t B = 1, T = 1, N = 1, C = 1, F = 1, H = 1, V = 1;
  const strategies::Program& program;
  RankParams params;
  std::map<std::tuple<int, int, int>, GroupId> groups;  // (kind, layout, layout_from)
  GroupId world = kNoGroup;
  std::vector<bool> completes;  // task i is its block's last backward: gradients are final
  std::map<std::pair<int, int>, Flow> flows;  // (chunk, micro-batch)
  std::deque<Param*> ready;     // final gradients not yet in a dp bucket, in completion order
  std::vector<std::pair<Request, std::vector<float>>> sends;
  // ZeRO: a group of parameters reduced together, partitioned over the dp group; this rank owns
  // `counts[dp index]` floats from `offset` of their concatenation and updates only those.
  struct Segment {
    std::vector<Param*> members;
    std::vector<int> counts;
    std::size_t offset = 0, total = 0;
    std::vector<float> grad;  // this rank's part of the summed gradient
    bool layer = false;       // ZeRO-3: one layer's parameters, gathered before each use
  };
  std::map<std::vector<Param*>, Segment> segments;
  std::vector<Segment*> segment_order;  // by their last reduce-scatter
  std::size_t step_gathers = 0;         // after-step all-gathers issued this step
  std::vector<TaskTiming> timings;
  double loss_sum = 0;          // this rank's micro-batch losses (last stage, tp rank 0)
  int steps = 0;

  Impl(const Plan& p, Comm& c, const Corpus& data, const RunOptions& o)
      : plan(p),
        comm(c),
        corpus(data),
        opt(o),
        rank(c.rank()),
        stage(p.stage_of(c.rank())),
        program(p.program_of(c.rank())),
        params(p, c.rank(), o.seed) {
    const auto& m = plan.model;
    tp = plan.strategy.tp;
    tp_rank = plan.grid().coord(rank, Dim::kTp);
    dp = plan.strategy.dp;
    dp_rank = plan.grid().coord(rank, Dim::kDp);
    sp = plan.strategy.sequence_parallel && tp > 1;
    B = plan.strategy.micro_batch_size;
    T = m.seq_length;
    N = B * T;
    C = m.hidden_size;
    F = m.intermediate_size;
    H = m.num_attention_heads;
    V = m.vocab_size;
    make_groups();
    find_completions();
  }

  // The tag of the trace transfers (gather_last_step), above every Plan tag.
  int trace_tag() const { return comm.max_tag() - 1; }

  std::vector<strategies::TaskSpan> gather_last_step() {
    std::vector<strategies::TaskSpan> out;
    auto pack = [](const std::vector<TaskTiming>& ts) {
      std::vector<float> v;
      for (const TaskTiming& t : ts) {
        v.insert(v.end(), {static_cast<float>(t.task), static_cast<float>(t.start_s),
                           static_cast<float>(t.end_s)});
      }
      return v;
    };
    if (rank != 0) {
      std::vector<float> mine = pack(timings);
      comm.send(0, trace_tag(), mine.data(), mine.size()).wait();
      return out;
    }
    for (int r = 0; r < comm.size(); ++r) {
      std::vector<float> v;
      if (r == 0) {
        v = pack(timings);
      } else {
        v.resize(3 * plan.program_of(r).tasks.size());
        comm.recv(r, trace_tag(), v.data(), v.size()).wait();
      }
      for (std::size_t i = 0; i + 2 < v.size(); i += 3) {
        out.push_back({r, static_cast<std::uint32_t>(v[i]), v[i + 1], v[i + 2]});
      }
    }
    return out;
  }

  // ---- set-up --------------------------------------------------------------------------------
  static std::tuple<int, int, int> key(const GroupRef& g) {
    return {static_cast<int>(g.kind), g.layout, g.layout_from};
  }

  // Every rank walks the same sorted list of the Plan's groups and splits the world once per
  // group (MPI_Comm_split is collective over the world, so the order must agree everywhere).
  void make_groups() {
    std::set<std::tuple<int, int, int>> all;
    for (const auto& prog : plan.programs) {
      for (const Task& t : prog.tasks) {
        if (t.kind == TaskKind::kCollective) all.insert(key(t.group));
      }
    }
    std::set<std::tuple<int, int, int>> mine;
    for (const Task& t : program.tasks) {
      if (t.kind == TaskKind::kCollective) mine.insert(key(t.group));
      if ((t.kind == TaskKind::kSend || t.kind == TaskKind::kRecv) &&
          static_cast<int>(t.tag) >= trace_tag()) {
        throw ConfigError("pipeline tag " + std::to_string(t.tag) + " exceeds the MPI tag bound " +
                          std::to_string(comm.max_tag()) + ": use fewer micro-batches or stages");
      }
    }
    for (const auto& k : all) {
      const GroupRef g{static_cast<GroupKind>(std::get<0>(k)),
                       static_cast<std::uint8_t>(std::get<1>(k)),
                       static_cast<std::uint8_t>(std::get<2>(k))};
      const bool member = mine.count(k) > 0;
      const GroupId id = comm.split(member ? plan.group_ranks(rank, g) : std::vector<int>{});
      if (member) groups[k] = id;
    }
    std::vector<int> everyone;
    for (int r = 0; r < comm.size(); ++r) everyone.push_back(r);
    world = comm.split(everyone);
  }

  // A gradient is reduced when its block's last backward of the step has run; under ZeRO-2/3
  // after every micro-batch's backward (the Plan reduces each one).
  void find_completions() {
    if (plan.strategy.zero_stage >= 2) {
      completes.resize(program.tasks.size());
      for (std::size_t i = 0; i < program.tasks.size(); ++i) {
        const Task& t = program.tasks[i];
        completes[i] = t.kind == TaskKind::kCompute && t.phase == Phase::kBackward;
      }
      return;
    }
    completes.assign(program.tasks.size(), false);
    std::set<std::tuple<int, int, int>> seen;  // (block, layer, chunk)
    for (std::size_t i = program.tasks.size(); i-- > 0;) {
      const Task& t = program.tasks[i];
      if (t.kind != TaskKind::kCompute || t.phase != Phase::kBackward) continue;
      if (seen.insert({static_cast<int>(t.block), t.layer, t.chunk}).second) completes[i] = true;
    }
  }

  GroupId group(const Task& t) const {
    auto it = groups.find(key(t.group));
    STRATA_CHECK(it != groups.end(), "no group for task " + plan.task_name(t));
    return it->second;
  }

  // ---- the step ------------------------------------------------------------------------------
  StepResult step() {
    ++steps;
    loss_sum = 0;
    timings.clear();
    timings.reserve(program.tasks.size());
    comm.barrier();
    const double t0 = now_s();
    for (std::size_t i = 0; i < program.tasks.size(); ++i) {
      const Task& t = program.tasks[i];
      const double start = now_s();
      switch (t.kind) {
        case TaskKind::kCompute:
          if (t.block == Block::kOptimizer) {
            optimizer_step();
          } else {
            compute(t);
            if (completes[i]) {
              for (Param* p : params.params_of(t.block, t.layer)) ready.push_back(p);
            }
          }
          break;
        case TaskKind::kCollective:
          collective(t);
          break;
        case TaskKind::kSend:
        case TaskKind::kRecv:
          transfer(t);
          break;
      }
      timings.push_back({static_cast<std::uint32_t>(i), start - t0, now_s() - t0});
    }
    for (auto& s : sends) s.first.wait();
    sends.clear();
    STRATA_CHECK(flows.empty(), "micro-batch state left after the step");
    ready.clear();  // dp = 1: no bucket consumed them
    if (plan.strategy.zero_stage > 0 && !segments.empty()) {
      std::size_t want = 0;
      for (const Segment* sg : segment_order) want += sg->layer ? 0 : 1;
      STRATA_CHECK(step_gathers == want, "the Plan gathered " + std::to_string(step_gathers) +
                                             " parameter buckets after the step, the executor "
                                             "reduced " + std::to_string(want));
    }
    step_gathers = 0;
    const double seconds = now_s() - t0;

    // Bookkeeping outside the Plan: the step's loss and the slowest rank's time.
    float loss = static_cast<float>(loss_sum);
    comm.all_reduce(world, &loss, 1, ReduceOp::kSum).wait();
    std::vector<float> times(static_cast<std::size_t>(comm.size()));
    const auto mine = static_cast<float>(seconds);
    comm.all_gather(world, &mine, times.data(), 1).wait();
    StepResult r;
    r.step = steps;
    r.loss = loss / (static_cast<double>(plan.num_micro_batches) * dp);
    for (float x : times) r.seconds = std::max(r.seconds, static_cast<double>(x));
    return r;
  }

  Flow& flow(const Task& t) { return flows[{t.chunk, t.micro_batch}]; }

  // The first sample of a micro-batch of this rank's replica (data.hpp).
  std::int64_t first_sample(int mb) const {
    const std::int64_t gb = plan.strategy.global_batch_size;
    return static_cast<std::int64_t>(steps - 1) * gb + dp_rank * (gb / dp) + mb * B;
  }

  // Rows of the residual stream this rank holds: all N, or its 1/tp slice under sequence
  // parallelism (rows first_row() ..).
  std::int64_t rows() const { return sp ? N / tp : N; }
  std::int64_t first_row() const { return sp ? tp_rank * (N / tp) : 0; }
  void will_gather(Flow& f, std::vector<float>* src, std::vector<float>* dst) {
    f.gather_src = src;
    f.gather_dst = dst;
  }
  // A gradient consumed whole by the next block: gathered under sequence parallelism.
  static const std::vector<float>& whole(bool gathered, const std::vector<float>& local,
                                         const std::vector<float>& full) {
    return gathered ? full : local;
  }

  // LayerNorm of the rank's rows of the residual stream (all of them without sequence
  // parallelism), with its weights' gradients accumulated on the way back.
  void norm_forward(std::vector<float>& y, std::vector<float>& mean, std::vector<float>& rstd,
                    const std::vector<float>& x, const Param& w, const Param& b) {
    y.resize(rows() * C);
    mean.resize(rows());
    rstd.resize(rows());
    kernels::layer_norm_forward(stream, y.data(), mean.data(), rstd.data(), x.data(),
                                w.value.data(), b.value.data(), rows(), C,
                                static_cast<float>(plan.model.norm_eps));
  }
  void norm_backward(std::vector<float>& dx, Param& w, Param& b, const std::vector<float>& dy,
                     const std::vector<float>& x, const std::vector<float>& mean,
                     const std::vector<float>& rstd) {
    dx.resize(rows() * C);
    std::vector<float> dw(C), db(C);
    kernels::layer_norm_backward(stream, dx.data(), dw.data(), db.data(), dy.data(), x.data(),
                                 w.value.data(), mean.data(), rstd.data(), rows(), C);
    accumulate(w.grad, dw);
    accumulate(b.grad, db);
  }
  // out = residual + branch + bias over the rank's rows (a block's epilogue after its reduce).
  void residual_add(std::vector<float>& out, const std::vector<float>& residual,
                    const std::vector<float>& branch, const Param& bias) {
    out.resize(rows() * C);
    for (std::int64_t i = 0; i < rows() * C; ++i) {
      out[i] = residual[i] + branch[i] + bias.value[i % C];
    }
  }

  // Runs a pending epilogue at once when there is no tp collective to wait for.
  void pend(Flow& f, std::vector<float>* buf, ReduceOp op, std::function<void()> epilogue) {
    f.pending = buf;
    f.pending_op = op;
    f.epilogue = std::move(epilogue);
    if (tp == 1) finish_pending(f);
  }
  void finish_pending(Flow& f) {
    auto e = std::move(f.epilogue);
    f.pending = nullptr;
    f.epilogue = nullptr;
    if (e) e();
  }

  // ---- compute -------------------------------------------------------------------------------
  void compute(const Task& t) {
    Flow& f = flow(t);
    const bool fwd = t.phase != Phase::kBackward;
    if (t.layer >= 0) {
      LayerParams& p = params.layer(t.layer);
      LayerActs& a = f.layers[t.layer];
      if (fwd) {
        layer_forward(t, f, a, p);
      } else {
        layer_backward(t, f, a, p);
      }
      return;
    }
    switch (t.block) {
      case Block::kEmbedding:
        if (fwd) {
          embedding_forward(t, f);
        } else {
          embedding_backward(f);
          flows.erase({t.chunk, t.micro_batch});  // the micro-batch is done on this rank
        }
        break;
      case Block::kFinalNorm:
        fwd ? final_norm_forward(f) : final_norm_backward(f);
        break;
      case Block::kLmHead:
        fwd ? lm_head_forward(t, f) : lm_head_backward(f);
        break;
      default:
        STRATA_CHECK(false, "unexpected compute task " + plan.task_name(t));
    }
  }

  void embedding_forward(const Task& t, Flow& f) {
    corpus.batch(first_sample(t.micro_batch), static_cast<int>(B), f.tokens, f.targets);
    Param& wte = params.wte();
    const std::int64_t vocab_rows = V / tp;
    f.partial.resize(N * C);
    detail::embedding_shard_forward(f.partial.data(), f.tokens.data(), wte.value.data(),
                                    tp_rank * vocab_rows, vocab_rows, N, C);
    pend(f, &f.partial, ReduceOp::kSum, [this, &f] {
      f.act = std::move(f.partial);
      detail::add_positions(f.act.data(), params.wpe().value.data(), first_row(), rows(), T, C);
    });
  }

  void embedding_backward(Flow& f) {
    const std::int64_t vocab_rows = V / tp;
    detail::embedding_shard_backward(params.wte().grad.data(),
                                     whole(sp, f.grad, f.grad_full).data(), f.tokens.data(),
                                     tp_rank * vocab_rows, vocab_rows, N, C);
    // The positions were added to this rank's rows only.
    detail::positions_backward(params.wpe().grad.data(), f.grad.data(), first_row(), rows(),
                               T, C);
  }

  void final_norm_forward(Flow& f) {
    HeadActs& h = f.head;
    h.x = f.act;
    norm_forward(h.lnf, h.mean, h.rstd, h.x, params.lnf_w(), params.lnf_b());
    will_gather(f, &h.lnf, &h.lnf);
  }

  void final_norm_backward(Flow& f) {
    HeadActs& h = f.head;
    norm_backward(f.grad, params.lnf_w(), params.lnf_b(), f.d_ln, h.x, h.mean, h.rstd);
    will_gather(f, &f.grad, &f.grad_full);
  }

  void lm_head_forward(const Task& t, Flow& f) {
    if (f.targets.empty()) {
      corpus.batch(first_sample(t.micro_batch), static_cast<int>(B), f.tokens, f.targets);
    }
    HeadActs& h = f.head;
    const std::int64_t cols = V / tp;
    h.logits.resize(N * cols);
    kernels::linear_forward(stream, h.logits.data(), h.lnf.data(), params.head().value.data(),
                            nullptr, N, C, cols);
    h.stats.resize(3 * N);
    detail::softmax_stats(h.stats.data(), h.logits.data(), f.targets.data(), tp_rank * cols, cols,
                          N);
    pend(f, &h.stats, ReduceOp::kSoftmaxStats, [this, &f] {
      HeadActs& hh = f.head;
      hh.lse.resize(N);
      const double total = detail::cross_entropy_from_stats(hh.lse.data(), hh.stats.data(), N);
      if (tp_rank == 0) loss_sum += total / static_cast<double>(N);
    });
  }

  void lm_head_backward(Flow& f) {
    HeadActs& h = f.head;
    const std::int64_t cols = V / tp;
    // d(step loss)/d(logits): the step's loss is the mean over micro-batches and replicas of
    // each micro-batch's mean over its N tokens; dp buckets then sum over replicas.
    const float scale =
        1.0f / (static_cast<float>(N) * static_cast<float>(plan.num_micro_batches * dp));
    std::vector<float> dlogits(N * cols);
    detail::cross_entropy_shard_backward(dlogits.data(), h.logits.data(), h.lse.data(),
                                         f.targets.data(), tp_rank * cols, cols, N, scale);
    h.logits.clear();
    Param& w = params.head();
    f.d_ln.resize(N * C);
    std::vector<float> dw(w.size());
    kernels::linear_backward(stream, f.d_ln.data(), dw.data(), nullptr, dlogits.data(),
                             h.lnf.data(), w.value.data(), N, C, cols);
    accumulate(w.grad, dw);
    pend(f, &f.d_ln, ReduceOp::kSum, nullptr);
  }

  // Forward (or recompute) of one block of a layer. A recompute refills the activations the
  // recompute mode dropped; it never touches the flow's forward activation.
  void layer_forward(const Task& t, Flow& f, LayerActs& a, LayerParams& p) {
    const std::int64_t Ct = C / tp, Ft = F / tp, Ht = H / tp;
    const bool recompute = t.phase == Phase::kRecompute;
    switch (t.block) {
      case Block::kAttnNorm:
        if (!recompute) a.x_in = f.act;
        norm_forward(a.ln1, a.mean1, a.rstd1, a.x_in, p.ln1_w, p.ln1_b);
        will_gather(f, &a.ln1, &a.ln1);
        break;
      case Block::kAttnQkv:
        a.qkv.resize(N * 3 * Ct);
        kernels::linear_forward(stream, a.qkv.data(), a.ln1.data(), p.qkv_w.value.data(),
                                p.qkv_b.value.data(), N, C, 3 * Ct);
        break;
      case Block::kAttnCore: {
        a.att.resize(B * Ht * T * T);
        // A selective recompute only needs the probabilities back; the output is kept.
        std::vector<float>& out = recompute && !a.attn.empty() ? f.scratch : a.attn;
        out.resize(N * Ct);
        kernels::attention_forward(stream, out.data(), a.att.data(), a.qkv.data(), B, T, Ct, Ht);
        break;
      }
      case Block::kAttnOut:
        f.partial.resize(N * C);
        kernels::linear_forward(stream, f.partial.data(), a.attn.data(), p.proj_w.value.data(),
                                nullptr, N, Ct, C);
        pend(f, &f.partial, ReduceOp::kSum,
             [this, &f, &a, &p] { residual_add(a.x_mid, a.x_in, f.partial, p.proj_b); });
        break;
      case Block::kMlpNorm:
        norm_forward(a.ln2, a.mean2, a.rstd2, a.x_mid, p.ln2_w, p.ln2_b);
        will_gather(f, &a.ln2, &a.ln2);
        break;
      case Block::kMlpFc1:
        a.pre.resize(N * Ft);
        a.act.resize(N * Ft);
        kernels::linear_forward(stream, a.pre.data(), a.ln2.data(), p.fc1_w.value.data(),
                                p.fc1_b.value.data(), N, C, Ft);
        kernels::gelu_forward(stream, a.act.data(), a.pre.data(), N * Ft);
        break;
      case Block::kMlpFc2: {
        f.partial.resize(N * C);
        kernels::linear_forward(stream, f.partial.data(), a.act.data(), p.fc2_w.value.data(),
                                nullptr, N, Ft, C);
        const Recompute mode = strategies::layer_strategy(plan.strategy, t.layer).recompute;
        pend(f, &f.partial, ReduceOp::kSum, [this, &f, &a, &p, recompute, mode] {
          if (recompute) return;  // the layer's output is already downstream
          residual_add(f.act, a.x_mid, f.partial, p.fc2_b);
          drop(a, mode);
        });
        break;
      }
      default:
        STRATA_CHECK(false, "unexpected layer task " + plan.task_name(t));
    }
  }

  // What the recompute mode does not keep from the forward to the backward is freed, so the
  // Plan's recompute tasks are what brings it back (a missing recompute fails loudly).
  static void drop(LayerActs& a, Recompute mode) {
    if (mode == Recompute::kFull) {
      LayerActs kept;
      kept.x_in = std::move(a.x_in);
      a = std::move(kept);
    } else if (mode == Recompute::kSelective) {
      a.att = {};
    }
  }

  void layer_backward(const Task& t, Flow& f, LayerActs& a, LayerParams& p) {
    const std::int64_t Ct = C / tp, Ft = F / tp, Ht = H / tp;
    auto linear_backward = [&](std::vector<float>& dx, Param& w, Param* b,
                               const std::vector<float>& dy, const std::vector<float>& x,
                               std::int64_t in, std::int64_t out) {
      STRATA_CHECK(x.size() == static_cast<std::size_t>(N * in),
                   "activation missing for " + plan.task_name(t) + " (recompute?)");
      dx.resize(N * in);
      std::vector<float> dw(w.size()), db(b ? b->size() : 0);
      kernels::linear_backward(stream, dx.data(), dw.data(), b ? db.data() : nullptr, dy.data(),
                               x.data(), w.value.data(), N, in, out);
      accumulate(w.grad, dw);
      if (b) accumulate(b->grad, db);
    };
    // A row-parallel bias is added to this rank's rows of the residual stream: its gradient
    // comes from those rows (all of them without sequence parallelism).
    auto row_parallel_bias = [&](Param& b, const std::vector<float>& dy_rows) {
      detail::bias_backward(b.grad.data(), dy_rows.data(), rows(), C);
    };
    switch (t.block) {
      case Block::kMlpFc2:
        linear_backward(f.d_act, p.fc2_w, nullptr, whole(sp, f.grad, f.grad_full), a.act, Ft, C);
        row_parallel_bias(p.fc2_b, f.grad);
        break;
      case Block::kMlpFc1:
        f.d_pre.resize(N * Ft);
        kernels::gelu_backward(stream, f.d_pre.data(), f.d_act.data(), a.pre.data(), N * Ft);
        linear_backward(f.d_ln, p.fc1_w, &p.fc1_b, f.d_pre, a.ln2, C, Ft);
        pend(f, &f.d_ln, ReduceOp::kSum, nullptr);
        break;
      case Block::kMlpNorm:
        norm_backward(f.dx, p.ln2_w, p.ln2_b, f.d_ln, a.x_mid, a.mean2, a.rstd2);
        f.grad_mid.resize(rows() * C);
        for (std::int64_t i = 0; i < rows() * C; ++i) f.grad_mid[i] = f.grad[i] + f.dx[i];
        will_gather(f, &f.grad_mid, &f.grad_mid_full);
        break;
      case Block::kAttnOut:
        linear_backward(f.d_attn, p.proj_w, nullptr, whole(sp, f.grad_mid, f.grad_mid_full), a.attn,
                        Ct, C);
        row_parallel_bias(p.proj_b, f.grad_mid);
        break;
      case Block::kAttnCore:
        STRATA_CHECK(a.att.size() == static_cast<std::size_t>(B * Ht * T * T),
                     "attention probabilities missing for " + plan.task_name(t));
        f.d_qkv.resize(N * 3 * Ct);
        kernels::attention_backward(stream, f.d_qkv.data(), f.d_attn.data(), a.qkv.data(),
                                    a.att.data(), B, T, Ct, Ht);
        break;
      case Block::kAttnQkv:
        linear_backward(f.d_ln, p.qkv_w, &p.qkv_b, f.d_qkv, a.ln1, C, 3 * Ct);
        pend(f, &f.d_ln, ReduceOp::kSum, nullptr);
        break;
      case Block::kAttnNorm:
        norm_backward(f.dx, p.ln1_w, p.ln1_b, f.d_ln, a.x_in, a.mean1, a.rstd1);
        for (std::int64_t i = 0; i < rows() * C; ++i) f.grad[i] = f.grad_mid[i] + f.dx[i];
        will_gather(f, &f.grad, &f.grad_full);
        f.layers.erase(t.layer);
        break;
      default:
        STRATA_CHECK(false, "unexpected layer task " + plan.task_name(t));
    }
  }

  // ---- communication -------------------------------------------------------------------------
  void check_bytes(const Task& t, std::size_t floats) const {
    STRATA_CHECK(std::abs(static_cast<double>(floats) * 4.0 - t.bytes) < 0.5,
                 plan.task_name(t) + ": the Plan says " + std::to_string(t.bytes) +
                     " bytes, the executor has " + std::to_string(floats * 4));
  }

  void collective(const Task& t) {
    switch (t.purpose) {
      case Purpose::kTp:
        if (t.collective == CollectiveKind::kAllReduce && t.phase == Phase::kStep) {
          sequence_parallel_grads(t);
        } else if (t.collective == CollectiveKind::kReduceScatter) {
          // Sequence parallelism's reducing side: this rank keeps the sum of its rows.
          Flow& f = flow(t);
          STRATA_CHECK(f.pending != nullptr, plan.task_name(t) + ": nothing to reduce");
          check_bytes(t, f.pending->size());
          std::vector<float> mine(static_cast<std::size_t>(rows() * C));
          comm.reduce_scatter(group(t), f.pending->data(), mine.data(),
                              std::vector<int>(static_cast<std::size_t>(tp),
                                               static_cast<int>(rows() * C)))
              .wait();
          *f.pending = std::move(mine);
          finish_pending(f);
        } else if (t.collective == CollectiveKind::kAllGather && sp) {
          // Sequence parallelism's gathering side: the rows of every rank, in rank order.
          Flow& f = flow(t);
          STRATA_CHECK(f.gather_src != nullptr, plan.task_name(t) + ": nothing to gather");
          std::vector<float> all(static_cast<std::size_t>(N * C));
          check_bytes(t, all.size());
          comm.all_gather(group(t), f.gather_src->data(), all.data(), f.gather_src->size()).wait();
          *f.gather_dst = std::move(all);
          f.gather_src = f.gather_dst = nullptr;
        } else if (t.collective == CollectiveKind::kAllReduce) {
          Flow& f = flow(t);
          STRATA_CHECK(f.pending != nullptr, plan.task_name(t) + ": nothing to reduce");
          check_bytes(t, f.pending->size());
          comm.all_reduce(group(t), f.pending->data(), f.pending->size(), f.pending_op).wait();
          finish_pending(f);
        } else if (t.collective == CollectiveKind::kAllGather) {
          // Pipeline scatter/gather: reassemble the tensor received in slices.
          Flow& f = flow(t);
          std::vector<float>& full = t.phase == Phase::kBackward ? f.grad : f.act;
          full.resize(N * C);
          check_bytes(t, full.size());
          comm.all_gather(group(t), f.slice.data(), full.data(), f.slice.size()).wait();
        } else {
          STRATA_CHECK(false, plan.task_name(t) + ": not run by the executor");
        }
        break;
      case Purpose::kDp:
        gradient_bucket(t);
        break;
      case Purpose::kZero:
        if (t.collective == CollectiveKind::kReduceScatter) {
          zero_reduce_scatter(t);
        } else if (t.collective == CollectiveKind::kAllGather) {
          zero_gather(t);
        } else {
          STRATA_CHECK(false, plan.task_name(t) + ": not run by the executor");
        }
        break;
      case Purpose::kEmbedding: {
        Param& w = params.has_head() ? params.head() : params.wte();
        check_bytes(t, w.size());
        auto seg = segments.find(std::vector<Param*>{&w});
        if (seg == segments.end()) {
          comm.all_reduce(group(t), w.grad.data(), w.size(), ReduceOp::kSum).wait();
          break;
        }
        // ZeRO: the dp-reduced gradient is this rank's part of the embedding's own segment,
        // which the other stage partitions alike; all-reduced inside a full-size buffer.
        Segment& sg = seg->second;
        std::vector<float> full(w.size(), 0.0f);
        std::copy(sg.grad.begin(), sg.grad.end(),
                  full.begin() + static_cast<std::ptrdiff_t>(sg.offset));
        comm.all_reduce(group(t), full.data(), full.size(), ReduceOp::kSum).wait();
        std::copy_n(full.begin() + static_cast<std::ptrdiff_t>(sg.offset), sg.grad.size(),
                    sg.grad.begin());
        break;
      }
      default:
        STRATA_CHECK(false, plan.task_name(t) + ": not run by the executor");
    }
  }

  // A dp bucket holds the final gradients completed since the previous bucket, as many as the
  // Plan's bytes say (4 bytes each in fp32); they are summed over the replicas.
  // The gradients a bucket task reduces: those completed since the previous bucket, as many as
  // the Plan's bytes say (4 bytes each in fp32).
  std::vector<Param*> take_ready(const Task& t) {
    const auto want = static_cast<std::size_t>(t.bytes / 4.0 + 0.5);
    std::vector<Param*> members;
    std::size_t have = 0;
    while (have < want && !ready.empty()) {
      members.push_back(ready.front());
      have += ready.front()->size();
      ready.pop_front();
    }
    STRATA_CHECK(have == want, plan.task_name(t) + ": the Plan's bucket holds " +
                                   std::to_string(want) + " gradients, " + std::to_string(have) +
                                   " were final when it was issued");
    return members;
  }

  static std::vector<float> concat(const std::vector<Param*>& members,
                                   std::vector<float> Param::*field) {
    std::vector<float> flat;
    for (Param* p : members) flat.insert(flat.end(), (p->*field).begin(), (p->*field).end());
    return flat;
  }
  static void split(const std::vector<float>& flat, const std::vector<Param*>& members,
                    std::vector<float> Param::*field) {
    auto at = flat.begin();
    for (Param* p : members) {
      std::copy(at, at + static_cast<std::ptrdiff_t>(p->size()), (p->*field).begin());
      at += static_cast<std::ptrdiff_t>(p->size());
    }
  }

  // Sequence parallelism, once per step: the replicated parameters' gradients, each a sum over
  // this rank's rows, summed over the tp group (Megatron's all-reduce of the layer-norm grads).
  // Under ZeRO the gradients were already reduce-scattered over dp: the sum lives in this
  // rank's segment parts, so those are what is all-reduced, inside full-size buffers as
  // Megatron's main-grad buffers are (the tp peers hold the same dp partition, so their parts
  // line up; the positions other ranks own are 0 here and ignored after).
  void sequence_parallel_grads(const Task& t) {
    std::vector<Param*> members;
    for (Param* p : params.all()) {
      if (p->shard == Shard::kReplicated) members.push_back(p);
    }
    if (segments.empty()) {
      std::vector<float> flat = concat(members, &Param::grad);
      check_bytes(t, flat.size());
      comm.all_reduce(group(t), flat.data(), flat.size(), ReduceOp::kSum).wait();
      split(flat, members, &Param::grad);
      return;
    }
    std::map<const Param*, std::size_t> at;  // a member's first float in the buffer
    std::size_t total = 0;
    for (Param* p : members) {
      at[p] = total;
      total += p->size();
    }
    check_bytes(t, total);
    std::vector<float> flat(total, 0.0f);
    // Visits every owned part of a replicated parameter: (buffer offset, segment grad offset, n).
    auto owned_parts = [&](auto&& visit) {
      for (Segment* sg : segment_order) {
        std::size_t start = 0;
        const std::size_t own_begin = sg->offset, own_end = sg->offset + sg->grad.size();
        for (Param* p : sg->members) {
          const std::size_t b = std::max(start, own_begin), e = std::min(start + p->size(), own_end);
          if (b < e && p->shard == Shard::kReplicated) visit(at.at(p) + (b - start), b - own_begin, e - b, *sg);
          start += p->size();
        }
      }
    };
    owned_parts([&](std::size_t f, std::size_t g, std::size_t n, Segment& sg) {
      std::copy_n(sg.grad.begin() + static_cast<std::ptrdiff_t>(g), n,
                  flat.begin() + static_cast<std::ptrdiff_t>(f));
    });
    comm.all_reduce(group(t), flat.data(), flat.size(), ReduceOp::kSum).wait();
    owned_parts([&](std::size_t f, std::size_t g, std::size_t n, Segment& sg) {
      std::copy_n(flat.begin() + static_cast<std::ptrdiff_t>(f), n,
                  sg.grad.begin() + static_cast<std::ptrdiff_t>(g));
    });
  }

  // dp buckets without ZeRO: summed over the replicas in place.
  void gradient_bucket(const Task& t) {
    const std::vector<Param*> members = take_ready(t);
    std::vector<float> flat = concat(members, &Param::grad);
    comm.all_reduce(group(t), flat.data(), flat.size(), ReduceOp::kSum).wait();
    split(flat, members, &Param::grad);
  }

  // The segment of `members`, partitioned evenly over the dp group on first use (the first
  // dp_size % n members own one float more).
  Segment& segment(const std::vector<Param*>& members, const Task& t) {
    auto it = segments.find(members);
    if (it != segments.end()) return it->second;
    Segment sg;
    sg.members = members;
    for (Param* p : members) sg.total += p->size();
    const GroupId g = group(t);
    const int n = comm.group_size(g), me = comm.group_rank(g);
    for (int i = 0; i < n; ++i) {
      const std::size_t c = sg.total / n + (static_cast<std::size_t>(i) < sg.total % n ? 1 : 0);
      sg.counts.push_back(static_cast<int>(c));
      if (i < me) sg.offset += c;
    }
    sg.grad.assign(static_cast<std::size_t>(sg.counts[me]), 0.0f);
    sg.layer = plan.strategy.zero_stage == 3 && members.front()->layer >= 0;
    if (sg.layer) {
      STRATA_CHECK(members == params.layer(members.front()->layer).in_backward_order(),
                   plan.task_name(t) + ": a layer's gradients in an unexpected order");
    }
    return segments.emplace(members, std::move(sg)).first->second;
  }

  // ZeRO gradient reduction: this rank keeps the sum of its part, accumulated over the
  // micro-batches the Plan reduces separately (ZeRO-2/3); the local gradients start afresh.
  void zero_reduce_scatter(const Task& t) {
    const std::vector<Param*> members = take_ready(t);
    Segment& sg = segment(members, t);
    const std::vector<float> flat = concat(members, &Param::grad);
    std::vector<float> part(sg.grad.size());
    comm.reduce_scatter(group(t), flat.data(), part.data(), sg.counts).wait();
    accumulate(sg.grad, part);
    for (Param* p : members) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
    segment_order.erase(std::remove(segment_order.begin(), segment_order.end(), &sg),
                        segment_order.end());
    segment_order.push_back(&sg);
  }

  // ZeRO parameter all-gather: every rank's updated part, to everyone. Before a layer's use
  // (ZeRO-3: the layer's parameters) or after the optimizer step (the next segment that is not
  // a layer's, in the order of their last reduction, which is the Plan's order).
  void zero_gather(const Task& t) {
    Segment* sg = nullptr;
    if (t.phase != Phase::kStep) {
      STRATA_CHECK(t.layer >= 0, plan.task_name(t) + ": a parameter gather outside a layer");
      sg = &segment(params.layer(t.layer).in_backward_order(), t);
    } else {
      std::size_t seen = 0;
      for (Segment* c : segment_order) {
        if (c->layer) continue;
        if (seen++ == step_gathers) sg = c;
      }
      STRATA_CHECK(sg != nullptr, plan.task_name(t) + ": no reduced bucket left to gather");
      ++step_gathers;
    }
    check_bytes(t, sg->total);
    std::vector<float> values = concat(sg->members, &Param::value);
    const std::vector<float> mine(values.begin() + static_cast<std::ptrdiff_t>(sg->offset),
                                  values.begin() + static_cast<std::ptrdiff_t>(
                                                       sg->offset + sg->grad.size()));
    comm.all_gather_v(group(t), mine.data(), values.data(), sg->counts).wait();
    split(values, sg->members, &Param::value);
  }

  void transfer(const Task& t) {
    Flow& f = flow(t);
    // Scatter/gather sends 1/tp of a whole activation; with sequence parallelism the rank's
    // slice is already 1/tp.
    const bool scatter = plan.strategy.collectives.pp_scatter_gather && tp > 1 && !sp;
    const int peer = plan.peer_rank(rank, t);
    const auto tag = static_cast<int>(t.tag);
    const auto n = static_cast<std::size_t>(rows() * C) / (scatter ? tp : 1);
    check_bytes(t, n);
    if (t.kind == TaskKind::kSend) {
      const std::vector<float>& data = t.phase == Phase::kBackward ? f.grad : f.act;
      STRATA_CHECK(data.size() == static_cast<std::size_t>(rows() * C),
                   plan.task_name(t) + ": nothing to send");
      const auto first = data.begin() + static_cast<std::ptrdiff_t>(scatter ? tp_rank * n : 0);
      std::vector<float> copy(first, first + static_cast<std::ptrdiff_t>(n));
      Request r = comm.send(peer, tag, copy.data(), n);
      sends.emplace_back(std::move(r), std::move(copy));
      if (t.phase == Phase::kBackward) flows.erase({t.chunk, t.micro_batch});
      return;
    }
    std::vector<float>& into = scatter ? f.slice : (t.phase == Phase::kBackward ? f.grad : f.act);
    into.resize(n);
    comm.recv(peer, tag, into.data(), n).wait();
    if (t.phase == Phase::kBackward) will_gather(f, &f.grad, &f.grad_full);
  }

  void optimizer_step() {
    if (segments.empty()) {  // no ZeRO (or dp = 1): every rank updates all it holds
      for (Param* p : params.all()) {
        kernels::adamw_step(stream, p->value.data(), p->adam_m.data(), p->adam_v.data(),
                            p->grad.data(), static_cast<std::int64_t>(p->size()), steps, opt.adam);
        std::fill(p->grad.begin(), p->grad.end(), 0.0f);
      }
      return;
    }
    // ZeRO: only this rank's part of each segment, with its reduced gradient. (The moments are
    // kept at full size and used only at the owned positions: the arithmetic of ZeRO, not yet
    // its memory saving.)
    std::size_t covered = 0;
    for (Segment* sg : segment_order) {
      std::size_t start = 0;  // of the member in the segment's concatenation
      const std::size_t own_begin = sg->offset, own_end = sg->offset + sg->grad.size();
      for (Param* p : sg->members) {
        const std::size_t b = std::max(start, own_begin), e = std::min(start + p->size(), own_end);
        if (b < e) {
          kernels::adamw_step(stream, p->value.data() + (b - start), p->adam_m.data() + (b - start),
                              p->adam_v.data() + (b - start), sg->grad.data() + (b - own_begin),
                              static_cast<std::int64_t>(e - b), steps, opt.adam);
        }
        start += p->size();
        ++covered;
      }
      std::fill(sg->grad.begin(), sg->grad.end(), 0.0f);
    }
    STRATA_CHECK(covered == params.all().size(),
                 "ZeRO: " + std::to_string(params.all().size() - covered) +
                     " parameters were never reduced");
  }
};

Executor::Executor(const Plan& plan, Comm& comm, const Corpus& corpus, const RunOptions& options) {
  check_supported(plan);
  if (comm.size() != plan.world_size) {
    throw ConfigError("world size = " + std::to_string(comm.size()) + ": the strategy needs " +
                      std::to_string(plan.world_size) + " ranks (dp * tp * pp * cp)");
  }
  if (corpus.seq_length() != plan.model.seq_length) {
    throw ConfigError("corpus sequence length " + std::to_string(corpus.seq_length()) +
                      " != model.seq_length " + std::to_string(plan.model.seq_length));
  }
  impl_ = std::make_unique<Impl>(plan, comm, corpus, options);
}

Executor::~Executor() = default;
StepResult Executor::step() { return impl_->step(); }
int Executor::steps_done() const { return impl_->steps; }
void Executor::set_steps_done(int steps) { impl_->steps = steps; }
RankParams& Executor::params() { return impl_->params; }
const std::vector<TaskTiming>& Executor::last_step_timings() const { return impl_->timings; }
std::vector<strategies::TaskSpan> Executor::gather_last_step() { return impl_->gather_last_step(); }

}  // namespace strata::exec
