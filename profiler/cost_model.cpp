// CostModel's defaults and the op key (cost_model.hpp).
#include "profiler/cost_model.hpp"

#include <functional>

#include "common/error.hpp"

namespace strata::profiler {

OpKey op_key(const strategies::Op& op) {
  OpKey k;
  k.kind = op.kind;
  k.dtype = op.dtype;
  k.flags = op.flags;
  k.n_in = op.n_in;
  k.n_out = op.n_out;
  k.dims = op.dims;
  return k;
}

std::size_t OpKeyHash::operator()(const OpKey& k) const {
  // FNV-1a style mixing of the fields' hashes.
  std::size_t h = 1469598103934665603ull;
  const auto mix = [&h](std::size_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(static_cast<std::size_t>(k.kind));
  mix(static_cast<std::size_t>(k.dtype));
  mix(k.flags);
  mix(static_cast<std::size_t>(k.n_in) << 8 | k.n_out);
  for (std::int64_t d : k.dims) mix(std::hash<std::int64_t>{}(d));
  return h;
}

double CostModel::compute_seconds(const strategies::Program& program, const strategies::Task& t,
                                  const strategies::DeviceSpec& device,
                                  strategies::Precision precision) const {
  STRATA_CHECK(
      t.kind == strategies::TaskKind::kCompute,
      "the cost model prices compute tasks; collectives and transfers are the link face's");
  STRATA_CHECK(t.op_begin + t.op_count <= program.ops.size(),
               "a task's ops lie outside its program");
  double seconds = 0;
  const strategies::Op* ops = program.ops_of(t);
  for (std::uint32_t i = 0; i < t.op_count; ++i) seconds += op_seconds(ops[i], device, precision);
  return seconds;
}

}  // namespace strata::profiler
