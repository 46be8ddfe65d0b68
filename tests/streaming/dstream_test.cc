// DStream transformations: each batch's RDD, windows against recomputation, state across
// batches, timeouts.
#include "streaming/dstream.h"

#include <map>

#include <gtest/gtest.h>

#include "tests/streaming/forwarding_store.h"

namespace runnel::streaming {
namespace {

using KV = std::pair<std::string, int64_t>;

TimePoint At(int64_t ms) { return TimePoint(Millis(ms)); }

class DStreamTest : public ::testing::Test {
 protected:
  // Runs `n` batches one second apart from t = 1s.
  void RunBatches(StreamingContext& ssc, int n) {
    for (int i = 1; i <= n; ++i) ASSERT_TRUE(ssc.RunBatch(At(1000 * i)).ok());
  }

  std::unique_ptr<engine::Context> engine_ = engine::Context::Make({.workers = 2}).value();
  ManualClock clock_;
  StreamingContext ssc_{engine_.get(), {.batch_interval = Millis(1000), .clock = &clock_}};
};

// Random keyed batches: batch i holds pairs (k, v) with small keys.
std::deque<std::vector<KV>> KeyedBatches(int n) {
  std::deque<std::vector<KV>> batches;
  uint64_t x = 12345;
  for (int i = 0; i < n; ++i) {
    std::vector<KV> batch;
    for (int j = 0; j < 20; ++j) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      batch.emplace_back("k" + std::to_string((x >> 33) % 5), static_cast<int64_t>((x >> 40) % 10));
    }
    batches.push_back(batch);
  }
  return batches;
}

std::map<std::string, int64_t> SumOf(const std::deque<std::vector<KV>>& batches, int from, int to) {
  std::map<std::string, int64_t> sums;
  for (int i = std::max(from, 0); i <= to; ++i) {
    for (const auto& [k, v] : batches[static_cast<size_t>(i)]) sums[k] += v;
  }
  return sums;
}

template <typename V>
std::map<std::string, V> AsMap(const std::vector<std::pair<std::string, V>>& v) {
  return {v.begin(), v.end()};
}

TEST_F(DStreamTest, MapFilterFlatMapUnionPerBatch) {
  auto a = QueueStream<int>(ssc_, {{1, 2, 3}, {4}});
  auto b = QueueStream<int>(ssc_, {{10}, {}});
  std::map<int64_t, std::vector<int>> seen;
  a.Map([](int x) { return x * 2; })
      .Filter([](int x) { return x != 4; })
      .FlatMap([](int x) {
        return std::vector<int>{x, x + 1};
      })
      .Union(b)
      .ForeachRdd([&](const engine::Rdd<int>& rdd, BatchInfo* info) -> Status {
        ASSIGN_OR_RETURN(auto v, rdd.Collect());
        std::sort(v.begin(), v.end());
        seen[info->progress.batch_time.value()] = v;
        return Status::OK();
      });
  RunBatches(ssc_, 2);
  EXPECT_EQ(seen[1000], (std::vector<int>{2, 3, 6, 7, 10}));
  EXPECT_EQ(seen[2000], (std::vector<int>{8, 9}));
}

TEST_F(DStreamTest, EachBatchHasItsOwnLineage) {
  auto s = QueueStream<KV>(ssc_, {{{"a", 1}}, {{"b", 2}}});
  std::vector<std::string> lineages;
  s.ReduceByKey([](int64_t a, int64_t b) {
     return a + b;
   }).ForeachRdd([&](const engine::Rdd<KV>& rdd, BatchInfo* info) -> Status {
    lineages.push_back(info->progress.lineage);
    return rdd.Count().status();
  });
  RunBatches(ssc_, 2);
  ASSERT_EQ(lineages.size(), 2u);
  EXPECT_NE(lineages[0], lineages[1]);  // different RDD ids
  EXPECT_NE(lineages[0].find("reduceByKey"), std::string::npos);
  EXPECT_NE(lineages[0].find("+-"), std::string::npos);
}

TEST_F(DStreamTest, WindowedReduceEqualsRecomputationWithAndWithoutInverse) {
  const auto batches = KeyedBatches(12);
  auto input = QueueStream<KV>(ssc_, batches);
  auto sum = [](int64_t a, int64_t b) { return a + b; };
  auto minus = [](int64_t a, int64_t b) { return a - b; };
  std::map<int64_t, std::map<std::string, int64_t>> plain, incremental;
  input.ReduceByKeyAndWindow(sum, Millis(4000), Millis(2000))
      .ForeachRdd([&](const engine::Rdd<KV>& rdd, BatchInfo* info) -> Status {
        ASSIGN_OR_RETURN(auto v, rdd.Collect());
        plain[info->progress.batch_time.value() / 1000] = AsMap(v);
        return Status::OK();
      });
  input.ReduceByKeyAndWindow(sum, minus, Millis(4000), Millis(2000))
      .ForeachRdd([&](const engine::Rdd<KV>& rdd, BatchInfo* info) -> Status {
        ASSIGN_OR_RETURN(auto v, rdd.Collect());
        incremental[info->progress.batch_time.value() / 1000] = AsMap(v);
        return Status::OK();
      });
  RunBatches(ssc_, 12);
  // Windows every 2 batches (t = 1, 3, 5, ... from zero time 1s), covering the last 4 batches.
  ASSERT_EQ(plain.size(), 6u);
  ASSERT_EQ(incremental.size(), 6u);
  for (const auto& [t, got] : plain) {
    const int last = static_cast<int>(t) - 1;  // batch index of time t
    auto want = SumOf(batches, last - 3, last);
    std::erase_if(want, [](const auto& kv) { return kv.second == 0; });
    auto without_zeros = got;
    std::erase_if(without_zeros, [](const auto& kv) { return kv.second == 0; });
    EXPECT_EQ(without_zeros, want) << "window at " << t;
    EXPECT_EQ(incremental[t], want) << "incremental window at " << t;
  }
}

TEST_F(DStreamTest, WindowUnionsTheLastBatches) {
  auto input = QueueStream<int>(ssc_, {{1}, {2}, {3}, {4}});
  std::map<int64_t, std::vector<int>> seen;
  input.Window(Millis(2000), Millis(1000))
      .ForeachRdd([&](const engine::Rdd<int>& rdd, BatchInfo* info) -> Status {
        ASSIGN_OR_RETURN(auto v, rdd.Collect());
        std::sort(v.begin(), v.end());
        seen[info->progress.batch_time.value() / 1000] = v;
        return Status::OK();
      });
  RunBatches(ssc_, 4);
  EXPECT_EQ(seen[1], (std::vector<int>{1}));
  EXPECT_EQ(seen[2], (std::vector<int>{1, 2}));
  EXPECT_EQ(seen[4], (std::vector<int>{3, 4}));
}

TEST_F(DStreamTest, CountByWindow) {
  auto input = QueueStream<int>(ssc_, {{1, 1}, {2}, {3, 3, 3}, {}});
  std::map<int64_t, int64_t> counts;
  input.CountByWindow(Millis(2000), Millis(1000))
      .ForeachRdd([&](const engine::Rdd<int64_t>& rdd, BatchInfo* info) -> Status {
        ASSIGN_OR_RETURN(auto v, rdd.Collect());
        counts[info->progress.batch_time.value() / 1000] = v.empty() ? 0 : v[0];
        return Status::OK();
      });
  RunBatches(ssc_, 4);
  EXPECT_EQ(counts[1], 2);
  EXPECT_EQ(counts[2], 3);
  EXPECT_EQ(counts[3], 4);
  EXPECT_EQ(counts[4], 3);
}

TEST_F(DStreamTest, UpdateStateByKeyKeepsRunningTotalsAndTimesOutIdleKeys) {
  InMemoryStateStore store;
  auto input = QueueStream<KV>(ssc_, {{{"a", 1}, {"b", 5}}, {{"a", 2}}, {}, {}, {{"b", 1}}});
  std::vector<std::string> timed_out;
  auto totals = input.UpdateStateByKey<int64_t>(
      &store, "totals",
      [&](const std::string& key, const std::vector<int64_t>& values, std::optional<int64_t> state,
          bool is_timed_out) -> std::optional<int64_t> {
        if (is_timed_out) {
          timed_out.push_back(key);
          return std::nullopt;
        }
        int64_t total = state.value_or(0);
        for (int64_t v : values) total += v;
        return total;
      },
      Millis(2000));
  std::map<int64_t, std::map<std::string, int64_t>> updates;
  totals.ForeachRdd([&](const engine::Rdd<KV>& rdd, BatchInfo* info) -> Status {
    ASSIGN_OR_RETURN(auto v, rdd.Collect());
    updates[info->progress.batch_time.value() / 1000] = AsMap(v);
    return Status::OK();
  });
  RunBatches(ssc_, 5);
  EXPECT_EQ(updates[1], (std::map<std::string, int64_t>{{"a", 1}, {"b", 5}}));
  EXPECT_EQ(updates[2], (std::map<std::string, int64_t>{{"a", 3}}));
  // b idle since t=1: timed out at t=3; a idle since t=2: timed out at t=4; b is new at t=5.
  EXPECT_EQ(timed_out, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(updates[5], (std::map<std::string, int64_t>{{"b", 1}}));
  auto last = store.LastCommitted("totals").value();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->record.batch_id, BatchId(4));
}

TEST_F(DStreamTest, ADiscardedStreamIsNeverCalledAgain) {
  auto input = QueueStream<KV>(ssc_, {{{"a", 1}}, {{"b", 2}}});
  (void)input.Map([](const KV& kv) { return kv.second; });  // built, then dropped at once
  input.Filter([](const KV&) { return true; }).Window(Millis(2000), Millis(1000));  // also
  std::vector<int64_t> seen;
  input.ForeachRdd([&](const engine::Rdd<KV>& rdd, BatchInfo*) -> Status {
    ASSIGN_OR_RETURN(auto v, rdd.Collect());
    seen.push_back(static_cast<int64_t>(v.size()));
    return Status::OK();
  });
  // The context cleans its nodes after each batch: the dropped ones are gone from it (under
  // ASan, a call into one of them is a heap-use-after-free).
  RunBatches(ssc_, 2);
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 1}));
}

