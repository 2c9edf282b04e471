// The fixture of the command-line tests: a temporary folder per test, and the `strata`
// executable run as a child (shell syntax) with its exit code, stdout and stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace strata::testing {

struct Result {
  int exit_code = -1;
  std::string out, err;
};

// The rows of a CSV text (the header first), cells unquoted ("" inside quotes is one ").
inline std::vector<std::vector<std::string>> read_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> row(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        row.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = !quoted;
      } else if (c == ',' && !quoted) {
        row.emplace_back();
      } else {
        row.back() += c;
      }
    }
    rows.push_back(row);
  }
  return rows;
}

class StrataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("strata-" + std::string(info->test_suite_name()) + "-" + std::to_string(::getpid()) +
            "-" + info->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // `env strata args` (shell syntax; env may be empty), stdin from /dev/null, bounded by
  // `timeout` so that a hang fails; from within dir_ when `in_dir` (relative paths are dir_'s).
  Result run(const std::string& args, const std::string& env = "", bool in_dir = false) const {
    const std::filesystem::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string cmd = (in_dir ? "cd " + dir_.string() + " && " : std::string()) + env +
                            " timeout 600 " + std::string(STRATA_EXE) + " " + args + " >" +
                            out.string() + " 2>" + err.string() + " </dev/null";
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(out), read(err)};
  }
  // The `strata simulate` processes whose command lines name this test's folder, one per line
  // (pgrep -a), "" when there are none.
  std::string simulations_running() const {
    // ("[s]imulate": the shell that runs pgrep, whose command line holds the pattern, does
    // not match it.)
    FILE* pgrep = ::popen(("pgrep -f -a '[s]imulate .*" + dir_.string() + "'").c_str(), "r");
    if (pgrep == nullptr) return "(pgrep did not start)";
    std::string out;
    char line[4096];
    while (std::fgets(line, sizeof line, pgrep) != nullptr) out += line;
    ::pclose(pgrep);
    return out;
  }
  // Polls simulations_running() every 0.1 s for up to `seconds` until it is empty (`empty`) or
  // not; returns its last answer.
  std::string wait_for_simulations(bool empty, double seconds) const {
    std::string now;
    for (int i = 0; i < static_cast<int>(seconds * 10) + 1; ++i) {
      now = simulations_running();
      if (now.empty() == empty) break;
      ::usleep(100000);
    }
    return now;
  }
  static std::string read(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // Writes `content` to dir_/name; returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    const std::filesystem::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // A file of the bundled configs/ ("strategies/tiny-dp2.json").
  static std::string config(const std::string& rel) {
    return std::string(STRATA_SOURCE_DIR) + "/configs/" + rel;
  }

  std::filesystem::path dir_;
};

}  // namespace strata::testing
