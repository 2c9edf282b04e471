// Token + position embedding on the CPU: forward against the scalar double reference, backward
// (scatter-add into both tables, with repeated tokens) against central finite differences of
// that reference, edge cases (no tokens, bad tokens), determinism and argument checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::embedding_reference;
using testing::expect_close;
using testing::random_floats;
using testing::to_double;
using testing::weighted_sum;

constexpr std::int64_t kB = 2, kT = 5, kC = 4, kVocab = 6;
// Token 2 appears three times and token 5 never: repeats must accumulate, unused rows be zero.
const std::vector<std::int32_t> kTokens = {2, 0, 2, 1, 4, 3, 2, 0, 1, 4};

TEST(EmbeddingCpu, ForwardMatchesScalarReference) {
  const auto wte = random_floats(kVocab * kC, 1), wpe = random_floats(kT * kC, 2);
  std::vector<float> out(kB * kT * kC);
  embedding_forward(Stream::cpu(), out.data(), kTokens.data(), wte.data(), wpe.data(), kB, kT, kC,
                    kVocab);
  // One fp32 addition per element: within half an ulp of the double sum.
  expect_close(out, embedding_reference(kTokens, to_double(wte), to_double(wpe), kB, kT, kC), 1e-7,
               1e-7, "out");
}

TEST(EmbeddingCpu, BackwardMatchesCentralDifferences) {
  const auto wtef = random_floats(kVocab * kC, 3), wpef = random_floats(kT * kC, 4);
  const auto doutf = random_floats(kB * kT * kC, 5);
  std::vector<float> dwte(wtef.size(), 9.0f), dwpe(wpef.size(), 9.0f);
  embedding_backward(Stream::cpu(), dwte.data(), dwpe.data(), doutf.data(), kTokens.data(), kB, kT,
                     kC, kVocab);
  std::vector<double> wte = to_double(wtef), wpe = to_double(wpef);
  const std::vector<double> dout = to_double(doutf);
  const auto loss = [&] {
    return weighted_sum(dout, embedding_reference(kTokens, wte, wpe, kB, kT, kC));
  };
  // Sums of at most three unit normals: exact up to a few fp32 roundings.
  expect_close(dwte, central_differences(wte, loss), 1e-6, 1e-5, "dwte");
  expect_close(dwpe, central_differences(wpe, loss), 1e-6, 1e-5, "dwpe");
  for (std::int64_t j = 0; j < kC; ++j) EXPECT_EQ(dwte[5 * kC + j], 0.0f) << "unused token 5";
}

TEST(EmbeddingCpuEdges, NoTokensZeroTheTables) {
  std::vector<float> dwte(kVocab * kC, 9.0f), dwpe(kT * kC, 9.0f);
  embedding_forward(Stream::cpu(), nullptr, nullptr, nullptr, nullptr, 0, kT, kC, kVocab);
  embedding_backward(Stream::cpu(), dwte.data(), dwpe.data(), nullptr, nullptr, 0, kT, kC, kVocab);
  EXPECT_EQ(dwte, std::vector<float>(dwte.size(), 0.0f));
  EXPECT_EQ(dwpe, std::vector<float>(dwpe.size(), 0.0f));
}

TEST(EmbeddingCpuEdges, BackwardIsDeterministic) {
  const auto dout = random_floats(kB * kT * kC, 6);
  std::vector<float> a(kVocab * kC), b(kVocab * kC), pa(kT * kC), pb(kT * kC);
  const Stream cpu = Stream::cpu();
  embedding_backward(cpu, a.data(), pa.data(), dout.data(), kTokens.data(), kB, kT, kC, kVocab);
  embedding_backward(cpu, b.data(), pb.data(), dout.data(), kTokens.data(), kB, kT, kC, kVocab);
  EXPECT_EQ(a, b);
  EXPECT_EQ(pa, pb);
}

TEST(EmbeddingCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(256, 1.0f);
  float* p = buf.data();
  const std::vector<std::int32_t> bad_tokens = {0, 6}, negative = {-3, 0};
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(embedding_forward(cpu, p, kTokens.data(), p, p, 1, 2, 0, 6), std::invalid_argument);
  EXPECT_THROW(embedding_forward(cpu, p, kTokens.data(), p, p, 1, 2, 4, 0), std::invalid_argument);
  EXPECT_THROW(embedding_forward(cpu, p, kTokens.data(), p, p, -1, 2, 4, 6), std::invalid_argument);
  EXPECT_THROW(embedding_forward(cpu, p, nullptr, p, p, 1, 2, 4, 6), std::invalid_argument);
  EXPECT_THROW(embedding_forward(cpu, p, bad_tokens.data(), p, p, 1, 2, 4, 6), std::out_of_range);
  EXPECT_THROW(embedding_backward(cpu, p, p, p, negative.data(), 1, 2, 4, 6), std::out_of_range);
  EXPECT_THROW(embedding_backward(cpu, nullptr, p, p, kTokens.data(), 1, 2, 4, 6),
               std::invalid_argument);
  try {
    embedding_forward(cpu, p, bad_tokens.data(), p, p, 1, 2, 4, 6);
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("tokens[1] = 6"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strata::kernels
