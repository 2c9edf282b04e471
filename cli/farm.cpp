// Many child simulations at once, locally or across an MPI world (cli/farm.hpp).
//
// The wire: every message is MessagePack (common/json.hpp's library). A worker says HELLO
// {cores, ranks_on_host} once and BEAT {} every second; rank 0 sends BEAT {} to every worker
// every second (from its own thread, from farm_attach to farm_detach), JOB {id, argv, inputs}
// and, at the end, STOP {}; the worker answers each job with DONE {id, exit_code, seconds,
// files}, files being {name: bytes} of what the job's folder holds after the child (the inputs
// left out).
#include "cli/farm.hpp"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/launch.hpp"
#include "cli/training.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "executor/messenger.hpp"
#include "strategies/spec.hpp"

namespace strata::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

enum Tag : int { kHello = 1, kBeat = 2, kJob = 3, kDone = 4, kStop = 5 };

constexpr double kBeatSeconds = 1.0;

// The world rank 0 coordinates (farm_attach), and whether a rank of it was lost.
std::unique_ptr<exec::Messenger>& world() {
  static std::unique_ptr<exec::Messenger> w;
  return w;
}
bool lost_a_rank = false;

// Rank 0's heartbeats to every other rank, so that they notice when it dies or hangs.
struct Beats {
  std::mutex lock;
  std::condition_variable stop_asked;
  bool stop = false;
  std::thread thread;
};
Beats& beats() {
  static Beats b;
  return b;
}

// Tests only: whether this rank (STRATA_TEST_FARM_HANG_RANK / _KILL_RANK, docs/distributed.md)
// should stop itself (SIGSTOP, as a hung process) or die (SIGKILL) now.
void test_failure_hook(int rank) {
  const std::string me = std::to_string(rank);
  const char* hang = std::getenv("STRATA_TEST_FARM_HANG_RANK");
  const char* die = std::getenv("STRATA_TEST_FARM_KILL_RANK");
  if (hang && me == hang) ::raise(SIGSTOP);
  if (die && me == die) ::raise(SIGKILL);
}

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string pack(const json::Json& j) {
  const std::vector<std::uint8_t> bytes = json::Json::to_msgpack(j);
  return std::string(bytes.begin(), bytes.end());
}

json::Json unpack(const std::string& bytes) { return json::Json::from_msgpack(bytes); }

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The job's words with "{dir}" at the start of a word replaced by `dir`.
std::vector<std::string> in_dir(const std::vector<std::string>& argv, const std::string& dir) {
  std::vector<std::string> out;
  for (const std::string& a : argv) {
    out.push_back(a.rfind("{dir}", 0) == 0 ? dir + a.substr(5) : a);
  }
  return out;
}

// Writes the inputs and the log's first line into `dir`, runs the child, times it.
FarmOutcome run_in(const std::vector<std::string>& argv,
                   const std::vector<std::pair<std::string, std::string>>& inputs,
                   const std::string& dir, bool without_launcher_env) {
  for (const auto& [name, contents] : inputs) {
    std::ofstream(fs::path(dir) / name, std::ios::binary) << contents;
  }
  const std::vector<std::string> child = in_dir(argv, dir);
  const std::string log = (fs::path(dir) / "log.txt").string();
  std::ofstream(log) << "$ " << shell_words(child) << "\n";
  FarmOutcome o;
  o.attempts = 1;
  const auto start = Clock::now();
  try {
    o.exit_code = run_logged(child, log, without_launcher_env);
  } catch (const std::exception& e) {  // not started
    std::ofstream(log, std::ios::app) << "strata: error: " << e.what() << "\n";
    o.exit_code = kExitInternal;
  }
  o.seconds = since(start);
  return o;
}

int default_slots(int cores, int ranks_on_host) {
  return std::max(1, cores / std::max(1, ranks_on_host));
}

int own_cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

struct Worker {
  bool hello = false;
  bool lost = false;
  int slots = 0;
  std::set<std::size_t> running;
  Clock::time_point last_heard;
};

}  // namespace

FarmOptions farm_options(const Args& args, const std::string& command) {
  FarmOptions o;
  o.command = command;
  o.jobs = args.get_positive_int("--jobs");
  o.rank_timeout_s = parse_positive_double(args, "--rank-timeout", o.rank_timeout_s);
  return o;
}

