// attention_segments_* and the context-parallel layout: one segment is flash_attention bit for
// bit; odd, strided segment lists against the double reference and central differences; cp = 2
// and 4, all-gather and ring, reassembled against the one call over the sequence (differences
// printed); merge, accumulate, score-entry counts, edges and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/model_ops_cpu.hpp"
#include "kernels/model_ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::attention_positions_reference;
using testing::central_differences;
using testing::expect_close;
using testing::random_floats;
using testing::relative_to_largest;
using testing::to_double;
using testing::weighted_sum;

using Segments = std::vector<AttentionSegment>;

// The position of every row, in row order.
std::vector<std::int64_t> positions_of(const Segments& segments) {
  std::vector<std::int64_t> pos;
  for (const AttentionSegment& s : segments) {
    for (std::int64_t i = 0; i < s.length; ++i) pos.push_back(s.position + i);
  }
  return pos;
}

std::int64_t rows_of(const Segments& segments) {
  return static_cast<std::int64_t>(positions_of(segments).size());
}

// Columns [col, col + cols) of each of `rows` rows `ld` apart.
std::vector<float> columns(const float* x, std::int64_t rows, std::int64_t ld, std::int64_t col,
                           std::int64_t cols) {
  std::vector<float> dense(rows * cols);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy(x + r * ld + col, x + r * ld + col + cols, dense.begin() + r * cols);
  }
  return dense;
}

// A dense (rows, cols) tensor written at column `col` of rows `ld` apart, the rest `pad`.
std::vector<float> placed(const std::vector<float>& dense, std::int64_t rows, std::int64_t cols,
                          std::int64_t ld, std::int64_t col, float pad) {
  std::vector<float> x(rows * ld, pad);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy(dense.begin() + r * cols, dense.begin() + (r + 1) * cols, x.begin() + r * ld + col);
  }
  return x;
}

// --- The context-parallel layout -------------------------------------------------------------

TEST(ContextParallelSegments, ChunksRAnd2cpMinus1MinusR) {
  // 16 positions, cp = 2: chunks of 4; rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
  EXPECT_EQ(context_parallel_segments(16, 2, 0), (Segments{{0, 4}, {12, 4}}));
  EXPECT_EQ(context_parallel_segments(16, 2, 1), (Segments{{4, 4}, {8, 4}}));
  EXPECT_EQ(context_parallel_gathered_segments(16, 2), (Segments{{0, 4}, {12, 4}, {4, 4}, {8, 4}}));
  EXPECT_EQ(context_parallel_segments(48, 4, 3), (Segments{{18, 6}, {24, 6}}));
  // cp = 1: the whole sequence as one segment, any length.
  EXPECT_EQ(context_parallel_segments(7, 1, 0), (Segments{{0, 7}}));
  EXPECT_EQ(context_parallel_gathered_segments(7, 1), (Segments{{0, 7}}));
}

// Every cp up to 8 and every rank: the ranks' rows partition the sequence, T / cp rows each;
// the gathered list is the ranks' in rank order; every rank has the same number of causal pairs
// (2 cp L^2 + L, L = T / (2 cp)); with L a multiple of 64 the kernel computes L (T + 64) score
// entries per rank over the gathered keys, and summed over the ranks T (T + 64) / 2, the
// one-call count, whether the keys come gathered or in cp ring steps; in the ring, 2 L^2 + 64 L
// at step 0 (the rank's own keys) and 2 L^2 at every later step (kernels/README.md, FLOPs).
TEST(ContextParallelSegments, RanksPartitionTheSequenceAndShareTheWork) {
  for (int cp = 1; cp <= 8; ++cp) {
    for (const std::int64_t chunk : {1, 3, 64, 128}) {
      const std::int64_t t = 2 * cp * chunk;
      std::vector<int> owner(t, -1);
      Segments gathered;
      const Segments all = context_parallel_gathered_segments(t, cp);
      std::int64_t kernel_total = 0;
      for (int rank = 0; rank < cp; ++rank) {
        const Segments mine = context_parallel_segments(t, cp, rank);
        gathered.insert(gathered.end(), mine.begin(), mine.end());
        const auto pos = positions_of(mine);
        ASSERT_EQ(static_cast<std::int64_t>(pos.size()), t / cp) << cp << " " << rank;
        std::int64_t pairs = 0;
        for (const std::int64_t p : pos) {
          ASSERT_EQ(owner[p], -1) << "position " << p << " held twice";
          owner[p] = rank;
          pairs += p + 1;
        }
        const std::int64_t l = t / (2 * cp);
        EXPECT_EQ(pairs, cp == 1 ? t * (t + 1) / 2 : 2 * cp * l * l + l) << cp << " " << rank;
        const std::int64_t entries = cpu::attention_segments_score_entries(mine, all);
        std::int64_t ring = 0;
        for (int step = 0; step < cp; ++step) {
          const int from = (rank - step + cp) % cp;
          const std::int64_t step_entries =
              cpu::attention_segments_score_entries(mine, context_parallel_segments(t, cp, from));
          if (chunk % 64 == 0) {
            EXPECT_EQ(step_entries, step == 0 ? 2 * l * l + 64 * l : 2 * l * l)
                << cp << " " << rank << " step " << step;
          }
          ring += step_entries;
        }
        EXPECT_EQ(ring, entries) << cp << " " << rank;
        if (chunk % 64 == 0) {
          EXPECT_EQ(entries, l * (t + 64)) << cp << " " << rank;
        }
        kernel_total += entries;
      }
      for (std::int64_t p = 0; p < t; ++p) EXPECT_GE(owner[p], 0) << "position " << p;
      EXPECT_EQ(gathered, all) << cp;
      if (chunk % 64 == 0) {
        EXPECT_EQ(kernel_total, t * (t + 64) / 2) << cp;
        EXPECT_EQ(kernel_total, cpu::attention_segments_score_entries({{0, t}}, {{0, t}})) << cp;
      }
    }
  }
}

