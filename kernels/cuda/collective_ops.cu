// CUDA version of collective_ops.hpp: one thread per row folds the members' triples in group
// order with combine_softmax_stats's arithmetic (kernels/cpu/parallel_ops_cpu.cpp), so the
// result differs from the CPU's only by expf's last bits.
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/collective_ops_cuda.hpp"
#include "kernels/cuda/grid.cuh"

namespace strata::kernels::cuda {
namespace {

__global__ void combine_gathered_softmax_stats_kernel(float* __restrict__ out,
                                                      const float* __restrict__ gathered,
                                                      std::int64_t members, std::int64_t rows) {
  for (std::int64_t i = grid::first_index(); i < rows; i += grid::stride()) {
    float m = gathered[3 * i];
    float s = gathered[3 * i + 1];
    float t = gathered[3 * i + 2];
    for (std::int64_t j = 1; j < members; ++j) {
      const float* in = gathered + (j * rows + i) * 3;
      const float m2 = in[0];
      const bool first_is_max = m >= m2;
      const float mx = first_is_max ? m : m2;
      const float other_m = first_is_max ? m2 : m;
      const float s_max = first_is_max ? s : in[1];
      const float s_other = first_is_max ? in[1] : s;
      const float scale = m == m2 ? 1.0f : expf(other_m - mx);
      m = mx;
      s = s_max + s_other * scale;
      t += in[2];
    }
    out[3 * i] = m;
    out[3 * i + 1] = s;
    out[3 * i + 2] = t;
  }
}

}  // namespace

void combine_gathered_softmax_stats(cudaStream_t stream, float* out, const float* gathered,
                                    std::int64_t members, std::int64_t rows) {
  combine_gathered_softmax_stats_kernel<<<grid::blocks_for(rows), grid::kBlock, 0, stream>>>(
      out, gathered, members, rows);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strata::kernels::cuda
