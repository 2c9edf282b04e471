// kernels_bench: times every op on the CPU and, when a device is present, on CUDA. Warm-up is
// kept apart from timing; inputs rotate over enough buffer sets to exceed 2x the last-level
// cache; each figure is the median over --reps batches (min and max show the spread). On CUDA a
// batch is enqueued behind a device-side spin (busy_wait) so kernels run back to back. CUDA
// results are checked against the CPU reference on the same inputs while measuring.
// GB/s counts each tensor read or written once: the minimum traffic of the op.
// --attention compares the fused (FlashAttention) and the unfused causal attention on the CPU,
// forward and backward, with the bytes each keeps between the passes and allocates as scratch.
// --attention-cp times context-parallel attention (attention_segments_*) on the CPU, every rank
// in turn: all-gathered keys against the ring's steps, and the one-call attention over the whole
// sequence, with the reassembled results checked against the one call.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/cpu/model_ops_cpu.hpp"
#include "kernels/cpu/ops_cpu.hpp"
#include "kernels/ops.hpp"

namespace {

using strata::kernels::Backend;
using strata::kernels::Buffer;
using strata::kernels::Event;
using strata::kernels::EventTiming;
using strata::kernels::Stream;
namespace k = strata::kernels;

struct Options {
  int reps = 21;
  int warmup = 3;
  std::string backend = "all";             // cpu | cuda | all
  std::int64_t n = std::int64_t{1} << 22;  // GELU elements (4 Mi: 16 MiB per tensor)
  std::int64_t rows = 4096;                // LayerNorm rows: B * T = 4 * 1024
  std::int64_t cols = 768;                 // LayerNorm channels: GPT-2 small
  // Linear layer: M tokens x K inputs -> N outputs (GPT-2 small's fc1 for 1024 tokens).
  std::int64_t gemm_m = 1024, gemm_k = 768, gemm_n = 3072;
  double batch_ms = 0.5;  // target time of one timed batch
  // --attention: (B, H, T, D) shapes of the fused vs unfused comparison (CPU only).
  bool attention = false;
  struct AttentionShape {
    std::int64_t b, h, t, d;
  };
  std::vector<AttentionShape> attention_shapes;
  // --attention-cp: (B, H, T, D, cp) shapes of the context-parallel comparison (CPU only).
  bool attention_cp = false;
  struct AttentionCpShape {
    std::int64_t b, h, t, d;
    int cp;
  };
  std::vector<AttentionCpShape> attention_cp_shapes;
  bool help = false;
};

// One op at one shape: tensor sizes (in floats) and how to run it on a set of tensors.
struct OpCase {
  std::string name;
  std::string shape;
  std::vector<std::size_t> inputs;
  std::vector<std::size_t> outputs;
  std::function<Event(const Stream&, const std::vector<float*>&, const std::vector<const float*>&)>
      run;
  double flops = 0;       // matmul FLOPs per call (0: a memory-bound op)
  bool cpu_only = false;  // no CUDA implementation yet
  // Fills inputs derived from the others (a forward's saved state for a backward), or nullptr.
  std::function<void(std::vector<std::vector<float>>&)> derive_inputs = nullptr;
  double bytes() const {
    std::size_t total = 0;
    for (std::size_t s : inputs) total += s;
    for (std::size_t s : outputs) total += s;
    return 4.0 * static_cast<double>(total);
  }
};

// The MoE ops at --gemm's shape split over kMoeExperts experts, top-kMoeTopK: M tokens of K
// channels routed (router, permutation: M k rows), and the experts' first GEMM (K -> N) over
// the permuted rows, kMoeExperts equal segments. int32 inputs (indices, counts) are float
// tensors holding their bits, derived from the CPU router.
constexpr std::int64_t kMoeExperts = 8, kMoeTopK = 2;

void put_ints(std::vector<float>& to, const std::vector<std::int32_t>& from) {
  std::memcpy(to.data(), from.data(), from.size() * sizeof(std::int32_t));
}

std::int32_t* int_ptr(float* p) { return reinterpret_cast<std::int32_t*>(p); }
const std::int32_t* int_ptr(const float* p) { return reinterpret_cast<const std::int32_t*>(p); }

std::vector<OpCase> moe_cases(const Options& o) {
  const std::int64_t m = o.gemm_m, kk = o.gemm_k, nn = o.gemm_n, e = kMoeExperts, top = kMoeTopK;
  const std::int64_t rows = m * top;  // the permuted rows, dropless
  const auto me = static_cast<std::size_t>(m * e), mt = static_cast<std::size_t>(m * top);
  const auto mk = static_cast<std::size_t>(m * kk), rk = static_cast<std::size_t>(rows * kk);
  const auto rn = static_cast<std::size_t>(rows * nn), w = static_cast<std::size_t>(e * nn * kk);
  const std::string route =
      "(" + std::to_string(m) + ", E " + std::to_string(e) + ", k " + std::to_string(top) + ")";
  const std::string gemm = "(" + std::to_string(rows) + ", " + std::to_string(kk) + ", " +
                           std::to_string(nn) + ") x" + std::to_string(e);
  std::vector<OpCase> cases;
  // inputs: logits (M, E); outputs: probs (M, E), topk_idx (M, k), topk_w (M, k)
  cases.push_back(
      {"moe_router_forward", route, {me}, {me, mt, mt}, [=](const Stream& s, auto& out, auto& in) {
         return k::moe_router_forward(s, out[0], int_ptr(out[1]), out[2], in[0], m, e, top, true);
       }});
  // inputs: x (M, K), topk_idx (M, k) from the CPU router; outputs: rows, row_of, counts
  OpCase permute{"moe_permute_forward",
                 route + " C " + std::to_string(kk),
                 {mk, mt},
                 {rk, mt, static_cast<std::size_t>(e)},
                 [=](const Stream& s, auto& out, auto& in) {
                   return k::moe_permute_forward(s, out[0], int_ptr(out[1]), int_ptr(out[2]), in[0],
                                                 int_ptr(in[1]), nullptr, m, kk, e, top, rows, 0);
                 }};
  permute.derive_inputs = [=](auto& in) {
    std::vector<float> probs(me), tw(mt);
    std::vector<std::int32_t> idx(mt);
    const std::vector<float> logits(in[0].begin(), in[0].begin() + static_cast<long>(me));
    k::moe_router_forward(Stream::cpu(), probs.data(), idx.data(), tw.data(), logits.data(), m, e,
                          top, true);
    put_ints(in[1], idx);
  };
  cases.push_back(permute);
  // The experts' fc1 over the permuted rows: E equal segments (the last takes the remainder).
  const auto counts = [=](auto& in) {
    std::vector<std::int32_t> c(static_cast<std::size_t>(e), static_cast<std::int32_t>(rows / e));
    c.back() += static_cast<std::int32_t>(rows % e);
    put_ints(in.back(), c);
  };
  const auto ue = static_cast<std::size_t>(e);
  // inputs: x (R, K), W (E, N, K), counts (E); output: y (R, N)
  OpCase fwd{
      "grouped_linear_forward", gemm, {rk, w, ue}, {rn}, [=](const Stream& s, auto& out, auto& in) {
        return k::grouped_linear_forward(s, out[0], in[0], in[1], int_ptr(in[2]), e, e, kk, nn,
                                         rows);
      }};
  // inputs: dy (R, N), W (E, N, K), counts; output: dx (R, K)
  OpCase data{"grouped_linear_bwd_data",
              gemm,
              {rn, w, ue},
              {rk},
              [=](const Stream& s, auto& out, auto& in) {
                return k::grouped_linear_backward_data(s, out[0], in[0], in[1], int_ptr(in[2]), e,
                                                       e, kk, nn, rows);
              }};
  // inputs: dy (R, N), x (R, K), counts; output: dW (E, N, K)
  OpCase weight{"grouped_linear_bwd_weight",
                gemm,
                {rn, rk, ue},
                {w},
                [=](const Stream& s, auto& out, auto& in) {
                  return k::grouped_linear_backward_weight(s, out[0], in[0], in[1], int_ptr(in[2]),
                                                           e, e, kk, nn, rows, false);
                }};
  for (OpCase* op : {&fwd, &data, &weight}) {
    op->derive_inputs = counts;
    op->flops = 2.0 * static_cast<double>(rows) * static_cast<double>(kk) * static_cast<double>(nn);
    cases.push_back(*op);
  }
  return cases;
}

std::vector<OpCase> make_cases(const Options& o) {
  const auto n = static_cast<std::size_t>(o.n);
  const auto rc = static_cast<std::size_t>(o.rows * o.cols);
  const auto r = static_cast<std::size_t>(o.rows);
  const auto c = static_cast<std::size_t>(o.cols);
  const std::string elem = "(" + std::to_string(o.n) + ")";
  const std::string mat = "(" + std::to_string(o.rows) + ", " + std::to_string(o.cols) + ")";
  const std::int64_t rows = o.rows;
  const std::int64_t cols = o.cols;
  std::vector<OpCase> cases;
  cases.push_back({"gelu_forward", elem, {n}, {n}, [=](const Stream& s, auto& out, auto& in) {
                     return k::gelu_forward(s, out[0], in[0], static_cast<std::int64_t>(n));
                   }});
  cases.push_back({"gelu_backward", elem, {n, n}, {n}, [=](const Stream& s, auto& out, auto& in) {
                     return k::gelu_backward(s, out[0], in[0], in[1], static_cast<std::int64_t>(n));
                   }});
  // inputs: x, gamma, beta; outputs: y, mean, rstd
  cases.push_back({"layer_norm_forward",
                   mat,
                   {rc, c, c},
                   {rc, r, r},
                   [=](const Stream& s, auto& out, auto& in) {
                     return k::layer_norm_forward(s, out[0], out[1], out[2], in[0], in[1], in[2],
                                                  rows, cols);
                   }});
  // inputs: dy, x, gamma, mean, rstd (from the forward); outputs: dx, dgamma, dbeta
  OpCase ln_bwd{"layer_norm_backward",
                mat,
                {rc, rc, c, r, r},
                {rc, c, c},
                [=](const Stream& s, auto& out, auto& in) {
                  return k::layer_norm_backward(s, out[0], out[1], out[2], in[0], in[1], in[2],
                                                in[3], in[4], rows, cols);
                }};
  ln_bwd.derive_inputs = [=](auto& in) {
    std::vector<float> y(in[1].size()), beta(in[2].size(), 0.0f);
    k::layer_norm_forward(Stream::cpu(), y.data(), in[3].data(), in[4].data(), in[1].data(),
                          in[2].data(), beta.data(), rows, cols);
  };
  cases.push_back(ln_bwd);
  // inputs: x (M, K), W (N, K), bias (N); output: y (M, N)
  const std::int64_t gm = o.gemm_m, gk = o.gemm_k, gn = o.gemm_n;
  const auto um = static_cast<std::size_t>(gm), uk = static_cast<std::size_t>(gk),
             un = static_cast<std::size_t>(gn);
  const std::string gemm =
      "(" + std::to_string(gm) + ", " + std::to_string(gk) + ", " + std::to_string(gn) + ")";
  OpCase fwd{"linear_forward",
             gemm,
             {um * uk, un * uk, un},
             {um * un},
             [=](const Stream& s, auto& out, auto& in) {
               return k::linear_forward(s, out[0], in[0], in[1], in[2], gm, gk, gn);
             }};
  fwd.flops = 2.0 * gm * gk * gn;
  cases.push_back(fwd);
  // inputs: dy (M, N), x (M, K), W (N, K); outputs: dx (M, K), dW (N, K), dbias (N)
  OpCase bwd{"linear_backward",
             gemm,
             {um * un, um * uk, un * uk},
             {um * uk, un * uk, un},
             [=](const Stream& s, auto& out, auto& in) {
               return k::linear_backward(s, out[0], out[1], out[2], in[0], in[1], in[2], gm, gk,
                                         gn);
             }};
  bwd.flops = 4.0 * gm * gk * gn;
  cases.push_back(bwd);
  // Its two GEMMs alone. inputs: dy (M, N), W (N, K); output: dx (M, K)
  OpCase bwd_data{"linear_backward_data",
                  gemm,
                  {um * un, un * uk},
                  {um * uk},
                  [=](const Stream& s, auto& out, auto& in) {
                    return k::linear_backward_data(s, out[0], in[0], in[1], gm, gk, gn);
                  }};
  bwd_data.flops = 2.0 * gm * gk * gn;
  cases.push_back(bwd_data);
  // inputs: dy (M, N), x (M, K); outputs: dW (N, K), dbias (N); overwritten, then accumulated
  // into (a gradient accumulator's update: the GEMM with beta = 1)
  for (const bool accumulate : {false, true}) {
    OpCase bwd_weight{accumulate ? "linear_backward_weight_acc" : "linear_backward_weight",
                      gemm,
                      {um * un, um * uk},
                      {un * uk, un},
                      [=](const Stream& s, auto& out, auto& in) {
                        return k::linear_backward_weight(s, out[0], out[1], in[0], in[1], gm, gk,
                                                         gn, accumulate);
                      }};
    bwd_weight.flops = 2.0 * gm * gk * gn;
      cases.push_back(bwd_weight);
  }
  for (OpCase& op : moe_cases(o)) cases.push_back(std::move(op));
  return cases;
}

// Host inputs for a case: normal(0, 1), then the derived ones (a backward's saved state).
std::vector<std::vector<float>> make_inputs(const OpCase& op) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> in;
  for (std::size_t size : op.inputs) {
    in.emplace_back(size);
    for (float& v : in.back()) v = normal(rng);
  }
  if (op.derive_inputs) op.derive_inputs(in);
  return in;
}

