// Parameter initialisation from the Plan's parameter table; see params.hpp for the layout.
#include "executor/params.hpp"

#include <cmath>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "executor/interpreter.hpp"
#include "kernels/dtype.hpp"

namespace strata::exec {

using strategies::ParamInfo;
using strategies::Shard;

namespace {

// A uniform double in (0, 1] from 53 random bits.
double unit(std::uint64_t bits) { return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53; }

}  // namespace

float init_normal(std::uint64_t seed, const std::string& name, std::int64_t index) {
  const std::uint64_t key = splitmix64(seed ^ fnv1a64(name));
  const double u1 = unit(splitmix64(key + 2 * static_cast<std::uint64_t>(index)));
  const double u2 = unit(splitmix64(key + 2 * static_cast<std::uint64_t>(index) + 1));
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

std::vector<std::int64_t> shard_indices(const ParamInfo& p, int r) {
  const std::int64_t t = p.shard_parts, rows = p.rows, cols = p.cols;
  std::vector<std::int64_t> out;
  auto rows_range = [&](std::int64_t first, std::int64_t count) {
    for (std::int64_t i = first; i < first + count; ++i) {
      for (std::int64_t j = 0; j < cols; ++j) out.push_back(i * cols + j);
    }
  };
  switch (p.shard) {
    case Shard::kReplicated:
      rows_range(0, rows);
      break;
    case Shard::kRows:
      rows_range(r * (rows / t), rows / t);
      break;
    case Shard::kBlockRows: {
      std::int64_t start = 0;
      for (std::int64_t block : p.row_blocks) {
        if (block == 0) continue;
        rows_range(start + r * (block / t), block / t);
        start += block;
      }
      break;
    }
    case Shard::kCols:
      for (std::int64_t i = 0; i < rows; ++i) {
        for (std::int64_t j = r * (cols / t); j < (r + 1) * (cols / t); ++j) {
          out.push_back(i * cols + j);
        }
      }
      break;
  }
  return out;
}

std::vector<float> initial_values(const ParamInfo& p, int index, std::uint64_t seed) {
  const std::vector<std::int64_t> idx = shard_indices(p, index);
  STRATA_CHECK(static_cast<std::int64_t>(idx.size()) == p.elements,
               "parameter " + p.init_name() + ": shard size differs from the Plan's");
  std::vector<float> v(idx.size());
  const std::string name = p.init_name();
  for (std::size_t k = 0; k < idx.size(); ++k) {
    switch (p.init) {
      case strategies::Init::kNormal:
        v[k] = static_cast<float>(p.init_std * init_normal(seed, name, idx[k]));
        break;
      case strategies::Init::kZero:
        v[k] = 0.0f;
        break;
      case strategies::Init::kOne:
        v[k] = 1.0f;
        break;
    }
  }
  return v;
}

void initialise_parameters(Interpreter& in, std::uint64_t seed) {
  const strategies::Program& prog = in.program();
  for (const strategies::BucketInfo& b : prog.buckets) {
    std::vector<float> flat(static_cast<std::size_t>(b.elements));
    for (std::int32_t m : b.members) {
      const ParamInfo& p = prog.params[m];
      const std::vector<float> v = initial_values(p, in.group_index(p.shard_group), seed);
      std::copy(v.begin(), v.end(), flat.begin() + p.bucket_offset);
    }
    // The whole bucket, or (ZeRO-3; the master weights under ZeRO >= 1) the rank's part of it;
    // host to host or host to device. 16-bit parameters hold the values rounded, their fp32
    // master copy the values themselves.
    auto write = [&](std::int32_t id) {
      const TensorView dst = in.view(id);
      strategies::Part part{0, b.elements};
      if (dst.elements() != b.elements) {
        part = strategies::partition(
            b.elements, static_cast<int>(in.plan().group_ranks(in.rank(), b.dp_group).size()),
            in.group_index(b.dp_group));
      }
      const float* from = flat.data() + part.offset;
      if (dst.dtype == strategies::DType::kBf16) {
        std::vector<kernels::bf16> rounded(static_cast<std::size_t>(part.count));
        kernels::narrow(rounded.data(), from, part.count);
        kernels::copy_from_host(in.stream(), dst.data, rounded.data(),
                                rounded.size() * sizeof(kernels::bf16))
            .synchronize();
        return;
      }
      STRATA_CHECK(dst.dtype == strategies::DType::kFp32,
                   std::string("parameters in ") + strategies::dtype_name(dst.dtype) +
                       ": the executor initialises fp32 and bf16 ones");
      kernels::copy_from_host(in.stream(), dst.data, from,
                              static_cast<std::size_t>(part.count) * sizeof(float))
          .synchronize();
    };
    write(b.params);
    if (b.master >= 0) write(b.master);
  }
}

}  // namespace strata::exec