TEST(ContextParallelSegments, BadLayoutsThrowNamingTheValues) {
  const auto message = [](const std::function<void()>& call) {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no throw");
  };
  EXPECT_EQ(message([] { context_parallel_segments(100, 4, 0); }),
            "context_parallel_segments: seq_len = 100 must be divisible by 2 cp = 8 (cp = 4: "
            "each rank holds two of 2 cp equal chunks)");
  EXPECT_NE(message([] { context_parallel_gathered_segments(6, 2); }).find("seq_len = 6"),
            std::string::npos);
  EXPECT_EQ(message([] { context_parallel_segments(16, 2, 2); }),
            "context_parallel_segments: rank = 2 must be in [0, cp = 2)");
  EXPECT_THROW(context_parallel_segments(16, 2, -1), std::invalid_argument);
  EXPECT_THROW(context_parallel_segments(16, 0, 0), std::invalid_argument);
  EXPECT_THROW(context_parallel_segments(0, 1, 0), std::invalid_argument);
  EXPECT_THROW(context_parallel_gathered_segments(16, -2), std::invalid_argument);
}

// --- One segment: flash_attention ------------------------------------------------------------

TEST(AttentionSegments, OneSegmentIsFlashAttention) {
  const testing::AttentionShape shapes[] = {
      {1, 1, 4, 1, "t1"}, {3, 65, 24, 3, "t65"}, {2, 130, 48, 2, "t130"}, {1, 300, 64, 4, "t300"}};
  const Stream cpu = Stream::cpu();
  for (const auto& s : shapes) {
    const std::int64_t b = s.b, t = s.t, c = s.c, h = s.h;
    const auto qkv = random_floats(b * t * 3 * c, 31), dout = random_floats(b * t * c, 32);
    std::vector<float> out(b * t * c), lse(b * h * t), dqkv(qkv.size());
    flash_attention_forward(cpu, out.data(), lse.data(), qkv.data(), b, t, c, h);
    flash_attention_backward(cpu, dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), b,
                             t, c, h);
    std::vector<float> out2(out.size()), lse2(lse.size()), dqkv2(dqkv.size());
    const Segments whole{{0, t}};
    const float* q = qkv.data();
    attention_segments_forward(cpu, out2.data(), lse2.data(), q, 3 * c, q + c, q + 2 * c, 3 * c, b,
                               t, t, whole, whole, c, h, false);
    float* dq = dqkv2.data();
    attention_segments_backward(cpu, dq, 3 * c, dq + c, dq + 2 * c, 3 * c, dout.data(), q, 3 * c,
                                q + c, q + 2 * c, 3 * c, out2.data(), lse2.data(), b, t, t, whole,
                                whole, c, h, false, false);
    const double d_out = relative_to_largest(out2, out), d_lse = relative_to_largest(lse2, lse),
                 d_dqkv = relative_to_largest(dqkv2, dqkv);
    std::printf(
        "[ measured ] %s: one segment vs flash_attention, max|d| / max: out %.2e, lse "
        "%.2e, dqkv %.2e\n",
        s.name.c_str(), d_out, d_lse, d_dqkv);
    EXPECT_LE(d_out, 1e-6) << s.name;
    EXPECT_LE(d_lse, 1e-6) << s.name;
    EXPECT_LE(d_dqkv, 1e-6) << s.name;
    // The header promises more: the same kernel, bit for bit.
    EXPECT_EQ(out2, out) << s.name;
    EXPECT_EQ(lse2, lse) << s.name;
    EXPECT_EQ(dqkv2, dqkv) << s.name;
  }
}

// --- Against the double reference ------------------------------------------------------------

struct SegmentCase {
  std::string name;
  std::int64_t b, c, h;
  Segments q, kv;
};

std::string segment_case_name(const ::testing::TestParamInfo<SegmentCase>& info) {
  return info.param.name;
}

// Odd lengths; queries and keys that start and end anywhere; keys after every query (their
// gradient 0) and queries before every key (out 0, lse -inf); positions repeated between
// segments; a rank's rows against the gathered keys, and against one later rank's.
const SegmentCase kReferenceCases[] = {
    {"odd_lengths", 2, 6, 3, {{5, 7}, {30, 3}}, {{0, 13}, {25, 9}, {40, 2}}},
    {"rows_without_keys", 1, 4, 2, {{0, 4}, {10, 3}}, {{3, 5}}},
    {"repeated_positions", 3, 8, 2, {{2, 4}, {2, 4}}, {{0, 5}, {3, 5}}},
    {"cp2_rank0_gathered", 2, 8, 2, context_parallel_segments(24, 2, 0),
     context_parallel_gathered_segments(24, 2)},
    {"cp3_rank1_from_rank2", 1, 12, 3, context_parallel_segments(36, 3, 1),
     context_parallel_segments(36, 3, 2)},
    {"one_row", 1, 2, 1, {{7, 1}}, {{7, 1}}},
};

class AttentionSegmentsReference : public ::testing::TestWithParam<SegmentCase> {};

