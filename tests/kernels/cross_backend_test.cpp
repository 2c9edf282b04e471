// The cross-backend test (ggml's test-backend-ops, in small): every op at several shapes runs on
// the CPU and on CUDA from the same inputs, through Buffers on each backend, and the outputs are
// compared one by one with the tolerance stated per op below. Skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/moe_ops.hpp"
#include "kernels/ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

using testing::expect_close;
using testing::random_floats;

using Tensors = std::vector<std::vector<float>>;

struct Tolerance {
  double atol;
  double rtol;
};

// One op at one shape: its host inputs, how to run it, and a tolerance per output. An op that
// accumulates into its outputs gets them seeded from `initial_outputs` (host values, one per
// output) on each backend before it runs; otherwise they start uninitialized.
struct OpCase {
  std::string name;
  std::function<Tensors()> inputs;
  std::vector<std::size_t> output_sizes;
  std::vector<Tolerance> tolerances;
  std::function<Event(const Stream&, const std::vector<float*>&, const std::vector<const float*>&)>
      run;
  std::function<Tensors()> initial_outputs = nullptr;
  // Which inputs and outputs are bf16 tensors (empty: all fp32). The host values of a bf16
  // input are rounded to bf16 on upload (both backends get the same bits); a bf16 output is
  // read back widened. `run` then gets their pointers as float* and casts them back (bf16_of).
  std::vector<bool> bf16_inputs = {}, bf16_outputs = {};
  // Which outputs are int32 tensors (indices, counts), read back as float bits and compared by
  // value, exactly (-1 is a NaN pattern as a float).
  std::vector<bool> int_outputs = {};
};

// Names the case in gtest's messages instead of dumping its bytes.
void PrintTo(const OpCase& op, std::ostream* os) { *os << op.name; }

// Tolerances, CPU vs CUDA (both fp32, same formulas; they differ in exp implementations and in
// summation order): GELU within a few ulps (each backend is within ~4% of these bounds of a
// double reference on the CPU side); LayerNorm rows within 1e-5; dx carries rstd and a second
// reduction; dgamma/dbeta sum up to 512 rows in different orders (with accumulate, both add
// that sum to the same old values).
constexpr Tolerance kGeluForward{1e-7, 1e-5};
constexpr Tolerance kGeluBackward{1e-6, 1e-5};
constexpr Tolerance kRowStats{1e-6, 1e-5};
constexpr Tolerance kNormOut{1e-5, 1e-5};
constexpr Tolerance kNormDx{1e-5, 1e-4};
constexpr Tolerance kNormParams{1e-4, 1e-4};

OpCase gelu_forward_case(std::int64_t n) {
  const auto size = static_cast<std::size_t>(n);
  return {"gelu_forward_n" + std::to_string(n),
          [=] { return Tensors{random_floats(size, 21, 0.0f, 3.0f)}; },
          {size},
          {kGeluForward},
          [=](const Stream& s, const auto& out, const auto& in) {
            return gelu_forward(s, out[0], in[0], n);
          }};
}

OpCase gelu_backward_case(std::int64_t n) {
  const auto size = static_cast<std::size_t>(n);
  return {"gelu_backward_n" + std::to_string(n),
          [=] {
            return Tensors{random_floats(size, 22), random_floats(size, 23, 0.0f, 3.0f)};
          },
          {size},
          {kGeluBackward},
          [=](const Stream& s, const auto& out, const auto& in) {
            return gelu_backward(s, out[0], in[0], in[1], n);
          }};
}

std::string shape_name(std::int64_t n, std::int64_t c) {
  std::string name = "_";  // appended piecewise: "_" + to_string trips GCC 12's -Wrestrict
  name += std::to_string(n);
  name += "x";
  name += std::to_string(c);
  return name;
}

OpCase layer_norm_forward_case(std::int64_t n, std::int64_t c) {
  const auto nc = static_cast<std::size_t>(n * c);
  const auto rows = static_cast<std::size_t>(n);
  const auto cols = static_cast<std::size_t>(c);
  return {"layer_norm_forward" + shape_name(n, c),
          [=] {  // x (N, C), gamma (C), beta (C)
            return Tensors{random_floats(nc, 31, 0.5f, 2.0f), random_floats(cols, 32, 1.0f, 0.5f),
                           random_floats(cols, 33)};
          },
          {nc, rows, rows},  // y (N, C), mean (N), rstd (N)
          {kNormOut, kRowStats, kRowStats},
          [=](const Stream& s, const auto& out, const auto& in) {
            return layer_norm_forward(s, out[0], out[1], out[2], in[0], in[1], in[2], n, c);
          }};
}

OpCase layer_norm_backward_case(std::int64_t n, std::int64_t c) {
  const auto nc = static_cast<std::size_t>(n * c);
  const auto rows = static_cast<std::size_t>(n);
  const auto cols = static_cast<std::size_t>(c);
  return {"layer_norm_backward" + shape_name(n, c),
          [=] {  // dy (N, C), x (N, C), gamma (C), mean (N), rstd (N) from the CPU forward
            Tensors t{random_floats(nc, 41), random_floats(nc, 42, 0.5f, 2.0f),
                      random_floats(cols, 43, 1.0f, 0.5f), std::vector<float>(rows),
                      std::vector<float>(rows)};
            std::vector<float> y(nc), beta(cols, 0.0f);
            layer_norm_forward(Stream::cpu(), y.data(), t[3].data(), t[4].data(), t[1].data(),
                               t[2].data(), beta.data(), n, c);
            return t;
          },
          {nc, cols, cols},  // dx (N, C), dgamma (C), dbeta (C)
          {kNormDx, kNormParams, kNormParams},
          [=](const Stream& s, const auto& out, const auto& in) {
            return layer_norm_backward(s, out[0], out[1], out[2], in[0], in[1], in[2], in[3], in[4],
                                       n, c);
          }};
}

// With accumulate, dgamma and dbeta start from random values on both backends and each adds its
// own sum (CPU and CUDA alike: old + the overwriting result), so the tolerance is the same.
OpCase layer_norm_backward_accumulate_case(std::int64_t n, std::int64_t c) {
  OpCase op = layer_norm_backward_case(n, c);
  op.name = "layer_norm_backward_accumulate" + shape_name(n, c);
  const auto nc = static_cast<std::size_t>(n * c);
  const auto cols = static_cast<std::size_t>(c);
  op.initial_outputs = [=] {
    return Tensors{std::vector<float>(nc, 0.0f), random_floats(cols, 44, 0.0f, 10.0f),
                   random_floats(cols, 45, 0.0f, 10.0f)};
  };
  op.run = [=](const Stream& s, const auto& out, const auto& in) {
    return layer_norm_backward(s, out[0], out[1], out[2], in[0], in[1], in[2], in[3], in[4], n, c,
                               true);
  };
  return op;
}

// The linear layer: cuBLAS's fp32 GEMMs against Eigen's, which sum the K products in different
// orders (blocked differently): inputs in [-1, 1], K up to 1031, so each entry's rounding
// differences stay far below 1e-4 of the largest sums. The bias and its gradient are added in
// the CPU's order on the GPU (tolerance of the GEMM they follow or exact).
constexpr Tolerance kGemm{1e-4, 1e-4};
constexpr Tolerance kExact{0, 0};
// SwiGLU and AdamW: expf and the device's rounding of one formula per element.
constexpr Tolerance kPointwise{1e-6, 1e-5};

OpCase linear_forward_case(std::int64_t n, std::int64_t in, std::int64_t out, bool bias) {
  const auto nin = static_cast<std::size_t>(n * in), nout = static_cast<std::size_t>(n * out);
  const auto w = static_cast<std::size_t>(out * in), b = static_cast<std::size_t>(out);
  return {"linear_forward" + shape_name(n, in) + "x" + std::to_string(out) + (bias ? "_bias" : ""),
          [=] {  // x (N, IN), W (OUT, IN), bias (OUT)
            return Tensors{random_floats(nin, 61), random_floats(w, 62), random_floats(b, 63)};
          },
          {nout},
          {kGemm},
          [=](const Stream& s, const auto& o, const auto& i) {
            return linear_forward(s, o[0], i[0], i[1], bias ? i[2] : nullptr, n, in, out);
          }};
}

