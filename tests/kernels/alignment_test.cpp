// The CPU ops give bit-identical results wherever their inputs and outputs lie in memory: with
// AVX-512 (64-byte packets) a reduction that started at the first aligned element would sum in
// an order that depends on the address, and two runs of the same training step (whose buffers
// land at different offsets) would differ in the last bit. Ops that update or accumulate into
// an output get it seeded from an input first (as AdamW's parameters are).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/ops.hpp"

namespace {

using strata::kernels::Stream;
namespace k = strata::kernels;

// Copies of `host` at float offsets 0..15 from a 64-byte boundary.
struct Placed {
  std::vector<float> storage;
  float* at = nullptr;
  Placed(const std::vector<float>& host, int offset) : storage(host.size() + 32) {
    auto base = reinterpret_cast<std::uintptr_t>(storage.data());
    base = (base + 63) & ~std::uintptr_t{63};
    at = reinterpret_cast<float*>(base) + offset;
    std::memcpy(at, host.data(), host.size() * sizeof(float));
  }
};

std::vector<float> values(std::size_t n, float seed) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::sin(seed + 0.37f * static_cast<float>(i));
  return v;
}

// Runs `op` on inputs and outputs placed at every offset; every output must equal offset 0's.
void expect_placement_invariant(
    const std::vector<std::vector<float>>& inputs, const std::vector<std::size_t>& output_sizes,
    const std::function<void(const std::vector<float*>&, const std::vector<const float*>&)>& op) {
  std::vector<std::vector<float>> first;
  for (int offset = 0; offset < 16; ++offset) {
    std::vector<Placed> in, out;
    for (const auto& v : inputs) in.emplace_back(v, offset);
    for (std::size_t n : output_sizes)
      out.emplace_back(std::vector<float>(n, 0.0f), (offset * 7) % 16);
    std::vector<const float*> ins;
    std::vector<float*> outs;
    for (auto& p : in) ins.push_back(p.at);
    for (auto& p : out) outs.push_back(p.at);
    op(outs, ins);
    for (std::size_t o = 0; o < output_sizes.size(); ++o) {
      std::vector<float> got(outs[o], outs[o] + output_sizes[o]);
      if (offset == 0) {
        first.push_back(got);
      } else {
        ASSERT_EQ(std::memcmp(got.data(), first[o].data(), got.size() * sizeof(float)), 0)
            << "output " << o << " differs at offset " << offset;
      }
    }
  }
}

TEST(Placement, LinearForwardAndBackward) {
  const std::int64_t n = 37, in = 70, out = 45;
  const auto s = Stream::cpu();
  expect_placement_invariant(
      {values(n * in, 1), values(out * in, 2), values(out, 3)}, {static_cast<std::size_t>(n * out)},
      [&](auto& o, auto& i) { k::linear_forward(s, o[0], i[0], i[1], i[2], n, in, out); });
  expect_placement_invariant({values(n * out, 4), values(n * in, 5), values(out * in, 6)},
                             {static_cast<std::size_t>(n * in), static_cast<std::size_t>(out * in),
                              static_cast<std::size_t>(out)},
                             [&](auto& o, auto& i) {
                               k::linear_backward(s, o[0], o[1], o[2], i[0], i[1], i[2], n, in,
                                                  out);
                             });
}

TEST(Placement, LayerNormForwardAndBackward) {
  const std::int64_t n = 9, c = 70;
  const auto s = Stream::cpu();
  expect_placement_invariant(
      {values(n * c, 1), values(c, 2), values(c, 3)},
      {static_cast<std::size_t>(n * c), static_cast<std::size_t>(n), static_cast<std::size_t>(n)},
      [&](auto& o, auto& i) {
        k::layer_norm_forward(s, o[0], o[1], o[2], i[0], i[1], i[2], n, c);
      });
  std::vector<float> mean(n), rstd(n), y(n * c);
  const auto x = values(n * c, 5), g = values(c, 6), b = values(c, 7);
  k::layer_norm_forward(s, y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), n, c);
  expect_placement_invariant(
      {values(n * c, 4), x, g, mean, rstd},
      {static_cast<std::size_t>(n * c), static_cast<std::size_t>(c), static_cast<std::size_t>(c)},
      [&](auto& o, auto& i) {
        k::layer_norm_backward(s, o[0], o[1], o[2], i[0], i[1], i[2], i[3], i[4], n, c);
      });
}

