// Atomic, per-rank checkpoints; see checkpoint.hpp for the layout and the protocol.
#include "executor/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

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

}  // namespace

void save_checkpoint(const std::string& dir, int step, const strategies::ProgramSet& plan,
                     Comm& comm, Interpreter& state) {
  const fs::path root(dir), tmp = root / (step_name(step) + ".tmp"), final = root / step_name(step);
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
    blob.append(static_cast<const char*>(v.data),
                static_cast<std::size_t>(state.program().buffers[id].bytes()));
  }
  write_synced(tmp / rank_file(comm.rank()), blob.data(), blob.size());
  // Fault injection for the tests: die after this rank's file, before the checkpoint is
  // published (STRATA_TEST_KILL_IN_SAVE=STEP).
  if (const char* k = std::getenv("STRATA_TEST_KILL_IN_SAVE")) {
    if (std::atoi(k) == step && comm.rank() == 0) std::raise(SIGKILL);
  }

  // The manifest lists every rank's state buffers, read on rank 0 from the same Plan.
  comm.barrier();
  if (comm.rank() == 0) {
    json::Json ranks = json::Json::array();
    for (int r = 0; r < comm.size(); ++r) ranks.push_back(rank_manifest(plan.program_of(r)));
    const json::Json manifest = {{"schema_version", 1},
                                 {"kind", "strata.checkpoint"},
                                 {"step", step},
                                 {"model", plan.model_name},
                                 {"strategy", plan.strategy_name},
                                 {"world_size", plan.world_size},
                                 {"provenance", strategies::provenance_to_json(plan.provenance)},
                                 {"ranks", ranks}};
    const std::string text = manifest.dump(2) + "\n";
    write_synced(tmp / "manifest.json", text.data(), text.size());
    sync_dir(tmp);
    std::error_code ec;
    fs::remove_all(final, ec);
    fs::rename(tmp, final, ec);
    if (ec) throw ConfigError("--save = " + dir + ": cannot publish " + final.string());
    const std::string latest = step_name(step) + "\n";
    write_synced(root / "latest.tmp", latest.data(), latest.size());
    fs::rename(root / "latest.tmp", root / "latest", ec);
    if (ec) throw ConfigError("--save = " + dir + ": cannot update " + (root / "latest").string());
    sync_dir(root);
  }
  comm.barrier();
}

int load_checkpoint(const std::string& dir, const strategies::ProgramSet& plan, Comm& comm,
                    Interpreter& state) {
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
  for (const char* key : {"model_hash", "strategy_hash"}) {
    const std::string& written = std::string(key) == "model_hash" ? m.model_hash : m.strategy_hash;
    if (json::Json(written) != prov[key]) {
      throw ConfigError(what + ": written for model '" + m.model_name + "' and strategy '" +
                        m.strategy_name + "' (" + key + " " + written + "), this run's " + key +
                        " is " +
                        prov[key].get<std::string>() +
                        "; resuming under another strategy is not supported yet");
    }
  }
  const std::string bytes = read_text(ck / rank_file(comm.rank()));
  const std::vector<std::int32_t> ids = state_buffers(state.program());
  std::size_t want = 0;
  for (std::int32_t id : ids) want += static_cast<std::size_t>(state.program().buffers[id].bytes());
  if (bytes.size() != want) {
    throw ConfigError(what + ": " + rank_file(comm.rank()) + " has " +
                      std::to_string(bytes.size()) + " bytes, expected " + std::to_string(want));
  }
  const char* at = bytes.data();
  for (std::int32_t id : ids) {
    const auto n = static_cast<std::size_t>(state.program().buffers[id].bytes());
    std::memcpy(state.view(id).data, at, n);
    at += n;
  }
  comm.barrier();
  return m.step;
}

}  // namespace strata::exec