// The strided layout every case runs in: q rows ldq = C + 3 apart; k and v in one (Tk, 2C + 5)
// kv tensor; dq rows C + 2 apart; dk and dv in one (Tk, 2C + 1) tensor. Input padding is NaN
// (read, it would spread), output padding a value that must survive.
struct Strides {
  std::int64_t ldq, ldkv, lddq, lddkv;
  explicit Strides(std::int64_t c) : ldq(c + 3), ldkv(2 * c + 5), lddq(c + 2), lddkv(2 * c + 1) {}
};
constexpr float kPad = 123.5f;
const float kNan = std::numeric_limits<float>::quiet_NaN();

// Default blocks (the public ops) and, through the CPU entry points, small blocks that cut each
// segment several times: the results must agree with the reference either way.
const cpu::FlashBlocks kBlockSizes[] = {{64, 64}, {3, 5}, {2, 1}};

TEST_P(AttentionSegmentsReference, ForwardAndBackwardMatchTheReference) {
  const SegmentCase& s = GetParam();
  const std::int64_t b = s.b, c = s.c, h = s.h, tq = rows_of(s.q), tk = rows_of(s.kv);
  const Strides ld(c);
  const auto qf = random_floats(b * tq * c, 41), kf = random_floats(b * tk * c, 42),
             vf = random_floats(b * tk * c, 43), doutf = random_floats(b * tq * c, 44);
  const auto q = placed(qf, b * tq, c, ld.ldq, 0, kNan);
  auto kv = placed(kf, b * tk, c, ld.ldkv, 0, kNan);
  for (std::int64_t r = 0; r < b * tk; ++r) {
    std::copy(vf.begin() + r * c, vf.begin() + (r + 1) * c, kv.begin() + r * ld.ldkv + c);
  }
  const auto qpos = positions_of(s.q), kpos = positions_of(s.kv);

  // Reference: out, lse; and d(q, k, v) as central differences of sum(dout * out).
  std::vector<double> x = to_double(qf);  // [q | k | v], dense
  for (const auto* part : {&kf, &vf}) {
    const auto p = to_double(*part);
    x.insert(x.end(), p.begin(), p.end());
  }
  const auto nq = static_cast<std::ptrdiff_t>(qf.size()),
             nk = static_cast<std::ptrdiff_t>(kf.size());
  const auto reference = [&] {
    return attention_positions_reference({x.begin(), x.begin() + nq},
                                         {x.begin() + nq, x.begin() + nq + nk},
                                         {x.begin() + nq + nk, x.end()}, qpos, kpos, b, c, h);
  };
  const auto want = reference();
  const auto dout = to_double(doutf);
  const std::vector<double> grad =
      central_differences(x, [&] { return weighted_sum(dout, reference().out); });

  for (const cpu::FlashBlocks blocks : kBlockSizes) {
    const std::string what =
        s.name + " blocks " + std::to_string(blocks.rows) + "x" + std::to_string(blocks.cols);
    std::vector<float> out(b * tq * c, -1.0f), lse(b * h * tq, -1.0f);
    std::vector<float> dq(b * tq * ld.lddq, kPad), dkv(b * tk * ld.lddkv, kPad);
    if (blocks.rows == 64 && blocks.cols == 64) {
      const Stream cpu = Stream::cpu();
      attention_segments_forward(cpu, out.data(), lse.data(), q.data(), ld.ldq, kv.data(),
                                 kv.data() + c, ld.ldkv, b, tq, tk, s.q, s.kv, c, h, false);
      attention_segments_backward(cpu, dq.data(), ld.lddq, dkv.data(), dkv.data() + c, ld.lddkv,
                                  doutf.data(), q.data(), ld.ldq, kv.data(), kv.data() + c, ld.ldkv,
                                  out.data(), lse.data(), b, tq, tk, s.q, s.kv, c, h, false, false);
    } else {
      cpu::attention_segments_forward(out.data(), lse.data(), q.data(), ld.ldq, kv.data(),
                                      kv.data() + c, ld.ldkv, b, tq, tk, s.q, s.kv, c, h, false,
                                      blocks);
      cpu::attention_segments_backward(dq.data(), ld.lddq, dkv.data(), dkv.data() + c, ld.lddkv,
                                       doutf.data(), q.data(), ld.ldq, kv.data(), kv.data() + c,
                                       ld.ldkv, out.data(), lse.data(), b, tq, tk, s.q, s.kv, c, h,
                                       false, false, blocks);
    }
    // The unfused op's tolerances (flash_attention_test): out 1e-6 + 1e-5 rel, lse 1e-6 + 1e-6
    // rel; gradients 1e-5 + 1e-4 rel of central differences.
    expect_close(out, want.out, 1e-6, 1e-5, what + " out");
    for (std::size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(want.lse[i])) {
        EXPECT_EQ(lse[i], -INFINITY) << what << " lse[" << i << "]: a row without keys";
      } else {
        EXPECT_NEAR(lse[i], want.lse[i], 1e-6 + 1e-6 * std::fabs(want.lse[i])) << what << i;
      }
    }
    std::vector<float> got = columns(dq.data(), b * tq, ld.lddq, 0, c);
    for (const std::int64_t col : {std::int64_t{0}, c}) {
      const auto part = columns(dkv.data(), b * tk, ld.lddkv, col, c);
      got.insert(got.end(), part.begin(), part.end());
    }
    expect_close(got, grad, 1e-5, 1e-4, what + " d(q, k, v)");
    for (std::int64_t r = 0; r < b * tq; ++r) {
      for (std::int64_t j = c; j < ld.lddq; ++j) ASSERT_EQ(dq[r * ld.lddq + j], kPad) << what;
    }
    for (std::int64_t r = 0; r < b * tk; ++r) ASSERT_EQ(dkv[r * ld.lddkv + 2 * c], kPad) << what;
    if (blocks.rows == 64) {
      std::printf(
          "[ measured ] %s: vs double, max|d| / max|reference|: out %.2e, lse %.2e, "
          "d(q, k, v) %.2e (central differences)\n",
          s.name.c_str(), relative_to_largest(out, want.out), relative_to_largest(lse, want.lse),
          relative_to_largest(got, grad));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionSegmentsReference, ::testing::ValuesIn(kReferenceCases),
                         segment_case_name);

// --- Context parallelism, reassembled --------------------------------------------------------

// The whole sequence's tensors, as one rank's slices put back at their positions.
struct Assembled {
  std::vector<float> out, lse, dqkv;  // (B, T, C), (B, H, T), (B, T, 3C)
};

struct CpShape {
  std::int64_t b, t, c, h;
  int cp;
};

// Rows of x (B, T, width) at the given positions: (B, positions, width).
std::vector<float> take_rows(const std::vector<float>& x, std::int64_t b, std::int64_t t,
                             std::int64_t width, const std::vector<std::int64_t>& pos) {
  const auto n = static_cast<std::int64_t>(pos.size());
  std::vector<float> rows(b * n * width);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t r = 0; r < n; ++r) {
      std::copy(x.begin() + (i * t + pos[r]) * width, x.begin() + (i * t + pos[r] + 1) * width,
                rows.begin() + (i * n + r) * width);
    }
  }
  return rows;
}