OpCase linear_backward_data_case(std::int64_t n, std::int64_t in, std::int64_t out,
                                 bool accumulate) {
  const auto nin = static_cast<std::size_t>(n * in), nout = static_cast<std::size_t>(n * out);
  const auto w = static_cast<std::size_t>(out * in);
  OpCase op{"linear_backward_data" + shape_name(n, in) + "x" + std::to_string(out) +
                (accumulate ? "_accumulate" : ""),
            [=] {
              return Tensors{random_floats(nout, 64), random_floats(w, 65)};
            },  // dy, W
            {nin},
            {kGemm},
            [=](const Stream& s, const auto& o, const auto& i) {
              return linear_backward_data(s, o[0], i[0], i[1], n, in, out, accumulate);
            }};
  if (accumulate) op.initial_outputs = [=] { return Tensors{random_floats(nin, 66)}; };
  return op;
}

OpCase linear_backward_weight_case(std::int64_t n, std::int64_t in, std::int64_t out,
                                   bool accumulate) {
  const auto nin = static_cast<std::size_t>(n * in), nout = static_cast<std::size_t>(n * out);
  const auto w = static_cast<std::size_t>(out * in), b = static_cast<std::size_t>(out);
  OpCase op{"linear_backward_weight" + shape_name(n, in) + "x" + std::to_string(out) +
                (accumulate ? "_accumulate" : ""),
            [=] {
              return Tensors{random_floats(nout, 67), random_floats(nin, 68)};
            },       // dy, x
            {w, b},  // dW (OUT, IN), dbias (OUT): the rows summed in order, as on the CPU
            {kGemm, kExact},
            [=](const Stream& s, const auto& o, const auto& i) {
              return linear_backward_weight(s, o[0], o[1], i[0], i[1], n, in, out, accumulate);
            }};
  if (accumulate) {
    op.initial_outputs = [=] { return Tensors{random_floats(w, 69), random_floats(b, 70)}; };
  }
  return op;
}

OpCase linear_backward_case(std::int64_t n, std::int64_t in, std::int64_t out) {
  const auto nin = static_cast<std::size_t>(n * in), nout = static_cast<std::size_t>(n * out);
  const auto w = static_cast<std::size_t>(out * in), b = static_cast<std::size_t>(out);
  return {"linear_backward" + shape_name(n, in) + "x" + std::to_string(out),
          [=] {  // dy, x, W
            return Tensors{random_floats(nout, 71), random_floats(nin, 72), random_floats(w, 73)};
          },
          {nin, w, b},
          {kGemm, kGemm, kExact},
          [=](const Stream& s, const auto& o, const auto& i) {
            return linear_backward(s, o[0], o[1], o[2], i[0], i[1], i[2], n, in, out);
          }};
}

// RMSNorm: the row sums in double on both backends (summed in different orders); dweight sums up
// to 512 rows in different orders, as LayerNorm's parameter gradients.
OpCase rms_norm_forward_case(std::int64_t n, std::int64_t c) {
  const auto nc = static_cast<std::size_t>(n * c), rows = static_cast<std::size_t>(n);
  const auto cols = static_cast<std::size_t>(c);
  return {"rms_norm_forward" + shape_name(n, c),
          [=] {
            return Tensors{random_floats(nc, 91, 0.5f, 2.0f), random_floats(cols, 92, 1.0f)};
          },
          {nc, rows},  // y (N, C), rstd (N)
          {kNormOut, kRowStats},
          [=](const Stream& s, const auto& o, const auto& i) {
            return rms_norm_forward(s, o[0], o[1], i[0], i[1], n, c);
          }};
}

OpCase rms_norm_backward_case(std::int64_t n, std::int64_t c, bool accumulate) {
  const auto nc = static_cast<std::size_t>(n * c), rows = static_cast<std::size_t>(n);
  const auto cols = static_cast<std::size_t>(c);
  OpCase op{"rms_norm_backward" + std::string(accumulate ? "_accumulate" : "") + shape_name(n, c),
            [=] {  // dy (N, C), x (N, C), weight (C), rstd (N) from the CPU forward
              Tensors t{random_floats(nc, 93), random_floats(nc, 94, 0.5f, 2.0f),
                        random_floats(cols, 95, 1.0f, 0.5f), std::vector<float>(rows)};
              std::vector<float> y(nc);
              rms_norm_forward(Stream::cpu(), y.data(), t[3].data(), t[1].data(), t[2].data(), n,
                               c);
              return t;
            },
            {nc, cols},  // dx (N, C), dweight (C)
            {kNormDx, kNormParams},
            [=](const Stream& s, const auto& o, const auto& i) {
              return rms_norm_backward(s, o[0], o[1], i[0], i[1], i[2], i[3], n, c, accumulate);
            }};
  if (accumulate) {
    op.initial_outputs = [=] {
      return Tensors{std::vector<float>(nc, 0.0f), random_floats(cols, 96, 0.0f, 10.0f)};
    };
  }
  return op;
}

// Token ids travel as float tensors holding their int32 bits (the Buffers are bytes).
std::vector<float> ids_as_floats(std::size_t count, std::int64_t limit, std::uint32_t seed) {
  std::vector<float> out(count);
  std::uint32_t state = seed;
  for (float& f : out) {
    state = state * 1664525u + 1013904223u;
    const auto id = static_cast<std::int32_t>((state >> 8) % static_cast<std::uint32_t>(limit));
    std::memcpy(&f, &id, sizeof id);
  }
  return out;
}

const std::int32_t* ids(const float* p) { return reinterpret_cast<const std::int32_t*>(p); }

// The embedding: one addition per element forward; the backward adds each token's gradient
// into its rows in the CPU's order (tokens in order, per column): bit-identical.
OpCase embedding_forward_case(std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t vocab) {
  const auto bt = static_cast<std::size_t>(b * t);
  return {"embedding_forward" + shape_name(b * t, c) + "_v" + std::to_string(vocab),
          [=] {  // tokens (B, T), wte (V, C), wpe (T, C)
            return Tensors{ids_as_floats(bt, vocab, 101),
                           random_floats(static_cast<std::size_t>(vocab * c), 102),
                           random_floats(static_cast<std::size_t>(t * c), 103)};
          },
          {bt * static_cast<std::size_t>(c)},
          {kExact},
          [=](const Stream& s, const auto& o, const auto& i) {
            return embedding_forward(s, o[0], ids(i[0]), i[1], i[2], b, t, c, vocab);
          }};
}

OpCase embedding_backward_case(std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t vocab) {
  const auto bt = static_cast<std::size_t>(b * t);
  return {"embedding_backward" + shape_name(b * t, c) + "_v" + std::to_string(vocab),
          [=] {  // dout (B, T, C), tokens (B, T): few distinct tokens, so rows repeat
            return Tensors{random_floats(bt * static_cast<std::size_t>(c), 104),
                           ids_as_floats(bt, std::min<std::int64_t>(vocab, 7), 105)};
          },
          {static_cast<std::size_t>(vocab * c), static_cast<std::size_t>(t * c)},
          {kExact, kExact},
          [=](const Stream& s, const auto& o, const auto& i) {
            return embedding_backward(s, o[0], o[1], i[0], ids(i[1]), b, t, c, vocab);
          }};
}

// The cross-entropy: the sums of exponentials and the mean in double on both, in different
// orders; the gradient is one expf per logit.
constexpr Tolerance kLoss{1e-6, 1e-5};
constexpr Tolerance kLossGrad{1e-7, 1e-5};

OpCase cross_entropy_forward_case(std::int64_t n, std::int64_t vocab) {
  const auto rows = static_cast<std::size_t>(n);
  return {"cross_entropy_forward" + shape_name(n, vocab),
          [=] {  // logits (N, V), targets (N)
            return Tensors{random_floats(rows * static_cast<std::size_t>(vocab), 106, 0.0f, 4.0f),
                           ids_as_floats(rows, vocab, 107)};
          },
          {1, rows},  // loss, lse (N)
          {kLoss, kLoss},
          [=](const Stream& s, const auto& o, const auto& i) {
            return cross_entropy_forward(s, o[0], o[1], i[0], ids(i[1]), n, vocab);
          }};
}

