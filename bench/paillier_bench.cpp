// Paillier per-operation costs on this host's CPU, one core (docs/federated.md "Homomorphic
// encryption"): the figures sim/federated.hpp prices HE-based aggregation with. Textbook Paillier
// with g = n + 1 (Paillier, EUROCRYPT 1999; the simplification of Damgard-Jurik):
//   encrypt:  c = (1 + m n) r^n mod n^2           (one |n|-bit exponent modulo n^2)
//   add:      c1 c2 mod n^2                       (homomorphic addition of the plaintexts)
//   decrypt:  m = L(c^lambda mod n^2) mu mod n     with the CRT over p^2 and q^2 (as
//             python-paillier and FATE do), L(x) = (x - 1) / n
// Every result is checked (decrypt(encrypt(a) x encrypt(b)) == a + b). Prints a JSON line per
// key size with seconds per operation (median of 5 timed batches after a warm-up batch).
//
// Usage: paillier_bench [ops_per_batch]     (default 40)
#include <gmp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

// An mpz_t that a std::vector can hold (mpz_t is an array type).
struct Big {
  mpz_t v;
  Big() { mpz_init(v); }
  ~Big() { mpz_clear(v); }
  Big(const Big&) = delete;
  Big& operator=(const Big&) = delete;
};

struct Key {
  mpz_t n, n2, p, q, p2, q2, hp, hq, qinv_p;  // hp/hq: CRT decryption constants
  int bits = 0;
};

// L_p(x) = (x - 1) / p, and h_p = L_p(g^(p-1) mod p^2)^-1 mod p (Paillier's CRT decryption).
void crt_constant(mpz_t h, const mpz_t n, const mpz_t p, const mpz_t p2) {
  mpz_t g, t, pm1;
  mpz_inits(g, t, pm1, nullptr);
  mpz_add_ui(g, n, 1);
  mpz_sub_ui(pm1, p, 1);
  mpz_powm(t, g, pm1, p2);
  mpz_sub_ui(t, t, 1);
  mpz_divexact(t, t, p);
  mpz_invert(h, t, p);
  mpz_clears(g, t, pm1, nullptr);
}

void make_key(Key& k, int bits, gmp_randstate_t rng) {
  k.bits = bits;
  mpz_inits(k.n, k.n2, k.p, k.q, k.p2, k.q2, k.hp, k.hq, k.qinv_p, nullptr);
  do {
    mpz_urandomb(k.p, rng, bits / 2);
    mpz_setbit(k.p, bits / 2 - 1);
    mpz_nextprime(k.p, k.p);
    mpz_urandomb(k.q, rng, bits / 2);
    mpz_setbit(k.q, bits / 2 - 1);
    mpz_nextprime(k.q, k.q);
    mpz_mul(k.n, k.p, k.q);
  } while (mpz_cmp(k.p, k.q) == 0 || mpz_sizeinbase(k.n, 2) != static_cast<size_t>(bits));
  mpz_mul(k.n2, k.n, k.n);
  mpz_mul(k.p2, k.p, k.p);
  mpz_mul(k.q2, k.q, k.q);
  crt_constant(k.hp, k.n, k.p, k.p2);
  crt_constant(k.hq, k.n, k.q, k.q2);
  mpz_invert(k.qinv_p, k.q, k.p);  // q^-1 mod p, to recombine m mod p and m mod q
}

void encrypt(mpz_t c, const Key& k, const mpz_t m, gmp_randstate_t rng) {
  mpz_t r, t;
  mpz_inits(r, t, nullptr);
  mpz_urandomm(r, rng, k.n);
  mpz_powm(r, r, k.n, k.n2);  // r^n mod n^2: the cost of an encryption
  mpz_mul(t, m, k.n);
  mpz_add_ui(t, t, 1);
  mpz_mul(c, t, r);
  mpz_mod(c, c, k.n2);
  mpz_clears(r, t, nullptr);
}

