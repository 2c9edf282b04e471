// Hot switching: the training state moved between two strategies' Interpreters in memory; see
// switch_state.hpp for the protocol and the source rule.
//
// defines: switch_state (and, internal: SliceCodec, gather_bytes, Holders, Transfer, locate)
#include "executor/switch_state.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "executor/checkpoint_slices.hpp"

namespace strata::exec {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Slices as bytes: the fields that place their elements in the global tensors (not where they
// lie in the rank's buffers, which only the rank itself needs: read back, `buffer` is -1).
class SliceCodec {
 public:
  static void write(const std::vector<StateSlice>& slices, std::string* out) {
    put(out, static_cast<std::uint32_t>(slices.size()));
    for (const StateSlice& s : slices) {
      put_string(out, s.tensor);
      put_string(out, s.state);
      put(out, s.rows);
      put(out, s.cols);
      put(out, s.shard);
      put(out, s.parts);
      put(out, s.index);
      put(out, s.row_blocks);
      put(out, s.begin);
      put(out, s.count);
      put(out, s.dtype);
    }
  }
  // Reads what write() wrote from `*at` on, moving `*at` past it.
  static std::vector<StateSlice> read(const std::string& in, std::size_t* at) {
    std::vector<StateSlice> out(get<std::uint32_t>(in, at));
    for (StateSlice& s : out) {
      s.tensor = get_string(in, at);
      s.state = get_string(in, at);
      s.rows = get<std::int64_t>(in, at);
      s.cols = get<std::int64_t>(in, at);
      s.shard = get<strategies::Shard>(in, at);
      s.parts = get<int>(in, at);
      s.index = get<int>(in, at);
      s.row_blocks = get<std::array<std::int64_t, 3>>(in, at);
      s.begin = get<std::int64_t>(in, at);
      s.count = get<std::int64_t>(in, at);
      s.dtype = get<strategies::DType>(in, at);
    }
    return out;
  }

 private:
  template <typename T>
  static void put(std::string* out, const T& v) {
    out->append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  static void put_string(std::string* out, const std::string& s) {
    put(out, static_cast<std::uint32_t>(s.size()));
    out->append(s);
  }
  template <typename T>
  static T get(const std::string& in, std::size_t* at) {
    STRATA_CHECK(*at + sizeof(T) <= in.size(), "switch_state: truncated slice metadata");
    T v;
    std::memcpy(&v, in.data() + *at, sizeof v);
    *at += sizeof v;
    return v;
  }
  static std::string get_string(const std::string& in, std::size_t* at) {
    const auto n = get<std::uint32_t>(in, at);
    STRATA_CHECK(*at + n <= in.size(), "switch_state: truncated slice metadata");
    std::string s = in.substr(*at, n);
    *at += n;
    return s;
  }
};

// Bytes as whole floats for the float-based Comm (the last one zero-padded).
std::size_t floats_for(std::size_t bytes) { return (bytes + sizeof(float) - 1) / sizeof(float); }

// Every rank's `mine`, in rank order (an all-gather of the sizes, then of the bytes).
std::vector<std::string> gather_bytes(Comm& comm, GroupId world, const std::string& mine) {
  const auto n = static_cast<std::size_t>(comm.size());
  const auto size = static_cast<std::uint32_t>(mine.size());
  float size_f = 0;
  std::memcpy(&size_f, &size, sizeof size);
  std::vector<float> sizes_f(n);
  comm.all_gather(world, &size_f, sizes_f.data(), 1).wait();
  std::vector<std::uint32_t> sizes(n);
  std::memcpy(sizes.data(), sizes_f.data(), n * sizeof(float));
  std::vector<int> counts(n);
  std::size_t total = 0;
  for (std::size_t r = 0; r < n; ++r) {
    counts[r] = static_cast<int>(floats_for(sizes[r]));
    total += static_cast<std::size_t>(counts[r]);
  }
  std::vector<float> send(floats_for(mine.size()), 0.0f), recv(total);
  std::memcpy(send.data(), mine.data(), mine.size());
  comm.all_gather_v(world, send.data(), recv.data(), counts).wait();
  std::vector<std::string> out(n);
  const char* at = reinterpret_cast<const char*>(recv.data());
  for (std::size_t r = 0; r < n; ++r) {
    out[r].assign(at, sizes[r]);
    at += static_cast<std::size_t>(counts[r]) * sizeof(float);
  }
  return out;
}

std::string shape_text(const StateSlice& s) {
  return "[" + std::to_string(s.rows) + ", " + std::to_string(s.cols) + "]";
}

// Which ranks hold each element of one tensor's state under A: a bitset over the world per
// element of the unsharded tensor.
struct Holders {
  const StateSlice* first = nullptr;  // shape and dtype
  int words = 1;
  std::vector<std::uint64_t> bits;

  // The holder of element `g` nearest after `r` ((h - r) mod world smallest), or -1.
  int nearest(std::int64_t g, int r, int world) const {
    const std::uint64_t* b = bits.data() + g * words;
    for (int d = 0; d < world; ++d) {
      const int h = (r + d) % world;
      if ((b[h / 64] >> (h % 64)) & 1U) return h;
    }
    return -1;
  }
};

// The transfer of one switch, planned alike on every rank from every rank's slices.
class Transfer {
 public:
  Transfer(std::vector<std::vector<StateSlice>> a, std::vector<std::vector<StateSlice>> b)
      : a_(std::move(a)), b_(std::move(b)), world_(static_cast<int>(a_.size())) {
    for (int h = 0; h < world_; ++h) {
      for (const StateSlice& s : a_[static_cast<std::size_t>(h)]) {
        by_key_[s.tensor + " " + s.state].push_back({h, &s});
      }
    }
  }

  // Calls visit(slice, k, g, h) for every element k of every slice of receiver r under B, in
  // the transfer's order: `g` its unsharded index, `h` the rank it comes from (the source rule).
  template <typename Visit>
  void for_each_element(int r, Visit&& visit) {
    for (const StateSlice& s : b_[static_cast<std::size_t>(r)]) {
      const Holders& holders = source(s);
      const std::vector<std::int64_t> idx = s.indices();
      for (std::size_t k = 0; k < idx.size(); ++k) {
        const int h = holders.nearest(idx[k], r, world_);
        if (h < 0) {
          throw ConfigError("switching strategies: element " + std::to_string(idx[k]) +
                            " of tensor '" + s.tensor + "' (" + holders.first->state +
                            ") is held by no rank under the old strategy");
        }
        visit(s, k, idx[k], h);
      }
    }
  }

  // The key of A's state that B's state `s` comes from, as load_resharded() maps states.
  std::string source_key(const StateSlice& s) const {
    const std::string state = source_state(
        s.state, [&](const std::string& st) { return by_key_.count(s.tensor + " " + st) != 0; });
    if (!state.empty()) return s.tensor + " " + state;
    throw ConfigError("switching strategies: tensor '" + s.tensor + "' has no " + s.state +
                      " state under the old strategy");
  }

 private:
  const Holders& source(const StateSlice& s) {
    const std::string key = source_key(s);
    auto it = holders_.find(key);
    if (it == holders_.end()) it = holders_.emplace(key, build(key)).first;
    const StateSlice& a = *it->second.first;
    if (a.rows != s.rows || a.cols != s.cols) {
      throw ConfigError("switching strategies: tensor '" + s.tensor + "' has shape " +
                        shape_text(a) + " under the old strategy, " + shape_text(s) +
                        " under the new one");
    }
    if (a.dtype != s.dtype) {
      const std::string from = a.state == s.state ? "" : " from " + a.state;
      throw ConfigError("switching strategies: tensor '" + s.tensor + "' (" + s.state + from +
                        ") is " + strategies::dtype_name(a.dtype) + " under the old strategy, " +
                        strategies::dtype_name(s.dtype) + " under the new one");
    }
    return it->second;
  }

  Holders build(const std::string& key) const {
    const std::vector<std::pair<int, const StateSlice*>>& held = by_key_.at(key);
    Holders out;
    out.first = held.front().second;
    out.words = (world_ + 63) / 64;
    const std::int64_t elements = out.first->rows * out.first->cols;
    out.bits.assign(static_cast<std::size_t>(elements * out.words), 0);
    for (const auto& [h, s] : held) {
      if (s->rows != out.first->rows || s->cols != out.first->cols ||
          s->dtype != out.first->dtype) {
        throw ConfigError("switching strategies: tensor '" + s->tensor + "' (" + s->state +
                          ") has two shapes or dtypes under the old strategy");
      }
      for (std::int64_t g : s->indices()) {
        out.bits[static_cast<std::size_t>(g * out.words + h / 64)] |= std::uint64_t{1} << (h % 64);
      }
    }
    return out;
  }

  std::vector<std::vector<StateSlice>> a_, b_;
  int world_;
  std::map<std::string, std::vector<std::pair<int, const StateSlice*>>> by_key_;
  std::map<std::string, Holders> holders_;
};

// This rank's slices of `in`; ConfigError when a state buffer is in no bucket.
std::vector<StateSlice> slices_of(const Interpreter& in, const char* which) {
  std::vector<std::string> uncovered;
  std::vector<StateSlice> out = state_slices(in, &uncovered);
  if (!uncovered.empty()) {
    const std::string buffer = uncovered.front();
    throw ConfigError("switching strategies: the " + std::string(which) + " strategy's state " +
                      "buffer " + buffer + " is in no bucket, so its elements cannot be placed " +
                      "in the global tensors");
  }
  return out;
}

// The state buffers the slices name, copied to the host.
std::map<std::int32_t, std::string> stage(const Interpreter& in,
                                          const std::vector<StateSlice>& slices) {
  std::map<std::int32_t, std::string> out;
  for (const StateSlice& s : slices) {
    std::string& bytes = out[s.buffer];
    if (!bytes.empty()) continue;
    bytes.resize(static_cast<std::size_t>(in.program().buffers[s.buffer].bytes()));
    kernels::copy_to_host(in.stream(), bytes.data(), in.view(s.buffer).data, bytes.size())
        .synchronize();
  }
  return out;
}

// Where each element of this rank's A state lies in `host` (its state buffers on the host), by
// tensor and state: per unsharded index, nullptr where the rank does not hold it.
std::map<std::string, std::vector<const char*>> locate(
    const std::vector<StateSlice>& slices, const std::map<std::int32_t, std::string>& host) {
  std::map<std::string, std::vector<const char*>> out;
  for (const StateSlice& s : slices) {
    std::vector<const char*>& at = out[s.tensor + " " + s.state];
    at.resize(static_cast<std::size_t>(s.rows * s.cols), nullptr);
    const auto esize = static_cast<std::size_t>(strategies::dtype_bytes(s.dtype));
    const char* base = host.at(s.buffer).data() + s.buffer_offset * esize;
    const std::vector<std::int64_t> idx = s.indices();
    for (std::size_t k = 0; k < idx.size(); ++k) {
      at[static_cast<std::size_t>(idx[k])] = base + k * esize;
    }
  }
  return out;
}

}  // namespace

SwitchStats switch_state(Comm& comm, const Interpreter& from, Interpreter& to) {
  const int world = comm.size(), me = comm.rank();
  std::vector<int> everyone(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) everyone[static_cast<std::size_t>(r)] = r;
  const GroupId group = comm.split(everyone);
  comm.barrier();
  const double t0 = now_s();

  const std::vector<StateSlice> mine_a = slices_of(from, "old"), mine_b = slices_of(to, "new");
  std::string meta;
  SliceCodec::write(mine_a, &meta);
  SliceCodec::write(mine_b, &meta);
  std::vector<std::vector<StateSlice>> a, b;
  for (const std::string& bytes : gather_bytes(comm, group, meta)) {
    std::size_t at = 0;
    a.push_back(SliceCodec::read(bytes, &at));
    b.push_back(SliceCodec::read(bytes, &at));
  }
  // This rank's own slices as they are here, with where they lie in its buffers.
  STRATA_CHECK(a[static_cast<std::size_t>(me)].size() == mine_a.size() &&
                   b[static_cast<std::size_t>(me)].size() == mine_b.size(),
               "switch_state: this rank's slices did not come back from the all-gather");
  a[static_cast<std::size_t>(me)] = mine_a;
  b[static_cast<std::size_t>(me)] = mine_b;
  Transfer transfer(std::move(a), std::move(b));

  const std::map<std::int32_t, std::string> host_a = stage(from, mine_a);
  const std::map<std::string, std::vector<const char*>> located = locate(mine_a, host_a);

  // Every rank plans every receiver's elements: this rank packs what it sends, and all ranks
  // count every rank's bytes (so the stats need no reduction).
  SwitchStats stats;
  std::vector<double> sent(static_cast<std::size_t>(world), 0.0);
  std::vector<std::string> send(static_cast<std::size_t>(world));
  std::vector<std::size_t> recv_bytes(static_cast<std::size_t>(world), 0);
  for (int r = 0; r < world; ++r) {
    const std::vector<const char*>* src = nullptr;
    const StateSlice* src_of = nullptr;
    transfer.for_each_element(r, [&](const StateSlice& s, std::size_t, std::int64_t g, int h) {
      const auto esize = static_cast<std::size_t>(strategies::dtype_bytes(s.dtype));
      if (h == r) {
        ++stats.elements_copied;
        return;
      }
      ++stats.elements_sent;
      sent[static_cast<std::size_t>(h)] += static_cast<double>(esize);
      if (r == me) recv_bytes[static_cast<std::size_t>(h)] += esize;
      if (h != me) return;
      if (src_of != &s) {
        src = &located.at(transfer.source_key(s));
        src_of = &s;
      }
      send[static_cast<std::size_t>(r)].append((*src)[static_cast<std::size_t>(g)], esize);
    });
  }

  // One ragged all-to-all over the world; a rank's own elements are copied locally.
  std::vector<int> send_counts(static_cast<std::size_t>(world)),
      recv_counts(static_cast<std::size_t>(world));
  std::vector<std::size_t> recv_at(static_cast<std::size_t>(world), 0);
  std::size_t send_total = 0, recv_total = 0;
  for (std::size_t r = 0; r < static_cast<std::size_t>(world); ++r) {
    send_counts[r] = static_cast<int>(floats_for(send[r].size()));
    recv_counts[r] = static_cast<int>(floats_for(recv_bytes[r]));
    recv_at[r] = recv_total * sizeof(float);
    send_total += static_cast<std::size_t>(send_counts[r]);
    recv_total += static_cast<std::size_t>(recv_counts[r]);
  }
  std::vector<float> send_buf(send_total, 0.0f), recv_buf(recv_total, 0.0f);
  {
    char* at = reinterpret_cast<char*>(send_buf.data());
    for (std::size_t r = 0; r < send.size(); ++r) {
      if (!send[r].empty()) std::memcpy(at, send[r].data(), send[r].size());  // none: null
      at += static_cast<std::size_t>(send_counts[r]) * sizeof(float);
    }
  }
  comm.all_to_all_v(group, send_buf.data(), send_counts, recv_buf.data(), recv_counts).wait();

  // Unpacked in the order they were packed, into the host copy of B's state buffers.
  std::map<std::int32_t, std::string> host_b = stage(to, mine_b);
  const char* received = reinterpret_cast<const char*>(recv_buf.data());
  const std::vector<const char*>* src = nullptr;
  const StateSlice* src_of = nullptr;
  transfer.for_each_element(me, [&](const StateSlice& s, std::size_t k, std::int64_t g, int h) {
    const auto esize = static_cast<std::size_t>(strategies::dtype_bytes(s.dtype));
    char* dst =
        host_b.at(s.buffer).data() + (static_cast<std::size_t>(s.buffer_offset) + k) * esize;
    if (h != me) {
      std::size_t& at = recv_at[static_cast<std::size_t>(h)];
      std::memcpy(dst, received + at, esize);
      at += esize;
      return;
    }
    if (src_of != &s) {
      src = &located.at(transfer.source_key(s));
      src_of = &s;
    }
    std::memcpy(dst, (*src)[static_cast<std::size_t>(g)], esize);
  });
  for (const auto& [id, bytes] : host_b) {
    kernels::copy_from_host(to.stream(), to.view(id).data, bytes.data(), bytes.size())
        .synchronize();
  }

  stats.bytes_sent = 0;
  for (double s : sent) {
    stats.bytes_sent += s;
    stats.max_rank_bytes_sent = std::max(stats.max_rank_bytes_sent, s);
  }
  // The slowest rank's wall time (a double through the float Comm, bit for bit).
  const double mine_s = now_s() - t0;
  std::vector<float> secs(2 * static_cast<std::size_t>(world));
  float packed[2];
  std::memcpy(packed, &mine_s, sizeof mine_s);
  comm.all_gather(group, packed, secs.data(), 2).wait();
  for (int r = 0; r < world; ++r) {
    double s = 0;
    std::memcpy(&s, secs.data() + 2 * r, sizeof s);
    stats.seconds = std::max(stats.seconds, s);
  }
  return stats;
}

}  // namespace strata::exec
