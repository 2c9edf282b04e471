// A rendezvous for a few small values through a directory every rank can read (one machine's
// /tmp, or a shared file system): the NCCL backend's bootstrap where there is no MPI to
// broadcast its unique id (comm_nccl.cpp). One rank sets a key, the others get it.
//
// set() writes the value to a temporary file in the directory and renames it onto the key's
// file, so a reader sees either no file or the whole value, never a partial one. get() polls
// for the file until the store's timeout and then throws CommTimeout naming the path. A file
// that is not a store value (a stray or truncated file) is an error naming the path and what is
// wrong with it.
//
// Keys are not scoped to a run: use a fresh directory per run (or a key that names the run),
// or a reader may take a value an earlier run left there.
#pragma once

#include <string>

namespace strata::exec {

class FileStore {
 public:
  // `dir` must exist (it is not created: a typo would otherwise make a rendezvous nobody else
  // joins); `timeout_s` bounds each get(), 0 waits forever. Throws std::invalid_argument for a
  // missing directory or a negative timeout.
  FileStore(std::string dir, double timeout_s);

  // The file that holds `key`: <dir>/<key>. Keys are [A-Za-z0-9._-]+ and do not start with '.'
  // (std::invalid_argument otherwise).
  std::string path(const std::string& key) const;

  // Writes `value` (any bytes) under `key`, replacing an earlier value atomically.
  // Throws std::runtime_error naming the path and the system's error when it cannot.
  void set(const std::string& key, const std::string& value) const;

  // The value under `key`, waiting for it to appear. Throws CommTimeout (comm.hpp) after the
  // timeout and std::runtime_error for a file that is not a store value.
  std::string get(const std::string& key) const;

 private:
  std::string dir_;
  double timeout_s_;
};

}  // namespace strata::exec
