// The vocabulary-parallel word embedding and the position embedding over slices of rows
// (parallel_ops.hpp) on the CPU: each against the double reference; the backward ones against
// central finite differences of the sharded forward; their accumulation (result = old + new);
// shards and slices put back together equal the plain embedding_forward / embedding_backward
// bit for bit; tokens outside the shard; argument checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::add_positions_reference;
using testing::central_differences;
using testing::embedding_shard_reference;
using testing::expect_close;
using testing::random_floats;
using testing::to_double;
using testing::weighted_sum;

constexpr std::int64_t kB = 2, kT = 5, kC = 4, kVocab = 7;
// Token 2 three times, token 6 never; the shards below are [0, 3), [3, 5), [5, 7).
const std::vector<std::int32_t> kTokens = {2, 0, 2, 1, 4, 3, 2, 0, 1, 5};
constexpr std::int64_t kN = kB * kT;

struct Shard {
  std::int64_t first;
  std::int64_t rows;
};
const Shard kShards[] = {{0, 3}, {3, 2}, {5, 2}};

// Rows first .. first + rows - 1 of a (V, C) table.
std::vector<float> shard_of(const std::vector<float>& table, const Shard& s) {
  return {table.begin() + s.first * kC, table.begin() + (s.first + s.rows) * kC};
}

TEST(EmbeddingShardCpu, ForwardMatchesReference) {
  const auto wte = random_floats(kVocab * kC, 1);
  for (const Shard& s : kShards) {
    const auto part = shard_of(wte, s);
    std::vector<float> out(kN * kC, 9.0f);
    embedding_shard_forward(Stream::cpu(), out.data(), kTokens.data(), part.data(), s.first, s.rows,
                            kN, kC);
    // A copy or a zero row: exact.
    expect_close(out, embedding_shard_reference(kTokens, to_double(part), s.first, s.rows, kC), 0.0,
                 0.0, "shard from " + std::to_string(s.first));
  }
}

TEST(EmbeddingShardCpu, AddPositionsMatchesReference) {
  const auto wpe = random_floats(kT * kC, 2);
  const auto x = random_floats(kN * kC, 3);
  // Slices of the (B*T, C) rows that start mid-sequence and wrap into the next one.
  for (const auto& [first_row, rows] :
       {std::pair<std::int64_t, std::int64_t>{0, kN}, {3, 4}, {7, 3}}) {
    std::vector<float> slice(x.begin() + first_row * kC, x.begin() + (first_row + rows) * kC);
    const auto want =
        add_positions_reference(to_double(slice), to_double(wpe), first_row, rows, kT, kC);
    add_positions(Stream::cpu(), slice.data(), wpe.data(), first_row, rows, kT, kC);
    // One fp32 addition per element: correctly rounded.
    expect_close(slice, want, 0.0, 1e-7, "rows from " + std::to_string(first_row));
  }
}

// The tensor-parallel forward: each shard's output, summed over the shards (the all-reduce),
// then the positions added per sequence-parallel slice, is embedding_forward's output.
TEST(EmbeddingShardCpu, ShardsAndSlicesEqualTheFullEmbedding) {
  const auto wte = random_floats(kVocab * kC, 4), wpe = random_floats(kT * kC, 5);
  const Stream cpu = Stream::cpu();
  std::vector<float> summed(kN * kC, 0.0f), part_out(kN * kC);
  for (const Shard& s : kShards) {
    const auto part = shard_of(wte, s);
    embedding_shard_forward(cpu, part_out.data(), kTokens.data(), part.data(), s.first, s.rows, kN,
                            kC);
    add_inplace(cpu, summed.data(), part_out.data(), kN * kC);
  }
  add_positions(cpu, summed.data(), wpe.data(), 0, 6, kT, kC);
  add_positions(cpu, summed.data() + 6 * kC, wpe.data(), 6, kN - 6, kT, kC);
  std::vector<float> full(kN * kC);
  embedding_forward(cpu, full.data(), kTokens.data(), wte.data(), wpe.data(), kB, kT, kC, kVocab);
  EXPECT_EQ(summed, full);
}

