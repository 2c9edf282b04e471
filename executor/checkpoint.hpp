// Checkpoints of a training run: every rank's parameter shards and AdamW moments after a step,
// written so that a crash at any moment leaves the last complete checkpoint intact, and read
// back so that a resumed run continues with exactly the losses of an uninterrupted one.
//
// Layout of a checkpoint directory DIR:
//   DIR/latest                  the name of the newest complete checkpoint ("step-000010")
//   DIR/step-000010/manifest.json  step, model/strategy names and hashes, seed, world size, per
//                                  rank its state buffers (name, bytes) in file order, and per
//                                  rank file its size and FNV-1a 64 checksum ("files")
//   DIR/step-000010/rank-00003.bin  rank 3's state: the persistent parameter and optimizer
//                                  buffers of its program (each bucket's parameters or ZeRO
//                                  part, fp32 master weights, Adam moments), in table order
// A checkpoint is written into step-NNNNNN.tmp/ and renamed when every rank has written and
// synced its file; `latest` is replaced by rename after that. Readers ignore *.tmp.
// A loaded rank file must have its manifest's size and checksum (a flipped byte is an error
// naming the file). Collective over the world: every rank calls save()/load() together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "executor/comm.hpp"
#include "executor/interpreter.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

// FNV-1a, 64 bits, of `bytes` bytes (the checksum of checkpoint files).
std::uint64_t fnv1a64(const void* data, std::size_t bytes);

// "step-000010": the directory name of step 10's checkpoint.
std::string checkpoint_name(int step);

struct SaveOptions {
  std::uint64_t seed = 0;  // the run's seed, recorded for the resume's check
  // 0 keeps every checkpoint; N > 0 keeps, of the published checkpoints at or below this step,
  // the N newest and removes the older ones (later steps, from an earlier longer run, stay).
  int keep_last = 0;
  // Written as "step-NNNNNN<suffix>" and not published as `latest` when false (the state after
  // a step whose loss was not finite, kept for inspection; resume never picks it).
  bool publish = true;
  std::string suffix;
};

// Writes the state after `step` steps; returns the checkpoint's directory. ConfigError if DIR
// cannot be created or written.
std::string save_checkpoint(const std::string& dir, int step, const strategies::ProgramSet& plan,
                            Comm& comm, Interpreter& state, const SaveOptions& options = {});

struct LoadOptions {
  std::uint64_t seed = 0;  // the resuming run's seed
  // Resume a checkpoint written with another seed, or for a model or strategy whose specs
  // differ (their hashes), as long as every rank's state buffers are the same (names, sizes).
  bool force = false;
};

// Loads DIR's latest checkpoint into `params` and returns its step. ConfigError naming the
// checkpoint and the mismatch if it was written for another model, strategy, seed (unless
// forced) or world size, if it is missing or truncated, or if a rank file's checksum differs
// from its manifest's (naming the file).
int load_checkpoint(const std::string& dir, const strategies::ProgramSet& plan, Comm& comm,
                    Interpreter& state, const LoadOptions& options = {});

}  // namespace strata::exec
