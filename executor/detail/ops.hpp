// The interpreter's dispatch of one op (not part of the executor's API): compute ops to
// kernels/ (compute_ops.cpp), collectives and transfers to the Comm (comm_ops.cpp).
#pragma once

#include "executor/interpreter.hpp"

namespace strata::exec::detail {

void run_compute(Interpreter& in, const strategies::Op& op);
void run_comm(Interpreter& in, const strategies::Task& task, const strategies::Op& op);

}  // namespace strata::exec::detail