// loss = sum(dout * (shard forward + positions)) over one shard and one slice of rows.
TEST(EmbeddingShardCpu, BackwardMatchesCentralDifferences) {
  const Shard s = kShards[0];
  const std::int64_t first_row = 3, rows = 6;
  const auto wtef = random_floats(s.rows * kC, 6), wpef = random_floats(kT * kC, 7);
  const auto doutf = random_floats(kN * kC, 8);
  std::vector<float> dwte(wtef.size(), 0.0f), dwpe(wpef.size(), 0.0f);
  const Stream cpu = Stream::cpu();
  embedding_shard_backward(cpu, dwte.data(), doutf.data(), kTokens.data(), s.first, s.rows, kN, kC);
  positions_backward(cpu, dwpe.data(), doutf.data() + first_row * kC, first_row, rows, kT, kC);

  std::vector<double> wte = to_double(wtef), wpe = to_double(wpef);
  const std::vector<double> dout = to_double(doutf);
  const std::vector<double> slice_dout(dout.begin() + first_row * kC,
                                       dout.begin() + (first_row + rows) * kC);
  const auto loss = [&] {
    const auto out = embedding_shard_reference(kTokens, wte, s.first, s.rows, kC);
    const std::vector<double> slice(out.begin() + first_row * kC,
                                    out.begin() + (first_row + rows) * kC);
    return weighted_sum(dout, out) -
           weighted_sum(slice_dout, slice) +  // the slice's rows counted once, with positions
           weighted_sum(slice_dout, add_positions_reference(slice, wpe, first_row, rows, kT, kC));
  };
  // Sums of at most three unit normals.
  expect_close(dwte, central_differences(wte, loss), 1e-6, 1e-5, "dwte_shard");
  expect_close(dwpe, central_differences(wpe, loss), 1e-6, 1e-5, "dwpe");
}

TEST(EmbeddingShardCpu, BackwardAccumulatesIntoOldValues) {
  const Shard s = kShards[0];
  const auto dout = random_floats(kN * kC, 9);
  const auto old_dwte = random_floats(s.rows * kC, 10), old_dwpe = random_floats(kT * kC, 11);
  std::vector<float> dwte(old_dwte.size(), 0.0f), dwpe(old_dwpe.size(), 0.0f);
  std::vector<float> acc_dwte = old_dwte, acc_dwpe = old_dwpe;
  const Stream cpu = Stream::cpu();
  embedding_shard_backward(cpu, dwte.data(), dout.data(), kTokens.data(), s.first, s.rows, kN, kC);
  embedding_shard_backward(cpu, acc_dwte.data(), dout.data(), kTokens.data(), s.first, s.rows, kN,
                           kC);
  positions_backward(cpu, dwpe.data(), dout.data(), 0, kN, kT, kC);
  positions_backward(cpu, acc_dwpe.data(), dout.data(), 0, kN, kT, kC);
  std::vector<double> want_dwte(dwte.size()), want_dwpe(dwpe.size());
  for (std::size_t k = 0; k < dwte.size(); ++k) want_dwte[k] = double{old_dwte[k]} + dwte[k];
  for (std::size_t k = 0; k < dwpe.size(); ++k) want_dwpe[k] = double{old_dwpe[k]} + dwpe[k];
  // A running sum from the old value: within a few fp32 roundings of old + new.
  expect_close(acc_dwte, want_dwte, 1e-6, 1e-6, "dwte_shard");
  expect_close(acc_dwpe, want_dwpe, 1e-6, 1e-6, "dwpe");
}

// From zeroed tables, the shards' gradients side by side and the positions' gradient over all
// rows are embedding_backward's, bit for bit (the same additions in the same order).
TEST(EmbeddingShardCpu, BackwardShardsEqualTheFullEmbeddingBackward) {
  const auto dout = random_floats(kN * kC, 12);
  const Stream cpu = Stream::cpu();
  std::vector<float> dwte(kVocab * kC, 0.0f), dwpe(kT * kC, 0.0f);
  for (const Shard& s : kShards) {
    embedding_shard_backward(cpu, dwte.data() + s.first * kC, dout.data(), kTokens.data(), s.first,
                             s.rows, kN, kC);
  }
  positions_backward(cpu, dwpe.data(), dout.data(), 0, kN, kT, kC);
  std::vector<float> full_dwte(kVocab * kC), full_dwpe(kT * kC);
  embedding_backward(cpu, full_dwte.data(), full_dwpe.data(), dout.data(), kTokens.data(), kB, kT,
                     kC, kVocab);
  EXPECT_EQ(dwte, full_dwte);
  EXPECT_EQ(dwpe, full_dwpe);
}

