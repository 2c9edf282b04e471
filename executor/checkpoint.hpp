// Checkpoints of a training run: every rank's parameter shards and AdamW moments after a step,
// written so that a crash at any moment leaves the last complete checkpoint intact, and read
// back so that a resumed run continues with exactly the losses of an uninterrupted one.
//
// Layout of a checkpoint directory DIR:
//   DIR/latest                  the name of the newest complete checkpoint ("step-000010")
//   DIR/step-000010/manifest.json  step, model/strategy names and hashes, world size, and per
//                                  rank its state buffers (name, bytes) in file order
//   DIR/step-000010/rank-00003.bin  rank 3's state: the persistent parameter and optimizer
//                                  buffers of its program (each bucket's parameters or ZeRO
//                                  part, fp32 master weights, Adam moments), in table order
// A checkpoint is written into step-NNNNNN.tmp/ and renamed when every rank has written and
// synced its file; `latest` is replaced by rename after that. Readers ignore *.tmp.
// Collective over the world: every rank calls save()/load() together.
#pragma once

#include <string>

#include "executor/comm.hpp"
#include "executor/interpreter.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

// Writes the state after `step` steps. ConfigError if DIR cannot be created or written.
void save_checkpoint(const std::string& dir, int step, const strategies::ProgramSet& plan,
                     Comm& comm, Interpreter& state);

// Loads DIR's latest checkpoint into `params` and returns its step. ConfigError naming the
// checkpoint and the mismatch if it was written for another model, strategy or world size, or
// if it is missing or truncated.
int load_checkpoint(const std::string& dir, const strategies::ProgramSet& plan, Comm& comm,
                    Interpreter& state);

}  // namespace strata::exec
