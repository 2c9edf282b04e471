// The ops of kernels/ that have no CUDA kernels yet (the attention over explicit positions, which
// context parallelism uses; every other op's CUDA version is checked by cross_backend_test.cpp): on
// a CUDA stream each must throw std::runtime_error saying so (after its argument checks) rather
// than touch device memory as if it were host memory. Needs a CUDA device to create the stream,
// so it skips without one.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

TEST(ModelOpsCuda, EveryOpThrowsNotImplemented) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream s = Stream::cuda(0);
  Buffer buf(s, 4096);
  float* p = buf.as<float>();
  const std::vector<std::pair<const char*, std::function<void()>>> calls = {
      {"attention_segments_forward",
       [&] {
         attention_segments_forward(s, p, p, p, 4, p, p, 4, 1, 2, 2, {{0, 2}}, {{0, 2}}, 4, 2,
                                    false);
       }},
      {"attention_segments_backward",
       [&] {
         attention_segments_backward(s, p, 4, p, p, 4, p, p, 4, p, p, 4, p, p, 1, 2, 2, {{0, 2}},
                                     {{0, 2}}, 4, 2, false, false);
       }},
  };
  for (const auto& [name, call] : calls) {
    try {
      call();
      ADD_FAILURE() << name << " did not throw on a CUDA stream";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("not implemented on CUDA yet"), std::string::npos)
          << name << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace strata::kernels
