#include "streaming/rate_controller.h"

#include <gtest/gtest.h>

namespace runnel::streaming {
namespace {

TEST(RateControllerTest, FirstBatchIsCappedByTheInitialRate) {
  RateController rc({.batch_interval_seconds = 1.0, .initial_rate = 1000});
  EXPECT_EQ(rc.RecordsPerPartition(4), 250);
  RateController capped({.initial_rate = 1e9, .max_records_per_partition = 500});
  EXPECT_EQ(capped.RecordsPerPartition(1), 500);
}

TEST(RateControllerTest, ConvergesSoProcessingFitsTheInterval) {
  // A simulated query: processing takes 20 us per record plus 50 ms fixed, so it can sustain
  // (1 - 0.05) / 20e-6 = 47,500 records/s in a 1 s interval. Offered load: unlimited.
  RateController rc({.batch_interval_seconds = 1.0, .min_rate = 100, .initial_rate = 200000});
  const int partitions = 4;
  double now = 0;
  double backlog_delay = 0;
  double last_processing = 0;
  for (int batch = 0; batch < 60; ++batch) {
    const int64_t records = rc.RecordsPerPartition(partitions) * partitions;
    const double processing = 0.05 + 20e-6 * static_cast<double>(records);
    rc.OnBatchCompleted(now, records, processing, backlog_delay);
    // The next batch starts late by however much this one overran the interval.
    backlog_delay = std::max(0.0, backlog_delay + processing - 1.0);
    now += 1.0;
    last_processing = processing;
  }
  EXPECT_LT(last_processing, 1.0);
  EXPECT_GT(last_processing, 0.5) << "the controller should not starve the query";
  EXPECT_LT(backlog_delay, 0.5);
}

TEST(RateControllerTest, RaisesTheRateWhenThereIsRoom) {
  RateController rc({.batch_interval_seconds = 1.0, .initial_rate = 1000});
  double now = 0;
  for (int batch = 0; batch < 20; ++batch) {
    const int64_t records = rc.RecordsPerPartition(1);
    rc.OnBatchCompleted(now, records, 1e-5 * static_cast<double>(records), 0);
    now += 1;
  }
  EXPECT_GT(rc.rate(), 50000);
}

}  // namespace
}  // namespace runnel::streaming