// m mod p = L_p(c^(p-1) mod p^2) h_p mod p (and the same for q).
void decrypt_mod_prime(mpz_t out, const mpz_t c, const mpz_t p, const mpz_t p2, const mpz_t h) {
  mpz_t e;
  mpz_init(e);
  mpz_sub_ui(e, p, 1);
  mpz_powm(out, c, e, p2);
  mpz_sub_ui(out, out, 1);
  mpz_divexact(out, out, p);
  mpz_mul(out, out, h);
  mpz_mod(out, out, p);
  mpz_clear(e);
}

// m from m mod p and m mod q by the CRT: m = mq + q ((mp - mq) q^-1 mod p).
void decrypt(mpz_t m, const Key& k, const mpz_t c) {
  mpz_t mp, mq, t;
  mpz_inits(mp, mq, t, nullptr);
  decrypt_mod_prime(mp, c, k.p, k.p2, k.hp);
  decrypt_mod_prime(mq, c, k.q, k.q2, k.hq);
  mpz_sub(t, mp, mq);
  mpz_mul(t, t, k.qinv_p);
  mpz_mod(t, t, k.p);
  mpz_mul(t, t, k.q);
  mpz_add(m, mq, t);
  mpz_clears(mp, mq, t, nullptr);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int ops = argc > 1 ? std::atoi(argv[1]) : 40;
  if (ops < 1) {
    std::fprintf(stderr, "paillier_bench: ops_per_batch must be >= 1, got '%s'\n", argv[1]);
    return 2;
  }
  gmp_randstate_t rng;
  gmp_randinit_mt(rng);
  gmp_randseed_ui(rng, 1234);
  for (int bits : {1024, 2048, 3072}) {
    Key k;
    make_key(k, bits, rng);
    std::vector<Big> plain(ops), cipher(ops);
    for (int i = 0; i < ops; ++i) {
      mpz_set_ui(plain[i].v, static_cast<unsigned long>(1000003 * i + 17));
    }
    mpz_t sum, m;
    mpz_inits(sum, m, nullptr);
    std::vector<double> enc, add, dec;
    for (int batch = 0; batch < 6; ++batch) {  // batch 0 is the warm-up
      double t0 = now_s();
      for (int i = 0; i < ops; ++i) encrypt(cipher[i].v, k, plain[i].v, rng);
      double t1 = now_s();
      mpz_set_ui(sum, 1);
      for (int i = 0; i < ops; ++i) {
        mpz_mul(sum, sum, cipher[i].v);
        mpz_mod(sum, sum, k.n2);
      }
      double t2 = now_s();
      for (int i = 0; i < ops; ++i) decrypt(m, k, cipher[i].v);
      double t3 = now_s();
      decrypt(m, k, sum);
      unsigned long expect = 0;
      for (int i = 0; i < ops; ++i) expect += mpz_get_ui(plain[i].v);
      if (mpz_cmp_ui(m, expect) != 0) {
        std::fprintf(stderr, "paillier_bench: %d-bit key: the decrypted sum is wrong\n", bits);
        return 1;
      }
      if (batch == 0) continue;
      enc.push_back((t1 - t0) / ops);
      add.push_back((t2 - t1) / ops);
      dec.push_back((t3 - t2) / ops);
    }
    std::printf("{\"key_bits\": %d, \"encrypt_s\": %.4g, \"add_s\": %.4g, \"decrypt_s\": %.4g, "
                "\"ciphertext_bytes\": %d, \"ops_per_batch\": %d}\n",
                bits, median(enc), median(add), median(dec), 2 * bits / 8, ops);
    mpz_clears(sum, m, nullptr);
    mpz_clears(k.n, k.n2, k.p, k.q, k.p2, k.q2, k.hp, k.hq, k.qinv_p, nullptr);
  }
  gmp_randclear(rng);
  return 0;
}