std::vector<std::vector<float>> run_on_host(const OpCase& op,
                                            const std::vector<std::vector<float>>& in) {
  std::vector<std::vector<float>> out;
  for (std::size_t size : op.outputs) out.emplace_back(size);
  std::vector<float*> outs;
  std::vector<const float*> ins;
  for (auto& v : out) outs.push_back(v.data());
  for (auto& v : in) ins.push_back(v.data());
  op.run(Stream::cpu(), outs, ins);
  return out;
}

constexpr double kHostLeadUs = 100.0;  // device spin before a timed batch ...
constexpr double kLaunchUs = 25.0;     // ... plus this per launch: > host cost of one op call
constexpr double kMaxRotationBytes = 1.0 * (1 << 30);  // rotation memory cap per op

struct TensorSet {
  std::vector<Buffer> in, out;
  std::vector<float*> outs;
  std::vector<const float*> ins;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Prints the case's row; returns its median ms per op.
double bench_case(const OpCase& op, const Stream& stream, const std::string& device,
                  std::uint64_t cache_bytes, const Options& o) {
  const auto host_in = make_inputs(op);
  const double set_bytes = op.bytes();
  // Enough sets that one pass over them exceeds 2x the cache, within kMaxRotationBytes.
  const int wanted =
      static_cast<int>(std::ceil(2.0 * static_cast<double>(cache_bytes) / set_bytes));
  const int affordable = static_cast<int>(kMaxRotationBytes / set_bytes);
  const int sets = std::clamp(std::min(wanted + 1, affordable), 2, 16);
  std::vector<TensorSet> tensors(static_cast<std::size_t>(sets));
  for (TensorSet& t : tensors) {
    for (std::size_t i = 0; i < op.inputs.size(); ++i) {
      t.in.emplace_back(stream, op.inputs[i] * sizeof(float));
      k::copy_to_buffer(stream, t.in.back(), host_in[i].data(), op.inputs[i] * sizeof(float));
      t.ins.push_back(t.in.back().as<float>());
    }
    for (std::size_t size : op.outputs) {  // written once here: no first-touch faults later
      t.out.emplace_back(stream, size * sizeof(float));
      const std::vector<float> zeros(size, 0.0f);
      k::copy_to_buffer(stream, t.out.back(), zeros.data(), size * sizeof(float)).synchronize();
      t.outs.push_back(t.out.back().as<float>());
    }
  }
  stream.synchronize();

  // Warm-up (untimed for the result): also sizes a batch so one timed batch lasts ~batch_ms.
  int next = 0;
  auto launch = [&] {
    TensorSet& t = tensors[static_cast<std::size_t>(next)];
    next = (next + 1) % sets;
    op.run(stream, t.outs, t.ins);
  };
  double single_ms = 0.0;
  for (int i = 0; i < std::max(o.warmup, 1); ++i) {
    k::busy_wait(stream, kHostLeadUs);
    const Event start = stream.record_event(EventTiming::kOn);
    launch();
    single_ms = Event::elapsed_ms(start, stream.record_event(EventTiming::kOn));
  }
  const int batch = std::clamp(static_cast<int>(o.batch_ms / std::max(single_ms, 1e-6)), 1, 1000);

  std::vector<double> per_op_ms;
  for (int rep = 0; rep < o.reps; ++rep) {
    // On CUDA the stream spins while the host enqueues the batch, so the timed kernels run
    // back to back and launch overhead stays out of the figure (no-op on the CPU).
    k::busy_wait(stream, kHostLeadUs + kLaunchUs * batch);
    const Event start = stream.record_event(EventTiming::kOn);
    for (int i = 0; i < batch; ++i) launch();
    const Event end = stream.record_event(EventTiming::kOn);
    per_op_ms.push_back(Event::elapsed_ms(start, end) / batch);
  }
  const double med = median(per_op_ms);
  const auto [lo, hi] = std::minmax_element(per_op_ms.begin(), per_op_ms.end());

  std::string check = "reference";
  if (stream.backend() != Backend::kCpu) {  // set 0 (written first) against the CPU result
    const auto expected = run_on_host(op, host_in);
    double max_diff = 0.0;
    for (std::size_t i = 0; i < op.outputs.size(); ++i) {
      std::vector<float> got(op.outputs[i]);
      k::copy_from_buffer(stream, got.data(), tensors[0].out[i], got.size() * sizeof(float));
      stream.synchronize();
      for (std::size_t j = 0; j < got.size(); ++j) {
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(got[j] - expected[i][j])));
      }
    }
    char text[64];
    std::snprintf(text, sizeof(text), "max|d|=%.1e", max_diff);
    check = text;
  }
  std::printf("%-5s %-24s %-26s %-18s %5d %4d %10.4f %10.4f %10.4f %9.2f %9.1f  %s\n",
              k::backend_name(stream.backend()), device.c_str(), op.name.c_str(), op.shape.c_str(),
              batch, sets, med, *lo, *hi, set_bytes / (med * 1e-3) / 1e9,
              op.flops / (med * 1e-3) / 1e9, check.c_str());
  return med;
}

