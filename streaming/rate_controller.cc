#include "streaming/rate_controller.h"

#include <algorithm>
#include <cmath>

namespace runnel::streaming {

int64_t RateController::RecordsPerPartition(int partitions) const {
  const double per = rate() * options_.batch_interval_seconds / std::max(1, partitions);
  int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(per));
  if (options_.max_records_per_partition > 0) {
    cap = std::min(cap, options_.max_records_per_partition);
  }
  return cap;
}

std::optional<double> RateController::OnBatchCompleted(double batch_time_seconds, int64_t records,
                                                       double processing_seconds,
                                                       double scheduling_delay_seconds) {
  if (records <= 0 || processing_seconds <= 0 || batch_time_seconds <= latest_time_) {
    return std::nullopt;
  }
  const double processing_rate = static_cast<double>(records) / processing_seconds;
  if (!rate_) {  // the first measurement: take it as the rate
    rate_ = processing_rate;
    latest_time_ = batch_time_seconds;
    latest_error_ = 0;
    return rate_;
  }
  const double since_update = batch_time_seconds - latest_time_;
  const double error = *rate_ - processing_rate;
  // Records that piled up while batches waited, spread over one interval.
  const double historical_error =
      scheduling_delay_seconds * processing_rate / options_.batch_interval_seconds;
  const double d_error = (error - latest_error_) / since_update;
  const double next = std::max(options_.min_rate, *rate_ - options_.proportional * error -
                                                      options_.integral * historical_error -
                                                      options_.derivative * d_error);
  latest_time_ = batch_time_seconds;
  latest_error_ = error;
  rate_ = next;
  return rate_;
}

}  // namespace runnel::streaming
