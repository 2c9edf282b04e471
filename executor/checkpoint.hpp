// Checkpoints of a training run: every rank's parameter shards and AdamW moments after a step,
// written so that a crash at any moment leaves the last complete checkpoint intact, and read
// back so that a resumed run continues with exactly the losses of an uninterrupted one.
//
// Layout of a checkpoint directory DIR:
//   DIR/latest                  the name of the newest complete checkpoint ("step-000010")
//   DIR/step-000010/manifest.json  step, model/strategy names and hashes, seed, world size, per
//                                  rank its state buffers (name, bytes) in file order, per
//                                  rank file its size and FNV-1a 64 checksum ("files"), and
//                                  (schema 3) where the files hold which elements of which
//                                  global tensor ("slices", checkpoint_slices.hpp; each
//                                  replicated slice once)
//   DIR/step-000010/rank-00003.bin  rank 3's state: the persistent parameter and optimizer
//                                  buffers of its program (each bucket's parameters or ZeRO
//                                  part, fp32 master weights, Adam moments), in table order
// A checkpoint is written into step-NNNNNN.tmp/ and renamed when every rank has written and
// synced its file; `latest` is replaced by rename after that. Readers ignore *.tmp.
// A loaded rank file must have its manifest's size and checksum (a flipped byte is an error
// naming the file). The same strategy with the same state buffers loads file for file; another
// strategy (dp, tp, pp, ZeRO stage, world size) is resharded: each rank assembles each tensor
// it holds from the slices and copies out its elements. Collective over the world: every rank
// calls save()/load() together.
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
  // Resume a checkpoint written with another seed, or for a model whose spec differs (its
  // hash), as long as every tensor has the same shape.
  bool force = false;
};

// The step of DIR's latest checkpoint, from its manifest (before anything is loaded: a run that
// switches strategies starts in the phase that continues it). ConfigError when there is none.
int latest_checkpoint_step(const std::string& dir);

// Loads DIR's latest checkpoint into `state` and returns its step. ConfigError naming the
// checkpoint and the mismatch if it was written for another model (a tensor missing or of
// another shape: named with both shapes, forced or not) or seed (unless forced), if it cannot
// be resharded (before schema 3), if it is missing or truncated, or if a rank file's checksum
// differs from its manifest's (naming the file).
int load_checkpoint(const std::string& dir, const strategies::ProgramSet& plan, Comm& comm,
                    Interpreter& state, const LoadOptions& options = {});

}  // namespace strata::exec
