// Run under mpirun by secure_aggregation_test.cpp: secure_all_reduce and secure_all_reduce_dh
// (executor/secure_aggregation.hpp) with every rank a party, over the world and over the ranks
// but 0, at 1 and 1001 floats of rank-dependent values (negative ones too). Each rank checks
// the result is exactly decode(sum of every member's encoding) (it rebuilds the others' inputs)
// and within the fixed-point rounding of a plain all_reduce; then one rank holds a value out of
// range and every rank must get a ConfigError, none left waiting. Rank 0 prints
// "secure_aggregation_mpi_check: N ranks, K checks passed" and every rank exits 0, or each rank
// prints its failures and every rank exits 1.
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "executor/comm.hpp"
#include "executor/counter_prg.hpp"
#include "executor/secure_aggregation.hpp"

namespace {

using namespace strata::exec;

// Member `who`'s input: uniform in [-50, 50).
std::vector<float> input(int who, std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t k = 0; k < n; ++k) {
    v[k] = static_cast<float>(100.0 * prg_unit(static_cast<std::uint64_t>(who) + 77, k) - 50.0);
  }
  return v;
}

struct Tally {
  int rank = 0, checks = 0, failures = 0;
  void expect(bool ok, const std::string& what) {
    ++checks;
    if (ok) return;
    ++failures;
    std::fprintf(stderr, "secure_aggregation_mpi_check: rank %d: %s\n", rank, what.c_str());
  }
};

// One secure_all_reduce over `g`, whose members are the world ranks `members`; with `dh`, the
// pair seeds by the toy Diffie-Hellman (secure_all_reduce_dh), each rank's private seed its own.
void check_sum(Comm& comm, GroupId g, const std::vector<int>& members, std::size_t n, bool dh,
               Tally& tally) {
  const FixedPointCode code;
  std::vector<float> secure = input(comm.rank(), n), plain = secure;
  if (dh) {
    const auto private_seed = prg_word(static_cast<std::uint64_t>(comm.rank()), 12345);
    secure_all_reduce_dh(comm, g, secure.data(), n, code, private_seed, 3);
  } else {
    secure_all_reduce(comm, g, secure.data(), n, code, MaskingKeys{0x5eed, 3});
  }
  comm.all_reduce(g, plain.data(), n, ReduceOp::kSum).wait();

  std::vector<std::vector<std::uint64_t>> encodings;
  for (int w : members) encodings.push_back(encode_fixed_point(input(w, n).data(), n, code));
  const std::vector<float> exact = decode_fixed_point(sum_words(encodings), code);
  // Each member's rounding (0.5 / scale) plus fp32's: the plain sum's (members - 1) roundings
  // and the decode's, each at most half an ulp of a value below 50 members (50 m 2^-24).
  const double m = static_cast<double>(members.size());
  const double tol = m * 0.5 / code.scale() + m * 50.0 * m * 0x1.0p-24;
  std::size_t exact_wrong = n, far = n;
  for (std::size_t k = 0; k < n; ++k) {
    if (secure[k] != exact[k] && exact_wrong == n) exact_wrong = k;
    if (std::fabs(double{secure[k]} - plain[k]) > tol && far == n) far = k;
  }
  const std::string at = std::to_string(members.size()) + " members, " + std::to_string(n) +
                         " floats" + (dh ? ", Diffie-Hellman seeds" : "");
  tally.expect(exact_wrong == n, "not decode(sum of encodings) at element " +
                                     std::to_string(exact_wrong) + ", " + at);
  tally.expect(far == n, "farther than " + std::to_string(tol) + " from the plain all_reduce at " +
                             std::to_string(far) + ", " + at);
}

int run(Comm& comm) {
  Tally tally{comm.rank()};
  const int size = comm.size();
  std::vector<int> world, but_zero;
  for (int r = 0; r < size; ++r) world.push_back(r);
  for (int r = 1; r < size; ++r) but_zero.push_back(r);
  const GroupId all = comm.split(world);
  const GroupId rest = comm.split(comm.rank() == 0 ? std::vector<int>{} : but_zero);
  for (bool dh : {false, true}) {
    for (std::size_t n : {std::size_t{1}, std::size_t{1001}}) {
      check_sum(comm, all, world, n, dh, tally);
      if (rest != kNoGroup) check_sum(comm, rest, but_zero, n, dh, tally);
    }
  }

  // Rank 1 holds 1e7 at element 5: every rank throws, rank 1 naming the element.
  std::vector<float> bad = input(comm.rank(), 9);
  if (comm.rank() == 1) bad[5] = 1e7f;
  std::string message;
  try {
    secure_all_reduce(comm, all, bad.data(), bad.size(), FixedPointCode{}, MaskingKeys{});
  } catch (const strata::ConfigError& e) {
    message = e.what();
  }
  const std::string want = comm.rank() == 1 ? "update element 5 = 10000000" : "1 other member";
  tally.expect(message.find(want) != std::string::npos,
               "out-of-range error '" + message + "' lacks '" + want + "'");

  comm.barrier();
  if (tally.failures == 0 && comm.rank() == 0) {
    std::printf("secure_aggregation_mpi_check: %d ranks, %d checks passed\n", size, tally.checks);
  }
  return tally.failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
  try {
    auto comm = make_mpi_comm();
    comm->set_timeout_s(60);
    return run(*comm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "secure_aggregation_mpi_check: %s\n", e.what());
    return 1;
  }
}
