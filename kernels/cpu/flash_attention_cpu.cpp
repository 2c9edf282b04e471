// Fused causal attention on the CPU (FlashAttention-2, Dao 2023, arXiv:2307.08691): the forward
// keeps per query row a running max and sum instead of the (T, T) probabilities, the backward
// recomputes the scores block by block from the saved log-sum-exp. Written once, over rows that
// carry explicit positions (attention_segments_*); the self-attention over one sequence
// (flash_attention_*) is the case of one segment {0, T} on each side.
// defines: flash_attention_scratch_floats, attention_segments_score_entries,
// attention_segments_forward, attention_segments_backward, flash_attention_forward,
// flash_attention_backward (kernels::cpu; contracts in kernels/model_ops.hpp)
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <vector>

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
           3 * round_up(k.rows);
  }
  ForwardScratch(Scratch& s, std::int64_t d, FlashBlocks k)
      : q(s.take(k.rows, d)),
        acc(s.take(k.rows, d)),
        kb(s.take(k.cols, d)),
        vb(s.take(k.cols, d)),
        p(s.take(k.rows, k.cols)),
        max(s.take(1, k.rows).data),
        sum(s.take(1, k.rows).data),
        seen(s.take(1, k.rows).data) {}
  Tile q, acc;  // (Br, D) the query block; the unnormalised output
  Tile kb, vb;  // (Bc, D) the key and value blocks
  Tile p;       // (Br, Bc) scores, then exp(score - running max)
  float* max;   // (Br) running max of each row's scores
  float* sum;   // (Br) running sum of exp(score - max)
  float* seen;  // (Br) 1 once the row has seen a key of this call, else 0
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
  float* delta;         // (Tq) delta_i = dout_i . out_i of the current head
};

// Copies `rows` rows of `d` floats, `stride` apart in the caller's tensor, into a tile.
void load(Tile dst, const float* src, std::int64_t stride, std::int64_t rows, std::int64_t d) {
  for (std::int64_t r = 0; r < rows; ++r)
    std::copy(src + r * stride, src + r * stride + d, dst.row(r));
}

// Number of keys of a block whose first key is at position k0 (cols wide, consecutive
// positions) that a query at position q may attend to: a prefix of the block.
std::int64_t visible_keys(std::int64_t q, std::int64_t k0, std::int64_t cols) {
  return std::clamp<std::int64_t>(q - k0 + 1, 0, cols);
}

// A block of rows within one segment: rows [row, row + size) at positions
// [position, position + size).
struct RowBlock {
  std::int64_t row;
  std::int64_t position;
  std::int64_t size;
  std::int64_t last_position() const { return position + size - 1; }
};

// The segments cut into blocks of at most `block` rows, none straddling two segments (so each
// holds consecutive positions and the mask within a block pair is a prefix per row), in row
// order. One segment {0, T} gives the blocks [0, 64), [64, 128), ...
std::vector<RowBlock> cut_blocks(const std::vector<AttentionSegment>& segments,
                                 std::int64_t block) {
  std::vector<RowBlock> blocks;
  std::int64_t row = 0;
  for (const AttentionSegment& seg : segments) {
    for (std::int64_t i = 0; i < seg.length; i += block) {
      blocks.push_back({row + i, seg.position + i, std::min(block, seg.length - i)});
    }
    row += seg.length;
  }
  return blocks;
}

// A key block is skipped for a query block when its first key lies after the block's last query.
bool masked_out(const RowBlock& queries, const RowBlock& keys) {
  return keys.position > queries.last_position();
}

}  // namespace

std::int64_t flash_attention_scratch_floats(std::int64_t t, std::int64_t d, FlashBlocks blocks,
                                            bool backward) {
  return backward ? BackwardScratch::floats(t, d, blocks) : ForwardScratch::floats(d, blocks);
}