TEST_F(DStreamTest, ARetriedUpdateStateByKeyBatchAppliesOnce) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000),
                                       .clock = &clock_,
                                       .retry_backoff = Millis(1),
                                       .retry_backoff_max = Millis(1)});
  InMemoryStateStore store;
  auto input = QueueStream<KV>(ssc, {{{"a", 1}, {"b", 5}}, {{"a", 2}}});
  auto totals = input.UpdateStateByKey<int64_t>(
      &store, "totals",
      [](const std::string&, const std::vector<int64_t>& values, std::optional<int64_t> state,
         bool) -> std::optional<int64_t> {
        int64_t total = state.value_or(0);
        for (int64_t v : values) total += v;
        return total;
      });
  int failures_left = 2;  // the first batch's output fails twice (say, a sink's full disk)
  std::map<int64_t, std::map<std::string, int64_t>> updates;
  totals.ForeachRdd([&](const engine::Rdd<KV>& rdd, BatchInfo* info) -> Status {
    ASSIGN_OR_RETURN(auto v, rdd.Collect());
    if (failures_left-- > 0) return Status::Unavailable("sink disk full");
    updates[info->progress.batch_id.value()] = AsMap(v);
    return Status::OK();
  });
  RunBatches(ssc, 2);
  EXPECT_EQ(ssc.failed_attempts(), 2);
  EXPECT_EQ(updates[0], (std::map<std::string, int64_t>{{"a", 1}, {"b", 5}}));
  EXPECT_EQ(updates[1], (std::map<std::string, int64_t>{{"a", 3}}));
  auto stored = store.LastCommitted("totals").value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->record.batch_id, BatchId(1));  // one commit per batch, retries included
}

