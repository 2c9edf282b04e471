// Fused causal attention on the CPU (FlashAttention-2, Dao 2023, arXiv:2307.08691): the forward
// keeps per query row a running max and sum instead of the (T, T) probabilities, the backward
// recomputes the scores block by block from the saved log-sum-exp.
// defines: flash_attention_scratch_floats, flash_attention_forward, flash_attention_backward
// (kernels::cpu; contracts in kernels/model_ops.hpp)
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>

#include "kernels/cpu/model_ops_cpu.hpp"

#if STRATA_KERNELS_HAVE_EIGEN
#include <Eigen/Core>
#endif

namespace strata::kernels::cpu {
namespace {

// --- Block primitives ------------------------------------------------------------------------
// Every operand below is a block in the op's own scratch (or, for dQ, the caller's gradient,
// which is only added into): row-major, `ld` floats from one row to the next. Eigen when
// available, loops otherwise; the algorithm further down is written once over these.

struct Tile {
  float* data;
  std::int64_t ld;
  float* row(std::int64_t r) const { return data + r * ld; }
};

#if STRATA_KERNELS_HAVE_EIGEN
using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::OuterStride<Eigen::Dynamic>;
using TileMap = Eigen::Map<RowMajorMatrix, Eigen::Unaligned, Strided>;
using ConstTileMap = Eigen::Map<const RowMajorMatrix, Eigen::Unaligned, Strided>;
using RowArray = Eigen::Map<Eigen::ArrayXf, Eigen::Unaligned>;

TileMap map(Tile x, std::int64_t rows, std::int64_t cols) {
  return TileMap(x.data, rows, cols, Strided(x.ld));
}
ConstTileMap cmap(Tile x, std::int64_t rows, std::int64_t cols) {
  return ConstTileMap(x.data, rows, cols, Strided(x.ld));
}
#endif

// c (m, n) = (a (m, k) b (n, k)^T) * alpha: scores, and dP = dO V^T (alpha 1).
void mul_abt(Tile c, Tile a, Tile b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha) {
#if STRATA_KERNELS_HAVE_EIGEN
  // The expression of the unfused attention_forward, so the scores round alike.
  map(c, m, n).noalias() = (cmap(a, m, k) * cmap(b, n, k).transpose()) * alpha;
#else
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      float dot = 0.0f;
      for (std::int64_t p = 0; p < k; ++p) dot += a.row(i)[p] * b.row(j)[p];
      c.row(i)[j] = dot * alpha;
    }
  }
#endif
}

// c (m, n) += a (m, k) b (k, n): O += P V, dQ += dS K.
void add_mul_ab(Tile c, Tile a, Tile b, std::int64_t m, std::int64_t n, std::int64_t k) {
#if STRATA_KERNELS_HAVE_EIGEN
  map(c, m, n).noalias() += cmap(a, m, k) * cmap(b, k, n);
#else
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t p = 0; p < k; ++p) {
      const float x = a.row(i)[p];
      for (std::int64_t j = 0; j < n; ++j) c.row(i)[j] += x * b.row(p)[j];
    }
  }
#endif
}

// c (m, n) += a (k, m)^T b (k, n): dV += P^T dO, dK += dS^T Q.
void add_mul_atb(Tile c, Tile a, Tile b, std::int64_t m, std::int64_t n, std::int64_t k) {
#if STRATA_KERNELS_HAVE_EIGEN
  map(c, m, n).noalias() += cmap(a, k, m).transpose() * cmap(b, k, n);
#else
  for (std::int64_t p = 0; p < k; ++p) {
    for (std::int64_t i = 0; i < m; ++i) {
      const float x = a.row(p)[i];
      for (std::int64_t j = 0; j < n; ++j) c.row(i)[j] += x * b.row(p)[j];
    }
  }
#endif
}

// x[j] = exp(x[j] - shift) for j < n (vectorised with Eigen); returns the sum of the new values
// when `want_sum` (0 otherwise). x lies in the op's aligned scratch (see Scratch).
float exp_shifted(float* x, std::int64_t n, float shift, bool want_sum) {
#if STRATA_KERNELS_HAVE_EIGEN
  RowArray e(x, n);
  e = (e - shift).exp();
  return want_sum ? e.sum() : 0.0f;
#else
  float sum = 0.0f;
  for (std::int64_t j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] - shift);
    sum += x[j];
  }
  return want_sum ? sum : 0.0f;