OpCase cross_entropy_backward_case(std::int64_t n, std::int64_t vocab) {
  const auto rows = static_cast<std::size_t>(n), nv = static_cast<std::size_t>(n * vocab);
  return {"cross_entropy_backward" + shape_name(n, vocab),
          [=] {  // logits (N, V), lse (N) from the CPU forward, targets (N)
            Tensors in{random_floats(nv, 108, 0.0f, 4.0f), std::vector<float>(rows),
                       ids_as_floats(rows, vocab, 109)};
            float loss = 0;
            cross_entropy_forward(Stream::cpu(), &loss, in[1].data(), in[0].data(),
                                  ids(in[2].data()), n, vocab);
            return in;
          },
          {nv},
          {kLossGrad},
          [=](const Stream& s, const auto& o, const auto& i) {
            return cross_entropy_backward(s, o[0], i[0], i[1], ids(i[2]), n, vocab, 1.0f);
          }};
}

// The fused attention: an online softmax over keys in order (CUDA, one row per thread) against
// the CPU's 64 x 64 blocks; the backward recomputes the probabilities from lse on both.
constexpr Tolerance kAttention{2e-5, 1e-4};

std::string attention_shape(std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  return "_b" + std::to_string(b) + "_t" + std::to_string(t) + "_c" + std::to_string(c) + "_h" +
         std::to_string(h);
}

OpCase flash_attention_forward_case(std::int64_t b, std::int64_t t, std::int64_t c,
                                    std::int64_t h) {
  const auto rows = static_cast<std::size_t>(b * t);
  const auto cc = static_cast<std::size_t>(c), heads = static_cast<std::size_t>(b * h * t);
  return {"flash_attention_forward" + attention_shape(b, t, c, h),
          [=] { return Tensors{random_floats(rows * 3 * cc, 111)}; },  // qkv (B, T, 3C)
          {rows * cc, heads},                                          // out (B, T, C), lse
          {kAttention, kAttention},
          [=](const Stream& s, const auto& o, const auto& i) {
            return flash_attention_forward(s, o[0], o[1], i[0], b, t, c, h);
          }};
}

OpCase flash_attention_backward_case(std::int64_t b, std::int64_t t, std::int64_t c,
                                     std::int64_t h) {
  const auto rows = static_cast<std::size_t>(b * t);
  const auto cc = static_cast<std::size_t>(c), heads = static_cast<std::size_t>(b * h * t);
  return {"flash_attention_backward" + attention_shape(b, t, c, h),
          [=] {  // dout (B, T, C), qkv (B, T, 3C), out and lse from the CPU forward
            Tensors in{random_floats(rows * cc, 112), random_floats(rows * 3 * cc, 113),
                       std::vector<float>(rows * cc), std::vector<float>(heads)};
            flash_attention_forward(Stream::cpu(), in[2].data(), in[3].data(), in[1].data(), b, t,
                                    c, h);
            return in;
          },
          {rows * 3 * cc},  // d(qkv)
          {kAttention},
          [=](const Stream& s, const auto& o, const auto& i) {
            return flash_attention_backward(s, o[0], i[0], i[1], i[2], i[3], b, t, c, h);
          }};
}

// The shards of parallel_ops.hpp: tokens of a vocabulary of `vocab`, this shard its rows
// [first, first + rows). The gathers and scatter-adds are exact (the rows in order, per
// column); the statistics sum exponentials in double in other orders.
std::vector<OpCase> shard_cases(std::int64_t n, std::int64_t c, std::int64_t vocab,
                                std::int64_t first, std::int64_t rows) {
  const auto nc = static_cast<std::size_t>(n * c), shard = static_cast<std::size_t>(rows * c);
  const auto un = static_cast<std::size_t>(n), logits = static_cast<std::size_t>(n * rows);
  const std::string shape = shape_name(n, c) + "_v" + std::to_string(vocab) + "_first" +
                            std::to_string(first) + "_rows" + std::to_string(rows);
  const std::int64_t t = 5;  // position table rows; the slice starts at row 3
  const auto table = static_cast<std::size_t>(t * c);
  std::vector<OpCase> out;
  out.push_back({"embedding_shard_forward" + shape,
                 [=] {
                   return Tensors{ids_as_floats(un, vocab, 121), random_floats(shard, 122)};
                 },
                 {nc},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return embedding_shard_forward(s, o[0], ids(i[0]), i[1], first, rows, n, c);
                 }});
  out.push_back({"embedding_shard_backward" + shape,
                 [=] {
                   return Tensors{random_floats(nc, 123), ids_as_floats(un, vocab, 124)};
                 },
                 {shard},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return embedding_shard_backward(s, o[0], i[0], ids(i[1]), first, rows, n, c);
                 },
                 [=] { return Tensors{random_floats(shard, 125)}; }});
  out.push_back({"add_positions" + shape,
                 [=] { return Tensors{random_floats(table, 126)}; },
                 {nc},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return add_positions(s, o[0], i[0], 3, n, t, c);
                 },
                 [=] { return Tensors{random_floats(nc, 127)}; }});
  out.push_back({"positions_backward" + shape,
                 [=] { return Tensors{random_floats(nc, 128)}; },
                 {table},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return positions_backward(s, o[0], i[0], 3, n, t, c);
                 },
                 [=] { return Tensors{random_floats(table, 129)}; }});
  out.push_back(
      {"softmax_stats" + shape,
       [=] {
         return Tensors{random_floats(logits, 130, 0.0f, 4.0f), ids_as_floats(un, vocab, 131)};
       },
       {3 * un},
       {kLoss},
       [=](const Stream& s, const auto& o, const auto& i) {
         return softmax_stats(s, o[0], i[0], ids(i[1]), first, rows, n);
       }});
  // Combined statistics as softmax_stats writes them (on the CPU), for the ops that read them.
  auto with_stats = [=](std::uint32_t seed) {
    Tensors in{random_floats(logits, seed, 0.0f, 4.0f), std::vector<float>(3 * un),
               ids_as_floats(un, vocab, seed + 1)};
    softmax_stats(Stream::cpu(), in[1].data(), in[0].data(), ids(in[2].data()), first, rows, n);
    return in;
  };
  out.push_back({"cross_entropy_from_stats" + shape,
                 [=] { return with_stats(132); },
                 {un, 1},
                 {kLoss, kLoss},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return cross_entropy_from_stats(s, o[0], o[1], i[1], n);
                 }});
  out.push_back({"cross_entropy_shard_backward_from_stats" + shape,
                 [=] { return with_stats(134); },
                 {logits},
                 {kLossGrad},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return cross_entropy_shard_backward_from_stats(s, o[0], i[0], i[1], ids(i[2]),
                                                                  first, rows, n, 0.25f);
                 }});
  out.push_back({"cross_entropy_shard_backward" + shape,
                 [=] {
                   Tensors in = with_stats(136);
                   std::vector<float> lse(un);
                   float loss_sum = 0;
                   cross_entropy_from_stats(Stream::cpu(), lse.data(), &loss_sum, in[1].data(), n);
                   in[1] = lse;
                   return in;
                 },
                 {logits},
                 {kLossGrad},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return cross_entropy_shard_backward(s, o[0], i[0], i[1], ids(i[2]), first, rows,
                                                       n, 0.25f);
                 }});
  return out;
}

// The unfused attention: the softmax of each row in the CPU's order (max, exp and sum, scale);
// the products in other orders (Eigen's GEMMs on the CPU).
OpCase attention_forward_case(std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const auto rows = static_cast<std::size_t>(b * t), cc = static_cast<std::size_t>(c);
  const auto att = static_cast<std::size_t>(b * h * t * t);
  return {"attention_forward" + attention_shape(b, t, c, h),
          [=] { return Tensors{random_floats(rows * 3 * cc, 114)}; },  // qkv
          {rows * cc, att},                                            // out, att (B, H, T, T)
          {kAttention, kAttention},
          [=](const Stream& s, const auto& o, const auto& i) {
            return attention_forward(s, o[0], o[1], i[0], b, t, c, h);
          }};
}

OpCase attention_backward_case(std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const auto rows = static_cast<std::size_t>(b * t), cc = static_cast<std::size_t>(c);
  const auto att = static_cast<std::size_t>(b * h * t * t);
  return {"attention_backward" + attention_shape(b, t, c, h),
          [=] {  // dout, qkv, att from the CPU forward
            Tensors in{random_floats(rows * cc, 115), random_floats(rows * 3 * cc, 116),
                       std::vector<float>(att)};
            std::vector<float> out(rows * cc);
            attention_forward(Stream::cpu(), out.data(), in[2].data(), in[1].data(), b, t, c, h);
            return in;
          },
          {rows * 3 * cc},
          {kAttention},
          [=](const Stream& s, const auto& o, const auto& i) {
            return attention_backward(s, o[0], i[0], i[1], i[2], b, t, c, h);
          }};
}