TEST(Placement, AttentionForwardAndBackward) {
  const std::int64_t b = 2, t = 33, c = 48, h = 3;
  const auto s = Stream::cpu();
  const auto qkv = values(b * t * 3 * c, 1);
  expect_placement_invariant(
      {qkv}, {static_cast<std::size_t>(b * t * c), static_cast<std::size_t>(b * h * t * t)},
      [&](auto& o, auto& i) { k::attention_forward(s, o[0], o[1], i[0], b, t, c, h); });
  std::vector<float> out(b * t * c), att(b * h * t * t);
  k::attention_forward(s, out.data(), att.data(), qkv.data(), b, t, c, h);
  expect_placement_invariant(
      {values(b * t * c, 2), qkv, att}, {static_cast<std::size_t>(b * t * 3 * c)},
      [&](auto& o, auto& i) { k::attention_backward(s, o[0], i[0], i[1], i[2], b, t, c, h); });
}

// T = 70: two key blocks of the fused kernel, so dq is added into by more than one.
TEST(Placement, FlashAttentionForwardAndBackward) {
  const std::int64_t b = 2, t = 70, c = 48, h = 3;
  const auto s = Stream::cpu();
  const auto qkv = values(b * t * 3 * c, 1);
  expect_placement_invariant(
      {qkv}, {static_cast<std::size_t>(b * t * c), static_cast<std::size_t>(b * h * t)},
      [&](auto& o, auto& i) { k::flash_attention_forward(s, o[0], o[1], i[0], b, t, c, h); });
  std::vector<float> out(b * t * c), lse(b * h * t);
  k::flash_attention_forward(s, out.data(), lse.data(), qkv.data(), b, t, c, h);
  expect_placement_invariant({values(b * t * c, 2), qkv, out, lse},
                             {static_cast<std::size_t>(b * t * 3 * c)}, [&](auto& o, auto& i) {
                               k::flash_attention_backward(s, o[0], i[0], i[1], i[2], i[3], b, t, c,
                                                           h);
                             });
}

// Attention over explicit positions: a context-parallel rank's rows (chunks of 35: ragged
// blocks) against the gathered keys, strided q and kv; the merge seeded from inputs (its out and
// lse are read as well as written) and the backward accumulating into seeded gradients.
TEST(Placement, AttentionSegmentsForwardAndBackward) {
  const std::int64_t b = 2, c = 24, h = 3, t = 140, tq = 70, ldq = 3 * c, ldkv = 2 * c;
  const auto s = Stream::cpu();
  const auto q_seg = k::context_parallel_segments(t, 2, 1);
  const auto kv_seg = k::context_parallel_gathered_segments(t, 2);
  const auto q = values(b * tq * ldq, 1), kv = values(b * t * ldkv, 2);
  const auto old_out = values(b * tq * c, 3), old_lse = values(b * h * tq, 4);
  const auto n_out = static_cast<std::size_t>(b * tq * c),
             n_lse = static_cast<std::size_t>(b * h * tq);
  expect_placement_invariant({q, kv, old_out, old_lse}, {n_out, n_lse}, [&](auto& o, auto& i) {
    std::memcpy(o[0], i[2], n_out * sizeof(float));
    std::memcpy(o[1], i[3], n_lse * sizeof(float));
    k::attention_segments_forward(s, o[0], o[1], i[0], ldq, i[1], i[1] + c, ldkv, b, tq, t, q_seg,
                                  kv_seg, c, h, true);
  });
  std::vector<float> out(n_out), lse(n_lse);
  k::attention_segments_forward(s, out.data(), lse.data(), q.data(), ldq, kv.data(), kv.data() + c,
                                ldkv, b, tq, t, q_seg, kv_seg, c, h, false);
  const auto n_dq = static_cast<std::size_t>(b * tq * c),
             n_dkv = static_cast<std::size_t>(b * t * 2 * c);
  expect_placement_invariant({values(n_out, 5), q, kv, out, lse, values(n_dq, 6), values(n_dkv, 7)},
                             {n_dq, n_dkv}, [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[5], n_dq * sizeof(float));
                               std::memcpy(o[1], i[6], n_dkv * sizeof(float));
                               k::attention_segments_backward(s, o[0], c, o[1], o[1] + c, 2 * c,
                                                              i[0], i[1], ldq, i[2], i[2] + c, ldkv,
                                                              i[3], i[4], b, tq, t, q_seg, kv_seg,
                                                              c, h, true, true);
                             });
}