#endif
}

// --- Scratch ---------------------------------------------------------------------------------

// One allocation per call, carved into 64-byte aligned pieces: where Eigen splits a vectorised
// exp or sum between scalar and packet code then depends on the block's shape only, never on
// the heap's addresses or the caller's buffers (kernels/README.md, Numerics).
constexpr std::size_t kAlignFloats = 16;  // 64 bytes: a cache line, Eigen's widest packet

std::int64_t round_up(std::int64_t floats) {
  const auto a = static_cast<std::int64_t>(kAlignFloats);
  return (floats + a - 1) / a * a;
}

class Scratch {
 public:
  explicit Scratch(std::int64_t floats)
      : base_(
            static_cast<float*>(::operator new[](static_cast<std::size_t>(floats) * sizeof(float),
                                                 std::align_val_t{kAlignFloats * sizeof(float)}))),
        capacity_(floats) {}
  ~Scratch() { ::operator delete[](base_, std::align_val_t{kAlignFloats * sizeof(float)}); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // The next `rows` x `ld` floats as a tile. Throws if the pieces outgrow the size formula
  // (a bug here, caught by every test that runs the op).
  Tile take(std::int64_t rows, std::int64_t ld) {
    Tile t{base_ + used_, ld};
    used_ += round_up(rows * ld);
    if (used_ > capacity_) throw std::logic_error("flash attention: scratch formula too small");
    return t;
  }

 private:
  float* base_;
  std::int64_t capacity_;
  std::int64_t used_ = 0;
};

// The pieces, in the order both the size formula and the kernels take them.
struct ForwardScratch {
  static std::int64_t floats(std::int64_t d, FlashBlocks k) {
    return 2 * round_up(k.rows * d) + 2 * round_up(k.cols * d) + round_up(k.rows * k.cols) +
           2 * round_up(k.rows);
  }
  ForwardScratch(Scratch& s, std::int64_t d, FlashBlocks k)
      : q(s.take(k.rows, d)),
        acc(s.take(k.rows, d)),
        kb(s.take(k.cols, d)),
        vb(s.take(k.cols, d)),
        p(s.take(k.rows, k.cols)),
        max(s.take(1, k.rows).data),
        sum(s.take(1, k.rows).data) {}
  Tile q, acc;  // (Br, D) the query block; the unnormalised output
  Tile kb, vb;  // (Bc, D) the key and value blocks
  Tile p;       // (Br, Bc) scores, then exp(score - running max)
  float* max;   // (Br) running max of each row's scores
  float* sum;   // (Br) running sum of exp(score - max)
};

struct BackwardScratch {
  static std::int64_t floats(std::int64_t t, std::int64_t d, FlashBlocks k) {
    return 2 * round_up(k.rows * d) + 4 * round_up(k.cols * d) + 2 * round_up(k.rows * k.cols) +
           round_up(t);
  }
  BackwardScratch(Scratch& s, std::int64_t t, std::int64_t d, FlashBlocks k)
      : q(s.take(k.rows, d)),
        dout(s.take(k.rows, d)),
        kb(s.take(k.cols, d)),
        vb(s.take(k.cols, d)),
        dk(s.take(k.cols, d)),
        dv(s.take(k.cols, d)),
        p(s.take(k.rows, k.cols)),
        ds(s.take(k.rows, k.cols)),
        delta(s.take(1, t).data) {}
  Tile q, dout;         // (Br, D) the query block and its output gradient
  Tile kb, vb, dk, dv;  // (Bc, D) the key and value blocks and their gradients
  Tile p, ds;           // (Br, Bc) probabilities; dP, then dS
  float* delta;         // (T) delta_i = dout_i . out_i of the current head
};

// Copies `rows` rows of `d` floats, `stride` apart in the caller's tensor, into a tile.
void load(Tile dst, const float* src, std::int64_t stride, std::int64_t rows, std::int64_t d) {
  for (std::int64_t r = 0; r < rows; ++r)
    std::copy(src + r * stride, src + r * stride + d, dst.row(r));
}

// Number of keys of the block starting at key k0 (cols wide) that query row q may attend to.
std::int64_t visible_keys(std::int64_t q, std::int64_t k0, std::int64_t cols) {
  return std::clamp<std::int64_t>(q - k0 + 1, 0, cols);
}

}  // namespace

