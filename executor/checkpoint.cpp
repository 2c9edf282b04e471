// Atomic, per-rank checkpoints; see checkpoint.hpp for the layout and the protocol.
#include "executor/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <utility>

#include "common/error.hpp"
#include "common/json.hpp"
#include "executor/checkpoint_manifest.hpp"
#include "executor/checkpoint_slices.hpp"
#include "strategies/program_json.hpp"
#include "strategies/program.hpp"

namespace strata::exec {
namespace {

namespace fs = std::filesystem;

std::string step_name(int step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%06d", step);
  return buf;
}
std::string rank_file(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rank-%05d.bin", rank);
  return buf;
}

// Writes `data` to `path` and fsyncs it, so a rename after this publishes complete bytes.
void write_synced(const fs::path& path, const void* data, std::size_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw ConfigError("checkpoint: cannot create " + path.string());
  const char* p = static_cast<const char*>(data);
  std::size_t left = bytes;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n <= 0) {
      ::close(fd);
      throw ConfigError("checkpoint: cannot write " + path.string() + " (disk full?)");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw ConfigError("checkpoint: cannot sync " + path.string());
}

void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string read_text(const fs::path& p) {
  std::error_code ec;
  if (fs::exists(p, ec) && !fs::is_regular_file(p, ec)) {
    throw ConfigError("--resume: " + p.string() + " is not a regular file");
  }
  std::ifstream in(p, std::ios::binary);
  if (!in) throw ConfigError("--resume: cannot read " + p.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The buffers a checkpoint keeps: the persistent parameters and optimizer states (gradients
// and the loss start every step at zero).
std::vector<std::int32_t> state_buffers(const strategies::Program& p) {
  std::vector<std::int32_t> out;
  for (std::size_t i = 0; i < p.buffers.size(); ++i) {
    const strategies::Buffer& b = p.buffers[i];
    if (b.persistent && !b.is_view() &&
        (b.role == strategies::Role::kParam || b.role == strategies::Role::kOptimizer)) {
      out.push_back(static_cast<std::int32_t>(i));
    }
  }
  return out;
}

json::Json rank_manifest(const strategies::Program& p) {
  json::Json list = json::Json::array();
  for (std::int32_t id : state_buffers(p)) {
    list.push_back({{"name", p.buffer_name(id)}, {"bytes", static_cast<long long>(p.buffers[id].bytes())}});
  }
  return list;
}

std::string hex64(std::uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// --keep-last: of the published checkpoints "step-NNNNNN" at or below `step`, keeps the `keep`
// newest and removes the rest. Later ones (an earlier, longer run's) and other names stay.
void remove_older(const fs::path& root, int step, int keep) {
  std::vector<int> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() != 11 || n.rfind("step-", 0) != 0 || !e.is_directory(ec)) continue;
    if (n.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    const int s = std::atoi(n.c_str() + 5);
    if (s <= step) steps.push_back(s);
  }
  std::sort(steps.rbegin(), steps.rend());
  for (std::size_t i = static_cast<std::size_t>(keep); i < steps.size(); ++i) {
    fs::remove_all(root / step_name(steps[i]), ec);
  }
}

// Rank 0: the manifest's "slices", every rank's (from the files beside the rank files, which
// it removes) with each replicated slice listed once, from its lowest rank; or, when some state
// buffer is in no bucket, "unsliced" naming those (such a checkpoint is not resharded).
void add_slices(json::Json& manifest, const fs::path& tmp, int world) {
  json::Json slices = json::Json::array(), unsliced = json::Json::array();
  std::map<std::string, std::vector<StateSlice>> kept;  // by tensor and state
  for (int r = 0; r < world; ++r) {
    const fs::path side = tmp / (rank_file(r) + ".slices");
    const json::Json j = json::parse(read_text(side), side.string());
    for (const json::Json& e : j.at("slices")) {
      const StateSlice s = slice_from_json(e, side.string()).slice;
      std::vector<StateSlice>& same = kept[s.tensor + " " + s.state];
      if (std::any_of(same.begin(), same.end(),
                      [&](const StateSlice& k) { return k.same_elements(s); })) {
        continue;
      }
      same.push_back(s);
      slices.push_back(e);
    }
    for (const json::Json& n : j.at("unsliced")) unsliced.push_back(n);
    std::error_code ec;
    fs::remove(side, ec);
  }
  if (unsliced.empty()) {
    manifest["slices"] = std::move(slices);
  } else {
    manifest["unsliced"] = std::move(unsliced);
  }
}

// A checkpoint's rank file read whole and checked against its manifest's size and checksum.
std::string read_rank_file(const CheckpointManifest& m, const fs::path& ck, int rank,
                           const std::string& what) {
  const std::string file = rank_file(rank);
  std::string bytes = read_text(ck / file);
  // Schema 1 checkpoints (before checksums) have no "files".
  if (!m.files.empty()) {
    const CheckpointFile& entry = m.files.at(static_cast<std::size_t>(rank));
    const std::string& expected = entry.fnv1a64;
    const std::string actual = hex64(fnv1a64(bytes.data(), bytes.size()));
    if (entry.name != file || actual != expected) {
      throw ConfigError(what + ": " + (ck / file).string() + " is corrupt: its FNV-1a 64 checksum "
                        "is " + actual + ", the manifest's is " + expected +
                        "; resume from an earlier checkpoint");
    }
  }
  return bytes;
}

std::string shape_text(const StateSlice& s) {
  return "[" + std::to_string(s.rows) + ", " + std::to_string(s.cols) + "]";
}

// Every tensor this rank holds is in the checkpoint with its shape (else a ConfigError naming
// the tensor and both shapes).
void check_tensors(const CheckpointManifest& m, const std::vector<StateSlice>& mine,
                   const std::map<std::string, std::vector<const ListedSlice*>>& listed,
                   const std::string& what) {
  for (const StateSlice& s : mine) {
    const auto it = listed.find(s.tensor);
    if (it == listed.end()) {
      throw ConfigError(what + ": tensor '" + s.tensor + "' " + shape_text(s) +
                        " of this run is not in the checkpoint (written for model '" +
                        m.model_name + "'); resume a checkpoint of this model");
    }
    const StateSlice& c = it->second.front()->slice;
    if (c.rows != s.rows || c.cols != s.cols) {
      throw ConfigError(what + ": tensor '" + s.tensor + "' has shape " + shape_text(c) +
                        " in the checkpoint (model '" + m.model_name + "'), " + shape_text(s) +
                        " in this run; resume a checkpoint of this model");
    }
  }
}

// Loads the rank's state from the manifest's slices: per tensor and state, the unsharded tensor
// assembled from the slices that hold it, then the rank's own slices copied out of it.
// `mine` are the rank's slices, `listed` the manifest's by tensor (check_tensors() passed).
void load_resharded(const CheckpointManifest& m, const fs::path& ck, const std::string& what,
                    const std::vector<StateSlice>& mine,
                    const std::map<std::string, std::vector<const ListedSlice*>>& listed,
                    Interpreter& state) {
  std::map<int, std::string> files;  // rank files, read once each
  auto file = [&](int rank) -> const std::string& {
    auto it = files.find(rank);
    if (it == files.end()) it = files.emplace(rank, read_rank_file(m, ck, rank, what)).first;
    return it->second;
  };
  std::map<std::string, std::vector<const StateSlice*>> groups;  // by tensor and state
  for (const StateSlice& s : mine) groups[s.tensor + " " + s.state].push_back(&s);
  std::map<std::int32_t, std::string> host;  // the rank's state buffers as they are written
  for (const auto& [key, group] : groups) {
    const StateSlice& first = *group.front();
    const std::vector<const ListedSlice*>& sources = listed.at(first.tensor);
    auto holds = [&](const std::string& st) {
      return std::any_of(sources.begin(), sources.end(),
                         [&](const ListedSlice* l) { return l->slice.state == st; });
    };
    const std::string from = source_state(first.state, holds);
    if (from.empty()) {
      throw ConfigError(what + ": tensor '" + first.tensor + "' has no " + first.state +
                        " state in the checkpoint");
    }
    const auto esize = static_cast<std::size_t>(strategies::dtype_bytes(first.dtype));
    std::string whole(static_cast<std::size_t>(first.rows * first.cols) * esize, '\0');
    std::vector<bool> have(static_cast<std::size_t>(first.rows * first.cols), false);
    for (const ListedSlice* l : sources) {
      if (l->slice.state != from) continue;
      if (l->slice.rows != first.rows || l->slice.cols != first.cols) {
        throw ConfigError(what + ": tensor '" + first.tensor + "' is listed with shapes " +
                          shape_text(l->slice) + " and " + shape_text(first) +
                          " in the manifest");
      }
      if (l->slice.dtype != first.dtype) {
        throw ConfigError(what + ": tensor '" + first.tensor + "' (" + from + ") is " +
                          strategies::dtype_name(l->slice.dtype) + " in the checkpoint, " +
                          strategies::dtype_name(first.dtype) + " in this run");
      }
      const std::string& bytes = file(l->file);
      const auto at = static_cast<std::size_t>(l->offset_bytes);
      if (at + static_cast<std::size_t>(l->slice.count) * esize > bytes.size()) {
        throw ConfigError(what + ": a slice of tensor '" + first.tensor + "' lies beyond the end "
                          "of " + (ck / rank_file(l->file)).string());
      }
      const std::vector<std::int64_t> idx = l->slice.indices();
      for (std::size_t k = 0; k < idx.size(); ++k) {
        const auto g = static_cast<std::size_t>(idx[k]);
        std::memcpy(whole.data() + g * esize, bytes.data() + at + k * esize, esize);
        have[g] = true;
      }
    }
    for (const StateSlice* s : group) {
      std::string& buf = host[s->buffer];
      if (buf.empty()) {
        buf.resize(static_cast<std::size_t>(state.program().buffers[s->buffer].bytes()));
        kernels::copy_to_host(state.stream(), buf.data(), state.view(s->buffer).data,
                              buf.size())
            .synchronize();
      }
      const std::vector<std::int64_t> idx = s->indices();
      for (std::size_t k = 0; k < idx.size(); ++k) {
        const auto g = static_cast<std::size_t>(idx[k]);
        if (!have[g]) {
          throw ConfigError(what + ": element " + std::to_string(g) + " of tensor '" +
                            first.tensor + "' (" + from + ") is in none of its rank files");
        }
        std::memcpy(buf.data() + (static_cast<std::size_t>(s->buffer_offset) + k) * esize,
                    whole.data() + g * esize, esize);
      }
    }
  }
  for (const auto& [id, bytes] : host) {
    kernels::copy_from_host(state.stream(), state.view(id).data, bytes.data(), bytes.size())
        .synchronize();
  }
}

}  // namespace

std::uint64_t fnv1a64(const void* data, std::size_t bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // the offset basis
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;  // the 64-bit FNV prime
  }
  return h;
}

std::string checkpoint_name(int step) { return step_name(step); }

std::string save_checkpoint(const std::string& dir, int step, const strategies::ProgramSet& plan,
                            Comm& comm, Interpreter& state, const SaveOptions& options) {
  const std::string name = step_name(step) + options.suffix;
  const fs::path root(dir), tmp = root / (name + ".tmp"), final = root / name;
  if (comm.rank() == 0) {
    std::error_code ec;
    fs::create_directories(root, ec);
    fs::remove_all(tmp, ec);
    if (!fs::create_directories(tmp, ec) || ec) {
      throw ConfigError("--save = " + dir + ": cannot create " + tmp.string());
    }
  }
  comm.barrier();

  std::string blob;
  std::map<std::int32_t, std::int64_t> buffer_at;  // each state buffer's first byte in the file
  for (std::int32_t id : state_buffers(state.program())) {
    const TensorView v = state.view(id);
    const auto n = static_cast<std::size_t>(state.program().buffers[id].bytes());
    const std::size_t at = blob.size();
    buffer_at[id] = static_cast<std::int64_t>(at);
    blob.resize(at + n);
    kernels::copy_to_host(state.stream(), blob.data() + at, v.data, n).synchronize();
  }
  write_synced(tmp / rank_file(comm.rank()), blob.data(), blob.size());
  // The file's slices of the global tensors (for a resume under another strategy) travel to
  // rank 0's manifest through a file beside the rank's, as its checksum does.
  {
    std::vector<std::string> unsliced;
    json::Json list = json::Json::array();
    for (const StateSlice& sl : state_slices(state, &unsliced)) {
      list.push_back(slice_to_json(sl, comm.rank(),
                                   buffer_at.at(sl.buffer) +
                                       sl.buffer_offset * strategies::dtype_bytes(sl.dtype)));
    }
    const std::string text = json::Json{{"slices", list}, {"unsliced", unsliced}}.dump();
    write_synced(tmp / (rank_file(comm.rank()) + ".slices"), text.data(), text.size());
  }
  // The checksum travels to rank 0's manifest through a small file beside the rank's.
  const std::string sum = hex64(fnv1a64(blob.data(), blob.size()));
  write_synced(tmp / (rank_file(comm.rank()) + ".fnv1a64"), sum.data(), sum.size());
  // Fault injection for the tests: die after this rank's file, before the checkpoint is
  // published (STRATA_TEST_KILL_IN_SAVE=STEP).
  if (const char* k = std::getenv("STRATA_TEST_KILL_IN_SAVE")) {
    if (std::atoi(k) == step && comm.rank() == 0) std::raise(SIGKILL);
  }

  // The manifest lists every rank's state buffers, read on rank 0 from the same Plan.
  comm.barrier();
  if (comm.rank() == 0) {
    json::Json ranks = json::Json::array(), files = json::Json::array();
    for (int r = 0; r < comm.size(); ++r) {
      ranks.push_back(rank_manifest(plan.program_of(r)));
      const fs::path side = tmp / (rank_file(r) + ".fnv1a64");
      std::error_code ec;
      files.push_back({{"name", rank_file(r)},
                       {"bytes", static_cast<long long>(fs::file_size(tmp / rank_file(r), ec))},
                       {"fnv1a64", read_text(side)}});
      fs::remove(side, ec);
    }
    json::Json manifest = {{"schema_version", 3},
                                 {"kind", "strata.checkpoint"},
                                 {"step", step},
                                 {"model", plan.model_name},
                                 {"strategy", plan.strategy_name},
                                 {"seed", options.seed},
                                 {"world_size", plan.world_size},
                                 {"provenance", strategies::provenance_to_json(plan.provenance)},
                                 {"ranks", ranks},
                                 {"files", files}};
    add_slices(manifest, tmp, comm.size());
    const std::string text = manifest.dump(2) + "\n";
    write_synced(tmp / "manifest.json", text.data(), text.size());
    sync_dir(tmp);
    std::error_code ec;
    fs::remove_all(final, ec);
    fs::rename(tmp, final, ec);
    if (ec) throw ConfigError("--save = " + dir + ": cannot publish " + final.string());
    if (options.publish) {
      const std::string latest = name + "\n";
      write_synced(root / "latest.tmp", latest.data(), latest.size());
      fs::rename(root / "latest.tmp", root / "latest", ec);
      if (ec) throw ConfigError("--save = " + dir + ": cannot update " + (root / "latest").string());
      sync_dir(root);
      if (options.keep_last > 0) remove_older(root, step, options.keep_last);
    }
  }
  comm.barrier();
  return final.string();
}

namespace {

// DIR's latest checkpoint: its directory name and its manifest.
std::pair<std::string, CheckpointManifest> latest_manifest(const fs::path& root) {
  std::string name = read_text(root / "latest");
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  const fs::path manifest = root / name / "manifest.json";
  return {name, parse_checkpoint_manifest(read_text(manifest), manifest.string())};
}

}  // namespace

int latest_checkpoint_step(const std::string& dir) { return latest_manifest(dir).second.step; }

int load_checkpoint(const std::string& dir, const strategies::ProgramSet& plan, Comm& comm,
                    Interpreter& state, const LoadOptions& options) {
  const fs::path root(dir);
  const auto [name, m] = latest_manifest(root);
  const fs::path ck = root / name;
  const std::string what = "--resume = " + dir + " (" + name + ")";
  const json::Json prov = strategies::provenance_to_json(plan.provenance);
  const bool same_model = json::Json(m.model_hash) == prov["model_hash"];
  // The same strategy with the same state buffers on every rank loads file for file; anything
  // else (another dp, tp, pp, ZeRO stage or world size) is resharded from the slices.
  bool same_layout = m.world_size == plan.world_size &&
                     json::Json(m.strategy_hash) == prov["strategy_hash"];
  for (int r = 0; same_layout && r < plan.world_size; ++r) {
    same_layout = m.ranks.at(static_cast<std::size_t>(r)) == rank_manifest(plan.program_of(r));
  }
  if (!same_layout && !m.has_slices) {
    throw ConfigError(
        what + ": written for strategy '" + m.strategy_name + "' on " +
        std::to_string(m.world_size) + " ranks " +
        (m.unsliced.empty() ? "before checkpoints listed their tensor slices (schema " +
                                  std::to_string(m.schema_version) + ")"
                            : "with state buffers in no bucket (" + m.unsliced.front() + ")") +
        ", so it cannot be resharded for this run's strategy '" + plan.strategy_name + "' on " +
        std::to_string(plan.world_size) + " ranks; resume with the strategy that wrote it");
  }
  std::vector<StateSlice> mine;
  std::map<std::string, std::vector<const ListedSlice*>> listed;  // the manifest's, by tensor
  if (!same_layout) {
    std::vector<std::string> unsliced;
    mine = state_slices(state, &unsliced);
    if (!unsliced.empty()) {
      throw ConfigError(what + ": this run's state buffer " + unsliced.front() +
                        " is in no bucket, so it cannot be loaded from another strategy's "
                        "checkpoint");
    }
    // A different model is named by its first tensor that differs, before the hash check.
    for (const ListedSlice& l : m.slices) listed[l.slice.tensor].push_back(&l);
    check_tensors(m, mine, listed, what);
  }
  if (!same_model && !options.force) {
    throw ConfigError(what + ": written for model '" + m.model_name + "' (model_hash " +
                      m.model_hash + "), this run's model_hash is " +
                      prov["model_hash"].get<std::string>() +
                      " (--force-resume loads it anyway when every tensor has the same shape)");
  }
  if (m.seed && *m.seed != options.seed && !options.force) {
    throw ConfigError(what + ": written by a run with --seed " +
                      std::to_string(*m.seed) + ", this run has --seed " +
                      std::to_string(options.seed) +
                      " (the data order would differ from the run it continues); use the same "
                      "seed, or --force-resume to continue with this one");
  }
  if (!same_layout) {
    load_resharded(m, ck, what, mine, listed, state);
    comm.barrier();
    return m.step;
  }
  const std::string file = rank_file(comm.rank());
  const std::string bytes = read_rank_file(m, ck, comm.rank(), what);
  const std::vector<std::int32_t> ids = state_buffers(state.program());
  std::size_t want = 0;
  for (std::int32_t id : ids) want += static_cast<std::size_t>(state.program().buffers[id].bytes());
  if (bytes.size() != want) {
    throw ConfigError(what + ": " + file + " has " + std::to_string(bytes.size()) +
                      " bytes, expected " + std::to_string(want));
  }
  const char* at = bytes.data();
  for (std::int32_t id : ids) {
    const auto n = static_cast<std::size_t>(state.program().buffers[id].bytes());
    kernels::copy_from_host(state.stream(), state.view(id).data, at, n).synchronize();
    at += n;
  }
  comm.barrier();
  return m.step;
}

}  // namespace strata::exec
