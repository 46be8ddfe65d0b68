// Stages, shuffles, retries, recomputation from lineage, accumulators and concurrent jobs.
#include <atomic>
#include <thread>

#include "tests/engine/engine_test_util.h"

namespace runnel::engine {
namespace {

using KV = std::pair<std::string, int>;

std::vector<KV> WordPairs(int n, int distinct) {
  std::vector<KV> out;
  for (int i = 0; i < n; ++i) out.emplace_back("word" + std::to_string(i % distinct), 1);
  return out;
}

int CountShuffleStages(const JobMetrics& job) {
  int n = 0;
  for (const auto& s : job.stages) n += s.shuffle_map ? 1 : 0;
  return n;
}

int ShuffleIdOf(const RddNodeBase& rdd) {
  for (const auto& dep : rdd.dependencies()) {
    if (dep.shuffle) return dep.shuffle->shuffle_id();
  }
  ADD_FAILURE() << "no shuffle dependency";
  return -1;
}

class SchedulerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Context> ctx_ = MakeContext();
};

TEST_F(SchedulerTest, NarrowChainIsOneStage) {
  auto rdd = ctx_->Parallelize(Range(100), 4).Map([](int x) { return x + 1; }).Filter([](int x) {
    return x % 2 == 0;
  });
  EXPECT_EQ(Must(rdd.Count()), 50);
  JobMetrics job = ctx_->LastJob();
  ASSERT_EQ(job.stages.size(), 1u);
  EXPECT_FALSE(job.stages[0].shuffle_map);
  EXPECT_EQ(job.stages[0].tasks, 4);
  EXPECT_EQ(job.stages[0].totals.records_in, 100);
}

TEST_F(SchedulerTest, TwoShufflesMakeThreeStages) {
  auto counts = ctx_->Parallelize(WordPairs(1000, 10), 4)
                    .ReduceByKey([](int a, int b) { return a + b; }, 3)
                    .Map([](KV&& kv) { return std::pair<int, std::string>(kv.second, kv.first); })
                    .GroupByKey(2);
  auto out = Must(counts.Collect());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, 100);
  EXPECT_EQ(out[0].second.size(), 10u);
  JobMetrics job = ctx_->LastJob();
  EXPECT_EQ(job.stages.size(), 3u);
  EXPECT_EQ(CountShuffleStages(job), 2);
  // Parents run before children: both map stages precede the result stage.
  EXPECT_FALSE(job.stages.back().shuffle_map);
  EXPECT_EQ(job.stages[0].tasks, 4);  // map side of the first shuffle
  EXPECT_EQ(job.stages[1].tasks, 3);  // map side of the second
  EXPECT_EQ(job.stages[2].tasks, 2);  // result
}

TEST_F(SchedulerTest, LineageMarksStageBoundaries) {
  auto rdd = ctx_->Parallelize(WordPairs(10, 2), 4)
                 .Map([](KV&& kv) { return kv; })
                 .ReduceByKey([](int a, int b) { return a + b; }, 2);
  const std::string text = rdd.DebugString();
  EXPECT_NE(text.find("(2) Rdd["), std::string::npos) << text;
  EXPECT_NE(text.find("reduceByKey"), std::string::npos) << text;
  EXPECT_NE(text.find(" +-(4) Rdd["), std::string::npos) << text;
  EXPECT_NE(text.find("|  Rdd["), std::string::npos) << text;
  EXPECT_NE(text.find("parallelize"), std::string::npos) << text;
}

TEST_F(SchedulerTest, MapSideCombineShrinksTheShuffle) {
  auto pairs = ctx_->Parallelize(WordPairs(20000, 10), 4);
  ASSERT_TRUE(pairs.ReduceByKey([](int a, int b) { return a + b; }, 2).Count().ok());
  const JobMetrics combined = ctx_->LastJob();
  ASSERT_TRUE(pairs.GroupByKey(2).Count().ok());  // no map-side combine
  const JobMetrics grouped = ctx_->LastJob();

  const TaskMetrics& map_side = combined.stages[0].totals;
  EXPECT_EQ(map_side.records_in, 20000);
  EXPECT_EQ(map_side.records_out, 40);  // 10 keys x 4 map tasks
  EXPECT_GT(map_side.shuffle_write_bytes, 0);
  // Input is 20000 pairs of ~10 bytes; the combined shuffle holds 40 records.
  EXPECT_LT(map_side.shuffle_write_bytes * 100, grouped.stages[0].totals.shuffle_write_bytes);
  EXPECT_EQ(combined.stages[1].totals.shuffle_read_bytes, map_side.shuffle_write_bytes);
}