std::int64_t flash_attention_scratch_floats(std::int64_t t, std::int64_t d, FlashBlocks blocks,
                                            bool backward) {
  return backward ? BackwardScratch::floats(t, d, blocks) : ForwardScratch::floats(d, blocks);
}

// Per (batch row, head) and query block: the key blocks up to the diagonal, each as
//   S = Q K^T / sqrt(D);  m' = max(m, rowmax S);  P = exp(S - m');
//   l = exp(m - m') l + rowsum P;  O = exp(m - m') O + P V;  m = m'
// (masked keys, after the query, get P = 0), then out = O / l and lse = m + log l.
void flash_attention_forward(float* out, float* lse, const float* qkv, std::int64_t b,
                             std::int64_t t, std::int64_t c, std::int64_t h, FlashBlocks blocks) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  Scratch scratch(ForwardScratch::floats(d, blocks));
  ForwardScratch s(scratch, d, blocks);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      const float* q_base = qkv + i * t * 3 * c + head * d;  // (T, D), rows 3C apart
      const float* k_base = q_base + c;
      const float* v_base = q_base + 2 * c;
      for (std::int64_t q0 = 0; q0 < t; q0 += blocks.rows) {
        const std::int64_t rows = std::min(blocks.rows, t - q0);
        load(s.q, q_base + q0 * 3 * c, 3 * c, rows, d);
        std::fill(s.max, s.max + rows, -INFINITY);
        std::fill(s.sum, s.sum + rows, 0.0f);
        for (std::int64_t r = 0; r < rows; ++r) std::fill(s.acc.row(r), s.acc.row(r) + d, 0.0f);
        // Key blocks from 0 to the one holding the block's last query; later ones are skipped.
        for (std::int64_t k0 = 0; k0 < q0 + rows; k0 += blocks.cols) {
          const std::int64_t cols = std::min(blocks.cols, t - k0);
          load(s.kb, k_base + k0 * 3 * c, 3 * c, cols, d);
          load(s.vb, v_base + k0 * 3 * c, 3 * c, cols, d);
          mul_abt(s.p, s.q, s.kb, rows, cols, d, scale);
          for (std::int64_t r = 0; r < rows; ++r) {
            float* p = s.p.row(r);  // (Bc)
            const std::int64_t n = visible_keys(q0 + r, k0, cols);
            std::fill(p + n, p + cols, 0.0f);
            if (n == 0) continue;  // a row before the block (Br > Bc): nothing changes
            const float m_new = std::max(s.max[r], *std::max_element(p, p + n));
            const float rescale = std::exp(s.max[r] - m_new);  // exp(-inf) = 0 at the first block
            s.sum[r] = rescale * s.sum[r] + exp_shifted(p, n, m_new, true);
            s.max[r] = m_new;
            if (rescale != 1.0f) {
              float* o = s.acc.row(r);  // (D)
              for (std::int64_t j = 0; j < d; ++j) o[j] *= rescale;
            }
          }
          add_mul_ab(s.acc, s.p, s.vb, rows, d, cols);
        }
        float* lse_rows = lse + (i * h + head) * t + q0;  // (rows)
        for (std::int64_t r = 0; r < rows; ++r) {
          const float inv_sum = 1.0f / s.sum[r];
          const float* o = s.acc.row(r);                       // (D)
          float* dst = out + (i * t + q0 + r) * c + head * d;  // (D)
          for (std::int64_t j = 0; j < d; ++j) dst[j] = o[j] * inv_sum;
          lse_rows[r] = s.max[r] + std::log(s.sum[r]);
        }
      }
    }
  }
}