// Columns [col, col + cols) of rows (B, positions, width) into (B, T, full_width) at col.
void put_rows(std::vector<float>& full, std::int64_t b, std::int64_t t, std::int64_t full_width,
              const std::vector<float>& rows, std::int64_t width, std::int64_t col,
              std::int64_t cols, const std::vector<std::int64_t>& pos) {
  const auto n = static_cast<std::int64_t>(pos.size());
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t r = 0; r < n; ++r) {
      const float* src = rows.data() + (i * n + r) * width + col;
      std::copy(src, src + cols, full.begin() + (i * t + pos[r]) * full_width + col);
    }
  }
}

// Each rank's lse (B, H, positions) into (B, H, T).
void put_lse(std::vector<float>& full, std::int64_t b, std::int64_t h, std::int64_t t,
             const std::vector<float>& lse, const std::vector<std::int64_t>& pos) {
  const auto n = static_cast<std::int64_t>(pos.size());
  for (std::int64_t g = 0; g < b * h; ++g) {
    for (std::int64_t r = 0; r < n; ++r) full[g * t + pos[r]] = lse[g * n + r];
  }
}

// The all-gather variant: every rank attends to all ranks' k and v, gathered in rank order into
// one (B, T, 3C) tensor, in one call; the backward's dk, dv for the gathered rows are summed
// over the ranks (accumulate_dkv from the second rank on; the reduce-scatter's sum), then each
// gathered row's go back to its position.
Assembled run_gathered(const CpShape& s, const std::vector<float>& qkv,
                       const std::vector<float>& dout) {
  const std::int64_t b = s.b, t = s.t, c = s.c, h = s.h, local = t / s.cp;
  const Stream cpu = Stream::cpu();
  const Segments all = context_parallel_gathered_segments(t, s.cp);
  const auto all_pos = positions_of(all);
  const auto gathered = take_rows(qkv, b, t, 3 * c, all_pos);  // what the all-gather delivers
  std::vector<float> dkv(gathered.size(), kNan);               // (B, T, 3C); k, v columns used
  Assembled a{std::vector<float>(b * t * c), std::vector<float>(b * h * t),
              std::vector<float>(b * t * 3 * c)};
  for (int rank = 0; rank < s.cp; ++rank) {
    const Segments mine = context_parallel_segments(t, s.cp, rank);
    const auto pos = positions_of(mine);
    const auto q = take_rows(qkv, b, t, 3 * c, pos);  // the rank's own qkv (B, T / cp, 3C)
    const auto dout_r = take_rows(dout, b, t, c, pos);
    std::vector<float> out(b * local * c), lse(b * h * local), dq(b * local * c);
    attention_segments_forward(cpu, out.data(), lse.data(), q.data(), 3 * c, gathered.data() + c,
                               gathered.data() + 2 * c, 3 * c, b, local, t, mine, all, c, h, false);
    attention_segments_backward(cpu, dq.data(), c, dkv.data() + c, dkv.data() + 2 * c, 3 * c,
                                dout_r.data(), q.data(), 3 * c, gathered.data() + c,
                                gathered.data() + 2 * c, 3 * c, out.data(), lse.data(), b, local, t,
                                mine, all, c, h, false, rank > 0);
    put_rows(a.out, b, t, c, out, c, 0, c, pos);
    put_lse(a.lse, b, h, t, lse, pos);
    put_rows(a.dqkv, b, t, 3 * c, dq, c, 0, c, pos);
  }
  put_rows(a.dqkv, b, t, 3 * c, dkv, 3 * c, c, 2 * c, all_pos);
  return a;
}

