// The dispatch of one op (not part of the executor's API): compute ops to kernels/
// (compute_ops.cpp; for the interpreter and the op timer alike, through OpContext), collectives
// and transfers to the Comm (comm_ops.cpp; the interpreter's).
#pragma once

#include "executor/interpreter.hpp"
#include "executor/op_context.hpp"

namespace strata::exec::detail {

void run_compute(const OpContext& in, const strategies::Op& op);
void run_comm(Interpreter& in, const strategies::Task& task, const strategies::Op& op);

}  // namespace strata::exec::detail