// FlashAttention-2's backward (its Algorithm 2), per (batch row, head): first the paper's D_i,
// here delta_i = dout_i . out_i, then per key block j (outer) and query block i reaching the
// diagonal or below (inner, in order):
//   P = exp(Q_i K_j^T / sqrt(D) - lse_i);  dV_j += P^T dO_i;  dP = dO_i V_j^T;
//   dS = P o (dP - delta_i) / sqrt(D);  dK_j += dS^T Q_i;  dQ_i += dS K_j.
// dK_j and dV_j stay in scratch and are written once; dQ_i is added into dqkv (zeroed first) by
// key block in increasing order: a fixed order, where the GPU kernel uses atomics.
void flash_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                              const float* lse, std::int64_t b, std::int64_t t, std::int64_t c,
                              std::int64_t h, FlashBlocks blocks) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  Scratch scratch(BackwardScratch::floats(t, d, blocks));
  BackwardScratch s(scratch, t, d, blocks);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      const float* q_base = qkv + i * t * 3 * c + head * d;  // (T, D), rows 3C apart
      const float* k_base = q_base + c;
      const float* v_base = q_base + 2 * c;
      const float* dout_base = dout + i * t * c + head * d;  // (T, D), rows C apart
      const float* out_base = out + i * t * c + head * d;    // (T, D), rows C apart
      const float* lse_base = lse + (i * h + head) * t;      // (T)
      float* dq_base = dqkv + i * t * 3 * c + head * d;      // (T, D), rows 3C apart
      for (std::int64_t r = 0; r < t; ++r) {
        double dot = 0.0;  // in double, rounded once: delta_i is subtracted from every dP_ij
        for (std::int64_t j = 0; j < d; ++j) {
          dot += static_cast<double>(dout_base[r * c + j]) * out_base[r * c + j];
        }
        s.delta[r] = static_cast<float>(dot);
        std::fill(dq_base + r * 3 * c, dq_base + r * 3 * c + d, 0.0f);
      }
      for (std::int64_t k0 = 0; k0 < t; k0 += blocks.cols) {
        const std::int64_t cols = std::min(blocks.cols, t - k0);
        load(s.kb, k_base + k0 * 3 * c, 3 * c, cols, d);
        load(s.vb, v_base + k0 * 3 * c, 3 * c, cols, d);
        for (std::int64_t r = 0; r < cols; ++r) {
          std::fill(s.dk.row(r), s.dk.row(r) + d, 0.0f);
          std::fill(s.dv.row(r), s.dv.row(r) + d, 0.0f);
        }
        // Query blocks from the one holding query k0 (the first that sees a key of the block).
        for (std::int64_t q0 = k0 / blocks.rows * blocks.rows; q0 < t; q0 += blocks.rows) {
          const std::int64_t rows = std::min(blocks.rows, t - q0);
          load(s.q, q_base + q0 * 3 * c, 3 * c, rows, d);
          load(s.dout, dout_base + q0 * c, c, rows, d);
          mul_abt(s.p, s.q, s.kb, rows, cols, d, scale);
          for (std::int64_t r = 0; r < rows; ++r) {
            float* p = s.p.row(r);  // (Bc)
            const std::int64_t n = visible_keys(q0 + r, k0, cols);
            exp_shifted(p, n, lse_base[q0 + r], false);
            std::fill(p + n, p + cols, 0.0f);
          }
          add_mul_atb(s.dv, s.p, s.dout, cols, d, rows);
          mul_abt(s.ds, s.dout, s.vb, rows, cols, d, 1.0f);
          for (std::int64_t r = 0; r < rows; ++r) {
            const float* p = s.p.row(r);  // (Bc)
            float* ds = s.ds.row(r);      // (Bc): dP in, dS out
            const float delta = s.delta[q0 + r];
            for (std::int64_t j = 0; j < cols; ++j) ds[j] = p[j] * (ds[j] - delta) * scale;
          }
          add_mul_atb(s.dk, s.ds, s.q, cols, d, rows);
          add_mul_ab(Tile{dq_base + q0 * 3 * c, 3 * c}, s.ds, s.kb, rows, d, cols);
        }
        float* dk_dst = dq_base + c + k0 * 3 * c;      // (cols, D), rows 3C apart
        float* dv_dst = dq_base + 2 * c + k0 * 3 * c;  // (cols, D), rows 3C apart
        for (std::int64_t r = 0; r < cols; ++r) {
          std::copy(s.dk.row(r), s.dk.row(r) + d, dk_dst + r * 3 * c);
          std::copy(s.dv.row(r), s.dv.row(r) + d, dv_dst + r * 3 * c);
        }
      }
    }
  }
}

}  // namespace strata::kernels::cpu
