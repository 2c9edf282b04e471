// SIGINT and SIGTERM for the strata commands: one line on stderr saying what was interrupted
// (the command's phase; for `strata run` the step and the latest checkpoint), the temporary
// files of unfinished outputs removed, and exit status 128 + the signal (130 for SIGINT, 143
// for SIGTERM), as a shell reports a process that a signal ended. The signals are taken by a
// waiter thread (sigwait), so libraries that install their own handlers (SimGrid's for SIGINT)
// do not take them away; child processes would inherit the blocked signals, so commands that
// start children (validate) do not install it.
#pragma once

#include <string>

namespace strata::cli {

// Installs the handling for `command` ("simulate", "run"), before any other thread starts (MPI's,
// SimGrid's); `command` must outlive the process (a string literal). With `quiet`, nothing is
// printed (the non-lead ranks of a run, set_interrupt_quiet once the rank is known).
void install_interrupt_handler(const char* command, bool quiet = false);
void set_interrupt_quiet(bool quiet);

// What the command is doing now, a string literal ("lowering the specs", "simulating",
// "writing the outputs"): the interrupted line names it (and no longer a run's step).
void set_interrupt_phase(const char* phase);

// `strata run`: step `step` (1-based) of `steps` is running; `latest` is the latest complete
// checkpoint ("ck/step-000004", or a sentence when there is none). Called between steps only.
void set_interrupt_step(int step, int steps, const std::string& latest);

// Temporary files the handler removes (OutputFiles' temporaries). Returns a slot for
// forget_temporary, or -1 when the table is full (then the file is only removed by its owner).
int remember_temporary(const std::string& path);
void forget_temporary(int slot);

}  // namespace strata::cli