std::uint64_t host_cache_bytes() {
  long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return bytes > 0 ? static_cast<std::uint64_t>(bytes) : std::uint64_t{32} << 20;
}

// --- Fused vs unfused attention (--attention) ------------------------------------------------

// Score entries (query, key) the fused CPU kernel computes per head, forward or backward: every
// block of the (T, T) square that reaches the diagonal, whole (kernels/README.md, FLOPs).
double flash_score_entries(std::int64_t t, k::cpu::FlashBlocks blocks) {
  return static_cast<double>(k::cpu::attention_segments_score_entries({{0, t}}, {{0, t}}, blocks));
}

// The fused (one-call) attention's forward and backward cases for (b, t, c, h) at `shape`,
// with the multiply-adds the kernel executes (flash_score_entries) as their FLOPs; CPU only.
struct FlashCases {
  OpCase fwd, bwd;
  double macs;  // per call of the forward's score pass
};

FlashCases flash_attention_cases(const std::string& shape, std::int64_t b, std::int64_t t,
                                 std::int64_t c, std::int64_t h) {
  const auto qkv_n = static_cast<std::size_t>(b * t * 3 * c);
  const auto out_n = static_cast<std::size_t>(b * t * c);
  const auto lse_n = static_cast<std::size_t>(b * h * t);
  const double macs = static_cast<double>(b * h) * flash_score_entries(t, {}) * (c / h);
  // inputs: qkv; outputs: out, lse
  OpCase fwd{"flash_attention_forward",
             shape,
             {qkv_n},
             {out_n, lse_n},
             [=](const Stream& s, auto& out, auto& in) {
               return k::flash_attention_forward(s, out[0], out[1], in[0], b, t, c, h);
             }};
  fwd.flops = 2.0 * 2.0 * macs;  // S, O += P V
  // inputs: dout, qkv, out, lse (from the forward); output: dqkv
  OpCase bwd{"flash_attention_backward",
             shape,
             {out_n, qkv_n, out_n, lse_n},
             {qkv_n},
             [=](const Stream& s, auto& out, auto& in) {
               return k::flash_attention_backward(s, out[0], in[0], in[1], in[2], in[3], b, t, c,
                                                  h);
             }};
  bwd.flops = 2.0 * 5.0 * macs;  // S again, dV, dP, dK, dQ
  bwd.derive_inputs = [=](auto& in) {
    k::flash_attention_forward(Stream::cpu(), in[2].data(), in[3].data(), in[1].data(), b, t, c,
                               h);
  };
  fwd.cpu_only = bwd.cpu_only = true;
  return {std::move(fwd), std::move(bwd), macs};
}

