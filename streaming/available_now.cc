#include "streaming/available_now.h"

namespace runnel::streaming {

Result<int64_t> RunAvailableNow(StreamingContext& ssc, const InputStreamBase& input,
                                TimePoint start, const std::atomic<bool>& interrupted) {
  int64_t batches = 0;
  for (TimePoint t = start; !interrupted && input.HasPendingData(); t += ssc.batch_interval()) {
    RETURN_NOT_OK(ssc.RunBatch(t));
    ++batches;
  }
  return batches;
}

}  // namespace runnel::streaming
