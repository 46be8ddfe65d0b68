// Event time: timestamps of records, epoch-aligned windows, and the watermark.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace runnel::streaming {

// Milliseconds since the Unix epoch, UTC.
using EventTimeMs = int64_t;

// Parses "YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]" (no zone: UTC; a space may replace the
// T). Rejects anything else, including impossible dates and years outside 1970..9999.
Result<EventTimeMs> ParseIsoTimestamp(std::string_view text);

// "YYYY-MM-DDTHH:MM:SS" in UTC (the output records' `ts`); milliseconds are dropped.
std::string FormatIsoTimestamp(EventTimeMs ms);

// Tumbling (slide == length) or sliding windows aligned to the epoch: 1h windows start on the
// hour, UTC. Requires 0 < slide <= length.
struct WindowSpec {
  int64_t length_ms = 3600 * 1000;
  int64_t slide_ms = 3600 * 1000;

  // Starts of every window holding `t`, oldest first.
  std::vector<EventTimeMs> WindowsOf(EventTimeMs t) const;
  EventTimeMs EndOf(EventTimeMs window_start) const { return window_start + length_ms; }
  bool operator==(const WindowSpec&) const = default;
};

// "1hour", "30min", "1day", "10s": the `freq` of output records.
std::string WindowFrequencyName(int64_t length_ms);

// The watermark: the largest event time seen so far minus the allowed lateness. It moves only
// forward, and only when AdvanceTo is called (at the end of a batch); within a batch every
// record is judged against the watermark the batch started with.
//
// Thread safety: none; owned by one query's batch loop.
class Watermark {
 public:
  static constexpr EventTimeMs kNone = INT64_MIN;

  explicit Watermark(int64_t allowed_lateness_ms) : lateness_ms_(allowed_lateness_ms) {}

  EventTimeMs current() const { return current_; }
  EventTimeMs max_event_time() const { return max_event_time_; }

  // A record in the window ending at `window_end` is late: the watermark passed that end.
  bool IsLate(EventTimeMs window_end) const { return current_ != kNone && window_end <= current_; }

  // End of batch: takes the batch's largest event time into account.
  void AdvanceTo(EventTimeMs batch_max_event_time);

  // Restores the state saved with a committed batch.
  void Restore(EventTimeMs current, EventTimeMs max_event_time) {
    current_ = current;
    max_event_time_ = max_event_time;
  }

 private:
  int64_t lateness_ms_;
  EventTimeMs current_ = kNone;
  EventTimeMs max_event_time_ = kNone;
};

}  // namespace runnel::streaming
