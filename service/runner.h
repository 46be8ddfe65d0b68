// Runs the queries of a validated config: the query registry and the batch loops. Wiring only:
// every piece of logic lives in the modules it uses.
#pragma once

#include "service/config.h"

namespace runnel::service {

struct RunOptions {
  // Process what the sources hold now, then exit.
  bool available_now = false;
  // Log a progress line per query this often (0: never).
  int64_t progress_log_ms = 0;
};

// Opens state, recovers each query from its last committed batch, and runs until the sources
// are drained (available_now) or SIGTERM/SIGINT. Returns the process exit code.
int RunService(const Config& config, const RunOptions& options);

}  // namespace runnel::service
