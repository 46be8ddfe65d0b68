// The available-now driver (`runnel run --available-now`): runs a query's batches back to
// back, on its batch grid from `start`, until its input has nothing left that no batch has
// planned, then returns. Each batch is a normal batch (plan, compute, commit, confirm, retry).
//
// Thread safety: runs on the caller's thread; `interrupted` may be set from any thread (with a
// StreamingContext::Stop, which ends a batch waiting to retry).
#pragma once

#include <atomic>
#include <cstdint>

#include "streaming/streaming_context.h"

namespace runnel::streaming {

// The batches it ran, or the first batch's error. Stops early when `interrupted` is set.
Result<int64_t> RunAvailableNow(StreamingContext& ssc, const InputStreamBase& input,
                                TimePoint start, const std::atomic<bool>& interrupted);

}  // namespace runnel::streaming
