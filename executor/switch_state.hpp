// Hot switching (docs/executor.md "Hot switching"): the training state of a run moved, in memory,
// from this rank's Interpreter under strategy A to its Interpreter under strategy B, at a step
// boundary, without a checkpoint round-trip. The state is what a checkpoint keeps: the
// persistent parameters, the fp32 master weights and the Adam moments, as slices of the global
// tensors (checkpoint_slices.hpp).
//
// Protocol (collective over the world; every rank calls switch_state() together):
//   1. every rank all-gathers every rank's slices under A and under B (a compact binary
//      encoding, carried in floats), so every rank knows who holds what under A and who needs
//      what under B;
//   2. states map as a checkpoint's resharded load maps them: B's state from A's state of the
//      same name; master weights that no rank holds under A (fp32 without ZeRO) from A's
//      parameters. The dtypes must match (else ConfigError naming the tensor);
//   3. SOURCE RULE: each element receiver r needs under B comes from the holder h of that
//      element under A with the smallest (h - r) mod world, so from r itself when it holds it
//      (a local copy, no traffic). The simulator predicts the traffic with the same rule;
//   4. senders pack and receivers unpack in one order: the receiver's B slices in order, each
//      slice's elements in StateSlice::indices() order; one all_to_all_v over the world carries
//      every pair's bytes (each block padded to whole floats).
// An element that no rank holds under A is a ConfigError naming the tensor, state and element.
// The Interpreters may live on a device: their state buffers are staged through the host.
#pragma once

#include <cstdint>

#include "executor/comm.hpp"
#include "executor/interpreter.hpp"

namespace strata::exec {

struct SwitchStats {
  double seconds = 0;  // wall time of the switch, the slowest rank's
  // Over the network (a rank's own elements, copied locally, are not counted): the bytes every
  // rank sent, in total, and the most one rank sent.
  double bytes_sent = 0;
  double max_rank_bytes_sent = 0;
  std::int64_t elements_sent = 0;    // over the network, all ranks
  std::int64_t elements_copied = 0;  // locally (a rank's own), all ranks
};

// Moves the state of `from` (this rank under A) into `to` (this rank under B). `comm` is the
// host communicator over the world both Interpreters run on (MPI or local); every rank gets
// the same stats. ConfigError when a state buffer is in no bucket (so it has no slices), when a
// tensor's shape or dtype differs between A and B, or when an element is held by no rank.
SwitchStats switch_state(Comm& comm, const Interpreter& from, Interpreter& to);

}  // namespace strata::exec