OpCase swiglu_forward_case(std::int64_t n, std::int64_t f) {
  const auto x = static_cast<std::size_t>(n * 2 * f), y = static_cast<std::size_t>(n * f);
  return {"swiglu_forward" + shape_name(n, f),
          [=] { return Tensors{random_floats(x, 74, 0, 3)}; },
          {y},
          {kPointwise},
          [=](const Stream& s, const auto& o, const auto& i) {
            return swiglu_forward(s, o[0], i[0], n, f);
          }};
}

OpCase swiglu_backward_case(std::int64_t n, std::int64_t f) {
  const auto x = static_cast<std::size_t>(n * 2 * f), y = static_cast<std::size_t>(n * f);
  return {"swiglu_backward" + shape_name(n, f),
          [=] {
            return Tensors{random_floats(y, 75), random_floats(x, 76, 0, 3)};
          },  // dout, x
          {x},
          {kPointwise},
          [=](const Stream& s, const auto& o, const auto& i) {
            return swiglu_backward(s, o[0], i[0], i[1], n, f);
          }};
}

OpCase adamw_case(std::int64_t n, std::int64_t step) {
  const auto size = static_cast<std::size_t>(n);
  OpCase op{"adamw_step_n" + std::to_string(n) + "_step" + std::to_string(step),
            [=] { return Tensors{random_floats(size, 77)}; },  // grads
            {size, size, size},                                // params, m, v (updated)
            {kPointwise, kPointwise, kPointwise},
            [=](const Stream& s, const auto& o, const auto& i) {
              AdamWOptions options;
              options.lr = 3e-4f;
              options.weight_decay = 0.1f;
              return adamw_step(s, o[0], o[1], o[2], i[0], n, step, options);
            }};
  op.initial_outputs = [=] {
    std::vector<float> v = random_floats(size, 80, 0.0f, 0.01f);
    for (float& e : v) e = e * e;  // a second moment is not negative
    return Tensors{random_floats(size, 78), random_floats(size, 79, 0.0f, 0.1f), v};
  };
  return op;
}

// The element-wise ops compute one formula per element in the CPU's order (the bias gradient
// adds the rows in order on both): bit-identical.
std::vector<OpCase> elementwise_cases(std::int64_t rows, std::int64_t c) {
  const auto nc = static_cast<std::size_t>(rows * c), cols = static_cast<std::size_t>(c);
  const std::string shape = shape_name(rows, c);
  std::vector<OpCase> out;
  out.push_back({"add_inplace" + shape,
                 [=] { return Tensors{random_floats(nc, 81)}; },
                 {nc},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return add_inplace(s, o[0], i[0], rows * c);
                 },
                 [=] { return Tensors{random_floats(nc, 82)}; }});
  out.push_back({"scale_inplace" + shape,
                 [] { return Tensors{}; },
                 {nc},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto&) {
                   return scale_inplace(s, o[0], -0.37f, rows * c);
                 },
                 [=] { return Tensors{random_floats(nc, 83)}; }});
  out.push_back({"add_residual_bias" + shape,
                 [=] {
                   return Tensors{random_floats(nc, 84), random_floats(cols, 85)};
                 },
                 {nc},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return add_residual_bias(s, o[0], i[0], i[1], rows, c);
                 },
                 [=] { return Tensors{random_floats(nc, 86)}; }});
  out.push_back({"bias_backward" + shape,
                 [=] { return Tensors{random_floats(nc, 87)}; },
                 {cols},
                 {kExact},
                 [=](const Stream& s, const auto& o, const auto& i) {
                   return bias_backward(s, o[0], i[0], rows, c);
                 },
                 [=] { return Tensors{random_floats(cols, 88)}; }});
  // A block of columns 1 .. c-1 of rows c wide into rows c + 3 wide, at column 2.
  const auto wide = static_cast<std::size_t>(rows * (c + 3));
  if (c > 1) {
    out.push_back({"copy_columns" + shape,
                   [=] { return Tensors{random_floats(nc, 89)}; },
                   {wide},
                   {kExact},
                   [=](const Stream& s, const auto& o, const auto& i) {
                     return copy_columns(s, o[0] + 2, c + 3, i[0] + 1, c, rows, c - 1, true);
                   },
                   [=] { return Tensors{random_floats(wide, 90)}; }});
  }
  return out;
}

// --- Attention over rows with explicit positions (context parallelism) -----------------------
// Rank `rank` of a cp-way layout of sequences of length t: its queries (in a qkv tensor, ldq
// 3C) against another rank's keys and values (a kv tensor, ldkv 2C) or every rank's gathered
// (a qkv tensor of all rows, ldkv 3C); forward with and without merging into the attention over
// the rank's own keys; backward from the final out and lse, with and without accumulation.
// Tolerances as the fused attention's: an online softmax key by key against the CPU's blocks.
struct CpLayout {
  std::int64_t b, t, c, h;
  int cp, rank, other;  // other: the ring step's key owner, or -1 for every rank's keys
  std::int64_t tq() const { return t / cp; }
  std::int64_t tk() const { return other < 0 ? t : t / cp; }
  std::int64_t ldkv() const { return other < 0 ? 3 * c : 2 * c; }
  std::vector<AttentionSegment> q_segments() const {
    return context_parallel_segments(t, cp, rank);
  }
  std::vector<AttentionSegment> kv_segments() const {
    return other < 0 ? context_parallel_gathered_segments(t, cp)
                     : context_parallel_segments(t, cp, other);
  }
  std::string name() const {
    std::string n = "_b" + std::to_string(b) + "t" + std::to_string(t) + "c" + std::to_string(c);
    n += "h" + std::to_string(h) + "cp" + std::to_string(cp) + "r" + std::to_string(rank);
    n += other < 0 ? std::string("all") : "k" + std::to_string(other);
    return n;
  }
};

// out and lse of the rank's queries over its own keys (CPU), to merge into.
Tensors own_attention(const CpLayout& l, const std::vector<float>& q) {
  const auto rows = static_cast<std::size_t>(l.b * l.tq());
  Tensors o{std::vector<float>(rows * l.c), std::vector<float>(rows / l.tq() * l.h * l.tq())};
  attention_segments_forward(Stream::cpu(), o[0].data(), o[1].data(), q.data(), 3 * l.c,
                             q.data() + l.c, q.data() + 2 * l.c, 3 * l.c, l.b, l.tq(), l.tq(),
                             l.q_segments(), l.q_segments(), l.c, l.h, false);
  return o;
}

OpCase segments_forward_case(const CpLayout& l, bool merge) {
  const auto q_size = static_cast<std::size_t>(l.b * l.tq() * 3 * l.c);
  const auto kv_size = static_cast<std::size_t>(l.b * l.tk() * l.ldkv());
  const auto out_size = static_cast<std::size_t>(l.b * l.tq() * l.c);
  const auto lse_size = static_cast<std::size_t>(l.b * l.h * l.tq());
  OpCase op{std::string("attention_segments_forward") + (merge ? "_merge" : "") + l.name(),
            [=] { return Tensors{random_floats(q_size, 111), random_floats(kv_size, 112)}; },
            {out_size, lse_size},
            {kAttention, kAttention},
            [=](const Stream& s, const auto& o, const auto& i) {
              return attention_segments_forward(s, o[0], o[1], i[0], 3 * l.c, i[1],
                                                i[1] + l.c, l.ldkv(), l.b, l.tq(), l.tk(),
                                                l.q_segments(), l.kv_segments(), l.c, l.h, merge);
            }};
  if (merge) op.initial_outputs = [=] { return own_attention(l, random_floats(q_size, 111)); };
  return op;
}

