// Ops that a communication backend runs on gathered data where its library has no matching
// reduction (the NCCL backend, executor/comm_nccl.cpp): the softmax-statistics all-reduce is an
// all-gather of every member's triples followed by combine_gathered_softmax_stats.
// defines: combine_gathered_softmax_stats
//
// The contract of ops.hpp holds (fp32 row-major contiguous tensors on the stream's backend,
// std::invalid_argument for bad sizes before anything runs, outputs must not alias inputs).
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"

namespace strata::kernels {

// Folds `members` blocks of (rows, 3) softmax triples (max, sum_exp, target), gathered in group
// order, into out: out = block 0, then combine_softmax_stats(out, block j) for j = 1 ..
// members - 1, in that order (parallel_ops.hpp defines the combination). The CPU runs exactly
// that; CUDA runs one thread per row doing the same fold (expf on the device: within a few ulp
// of the CPU's). members >= 1; rows may be 0.
Event combine_gathered_softmax_stats(const Stream& stream,
                                     float* out,             // (rows, 3) output
                                     const float* gathered,  // (members, rows, 3)
                                     std::int64_t members, std::int64_t rows);

}  // namespace strata::kernels
