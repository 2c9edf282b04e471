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

constexpr std::uint64_t kDhPrime = 0xffffffffffffffc5ULL;  // 2^64 - 59
constexpr std::uint64_t kDhGenerator = 5;

__extension__ typedef unsigned __int128 Wide;  // for the products mod p

std::uint64_t mul_mod(std::uint64_t a, std::uint64_t b) {
  return static_cast<std::uint64_t>(static_cast<Wide>(a) * b % kDhPrime);
}

std::uint64_t pow_mod(std::uint64_t base, std::uint64_t e) {
  std::uint64_t r = 1;
  base %= kDhPrime;
  for (; e > 0; e >>= 1) {
    if (e & 1) r = mul_mod(r, base);
    base = mul_mod(base, base);
  }
  return r;
}

std::uint64_t dh_private_key(std::uint64_t private_seed) {
  return 2 + private_seed % (kDhPrime - 3);
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

std::uint64_t dh_public_key(std::uint64_t private_seed) {
  return pow_mod(kDhGenerator, dh_private_key(private_seed));
}

std::uint64_t dh_pair_seed(std::uint64_t my_private_seed, std::uint64_t their_public_key,
                           std::uint64_t round) {
  const std::uint64_t shared = pow_mod(their_public_key, dh_private_key(my_private_seed));
  return splitmix64_mix(splitmix64_mix(shared ^ kSplitMix64Gamma) + kSplitMix64Gamma + round);
}

void add_masks(std::vector<std::uint64_t>& words, int party, const std::vector<PeerSeed>& peers) {
  for (const PeerSeed& p : peers) {
    STRATA_CHECK(p.peer != party, "a party does not mask with itself");
    add_mask(words, p.seed, party < p.peer);
  }
}

void add_pairwise_masks(std::vector<std::uint64_t>& words, int party,
                        const std::vector<int>& parties, const MaskingKeys& keys) {
  STRATA_CHECK(std::count(parties.begin(), parties.end(), party) == 1,
               "party " + std::to_string(party) + " must appear once among the parties");
  std::vector<PeerSeed> peers;
  for (int j : parties) {
    if (j != party) peers.push_back({j, pair_seed(keys, party, j)});
  }
  add_masks(words, party, peers);
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

void remove_dropped_masks(std::vector<std::uint64_t>& sum, const std::vector<RevealedSeed>& seeds) {
  // The survivor added its mask when survivor < dropped: subtract it then, add it back otherwise.
  for (const RevealedSeed& s : seeds) add_mask(sum, s.seed, s.survivor > s.dropped);
}

namespace {

std::vector<float> as_floats(const std::vector<std::uint64_t>& words) {
  static_assert(sizeof(std::uint64_t) == 2 * sizeof(float));
  std::vector<float> packed(2 * words.size());
  if (!words.empty()) std::memcpy(packed.data(), words.data(), words.size() * 8);
  return packed;
}

std::uint64_t word_at(const std::vector<float>& packed, std::size_t k) {
  std::uint64_t w;
  std::memcpy(&w, packed.data() + 2 * k, sizeof w);
  return w;
}

// secure_all_reduce's body, the members' seeds with each other given by `seed_with(j)`.
template <typename SeedWith>
void masked_all_reduce(Comm& comm, GroupId g, float* buf, std::size_t n, const FixedPointCode& code,
                       SeedWith seed_with) {
  const int members = comm.group_size(g), me = comm.group_rank(g);
  check_code(code);
  if (!(static_cast<double>(members) * code.max_abs * code.scale() < 0x1.0p63)) {
    throw ConfigError("secure aggregation: " + std::to_string(members) +
                      " parties times FixedPointCode.max_abs = " + number(code.max_abs) +
                      " times 2^frac_bits must be below 2^63 (the sum's range)");
  }
  std::vector<std::uint64_t> words;
  std::string error;
  try {
    words = encode_fixed_point(buf, n, code);
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
  std::vector<PeerSeed> peers;
  for (int j = 0; j < members; ++j) {
    if (j != me) peers.push_back({j, seed_with(j)});
  }
  add_masks(words, me, peers);

  // Bit for bit: two floats carry one word; the Comm copies them without arithmetic.
  const std::vector<float> packed = as_floats(words);
  std::vector<float> gathered(packed.size() * static_cast<std::size_t>(members));
  comm.all_gather(g, packed.data(), gathered.data(), packed.size()).wait();
  std::vector<std::uint64_t> sum(n, 0);
  for (std::size_t k = 0; k < n * static_cast<std::size_t>(members); ++k) {
    sum[k % n] += word_at(gathered, k);
  }
  const std::vector<float> plain = decode_fixed_point(sum, code);
  std::copy(plain.begin(), plain.end(), buf);
}

}  // namespace

void secure_all_reduce(Comm& comm, GroupId g, float* buf, std::size_t n, const FixedPointCode& code,
                       const MaskingKeys& keys) {
  const int me = comm.group_rank(g);
  masked_all_reduce(comm, g, buf, n, code, [&](int j) { return pair_seed(keys, me, j); });
}

void secure_all_reduce_dh(Comm& comm, GroupId g, float* buf, std::size_t n,
                          const FixedPointCode& code, std::uint64_t private_seed,
                          std::uint64_t round) {
  const std::vector<float> mine = as_floats({dh_public_key(private_seed)});
  std::vector<float> publics(2 * static_cast<std::size_t>(comm.group_size(g)));
  comm.all_gather(g, mine.data(), publics.data(), 2).wait();
  masked_all_reduce(comm, g, buf, n, code, [&](int j) {
    return dh_pair_seed(private_seed, word_at(publics, static_cast<std::size_t>(j)), round);
  });
}

}  // namespace strata::exec
