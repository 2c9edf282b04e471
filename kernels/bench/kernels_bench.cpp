// kernels_bench: times every op on the CPU and, when a device is present, on CUDA. Warm-up is
// kept apart from timing; inputs rotate over enough buffer sets to exceed 2x the last-level
// cache; each figure is the median over --reps batches (min and max show the spread). On CUDA a
// batch is enqueued behind a device-side spin (busy_wait) so kernels run back to back. CUDA
// results are checked against the CPU reference on the same inputs while measuring.
// GB/s counts each tensor read or written once: the minimum traffic of the op.
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
  // inputs: dy, x, gamma, mean, rstd; outputs: dx, dgamma, dbeta
  cases.push_back({"layer_norm_backward",
                   mat,
                   {rc, rc, c, r, r},
                   {rc, c, c},
                   [=](const Stream& s, auto& out, auto& in) {
                     return k::layer_norm_backward(s, out[0], out[1], out[2], in[0], in[1], in[2],
                                                   in[3], in[4], rows, cols);
                   }});
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

// Host inputs for a case: normal(0, 1); LayerNorm backward gets a real mean and rstd.
std::vector<std::vector<float>> make_inputs(const OpCase& op, const Options& o) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> in;
  for (std::size_t size : op.inputs) {
    in.emplace_back(size);
    for (float& v : in.back()) v = normal(rng);
  }
  if (op.name == "layer_norm_backward") {
    std::vector<float> y(in[1].size());
    std::vector<float> beta(in[2].size(), 0.0f);
    k::layer_norm_forward(Stream::cpu(), y.data(), in[3].data(), in[4].data(), in[1].data(),
                          in[2].data(), beta.data(), o.rows, o.cols);
  }
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

void bench_case(const OpCase& op, const Stream& stream, const std::string& device,
                std::uint64_t cache_bytes, const Options& o) {
  const auto host_in = make_inputs(op, o);
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
}

std::uint64_t host_cache_bytes() {
  long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return bytes > 0 ? static_cast<std::uint64_t>(bytes) : std::uint64_t{32} << 20;
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
    } else {
      throw std::invalid_argument("unknown flag " + flag + " (see --help)");
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
          "  --n: GELU elements; --rows/--cols: LayerNorm shape; --gemm: linear layer of M "
          "tokens,\n"
          "  K inputs, N outputs (CPU only so far). GB/s counts every input and output once.\n");
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