TEST(EmbeddingShardCpuEdges, TokensOutsideTheShardGiveZeroRowsAndNoGradient) {
  const std::vector<std::int32_t> tokens = {0, 9, 1000000};       // beyond any vocabulary: no shard
  const std::vector<float> wte_shard = {1.0f, 2.0f, 3.0f, 4.0f};  // rows 0, 1 with C = 2
  std::vector<float> out(6, 7.0f);
  embedding_shard_forward(Stream::cpu(), out.data(), tokens.data(), wte_shard.data(), 0, 2, 3, 2);
  EXPECT_EQ(out, (std::vector<float>{1.0f, 2.0f, 0.0f, 0.0f, 0.0f, 0.0f}));
  std::vector<float> dwte = {0.5f, 0.5f, 0.5f, 0.5f};
  const std::vector<float> dout = {1.0f, 1.0f, 2.0f, 2.0f, 3.0f, 3.0f};
  embedding_shard_backward(Stream::cpu(), dwte.data(), dout.data(), tokens.data(), 0, 2, 3, 2);
  EXPECT_EQ(dwte, (std::vector<float>{1.5f, 1.5f, 0.5f, 0.5f}));
}

TEST(EmbeddingShardCpuEdges, NoRowsChangeNothing) {
  std::vector<float> table(8, 3.0f);
  const Stream cpu = Stream::cpu();
  EXPECT_NO_THROW(embedding_shard_forward(cpu, nullptr, nullptr, nullptr, 0, 2, 0, 4));
  embedding_shard_backward(cpu, table.data(), nullptr, nullptr, 0, 2, 0, 4);
  add_positions(cpu, nullptr, nullptr, 5, 0, 2, 4);
  positions_backward(cpu, table.data(), nullptr, 5, 0, 2, 4);
  EXPECT_EQ(table, std::vector<float>(8, 3.0f));
}

TEST(EmbeddingShardCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(256, 1.0f);
  float* p = buf.data();
  const std::vector<std::int32_t> negative = {0, -2};
  const std::int32_t* t = kTokens.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(embedding_shard_forward(cpu, p, t, p, 0, 2, 2, 0), std::invalid_argument);
  EXPECT_THROW(embedding_shard_forward(cpu, p, t, p, 0, 0, 2, 4), std::invalid_argument);
  EXPECT_THROW(embedding_shard_forward(cpu, p, t, p, -1, 2, 2, 4), std::invalid_argument);
  EXPECT_THROW(embedding_shard_forward(cpu, p, t, p, 0, 2, -1, 4), std::invalid_argument);
  EXPECT_THROW(embedding_shard_forward(cpu, p, t, p, std::int64_t{1} << 31, 2, 2, 4),
               std::invalid_argument);
  EXPECT_THROW(embedding_shard_forward(cpu, p, t, p, (std::int64_t{1} << 31) - 1, 2, 2, 4),
               std::invalid_argument);
  EXPECT_THROW(embedding_shard_forward(cpu, p, nullptr, p, 0, 2, 2, 4), std::invalid_argument);
  EXPECT_THROW(embedding_shard_forward(cpu, p, negative.data(), p, 0, 2, 2, 4), std::out_of_range);
  EXPECT_THROW(embedding_shard_backward(cpu, nullptr, p, t, 0, 2, 2, 4), std::invalid_argument);
  EXPECT_THROW(embedding_shard_backward(cpu, p, p, t, 0, 2, 2, 0), std::invalid_argument);
  EXPECT_THROW(embedding_shard_backward(cpu, p, p, negative.data(), 0, 2, 2, 4), std::out_of_range);
  EXPECT_THROW(add_positions(cpu, p, p, 0, 2, 0, 4), std::invalid_argument);
  EXPECT_THROW(add_positions(cpu, p, p, -1, 2, 4, 4), std::invalid_argument);
  EXPECT_THROW(add_positions(cpu, p, p, 0, -2, 4, 4), std::invalid_argument);
  EXPECT_THROW(add_positions(cpu, p, nullptr, 0, 2, 4, 4), std::invalid_argument);
  EXPECT_THROW(positions_backward(cpu, p, p, 0, 2, 4, 0), std::invalid_argument);
  EXPECT_THROW(positions_backward(cpu, nullptr, p, 0, 2, 4, 4), std::invalid_argument);
  try {
    embedding_shard_forward(cpu, p, negative.data(), p, 0, 2, 2, 4);
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("tokens[1] = -2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strata::kernels
