// Starting and waiting for child processes (cli/launch.hpp).
#include "cli/launch.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#include "common/error.hpp"

#ifndef STRATA_MPIEXEC
#define STRATA_MPIEXEC "mpirun"
#endif

namespace strata::cli {

bool under_mpi_launcher() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_SIZE") != nullptr;
}

std::string self_executable() {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec)
    throw ConfigError("cannot find the strata executable (/proc/self/exe: " + ec.message() + ")");
  return p.string();
}

std::vector<std::string> mpi_launcher(int ranks, const std::optional<std::string>& custom) {
  std::vector<std::string> words;
  if (custom) {
    std::istringstream in(*custom);
    for (std::string w; in >> w;) words.push_back(w);
    if (words.empty()) throw ConfigError("--mpirun = '" + *custom + "': an empty command");
    return words;
  }
  const std::string found = STRATA_MPIEXEC;
  words.push_back(std::filesystem::exists(found) ? found : "mpirun");
  if (::geteuid() == 0) words.push_back("--allow-run-as-root");
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores > 0 && static_cast<unsigned>(ranks) > cores) words.push_back("--oversubscribe");
  words.insert(words.end(), {"-np", std::to_string(ranks)});
  return words;
}

int run_logged(const std::vector<std::string>& argv, const std::string& log,
               bool without_launcher_env) {
  if (argv.empty()) throw ConfigError("run_logged: no command");
  // The environment is copied before fork: the child of a threaded process may only call
  // async-signal-safe functions, not setenv.
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view v(*e);
    if (without_launcher_env && (v.rfind("OMPI_", 0) == 0 || v.rfind("PMIX_", 0) == 0 ||
                                 v.rfind("PMI_", 0) == 0)) {
      continue;
    }
    env.push_back(*e);
  }
  env.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw ConfigError("cannot write " + log + ": " + std::strerror(errno));
  // The child reports a failed exec through this pipe (closed on a successful exec).
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(fd);
    throw ConfigError(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    ::close(report[0]);
    ::close(report[1]);
    throw ConfigError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // The child ends with the thread that started it (which waits for it below): when this
    // process dies (a sweep's rank ending the world, a killed command) the child gets SIGTERM
    // instead of running on unseen; and if it died before this line, the child stops now.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(128 + SIGTERM);
    ::close(report[0]);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execvpe(args[0], args.data(), env.data());
    const int err = errno;
    [[maybe_unused]] const ssize_t n = ::write(report[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(fd);
  ::close(report[1]);
  int exec_errno = 0;
  const ssize_t got = ::read(report[0], &exec_errno, sizeof exec_errno);
  ::close(report[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    throw ConfigError("cannot start '" + argv[0] + "': " + std::strerror(exec_errno));
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 70;
}

std::string child_message(const std::string& log, const std::string& command) {
  std::ifstream in(log);
  std::string last;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) last = line;
  }
  const std::string name = "strata " + command + ": ";
  for (const std::string& prefix : {name + "error: ", name}) {
    if (last.rfind(prefix, 0) == 0) return last.substr(prefix.size());
  }
  return last;
}

std::string tail_of(const std::string& file, int lines) {
  std::ifstream in(file);
  std::deque<std::string> last;
  for (std::string line; std::getline(in, line);) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::string out;
  for (const std::string& l : last) out += "  | " + l + "\n";
  return out;
}

std::string shell_words(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && a.find_first_of(" \t'\"$\\;&|<>*?()") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

}  // namespace strata::cli
