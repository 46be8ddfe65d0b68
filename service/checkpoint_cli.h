// `runnel checkpoint list|inspect|verify --state-dir DIR [--id N] [--json]`: what the service's
// checkpoints hold, and whether their manifests and files verify.
#pragma once

#include <cstdint>
#include <string>

namespace runnel::service {

struct CheckpointCommand {
  std::string verb;  // list | inspect | verify
  std::string state_dir;
  int64_t id = 0;  // 0: inspect the newest, verify all
  bool json = false;
};

// Prints to stdout; returns the exit code (65 when a checkpoint does not verify, 66 when there
// is none to inspect or verify).
int RunCheckpointCommand(const CheckpointCommand& command);

}  // namespace runnel::service
