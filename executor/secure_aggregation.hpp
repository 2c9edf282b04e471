// Secure aggregation by pairwise additive masking (Bonawitz et al., "Practical Secure Aggregation
// for Privacy-Preserving Machine Learning", CCS 2017), the honest-but-curious core: each party
// encodes its update in fixed point, adds a mask per other party that the pair's partner
// subtracts, and the sum of every masked vector is the sum of the plain vectors exactly (mod 2^64).
// docs/executor.md "Privacy-preserving aggregation" says what is simplified and why this is a
// testbed, not production cryptography.
//
// defines: FixedPointCode, encode_fixed_point, decode_fixed_point, MaskingKeys, pair_seed,
//   dh_public_key, dh_pair_seed, PeerSeed, add_masks, add_pairwise_masks, masked_update,
//   sum_words, RevealedSeed, reveal_seeds, remove_dropped_masks, secure_all_reduce,
//   secure_all_reduce_dh
//
// Conventions. A party is an int id (a site; over MPI, its group rank); `parties` lists the ids
// that mask together in a round, in any order, without repeats. A vector of words is the
// fixed-point encoding: uint64 arithmetic, wrapping mod 2^64, read back as two's complement.
// For a pair i < j with seed s_ij, party i adds PRG(s_ij) and party j subtracts it, word by word
// (PRG = counter_prg.hpp's stream: word k of the mask is prg_word(s_ij, k)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "executor/comm.hpp"

