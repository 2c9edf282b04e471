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

std::vector<ParamPiece> param_pieces(const ParamInfo& p, const ExpertSlice& experts) {
  using strategies::TensorKind;
  const std::string layer = "layers." + std::to_string(p.layer) + ".";
  const bool fc1 = p.kind == TensorKind::kExpertFc1Weight;
  if (!fc1 && p.kind != TensorKind::kExpertFc2Weight) return {{p.init_name(), 0, p}};
  // Split over tp (expert_tp > 1), each expert is split as the dense MLP's weight is: fc1 by
  // rows, fc2 by columns (the rank's tensor is its experts' shards one after another).
  STRATA_CHECK(p.shard != Shard::kBlockRows && p.rows % experts.local == 0 &&
                   p.elements % experts.local == 0,
               "parameter " + p.init_name() + ": not whole experts of GELU MLPs");
  std::vector<ParamPiece> out;
  for (std::int64_t j = 0; j < experts.local; ++j) {
    ParamPiece piece{layer + "experts." + std::to_string(experts.first + j) +
                         (fc1 ? ".fc1.w" : ".fc2.w"),
                     0, p};
    piece.info.rows = p.rows / experts.local;
    piece.info.elements = p.elements / experts.local;
    piece.first = j * piece.info.elements;
    out.push_back(std::move(piece));
  }
  return out;
}

ExpertSlice expert_slice(const Interpreter& in, const ParamInfo& p) {
  using strategies::TensorKind;
  if (p.kind != TensorKind::kExpertFc1Weight && p.kind != TensorKind::kExpertFc2Weight) return {};
  std::int64_t experts = 0;
  for (const ParamInfo& q : in.program().params) {
    if (q.kind == TensorKind::kRouterWeight && q.layer == p.layer) experts = q.rows;
  }
  const strategies::GroupRef ep{strategies::GroupKind::kEp, p.shard_group.layout, 0};
  const auto size = static_cast<std::int64_t>(in.plan().group_ranks(in.rank(), ep).size());
  STRATA_CHECK(experts > 0 && experts % size == 0,
               "layer " + std::to_string(p.layer) + ": no router for its experts");
  return {in.group_index(ep) * (experts / size), experts / size};
}

std::vector<float> initial_values(const ParamInfo& p, int index, std::uint64_t seed,
                                  const ExpertSlice& experts) {
  std::vector<float> v;
  for (const ParamPiece& piece : param_pieces(p, experts)) {
    const ParamInfo& q = piece.info;
    const std::vector<std::int64_t> idx = shard_indices(q, index);
    for (std::int64_t i : idx) {
      switch (q.init) {
        case strategies::Init::kNormal:
          v.push_back(static_cast<float>(q.init_std * init_normal(seed, piece.name, i)));
          break;
        case strategies::Init::kZero:
          v.push_back(0.0f);
          break;
        case strategies::Init::kOne:
          v.push_back(1.0f);
          break;
      }
    }
  }
  STRATA_CHECK(static_cast<std::int64_t>(v.size()) == p.elements,
               "parameter " + p.init_name() + ": shard size differs from the Plan's");
  return v;
}

void initialise_parameters(Interpreter& in, std::uint64_t seed) {
  const strategies::Program& prog = in.program();
  for (const strategies::BucketInfo& b : prog.buckets) {
    std::vector<float> flat(static_cast<std::size_t>(b.elements));
    for (std::int32_t m : b.members) {
      const ParamInfo& p = prog.params[m];
      const std::vector<float> v =
          initial_values(p, in.group_index(p.shard_group), seed, expert_slice(in, p));
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
