// numbers_in_child(); see child_process.hpp.
#include "cli/child_process.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "common/error.hpp"

namespace strata::cli {

namespace {

// The whole of `bytes` bytes written or read; false on an error or an early end.
template <typename Io, typename Buf>
bool transfer_all(Io io, int fd, Buf* buf, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = io(fd, buf + done, bytes - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

std::vector<double> numbers_in_child(const std::string& what,
                                     const std::function<std::vector<double>()>& f) {
  int fds[2];
  if (::pipe(fds) != 0) throw RuntimeFailure(std::string("pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw RuntimeFailure(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(fds[0]);
    int rc = 1;
    try {
      const std::vector<double> v = f();
      const std::size_t n = v.size();
      const auto* head = reinterpret_cast<const char*>(&n);
      const auto* body = reinterpret_cast<const char*>(v.data());
      rc = transfer_all(::write, fds[1], head, sizeof n) &&
                   transfer_all(::write, fds[1], body, n * sizeof(double))
               ? 0
               : 1;
    } catch (const std::exception& e) {
      std::cerr << "strata: error: " << e.what() << "\n";
    }
    ::_exit(rc);
  }
  ::close(fds[1]);
  std::size_t n = 0;
  std::vector<double> v;
  bool ok = transfer_all(::read, fds[0], reinterpret_cast<char*>(&n), sizeof n) && n < (1u << 24);
  if (ok) {
    v.resize(n);
    ok = transfer_all(::read, fds[0], reinterpret_cast<char*>(v.data()), n * sizeof(double));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw RuntimeFailure(what + " failed");
  }
  return v;
}

}  // namespace strata::cli
