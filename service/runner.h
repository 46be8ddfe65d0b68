// Runs the queries of a validated config: the query registry and the batch loops. Wiring only:
// every piece of logic lives in the modules it uses.
#pragma once

#include <signal.h>

#include "service/config.h"

namespace runnel::service {

struct RunOptions {
  // Process what the sources hold now, then exit.
  bool available_now = false;
  // Log a progress line per query this often (0: never).
  int64_t progress_log_ms = 0;
};

// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread it starts later), for
// RunService's sigwait; returns that signal set. Call before starting any thread.
sigset_t BlockTerminationSignals();

// Opens state, recovers each query from its last committed batch, and runs until the sources
// are drained (available_now) or SIGTERM/SIGINT. Returns the process exit code.
int RunService(const Config& config, const RunOptions& options);

}  // namespace runnel::service