std::string bytes_text(double bytes) {
  char text[48];
  if (bytes >= 1 << 20) {
    std::snprintf(text, sizeof(text), "%.0f (%.1f MiB)", bytes, bytes / (1 << 20));
  } else {
    std::snprintf(text, sizeof(text), "%.0f (%.1f KiB)", bytes, bytes / (1 << 10));
  }
  return text;
}

double max_relative_difference(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0.0, largest = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(got[i] - want[i])));
    largest = std::max(largest, static_cast<double>(std::fabs(want[i])));
  }
  return largest > 0.0 ? diff / largest : diff;
}

// Per shape: rows for the four ops (GFLOP/s of the multiply-adds each kernel executes: the
// unfused one the whole T x T square, the fused one its blocks up to the diagonal), then a
// summary of forward + backward time, the bytes each keeps between the passes and allocates as
// scratch, and the fused outputs' difference from the unfused ones on the same inputs.
void bench_attention(const Options& o) {
  const Stream cpu = Stream::cpu();
  std::vector<std::string> summary;
  for (const auto& a : o.attention_shapes) {
    const std::int64_t b = a.b, h = a.h, t = a.t, d = a.d, c = h * d;
    const auto qkv_n = static_cast<std::size_t>(b * t * 3 * c);
    const auto out_n = static_cast<std::size_t>(b * t * c);
    const auto att_n = static_cast<std::size_t>(b * h * t * t);
    const auto lse_n = static_cast<std::size_t>(b * h * t);
    const std::string shape = "(" + std::to_string(b) + "," + std::to_string(h) + "," +
                              std::to_string(t) + "," + std::to_string(d) + ")";
    const double square_macs = static_cast<double>(b * h) * static_cast<double>(t * t * d);

    // inputs: qkv; outputs: out, att
    OpCase unfused_fwd{"attention_forward",
                       shape,
                       {qkv_n},
                       {out_n, att_n},
                       [=](const Stream& s, auto& out, auto& in) {
                         return k::attention_forward(s, out[0], out[1], in[0], b, t, c, h);
                       }};
    unfused_fwd.flops = 2.0 * 2.0 * square_macs;  // S = Q K^T, O = P V
    // inputs: dout, qkv, att (from the forward); output: dqkv
    OpCase unfused_bwd{"attention_backward",
                       shape,
                       {out_n, qkv_n, att_n},
                       {qkv_n},
                       [=](const Stream& s, auto& out, auto& in) {
                         return k::attention_backward(s, out[0], in[0], in[1], in[2], b, t, c, h);
                       }};
    unfused_bwd.flops = 2.0 * 4.0 * square_macs;  // dV, dP, dQ, dK
    unfused_bwd.derive_inputs = [=](auto& in) {
      std::vector<float> out(out_n);
      k::attention_forward(Stream::cpu(), out.data(), in[2].data(), in[1].data(), b, t, c, h);
    };
    auto [fused_fwd, fused_bwd, fused_macs] = flash_attention_cases(shape, b, t, c, h);
    for (OpCase* op : {&unfused_fwd, &unfused_bwd}) op->cpu_only = true;

    const double unfused_ms = bench_case(unfused_fwd, cpu, "host", host_cache_bytes(), o) +
                              bench_case(unfused_bwd, cpu, "host", host_cache_bytes(), o);
    const double fused_ms = bench_case(fused_fwd, cpu, "host", host_cache_bytes(), o) +
                            bench_case(fused_bwd, cpu, "host", host_cache_bytes(), o);

    // The check: both backward cases draw the same dout and qkv (the same generator, sizes and
    // order); the fused forward's out is the fused case's third input.
    const auto unfused_in = make_inputs(unfused_bwd), fused_in = make_inputs(fused_bwd);
    std::vector<float> unfused_out(out_n), att(att_n);
    k::attention_forward(cpu, unfused_out.data(), att.data(), unfused_in[1].data(), b, t, c, h);
    const double d_out = max_relative_difference(fused_in[2], unfused_out);
    const double d_dqkv = max_relative_difference(run_on_host(fused_bwd, fused_in)[0],
                                                  run_on_host(unfused_bwd, unfused_in)[0]);

    const double fused_fwd_scratch =
        4.0 * static_cast<double>(k::cpu::flash_attention_scratch_floats(t, d, {}, false));
    const double fused_bwd_scratch =
        4.0 * static_cast<double>(k::cpu::flash_attention_scratch_floats(t, d, {}, true));
    char line[512];
    std::snprintf(line, sizeof(line),
                  "%-16s %9.3f %9.3f %6.2f %5.2f | saved: att %s, lse %s | scratch fwd/bwd: "
                  "unfused %s / %s, fused %s / %s | max|d|/max: out %.1e dqkv %.1e",
                  shape.c_str(), unfused_ms, fused_ms, fused_ms / unfused_ms,
                  (7.0 * fused_macs) / (6.0 * square_macs),
                  bytes_text(4.0 * static_cast<double>(att_n)).c_str(),
                  bytes_text(4.0 * static_cast<double>(lse_n)).c_str(),
                  bytes_text(4.0 * static_cast<double>(t)).c_str(),
                  bytes_text(4.0 * static_cast<double>(t * t)).c_str(),
                  bytes_text(fused_fwd_scratch).c_str(), bytes_text(fused_bwd_scratch).c_str(),
                  d_out, d_dqkv);
    summary.emplace_back(line);
  }
  std::printf(
      "# attention, forward + backward on the CPU: (B,H,T,D), unfused_ms, fused_ms, fused/unfused "
      "time, fused/unfused executed multiply-adds;\n# bytes kept from forward to backward and "
      "scratch allocated per call; fused vs unfused outputs on the same inputs\n");
  for (const std::string& line : summary) std::printf("%s\n", line.c_str());
}

