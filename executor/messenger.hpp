// Byte messages between the ranks of the MPI world, for coordinating work rather than training:
// the command line's distributed sweeps and searches (cli/farm.hpp) hand out points and collect
// their files with it. Sends never block (each completes in the background; messages to one
// peer with one tag arrive in the order sent); receiving is a poll, so one thread can watch
// every peer and a clock at once (a peer that stopped answering is noticed, not waited on).
// Calls may come from several threads: the messenger takes them one at a time.
#pragma once

#include <memory>
#include <optional>
#include <string>

namespace strata::exec {

struct Message {
  int source = -1;
  int tag = 0;
  std::string bytes;
};

class Messenger {
 public:
  virtual ~Messenger() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The number of ranks on this rank's host (MPI_COMM_TYPE_SHARED), to share its cores.
  virtual int ranks_on_host() const = 0;
  virtual void send(int peer, int tag, std::string bytes) = 0;
  // The next message from any rank with any tag, or nothing when none has arrived.
  virtual std::optional<Message> poll() = 0;
  // Sends that have not completed yet (a dead or stopped peer's may never complete).
  virtual int pending_sends() = 0;
  // Ends the whole world now (MPI_Abort): the way out when a rank is lost or hangs, since
  // MPI_Finalize would wait for it. Never returns.
  [[noreturn]] virtual void abort(int code) = 0;
};

// The MPI world (MPI_Init on first use, MPI_Finalize at exit, as make_mpi_comm). Throws
// std::runtime_error when built without MPI.
std::unique_ptr<Messenger> make_mpi_messenger();

}  // namespace strata::exec