// The ring variant: at step j rank r attends to rank (r - j) mod cp's k and v (its own first),
// merging from the second step on; the backward runs the same steps, adding dq from the second
// on and every step's dk, dv into the owner's (as the ring passes them on, back to the owner).
Assembled run_ring(const CpShape& s, const std::vector<float>& qkv,
                   const std::vector<float>& dout) {
  const std::int64_t b = s.b, t = s.t, c = s.c, h = s.h, local = t / s.cp;
  const int cp = s.cp;
  const Stream cpu = Stream::cpu();
  std::vector<Segments> seg;
  std::vector<std::vector<std::int64_t>> pos;
  std::vector<std::vector<float>> q, d_out, out, lse, dqkv;
  for (int rank = 0; rank < cp; ++rank) {
    seg.push_back(context_parallel_segments(t, cp, rank));
    pos.push_back(positions_of(seg.back()));
    q.push_back(take_rows(qkv, b, t, 3 * c, pos.back()));
    d_out.push_back(take_rows(dout, b, t, c, pos.back()));
    out.emplace_back(b * local * c, kNan);  // written by step 0 (merge off)
    lse.emplace_back(b * h * local, kNan);
    dqkv.emplace_back(b * local * 3 * c, 0.0f);  // dq written at step 0; dk, dv summed into
  }
  for (int step = 0; step < cp; ++step) {
    for (int rank = 0; rank < cp; ++rank) {
      const int from = (rank - step + cp) % cp;
      const float* kv = q[from].data();
      attention_segments_forward(cpu, out[rank].data(), lse[rank].data(), q[rank].data(), 3 * c,
                                 kv + c, kv + 2 * c, 3 * c, b, local, local, seg[rank], seg[from],
                                 c, h, step > 0);
    }
  }
  for (int step = 0; step < cp; ++step) {
    for (int rank = 0; rank < cp; ++rank) {
      const int from = (rank - step + cp) % cp;
      const float* kv = q[from].data();
      float* dkv = dqkv[from].data();
      attention_segments_backward(cpu, dqkv[rank].data(), 3 * c, dkv + c, dkv + 2 * c, 3 * c,
                                  d_out[rank].data(), q[rank].data(), 3 * c, kv + c, kv + 2 * c,
                                  3 * c, out[rank].data(), lse[rank].data(), b, local, local,
                                  seg[rank], seg[from], c, h, step > 0, true);
    }
  }
  Assembled a{std::vector<float>(b * t * c), std::vector<float>(b * h * t),
              std::vector<float>(b * t * 3 * c)};
  for (int rank = 0; rank < cp; ++rank) {
    put_rows(a.out, b, t, c, out[rank], c, 0, c, pos[rank]);
    put_lse(a.lse, b, h, t, lse[rank], pos[rank]);
    put_rows(a.dqkv, b, t, 3 * c, dqkv[rank], 3 * c, 0, 3 * c, pos[rank]);
  }
  return a;
}

// The bound for context parallelism against the one-call attention, relative to each tensor's
// largest magnitude (kernels/README.md records the measured values).
constexpr double kContextParallelBound = 1e-5;

TEST(AttentionSegmentsContextParallel, ReassembledRanksEqualTheWholeSequence) {
  const Stream cpu = Stream::cpu();
  for (const int cp : {2, 4}) {
    for (const std::int64_t t : {64, 128, 192, 256}) {
      const CpShape s{2, t, 32, 2, cp};  // D = 16; chunks of 8 to 64 rows
      const std::int64_t b = s.b, c = s.c, h = s.h;
      const auto qkv = random_floats(b * t * 3 * c, 51), dout = random_floats(b * t * c, 52);
      Assembled whole{std::vector<float>(b * t * c), std::vector<float>(b * h * t),
                      std::vector<float>(b * t * 3 * c)};
      flash_attention_forward(cpu, whole.out.data(), whole.lse.data(), qkv.data(), b, t, c, h);
      flash_attention_backward(cpu, whole.dqkv.data(), dout.data(), qkv.data(), whole.out.data(),
                               whole.lse.data(), b, t, c, h);
      const std::string name = "cp" + std::to_string(cp) + " T" + std::to_string(t);
      for (const bool ring : {false, true}) {
        const Assembled got = ring ? run_ring(s, qkv, dout) : run_gathered(s, qkv, dout);
        const double d_out = relative_to_largest(got.out, whole.out);
        const double d_lse = relative_to_largest(got.lse, whole.lse);
        const double d_dqkv = relative_to_largest(got.dqkv, whole.dqkv);
        std::printf(
            "[ measured ] %s %-8s vs one call, max|d| / max: out %.2e, lse %.2e, "
            "dqkv %.2e\n",
            name.c_str(), ring ? "ring" : "gathered", d_out, d_lse, d_dqkv);
        EXPECT_LE(d_out, kContextParallelBound) << name << (ring ? " ring" : " gathered");
        EXPECT_LE(d_lse, kContextParallelBound) << name << (ring ? " ring" : " gathered");
        EXPECT_LE(d_dqkv, kContextParallelBound) << name << (ring ? " ring" : " gathered");
      }
    }
  }
}

// --- Merge -----------------------------------------------------------------------------------

struct Dense {
  std::int64_t b, c, h;
  Segments q, kv;
  std::vector<float> qf, kf, vf;
  Dense(std::int64_t b_, std::int64_t c_, std::int64_t h_, Segments q_, Segments kv_,
        std::uint32_t seed)
      : b(b_),
        c(c_),
        h(h_),
        q(std::move(q_)),
        kv(std::move(kv_)),
        qf(random_floats(b * rows_of(q) * c, seed)),
        kf(random_floats(b * rows_of(kv) * c, seed + 1)),
        vf(random_floats(b * rows_of(kv) * c, seed + 2)) {}
  std::int64_t tq() const { return rows_of(q); }
  std::int64_t tk() const { return rows_of(kv); }
  void forward(std::vector<float>& out, std::vector<float>& lse, bool merge) const {
    attention_segments_forward(Stream::cpu(), out.data(), lse.data(), qf.data(), c, kf.data(),
                               vf.data(), c, b, tq(), tk(), q, kv, c, h, merge);
  }
};