// --- Context-parallel attention (--attention-cp) ----------------------------------------------

// One sequence of T positions split over cp ranks (context_parallel_segments). Every rank's
// tensors lie one after another, rank-major: qkv (cp, B, T / cp, 3C), dout and out
// (cp, B, T / cp, C), lse (cp, B, H, T / cp); the gathered keys (B, T, 3C) in rank order.
struct CpLayout {
  std::int64_t b, h, t, d, c, local;
  int cp;
  std::vector<std::vector<k::AttentionSegment>> rank;
  std::vector<k::AttentionSegment> gathered;
  CpLayout(std::int64_t b_, std::int64_t h_, std::int64_t t_, std::int64_t d_, int cp_)
      : b(b_),
        h(h_),
        t(t_),
        d(d_),
        c(h_ * d_),
        local(t_ / cp_),
        cp(cp_),
        gathered(k::context_parallel_gathered_segments(t_, cp_)) {
    for (int r = 0; r < cp; ++r) rank.push_back(k::context_parallel_segments(t, cp, r));
  }
  std::int64_t rows(int r, std::int64_t width) const { return r * b * local * width; }
  // The position of rank r's row i (one batch row).
  std::int64_t position(const std::vector<k::AttentionSegment>& segs, std::int64_t i) const {
    for (const k::AttentionSegment& s : segs) {
      if (i < s.length) return s.position + i;
      i -= s.length;
    }
    return -1;
  }
};

// The all-gather's result: rank j's rows at rows j T / cp of each batch row.
void gather_keys(const CpLayout& l, float* gathered, const float* qkv) {
  for (int r = 0; r < l.cp; ++r) {
    for (std::int64_t i = 0; i < l.b; ++i) {
      const float* src = qkv + l.rows(r, 3 * l.c) + i * l.local * 3 * l.c;
      std::copy(src, src + l.local * 3 * l.c, gathered + (i * l.t + r * l.local) * 3 * l.c);
    }
  }
}

void gathered_forward(const Stream& s, const CpLayout& l, float* out, float* lse, const float* qkv,
                      const float* gathered) {
  for (int r = 0; r < l.cp; ++r) {
    k::attention_segments_forward(s, out + l.rows(r, l.c), lse + l.rows(r, l.h),
                                  qkv + l.rows(r, 3 * l.c), 3 * l.c, gathered + l.c,
                                  gathered + 2 * l.c, 3 * l.c, l.b, l.local, l.t, l.rank[r],
                                  l.gathered, l.c, l.h, false);
  }
}

// dq (cp, B, T / cp, C); dkv (B, T, 2C) for the gathered rows, summed over the ranks.
void gathered_backward(const Stream& s, const CpLayout& l, float* dq, float* dkv, const float* dout,
                       const float* qkv, const float* gathered, const float* out,
                       const float* lse) {
  for (int r = 0; r < l.cp; ++r) {
    k::attention_segments_backward(s, dq + l.rows(r, l.c), l.c, dkv, dkv + l.c, 2 * l.c,
                                   dout + l.rows(r, l.c), qkv + l.rows(r, 3 * l.c), 3 * l.c,
                                   gathered + l.c, gathered + 2 * l.c, 3 * l.c,
                                   out + l.rows(r, l.c), lse + l.rows(r, l.h), l.b, l.local, l.t,
                                   l.rank[r], l.gathered, l.c, l.h, false, r > 0);
  }
}

// Step j: rank r attends to rank (r - j) mod cp's keys, merging from the second step on.
void ring_forward(const Stream& s, const CpLayout& l, float* out, float* lse, const float* qkv) {
  for (int step = 0; step < l.cp; ++step) {
    for (int r = 0; r < l.cp; ++r) {
      const int from = (r - step + l.cp) % l.cp;
      const float* kv = qkv + l.rows(from, 3 * l.c);
      k::attention_segments_forward(s, out + l.rows(r, l.c), lse + l.rows(r, l.h),
                                    qkv + l.rows(r, 3 * l.c), 3 * l.c, kv + l.c, kv + 2 * l.c,
                                    3 * l.c, l.b, l.local, l.local, l.rank[r], l.rank[from], l.c,
                                    l.h, step > 0);
    }
  }
}

