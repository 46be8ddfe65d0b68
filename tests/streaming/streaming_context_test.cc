// The batch timer and runner, on a manual clock: no test here sleeps for time to pass.
#include "streaming/streaming_context.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "streaming/dstream.h"

namespace runnel::streaming {
namespace {

TimePoint At(int64_t ms) { return TimePoint(Millis(ms)); }

// Blocks until `ssc` completed `n` batches (the runner works on its own thread).
void AwaitBatches(const StreamingContext& ssc, int64_t n) {
  while (ssc.batches_completed() < n) std::this_thread::yield();
}

void AwaitTimerParked(const ManualClock& clock) {
  while (clock.waiters() == 0) std::this_thread::yield();
}

class StreamingContextTest : public ::testing::Test {
 protected:
  std::unique_ptr<engine::Context> engine_ = engine::Context::Make({.workers = 2}).value();
  ManualClock clock_{At(10'000)};
};

TEST_F(StreamingContextTest, BatchesFireAtEachIntervalWithDenseIds) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_});
  std::vector<int64_t> times;
  std::mutex mu;
  auto stream = QueueStream<int>(ssc, {{1, 2}, {3}, {}, {4, 5, 6}});
  stream.ForeachRdd([&](const engine::Rdd<int>&, BatchInfo* info) {
    std::lock_guard lock(mu);
    times.push_back(info->progress.batch_time.value());
    return Status::OK();
  });
  ASSERT_TRUE(ssc.Start().ok());
  EXPECT_EQ(ssc.zero_time(), At(11'000));  // the next whole interval after now
  AwaitTimerParked(clock_);
  EXPECT_EQ(ssc.batches_completed(), 0) << "no batch before its time";
  for (int i = 1; i <= 4; ++i) {
    clock_.Set(At(10'000 + 1000 * i));
    AwaitBatches(ssc, i);
  }
  ASSERT_TRUE(ssc.Stop().ok());
  EXPECT_EQ(times, (std::vector<int64_t>{11'000, 12'000, 13'000, 14'000}));
  const auto progress = ssc.RecentProgress();
  ASSERT_EQ(progress.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(progress[i].batch_id, BatchId(i));
  EXPECT_EQ(progress[0].records_in, 2);
  EXPECT_EQ(progress[3].records_in, 3);
}

TEST_F(StreamingContextTest, SlowBatchDelaysTheNextWhichShowsSchedulingDelay) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_});
  std::atomic<bool> release{false};
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  auto stream = QueueStream<int>(ssc, {});
  stream.ForeachRdd([&](const engine::Rdd<int>&, BatchInfo* info) {
    max_running = std::max(max_running.load(), ++running);
    if (info->progress.batch_id == BatchId(0)) {
      while (!release.load()) std::this_thread::yield();  // batch 0 is slow
    }
    --running;
    return Status::OK();
  });
  ASSERT_TRUE(ssc.Start(At(11'000)).ok());
  clock_.Set(At(11'000));  // batch 0 starts and hangs
  while (running.load() == 0) std::this_thread::yield();
  clock_.Set(At(13'500));  // batches at 12s and 13s come due while 0 runs
  while (ssc.queued_batches() < 2) std::this_thread::yield();
  release = true;
  AwaitBatches(ssc, 3);
  ASSERT_TRUE(ssc.Stop().ok());
  EXPECT_EQ(max_running.load(), 1) << "batches never overlap";
  const auto progress = ssc.RecentProgress();
  ASSERT_EQ(progress.size(), 3u);
  EXPECT_DOUBLE_EQ(progress[1].scheduling_delay_seconds, 1.5);  // due at 12s, started at 13.5s
  EXPECT_DOUBLE_EQ(progress[2].scheduling_delay_seconds, 0.5);
}

TEST_F(StreamingContextTest, StopFinishesTheRunningBatchAndDropsQueuedOnes) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_});
  std::atomic<bool> in_batch{false};
  std::atomic<bool> release{false};
  std::atomic<int> outputs{0};
  auto stream = QueueStream<int>(ssc, {});
  stream.ForeachRdd([&](const engine::Rdd<int>&, BatchInfo*) {
    in_batch = true;
    while (!release.load()) std::this_thread::yield();
    ++outputs;
    return Status::OK();
  });
  ASSERT_TRUE(ssc.Start(At(11'000)).ok());
  clock_.Set(At(15'000));  // five batches due; the first runs, the rest queue
  while (!in_batch.load()) std::this_thread::yield();
  std::thread releaser([&] {
    while (ssc.queued_batches() != 0) std::this_thread::yield();  // Stop dropped the queue
    release = true;
  });
  EXPECT_TRUE(ssc.Stop(Millis(60'000)).ok());
  releaser.join();
  EXPECT_EQ(outputs.load(), 1) << "the running batch finished, its outputs ran, nothing more";
  EXPECT_TRUE(ssc.Stop().ok()) << "idempotent";
  EXPECT_TRUE(ssc.AwaitTermination().ok());
}

TEST_F(StreamingContextTest, StopTimesOutWhenTheBatchDoesNotFinish) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_});
  std::atomic<bool> in_batch{false};
  std::atomic<bool> release{false};
  auto stream = QueueStream<int>(ssc, {});
  stream.ForeachRdd([&](const engine::Rdd<int>&, BatchInfo*) {
    in_batch = true;
    while (!release.load()) std::this_thread::yield();
    return Status::OK();
  });
  ASSERT_TRUE(ssc.Start(At(11'000)).ok());
  clock_.Set(At(11'000));
  while (!in_batch.load()) std::this_thread::yield();
  EXPECT_EQ(ssc.Stop(Millis(10)).code(), StatusCode::kDeadlineExceeded);
  release = true;  // the destructor waits for it
}

TEST_F(StreamingContextTest, FailedBatchStopsTheStreamWithItsError) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_});
  auto stream = QueueStream<int>(ssc, {});
  stream.ForeachRdd([&](const engine::Rdd<int>&, BatchInfo* info) {
    if (info->progress.batch_id == BatchId(1)) return Status::IOError("disk full");
    return Status::OK();
  });
  ASSERT_TRUE(ssc.Start(At(11'000)).ok());
  clock_.Set(At(20'000));
  Status st = ssc.AwaitTermination();
  EXPECT_EQ(st.code(), StatusCode::kIOError);
  EXPECT_EQ(ssc.batches_completed(), 1);
  const auto progress = ssc.RecentProgress();
  ASSERT_EQ(progress.size(), 2u);
  EXPECT_FALSE(progress[1].status.ok());
}

// An input whose position moves by 10 per plan, recording what the context told it.
class CountingInput final : public InputStreamBase {
 public:
  Status Plan(BatchInfo* info) override {
    before_ = position_;
    position_ += 10;
    info->positions["n"].set_next_offset(position_);
    return Status::OK();
  }
  void Abandon(BatchTime) override {
    ++abandoned;
    position_ = before_;
  }
  void Confirm(BatchTime) override { confirmed = position_; }
  std::atomic<int> abandoned{0};
  std::atomic<int64_t> confirmed{0};

 private:
  int64_t position_ = 0;
  int64_t before_ = 0;
};

TEST_F(StreamingContextTest, TransientFailureIsRetriedWithTheSameIdAndTheSameInput) {
  StreamingContext ssc(
      engine_.get(),
      {.batch_interval = Millis(1000), .clock = &clock_, .retry_backoff = Millis(1)});
  CountingInput input;
  auto registration = ssc.AddInput(&input);
  std::vector<std::pair<int64_t, std::string>> attempts;
  int failures_left = 2;
  ssc.AddOutput([&](BatchInfo* info) {
    attempts.emplace_back(info->progress.batch_id.value(), PositionText(info->positions["n"]));
    if (failures_left-- > 0) return Status::Unavailable("broker down");
    return Status::OK();
  });
  ASSERT_TRUE(ssc.RunBatch(At(0)).ok());
  ASSERT_TRUE(ssc.RunBatch(At(1000)).ok());
  const std::vector<std::pair<int64_t, std::string>> want = {
      {0, "10"}, {0, "10"}, {0, "10"}, {1, "20"}};
  EXPECT_EQ(attempts, want);
  EXPECT_EQ(input.abandoned, 2);
  EXPECT_EQ(input.confirmed, 20);
  EXPECT_EQ(ssc.failed_attempts(), 2);
  EXPECT_EQ(ssc.batches_completed(), 2);
  const auto progress = ssc.RecentProgress();
  ASSERT_EQ(progress.size(), 4u);  // every attempt has a progress record
  EXPECT_EQ(progress[0].status.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(progress[2].status.ok());
}

// A source like Kafka's: each plan reads everything available from where the last confirmed
// batch ended, so a retry may read further than the failed attempt did.
class GrowingInput final : public DStreamNode<int64_t>, public InputStreamBase {
 public:
  explicit GrowingInput(StreamingContext* ssc)
      : DStreamNode<int64_t>(ssc, ssc->batch_interval(), {}), registration_(ssc->AddInput(this)) {}
  Status Plan(BatchInfo* info) override {
    before_ = position_;
    planned_[info->progress.batch_time.value()] = {position_, available.load()};
    position_ = available.load();
    info->positions["n"].set_next_offset(position_);
    return Status::OK();
  }
  void Abandon(BatchTime) override { position_ = before_; }
  std::atomic<int64_t> available{0};

 protected:
  Result<std::optional<engine::Rdd<int64_t>>> Compute(BatchTime t) override {
    const auto [from, until] = planned_.at(t.value());
    std::vector<int64_t> records;
    for (int64_t i = from; i < until; ++i) records.push_back(i);
    return std::optional(ssc().engine().Parallelize(std::move(records), 2));
  }

 private:
  int64_t position_ = 0;
  int64_t before_ = 0;
  std::map<int64_t, std::pair<int64_t, int64_t>> planned_;
  StreamingContext::Registration registration_;
};

TEST_F(StreamingContextTest, ARetriedBatchComputesItsInputAgainFromTheNewPlan) {
  // Found by the soak: a batch whose commit failed on a full disk was retried with the RDD its
  // first attempt generated while its source had planned further, and the records between
  // were never read.
  StreamingContext ssc(
      engine_.get(),
      {.batch_interval = Millis(1000), .clock = &clock_, .retry_backoff = Millis(1)});
  auto input = std::make_shared<GrowingInput>(&ssc);
  input->available = 10;
  std::vector<std::pair<std::string, int64_t>> seen;  // (position, records) per attempt
  int failures_left = 1;
  DStream<int64_t>(input).ForeachRdd([&](const engine::Rdd<int64_t>& rdd, BatchInfo* info) {
    auto n = rdd.Count();
    if (!n.ok()) return n.status();
    seen.emplace_back(PositionText(info->positions["n"]), *n);
    if (failures_left-- > 0) {
      input->available = 25;  // more data arrives while the batch fails
      return Status::Unavailable("disk full");
    }
    return Status::OK();
  });
  ASSERT_TRUE(ssc.RunBatch(At(0)).ok());
  const std::vector<std::pair<std::string, int64_t>> want = {{"10", 10}, {"25", 25}};
  EXPECT_EQ(seen, want) << "the retry must read everything its new plan covers";
}

TEST_F(StreamingContextTest, PermanentFailureIsNotRetried) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_});
  CountingInput input;
  auto registration = ssc.AddInput(&input);
  int runs = 0;
  ssc.AddOutput([&](BatchInfo*) {
    ++runs;
    return Status::Corruption("bad state");
  });
  EXPECT_EQ(ssc.RunBatch(At(0)).code(), StatusCode::kCorruption);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(input.abandoned, 0);
  EXPECT_EQ(input.confirmed, 0);
}

TEST_F(StreamingContextTest, StopEndsARetryingBatchCleanly) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000),
                                       .clock = &clock_,
                                       .retry_backoff = Millis(1),
                                       .retry_backoff_max = Millis(5)});
  CountingInput input;
  auto registration = ssc.AddInput(&input);
  ssc.AddOutput([&](BatchInfo*) { return Status::Unavailable("broker down"); });
  ASSERT_TRUE(ssc.Start(At(11'000)).ok());
  clock_.Set(At(11'000));
  while (ssc.failed_attempts() < 3) std::this_thread::yield();
  EXPECT_TRUE(ssc.Stop().ok());
  // Stopping is not a failure: nothing committed, the next start retries the batch.
  EXPECT_TRUE(ssc.AwaitTermination().ok());
  EXPECT_EQ(ssc.batches_completed(), 0);
  EXPECT_EQ(input.confirmed, 0);
}

TEST_F(StreamingContextTest, BatchIdsContinueFromTheFirstBatchId) {
  StreamingContext ssc(
      engine_.get(),
      {.batch_interval = Millis(1000), .clock = &clock_, .first_batch_id = BatchId(41)});
  auto stream = QueueStream<int>(ssc, {{1}});
  stream.ForeachRdd([](const engine::Rdd<int>&, BatchInfo*) { return Status::OK(); });
  ASSERT_TRUE(ssc.RunBatch(At(11'000)).ok());
  ASSERT_TRUE(ssc.RunBatch(At(12'000)).ok());
  const auto progress = ssc.RecentProgress();
  EXPECT_EQ(progress[0].batch_id, BatchId(41));
  EXPECT_EQ(progress[1].batch_id, BatchId(42));
}

}  // namespace
}  // namespace runnel::streaming