// Merging into rows that saw keys before: lse' = log(exp(lse) + exp(lse_new)) and out' the two
// outs weighted by exp(lse - lse'), exp(lse_new - lse'); rows this call's keys do not reach stay
// as they were, bit for bit; without merge they get 0 and -inf.
TEST(AttentionSegmentsMerge, MergesIntoEarlierKeysAndLeavesRowsWithoutKeys) {
  const Dense a(2, 8, 2, {{0, 5}, {20, 5}}, {{10, 6}}, 61);  // rows 0..4 precede every key
  const std::int64_t tq = a.tq();
  std::vector<float> fresh_out(a.b * tq * a.c, kNan), fresh_lse(a.b * a.h * tq, kNan);
  a.forward(fresh_out, fresh_lse, false);
  const auto old_out = random_floats(fresh_out.size(), 62);
  auto old_lse = random_floats(fresh_lse.size(), 63);
  std::vector<float> out = old_out, lse = old_lse;
  a.forward(out, lse, true);
  const std::int64_t d = a.c / a.h;
  for (std::int64_t i = 0; i < a.b; ++i) {
    for (std::int64_t head = 0; head < a.h; ++head) {
      for (std::int64_t r = 0; r < tq; ++r) {
        const std::int64_t l = (i * a.h + head) * tq + r;
        if (r < 5) {  // positions 0..4: no key of this call
          EXPECT_EQ(fresh_lse[l], -INFINITY);
          EXPECT_EQ(lse[l], old_lse[l]);
        } else {
          const double lse_new = fresh_lse[l], lse_old = old_lse[l];
          const double merged = std::log(std::exp(lse_old) + std::exp(lse_new));
          EXPECT_NEAR(lse[l], merged, 1e-6);
          for (std::int64_t j = 0; j < d; ++j) {
            const std::int64_t o = (i * tq + r) * a.c + head * d + j;
            const double want =
                std::exp(lse_old - merged) * old_out[o] + std::exp(lse_new - merged) * fresh_out[o];
            EXPECT_NEAR(out[o], want, 1e-6) << i << " " << head << " " << r << " " << j;
          }
        }
        for (std::int64_t j = 0; j < d; ++j) {
          const std::int64_t o = (i * tq + r) * a.c + head * d + j;
          if (r < 5) {
            EXPECT_EQ(fresh_out[o], 0.0f);
            EXPECT_EQ(std::memcmp(&out[o], &old_out[o], sizeof(float)), 0);
          }
        }
      }
    }
  }
}

// A merge into rows that saw nothing yet (out 0, lse -inf) is the overwriting call, bit for bit;
// merging two key sets in either order equals one call over both within rounding.
TEST(AttentionSegmentsMerge, MergeOrderChangesOnlyRounding) {
  const Segments q{{3, 40}, {70, 30}};
  const Segments first{{0, 50}}, second{{50, 60}}, both{{0, 110}};
  const Dense all(2, 16, 2, q, both, 71);
  const std::int64_t tq = all.tq(), c = all.c;
  std::vector<float> want_out(all.b * tq * c), want_lse(all.b * all.h * tq);
  all.forward(want_out, want_lse, false);
  // The same keys as two calls: batch row i's first 50 rows, then its other 60.
  auto part = [&](const Segments& kv, std::int64_t begin, std::int64_t rows) {
    Dense d = all;
    d.kv = kv;
    d.kf.clear();
    d.vf.clear();
    for (std::int64_t i = 0; i < all.b; ++i) {
      const auto from = all.kf.begin() + i * 110 * c + begin * c;
      d.kf.insert(d.kf.end(), from, from + rows * c);
      const auto vfrom = all.vf.begin() + i * 110 * c + begin * c;
      d.vf.insert(d.vf.end(), vfrom, vfrom + rows * c);
    }
    return d;
  };
  const Dense a = part(first, 0, 50), b = part(second, 50, 60);
  for (const bool a_first : {true, false}) {
    std::vector<float> out(want_out.size(), 0.0f), lse(want_lse.size(), -INFINITY);
    (a_first ? a : b).forward(out, lse, true);
    std::vector<float> fresh_out(out.size()), fresh_lse(lse.size());
    (a_first ? a : b).forward(fresh_out, fresh_lse, false);
    EXPECT_EQ(out, fresh_out);
    EXPECT_EQ(lse, fresh_lse);
    (a_first ? b : a).forward(out, lse, true);
    const double d_out = relative_to_largest(out, want_out),
                 d_lse = relative_to_largest(lse, want_lse);
    std::printf("[ measured ] merge %s: vs one call, max|d| / max: out %.2e, lse %.2e\n",
                a_first ? "A then B" : "B then A", d_out, d_lse);
    EXPECT_LE(d_out, 1e-6);
    EXPECT_LE(d_lse, 1e-6);
  }
}

// --- Accumulate ------------------------------------------------------------------------------