// dqkv (cp, B, T / cp, 3C): dq added into from the second step on; dk, dv written by their own
// rank at step 0 and added into at the later steps (the ring passes them on to their owner).
void ring_backward(const Stream& s, const CpLayout& l, float* dqkv, const float* dout,
                   const float* qkv, const float* out, const float* lse) {
  for (int step = 0; step < l.cp; ++step) {
    for (int r = 0; r < l.cp; ++r) {
      const int from = (r - step + l.cp) % l.cp;
      const float* kv = qkv + l.rows(from, 3 * l.c);
      float* dkv = dqkv + l.rows(from, 3 * l.c);
      k::attention_segments_backward(
          s, dqkv + l.rows(r, 3 * l.c), 3 * l.c, dkv + l.c, dkv + 2 * l.c, 3 * l.c,
          dout + l.rows(r, l.c), qkv + l.rows(r, 3 * l.c), 3 * l.c, kv + l.c, kv + 2 * l.c, 3 * l.c,
          out + l.rows(r, l.c), lse + l.rows(r, l.h), l.b, l.local, l.local, l.rank[r],
          l.rank[from], l.c, l.h, step > 0, step > 0);
    }
  }
}

// Columns [col, col + cols) of the ranks' rows (rank-major, `width` wide) into (B, T, full_width)
// at their positions.
void assemble(const CpLayout& l, std::vector<float>& full, std::int64_t full_width,
              const float* ranks, std::int64_t width, std::int64_t col, std::int64_t cols) {
  for (int r = 0; r < l.cp; ++r) {
    for (std::int64_t i = 0; i < l.b; ++i) {
      for (std::int64_t row = 0; row < l.local; ++row) {
        const float* src = ranks + l.rows(r, width) + (i * l.local + row) * width + col;
        std::copy(src, src + cols,
                  full.begin() + (i * l.t + l.position(l.rank[r], row)) * full_width + col);
      }
    }
  }
}

void assemble_lse(const CpLayout& l, std::vector<float>& full, const float* ranks) {
  for (int r = 0; r < l.cp; ++r) {
    for (std::int64_t g = 0; g < l.b * l.h; ++g) {
      for (std::int64_t row = 0; row < l.local; ++row) {
        full[g * l.t + l.position(l.rank[r], row)] = ranks[l.rows(r, l.h) + g * l.local + row];
      }
    }
  }
}