OpCase segments_backward_case(const CpLayout& l, bool accumulate) {
  const auto q_size = static_cast<std::size_t>(l.b * l.tq() * 3 * l.c);
  const auto kv_size = static_cast<std::size_t>(l.b * l.tk() * l.ldkv());
  const auto out_size = static_cast<std::size_t>(l.b * l.tq() * l.c);
  return {std::string("attention_segments_backward") + (accumulate ? "_accumulate" : "") +
              l.name(),
          [=] {  // dout, q (in qkv), kv; out and lse over the union of own and this call's keys
            Tensors t{random_floats(out_size, 113), random_floats(q_size, 111),
                      random_floats(kv_size, 112)};
            Tensors o = own_attention(l, t[1]);
            attention_segments_forward(Stream::cpu(), o[0].data(), o[1].data(), t[1].data(),
                                       3 * l.c, t[2].data(), t[2].data() + l.c, l.ldkv(), l.b,
                                       l.tq(), l.tk(), l.q_segments(), l.kv_segments(), l.c, l.h,
                                       true);
            t.push_back(o[0]);
            t.push_back(o[1]);
            return t;
          },
          {q_size, kv_size},  // dq in its qkv rows (columns beyond C untouched), d(kv)
          {kAttention, kAttention},
          [=](const Stream& s, const auto& o, const auto& i) {
            return attention_segments_backward(
                s, o[0], 3 * l.c, o[1], o[1] + l.c, l.ldkv(), i[0], i[1], 3 * l.c, i[2],
                i[2] + l.c, l.ldkv(), i[3], i[4], l.b, l.tq(), l.tk(), l.q_segments(),
                l.kv_segments(), l.c, l.h, accumulate, accumulate);
          },
          // Every element starts the same on both backends (untouched columns, accumulation).
          [=] { return Tensors{random_floats(q_size, 114), random_floats(kv_size, 115)}; }};
}

std::vector<OpCase> segments_cases() {
  std::vector<OpCase> cases;
  const CpLayout layouts[] = {{1, 4, 4, 2, 2, 1, 0},    {2, 32, 24, 3, 2, 1, 0},
                              {2, 32, 24, 3, 2, 0, 1},  {1, 256, 128, 2, 4, 2, 3},
                              {2, 48, 24, 3, 2, 0, -1}, {1, 256, 64, 1, 4, 3, -1}};
  for (const CpLayout& l : layouts) {
    cases.push_back(segments_forward_case(l, false));
    cases.push_back(segments_forward_case(l, true));
    cases.push_back(segments_backward_case(l, false));
    cases.push_back(segments_backward_case(l, true));
  }
  return cases;
}

// --- bf16 ------------------------------------------------------------------------------------
// Each bf16 case is an fp32 case's inputs and shapes with its tensors stored as bf16 (the masks)
// and the op's bf16 overload run on them. Both backends compute in fp32 and round each stored
// element once (bf16_ops.hpp), so they differ where their fp32 results do plus at most about
// one bf16 step (2^-8 relative): within 1e-2. Conversions round to nearest even on both: exact.
constexpr Tolerance kBf16{1e-2, 1e-2};

bf16* bf16_of(float* p) { return reinterpret_cast<bf16*>(p); }
const bf16* bf16_of(const float* p) { return reinterpret_cast<const bf16*>(p); }

using RunFn = std::function<Event(const Stream&, const std::vector<float*>&,
                                  const std::vector<const float*>&)>;

OpCase as_bf16(OpCase op, std::vector<bool> inputs, std::vector<bool> outputs, RunFn run) {
  op.name = "bf16_" + op.name;
  for (std::size_t i = 0; i < op.tolerances.size(); ++i) {
    if (i < outputs.size() && outputs[i]) op.tolerances[i] = kBf16;
  }
  op.bf16_inputs = std::move(inputs);
  op.bf16_outputs = std::move(outputs);
  op.run = std::move(run);
  return op;
}

std::vector<OpCase> bf16_cases() {
  std::vector<OpCase> cases;
  for (std::int64_t n : {std::int64_t{1}, std::int64_t{1000}, std::int64_t{(1 << 20) + 3}}) {
    cases.push_back(as_bf16(gelu_forward_case(n), {true}, {true},
                            [=](const Stream& s, const auto& o, const auto& i) {
                              return gelu_forward(s, bf16_of(o[0]), bf16_of(i[0]), n);
                            }));
    cases.push_back(as_bf16(gelu_backward_case(n), {true, true}, {true},
                            [=](const Stream& s, const auto& o, const auto& i) {
                              return gelu_backward(s, bf16_of(o[0]), bf16_of(i[0]),
                                                   bf16_of(i[1]), n);
                            }));
    const auto size = static_cast<std::size_t>(n);
    OpCase to{"convert_to_bf16_n" + std::to_string(n),
              [=] { return Tensors{random_floats(size, 24, 0.0f, 3.0f)}; },
              {size},
              {kExact},
              [=](const Stream& s, const auto& o, const auto& i) {
                return convert(s, bf16_of(o[0]), i[0], n);
              }};
    to.bf16_outputs = {true};
    cases.push_back(to);
    OpCase from = to;
    from.name = "convert_from_bf16_n" + std::to_string(n);
    from.bf16_inputs = {true};
    from.bf16_outputs = {};
    from.run = [=](const Stream& s, const auto& o, const auto& i) {
      return convert(s, o[0], bf16_of(i[0]), n);
    };
    cases.push_back(from);
  }
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{1, 1}, {7, 33}, {64, 768}, {257, 96}};
  for (const auto& [n, c] : shapes) {
    // x, gamma, beta -> y (bf16), mean and rstd (fp32).
    cases.push_back(as_bf16(layer_norm_forward_case(n, c), {true, true, true},
                            {true, false, false},
                            [=](const Stream& s, const auto& o, const auto& i) {
                              return layer_norm_forward(s, bf16_of(o[0]), o[1], o[2],
                                                        bf16_of(i[0]), bf16_of(i[1]),
                                                        bf16_of(i[2]), n, c);
                            }));
    // dy, x, gamma (bf16), mean, rstd (fp32) -> dx, dgamma, dbeta (bf16).
    for (bool accumulate : {false, true}) {
      OpCase base = accumulate ? layer_norm_backward_accumulate_case(n, c)
                               : layer_norm_backward_case(n, c);
      cases.push_back(as_bf16(base, {true, true, true, false, false}, {true, true, true},
                              [=](const Stream& s, const auto& o, const auto& i) {
                                return layer_norm_backward(
                                    s, bf16_of(o[0]), bf16_of(o[1]), bf16_of(o[2]), bf16_of(i[0]),
                                    bf16_of(i[1]), bf16_of(i[2]), i[3], i[4], n, c, accumulate);
                              }));
    }
    const auto nc = static_cast<std::size_t>(n * c);
    OpCase add{"add_inplace" + shape_name(n, c),
               [=] { return Tensors{random_floats(nc, 81)}; },
               {nc},
               {kExact},
               nullptr,
               [=] { return Tensors{random_floats(nc, 82)}; }};
    cases.push_back(as_bf16(add, {true}, {true},
                            [=](const Stream& s, const auto& o, const auto& i) {
                              return add_inplace(s, bf16_of(o[0]), bf16_of(i[0]), n * c);
                            }));
  }
  const std::int64_t gemms[][3] = {{1, 1, 1}, {7, 33, 5}, {64, 768, 2304}, {257, 96, 1031}};
  for (const auto& g : gemms) {
    const std::int64_t n = g[0], in = g[1], out = g[2];
    for (bool flag : {false, true}) {
      cases.push_back(as_bf16(linear_forward_case(n, in, out, flag), {true, true, true}, {true},
                              [=](const Stream& s, const auto& o, const auto& i) {
                                return linear_forward(s, bf16_of(o[0]), bf16_of(i[0]),
                                                      bf16_of(i[1]),
                                                      flag ? bf16_of(i[2]) : nullptr, n, in, out);
                              }));
      cases.push_back(as_bf16(linear_backward_data_case(n, in, out, flag), {true, true}, {true},
                              [=](const Stream& s, const auto& o, const auto& i) {
                                return linear_backward_data(s, bf16_of(o[0]), bf16_of(i[0]),
                                                            bf16_of(i[1]), n, in, out, flag);
                              }));
      cases.push_back(as_bf16(linear_backward_weight_case(n, in, out, flag), {true, true},
                              {true, true},
                              [=](const Stream& s, const auto& o, const auto& i) {
                                return linear_backward_weight(s, bf16_of(o[0]), bf16_of(o[1]),
                                                              bf16_of(i[0]), bf16_of(i[1]), n, in,
                                                              out, flag);
                              }));
    }
  }
  return cases;
}

// --- Mixture of experts -----------------------------------------------------------------------

