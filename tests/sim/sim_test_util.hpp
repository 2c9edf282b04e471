// Test helpers for SimGrid: SimGrid allows one engine per process, so every test that builds an
// engine runs it in a forked child (in_child) and gets its results back through a pipe; and a
// driver that runs activities from maestro and reports when each one completed; routes as text.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <simgrid/s4u.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace strata::sim::testing {

// Runs `body` in a forked child process and returns the bytes it returned. The child never
// returns into GoogleTest: it writes its answer and _exit()s. When the child throws, crashes or
// is killed, the calling test fails with the reason and the result is empty.
inline std::string in_child_bytes(const std::function<std::string()>& body) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe(): " << std::strerror(errno);
    return {};
  }
  std::fflush(nullptr);  // or buffered output would be written twice
  const pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork(): " << std::strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return {};
  }
  if (pid == 0) {
    close(fds[0]);
    std::string answer;
    try {
      answer = "o" + body();
    } catch (const std::exception& e) {
      answer = std::string("e") + e.what();
    } catch (...) {
      answer = "eunknown exception";
    }
    std::size_t written = 0;
    while (written < answer.size()) {
      const ssize_t n = write(fds[1], answer.data() + written, answer.size() - written);
      if (n <= 0) break;
      written += static_cast<std::size_t>(n);
    }
    close(fds[1]);
    std::fflush(nullptr);
    _exit(written == answer.size() ? 0 : 3);
  }
  close(fds[1]);
  std::string answer;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n > 0) {
      answer.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    ADD_FAILURE() << "the simulation child died of signal " << WTERMSIG(status);
    return {};
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || answer.empty()) {
    ADD_FAILURE() << "the simulation child exited with status " << WEXITSTATUS(status);
    return {};
  }
  if (answer[0] == 'e') {
    ADD_FAILURE() << "the simulation child threw: " << answer.substr(1);
    return {};
  }
  return answer.substr(1);
}

// in_child for numeric results.
inline std::vector<double> in_child(const std::function<std::vector<double>()>& body) {
  const std::string bytes = in_child_bytes([&] {
    const std::vector<double> values = body();
    return std::string(reinterpret_cast<const char*>(values.data()),
                       values.size() * sizeof(double));
  });
  std::vector<double> values(bytes.size() / sizeof(double));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(double));
  return values;
}

// in_child for a text result (route descriptions, error messages).
inline std::string in_child_text(const std::function<std::string()>& body) {
  return in_child_bytes(body);
}

// Starts `activities` from maestro, runs the engine until nothing is left and returns the
// simulated time at which each activity completed (in the order given). Call once per process.
inline std::vector<double> run_to_completion(const std::vector<simgrid::s4u::ActivityPtr>& all) {
  static std::unordered_map<const simgrid::s4u::Activity*, std::size_t>* index = nullptr;
  static std::vector<double>* done = nullptr;
  std::unordered_map<const simgrid::s4u::Activity*, std::size_t> my_index;
  std::vector<double> my_done(all.size(), -1.0);
  for (std::size_t i = 0; i < all.size(); ++i) my_index[all[i].get()] = i;
  index = &my_index;
  done = &my_done;
  static const bool connected = [] {
    simgrid::s4u::Activity::on_completion_cb([](const simgrid::s4u::Activity& activity) {
      if (index == nullptr) return;
      const auto it = index->find(&activity);
      if (it != index->end()) (*done)[it->second] = simgrid::s4u::Engine::get_clock();
    });
    return true;
  }();
  (void)connected;
  for (const auto& activity : all) activity->start();
  simgrid::s4u::Engine::get_instance()->run();
  index = nullptr;
  done = nullptr;
  return my_done;  // `all` still holds every activity: SimGrid kept raw pointers until now
}

// "link link ... | latency" for the route from host `src` to host `dst`.
inline std::string route_text(simgrid::s4u::Host* src, simgrid::s4u::Host* dst) {
  std::vector<simgrid::s4u::Link*> links;
  double latency = 0;
  src->route_to(dst, links, &latency);
  std::string s;
  for (const simgrid::s4u::Link* l : links) s += l->get_name() + " ";
  char lat[32];
  std::snprintf(lat, sizeof lat, "| %.9g", latency);
  return s + lat;
}

// A transfer of `bytes` from host `src` to host `dst`, not started.
inline simgrid::s4u::ActivityPtr transfer(simgrid::s4u::Host* src, simgrid::s4u::Host* dst,
                                          double bytes) {
  simgrid::s4u::CommPtr comm = simgrid::s4u::Comm::sendto_init(src, dst);
  comm->set_payload_size(static_cast<std::uint64_t>(bytes));
  return comm;
}

// A computation of `flops` on `host`, not started.
inline simgrid::s4u::ActivityPtr compute(simgrid::s4u::Host* host, double flops) {
  simgrid::s4u::ExecPtr exec = simgrid::s4u::Exec::init();
  exec->set_flops_amount(flops);
  exec->set_host(host);
  return exec;
}

}  // namespace strata::sim::testing
