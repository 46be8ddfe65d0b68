#include "state/rocksdb_store.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "engine/context.h"
#include "streaming/aggregation_query.h"
#include "streaming/streaming_context.h"

namespace runnel::state {
namespace {

class RocksDbStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<RocksDbStateStore> Open() {
    auto store = RocksDbStateStore::Open({.path = dir_, .sync_commits = false});
    EXPECT_TRUE(store.ok()) << store.status();
    return std::move(store).value();
  }
  std::unique_ptr<engine::Context> tmp_ = engine::Context::Make({}).value();
  std::string dir_ = tmp_->local_dir() + "/state";
};

streaming::BatchCommit Batch(int64_t id, std::vector<std::pair<std::string, std::string>> puts,
                             std::string offset) {
  streaming::BatchCommit c;
  c.ns = "q";
  c.batch_id = BatchId(id);
  c.puts = std::move(puts);
  c.positions["topic/0"] = std::move(offset);
  c.metadata["watermark"] = std::to_string(id * 10);
  return c;
}

TEST_F(RocksDbStoreTest, CommitIsVisibleWithItsPositionsAndSurvivesReopen) {
  {
    auto store = Open();
    EXPECT_FALSE(store->LastCommitted("q").value().has_value());
    ASSERT_TRUE(store->Commit(Batch(0, {{"k1", "v1"}, {"k2", "v2"}}, "10")).ok());
    ASSERT_TRUE(store->Commit(Batch(1, {{"k1", "v1b"}}, "20")).ok());
  }
  auto store = Open();
  EXPECT_EQ(store->Get("q", "k1").value(), std::optional<std::string>("v1b"));
  EXPECT_EQ(store->Get("q", "k2").value(), std::optional<std::string>("v2"));
  EXPECT_FALSE(store->Get("q", "k3").value().has_value());
  EXPECT_FALSE(store->Get("other", "k1").value().has_value());
  auto last = store->LastCommitted("q").value();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->batch_id, BatchId(1));
  EXPECT_EQ(last->positions.at("topic/0"), "20");
  EXPECT_EQ(last->metadata.at("watermark"), "10");
}

// A disk that fills up or fails: commits fail with a transient status and change nothing;
// once the disk is back, the same batch commits and the store is whole after a reopen.
class DiskFaultTest : public RocksDbStoreTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(DiskFaultTest, CommitsFailTransientlyWhileTheDiskFailsAndResumeAfter) {
  const std::string control = tmp_->local_dir() + "/fault";
  {
    auto opened = RocksDbStateStore::Open({.path = dir_, .disk_fault_file = control});
    ASSERT_TRUE(opened.ok()) << opened.status();
    auto store = std::move(opened).value();
    ASSERT_TRUE(store->Commit(Batch(0, {{"k", "v0"}}, "10")).ok());
    { std::ofstream(control) << GetParam() << "\n"; }
    std::this_thread::sleep_for(std::chrono::milliseconds(120));  // the control file is polled
    for (int attempt = 0; attempt < 3; ++attempt) {
      const Status st = store->Commit(Batch(1, {{"k", "v1"}}, "20"));
      EXPECT_TRUE(streaming::IsTransient(st)) << st;
    }
    std::filesystem::remove(control);
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    // Nothing of the failed attempts is visible; the same batch now commits.
    EXPECT_EQ(store->Get("q", "k").value(), std::optional<std::string>("v0"));
    EXPECT_EQ(store->LastCommitted("q").value()->positions.at("topic/0"), "10");
    const Status st = store->Commit(Batch(1, {{"k", "v1"}}, "20"));
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_TRUE(store->Commit(Batch(2, {{"k", "v2"}}, "30")).ok());
  }
  auto store = Open();
  EXPECT_EQ(store->Get("q", "k").value(), std::optional<std::string>("v2"));
  EXPECT_EQ(store->LastCommitted("q").value()->batch_id, BatchId(2));
}

INSTANTIATE_TEST_SUITE_P(Faults, DiskFaultTest, ::testing::Values("enospc", "eio"));

TEST_F(RocksDbStoreTest, BatchIdsMustIncrease) {
  auto store = Open();
  ASSERT_TRUE(store->Commit(Batch(5, {}, "1")).ok());  // the first may start anywhere
  EXPECT_EQ(store->Commit(Batch(5, {{"x", "y"}}, "2")).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Commit(Batch(4, {{"x", "y"}}, "2")).code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store->Get("q", "x").value().has_value()) << "a refused commit changes nothing";
  EXPECT_TRUE(store->Commit(Batch(7, {}, "2")).ok()) << "empty batches 6 leave a gap";
}