TEST_F(SchedulerTest, ShuffleOutputsAreReusedByLaterJobs) {
  auto reduced =
      ctx_->Parallelize(WordPairs(100, 5), 4).ReduceByKey([](int a, int b) { return a + b; });
  ASSERT_TRUE(reduced.Count().ok());
  EXPECT_EQ(ctx_->LastJob().stages.size(), 2u);
  ASSERT_TRUE(reduced.Collect().ok());
  EXPECT_EQ(ctx_->LastJob().stages.size(), 1u);
  EXPECT_EQ(ctx_->LastJob().skipped_stages, 1);
}

TEST_F(SchedulerTest, CoPartitionedJoinNeedsNoNewShuffle) {
  auto left =
      ctx_->Parallelize(WordPairs(100, 10), 4).ReduceByKey([](int a, int b) { return a + b; }, 3);
  auto right =
      ctx_->Parallelize(WordPairs(50, 10), 2).ReduceByKey([](int a, int b) { return a * b; }, 3);
  auto joined = left.Join(right);
  EXPECT_EQ(joined.num_partitions(), 3);
  EXPECT_EQ(Must(joined.Count()), 10);
  // Two shuffles (one per reduceByKey) and the result stage: the join added none.
  EXPECT_EQ(CountShuffleStages(ctx_->LastJob()), 2);
  EXPECT_EQ(joined.DebugString().find("partitionBy"), std::string::npos);

  // Not co-partitioned: each side is shuffled.
  auto a = ctx_->Parallelize(WordPairs(100, 10), 4);
  auto b = ctx_->Parallelize(WordPairs(50, 10), 2);
  EXPECT_EQ(Must(a.Join(b, 3).Count()), 100 * 50 / 10);
  EXPECT_EQ(CountShuffleStages(ctx_->LastJob()), 2);
}

TEST_F(SchedulerTest, FailedTaskIsRetried) {
  std::atomic<int> failures{0};
  auto rdd = ctx_->Parallelize(Range(10), 2)
                 .MapPartitionsWithIndex([&failures](int index, std::vector<int>&& p) {
                   TaskContext* tc = TaskContext::Current();
                   if (index == 1 && tc->attempt() < 2) {
                     ++failures;
                     throw std::runtime_error("injected failure");
                   }
                   return std::move(p);
                 });
  EXPECT_EQ(Must(rdd.Collect()), Range(10));
  EXPECT_EQ(failures.load(), 2);
  EXPECT_EQ(ctx_->LastJob().stages[0].failed_attempts, 2);
}

TEST_F(SchedulerTest, TaskThatAlwaysFailsFailsTheJobAfterMaxAttempts) {
  auto ctx = Must(Context::Make({.workers = 2, .max_task_attempts = 3}));
  std::atomic<int> attempts{0};
  auto rdd = ctx->Parallelize(Range(4), 2).Map([&attempts](int x) {
    if (x == 3) {
      ++attempts;
      throw std::runtime_error("always");
    }
    return x;
  });
  Status st = rdd.Count().status();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("failed 3 times"), std::string::npos) << st;
  EXPECT_EQ(attempts.load(), 3);
}

TEST_F(SchedulerTest, OnlyTaskScopedErrorsAreRetriedAndTheScopeGoesUp) {
  // A task retry cannot help corruption, nor a broker that is away (the batch retries that,
  // after a pause): one attempt each, the error and its scope handed to the caller.
  for (const Status& error : {Status::Corruption("bad block"), Status::Unavailable("broker away"),
                              Status::OutOfRange("gone").WithRetry(RetryScope::kReplan)}) {
    std::atomic<int> attempts{0};
    auto rdd = FromSource<int>(*ctx_, "failing", 2, [&](int p, TaskContext&, Emit<int> emit) {
      if (p == 1) {
        ++attempts;
        return error;
      }
      emit(1);
      return Status::OK();
    });
    const Status st = rdd.Count().status();
    EXPECT_EQ(attempts.load(), 1) << error;
    EXPECT_EQ(st.code(), error.code()) << st;
    EXPECT_EQ(st.retry(), error.retry()) << st;
  }
  // A user function that throws is retried; once its attempts are spent, no one retries it.
  auto always = ctx_->Parallelize(Range(4), 2).Map([](int x) {
    if (x == 3) throw std::runtime_error("always");
    return x;
  });
  EXPECT_EQ(always.Count().status().retry(), RetryScope::kNone);
}

TEST_F(SchedulerTest, AccumulatorCountsEachSuccessfulTaskOnce) {
  auto seen = MakeSumAccumulator<int64_t>();
  auto rdd = ctx_->Parallelize(Range(100), 4).Map([seen](int x) {
    seen.Add(1);
    // Fail the first attempt of partition 2 after it has added some records.
    if (x == 60 && TaskContext::Current()->attempt() == 0) throw std::runtime_error("retry me");
    return x;
  });
  ASSERT_TRUE(rdd.Foreach([](int) {}).ok());
  EXPECT_EQ(seen.value(), 100) << "updates of the failed attempt must be discarded";
}

