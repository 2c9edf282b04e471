// Internal: the launcher behind collective_ops.hpp (kernels/cuda/collective_ops.cu). Enqueues on
// `stream` (the current device must be the stream's); arguments are already validated.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace strata::kernels::cuda {

void combine_gathered_softmax_stats(cudaStream_t stream, float* out, const float* gathered,
                                    std::int64_t members, std::int64_t rows);

}  // namespace strata::kernels::cuda
