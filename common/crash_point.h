// Named crash points for fault tests. With RUNNEL_CRASH_AT=NAME[:N] in the environment, the
// N-th pass (default: the first) through CrashPoint(NAME) kills the process with SIGKILL, as a
// power cut or `kill -9` at exactly that moment would. Without the variable a crash point costs
// one relaxed atomic load. Names in use (see docs/crash-points.md): after_state_commit,
// before_sink_rename, mid_checkpoint, after_checkpoint_rename, during_rebalance.
//
// Thread safety: may be called from any thread.
#pragma once

#include <string_view>

namespace runnel {

void CrashPoint(std::string_view name);

}  // namespace runnel
