// Byte matrices of uneven all-to-alls and the expert-routing model; see expert_routing.hpp.
#include "profiler/expert_routing.hpp"

#include <cmath>
#include <sstream>

#include "common/error.hpp"

namespace strata::profiler {

namespace {

std::string num(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

}  // namespace

ByteMatrix uniform_byte_matrix(int n, double bytes) {
  if (n < 1) throw ConfigError("all_to_all members = " + std::to_string(n) + ": must be >= 1");
  if (!(bytes >= 0) || !std::isfinite(bytes)) {
    throw ConfigError("all_to_all bytes = " + num(bytes) + ": must be finite and >= 0");
  }
  return ByteMatrix(n, std::vector<double>(n, bytes / n));
}

void check_byte_matrix(const ByteMatrix& m, int n, const std::string& what) {
  if (static_cast<int>(m.size()) != n) {
    throw ConfigError(what + " has " + std::to_string(m.size()) + " rows: must have one per " +
                      "group member (" + std::to_string(n) + ")");
  }
  for (int i = 0; i < n; ++i) {
    if (static_cast<int>(m[i].size()) != n) {
      throw ConfigError(what + "[" + std::to_string(i) + "] has " + std::to_string(m[i].size()) +
                        " entries: must have one per group member (" + std::to_string(n) + ")");
    }
    for (int j = 0; j < n; ++j) {
      if (!(m[i][j] >= 0) || !std::isfinite(m[i][j])) {
        throw ConfigError(what + "[" + std::to_string(i) + "][" + std::to_string(j) +
                          "] = " + num(m[i][j]) + ": must be finite and >= 0");
      }
    }
  }
}

ByteMatrix transposed(const ByteMatrix& m) {
  ByteMatrix t(m.empty() ? 0 : m.front().size(), std::vector<double>(m.size(), 0.0));
  for (std::size_t i = 0; i < m.size(); ++i) {
    STRATA_CHECK(m[i].size() == t.size(), "transposed: the matrix must be rectangular");
    for (std::size_t j = 0; j < m[i].size(); ++j) t[j][i] = m[i][j];
  }
  return t;
}

std::vector<double> expert_token_shares(int num_experts, const ExpertLoad& load) {
  if (num_experts < 1) {
    throw ConfigError("num_experts = " + std::to_string(num_experts) + ": must be >= 1");
  }
  std::vector<double> shares(num_experts, 1.0 / num_experts);
  switch (load.distribution) {
    case TokenDistribution::kUniform:
      break;
    case TokenDistribution::kZipf: {
      const double s = load.zipf_exponent;
      if (!(s >= 0) || !std::isfinite(s)) {
        throw ConfigError("expert_load.zipf_exponent = " + num(s) + ": must be finite and >= 0");
      }
      double total = 0;
      for (int e = 0; e < num_experts; ++e) total += shares[e] = std::pow(e + 1.0, -s);
      for (double& x : shares) x /= total;
      break;
    }
    case TokenDistribution::kExplicit: {
      if (static_cast<int>(load.fractions.size()) != num_experts) {
        throw ConfigError("expert_load.fractions has " + std::to_string(load.fractions.size()) +
                          " entries: must have one per expert (" + std::to_string(num_experts) +
                          ")");
      }
      double total = 0;
      for (int e = 0; e < num_experts; ++e) {
        const double f = load.fractions[e];
        if (!(f >= 0) || !std::isfinite(f)) {
          throw ConfigError("expert_load.fractions[" + std::to_string(e) + "] = " + num(f) +
                            ": must be finite and >= 0");
        }
        total += f;
      }
      if (std::abs(total - 1.0) > 1e-6) {
        throw ConfigError("expert_load.fractions sum to " + num(total) + ": must sum to 1");
      }
      shares = load.fractions;
      break;
    }
  }
  return shares;
}

ByteMatrix expert_dispatch_bytes(int ep, int num_experts, int top_k, double tokens_per_rank,
                                 double bytes_per_token, const ExpertLoad& load) {
  if (ep < 1) throw ConfigError("ep = " + std::to_string(ep) + ": must be >= 1");
  if (num_experts < 1 || num_experts % ep != 0) {
    throw ConfigError("num_experts = " + std::to_string(num_experts) +
                      ": must be a positive multiple of ep (" + std::to_string(ep) + ")");
  }
  if (top_k < 1 || top_k > num_experts) {
    throw ConfigError("top_k = " + std::to_string(top_k) +
                      ": must be in [1, num_experts = " + std::to_string(num_experts) + "]");
  }
  if (!(tokens_per_rank >= 0) || !std::isfinite(tokens_per_rank)) {
    throw ConfigError("tokens_per_rank = " + num(tokens_per_rank) + ": must be finite and >= 0");
  }
  if (!(bytes_per_token > 0) || !std::isfinite(bytes_per_token)) {
    throw ConfigError("bytes_per_token = " + num(bytes_per_token) + ": must be finite and > 0");
  }
  const std::vector<double> shares = expert_token_shares(num_experts, load);
  for (int e = 0; e < num_experts; ++e) {
    if (shares[e] * top_k > 1.0 + 1e-9) {
      throw ConfigError("expert_load: expert " + std::to_string(e) + " would receive " +
                        num(shares[e]) + " of the token copies: must be <= 1/top_k = " +
                        num(1.0 / top_k) + " (a token picks top_k distinct experts)");
    }
  }
  const int per_rank = num_experts / ep;
  const double routed = tokens_per_rank * top_k * bytes_per_token;
  std::vector<double> to_rank(ep, 0.0);
  for (int e = 0; e < num_experts; ++e) to_rank[e / per_rank] += shares[e];
  ByteMatrix m(ep, std::vector<double>(ep, 0.0));
  for (int i = 0; i < ep; ++i) {
    for (int j = 0; j < ep; ++j) m[i][j] = routed * to_rank[j];
  }
  return m;
}

}  // namespace strata::profiler