// accumulate_dkv: old + (the overwriting result), bit for bit; accumulate_dq: within rounding of
// it (added into key block by key block). Strided gradients; the padding stays untouched.
TEST(AttentionSegmentsBackward, AccumulateAddsIntoTheGradients) {
  const Segments q = context_parallel_segments(320, 2, 1),
                 kv = context_parallel_gathered_segments(320, 2);
  const std::int64_t b = 2, c = 16, h = 2, tq = rows_of(q), tk = rows_of(kv);
  const std::int64_t lddq = c + 1, lddkv = 2 * c + 3;
  const auto qf = random_floats(b * tq * c, 81), kf = random_floats(b * tk * c, 82),
             vf = random_floats(b * tk * c, 83), dout = random_floats(b * tq * c, 84);
  const Stream cpu = Stream::cpu();
  std::vector<float> out(b * tq * c), lse(b * h * tq);
  attention_segments_forward(cpu, out.data(), lse.data(), qf.data(), c, kf.data(), vf.data(), c, b,
                             tq, tk, q, kv, c, h, false);
  const auto run = [&](std::vector<float>& dq, std::vector<float>& dkv, bool acc_dq, bool acc_dkv) {
    attention_segments_backward(cpu, dq.data(), lddq, dkv.data(), dkv.data() + c, lddkv,
                                dout.data(), qf.data(), c, kf.data(), vf.data(), c, out.data(),
                                lse.data(), b, tq, tk, q, kv, c, h, acc_dq, acc_dkv);
  };
  std::vector<float> dq0(b * tq * lddq, kPad), dkv0(b * tk * lddkv, kPad);
  run(dq0, dkv0, false, false);
  const auto old_dq = random_floats(dq0.size(), 85), old_dkv = random_floats(dkv0.size(), 86);
  std::vector<float> dq = old_dq, dkv = old_dkv;
  run(dq, dkv, true, true);
  for (std::int64_t r = 0; r < b * tk; ++r) {
    for (std::int64_t j = 0; j < lddkv; ++j) {
      const std::int64_t i = r * lddkv + j;
      const float want = j < 2 * c ? old_dkv[i] + dkv0[i] : old_dkv[i];
      ASSERT_EQ(dkv[i], want) << "dkv row " << r << " column " << j;
    }
  }
  std::vector<float> got, want;
  for (std::int64_t r = 0; r < b * tq; ++r) {
    for (std::int64_t j = 0; j < lddq; ++j) {
      const std::int64_t i = r * lddq + j;
      if (j >= c) {
        ASSERT_EQ(dq[i], old_dq[i]) << "padding of dq row " << r;
        continue;
      }
      got.push_back(dq[i]);
      want.push_back(old_dq[i] + dq0[i]);
    }
  }
  const double d_dq = relative_to_largest(got, want);
  std::printf("[ measured ] accumulate_dq vs old + dq: max|d| / max %.2e\n", d_dq);
  EXPECT_LE(d_dq, 1e-6);
}

// --- Edges -----------------------------------------------------------------------------------

TEST(AttentionSegmentsEdges, EmptyShapes) {
  const Stream cpu = Stream::cpu();
  const std::int64_t c = 4, h = 2;
  // No batch rows, or no queries: nothing is read or written.
  EXPECT_NO_THROW(attention_segments_forward(cpu, nullptr, nullptr, nullptr, c, nullptr, nullptr, c,
                                             0, 3, 3, {{0, 3}}, {{0, 3}}, c, h, false));
  EXPECT_NO_THROW(attention_segments_forward(cpu, nullptr, nullptr, nullptr, c, nullptr, nullptr, c,
                                             2, 0, 3, {}, {{0, 3}}, c, h, false));
  // No keys: out 0 and lse -inf, or left as they were with merge.
  std::vector<float> q = random_floats(2 * 3 * c, 91), out(2 * 3 * c, 5.0f), lse(2 * h * 3, 5.0f);
  attention_segments_forward(cpu, out.data(), lse.data(), q.data(), c, nullptr, nullptr, c, 2, 3, 0,
                             {{0, 3}}, {}, c, h, true);
  EXPECT_EQ(out, std::vector<float>(out.size(), 5.0f));
  EXPECT_EQ(lse, std::vector<float>(lse.size(), 5.0f));
  attention_segments_forward(cpu, out.data(), lse.data(), q.data(), c, nullptr, nullptr, c, 2, 3, 0,
                             {{0, 3}}, {}, c, h, false);
  EXPECT_EQ(out, std::vector<float>(out.size(), 0.0f));
  EXPECT_EQ(lse, std::vector<float>(lse.size(), -INFINITY));
  // Backward with no queries: dk, dv are 0 (or unchanged with accumulate); with no keys, dq.
  std::vector<float> k = random_floats(2 * 3 * c, 92), dk(k.size(), 5.0f), dv(k.size(), 5.0f);
  attention_segments_backward(cpu, nullptr, c, dk.data(), dv.data(), c, nullptr, nullptr, c,
                              k.data(), k.data(), c, nullptr, nullptr, 2, 0, 3, {}, {{0, 3}}, c, h,
                              false, true);
  EXPECT_EQ(dk, std::vector<float>(dk.size(), 5.0f));
  attention_segments_backward(cpu, nullptr, c, dk.data(), dv.data(), c, nullptr, nullptr, c,
                              k.data(), k.data(), c, nullptr, nullptr, 2, 0, 3, {}, {{0, 3}}, c, h,
                              false, false);
  EXPECT_EQ(dk, std::vector<float>(dk.size(), 0.0f));
  EXPECT_EQ(dv, std::vector<float>(dv.size(), 0.0f));
  std::vector<float> dq(q.size(), 5.0f), dout = random_floats(q.size(), 93);
  attention_segments_backward(cpu, dq.data(), c, nullptr, nullptr, c, dout.data(), q.data(), c,
                              nullptr, nullptr, c, out.data(), lse.data(), 2, 3, 0, {{0, 3}}, {}, c,
                              h, false, false);
  EXPECT_EQ(dq, std::vector<float>(dq.size(), 0.0f));
}