double simulation_cost(const strategies::ModelSpec& model,
                       const strategies::StrategySpec& strategy) {
  const double micro_batches =
      static_cast<double>(strategy.global_batch_size) /
      std::max(1, strategy.micro_batch_size * strategy.dp);
  return micro_batches * std::max(1, model.num_hidden_layers);
}

int farm_ranks() { return world() ? world()->size() : 1; }

void farm_attach(std::unique_ptr<exec::Messenger> w) {
  world() = std::move(w);
  Beats& b = beats();
  b.stop = false;
  b.thread = std::thread([net = world().get(), &b] {
    std::unique_lock<std::mutex> guard(b.lock);
    while (!b.stop) {
      for (int r = 1; r < net->size(); ++r) net->send(r, kBeat, pack(json::Json::object()));
      b.stop_asked.wait_for(guard, std::chrono::duration<double>(kBeatSeconds),
                            [&] { return b.stop; });
    }
  });
}

double farm_serve_timeout(const std::vector<std::string>& args) {
  double timeout = FarmOptions().rank_timeout_s;
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] != "--rank-timeout") continue;
    char* end = nullptr;
    const double v = std::strtod(args[i + 1].c_str(), &end);
    if (end && *end == '\0' && v > 0 && std::isfinite(v)) timeout = v;
  }
  return timeout;
}

