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
#include "strategies/plan_json.hpp"

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
  std::ifstream in(p, std::ios::binary);
  if (!in) throw ConfigError("--resume: cannot read " + p.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

json::Json rank_manifest(RankParams& params) {
  json::Json list = json::Json::array();
  for (Param* p : params.all()) list.push_back({{"name", p->name}, {"floats", p->size()}});
  return list;
}

}  // namespace

void save_checkpoint(const std::string& dir, int step, const strategies::Plan& plan, Comm& comm,
                     RankParams& params) {
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

  std::vector<float> blob;
  for (Param* p : params.all()) {
    blob.insert(blob.end(), p->value.begin(), p->value.end());
    blob.insert(blob.end(), p->adam_m.begin(), p->adam_m.end());
    blob.insert(blob.end(), p->adam_v.begin(), p->adam_v.end());
  }
  write_synced(tmp / rank_file(comm.rank()), blob.data(), blob.size() * sizeof(float));
  // Fault injection for the tests: die after this rank's file, before the checkpoint is
  // published (STRATA_TEST_KILL_IN_SAVE=STEP).
  if (const char* k = std::getenv("STRATA_TEST_KILL_IN_SAVE")) {
    if (std::atoi(k) == step && comm.rank() == 0) std::raise(SIGKILL);
  }

  // The manifest lists every rank's parameters; rank r's list is derived on rank 0 from the
  // same Plan (every rank builds its RankParams the same way).
  comm.barrier();
  if (comm.rank() == 0) {
    json::Json ranks = json::Json::array();
    for (int r = 0; r < comm.size(); ++r) {
      RankParams shape(plan, r, 0);
      ranks.push_back(rank_manifest(shape));
    }
    const json::Json manifest = {{"schema_version", 1},
                                 {"kind", "strata.checkpoint"},
                                 {"step", step},
                                 {"model", plan.model.name},
                                 {"strategy", plan.strategy.name},
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

int load_checkpoint(const std::string& dir, const strategies::Plan& plan, Comm& comm,
                    RankParams& params) {
  const fs::path root(dir);
  std::string name = read_text(root / "latest");
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  const fs::path ck = root / name;
  const json::Json m = json::Json::parse(read_text(ck / "manifest.json"));
  const std::string what = "--resume = " + dir + " (" + name + ")";
  const json::Json prov = strategies::provenance_to_json(plan.provenance);
  if (m.value("kind", "") != "strata.checkpoint") {
    throw ConfigError(what + ": manifest.json is not a Strata checkpoint");
  }
  if (m["world_size"].get<int>() != plan.world_size) {
    throw ConfigError(what + ": written by " + std::to_string(m["world_size"].get<int>()) +
                      " ranks, this run has " + std::to_string(plan.world_size) +
                      "; resume with the strategy that wrote it");
  }
  for (const char* key : {"model_hash", "strategy_hash"}) {
    if (m["provenance"][key] != prov[key]) {
      throw ConfigError(what + ": written for model '" + m["model"].get<std::string>() +
                        "' and strategy '" + m["strategy"].get<std::string>() + "' (" + key +
                        " " + m["provenance"][key].get<std::string>() + "), this run's " + key +
                        " is " + prov[key].get<std::string>() +
                        "; resuming under another strategy is not supported yet");
    }
  }
  const std::string bytes = read_text(ck / rank_file(comm.rank()));
  std::size_t want = 0;
  for (Param* p : params.all()) want += 3 * p->size();
  if (bytes.size() != want * sizeof(float)) {
    throw ConfigError(what + ": " + rank_file(comm.rank()) + " has " +
                      std::to_string(bytes.size()) + " bytes, expected " +
                      std::to_string(want * sizeof(float)));
  }
  const char* at = bytes.data();
  auto take = [&](std::vector<float>& v) {
    std::memcpy(v.data(), at, v.size() * sizeof(float));
    at += v.size() * sizeof(float);
  };
  for (Param* p : params.all()) {
    take(p->value);
    take(p->adam_m);
    take(p->adam_v);
    std::fill(p->grad.begin(), p->grad.end(), 0.0f);
  }
  comm.barrier();
  return m["step"].get<int>();
}

}  // namespace strata::exec