// The router: exp in double on both backends (each within an ulp), one rounding to fp32; the
// selection compares logits, so the indices agree exactly. Its backward sums in double over E.
// The permutation copies rows and the permute backward adds them in the CPU's order: exact. The
// combine is a multiply-add per slot (the device may fuse it); dtopk_w sums exact double products
// in the same order. The grouped GEMMs: fp32 dot products in index order on the device against
// Eigen's blocked products (kGemm, as the linear layer).
constexpr Tolerance kRouter{1e-7, 1e-6};
constexpr Tolerance kRouterGrad{1e-6, 1e-5};
constexpr Tolerance kCombine{1e-6, 1e-5};

std::vector<float> ints_as_floats(const std::vector<std::int32_t>& v) {
  std::vector<float> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(std::int32_t));
  return out;
}

std::int32_t* int_ids(float* p) { return reinterpret_cast<std::int32_t*>(p); }

// The CPU router's outputs on random logits, and the CPU permutation of those choices: the
// inputs of the ops that follow them in a layer.
struct Routing {
  std::vector<float> probs, w;
  std::vector<std::int32_t> idx, row_of;
};
Routing cpu_routing(std::int64_t n, std::int64_t e, std::int64_t k, bool normalize, std::int64_t c,
                    std::int64_t r_max, std::int64_t capacity) {
  const Stream cpu = Stream::cpu();
  Routing r{std::vector<float>(n * e), std::vector<float>(n * k), std::vector<std::int32_t>(n * k),
            std::vector<std::int32_t>(n * k)};
  const std::vector<float> logits = random_floats(static_cast<std::size_t>(n * e), 201, 0.0f, 2.0f);
  moe_router_forward(cpu, r.probs.data(), r.idx.data(), r.w.data(), logits.data(), n, e, k,
                     normalize);
  std::vector<float> rows(r_max * c), x(n * c);
  std::vector<std::int32_t> counts(e);
  moe_permute_forward(cpu, rows.data(), r.row_of.data(), counts.data(), x.data(), r.idx.data(),
                      r.w.data(), n, c, e, k, r_max, capacity);
  return r;
}

std::vector<OpCase> moe_cases(std::int64_t n, std::int64_t e, std::int64_t k, std::int64_t c) {
  const std::string shape = shape_name(n, e) + "k" + std::to_string(k) + "c" + std::to_string(c);
  const auto ne = static_cast<std::size_t>(n * e), nk = static_cast<std::size_t>(n * k);
  const auto nc = static_cast<std::size_t>(n * c);
  std::vector<OpCase> cases;
  for (const bool normalize : {false, true}) {
    const std::string norm = normalize ? "_norm" : "";
    cases.push_back({"moe_router_forward" + shape + norm,
                     [=] { return Tensors{random_floats(ne, 201, 0.0f, 2.0f)}; },
                     {ne, nk, nk},  // probs, topk_idx, topk_w
                     {kRouter, kExact, kRouter},
                     [=](const Stream& s, const auto& o, const auto& i) {
                       return moe_router_forward(s, o[0], int_ids(o[1]), o[2], i[0], n, e, k,
                                                 normalize);
                     },
                     nullptr,
                     {},
                     {},
                     {false, true, false}});
    for (const float aux : {0.0f, 0.01f}) {
      cases.push_back({"moe_router_backward" + shape + norm + (aux > 0 ? "_aux" : ""),
                       [=] {  // dtopk_w, probs, topk_idx
                         const Routing r = cpu_routing(n, e, k, normalize, 1, n * k, 0);
                         return Tensors{random_floats(nk, 202), r.probs, ints_as_floats(r.idx)};
                       },
                       {ne},
                       {kRouterGrad},
                       [=](const Stream& s, const auto& o, const auto& i) {
                         return moe_router_backward(s, o[0], i[0], i[1], ids(i[2]), n, e, k,
                                                    normalize, aux, 2.0f);
                       }});
    }
  }
  // Dropless, and a capacity that drops about half of the choices.
  const std::int64_t tight = std::max<std::int64_t>(1, n * k / e / 2);
  for (const std::int64_t capacity : {std::int64_t{0}, tight}) {
    const std::int64_t r_max = capacity == 0 ? n * k : std::min(n * k, e * capacity);
    const auto rc = static_cast<std::size_t>(r_max * c);
    const std::string cap = shape + "_cap" + std::to_string(capacity);
    const auto routing = [=] { return cpu_routing(n, e, k, true, c, r_max, capacity); };
    cases.push_back({"moe_permute_forward" + cap,
                     [=] {  // x, topk_idx, topk_w
                       const Routing r = routing();
                       return Tensors{random_floats(nc, 203), ints_as_floats(r.idx), r.w};
                     },
                     {rc, nk, static_cast<std::size_t>(e)},  // rows, row_of, counts
                     {kExact, kExact, kExact},
                     [=](const Stream& s, const auto& o, const auto& i) {
                       return moe_permute_forward(s, o[0], int_ids(o[1]), int_ids(o[2]), i[0],
                                                  ids(i[1]), i[2], n, c, e, k, r_max, capacity);
                     },
                     nullptr,
                     {},
                     {},
                     {false, true, true}});
    for (const bool accumulate : {false, true}) {
      const std::string acc = accumulate ? "_accumulate" : "";
      OpCase back{"moe_permute_backward" + cap + acc,
                  [=] {  // drows, row_of
                    return Tensors{random_floats(rc, 204), ints_as_floats(routing().row_of)};
                  },
                  {nc},
                  {kExact},
                  [=](const Stream& s, const auto& o, const auto& i) {
                    return moe_permute_backward(s, o[0], i[0], ids(i[1]), n, c, k, r_max,
                                                accumulate);
                  }};
      OpCase combine{"moe_unpermute_forward" + cap + acc,
                     [=] {  // rows, row_of, topk_w
                       const Routing r = routing();
                       return Tensors{random_floats(rc, 205), ints_as_floats(r.row_of), r.w};
                     },
                     {nc},
                     {kCombine},
                     [=](const Stream& s, const auto& o, const auto& i) {
                       return moe_unpermute_forward(s, o[0], i[0], ids(i[1]), i[2], n, c, k, r_max,
                                                    accumulate);
                     }};
      if (accumulate) {
        back.initial_outputs = [=] { return Tensors{random_floats(nc, 206)}; };
        combine.initial_outputs = back.initial_outputs;
      }
      cases.push_back(std::move(back));
      cases.push_back(std::move(combine));
    }
    cases.push_back({"moe_unpermute_backward" + cap,
                     [=] {  // dy, rows, row_of, topk_w
                       const Routing r = routing();
                       return Tensors{random_floats(nc, 207), random_floats(rc, 208),
                                      ints_as_floats(r.row_of), r.w};
                     },
                     {rc, nk},  // drows, dtopk_w
                     {kExact, kRouter},
                     [=](const Stream& s, const auto& o, const auto& i) {
                       return moe_unpermute_backward(s, o[0], o[1], i[0], i[1], ids(i[2]), i[3], n,
                                                     c, k, r_max);
                     }});
  }
  return cases;
}