// Fails the next commit of namespace `ns` once with Unavailable (a full disk, say).
class FailOnceStore final : public ForwardingStateStore {
 public:
  FailOnceStore(StateStore* inner, std::string ns)
      : ForwardingStateStore(inner), ns_(std::move(ns)) {}
  Status Commit(const BatchCommit& commit) override {
    if (commit.ns == ns_ && !failed_) {
      failed_ = true;
      return Status::Unavailable("disk full");
    }
    return ForwardingStateStore::Commit(commit);
  }

 private:
  const std::string ns_;
  bool failed_ = false;
};

TEST_F(DStreamTest, TwoStatefulStreamsApplyABatchOnceWhenTheSecondCommitFails) {
  StreamingContext ssc(engine_.get(), {.batch_interval = Millis(1000),
                                       .clock = &clock_,
                                       .retry_backoff = Millis(1),
                                       .retry_backoff_max = Millis(1)});
  InMemoryStateStore inner;
  FailOnceStore store(&inner, "second");
  auto input = QueueStream<KV>(ssc, {{{"a", 1}}, {{"a", 2}}});
  auto sum = [](const std::string&, const std::vector<int64_t>& values, std::optional<int64_t> s,
                bool) -> std::optional<int64_t> {
    int64_t total = s.value_or(0);
    for (int64_t v : values) total += v;
    return total;
  };
  std::map<std::string, int64_t> last;
  for (const char* ns : {"first", "second"}) {
    input.UpdateStateByKey<int64_t>(&store, ns, sum)
        .ForeachRdd([&last, ns](const engine::Rdd<KV>& rdd, BatchInfo*) -> Status {
          ASSIGN_OR_RETURN(auto v, rdd.Collect());
          for (const auto& [k, total] : v) last[std::string(ns) + "/" + k] = total;
          return Status::OK();
        });
  }
  RunBatches(ssc, 2);
  EXPECT_EQ(ssc.failed_attempts(), 1);  // batch 0: "first" committed, "second" failed, retried
  EXPECT_EQ(last["first/a"], 3);
  EXPECT_EQ(last["second/a"], 3);
}

}  // namespace
}  // namespace runnel::streaming