TEST_F(RocksDbStoreTest, ScanIsOrderedAndBounded) {
  auto store = Open();
  ASSERT_TRUE(
      store->Commit(Batch(0, {{"a1", "1"}, {"a2", "2"}, {"b1", "3"}, {"c", "4"}}, "0")).ok());
  std::vector<std::string> keys;
  ASSERT_TRUE(store
                  ->Scan("q", "a", "b2",
                         [&](const std::string& k, const std::string&) {
                           keys.push_back(k);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"a1", "a2", "b1"}));
  streaming::BatchCommit del = Batch(1, {}, "1");
  del.deletes = {"a2"};
  ASSERT_TRUE(store->Commit(del).ok());
  keys.clear();
  ASSERT_TRUE(store
                  ->Scan("q", "", "",
                         [&](const std::string& k, const std::string&) {
                           keys.push_back(k);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"a1", "b1", "c"}));
}

std::vector<std::string> Keys(RocksDbStateStore* store) {
  std::vector<std::string> keys;
  EXPECT_TRUE(store
                  ->Scan("q", "", "",
                         [&](const std::string& k, const std::string&) {
                           keys.push_back(k);
                           return true;
                         })
                  .ok());
  return keys;
}

TEST_F(RocksDbStoreTest, RetentionDropsOldWindowsAtCompactionAndSurvivesReopen) {
  const std::string old_key = streaming::EncodeStateKey({"a.com", "/1"}, 1'000);
  const std::string new_key = streaming::EncodeStateKey({"a.com", "/1"}, 9'000);
  const std::string other_key = streaming::EncodeStateKey({"b.com", "/2"}, 2'000);
  {
    auto store = Open();
    ASSERT_TRUE(
        store->Commit(Batch(0, {{old_key, "1"}, {new_key, "2"}, {other_key, "3"}}, "1")).ok());
    streaming::BatchCommit expire = Batch(1, {}, "2");
    expire.expire_before_ms = 5'000;  // old_key and other_key are past retention
    ASSERT_TRUE(store->Commit(expire).ok());
    EXPECT_EQ(store->LastCommitted("q").value()->metadata.at(streaming::kExpireBeforeKey), "5000");
  }
  auto store = Open();  // the cutoff comes back from the batch record
  EXPECT_EQ(Keys(store.get()).size(), 3u) << "nothing is dropped before a compaction";
  ASSERT_TRUE(store->Compact("q").ok());
  EXPECT_EQ(Keys(store.get()), (std::vector<std::string>{new_key}));
}

TEST_F(RocksDbStoreTest, ResetDropsStateButKeepsTheBatchSequence) {
  auto store = Open();
  ASSERT_TRUE(store->Commit(Batch(0, {{"a", "1"}, {"b", "2"}}, "10")).ok());
  ASSERT_TRUE(store->Reset("q").ok());
  EXPECT_TRUE(Keys(store.get()).empty());
  auto last = store->LastCommitted("q").value();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->batch_id, BatchId(0));
  EXPECT_TRUE(last->positions.empty());
  EXPECT_TRUE(last->metadata.empty());
  EXPECT_TRUE(store->Commit(Batch(1, {{"c", "3"}}, "1")).ok());
  EXPECT_EQ(Keys(store.get()), (std::vector<std::string>{"c"}));
}

TEST_F(RocksDbStoreTest, ADatabaseWithoutCurrentIsAnErrorNotANewDatabase) {
  {
    auto store = Open();
    ASSERT_TRUE(store->Commit(Batch(0, {{"a", "1"}}, "10")).ok());
  }
  ASSERT_TRUE(std::filesystem::remove(dir_ + "/CURRENT"));
  auto store = RocksDbStateStore::Open({.path = dir_});
  EXPECT_FALSE(store.ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/CURRENT")) << "never overwritten";
}

TEST_F(RocksDbStoreTest, ReportsSizeAndTickers) {
  auto store = Open();
  std::vector<std::pair<std::string, std::string>> puts;
  for (int i = 0; i < 1000; ++i)
    puts.emplace_back("key" + std::to_string(i), std::string(100, 'x'));
  ASSERT_TRUE(store->Commit(Batch(0, puts, "1")).ok());
  const NamespaceStats stats = store->Stats("q");
  EXPECT_GT(stats.keys, 500);
  EXPECT_GT(stats.bytes, 100'000);
  EXPECT_GT(store->Tickers().at("bytes_written"), 100'000u);
}

}  // namespace
}  // namespace runnel::state
