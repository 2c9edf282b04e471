// A standalone mutation driver for the fuzz targets, for builds without libFuzzer (GCC, the
// asan preset in CI). It runs LLVMFuzzerTestOneInput on a fixed number of inputs derived from
// seed files: half by mutating the JSON structure (a value replaced by an extreme or
// mistyped one, a key removed or added, a subtree copied or nested deeply), half by mutating
// bytes (flips, JSON tokens inserted, ranges deleted or repeated, splices of two seeds).
// Inputs the parser accepts join the pool that later inputs mutate. Deterministic per --seed.
//
//   fuzz_<parser> [--runs N] [--seed S] [--crash-dir DIR] SEED_FILE...
//
// Any exception other than ConfigError is reported, its input written to DIR/crash-<index>.json
// (replay: fuzz_<parser> --runs 0 that-file), and exits 1; so does a crash or an abort (a
// failed STRATA_CHECK), through a signal handler. A sanitizer report ends the process with the
// sanitizer's own message; the run is deterministic, so the same --seed and --runs replay it.
// Prints the inputs run.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using Json = nlohmann::json;
using Rng = std::mt19937_64;

const std::vector<std::string> kTokens = {"{",
                                          "}",
                                          "[",
                                          "]",
                                          "\"",
                                          ":",
                                          ",",
                                          "null",
                                          "true",
                                          "false",
                                          "0",
                                          "-1",
                                          "1e999",
                                          "-1e999",
                                          "1e-300",
                                          "1e300",
                                          "2147483648",
                                          "9223372036854775808",
                                          "18446744073709551616",
                                          "4.5",
                                          "\"\"",
                                          "\"\\u0000\"",
                                          "\"\\ud800\"",
                                          "[[[[[[[[[[",
                                          "]]]]]",
                                          "{\"a\":",
                                          "-0",
                                          "1e",
                                          "\xff",
                                          "\"\xc3\"",
                                          " ",
                                          "\n",
                                          "\\",
                                          "0.0000000000000000000001",
                                          "NaN",
                                          "Infinity"};

std::size_t pick(Rng& rng, std::size_t n) { return n == 0 ? 0 : rng() % n; }

Json random_value(Rng& rng, const std::vector<std::string>& strings) {
  static const std::vector<Json> kNumbers = {0,
                                             1,
                                             -1,
                                             2,
                                             3,
                                             7,
                                             8,
                                             64,
                                             1024,
                                             4096,
                                             65536,
                                             1e-300,
                                             1e300,
                                             -0.0,
                                             0.5,
                                             1e-5,
                                             1e15,
                                             4.9e-324,
                                             1.7976931348623157e308,
                                             2147483647,
                                             2147483648LL,
                                             -2147483649LL,
                                             9007199254740993LL,
                                             INT64_MIN,
                                             INT64_MAX,
                                             UINT64_MAX,
                                             1.5,
                                             -1e300,
                                             999999,
                                             1000000,
                                             16777217};
  switch (pick(rng, 9)) {
    case 0:
    case 1:
    case 2:
      return kNumbers[pick(rng, kNumbers.size())];
    case 3:
      return strings.empty() ? Json("") : Json(strings[pick(rng, strings.size())]);
    case 4:
      return pick(rng, 2) == 0;
    case 5:
      return nullptr;
    case 6:
      return pick(rng, 2) ? Json::array() : Json::object();
    case 7: {
      Json a = Json::array();
      const std::size_t n = pick(rng, 8);
      for (std::size_t i = 0; i < n; ++i) a.push_back(kNumbers[pick(rng, kNumbers.size())]);
      return a;
    }
    default:
      return std::string(pick(rng, 3) == 0 ? 5000 : pick(rng, 40), 'x');
  }
}

void collect(Json& j, std::vector<Json*>& out, std::vector<std::string>& strings, int depth) {
  out.push_back(&j);
  if (depth > 70) return;
  if (j.is_string() && strings.size() < 4096) strings.push_back(j.get<std::string>());
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (strings.size() < 4096) strings.push_back(it.key());
      collect(*it, out, strings, depth + 1);
    }
  } else if (j.is_array()) {
    for (auto& v : j) collect(v, out, strings, depth + 1);
  }
}

// Mutates the JSON structure of `text`; returns false when `text` is not JSON.
bool mutate_structure(std::string& text, Rng& rng) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return false;
  const std::size_t n = 1 + pick(rng, 3);
  for (std::size_t m = 0; m < n; ++m) {
    std::vector<Json*> nodes;
    std::vector<std::string> strings;
    collect(j, nodes, strings, 0);
    Json& target = *nodes[pick(rng, nodes.size())];
    switch (pick(rng, 6)) {
      case 0:
      case 1:
        target = random_value(rng, strings);
        break;
      case 2:  // remove a key or an element
        if (target.is_object() && !target.empty()) {
          auto it = target.begin();
          std::advance(it, pick(rng, target.size()));
          target.erase(it);
        } else if (target.is_array() && !target.empty()) {
          target.erase(target.begin() + static_cast<long>(pick(rng, target.size())));
        }
        break;
      case 3:  // add a key (known from elsewhere in the document, or new) or an element
        if (target.is_object()) {
          const std::string key = strings.empty() || pick(rng, 4) == 0
                                      ? "unknown_key"
                                      : strings[pick(rng, strings.size())];
          target[key] = random_value(rng, strings);
        } else if (target.is_array()) {
          target.push_back(random_value(rng, strings));
        }
        break;
      case 4: {  // copy another subtree here
        const Json copy = *nodes[pick(rng, nodes.size())];
        target = copy;
        break;
      }
      default: {  // nest the value a little or very deeply
        const std::size_t levels = pick(rng, 4) == 0 ? 60 + pick(rng, 10) : 1 + pick(rng, 3);
        Json v = target;
        for (std::size_t i = 0; i < levels; ++i) v = Json::array({v});
        target = v;
      }
    }
  }
  text = j.dump(pick(rng, 2) ? -1 : 1, ' ', false, Json::error_handler_t::replace);
  return true;
}