TEST(Placement, GeluAndAdamW) {
  const std::int64_t n = 301;
  const auto s = Stream::cpu();
  expect_placement_invariant({values(n, 1)}, {static_cast<std::size_t>(n)},
                             [&](auto& o, auto& i) { k::gelu_forward(s, o[0], i[0], n); });
  expect_placement_invariant({values(n, 2), values(n, 3)}, {static_cast<std::size_t>(n)},
                             [&](auto& o, auto& i) { k::gelu_backward(s, o[0], i[0], i[1], n); });
  // AdamW updates in place: the parameters and moments are outputs seeded from the inputs.
  const k::AdamWOptions adam{1e-3f, 0.9f, 0.95f, 1e-8f, 0.01f};
  expect_placement_invariant(
      {values(n, 4), values(n, 5), values(n, 6), values(n, 7)},
      {static_cast<std::size_t>(n), static_cast<std::size_t>(n), static_cast<std::size_t>(n)},
      [&](auto& o, auto& i) {
        std::memcpy(o[0], i[0], n * sizeof(float));
        std::memcpy(o[1], i[1], n * sizeof(float));
        for (std::int64_t j = 0; j < n; ++j) o[2][j] = std::fabs(i[2][j]);
        k::adamw_step(s, o[0], o[1], o[2], i[3], n, 3, adam);
      });
}

TEST(Placement, LinearBackwardHalves) {
  const std::int64_t n = 37, in = 70, out = 45;
  const auto s = Stream::cpu();
  const auto dy = values(n * out, 1), x = values(n * in, 2), w = values(out * in, 3);
  const auto old_dx = values(n * in, 4), old_dw = values(out * in, 5), old_db = values(out, 6);
  for (const bool accumulate : {false, true}) {
    expect_placement_invariant(
        {dy, w, old_dx}, {static_cast<std::size_t>(n * in)}, [&](auto& o, auto& i) {
          std::memcpy(o[0], i[2], n * in * sizeof(float));
          k::linear_backward_data(s, o[0], i[0], i[1], n, in, out, accumulate);
        });
    expect_placement_invariant(
        {dy, x, old_dw, old_db},
        {static_cast<std::size_t>(out * in), static_cast<std::size_t>(out)}, [&](auto& o, auto& i) {
          std::memcpy(o[0], i[2], out * in * sizeof(float));
          std::memcpy(o[1], i[3], out * sizeof(float));
          k::linear_backward_weight(s, o[0], o[1], i[0], i[1], n, in, out, accumulate);
        });
  }
}

// The parameter gradients of the norms with accumulate on: seeded outputs, added into.
TEST(Placement, NormBackwardAccumulate) {
  const std::int64_t n = 9, c = 70;
  const auto s = Stream::cpu();
  std::vector<float> mean(n), rstd(n), y(n * c);
  const auto x = values(n * c, 1), g = values(c, 2), b = values(c, 3), dy = values(n * c, 4);
  const auto old1 = values(c, 5), old2 = values(c, 6);
  k::layer_norm_forward(s, y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), n, c);
  expect_placement_invariant(
      {dy, x, g, mean, rstd, old1, old2},
      {static_cast<std::size_t>(n * c), static_cast<std::size_t>(c), static_cast<std::size_t>(c)},
      [&](auto& o, auto& i) {
        std::memcpy(o[1], i[5], c * sizeof(float));
        std::memcpy(o[2], i[6], c * sizeof(float));
        k::layer_norm_backward(s, o[0], o[1], o[2], i[0], i[1], i[2], i[3], i[4], n, c, true);
      });
  k::rms_norm_forward(s, y.data(), rstd.data(), x.data(), g.data(), n, c);
  for (const bool accumulate : {false, true}) {
    expect_placement_invariant(
        {dy, x, g, rstd, old1}, {static_cast<std::size_t>(n * c), static_cast<std::size_t>(c)},
        [&](auto& o, auto& i) {
          std::memcpy(o[1], i[4], c * sizeof(float));
          k::rms_norm_backward(s, o[0], o[1], i[0], i[1], i[2], i[3], n, c, accumulate);
        });
  }
}