namespace strata::exec {

// Fixed point with `frac_bits` fractional bits: x is stored as round(x 2^frac_bits) (nearest,
// ties away from zero), so a round trip is off by at most 2^-(frac_bits + 1) = 0.5 / scale().
// Values must lie in [-max_abs, max_abs]; one outside (or NaN, inf) throws ConfigError naming
// the element, its value and the range, unless `clip` (then it is clamped to the range; NaN
// still throws). A sum of n parties decodes correctly while n max_abs scale() < 2^63 (checked).
struct FixedPointCode {
  int frac_bits = 16;          // scale 2^16: resolution 1.5e-5
  double max_abs = 1048576.0;  // 2^20: 2^(20 + 16) per party leaves room for 2^27 parties
  bool clip = false;
  double scale() const;
};

// Words of `n` values. Throws ConfigError for a value out of range (see FixedPointCode) and for
// a code whose frac_bits is outside [0, 52] or whose max_abs scale() is not below 2^62.
std::vector<std::uint64_t> encode_fixed_point(const float* x, std::size_t n,
                                              const FixedPointCode& code);
// The words read as signed integers over scale(), rounded to fp32.
std::vector<float> decode_fixed_point(const std::vector<std::uint64_t>& words,
                                      const FixedPointCode& code);

// What the pairwise seeds derive from. A real deployment agrees s_ij by Diffie-Hellman between
// i and j, so that nobody else knows it; with these keys every s_ij derives from one secret all
// parties share (no key agreement; the toy Diffie-Hellman below is the other way): whoever
// holds `run_secret` can unmask any update. `round` makes each round's masks fresh (a mask reused
// over two rounds would reveal the difference of a party's two updates).
struct MaskingKeys {
  std::uint64_t run_secret = 0;
  std::uint64_t round = 0;
};

// s_ij = s_ji: a SplitMix64 hash of (run_secret, round, min(i, j), max(i, j)).
std::uint64_t pair_seed(const MaskingKeys& keys, int i, int j);

// Toy Diffie-Hellman key agreement, so that s_ij is known to i and j only: in the multiplicative
// group mod p = 2^64 - 59 (the largest 64-bit prime) with g = 5 (its order not checked), party i
// draws a private key, publishes g^a_i mod p, and both members of a pair compute
// g^(a_i a_j) mod p, hashed with the round into s_ij. NOT cryptographically secure: a discrete
// logarithm in a 64-bit group takes about 2^32 steps (Pollard's rho), seconds to minutes; a
// deployment uses X25519 or a 2048-bit group. It shows the protocol's flow and traffic.
// The private key is 2 + private_seed mod (p - 3), in [2, p - 2].
std::uint64_t dh_public_key(std::uint64_t private_seed);
std::uint64_t dh_pair_seed(std::uint64_t my_private_seed, std::uint64_t their_public_key,
                           std::uint64_t round);

// Adds party `party`'s masks to `words`, one per peer: + PRG(seed) for party < peer, - PRG(seed)
// for party > peer.
struct PeerSeed {
  int peer = 0;
  std::uint64_t seed = 0;
};
void add_masks(std::vector<std::uint64_t>& words, int party, const std::vector<PeerSeed>& peers);

// add_masks with pair_seed(keys, party, j) for every other member j of `parties` (`party` must
// be in `parties`).
void add_pairwise_masks(std::vector<std::uint64_t>& words, int party,
                        const std::vector<int>& parties, const MaskingKeys& keys);

// encode_fixed_point, then add_pairwise_masks: what party `party` sends.
std::vector<std::uint64_t> masked_update(const float* x, std::size_t n, int party,
                                         const std::vector<int>& parties,
                                         const FixedPointCode& code, const MaskingKeys& keys);

// The word-wise sum mod 2^64 of equally long vectors (at least one).
std::vector<std::uint64_t> sum_words(const std::vector<std::vector<std::uint64_t>>& vectors);

// Dropout (Bonawitz's recovery, without the secret sharing). When parties drop after masking,
// the survivors' masked vectors still carry their masks with the dropped parties. Each survivor
// reveals its seed with each dropped party, and the aggregator removes those masks. Bonawitz
// splits each party's key with Shamir's secret sharing so that any t survivors can rebuild a
// dropped party's seeds, and adds a second, self mask so that a late update stays hidden; here a
// survivor hands over its own s_ij directly and there is no self mask.
struct RevealedSeed {
  int survivor = 0;
  int dropped = 0;
  std::uint64_t seed = 0;
};
// What `survivor` reveals: its seed with each of `dropped`.
std::vector<RevealedSeed> reveal_seeds(int survivor, const std::vector<int>& dropped,
                                       const MaskingKeys& keys);
// Removes from `sum` (the survivors' masked vectors summed) the masks the revealed seeds name:
// for each, the survivor's term sign(survivor, dropped) PRG(seed) is subtracted. With every
// survivor's seeds for every dropped party, `sum` becomes the survivors' plain sum.
void remove_dropped_masks(std::vector<std::uint64_t>& sum, const std::vector<RevealedSeed>& seeds);

// Over a Comm: every member of group `g` is a party (its id: its group rank) and `buf` (n fp32
// values, in place) becomes decode(sum of the members' encodings), the same on every member.
// Each member's masked words travel bit for bit as pairs of floats (memcpy) in one all-gather of
// 2 n floats per member, and every member sums them in uint64 (decentralised: no aggregator, as
// in cross-site training without a trusted third party; each member sees the others' masked
// vectors, none in the clear). Agrees with a plain all_reduce of `buf` within n_members 0.5 /
// scale() plus the plain sum's fp32 rounding. Every member calls it with the same n, code and
// keys. A value out of range throws ConfigError on every member (a one-float all-reduce of the
// members' encoding failures comes first, so that none waits alone): the member that holds it
// names the element, the others the count of failing members.
void secure_all_reduce(Comm& comm, GroupId g, float* buf, std::size_t n, const FixedPointCode& code,
                       const MaskingKeys& keys);

// The same with the pair seeds agreed by the toy Diffie-Hellman above: each member passes its
// own `private_seed`, the members' public keys are all-gathered first (2 floats each, bit for
// bit), and each member derives its seed with every other from them and `round`.
void secure_all_reduce_dh(Comm& comm, GroupId g, float* buf, std::size_t n,
                          const FixedPointCode& code, std::uint64_t private_seed,
                          std::uint64_t round);

}  // namespace strata::exec
