// Argument checks, backend dispatch and the CPU path of collective_ops.hpp; the CUDA path
// enqueues kernels/cuda/collective_ops.cu's kernel.
// defines: the entry points declared in collective_ops.hpp
#include "kernels/collective_ops.hpp"

#include <algorithm>
#include <string>

#include "kernels/detail/checks.hpp"
#include "kernels/parallel_ops.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/collective_ops_cuda.hpp"
#include "kernels/cuda/model_ops_cuda.hpp"
#endif

namespace strata::kernels {

Event combine_gathered_softmax_stats(const Stream& stream, float* out, const float* gathered,
                                     std::int64_t members, std::int64_t rows) {
  const char* op = "combine_gathered_softmax_stats";
  detail::check_size(op, "members", members, false);
  detail::check_size(op, "rows", rows, true);
  detail::require(
      members * rows * 3 <= std::int64_t{1} << 31, op,
      "members * rows * 3 = " + std::to_string(members * rows * 3) + " must be at most 2^31");
  detail::require_pointers(op, rows, {out, gathered});
  if (rows == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    std::copy(gathered, gathered + 3 * rows, out);
    for (std::int64_t j = 1; j < members; ++j) {
      combine_softmax_stats(out, gathered + j * 3 * rows, rows);
    }
  } else {
    STRATA_CUDA_ONLY(cuda::combine_gathered_softmax_stats(cuda::stream_of(stream), out, gathered,
                                                          members, rows);)
  }
  return stream.record_event();
}

}  // namespace strata::kernels