// Per shape: rows for the one-call flash attention over the whole sequence and, with every rank's
// work run in turn, the gathered and ring forms (GFLOP/s of the multiply-adds executed: score
// entries of the blocks computed x D, x2 forward, x5 backward); then a summary: forward +
// backward ms of all ranks, per rank, ratios, calls, and each form's reassembled out, lse and
// d(qkv) against the one call.
void bench_attention_cp(const Options& o) {
  const Stream cpu = Stream::cpu();
  std::vector<std::string> summary;
  for (const auto& a : o.attention_cp_shapes) {
    const CpLayout l(a.b, a.h, a.t, a.d, a.cp);
    const std::int64_t b = l.b, h = l.h, t = l.t, c = l.c;
    const auto qkv_n = static_cast<std::size_t>(b * t * 3 * c);
    const auto out_n = static_cast<std::size_t>(b * t * c);
    const auto lse_n = static_cast<std::size_t>(b * h * t);
    const auto kv_n = static_cast<std::size_t>(b * t * 2 * c);
    const std::string shape = "(" + std::to_string(b) + "," + std::to_string(h) + "," +
                              std::to_string(t) + "," + std::to_string(a.d) + ") cp" +
                              std::to_string(a.cp);
    // Score entries per (batch row, head): all ranks, and the least and most one rank computes
    // (the load balance), gathered and over the ring's steps (the same blocks, cut by rank).
    double entries = 0.0, ring_entries = 0.0;
    std::int64_t rank_min = std::numeric_limits<std::int64_t>::max(), rank_max = 0;
    std::int64_t ring_rank_min = std::numeric_limits<std::int64_t>::max(), ring_rank_max = 0;
    for (int r = 0; r < l.cp; ++r) {
      const std::int64_t mine = k::cpu::attention_segments_score_entries(l.rank[r], l.gathered);
      std::int64_t ring_mine = 0;
      for (int j = 0; j < l.cp; ++j) {
        ring_mine += k::cpu::attention_segments_score_entries(l.rank[r], l.rank[j]);
      }
      entries += static_cast<double>(mine);
      ring_entries += static_cast<double>(ring_mine);
      rank_min = std::min(rank_min, mine);
      rank_max = std::max(rank_max, mine);
      ring_rank_min = std::min(ring_rank_min, ring_mine);
      ring_rank_max = std::max(ring_rank_max, ring_mine);
    }
    auto [flash_fwd, flash_bwd, one_call_macs] = flash_attention_cases(shape, b, t, c, h);
    const double cp_macs = static_cast<double>(b * h) * entries * l.d;
    const double ring_macs = static_cast<double>(b * h) * ring_entries * l.d;

    // inputs: the ranks' qkv, the gathered qkv (derived from them); outputs: out, lse
    OpCase gathered_fwd{"cp_gathered_forward",
                        shape,
                        {qkv_n, qkv_n},
                        {out_n, lse_n},
                        [=](const Stream& s, auto& out, auto& in) {
                          gathered_forward(s, l, out[0], out[1], in[0], in[1]);
                          return s.record_event();
                        }};
    gathered_fwd.flops = 2.0 * 2.0 * cp_macs;
    gathered_fwd.derive_inputs = [=](auto& in) { gather_keys(l, in[1].data(), in[0].data()); };
    // inputs: dout, qkv, gathered, out, lse; outputs: dq, the gathered rows' dk and dv
    OpCase gathered_bwd{"cp_gathered_backward",
                        shape,
                        {out_n, qkv_n, qkv_n, out_n, lse_n},
                        {out_n, kv_n},
                        [=](const Stream& s, auto& out, auto& in) {
                          gathered_backward(s, l, out[0], out[1], in[0], in[1], in[2], in[3],
                                            in[4]);
                          return s.record_event();
                        }};
    gathered_bwd.flops = 2.0 * 5.0 * cp_macs;
    gathered_bwd.derive_inputs = [=](auto& in) {
      gather_keys(l, in[2].data(), in[1].data());
      gathered_forward(Stream::cpu(), l, in[3].data(), in[4].data(), in[1].data(), in[2].data());
    };
    OpCase ring_fwd{"cp_ring_forward",
                    shape,
                    {qkv_n},
                    {out_n, lse_n},
                    [=](const Stream& s, auto& out, auto& in) {
                      ring_forward(s, l, out[0], out[1], in[0]);
                      return s.record_event();
                    }};
    ring_fwd.flops = 2.0 * 2.0 * ring_macs;
    // inputs: dout, qkv, out, lse; output: dqkv
    OpCase ring_bwd{"cp_ring_backward",
                    shape,
                    {out_n, qkv_n, out_n, lse_n},
                    {qkv_n},
                    [=](const Stream& s, auto& out, auto& in) {
                      ring_backward(s, l, out[0], in[0], in[1], in[2], in[3]);
                      return s.record_event();
                    }};
    ring_bwd.flops = 2.0 * 5.0 * ring_macs;
    ring_bwd.derive_inputs = [=](auto& in) {
      ring_forward(Stream::cpu(), l, in[2].data(), in[3].data(), in[1].data());
    };
    for (OpCase* op : {&flash_fwd, &flash_bwd, &gathered_fwd, &gathered_bwd, &ring_fwd, &ring_bwd})
      op->cpu_only = true;

    const auto host = host_cache_bytes();
    const double flash_ms =
        bench_case(flash_fwd, cpu, "host", host, o) + bench_case(flash_bwd, cpu, "host", host, o);
    const double gathered_ms = bench_case(gathered_fwd, cpu, "host", host, o) +
                               bench_case(gathered_bwd, cpu, "host", host, o);
    const double ring_ms =
        bench_case(ring_fwd, cpu, "host", host, o) + bench_case(ring_bwd, cpu, "host", host, o);

    // The check: the ranks' results put back at their positions against the one call on the
    // same sequence (the ring backward's inputs: dout, the ranks' qkv, its out and lse).
    const auto ring_in = make_inputs(ring_bwd);
    const auto ring_dqkv = run_on_host(ring_bwd, ring_in)[0];
    std::vector<float> full_qkv(qkv_n), full_dout(out_n);
    assemble(l, full_qkv, 3 * c, ring_in[1].data(), 3 * c, 0, 3 * c);
    assemble(l, full_dout, c, ring_in[0].data(), c, 0, c);
    std::vector<float> want_out(out_n), want_lse(lse_n), want_dqkv(qkv_n);
    k::flash_attention_forward(cpu, want_out.data(), want_lse.data(), full_qkv.data(), b, t, c, h);
    k::flash_attention_backward(cpu, want_dqkv.data(), full_dout.data(), full_qkv.data(),
                                want_out.data(), want_lse.data(), b, t, c, h);
    std::vector<float> gathered(qkv_n), g_out(out_n), g_lse(lse_n), g_dq(out_n), g_dkv(kv_n);
    gather_keys(l, gathered.data(), ring_in[1].data());
    gathered_forward(cpu, l, g_out.data(), g_lse.data(), ring_in[1].data(), gathered.data());
    gathered_backward(cpu, l, g_dq.data(), g_dkv.data(), ring_in[0].data(), ring_in[1].data(),
                      gathered.data(), g_out.data(), g_lse.data());
    std::vector<float> got_out(out_n), got_lse(lse_n), got_dqkv(qkv_n);
    assemble(l, got_out, c, g_out.data(), c, 0, c);
    assemble_lse(l, got_lse, g_lse.data());
    assemble(l, got_dqkv, 3 * c, g_dq.data(), c, 0, c);
    for (std::int64_t i = 0; i < b; ++i) {  // gathered row g of batch row i: rank g / (T / cp)
      for (std::int64_t g = 0; g < t; ++g) {
        const auto r = static_cast<int>(g / l.local);
        const std::int64_t p = l.position(l.rank[r], g % l.local);
        const float* src = g_dkv.data() + (i * t + g) * 2 * c;
        std::copy(src, src + 2 * c, got_dqkv.begin() + (i * t + p) * 3 * c + c);
      }
    }
    const double g_d_out = max_relative_difference(got_out, want_out),
                 g_d_lse = max_relative_difference(got_lse, want_lse),
                 g_d_dqkv = max_relative_difference(got_dqkv, want_dqkv);
    assemble(l, got_out, c, ring_in[2].data(), c, 0, c);
    assemble_lse(l, got_lse, ring_in[3].data());
    assemble(l, got_dqkv, 3 * c, ring_dqkv.data(), 3 * c, 0, 3 * c);
    const double r_d_out = max_relative_difference(got_out, want_out),
                 r_d_lse = max_relative_difference(got_lse, want_lse),
                 r_d_dqkv = max_relative_difference(got_dqkv, want_dqkv);

    char line[512];
    std::snprintf(line, sizeof(line),
                  "%-20s %9.3f %9.3f %9.3f %8.3f %8.3f %6.2f %6.2f | entries/one call %.3f "
                  "(ring %.3f), per rank %ld..%ld (ring %ld..%ld) of one call's %.0f | "
                  "calls fwd %d / %d | max|d|/max gathered: out %.1e lse %.1e dqkv %.1e; ring: "
                  "out %.1e lse %.1e dqkv %.1e",
                  shape.c_str(), flash_ms, gathered_ms, ring_ms, gathered_ms / a.cp, ring_ms / a.cp,
                  gathered_ms / flash_ms, ring_ms / gathered_ms, cp_macs / one_call_macs,
                  ring_macs / one_call_macs, static_cast<long>(rank_min),
                  static_cast<long>(rank_max), static_cast<long>(ring_rank_min),
                  static_cast<long>(ring_rank_max), flash_score_entries(t, {}), a.cp, a.cp * a.cp,
                  g_d_out, g_d_lse, g_d_dqkv, r_d_out, r_d_lse, r_d_dqkv);
    summary.emplace_back(line);
  }
  std::printf(
      "# context-parallel attention, forward + backward on the CPU, every rank in turn: "
      "(B,H,T,D) cp, one_call_ms, gathered_ms, ring_ms (all ranks), gathered and ring ms per "
      "rank,\n# gathered/one call, ring/gathered; score entries computed against the one call, "
      "and per rank and (batch row, head); "
      "forward calls (gathered / ring); reassembled results against the one call\n");
  for (const std::string& line : summary) std::printf("%s\n", line.c_str());
}