std::int64_t attention_segments_score_entries(const std::vector<AttentionSegment>& q_segments,
                                              const std::vector<AttentionSegment>& kv_segments,
                                              FlashBlocks blocks) {
  std::int64_t entries = 0;
  const std::vector<RowBlock> k_blocks = cut_blocks(kv_segments, blocks.cols);
  for (const RowBlock& qb : cut_blocks(q_segments, blocks.rows)) {
    for (const RowBlock& kb : k_blocks) {
      if (!masked_out(qb, kb)) entries += qb.size * kb.size;
    }
  }
  return entries;
}

// Per (batch row, head) and query block: the key blocks not wholly masked, in row order, each as
//   S = Q K^T / sqrt(D);  m' = max(m, rowmax S);  P = exp(S - m');
//   l = exp(m - m') l + rowsum P;  O = exp(m - m') O + P V;  m = m'
// (masked keys, at later positions than the query, get P = 0), then out = O / l and
// lse = m + log l. Merging starts from m = lse, l = 1, O = out: the state that the same loop
// would have reached over the earlier calls' keys, up to rounding.
void attention_segments_forward(float* out, float* lse, const float* q, std::int64_t ldq,
                                const float* k, const float* v, std::int64_t ldkv, std::int64_t b,
                                std::int64_t tq, std::int64_t tk,
                                const std::vector<AttentionSegment>& q_segments,
                                const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                std::int64_t h, bool merge, FlashBlocks blocks) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const std::vector<RowBlock> q_blocks = cut_blocks(q_segments, blocks.rows);
  const std::vector<RowBlock> k_blocks = cut_blocks(kv_segments, blocks.cols);
  Scratch scratch(ForwardScratch::floats(d, blocks));
  ForwardScratch s(scratch, d, blocks);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      const float* q_base = q + i * tq * ldq + head * d;   // (Tq, D), rows ldq apart
      const float* k_base = k + i * tk * ldkv + head * d;  // (Tk, D), rows ldkv apart
      const float* v_base = v + i * tk * ldkv + head * d;  // (Tk, D), rows ldkv apart
      float* out_base = out + i * tq * c + head * d;       // (Tq, D), rows C apart
      float* lse_base = lse + (i * h + head) * tq;         // (Tq)
      for (const RowBlock& qb : q_blocks) {
        const std::int64_t rows = qb.size;
        load(s.q, q_base + qb.row * ldq, ldq, rows, d);
        for (std::int64_t r = 0; r < rows; ++r) {
          const float old = merge ? lse_base[qb.row + r] : -INFINITY;
          float* o = s.acc.row(r);  // (D)
          if (old == -INFINITY) {   // nothing seen yet
            s.max[r] = -INFINITY;
            s.sum[r] = 0.0f;
            std::fill(o, o + d, 0.0f);
          } else {
            s.max[r] = old;
            s.sum[r] = 1.0f;
            std::copy(out_base + (qb.row + r) * c, out_base + (qb.row + r) * c + d, o);
          }
          s.seen[r] = 0.0f;
        }
        for (const RowBlock& kb : k_blocks) {
          if (masked_out(qb, kb)) continue;
          const std::int64_t cols = kb.size;
          load(s.kb, k_base + kb.row * ldkv, ldkv, cols, d);
          load(s.vb, v_base + kb.row * ldkv, ldkv, cols, d);
          mul_abt(s.p, s.q, s.kb, rows, cols, d, scale);
          for (std::int64_t r = 0; r < rows; ++r) {
            float* p = s.p.row(r);  // (Bc)
            const std::int64_t n = visible_keys(qb.position + r, kb.position, cols);
            std::fill(p + n, p + cols, 0.0f);
            if (n == 0) continue;  // a row before the block: nothing changes
            s.seen[r] = 1.0f;
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
        for (std::int64_t r = 0; r < rows; ++r) {
          if (merge && s.seen[r] == 0.0f) continue;  // left as it was
          float* dst = out_base + (qb.row + r) * c;  // (D)
          if (s.sum[r] == 0.0f) {                    // no key at all (sum >= 1 once one is seen)
            std::fill(dst, dst + d, 0.0f);
            lse_base[qb.row + r] = -INFINITY;
            continue;
          }
          const float inv_sum = 1.0f / s.sum[r];
          const float* o = s.acc.row(r);  // (D)
          for (std::int64_t j = 0; j < d; ++j) dst[j] = o[j] * inv_sum;
          lse_base[qb.row + r] = s.max[r] + std::log(s.sum[r]);
        }
      }
    }
  }
}

