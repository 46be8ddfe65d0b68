// Process exit codes of `runnel`, after sysexits(3) where one fits, and the one table that maps
// a failure of `runnel run` to its code (ExitCodeFor).
#pragma once

#include "common/status.h"

namespace runnel {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;        // the command ran and failed
inline constexpr int kExitUsage = 64;         // EX_USAGE: bad command line
inline constexpr int kExitDataError = 65;     // EX_DATAERR: corrupt data (a checkpoint)
inline constexpr int kExitNoInput = 66;       // EX_NOINPUT: nothing to read
inline constexpr int kExitUnavailable = 69;   // EX_UNAVAILABLE: not implemented in this build
inline constexpr int kExitSoftware = 70;      // EX_SOFTWARE: internal error
inline constexpr int kExitStateDirBusy = 75;  // EX_TEMPFAIL: another process owns state_dir
inline constexpr int kExitConfig = 78;        // EX_CONFIG: invalid configuration

// The phases of `runnel run` (service/runner.cc), in order.
enum class RunPhase { kStart, kLock, kOpen, kRecover, kServe, kRun, kDrain };

// `runnel run`'s exit code for `status` (not OK) in `phase`:
//   lock     Unavailable: another process holds state_dir                      75
//   recover  FailedPrecondition: the query's definition changed, or a sink
//            holds another state's output (the config must change)             78
//   recover  NotImplemented: a feature this build does not have                69
//   anything else                                                              1
inline int ExitCodeFor(RunPhase phase, const Status& status) {
  if (status.ok()) return kExitOk;
  switch (phase) {
    case RunPhase::kLock:
      if (status.code() == StatusCode::kUnavailable) return kExitStateDirBusy;
      break;
    case RunPhase::kRecover:
      if (status.code() == StatusCode::kFailedPrecondition) return kExitConfig;
      if (status.code() == StatusCode::kNotImplemented) return kExitUnavailable;
      break;
    default:
      break;
  }
  return kExitFailure;
}

}  // namespace runnel