// A query that sees no key in any call (lse -inf) gets no gradient and gives none, not NaN.
TEST(AttentionSegmentsEdges, RowsWithoutAnyKeyHaveZeroGradients) {
  const Dense a(1, 4, 2, {{0, 2}, {8, 2}}, {{5, 4}}, 95);  // positions 0 and 1 precede every key
  std::vector<float> out(a.tq() * a.c), lse(a.h * a.tq());
  a.forward(out, lse, false);
  const auto dout = random_floats(out.size(), 96);
  std::vector<float> dq(out.size(), kNan), dk(a.kf.size(), kNan), dv(a.kf.size(), kNan);
  attention_segments_backward(Stream::cpu(), dq.data(), a.c, dk.data(), dv.data(), a.c, dout.data(),
                              a.qf.data(), a.c, a.kf.data(), a.vf.data(), a.c, out.data(),
                              lse.data(), 1, a.tq(), a.tk(), a.q, a.kv, a.c, a.h, false, false);
  for (const auto* g : {&dq, &dk, &dv}) {
    for (const float x : *g) ASSERT_TRUE(std::isfinite(x));
  }
  for (std::int64_t j = 0; j < 2 * a.c; ++j) EXPECT_EQ(dq[j], 0.0f) << j;
}

TEST(AttentionSegmentsEdges, RepeatedRunsAreBitIdentical) {
  const Segments q = context_parallel_segments(400, 2, 0),
                 kv = context_parallel_gathered_segments(400, 2);
  const Dense a(2, 16, 4, q, kv, 97);
  const auto dout = random_floats(a.qf.size(), 98);
  std::vector<std::vector<float>> runs;
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<float> out(a.qf.size()), lse(a.b * a.h * a.tq()), dq(a.qf.size()), dk(a.kf.size()),
        dv(a.kf.size());
    a.forward(out, lse, false);
    attention_segments_backward(Stream::cpu(), dq.data(), a.c, dk.data(), dv.data(), a.c,
                                dout.data(), a.qf.data(), a.c, a.kf.data(), a.vf.data(), a.c,
                                out.data(), lse.data(), a.b, a.tq(), a.tk(), q, kv, a.c, a.h, false,
                                false);
    for (auto* v : {&out, &lse, &dq, &dk, &dv}) runs.push_back(*v);
  }
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(runs[i], runs[i + 5]) << i;
}

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no throw";
}

TEST(AttentionSegmentsEdges, BadArgumentsThrowNamingTheValues) {
  std::vector<float> buf(4096, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  const Segments s4{{0, 4}};
  const auto fwd = [&](std::int64_t ldq, std::int64_t ldkv, std::int64_t tq, std::int64_t tk,
                       const Segments& qs, const Segments& ks, std::int64_t c, std::int64_t h) {
    return error_of([&] {
      attention_segments_forward(cpu, p, p, p, ldq, p, p, ldkv, 1, tq, tk, qs, ks, c, h, false);
    });
  };
  EXPECT_EQ(fwd(8, 8, 5, 4, s4, s4, 8, 2),
            "attention_segments_forward: q_segments cover 4 rows but tq = 5: the segments' "
            "lengths must sum to it");
  EXPECT_EQ(fwd(8, 8, 4, 3, s4, s4, 8, 2),
            "attention_segments_forward: kv_segments[0] = {position 0, length 4}: the segments "
            "run past tk = 3 rows");
  EXPECT_EQ(fwd(8, 8, 4, 4, {{0, 2}, {9, 0}, {2, 2}}, s4, 8, 2),
            "attention_segments_forward: q_segments[1] = {position 9, length 0}: length must be "
            "positive");
  EXPECT_EQ(fwd(8, 8, 4, 4, s4, {{-1, 4}}, 8, 2),
            "attention_segments_forward: kv_segments[0] = {position -1, length 4}: positions "
            "must lie in [0, 2^31)");
  EXPECT_EQ(fwd(6, 6, 4, 4, s4, s4, 6, 4),
            "attention_segments_forward: c = 6 must be divisible by h = 4");
  EXPECT_EQ(fwd(7, 8, 4, 4, s4, s4, 8, 2),
            "attention_segments_forward: ldq = 7 must be in [c = 8, 2^31)");
  EXPECT_EQ(fwd(8, 4, 4, 4, s4, s4, 8, 2),
            "attention_segments_forward: ldkv = 4 must be in [c = 8, 2^31)");
  EXPECT_NE(fwd(8, 8, 4, 4, s4, s4, 8, 0).find("h = 0"), std::string::npos);
  EXPECT_NE(fwd(8, 8, -1, 4, s4, s4, 8, 2).find("tq = -1"), std::string::npos);
  EXPECT_THROW(
      attention_segments_forward(cpu, p, nullptr, p, 8, p, p, 8, 1, 4, 4, s4, s4, 8, 2, false),
      std::invalid_argument);
  EXPECT_THROW(
      attention_segments_forward(cpu, p, p, p, 8, p, nullptr, 8, 1, 4, 4, s4, s4, 8, 2, false),
      std::invalid_argument);
  const auto bwd = [&](std::int64_t lddq, std::int64_t lddkv, std::int64_t tk, float* lse) {
    return error_of([&] {
      attention_segments_backward(cpu, p, lddq, p, p, lddkv, p, p, 8, p, p, 8, p, lse, 1, 4, tk, s4,
                                  s4, 8, 2, false, false);
    });
  };
  EXPECT_EQ(bwd(8, 8, 6, p),
            "attention_segments_backward: kv_segments cover 4 rows but tk = 6: the segments' "
            "lengths must sum to it");
  EXPECT_EQ(bwd(3, 8, 4, p), "attention_segments_backward: lddq = 3 must be in [c = 8, 2^31)");
  EXPECT_EQ(bwd(8, 2, 4, p), "attention_segments_backward: lddkv = 2 must be in [c = 8, 2^31)");
  EXPECT_EQ(bwd(8, 8, 4, nullptr),
            "attention_segments_backward: null tensor pointer with a non-empty shape");
}

}  // namespace
}  // namespace strata::kernels