std::int64_t parse_int(const char* flag, const char* value) {
  char* end = nullptr;
  const long long v = std::strtoll(value, &end, 10);
  if (end == value || *end != '\0' || v <= 0) {
    throw std::invalid_argument(std::string(flag) + " = " + value +
                                ": expected a positive integer");
  }
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      o.help = true;
      return o;
    }
    if (flag == "--attention") {  // the flags without a value
      o.attention = true;
      continue;
    }
    if (flag == "--attention-cp") {
      o.attention_cp = true;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument(flag + ": missing value");
    const char* value = argv[++i];
    if (flag == "--backend") {
      o.backend = value;
      if (o.backend != "cpu" && o.backend != "cuda" && o.backend != "all") {
        throw std::invalid_argument("--backend = " + o.backend + ": expected cpu, cuda or all");
      }
    } else if (flag == "--reps") {
      o.reps = static_cast<int>(parse_int("--reps", value));
    } else if (flag == "--warmup") {
      o.warmup = static_cast<int>(parse_int("--warmup", value));
    } else if (flag == "--n") {
      o.n = parse_int("--n", value);
    } else if (flag == "--rows") {
      o.rows = parse_int("--rows", value);
    } else if (flag == "--cols") {
      o.cols = parse_int("--cols", value);
    } else if (flag == "--gemm") {
      // M,K,N
      if (std::sscanf(value, "%ld,%ld,%ld", &o.gemm_m, &o.gemm_k, &o.gemm_n) != 3 ||
          o.gemm_m <= 0 || o.gemm_k <= 0 || o.gemm_n <= 0) {
        throw std::invalid_argument(std::string("--gemm = ") + value +
                                    ": expected M,K,N (positive integers)");
      }
    } else if (flag == "--attention-shape") {
      // B,H,T,D
      Options::AttentionShape a{};
      if (std::sscanf(value, "%ld,%ld,%ld,%ld", &a.b, &a.h, &a.t, &a.d) != 4 || a.b <= 0 ||
          a.h <= 0 || a.t <= 0 || a.d <= 0) {
        throw std::invalid_argument(std::string("--attention-shape = ") + value +
                                    ": expected B,H,T,D (positive integers)");
      }
      o.attention = true;
      o.attention_shapes.push_back(a);
    } else if (flag == "--attention-cp-shape") {
      // B,H,T,D,CP
      Options::AttentionCpShape a{};
      if (std::sscanf(value, "%ld,%ld,%ld,%ld,%d", &a.b, &a.h, &a.t, &a.d, &a.cp) != 5 ||
          a.b <= 0 || a.h <= 0 || a.t <= 0 || a.d <= 0 || a.cp <= 0 ||
          a.t % (2 * std::int64_t{a.cp}) != 0) {
        throw std::invalid_argument(std::string("--attention-cp-shape = ") + value +
                                    ": expected B,H,T,D,CP (positive integers, T divisible by "
                                    "2 CP)");
      }
      o.attention_cp = true;
      o.attention_cp_shapes.push_back(a);
    } else {
      throw std::invalid_argument("unknown flag " + flag + " (see --help)");
    }
  }
  if (o.attention && o.attention_shapes.empty()) {
    for (const std::int64_t d : {16, 64}) {
      for (const std::int64_t t : {128, 512, 1024}) o.attention_shapes.push_back({1, 4, t, d});
    }
  }
  if (o.attention_cp && o.attention_cp_shapes.empty()) {
    for (const std::int64_t t : {1024, 2048}) {
      for (const int cp : {2, 4}) o.attention_cp_shapes.push_back({1, 4, t, 64, cp});
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (o.help) {
      std::printf(
          "usage: kernels_bench [--backend cpu|cuda|all] [--reps N] [--warmup N] [--n N]\n"
          "                     [--rows N] [--cols N] [--gemm M,K,N]\n"
          "       kernels_bench --attention [--attention-shape B,H,T,D ...] [--reps N]\n"
          "       kernels_bench --attention-cp [--attention-cp-shape B,H,T,D,CP ...] [--reps N]\n"
          "  --n: GELU elements; --rows/--cols: LayerNorm shape; --gemm: linear layer of M "
          "tokens,\n"
          "  K inputs, N outputs (on CUDA: cuBLAS's fp32 GEMMs); the MoE ops route the M tokens\n"
          "  to 8 experts, top-2, and run the grouped GEMM K -> N over the 2M permuted rows.\n"
          "  GB/s counts every input and output once.\n"
          "  --attention: fused (FlashAttention) vs unfused causal attention, forward and "
          "backward,\n"
          "  on the CPU only, at B 1, H 4, T 128/512/1024, D 16/64 or at each "
          "--attention-shape.\n"
          "  --attention-cp: context-parallel attention, all-gathered keys vs ring steps vs one "
          "call,\n"
          "  forward and backward, on the CPU only, every rank in turn, at B 1, H 4, D 64, T "
          "1024/2048,\n"
          "  cp 2/4 or at each --attention-cp-shape.\n");
      return 0;
    }
    const auto cases = make_cases(o);
    std::printf("# kernels_bench: median of %d batches after %d warm-up runs; ms per op\n", o.reps,
                o.warmup);
    std::printf("# cpu ops: %s; host cache used for rotation: %.0f MiB\n",
                strata::kernels::cpu::uses_eigen() ? "Eigen" : "plain loops (no Eigen)",
                static_cast<double>(host_cache_bytes()) / (1 << 20));
    std::printf("%-5s %-24s %-26s %-18s %5s %4s %10s %10s %10s %9s %9s  %s\n", "back", "device",
                "op", "shape", "batch", "sets", "median_ms", "min_ms", "max_ms", "GB/s", "GFLOP/s",
                "check");
    if (o.attention || o.attention_cp) {
      if (o.attention) bench_attention(o);
      if (o.attention_cp) bench_attention_cp(o);
      return 0;
    }
    if (o.backend != "cuda") {
      const Stream cpu = Stream::cpu();
      for (const OpCase& op : cases) bench_case(op, cpu, "host", host_cache_bytes(), o);
    }
    if (o.backend != "cpu") {
      const int devices = k::cuda_device_count();
      if (devices == 0) {
        std::printf("# cuda: skipped: %s\n", k::cuda_unavailable_reason().c_str());
        return o.backend == "cuda" ? 1 : 0;
      }
      for (int d = 0; d < devices; ++d) {
        const auto props = k::cuda_device_properties(d);
        std::printf("# cuda:%d %s, %d SMs, %.1f GiB, sm_%d%d, L2 %.0f MiB\n", d, props.name.c_str(),
                    props.sm_count, static_cast<double>(props.memory_bytes) / (1 << 30),
                    props.compute_capability_major, props.compute_capability_minor,
                    static_cast<double>(props.l2_cache_bytes) / (1 << 20));
        const Stream stream = Stream::cuda(d);
        for (const OpCase& op : cases) {
          if (!op.cpu_only)
            bench_case(op, stream, props.name.substr(0, 24), props.l2_cache_bytes, o);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kernels_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