// FlashAttention-2's backward (its Algorithm 2), per (batch row, head): first the paper's D_i,
// here delta_i = dout_i . out_i, then per key block j (outer) and query block i not wholly
// masked from it (inner, in row order):
//   P = exp(Q_i K_j^T / sqrt(D) - lse_i);  dV_j += P^T dO_i;  dP = dO_i V_j^T;
//   dS = P o (dP - delta_i) / sqrt(D);  dK_j += dS^T Q_i;  dQ_i += dS K_j.
// dK_j and dV_j stay in scratch and are written (or added) once; dQ_i is added into dq (zeroed
// first unless accumulating) by key block in row order: a fixed order, where the GPU kernel uses
// atomics.
void attention_segments_backward(float* dq, std::int64_t lddq, float* dk, float* dv,
                                 std::int64_t lddkv, const float* dout, const float* q,
                                 std::int64_t ldq, const float* k, const float* v,
                                 std::int64_t ldkv, const float* out, const float* lse,
                                 std::int64_t b, std::int64_t tq, std::int64_t tk,
                                 const std::vector<AttentionSegment>& q_segments,
                                 const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                 std::int64_t h, bool accumulate_dq, bool accumulate_dkv,
                                 FlashBlocks blocks) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const std::vector<RowBlock> q_blocks = cut_blocks(q_segments, blocks.rows);
  const std::vector<RowBlock> k_blocks = cut_blocks(kv_segments, blocks.cols);
  Scratch scratch(BackwardScratch::floats(tq, d, blocks));
  BackwardScratch s(scratch, tq, d, blocks);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      const float* q_base = q + i * tq * ldq + head * d;      // (Tq, D), rows ldq apart
      const float* k_base = k + i * tk * ldkv + head * d;     // (Tk, D), rows ldkv apart
      const float* v_base = v + i * tk * ldkv + head * d;     // (Tk, D), rows ldkv apart
      const float* dout_base = dout + i * tq * c + head * d;  // (Tq, D), rows C apart
      const float* out_base = out + i * tq * c + head * d;    // (Tq, D), rows C apart
      const float* lse_base = lse + (i * h + head) * tq;      // (Tq)
      float* dq_base = dq + i * tq * lddq + head * d;         // (Tq, D), rows lddq apart
      float* dk_base = dk + i * tk * lddkv + head * d;        // (Tk, D), rows lddkv apart
      float* dv_base = dv + i * tk * lddkv + head * d;        // (Tk, D), rows lddkv apart
      for (std::int64_t r = 0; r < tq; ++r) {
        double dot = 0.0;  // in double, rounded once: delta_i is subtracted from every dP_ij
        for (std::int64_t j = 0; j < d; ++j) {
          dot += static_cast<double>(dout_base[r * c + j]) * out_base[r * c + j];
        }
        s.delta[r] = static_cast<float>(dot);
        if (!accumulate_dq) std::fill(dq_base + r * lddq, dq_base + r * lddq + d, 0.0f);
      }
      for (const RowBlock& kb : k_blocks) {
        const std::int64_t cols = kb.size;
        load(s.kb, k_base + kb.row * ldkv, ldkv, cols, d);
        load(s.vb, v_base + kb.row * ldkv, ldkv, cols, d);
        for (std::int64_t r = 0; r < cols; ++r) {
          std::fill(s.dk.row(r), s.dk.row(r) + d, 0.0f);
          std::fill(s.dv.row(r), s.dv.row(r) + d, 0.0f);
        }
        for (const RowBlock& qb : q_blocks) {
          if (masked_out(qb, kb)) continue;
          const std::int64_t rows = qb.size;
          load(s.q, q_base + qb.row * ldq, ldq, rows, d);
          load(s.dout, dout_base + qb.row * c, c, rows, d);
          mul_abt(s.p, s.q, s.kb, rows, cols, d, scale);
          for (std::int64_t r = 0; r < rows; ++r) {
            float* p = s.p.row(r);  // (Bc)
            const float row_lse = lse_base[qb.row + r];
            // A row that saw no key anywhere (lse -inf) has no probabilities to recompute.
            const std::int64_t n =
                row_lse == -INFINITY ? 0 : visible_keys(qb.position + r, kb.position, cols);
            exp_shifted(p, n, row_lse, false);
            std::fill(p + n, p + cols, 0.0f);
          }
          add_mul_atb(s.dv, s.p, s.dout, cols, d, rows);
          mul_abt(s.ds, s.dout, s.vb, rows, cols, d, 1.0f);
          for (std::int64_t r = 0; r < rows; ++r) {
            const float* p = s.p.row(r);  // (Bc)
            float* ds = s.ds.row(r);      // (Bc): dP in, dS out
            const float delta = s.delta[qb.row + r];
            for (std::int64_t j = 0; j < cols; ++j) ds[j] = p[j] * (ds[j] - delta) * scale;
          }
          add_mul_atb(s.dk, s.ds, s.q, cols, d, rows);
          add_mul_ab(Tile{dq_base + qb.row * lddq, lddq}, s.ds, s.kb, rows, d, cols);
        }
        float* dk_dst = dk_base + kb.row * lddkv;  // (cols, D), rows lddkv apart
        float* dv_dst = dv_base + kb.row * lddkv;  // (cols, D), rows lddkv apart
        for (std::int64_t r = 0; r < cols; ++r) {
          const float* dk_row = s.dk.row(r);
          const float* dv_row = s.dv.row(r);
          float* dk_out = dk_dst + r * lddkv;
          float* dv_out = dv_dst + r * lddkv;
          if (accumulate_dkv) {
            for (std::int64_t j = 0; j < d; ++j) dk_out[j] += dk_row[j];
            for (std::int64_t j = 0; j < d; ++j) dv_out[j] += dv_row[j];
          } else {
            std::copy(dk_row, dk_row + d, dk_out);
            std::copy(dv_row, dv_row + d, dv_out);
          }
        }
      }
    }
  }
}

// Self-attention over one sequence: one segment {0, T} on each side, q, k, v (and their
// gradients) the three column ranges of the fused (B, T, 3C) tensor.
void flash_attention_forward(float* out, float* lse, const float* qkv, std::int64_t b,
                             std::int64_t t, std::int64_t c, std::int64_t h, FlashBlocks blocks) {
  const std::vector<AttentionSegment> whole{{0, t}};
  attention_segments_forward(out, lse, qkv, 3 * c, qkv + c, qkv + 2 * c, 3 * c, b, t, t, whole,
                             whole, c, h, false, blocks);
}

void flash_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                              const float* lse, std::int64_t b, std::int64_t t, std::int64_t c,
                              std::int64_t h, FlashBlocks blocks) {
  const std::vector<AttentionSegment> whole{{0, t}};
  attention_segments_backward(dqkv, 3 * c, dqkv + c, dqkv + 2 * c, 3 * c, dout, qkv, 3 * c, qkv + c,
                              qkv + 2 * c, 3 * c, out, lse, b, t, t, whole, whole, c, h, false,
                              false, blocks);
}

}  // namespace strata::kernels::cpu