// The grouped GEMMs over segments of `counts` rows (an empty one among them), weight s % G.
std::vector<OpCase> grouped_linear_cases(const std::vector<std::int32_t>& counts,
                                         std::int64_t groups, std::int64_t in, std::int64_t out,
                                         std::int64_t r) {
  const std::int64_t segments = static_cast<std::int64_t>(counts.size());
  const std::string shape = "_s" + std::to_string(segments) + "g" + std::to_string(groups) +
                            shape_name(r, in) + "x" + std::to_string(out);
  const auto rin = static_cast<std::size_t>(r * in), rout = static_cast<std::size_t>(r * out);
  const auto w = static_cast<std::size_t>(groups * out * in);
  const std::vector<float> seg = ints_as_floats(counts);
  std::vector<OpCase> cases;
  cases.push_back({"grouped_linear_forward" + shape,
                   [=] {
                     return Tensors{random_floats(rin, 211), random_floats(w, 212), seg};
                   },
                   {rout},
                   {kGemm},
                   [=](const Stream& s, const auto& o, const auto& i) {
                     return grouped_linear_forward(s, o[0], i[0], i[1], ids(i[2]), segments, groups,
                                                   in, out, r);
                   }});
  cases.push_back({"grouped_linear_backward_data" + shape,
                   [=] {
                     return Tensors{random_floats(rout, 213), random_floats(w, 214), seg};
                   },
                   {rin},
                   {kGemm},
                   [=](const Stream& s, const auto& o, const auto& i) {
                     return grouped_linear_backward_data(s, o[0], i[0], i[1], ids(i[2]), segments,
                                                         groups, in, out, r);
                   }});
  for (const bool accumulate : {false, true}) {
    OpCase op{"grouped_linear_backward_weight" + shape + (accumulate ? "_accumulate" : ""),
              [=] {
                return Tensors{random_floats(rout, 215), random_floats(rin, 216), seg};
              },
              {w},
              {kGemm},
              [=](const Stream& s, const auto& o, const auto& i) {
                return grouped_linear_backward_weight(s, o[0], i[0], i[1], ids(i[2]), segments,
                                                      groups, in, out, r, accumulate);
              }};
    if (accumulate) op.initial_outputs = [=] { return Tensors{random_floats(w, 217)}; };
    cases.push_back(std::move(op));
  }
  return cases;
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cases;
  // 2^24 + 4099 elements: beyond the CUDA grid cap, so the grid-stride loop wraps.
  for (std::int64_t n : {std::int64_t{1}, std::int64_t{1000}, std::int64_t{(1 << 20) + 3},
                         std::int64_t{(1 << 24) + 4099}}) {
    cases.push_back(gelu_forward_case(n));
    if (n < (1 << 24)) cases.push_back(gelu_backward_case(n));
  }
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{1, 1},    {7, 33},   {64, 768},
                                                          {3, 4097}, {257, 96}, {512, 1024}};
  for (const auto& [n, c] : shapes) {
    cases.push_back(layer_norm_forward_case(n, c));
    cases.push_back(layer_norm_backward_case(n, c));
    cases.push_back(layer_norm_backward_accumulate_case(n, c));
  }
  // (N, IN, OUT): odd sizes, a GPT-2 block's, and a reduction over many rows.
  const std::int64_t gemms[][3] = {{1, 1, 1}, {7, 33, 5}, {64, 768, 2304}, {257, 96, 1031}};
  for (const auto& g : gemms) {
    for (bool flag : {false, true}) {
      cases.push_back(linear_forward_case(g[0], g[1], g[2], flag));
      cases.push_back(linear_backward_data_case(g[0], g[1], g[2], flag));
      cases.push_back(linear_backward_weight_case(g[0], g[1], g[2], flag));
    }
    cases.push_back(linear_backward_case(g[0], g[1], g[2]));
  }
  for (const auto& [n, c] : shapes) {
    cases.push_back(rms_norm_forward_case(n, c));
    cases.push_back(rms_norm_backward_case(n, c, false));
    cases.push_back(rms_norm_backward_case(n, c, true));
    cases.push_back(swiglu_forward_case(n, c));
    cases.push_back(swiglu_backward_case(n, c));
    for (OpCase& op : elementwise_cases(n, c)) cases.push_back(std::move(op));
  }
  // (B, T, C, V): one token, odd sizes, a GPT-2-like vocabulary.
  const std::int64_t embeddings[][4] = {{1, 1, 1, 1}, {3, 7, 33, 11}, {2, 64, 768, 50304}};
  for (const auto& e : embeddings) {
    cases.push_back(embedding_forward_case(e[0], e[1], e[2], e[3]));
    cases.push_back(embedding_backward_case(e[0], e[1], e[2], e[3]));
  }
  // (B, T, C, H): one row, odd head sizes and lengths, GPT-2's head (64), a long sequence.
  const std::int64_t attentions[][4] = {
      {1, 1, 4, 2}, {2, 17, 24, 3}, {1, 130, 64, 1}, {2, 256, 128, 2}, {1, 1024, 64, 1}};
  for (const auto& a : attentions) {
    cases.push_back(flash_attention_forward_case(a[0], a[1], a[2], a[3]));
    cases.push_back(flash_attention_backward_case(a[0], a[1], a[2], a[3]));
    if (a[1] <= 256) {  // the unfused ops store (B, H, T, T)
      cases.push_back(attention_forward_case(a[0], a[1], a[2], a[3]));
      cases.push_back(attention_backward_case(a[0], a[1], a[2], a[3]));
    }
  }
  const std::pair<std::int64_t, std::int64_t> losses[] = {{1, 1}, {7, 33}, {64, 50304}};
  for (const auto& [n, v] : losses) {
    cases.push_back(cross_entropy_forward_case(n, v));
    cases.push_back(cross_entropy_backward_case(n, v));
  }
  // (N, C, vocab, first, rows): the whole vocabulary, a middle shard, a GPT-2-sized one.
  const std::int64_t shards[][5] = {
      {1, 1, 1, 0, 1}, {9, 33, 40, 10, 13}, {64, 96, 50304, 25152, 25152}};
  for (const auto& v : shards) {
    for (OpCase& op : shard_cases(v[0], v[1], v[2], v[3], v[4])) cases.push_back(std::move(op));
  }
  for (std::int64_t n : {std::int64_t{1}, std::int64_t{1000}, std::int64_t{(1 << 20) + 3}}) {
    cases.push_back(adamw_case(n, 1));
    cases.push_back(adamw_case(n, 1000));
  }
  for (OpCase& op : segments_cases()) cases.push_back(std::move(op));
  for (OpCase& op : bf16_cases()) cases.push_back(std::move(op));
  // (N, E, k, C): one token and expert, Mixtral's 8 experts top-2, DeepSeek-like 64 top-6.
  const std::int64_t moes[][4] = {{1, 1, 1, 1}, {64, 8, 2, 33}, {257, 64, 6, 96}};
  for (const auto& m : moes) {
    for (OpCase& op : moe_cases(m[0], m[1], m[2], m[3])) cases.push_back(std::move(op));
  }
  for (OpCase& op : grouped_linear_cases({5, 0, 17, 3, 9, 2}, 3, 33, 17, 40)) {
    cases.push_back(std::move(op));
  }
  for (OpCase& op : grouped_linear_cases({100, 0, 157}, 3, 96, 128, 257)) {
    cases.push_back(std::move(op));
  }
  return cases;
}

// Runs `op` on `stream` from host `inputs` through Buffers on that backend; returns the outputs.
Tensors run_on(const Stream& stream, const OpCase& op, const Tensors& inputs) {
  std::vector<Buffer> in_buffers, out_buffers;
  std::vector<const float*> ins;
  std::vector<float*> outs;
  auto is_bf16 = [](const std::vector<bool>& mask, std::size_t i) {
    return i < mask.size() && mask[i];
  };
  // Host values into a new Buffer, as fp32 or rounded to bf16.
  auto upload = [&](std::vector<Buffer>& into, const std::vector<float>& t, std::size_t size,
                    bool half) {
    into.emplace_back(stream, size * (half ? sizeof(bf16) : sizeof(float)));
    if (t.empty()) return;
    if (half) {
      std::vector<bf16> h(size);
      narrow(h.data(), t.data(), static_cast<std::int64_t>(size));
      copy_to_buffer(stream, into.back(), h.data(), size * sizeof(bf16)).synchronize();
    } else {
      copy_to_buffer(stream, into.back(), t.data(), size * sizeof(float));
    }
  };
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    upload(in_buffers, inputs[i], inputs[i].size(), is_bf16(op.bf16_inputs, i));
    ins.push_back(in_buffers.back().as<float>());
  }
  const Tensors initial = op.initial_outputs ? op.initial_outputs() : Tensors{};
  for (std::size_t i = 0; i < op.output_sizes.size(); ++i) {
    upload(out_buffers, initial.empty() ? std::vector<float>() : initial[i], op.output_sizes[i],
           is_bf16(op.bf16_outputs, i));
    outs.push_back(out_buffers.back().as<float>());
  }
  op.run(stream, outs, ins);
  Tensors outputs;
  for (std::size_t i = 0; i < op.output_sizes.size(); ++i) {
    const std::size_t size = op.output_sizes[i];
    if (is_bf16(op.bf16_outputs, i)) {
      std::vector<bf16> h(size);
      copy_from_buffer(stream, h.data(), out_buffers[i], size * sizeof(bf16)).synchronize();
      outputs.push_back(widen(h.data(), static_cast<std::int64_t>(size)));
      continue;
    }
    outputs.emplace_back(size);
    copy_from_buffer(stream, outputs.back().data(), out_buffers[i], size * sizeof(float));
  }
  stream.synchronize();
  return outputs;
}