void mutate_bytes(std::string& text, Rng& rng, const std::vector<std::string>& pool) {
  const std::size_t n = 1 + pick(rng, 4);
  for (std::size_t m = 0; m < n; ++m) {
    const std::size_t at = pick(rng, text.size() + 1);
    switch (pick(rng, 7)) {
      case 0:
        if (!text.empty()) text[pick(rng, text.size())] ^= static_cast<char>(1u << pick(rng, 8));
        break;
      case 1:
      case 2:
        text.insert(at, kTokens[pick(rng, kTokens.size())]);
        break;
      case 3:
        if (at < text.size()) text.erase(at, 1 + pick(rng, 16));
        break;
      case 4:
        if (at < text.size()) text.insert(at, text.substr(at, 1 + pick(rng, 32)));
        break;
      case 5: {  // splice: a piece of another input
        const std::string& other = pool[pick(rng, pool.size())];
        const std::size_t from = pick(rng, other.size() + 1);
        text.insert(at, other.substr(from, pick(rng, 64)));
        break;
      }
      default:
        if (at < text.size()) text.resize(at);
    }
  }
}

// The input being run and where a crash writes it (read by the signal handler).
const std::string* g_input = nullptr;
char g_crash_path[4096] = {};

extern "C" void on_crash(int sig) {
  if (g_input != nullptr) {
    const int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      const ssize_t ignored = ::write(fd, g_input->data(), g_input->size());
      (void)ignored;
      ::close(fd);
    }
    const char msg[] = "fuzz: crashed; the input is in ";
    const ssize_t a = ::write(2, msg, sizeof msg - 1);
    const ssize_t b = ::write(2, g_crash_path, std::strlen(g_crash_path));
    const ssize_t c = ::write(2, "\n", 1);
    (void)a, (void)b, (void)c;
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "fuzz: cannot read " << path << "\n";
    std::exit(2);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  long long runs = 10000;
  unsigned long long seed = 1;
  std::string crash_dir = ".";
  std::vector<std::string> pool;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--runs" || a == "--seed" || a == "--crash-dir") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--runs") runs = std::stoll(v);
      if (a == "--seed") seed = std::stoull(v);
      if (a == "--crash-dir") crash_dir = v;
    } else {
      pool.push_back(read(a));
    }
  }
  if (pool.empty()) {
    std::cerr << "usage: " << argv[0] << " [--runs N] [--seed S] [--crash-dir DIR] SEED_FILE...\n";
    return 2;
  }
  const std::size_t seeds = pool.size();
  Rng rng(seed);
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_crash);
  const auto run = [&](const std::string& input, long long index) {
    const std::string saved = crash_dir + "/crash-" + std::to_string(index) + ".json";
    std::snprintf(g_crash_path, sizeof g_crash_path, "%s", saved.c_str());
    g_input = &input;
    const auto fail = [&](const std::string& what) {
      std::ofstream(saved, std::ios::binary) << input;
      std::cerr << "fuzz: input " << index << " (" << saved << ", seed " << seed << ") raised "
                << what << "\n";
      std::exit(1);
    };
    try {
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
    } catch (const std::exception& e) {
      fail(std::string("an exception other than ConfigError: ") + e.what());
    } catch (...) {
      fail("a non-std exception");
    }
    g_input = nullptr;
  };
  long long index = 0;
  for (std::size_t i = 0; i < seeds; ++i) run(pool[i], index++);
  std::size_t accepted = 0;
  for (long long r = 0; r < runs; ++r) {
    // Mostly mutate a seed; sometimes an input that an earlier mutation produced.
    std::string input = pool[pick(rng, pool.size())];
    if (pick(rng, 2) == 0 || !mutate_structure(input, rng)) mutate_bytes(input, rng, pool);
    run(input, index++);
    // Keep inputs that are still JSON as material for later mutations (a bounded pool).
    if (pool.size() < seeds + 512 && input.size() < 65536 && pick(rng, 8) == 0 &&
        !Json::parse(input, nullptr, false).is_discarded()) {
      pool.push_back(input);
      ++accepted;
    }
  }
  std::cout << "fuzz: " << index << " inputs (" << seeds << " seeds, " << runs << " mutated, seed "
            << seed << ", " << accepted
            << " kept for mutation): no crash, every failure a ConfigError\n";
  return 0;
}
