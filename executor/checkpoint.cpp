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

#include "common/error.hpp"
#include "common/json.hpp"
#include "executor/checkpoint_manifest.hpp"
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
  for (std::int32_t id : state_buffers(state.program())) {
    const TensorView v = state.view(id);
    const auto n = static_cast<std::size_t>(state.program().buffers[id].bytes());
    const std::size_t at = blob.size();
    blob.resize(at + n);
    kernels::copy_to_host(state.stream(), blob.data() + at, v.data, n).synchronize();
  }
  write_synced(tmp / rank_file(comm.rank()), blob.data(), blob.size());
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
    const json::Json manifest = {{"schema_version", 2},
                                 {"kind", "strata.checkpoint"},
                                 {"step", step},
                                 {"model", plan.model_name},
                                 {"strategy", plan.strategy_name},
                                 {"seed", options.seed},
                                 {"world_size", plan.world_size},
                                 {"provenance", strategies::provenance_to_json(plan.provenance)},
                                 {"ranks", ranks},
                                 {"files", files}};
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

int load_checkpoint(const std::string& dir, const strategies::ProgramSet& plan, Comm& comm,
                    Interpreter& state, const LoadOptions& options) {
  const fs::path root(dir);
  std::string name = read_text(root / "latest");
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  const fs::path ck = root / name;
  const CheckpointManifest m =
      parse_checkpoint_manifest(read_text(ck / "manifest.json"), (ck / "manifest.json").string());
  const std::string what = "--resume = " + dir + " (" + name + ")";
  const json::Json prov = strategies::provenance_to_json(plan.provenance);
  if (m.world_size != plan.world_size) {
    throw ConfigError(what + ": written by " + std::to_string(m.world_size) +
                      " ranks, this run has " + std::to_string(plan.world_size) +
                      "; resume with the strategy that wrote it");
  }
  bool specs_differ = false;
  for (const char* key : {"model_hash", "strategy_hash"}) {
    const std::string& written = std::string(key) == "model_hash" ? m.model_hash : m.strategy_hash;
    if (json::Json(written) == prov[key]) continue;
    specs_differ = true;
    if (!options.force) {
      throw ConfigError(what + ": written for model '" + m.model_name + "' and strategy '" +
                        m.strategy_name + "' (" + key + " " + written + "), this run's " + key +
                        " is " + prov[key].get<std::string>() +
                        "; resuming under another strategy is not supported yet (--force-resume "
                        "loads it anyway when every rank's state has the same layout)");
    }
  }
  // Forced: the state must still fit buffer for buffer.
  if (specs_differ) {
    for (int r = 0; r < plan.world_size; ++r) {
      if (m.ranks.at(static_cast<std::size_t>(r)) != rank_manifest(plan.program_of(r))) {
        throw ConfigError(what + ": rank " + std::to_string(r) +
                          "'s state buffers (names and sizes) differ from this run's, so it "
                          "cannot be loaded even with --force-resume");
      }
    }
  }
  if (m.seed && *m.seed != options.seed && !options.force) {
    throw ConfigError(what + ": written by a run with --seed " +
                      std::to_string(*m.seed) + ", this run has --seed " +
                      std::to_string(options.seed) +
                      " (the data order would differ from the run it continues); use the same "
                      "seed, or --force-resume to continue with this one");
  }
  const std::string file = rank_file(comm.rank());
  const std::string bytes = read_text(ck / file);
  const std::vector<std::int32_t> ids = state_buffers(state.program());
  std::size_t want = 0;
  for (std::int32_t id : ids) want += static_cast<std::size_t>(state.program().buffers[id].bytes());
  if (bytes.size() != want) {
    throw ConfigError(what + ": " + file + " has " + std::to_string(bytes.size()) +
                      " bytes, expected " + std::to_string(want));
  }
  // Schema 1 checkpoints (before checksums) have no "files".
  if (!m.files.empty()) {
    const CheckpointFile& entry = m.files.at(static_cast<std::size_t>(comm.rank()));
    const std::string& expected = entry.fnv1a64;
    const std::string actual = hex64(fnv1a64(bytes.data(), bytes.size()));
    if (entry.name != file || actual != expected) {
      throw ConfigError(what + ": " + (ck / file).string() + " is corrupt: its FNV-1a 64 checksum "
                        "is " + actual + ", the manifest's is " + expected +
                        "; resume from an earlier checkpoint");
    }
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