bool is_int_output(const OpCase& op, std::size_t i) {
  return i < op.int_outputs.size() && op.int_outputs[i];
}

std::vector<std::int32_t> as_ints(const std::vector<float>& v) {
  std::vector<std::int32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

// Two runs gave the same outputs: floats equal, int32 outputs equal as integers.
void expect_same_outputs(const OpCase& op, const Tensors& a, const Tensors& b) {
  ASSERT_EQ(a.size(), b.size()) << op.name;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (is_int_output(op, i)) {
      EXPECT_EQ(as_ints(a[i]), as_ints(b[i])) << op.name << " output " << i;
    } else {
      EXPECT_EQ(a[i], b[i]) << op.name << " output " << i;
    }
  }
}

class CrossBackend : public ::testing::TestWithParam<OpCase> {};

TEST_P(CrossBackend, CudaMatchesCpu) {
  STRATA_SKIP_WITHOUT_CUDA();
  const OpCase& op = GetParam();
  const Tensors inputs = op.inputs();
  const Tensors want = run_on(Stream::cpu(), op, inputs);
  const Tensors got = run_on(Stream::cuda(0), op, inputs);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (is_int_output(op, i)) {
      EXPECT_EQ(as_ints(got[i]), as_ints(want[i])) << op.name << " output " << i;
      continue;
    }
    expect_close(got[i], want[i], op.tolerances[i].atol, op.tolerances[i].rtol,
                 op.name + " output " + std::to_string(i));
  }
}

// Every case is well formed (its sizes, inputs and seeds fit the op) and the CPU reference is
// deterministic: runs without a GPU, so a malformed case shows before one is lent.
TEST_P(CrossBackend, CpuReferenceRunsAndIsDeterministic) {
  const OpCase& op = GetParam();
  const Tensors inputs = op.inputs();
  const Tensors first = run_on(Stream::cpu(), op, inputs);
  ASSERT_EQ(first.size(), op.output_sizes.size());
  expect_same_outputs(op, first, run_on(Stream::cpu(), op, inputs));
}

TEST_P(CrossBackend, CudaIsDeterministic) {
  STRATA_SKIP_WITHOUT_CUDA();
  const OpCase& op = GetParam();
  const Tensors inputs = op.inputs();
  const Stream cuda = Stream::cuda(0);
  expect_same_outputs(op, run_on(cuda, op, inputs), run_on(cuda, op, inputs));
}

INSTANTIATE_TEST_SUITE_P(Ops, CrossBackend, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& param_info) {
                           return param_info.param.name;
                         });

TEST(CrossBackendEdges, CudaLayerNormBackwardWithNoRowsZeroesParameterGradients) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream cuda = Stream::cuda(0);
  const std::int64_t c = 40;
  const std::vector<float> junk(c, 7.0f), gamma(c, 1.0f);
  Buffer dgamma(cuda, c * sizeof(float)), dbeta(cuda, c * sizeof(float)), g(cuda, c * 4);
  copy_to_buffer(cuda, dgamma, junk.data(), c * sizeof(float));
  copy_to_buffer(cuda, dbeta, junk.data(), c * sizeof(float));
  copy_to_buffer(cuda, g, gamma.data(), c * sizeof(float));
  layer_norm_backward(cuda, nullptr, dgamma.as<float>(), dbeta.as<float>(), nullptr, nullptr,
                      g.as<float>(), nullptr, nullptr, 0, c);
  std::vector<float> dg(c), db(c);
  copy_from_buffer(cuda, dg.data(), dgamma, c * sizeof(float));
  copy_from_buffer(cuda, db.data(), dbeta, c * sizeof(float)).synchronize();
  EXPECT_EQ(dg, std::vector<float>(c, 0.0f));
  EXPECT_EQ(db, std::vector<float>(c, 0.0f));
}

TEST(CrossBackendEdges, CudaLayerNormBackwardAccumulateWithNoRowsLeavesParameterGradients) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream cuda = Stream::cuda(0);
  const std::int64_t c = 40;
  const std::vector<float> old = random_floats(c, 46), gamma(c, 1.0f);
  Buffer dgamma(cuda, c * sizeof(float)), dbeta(cuda, c * sizeof(float)), g(cuda, c * 4);
  copy_to_buffer(cuda, dgamma, old.data(), c * sizeof(float));
  copy_to_buffer(cuda, dbeta, old.data(), c * sizeof(float));
  copy_to_buffer(cuda, g, gamma.data(), c * sizeof(float));
  layer_norm_backward(cuda, nullptr, dgamma.as<float>(), dbeta.as<float>(), nullptr, nullptr,
                      g.as<float>(), nullptr, nullptr, 0, c, true);
  std::vector<float> dg(c), db(c);
  copy_from_buffer(cuda, dg.data(), dgamma, c * sizeof(float));
  copy_from_buffer(cuda, db.data(), dbeta, c * sizeof(float)).synchronize();
  EXPECT_EQ(dg, old);
  EXPECT_EQ(db, old);
}

// On one backend, accumulate gives old + (the overwriting result) bit for bit, as on the CPU.
TEST(CrossBackendEdges, CudaLayerNormBackwardAccumulateIsOldPlusNew) {
  STRATA_SKIP_WITHOUT_CUDA();
  const std::int64_t n = 257, c = 96;
  OpCase plain = layer_norm_backward_case(n, c);
  OpCase accumulating = layer_norm_backward_accumulate_case(n, c);
  const Tensors inputs = plain.inputs();
  const Tensors old = accumulating.initial_outputs();
  const Stream cuda = Stream::cuda(0);
  const Tensors fresh = run_on(cuda, plain, inputs);
  const Tensors added = run_on(cuda, accumulating, inputs);
  EXPECT_EQ(added[0], fresh[0]) << "dx is overwritten either way";
  for (std::size_t o = 1; o < 3; ++o) {
    std::vector<float> want(old[o].size());
    for (std::size_t j = 0; j < want.size(); ++j) want[j] = old[o][j] + fresh[o][j];
    EXPECT_EQ(added[o], want) << "output " << o;
  }
}

TEST(CrossBackendEdges, CudaOpsReturnEventsOnTheirStream) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream cuda = Stream::cuda(0);
  const std::int64_t n = 1 << 16;
  Buffer x(cuda, n * sizeof(float)), y(cuda, n * sizeof(float));
  const std::vector<float> host = random_floats(n, 51);
  copy_to_buffer(cuda, x, host.data(), n * sizeof(float));
  const Event done = gelu_forward(cuda, y.as<float>(), x.as<float>(), n);
  EXPECT_EQ(done.backend(), Backend::kCuda);
  done.synchronize();
  EXPECT_TRUE(done.is_complete());
}

// The aux loss adds into a double in the backend's memory; the terms are summed in the CPU's
// order from the same values, so only the column sums' additions could differ: none do.
TEST(CrossBackendEdges, CudaMoeAuxLossAddsWhatTheCpuAdds) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream cuda = Stream::cuda(0);
  const std::int64_t n = 257, e = 64, k = 6;
  const Routing r = cpu_routing(n, e, k, false, 1, n * k, 0);
  double want = 0.25;
  moe_aux_loss_forward(Stream::cpu(), &want, r.probs.data(), r.idx.data(), n, e, k, 0.01f, 3.0f);
  Buffer probs(cuda, r.probs.size() * sizeof(float));
  Buffer idx(cuda, r.idx.size() * sizeof(std::int32_t));
  Buffer loss(cuda, sizeof(double));
  const double start = 0.25;
  copy_to_buffer(cuda, probs, r.probs.data(), r.probs.size() * sizeof(float));
  copy_to_buffer(cuda, idx, r.idx.data(), r.idx.size() * sizeof(std::int32_t));
  copy_to_buffer(cuda, loss, &start, sizeof start);
  moe_aux_loss_forward(cuda, loss.as<double>(), probs.as<float>(), idx.as<std::int32_t>(), n, e, k,
                       0.01f, 3.0f);
  double got = 0.0;
  copy_from_buffer(cuda, &got, loss, sizeof got).synchronize();
  EXPECT_NEAR(got, want, 1e-12 * want);
  EXPECT_GT(want, start);
}

}  // namespace
}  // namespace strata::kernels