TEST_F(SchedulerTest, CustomAccumulatorTracksTheMinimum) {
  auto min_acc = ctx_->MakeAccumulator<int>(1 << 30, [](int a, int b) { return std::min(a, b); });
  std::vector<int> data = {42, 17, 99, 23, 8, 64};
  ASSERT_TRUE(ctx_->Parallelize(data, 3).Foreach([min_acc](int x) { min_acc.Add(x); }).ok());
  EXPECT_EQ(min_acc.value(), 8);
}

TEST_F(SchedulerTest, LostShuffleOutputIsRecomputedFromLineage) {
  std::atomic<int> map_calls{0};
  auto reduced = ctx_->Parallelize(WordPairs(400, 8), 4)
                     .Map([&map_calls](KV&& kv) {
                       ++map_calls;
                       return kv;
                     })
                     .ReduceByKey([](int a, int b) { return a + b; }, 2);
  const auto expected = AsMap(Must(reduced.Collect()));
  EXPECT_EQ(map_calls.load(), 400);

  // Lose one map output: only that map task runs again.
  ctx_->shuffle_store().Remove(ShuffleIdOf(*reduced.node()), 1);
  EXPECT_EQ(AsMap(Must(reduced.Collect())), expected);
  EXPECT_EQ(map_calls.load(), 500);
}

TEST(FetchFailureTest, OutputLostWhileTheJobRunsIsRecomputedAndTheTaskRetried) {
  // One worker runs the union's partitions in order: partition 0 drops every map output of
  // the shuffle after the scheduler has checked them, so the reduce tasks that follow find
  // them missing (a fetch failure) and the scheduler must recompute them mid-job.
  auto ctx = MakeContext(/*workers=*/1);
  std::atomic<int> map_calls{0};
  auto reduced = ctx->Parallelize(WordPairs(400, 8), 4)
                     .Map([&map_calls](KV&& kv) {
                       ++map_calls;
                       return kv;
                     })
                     .ReduceByKey([](int a, int b) { return a + b; }, 2);
  const auto expected = AsMap(Must(reduced.Collect()));
  const int shuffle_id = ShuffleIdOf(*reduced.node());
  Context* raw = ctx.get();
  std::atomic<int> drops{0};
  auto dropper = FromSource<KV>(*ctx, "dropper", 1, [&](int, TaskContext&, Emit<KV>) {
    if (drops++ == 0) {
      for (int m = 0; m < 4; ++m) raw->shuffle_store().Remove(shuffle_id, m);
    }
    return Status::OK();
  });
  auto both = dropper.Union(reduced);
  EXPECT_EQ(AsMap(Must(both.Collect())), expected);
  EXPECT_EQ(map_calls.load(), 800) << "every lost map output was recomputed once";
  EXPECT_EQ(drops.load(), 1);
}

TEST_F(SchedulerTest, ConcurrentJobsFromTwoThreadsShareThePool) {
  auto build = [&](int salt) {
    return ctx_->Parallelize(WordPairs(5000, 50), 8)
        .MapValues([salt](int v) { return v * salt; })
        .ReduceByKey([](int a, int b) { return a + b; }, 4);
  };
  std::map<std::string, int> r1, r2;
  std::thread t1([&] {
    for (int i = 0; i < 5; ++i) r1 = AsMap(Must(build(1).Collect()));
  });
  std::thread t2([&] {
    for (int i = 0; i < 5; ++i) r2 = AsMap(Must(build(3).Collect()));
  });
  t1.join();
  t2.join();
  ASSERT_EQ(r1.size(), 50u);
  for (const auto& [k, v] : r1) {
    EXPECT_EQ(v, 100);
    EXPECT_EQ(r2[k], 300);
  }
}

TEST_F(SchedulerTest, ConcurrentJobsOnTheSameShuffleComputeItOnce) {
  std::atomic<int> map_calls{0};
  auto reduced = ctx_->Parallelize(WordPairs(1000, 10), 4)
                     .Map([&map_calls](KV&& kv) {
                       ++map_calls;
                       return kv;
                     })
                     .ReduceByKey([](int a, int b) { return a + b; }, 2);
  std::thread t1([&] { EXPECT_EQ(Must(reduced.Count()), 10); });
  std::thread t2([&] { EXPECT_EQ(Must(reduced.Count()), 10); });
  t1.join();
  t2.join();
  EXPECT_EQ(map_calls.load(), 1000);
}

}  // namespace
}  // namespace runnel::engine
