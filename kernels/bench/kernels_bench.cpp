// kernels_bench: times every op on the CPU and, when a device is present, on CUDA. Warm-up is
// kept apart from timing; inputs rotate over enough buffer sets to exceed 2x the last-level
// cache; each figure is the median over --reps batches (min and max show the spread). On CUDA a
// batch is enqueued behind a device-side spin (busy_wait) so kernels run back to back. CUDA
// results are checked against the CPU reference on the same inputs while measuring.
// GB/s counts each tensor read or written once: the minimum traffic of the op.
// --attention compares the fused (FlashAttention) and the unfused causal attention on the CPU,
// forward and backward, with the bytes each keeps between the passes and allocates as scratch.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
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
  fwd.cpu_only = true;
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
  bwd.cpu_only = true;
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
  bwd_data.cpu_only = true;
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
    bwd_weight.cpu_only = true;
    cases.push_back(bwd_weight);
  }
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
  double entries = 0.0;
  for (std::int64_t q0 = 0; q0 < t; q0 += blocks.rows) {
    const std::int64_t rows = std::min(blocks.rows, t - q0);
    for (std::int64_t k0 = 0; k0 < q0 + rows; k0 += blocks.cols) {
      entries += static_cast<double>(rows * std::min(blocks.cols, t - k0));
    }
  }
  return entries;
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
    const double fused_macs = static_cast<double>(b * h) * flash_score_entries(t, {}) * d;

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
    // inputs: qkv; outputs: out, lse
    OpCase fused_fwd{"flash_attention_forward",
                     shape,
                     {qkv_n},
                     {out_n, lse_n},
                     [=](const Stream& s, auto& out, auto& in) {
                       return k::flash_attention_forward(s, out[0], out[1], in[0], b, t, c, h);
                     }};
    fused_fwd.flops = 2.0 * 2.0 * fused_macs;  // S, O += P V
    // inputs: dout, qkv, out, lse (from the forward); output: dqkv
    OpCase fused_bwd{"flash_attention_backward",
                     shape,
                     {out_n, qkv_n, out_n, lse_n},
                     {qkv_n},
                     [=](const Stream& s, auto& out, auto& in) {
                       return k::flash_attention_backward(s, out[0], in[0], in[1], in[2], in[3], b,
                                                          t, c, h);
                     }};
    fused_bwd.flops = 2.0 * 5.0 * fused_macs;  // S again, dV, dP, dK, dQ
    fused_bwd.derive_inputs = [=](auto& in) {
      k::flash_attention_forward(Stream::cpu(), in[2].data(), in[3].data(), in[1].data(), b, t, c,
                                 h);
    };
    for (OpCase* op : {&unfused_fwd, &unfused_bwd, &fused_fwd, &fused_bwd}) op->cpu_only = true;

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
    if (flag == "--attention") {  // the only flag without a value
      o.attention = true;
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
    } else {
      throw std::invalid_argument("unknown flag " + flag + " (see --help)");
    }
  }
  if (o.attention && o.attention_shapes.empty()) {
    for (const std::int64_t d : {16, 64}) {
      for (const std::int64_t t : {128, 512, 1024}) o.attention_shapes.push_back({1, 4, t, d});
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
          "  --n: GELU elements; --rows/--cols: LayerNorm shape; --gemm: linear layer of M "
          "tokens,\n"
          "  K inputs, N outputs (CPU only so far). GB/s counts every input and output once.\n"
          "  --attention: fused (FlashAttention) vs unfused causal attention, forward and "
          "backward,\n"
          "  on the CPU only, at B 1, H 4, T 128/512/1024, D 16/64 or at each "
          "--attention-shape.\n");
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
    if (o.attention) {
      bench_attention(o);
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
