// The plan / abandon / confirm protocol every source shares (streaming/planned_input.h),
// through a counting source: a batch reads the next `per_batch` integers.
#include "streaming/planned_input.h"

#include <gtest/gtest.h>

#include "streaming/dstream.h"

namespace runnel::streaming {
namespace {

TimePoint At(int64_t ms) { return TimePoint(Millis(ms)); }

// Position: the next integer; plan: the integers [first, last).
class CountingSource final : public PlannedInput<int, std::pair<int, int>, int> {
 public:
  CountingSource(StreamingContext* ssc, int per_batch)
      : PlannedInput(ssc, 0), per_batch_(per_batch), registration_(ssc->AddInput(this)) {}

  std::vector<int> confirmed;  // OnConfirmed's positions
  int plans = 0;

 protected:
  Result<Planned> PlanFrom(BatchInfo* info, const int& from) override {
    ++plans;
    info->progress.records_in += per_batch_;
    return Planned{{from, from + per_batch_}, from + per_batch_};
  }
  Result<std::optional<engine::Rdd<int>>> Read(const std::pair<int, int>& plan) override {
    std::vector<int> values;
    for (int i = plan.first; i < plan.second; ++i) values.push_back(i);
    return std::optional(this->ssc().engine().Parallelize(std::move(values), 2));
  }
  void OnConfirmed(const std::pair<int, int>&, const int& after) override {
    confirmed.push_back(after);
  }

 private:
  const int per_batch_;
  StreamingContext::Registration registration_;
};

class PlannedInputTest : public ::testing::Test {
 protected:
  std::unique_ptr<engine::Context> engine_ = engine::Context::Make({.workers = 2}).value();
  ManualClock clock_;
};

TEST_F(PlannedInputTest, AbandonGoesBackConfirmMovesOnAndDropsThePlan) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_});
  CountingSource source(&ssc, 10);
  BatchInfo first;
  first.progress.batch_time = BatchTime(1000);
  ASSERT_TRUE(source.Plan(&first).ok());
  EXPECT_EQ(source.position(), 10);
  auto rdd = source.GetOrCompute(BatchTime(1000)).value();
  ASSERT_TRUE(rdd.has_value());
  EXPECT_EQ(rdd->Count().value(), 10);

  source.Abandon(BatchTime(1000));
  EXPECT_EQ(source.position(), 0) << "an abandoned batch gives its input back";
  EXPECT_TRUE(source.confirmed.empty());

  BatchInfo again;
  again.progress.batch_time = BatchTime(1000);
  ASSERT_TRUE(source.Plan(&again).ok());
  source.Confirm(BatchTime(1000));
  EXPECT_EQ(source.position(), 10);
  EXPECT_EQ(source.confirmed, std::vector<int>{10});
  // Confirmed plans are gone: nothing keeps a batch's plan after it committed.
  source.Abandon(BatchTime(1000));
  EXPECT_EQ(source.position(), 10) << "a confirmed batch cannot be abandoned";
}

TEST_F(PlannedInputTest, ARetriedBatchReadsItsInputOnceThroughTheContext) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000),
                                       .clock = &clock_,
                                       .retry_backoff = Millis(1),
                                       .retry_backoff_max = Millis(1)});
  auto source = std::make_shared<CountingSource>(&ssc, 5);
  std::vector<int64_t> sums;
  int failures_left = 2;
  DStream<int>(source).ForeachRdd([&](const engine::Rdd<int>& rdd, BatchInfo*) -> Status {
    if (failures_left-- > 0) return Status::Unavailable("sink away");
    ASSIGN_OR_RETURN(auto values, rdd.Collect());
    int64_t sum = 0;
    for (int v : values) sum += v;
    sums.push_back(sum);
    return Status::OK();
  });
  ASSERT_TRUE(ssc.RunBatch(At(1000)).ok());
  ASSERT_TRUE(ssc.RunBatch(At(2000)).ok());
  EXPECT_EQ(source->plans, 4) << "two failed attempts, then two batches";
  EXPECT_EQ(sums, (std::vector<int64_t>{0 + 1 + 2 + 3 + 4, 5 + 6 + 7 + 8 + 9}));
  EXPECT_EQ(source->confirmed, (std::vector<int>{5, 10}));
}

TEST_F(PlannedInputTest, AReplanRetriesAtOnceAndAnUnhelpableErrorStops) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000),
                                       .clock = &clock_,
                                       .retry_backoff = Millis(60000),
                                       .retry_backoff_max = Millis(60000)});
  auto source = std::make_shared<CountingSource>(&ssc, 5);
  std::vector<Status> errors = {
      Status::Corruption("bad block"),
      Status::OutOfRange("offsets left the log").WithRetry(RetryScope::kReplan)};
  DStream<int>(source).ForeachRdd([&](const engine::Rdd<int>&, BatchInfo*) -> Status {
    if (errors.empty()) return Status::OK();
    Status st = errors.back();
    errors.pop_back();
    return st;
  });
  // The replan does not wait out the (one minute) backoff; the corruption is not retried.
  const Status st = ssc.RunBatch(At(1000));
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st;
  EXPECT_EQ(source->plans, 2);
  EXPECT_EQ(source->position(), 5) << "a batch that stopped the stream keeps its plan";
}

}  // namespace
}  // namespace runnel::streaming
