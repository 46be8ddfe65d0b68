// Rate control (backpressure): how many records a batch may take per partition, adapted to
// how fast batches are processed, after Spark's PIDRateEstimator.
//
// After each batch the estimator sees how many records it processed in how long, and how
// late it started (scheduling delay). It moves the rate toward the measured processing rate
// (proportional term), lowers it further while batches queue up (integral term over the
// scheduling delay), and never goes below `min_rate`. The per-partition cap for the next batch
// is rate * batch interval / partitions. Before the first estimate, `initial_rate` caps the
// first batch (the first batch after a restart is capped too).
//
// Thread safety: none; owned by one query's batch loop.
#pragma once

#include <cstdint>
#include <optional>

namespace runnel::streaming {

struct RateControlOptions {
  double batch_interval_seconds = 1.0;
  double proportional = 1.0;
  double integral = 0.2;
  double derivative = 0.0;
  double min_rate = 100;                  // records per second
  double initial_rate = 100000;           // records per second before the first estimate
  int64_t max_records_per_partition = 0;  // a hard cap from the config; 0: none
};

class RateController {
 public:
  explicit RateController(RateControlOptions options) : options_(options) {}

  // Records the partition may contribute to the next batch (>= 1).
  int64_t RecordsPerPartition(int partitions) const;

  // Feeds one batch's measurements; returns the new rate when it changed.
  std::optional<double> OnBatchCompleted(double batch_time_seconds, int64_t records,
                                         double processing_seconds,
                                         double scheduling_delay_seconds);

  double rate() const { return rate_.value_or(options_.initial_rate); }

 private:
  RateControlOptions options_;
  std::optional<double> rate_;
  double latest_time_ = -1;
  double latest_error_ = 0;
};

}  // namespace runnel::streaming
