// The file store of file_store.hpp. A value's file is a header line, "strata-store 1 <bytes>\n",
// then the bytes: a reader can tell a store value from a stray file and a complete value from a
// truncated one.
#include "executor/file_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "executor/comm.hpp"

namespace strata::exec {
namespace {

constexpr const char* kMagic = "strata-store 1 ";

std::string seconds_text(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

// Reads the whole file, or returns false when it does not exist (yet).
bool read_file(const std::string& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  contents->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

std::string parse_value(const std::string& path, const std::string& contents) {
  const std::string magic = kMagic;
  const std::size_t newline = contents.find('\n');
  if (contents.compare(0, magic.size(), magic) != 0 || newline == std::string::npos) {
    throw std::runtime_error("file store: " + path + " is not a store value (it does not start " +
                             "with the header line \"" + magic +
                             "<bytes>\"); remove it or use a fresh directory");
  }
  const std::string count = contents.substr(magic.size(), newline - magic.size());
  std::size_t bytes = 0;
  std::size_t used = 0;
  try {
    bytes = std::stoull(count, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != count.size()) {
    throw std::runtime_error("file store: " + path + " has a malformed header (size \"" + count +
                             "\" is not a number)");
  }
  const std::size_t held = contents.size() - newline - 1;
  if (held != bytes) {
    throw std::runtime_error("file store: " + path + " is truncated or overlong: its header says " +
                             std::to_string(bytes) + " bytes, it holds " + std::to_string(held));
  }
  return contents.substr(newline + 1);
}

}  // namespace

FileStore::FileStore(std::string dir, double timeout_s)
    : dir_(std::move(dir)), timeout_s_(timeout_s) {
  if (!(timeout_s >= 0)) {
    throw std::invalid_argument("file store: timeout_s = " + std::to_string(timeout_s) +
                                " must be >= 0 (0 waits forever)");
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir_, ec)) {
    throw std::invalid_argument("file store: directory " + dir_ +
                                " does not exist (every rank must see the same directory)");
  }
}

std::string FileStore::path(const std::string& key) const {
  bool ok = !key.empty() && key[0] != '.';
  for (char c : key) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    throw std::invalid_argument("file store: key \"" + key +
                                "\" must be [A-Za-z0-9._-]+ and not start with '.'");
  }
  return dir_ + "/" + key;
}

void FileStore::set(const std::string& key, const std::string& value) const {
  const std::string final_path = path(key);
  // A name no other writer uses (pid and a per-process counter), hidden from keys by its dot.
  static std::atomic<int> counter{0};
  const std::string tmp = dir_ + "/." + key + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(counter.fetch_add(1));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kMagic << value.size() << '\n';
    out.write(value.data(), static_cast<std::streamsize>(value.size()));
    out.close();
    if (!out) {
      const int err = errno;
      std::remove(tmp.c_str());
      throw std::runtime_error("file store: cannot write " + tmp + ": " + std::strerror(err));
    }
  }
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw std::runtime_error("file store: cannot rename " + tmp + " to " + final_path + ": " +
                             std::strerror(err));
  }
}

std::string FileStore::get(const std::string& key) const {
  const std::string file = path(key);
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    std::string contents;
    if (read_file(file, &contents)) return parse_value(file, contents);
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timeout_s_ > 0 && waited >= timeout_s_) {
      throw CommTimeout("file store: " + file + " did not appear within " +
                        seconds_text(timeout_s_) +
                        " (the rank that sets it has not run, failed, or uses another directory)");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace strata::exec
