// The equivalence tests' view of gradients: `strata run --dump-gradients DIR` writes each rank's
// reduced gradients of the first step as pieces of unsharded parameters; these put the pieces of
// all ranks back together into whole tensors and compare two runs tensor by tensor.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "executor/params.hpp"

namespace strata::test {

struct Gradients {
  std::map<std::string, std::vector<double>> tensors;  // name -> unsharded, row-major
  std::vector<std::string> problems;                   // pieces that disagree or are missing
};

// Every rank's pieces under `dir`, reassembled. Pieces held twice (data-parallel replicas,
// tensor-parallel copies of replicated parameters, the tied embedding on two stages) must agree
// to 1e-6 relative, and every element must be covered.
inline Gradients load_gradients(const std::filesystem::path& dir) {
  Gradients g;
  std::map<std::string, std::vector<int>> covered;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    const json::Json j = json::parse_file(file.path().string());
    for (const auto& p : j.at("pieces")) {
      strategies::ParamInfo info;
      info.rows = p.at("rows").get<std::int64_t>();
      info.cols = p.at("cols").get<std::int64_t>();
      const std::string shard = p.at("shard").get<std::string>();
      info.shard = shard == "rows"         ? strategies::Shard::kRows
                   : shard == "cols"       ? strategies::Shard::kCols
                   : shard == "block_rows" ? strategies::Shard::kBlockRows
                                           : strategies::Shard::kReplicated;
      const auto blocks = p.at("row_blocks").get<std::vector<std::int64_t>>();
      std::copy(blocks.begin(), blocks.end(), info.row_blocks.begin());
      info.shard_parts = p.at("parts").get<int>();
      const std::string name = p.at("name").get<std::string>();
      const auto idx = exec::shard_indices(info, p.at("index").get<int>());
      const auto begin = p.at("begin").get<std::size_t>();
      const auto values = p.at("values").get<std::vector<double>>();
      auto& full = g.tensors[name];
      auto& seen = covered[name];
      if (full.empty()) {
        full.assign(static_cast<std::size_t>(info.rows * info.cols), 0.0);
        seen.assign(full.size(), 0);
      }
      for (std::size_t k = 0; k < values.size(); ++k) {
        const auto at = static_cast<std::size_t>(idx.at(begin + k));
        if (seen[at] && std::abs(full[at] - values[k]) > 1e-6 * std::max(1e-12, std::abs(full[at]))) {
          g.problems.push_back(name + ": two ranks disagree at element " + std::to_string(at));
        }
        full[at] = values[k];
        seen[at] = 1;
      }
    }
  }
  for (const auto& [name, seen] : covered) {
    const auto missing = std::count(seen.begin(), seen.end(), 0);
    if (missing > 0) g.problems.push_back(name + ": " + std::to_string(missing) + " elements missing");
  }
  return g;
}

// The largest difference of a tensor's elements relative to the largest magnitude in it.
inline double relative_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0, scale = 1e-30;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return diff / scale;
}

}  // namespace strata::test