// Token ids as floats cannot be placed by the helper; they stay where they are.
TEST(Placement, EmbeddingShardAndPositions) {
  const std::int64_t n = 12, c = 70, first = 3, rows = 5, t = 5;
  const auto s = Stream::cpu();
  std::vector<std::int32_t> tokens(n);
  for (std::int64_t i = 0; i < n; ++i) tokens[i] = static_cast<std::int32_t>((i * 7) % 11);
  expect_placement_invariant(
      {values(rows * c, 1)}, {static_cast<std::size_t>(n * c)}, [&](auto& o, auto& i) {
        k::embedding_shard_forward(s, o[0], tokens.data(), i[0], first, rows, n, c);
      });
  expect_placement_invariant({values(n * c, 2), values(rows * c, 3)},
                             {static_cast<std::size_t>(rows * c)}, [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[1], rows * c * sizeof(float));
                               k::embedding_shard_backward(s, o[0], i[0], tokens.data(), first,
                                                           rows, n, c);
                             });
  expect_placement_invariant({values(n * c, 4), values(t * c, 5)},
                             {static_cast<std::size_t>(n * c)}, [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[0], n * c * sizeof(float));
                               k::add_positions(s, o[0], i[1], 3, n, t, c);
                             });
  expect_placement_invariant({values(n * c, 6), values(t * c, 7)},
                             {static_cast<std::size_t>(t * c)}, [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[1], t * c * sizeof(float));
                               k::positions_backward(s, o[0], i[0], 3, n, t, c);
                             });
}

TEST(Placement, CrossEntropyShard) {
  const std::int64_t n = 7, cols = 301, first = 100;
  const auto s = Stream::cpu();
  std::vector<std::int32_t> targets(n);
  for (std::int64_t i = 0; i < n; ++i) targets[i] = static_cast<std::int32_t>(i * 97 % 500);
  auto logits = values(n * cols, 1);
  for (float& v : logits) v *= 4.0f;
  std::vector<float> stats(3 * n), lse(n), loss(1);
  k::softmax_stats(s, stats.data(), logits.data(), targets.data(), first, cols, n);
  k::cross_entropy_from_stats(s, lse.data(), loss.data(), stats.data(), n);
  expect_placement_invariant({logits}, {static_cast<std::size_t>(3 * n)}, [&](auto& o, auto& i) {
    k::softmax_stats(s, o[0], i[0], targets.data(), first, cols, n);
  });
  expect_placement_invariant({stats}, {static_cast<std::size_t>(n), 1}, [&](auto& o, auto& i) {
    k::cross_entropy_from_stats(s, o[0], o[1], i[0], n);
  });
  expect_placement_invariant(
      {logits, lse}, {static_cast<std::size_t>(n * cols)}, [&](auto& o, auto& i) {
        k::cross_entropy_shard_backward(s, o[0], i[0], i[1], targets.data(), first, cols, n, 0.25f);
      });
  expect_placement_invariant({logits, stats}, {static_cast<std::size_t>(n * cols)},
                             [&](auto& o, auto& i) {
                               k::cross_entropy_shard_backward_from_stats(
                                   s, o[0], i[0], i[1], targets.data(), first, cols, n, 0.25f);
                             });
  auto other = values(3 * n, 2);
  for (std::int64_t i = 0; i < n; ++i) other[3 * i + 1] = 1.0f + std::fabs(other[3 * i + 1]);
  expect_placement_invariant({stats, other}, {static_cast<std::size_t>(3 * n)},
                             [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[0], 3 * n * sizeof(float));
                               k::combine_softmax_stats(o[0], i[1], n);
                             });
}

TEST(Placement, ElementwiseOps) {
  const std::int64_t rows = 9, c = 70, n = rows * c;
  const auto s = Stream::cpu();
  expect_placement_invariant({values(n, 1), values(n, 2)}, {static_cast<std::size_t>(n)},
                             [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[0], n * sizeof(float));
                               k::add_inplace(s, o[0], i[1], n);
                             });
  expect_placement_invariant({values(n, 3)}, {static_cast<std::size_t>(n)}, [&](auto& o, auto& i) {
    std::memcpy(o[0], i[0], n * sizeof(float));
    k::scale_inplace(s, o[0], 0.37f, n);
  });
  expect_placement_invariant({values(n, 4), values(n, 5), values(c, 6)},
                             {static_cast<std::size_t>(n)}, [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[0], n * sizeof(float));
                               k::add_residual_bias(s, o[0], i[1], i[2], rows, c);
                             });
  expect_placement_invariant({values(n, 7), values(c, 8)}, {static_cast<std::size_t>(c)},
                             [&](auto& o, auto& i) {
                               std::memcpy(o[0], i[1], c * sizeof(float));
                               k::bias_backward(s, o[0], i[0], rows, c);
                             });
}

}  // namespace