std::vector<FarmOutcome> farm_run(const std::vector<FarmJob>& jobs, const FarmOptions& options,
                                  const FarmMayStart& may_start, const FarmDone& done) {
  exec::Messenger* const net = world().get();
  std::vector<FarmOutcome> outcomes(jobs.size());
  std::deque<std::size_t> queue;
  for (std::size_t i = 0; i < jobs.size(); ++i) queue.push_back(i);
  std::stable_sort(queue.begin(), queue.end(),
                   [&](std::size_t a, std::size_t b) { return jobs[a].cost > jobs[b].cost; });
  std::size_t finished = 0;
  std::mutex lock;
  std::condition_variable changed;
  const auto t0 = Clock::now();
  std::vector<double> started(jobs.size(), 0);  // the last attempt's hand-out, since t0

  // Takes the next job that may start, under the lock; jobs refused by may_start are finished
  // (not started). Returns false when the queue is empty.
  auto take = [&](std::size_t& i) {
    while (!queue.empty()) {
      i = queue.front();
      queue.pop_front();
      if (may_start(i)) {
        started[i] = since(t0);
        return true;
      }
      ++finished;
      done(i, outcomes[i]);
    }
    return false;
  };
  auto finish = [&](std::size_t i, const FarmOutcome& o) {  // under the lock
    const int attempts = outcomes[i].attempts;
    outcomes[i] = o;
    outcomes[i].attempts = attempts + 1;
    outcomes[i].started_s = started[i];
    ++finished;
    done(i, outcomes[i]);
    changed.notify_all();
  };

  // Under a launcher (even with one rank) the children must not see its variables.
  const bool launched = under_mpi_launcher();
  // This rank's own slots.
  const int own_slots = options.jobs.value_or(
      default_slots(own_cores(), net ? net->ranks_on_host() : 1));
  auto local = [&] {
    std::unique_lock<std::mutex> guard(lock);
    for (;;) {
      std::size_t i = 0;
      changed.wait(guard, [&] { return !queue.empty() || finished == jobs.size(); });
      if (!take(i)) {
        if (finished == jobs.size()) return;
        continue;
      }
      guard.unlock();
      FarmOutcome o = run_in(jobs[i].argv, jobs[i].inputs, jobs[i].dir, launched);
      guard.lock();
      finish(i, o);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::min<int>(own_slots, static_cast<int>(jobs.size())); ++t) {
    threads.emplace_back(local);
  }

  // The other ranks, from this thread.
  static std::map<int, Worker> workers;  // kept between runs (a search runs several)
  if (net) {
    for (int r = 1; r < net->size(); ++r) {
      Worker& w = workers[r];
      w.last_heard = Clock::now();  // silence between runs is not a loss
    }
  }
  auto lose = [&](int r, Worker& w, const std::string& why) {  // under the lock
    w.lost = true;
    lost_a_rank = true;
    std::string retried, given_up;
    for (std::size_t i : w.running) {
      if (outcomes[i].attempts + 1 >= options.max_attempts) {
        FarmOutcome o;
        o.exit_code = kExitRuntime;
        o.rank = r;
        o.lost = "its rank was lost " + std::to_string(options.max_attempts) +
                 " times (the last: rank " + std::to_string(r) + ", " + why + ")";
        finish(i, o);
        given_up += " " + std::to_string(i + 1);
      } else {
        ++outcomes[i].attempts;
        queue.push_front(i);
        retried += " " + std::to_string(i + 1);
      }
    }
    w.running.clear();
    std::cerr << "strata " << options.command << ": rank " << r << " was lost (" << why << ")"
              << (retried.empty() ? "" : "; job(s)" + retried + " go to other ranks")
              << (given_up.empty() ? "" : "; job(s)" + given_up + " given up") << std::endl;
    changed.notify_all();
  };
  while (net) {
    {
      std::lock_guard<std::mutex> guard(lock);
      if (finished == jobs.size()) break;
    }
    while (std::optional<exec::Message> m = net->poll()) {
      std::lock_guard<std::mutex> guard(lock);
      Worker& w = workers[m->source];
      if (w.lost) continue;  // a stopped rank that woke up: its jobs ran elsewhere
      w.last_heard = Clock::now();
      if (m->tag == kHello) {
        const json::Json j = unpack(m->bytes);
        w.hello = true;
        w.slots = options.jobs.value_or(
            default_slots(j.at("cores").get<int>(), j.at("ranks_on_host").get<int>()));
      } else if (m->tag == kDone) {
        const json::Json j = unpack(m->bytes);
        const std::size_t i = j.at("id").get<std::size_t>();
        if (w.running.erase(i) == 0) continue;
        for (const auto& [name, bytes] : j.at("files").items()) {
          const auto& b = bytes.get_binary();
          std::ofstream(fs::path(jobs[i].dir) / name, std::ios::binary)
              .write(reinterpret_cast<const char*>(b.data()),
                     static_cast<std::streamsize>(b.size()));
        }
        FarmOutcome o;
        o.exit_code = j.at("exit_code").get<int>();
        o.seconds = j.at("seconds").get<double>();
        o.rank = m->source;
        finish(i, o);
      }
    }
    {
      std::lock_guard<std::mutex> guard(lock);
      for (auto& [r, w] : workers) {
        if (w.lost) continue;
        if (since(w.last_heard) > options.rank_timeout_s) {
          char why[96];
          std::snprintf(why, sizeof why, "no message for %g s: it died or hangs",
                        options.rank_timeout_s);
          lose(r, w, why);
          continue;
        }
        std::size_t i = 0;
        while (w.hello && static_cast<int>(w.running.size()) < w.slots && take(i)) {
          json::Json inputs = json::Json::object();
          for (const auto& [name, contents] : jobs[i].inputs) inputs[name] = contents;
          net->send(r, kJob, pack({{"id", i}, {"argv", jobs[i].argv}, {"inputs", inputs}}));
          w.running.insert(i);
          test_failure_hook(0);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  {
    std::lock_guard<std::mutex> guard(lock);
    changed.notify_all();
  }
  for (std::thread& t : threads) t.join();
  return outcomes;
}

void farm_detach(int code) {
  exec::Messenger* const net = world().get();
  if (!net) return;
  Beats& b = beats();
  {
    std::lock_guard<std::mutex> guard(b.lock);
    b.stop = true;
  }
  b.stop_asked.notify_all();
  if (b.thread.joinable()) b.thread.join();
  for (int r = 1; r < net->size(); ++r) net->send(r, kStop, pack(json::Json::object()));
  if (lost_a_rank) {
    std::cerr << "strata: a rank was lost, so the world ends here (MPI_Abort with the exit code "
                 "of rank 0, "
              << code << "); the results above are complete" << std::endl;
    net->abort(code);
  }
  // The stops must leave before MPI_Finalize (at exit).
  const auto start = Clock::now();
  while (net->pending_sends() > 0 && since(start) < 30) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int farm_serve(std::unique_ptr<exec::Messenger> net, double rank0_timeout_s) {
  net->send(0, kHello, pack({{"cores", own_cores()}, {"ranks_on_host", net->ranks_on_host()}}));
  struct Running {
    std::thread thread;
    bool finished = false;
    std::string reply;
  };
  std::map<std::size_t, Running> running;
  std::mutex lock;
  bool stopping = false;
  auto beat = Clock::now();
  auto heard_from_0 = Clock::now();
  while (!stopping || !running.empty()) {
    while (std::optional<exec::Message> m = net->poll()) {
      if (m->source == 0) heard_from_0 = Clock::now();
      if (m->tag == kStop) stopping = true;
      if (m->tag != kJob) continue;
      // Tests: this rank stops or dies at its first job (rank 0's handling of a lost rank).
      test_failure_hook(net->rank());
      json::Json j = unpack(m->bytes);
      const std::size_t id = j.at("id").get<std::size_t>();
      std::lock_guard<std::mutex> guard(lock);
      Running& r = running[id];
      r.thread = std::thread([&, id, j = std::move(j)] {
        json::Json files = json::Json::object();
        FarmOutcome o;
        std::vector<std::pair<std::string, std::string>> inputs;
        for (const auto& [name, text] : j.at("inputs").items()) {
          inputs.emplace_back(name, text.get<std::string>());
        }
        const char* tmp = std::getenv("TMPDIR");
        const std::string templ =
            (tmp && *tmp ? std::string(tmp) : std::string("/tmp")) + "/strata-farm-XXXXXX";
        std::vector<char> buf(templ.begin(), templ.end());
        buf.push_back('\0');
        if (::mkdtemp(buf.data()) == nullptr) {
          const std::string why = "strata: error: cannot make a folder " + templ + ": " +
                                  std::strerror(errno) + "\n";
          o.exit_code = kExitInternal;
          files["log.txt"] = json::Json::binary(std::vector<std::uint8_t>(why.begin(), why.end()));
        } else {
          const std::string dir = buf.data();
          o = run_in(j.at("argv").get<std::vector<std::string>>(), inputs, dir, true);
          for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
            const std::string name = e.path().filename().string();
            const bool input = std::any_of(inputs.begin(), inputs.end(),
                                           [&](const auto& p) { return p.first == name; });
            if (!e.is_regular_file() || input) continue;
            const std::string bytes = read_bytes(e.path());
            files[name] =
                json::Json::binary(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
          }
          std::error_code ec;
          fs::remove_all(dir, ec);
        }
        std::string reply = pack({{"id", id}, {"exit_code", o.exit_code},
                                  {"seconds", o.seconds}, {"files", files}});
        std::lock_guard<std::mutex> g(lock);
        running[id].reply = std::move(reply);
        running[id].finished = true;
      });
    }
    {
      std::lock_guard<std::mutex> guard(lock);
      for (auto it = running.begin(); it != running.end();) {
        if (!it->second.finished) {
          ++it;
          continue;
        }
        it->second.thread.join();
        net->send(0, kDone, std::move(it->second.reply));
        it = running.erase(it);
      }
    }
    if (since(beat) >= kBeatSeconds) {
      net->send(0, kBeat, pack(json::Json::object()));
      beat = Clock::now();
    }
    if (!stopping && since(heard_from_0) > rank0_timeout_s) {
      // Nobody would collect this rank's results, and MPI_Finalize would wait for rank 0
      // forever: end the world (the children still running get SIGTERM as this process dies).
      std::fprintf(stderr,
                   "strata: rank %d: rank 0 sent nothing for %g s (--rank-timeout): it died or "
                   "hangs, so this rank ends the world (MPI_Abort with %d)\n",
                   net->rank(), rank0_timeout_s, kExitRuntime);
      std::fflush(stderr);
      net->abort(kExitRuntime);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto start = Clock::now();
  while (net->pending_sends() > 0 && since(start) < 30) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return kExitOk;
}

std::string farm_timing_csv(const std::vector<std::string>& labels,
                            const std::vector<FarmOutcome>& outcomes) {
  std::string out = "job,rank,attempts,started_s,seconds,lost\n";
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const FarmOutcome& o = outcomes[i];
    const bool ran = o.exit_code != -1;
    out += csv_field(labels[i]) + "," + (ran ? std::to_string(o.rank) : "") + "," +
           std::to_string(o.attempts) + "," + (ran ? shortest_number(o.started_s) : "") + "," +
           (ran ? shortest_number(o.seconds) : "") + "," + csv_field(o.lost) + "\n";
  }
  return out;
}

}  // namespace strata::cli
