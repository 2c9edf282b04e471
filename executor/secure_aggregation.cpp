// Pairwise additive masking in fixed point (secure_aggregation.hpp), locally and over a Comm.
#include "executor/secure_aggregation.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>

#include "common/error.hpp"
#include "executor/counter_prg.hpp"

namespace strata::exec {
namespace {

std::string number(double v) {
  std::ostringstream s;
  s.precision(9);
  s << v;
  return s.str();
}

void check_code(const FixedPointCode& code) {
  if (code.frac_bits < 0 || code.frac_bits > 52) {
    throw ConfigError("secure aggregation: FixedPointCode.frac_bits = " +
                      std::to_string(code.frac_bits) + " must be in [0, 52]");
  }
  // Below 2^62, so that a party's word and the rounding of max_abs scale() stay far from 2^63.
  if (!(code.max_abs > 0) || !(code.max_abs * code.scale() < 0x1.0p62)) {
    throw ConfigError("secure aggregation: FixedPointCode.max_abs = " + number(code.max_abs) +
                      " must be positive and below 2^(62 - frac_bits) (frac_bits = " +
                      std::to_string(code.frac_bits) + ")");
  }
}

// The encoding of one value, range-checked (x is element `i`, for the message).
std::uint64_t encode_one(double x, std::size_t i, const FixedPointCode& code) {
  const bool finite = std::isfinite(x);
  if (std::isnan(x) || (!code.clip && (!finite || std::fabs(x) > code.max_abs))) {
    throw ConfigError("secure aggregation: update element " + std::to_string(i) + " = " +
                      number(x) + " is outside the fixed-point range [" + number(-code.max_abs) +
                      ", " + number(code.max_abs) +
                      "] (FixedPointCode.max_abs); clip the update or raise max_abs");
  }
  x = std::clamp(x, -code.max_abs, code.max_abs);
  // The two's complement of a negative value: the conversion to uint64 is mod 2^64.
  return static_cast<std::uint64_t>(std::llround(x * code.scale()));
}

// The sign of party i's mask for the pair (i, j): + when i < j, - when i > j.
void add_mask(std::vector<std::uint64_t>& words, std::uint64_t seed, bool add) {
  for (std::size_t k = 0; k < words.size(); ++k) {
    const std::uint64_t m = prg_word(seed, k);
    words[k] = add ? words[k] + m : words[k] - m;
  }
}

}  // namespace

double FixedPointCode::scale() const { return std::ldexp(1.0, frac_bits); }

std::vector<std::uint64_t> encode_fixed_point(const float* x, std::size_t n,
                                              const FixedPointCode& code) {
  check_code(code);
  std::vector<std::uint64_t> words(n);
  for (std::size_t i = 0; i < n; ++i) words[i] = encode_one(x[i], i, code);
  return words;
}

std::vector<float> decode_fixed_point(const std::vector<std::uint64_t>& words,
                                      const FixedPointCode& code) {
  std::vector<float> x(words.size());
  const double inv = 1.0 / code.scale();
  for (std::size_t i = 0; i < words.size(); ++i) {
    x[i] = static_cast<float>(static_cast<double>(static_cast<std::int64_t>(words[i])) * inv);
  }
  return x;
}

std::uint64_t pair_seed(const MaskingKeys& keys, int i, int j) {
  STRATA_CHECK(i != j && i >= 0 && j >= 0, "a pair seed joins two distinct parties");
  const auto lo = static_cast<std::uint64_t>(std::min(i, j));
  const auto hi = static_cast<std::uint64_t>(std::max(i, j));
  // Chained hashing: each input goes through the bijective mixer with the state so far.
  std::uint64_t h = splitmix64_mix(keys.run_secret ^ kSplitMix64Gamma);
  for (std::uint64_t v : {keys.round, lo, hi}) h = splitmix64_mix(h + kSplitMix64Gamma + v);
  return h;
}

void add_pairwise_masks(std::vector<std::uint64_t>& words, int party,
                        const std::vector<int>& parties, const MaskingKeys& keys) {
  STRATA_CHECK(std::count(parties.begin(), parties.end(), party) == 1,
               "party " + std::to_string(party) + " must appear once among the parties");
  for (int j : parties) {
    if (j != party) add_mask(words, pair_seed(keys, party, j), party < j);
  }
}

std::vector<std::uint64_t> masked_update(const float* x, std::size_t n, int party,
                                         const std::vector<int>& parties,
                                         const FixedPointCode& code, const MaskingKeys& keys) {
  std::vector<std::uint64_t> words = encode_fixed_point(x, n, code);
  add_pairwise_masks(words, party, parties, keys);
  return words;
}

std::vector<std::uint64_t> sum_words(const std::vector<std::vector<std::uint64_t>>& vectors) {
  STRATA_CHECK(!vectors.empty(), "sum_words needs at least one vector");
  std::vector<std::uint64_t> sum(vectors.front().size(), 0);
  for (const auto& v : vectors) {
    STRATA_CHECK(v.size() == sum.size(), "sum_words: vectors of different lengths");
    for (std::size_t k = 0; k < sum.size(); ++k) sum[k] += v[k];
  }
  return sum;
}

std::vector<RevealedSeed> reveal_seeds(int survivor, const std::vector<int>& dropped,
                                       const MaskingKeys& keys) {
  std::vector<RevealedSeed> seeds;
  for (int d : dropped) seeds.push_back({survivor, d, pair_seed(keys, survivor, d)});
  return seeds;
}

void remove_dropped_masks(std::vector<std::uint64_t>& sum,
                          const std::vector<RevealedSeed>& seeds) {
  // The survivor added its mask when survivor < dropped: subtract it then, add it back otherwise.
  for (const RevealedSeed& s : seeds) add_mask(sum, s.seed, s.survivor > s.dropped);
}

void secure_all_reduce(Comm& comm, GroupId g, float* buf, std::size_t n,
                       const FixedPointCode& code, const MaskingKeys& keys) {
  const int members = comm.group_size(g), me = comm.group_rank(g);
  check_code(code);
  if (!(static_cast<double>(members) * code.max_abs * code.scale() < 0x1.0p63)) {
    throw ConfigError("secure aggregation: " + std::to_string(members) +
                      " parties times FixedPointCode.max_abs = " + number(code.max_abs) +
                      " times 2^frac_bits must be below 2^63 (the sum's range)");
  }
  std::vector<int> parties(static_cast<std::size_t>(members));
  for (int p = 0; p < members; ++p) parties[static_cast<std::size_t>(p)] = p;

  std::vector<std::uint64_t> words;
  std::string error;
  try {
    words = masked_update(buf, n, me, parties, code, keys);
  } catch (const ConfigError& e) {
    error = e.what();
  }
  float failures = error.empty() ? 0.0f : 1.0f;
  comm.all_reduce(g, &failures, 1, ReduceOp::kSum).wait();
  if (!error.empty()) throw ConfigError(error);
  if (failures > 0) {
    throw ConfigError("secure aggregation: " + number(failures) +
                      " other member(s) of the group hold a value outside the fixed-point range");
  }

  // Bit for bit: two floats carry one word; the Comm copies them without arithmetic.
  static_assert(sizeof(std::uint64_t) == 2 * sizeof(float));
  std::vector<float> packed(2 * n), gathered(2 * n * static_cast<std::size_t>(members));
  if (n > 0) std::memcpy(packed.data(), words.data(), n * sizeof(std::uint64_t));
  comm.all_gather(g, packed.data(), gathered.data(), 2 * n).wait();

  std::vector<std::uint64_t> sum(n, 0), theirs(n);
  for (int p = 0; p < members; ++p) {
    if (n == 0) break;
    std::memcpy(theirs.data(), gathered.data() + 2 * n * static_cast<std::size_t>(p),
                n * sizeof(std::uint64_t));
    for (std::size_t k = 0; k < n; ++k) sum[k] += theirs[k];
  }
  const std::vector<float> plain = decode_fixed_point(sum, code);
  std::copy(plain.begin(), plain.end(), buf);
}

}  // namespace strata::exec
