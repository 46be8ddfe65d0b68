#include "state/rocksdb_store.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "engine/context.h"
#include "state/state.pb.h"
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
                             int64_t offset) {
  streaming::BatchCommit c;
  c.ns = "q";
  c.record.batch_id = BatchId(id);
  c.puts = std::move(puts);
  c.record.positions["kafka:topic/0"].set_next_offset(offset);
  c.record.watermark_ms = id * 10;
  return c;
}

int64_t Offset(const streaming::CommittedBatch& b) {
  return b.record.positions.at("kafka:topic/0").next_offset();
}

TEST_F(RocksDbStoreTest, CommitIsVisibleWithItsPositionsAndSurvivesReopen) {
  {
    auto store = Open();
    EXPECT_FALSE(store->LastCommitted("q").value().has_value());
    ASSERT_TRUE(store->Commit(Batch(0, {{"k1", "v1"}, {"k2", "v2"}}, 10)).ok());
    ASSERT_TRUE(store->Commit(Batch(1, {{"k1", "v1b"}}, 20)).ok());
  }
  auto store = Open();
  EXPECT_EQ(store->Get("q", "k1").value(), std::optional<std::string>("v1b"));
  EXPECT_EQ(store->Get("q", "k2").value(), std::optional<std::string>("v2"));
  EXPECT_FALSE(store->Get("q", "k3").value().has_value());
  EXPECT_FALSE(store->Get("other", "k1").value().has_value());
  auto last = store->LastCommitted("q").value();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->record.batch_id, BatchId(1));
  EXPECT_EQ(Offset(*last), 20);
  EXPECT_EQ(last->record.watermark_ms, 10);
}

// A batch too large to hold commits sorted runs (SST files) with its remaining puts and its
// record in one atomic ingestion; runs not committed leave no file.
TEST_F(RocksDbStoreTest, SortedRunsCommitWithThePutsAndTheRecordAndLeaveNoFile) {
  const std::string ingest = dir_ + "-ingest";
  auto files_in = [](const std::string& dir) {
    int n = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir)) n += f.is_regular_file();
    return n;
  };
  {
    auto store = Open();
    ASSERT_TRUE(store->Commit(Batch(0, {{"a", "a0"}, {"m", "m0"}}, 10)).ok());
    auto r1 = store->NewSortedRun("q").value();
    auto r2 = store->NewSortedRun("q").value();
    auto empty = store->NewSortedRun("q").value();
    for (const auto& [k, v] :
         std::vector<std::pair<std::string, std::string>>{{"b", "b1"}, {"d", "d1"}, {"m", "m1"}}) {
      ASSERT_TRUE(r1->Add(k, v).ok());
    }
    for (const auto& [k, v] :
         std::vector<std::pair<std::string, std::string>>{{"a", "a1"}, {"c", "c1"}}) {
      ASSERT_TRUE(r2->Add(k, v).ok());
    }
    EXPECT_FALSE(r2->Add("b", "out of order").ok());
    for (auto* r : {r1.get(), r2.get(), empty.get()}) ASSERT_TRUE(r->Finish().ok());
    EXPECT_EQ(files_in(ingest), 2);  // an empty run has no file
    streaming::BatchCommit commit = Batch(1, {{"z", "z1"}}, 20);
    commit.runs = {r1.get(), r2.get(), empty.get()};
    const Status st = store->Commit(commit);
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_EQ(files_in(ingest), 0);  // moved into the database
    // A run that is never committed goes when it does.
    auto dropped = store->NewSortedRun("q").value();
    ASSERT_TRUE(dropped->Add("y", "never").ok());
    ASSERT_TRUE(dropped->Finish().ok());
    EXPECT_EQ(files_in(ingest), 1);
  }
  EXPECT_EQ(files_in(ingest), 0);
  { std::ofstream(ingest + "/left-by-a-crash.sst") << "x"; }
  auto store = Open();
  EXPECT_EQ(files_in(ingest), 0);  // what a crash left is removed at open
  const std::vector<std::pair<std::string, std::string>> want = {
      {"a", "a1"}, {"b", "b1"}, {"c", "c1"}, {"d", "d1"}, {"m", "m1"}, {"z", "z1"}};
  std::vector<std::pair<std::string, std::string>> got;
  ASSERT_TRUE(store
                  ->Scan("q", "", "",
                         [&](const std::string& k, const std::string& v) {
                           got.emplace_back(k, v);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(got, want);
  EXPECT_FALSE(store->Get("q", "y").value().has_value());
  EXPECT_EQ(Offset(*store->LastCommitted("q").value()), 20);
  // Batch ids still increase across both kinds of commit.
  EXPECT_FALSE(store->Commit(Batch(1, {{"k", "v"}}, 30)).ok());
  ASSERT_TRUE(store->Commit(Batch(2, {{"a", "a2"}}, 30)).ok());
  EXPECT_EQ(store->Get("q", "a").value(), std::optional<std::string>("a2"));
}

// A disk that fills up or fails: commits fail with a transient status and change nothing;
// once the disk is back, the same batch commits and the store is whole after a reopen.
class DiskFaultTest : public RocksDbStoreTest, public ::testing::WithParamInterface<std::string> {};

TEST_F(RocksDbStoreTest, ACommitMergesIntoTheStoredRecord) {
  auto store = Open();
  streaming::BatchCommit first = Batch(0, {}, 10);
  first.record.positions["kafka:topic/1"].set_next_offset(7);
  first.record.definition = "v1";
  first.record.expire_before_ms = 500;
  ASSERT_TRUE(store->Commit(first).ok());
  streaming::BatchCommit second = Batch(1, {}, 20);  // does not plan topic/1 (not owned now)
  second.record.definition = "v2";
  ASSERT_TRUE(store->Commit(second).ok());
  const auto last = store->LastCommitted("q").value();
  EXPECT_EQ(Offset(*last), 20);
  EXPECT_EQ(last->record.positions.at("kafka:topic/1").next_offset(), 7)
      << "an input the batch did not plan keeps its position";
  EXPECT_EQ(last->record.definition, "v2") << "what the batch sets replaces the stored value";
  EXPECT_EQ(last->record.watermark_ms, 10);
  EXPECT_EQ(last->record.expire_before_ms, 500) << "what it leaves unset keeps the stored value";
}

// State written before typed batch records (format 1: positions and metadata as text) is
// read as the same typed record; the next commit writes format 2.
TEST_F(RocksDbStoreTest, AFormatOneBatchRecordIsMigratedOnRead) {
  { auto store = Open(); }
  {
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies({}, dir_, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& n : names) families.emplace_back(n, rocksdb::ColumnFamilyOptions());
    ASSERT_TRUE(rocksdb::DB::Open({}, dir_, families, &handles, &raw).ok());
    v1::BatchRecord old;
    old.set_format_version(1);
    old.set_batch_id(6);
    (*old.mutable_positions())["kafka:clicks/0"] = "1234";
    (*old.mutable_positions())["file:/data/a.jsonl"] = "4096 40";
    (*old.mutable_metadata())["watermark"] = "1505624400000";
    (*old.mutable_metadata())["max_event_time"] = "1505628000000";
    (*old.mutable_metadata())["batch_time"] = "1700000000000";
    (*old.mutable_metadata())["definition_fingerprint"] = "abc";
    (*old.mutable_metadata())["expire_before"] = "99";
    ASSERT_TRUE(raw->Put({}, "batch/q", old.SerializeAsString()).ok());
    for (auto* h : handles) ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(raw->Close().ok());
    delete raw;
  }
  auto store = Open();
  auto last = store->LastCommitted("q");
  ASSERT_TRUE(last.ok()) << last.status();
  const streaming::BatchRecord& r = (*last)->record;
  EXPECT_EQ(r.batch_id, BatchId(6));
  EXPECT_EQ(r.positions.at("kafka:clicks/0").next_offset(), 1234);
  EXPECT_EQ(r.positions.at("file:/data/a.jsonl").file().byte(), 4096);
  EXPECT_EQ(r.positions.at("file:/data/a.jsonl").file().line(), 40);
  EXPECT_EQ(r.watermark_ms, 1505624400000);
  EXPECT_EQ(r.max_event_time_ms, 1505628000000);
  EXPECT_EQ(r.batch_time, BatchTime(1700000000000));
  EXPECT_EQ(r.definition_fingerprint, "abc");
  EXPECT_EQ(r.expire_before_ms, 99);
  // The next commit goes on from it, in the typed format.
  ASSERT_TRUE(store->Commit(Batch(7, {}, 1300)).ok());
  EXPECT_EQ(
      store->LastCommitted("q").value()->record.positions.at("file:/data/a.jsonl").file().line(),
      40);
}

TEST_P(DiskFaultTest, CommitsFailTransientlyWhileTheDiskFailsAndResumeAfter) {
  const std::string control = tmp_->local_dir() + "/fault";
  {
    auto opened = RocksDbStateStore::Open({.path = dir_, .disk_fault_file = control});
    ASSERT_TRUE(opened.ok()) << opened.status();
    auto store = std::move(opened).value();
    ASSERT_TRUE(store->Commit(Batch(0, {{"k", "v0"}}, 10)).ok());
    { std::ofstream(control) << GetParam() << "\n"; }
    std::this_thread::sleep_for(std::chrono::milliseconds(120));  // the control file is polled
    for (int attempt = 0; attempt < 3; ++attempt) {
      const Status st = store->Commit(Batch(1, {{"k", "v1"}}, 20));
      EXPECT_EQ(st.retry(), RetryScope::kBatch) << st;
    }
    {
      // A batch that writes sorted runs fails as transiently, at the run or at the commit.
      auto run = store->NewSortedRun("q").value();
      Status st = run->Add("k", "v1");
      if (st.ok()) st = run->Finish();
      if (st.ok()) {
        streaming::BatchCommit commit = Batch(1, {}, 20);
        commit.runs = {run.get()};
        st = store->Commit(commit);
      }
      EXPECT_EQ(st.retry(), RetryScope::kBatch) << st;
    }
    std::filesystem::remove(control);
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    // Nothing of the failed attempts is visible; the same batch now commits.
    EXPECT_EQ(store->Get("q", "k").value(), std::optional<std::string>("v0"));
    EXPECT_EQ(Offset(*store->LastCommitted("q").value()), 10);
    const Status st = store->Commit(Batch(1, {{"k", "v1"}}, 20));
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_TRUE(store->Commit(Batch(2, {{"k", "v2"}}, 30)).ok());
  }
  auto store = Open();
  EXPECT_EQ(store->Get("q", "k").value(), std::optional<std::string>("v2"));
  EXPECT_EQ(store->LastCommitted("q").value()->record.batch_id, BatchId(2));
}

INSTANTIATE_TEST_SUITE_P(Faults, DiskFaultTest, ::testing::Values("enospc", "eio"));

TEST_F(RocksDbStoreTest, BatchIdsMustIncrease) {
  auto store = Open();
  ASSERT_TRUE(store->Commit(Batch(5, {}, 1)).ok());  // the first may start anywhere
  EXPECT_EQ(store->Commit(Batch(5, {{"x", "y"}}, 2)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Commit(Batch(4, {{"x", "y"}}, 2)).code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store->Get("q", "x").value().has_value()) << "a refused commit changes nothing";
  EXPECT_TRUE(store->Commit(Batch(7, {}, 2)).ok()) << "empty batches 6 leave a gap";
}

TEST_F(RocksDbStoreTest, ScanIsOrderedAndBounded) {
  auto store = Open();
  ASSERT_TRUE(store->Commit(Batch(0, {{"a1", "1"}, {"a2", "2"}, {"b1", "3"}, {"c", "4"}}, 0)).ok());
  std::vector<std::string> keys;
  ASSERT_TRUE(store
                  ->Scan("q", "a", "b2",
                         [&](const std::string& k, const std::string&) {
                           keys.push_back(k);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"a1", "a2", "b1"}));
  streaming::BatchCommit del = Batch(1, {}, 1);
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
        store->Commit(Batch(0, {{old_key, "1"}, {new_key, "2"}, {other_key, "3"}}, 1)).ok());
    streaming::BatchCommit expire = Batch(1, {}, 2);
    expire.record.expire_before_ms = 5'000;  // old_key and other_key are past retention
    ASSERT_TRUE(store->Commit(expire).ok());
    EXPECT_EQ(store->LastCommitted("q").value()->record.expire_before_ms, 5'000);
  }
  auto store = Open();  // the cutoff comes back from the batch record
  EXPECT_EQ(Keys(store.get()).size(), 3u) << "nothing is dropped before a compaction";
  ASSERT_TRUE(store->Compact("q").ok());
  EXPECT_EQ(Keys(store.get()), (std::vector<std::string>{new_key}));
}

TEST_F(RocksDbStoreTest, ResetDropsStateButKeepsTheBatchSequence) {
  auto store = Open();
  ASSERT_TRUE(store->Commit(Batch(0, {{"a", "1"}, {"b", "2"}}, 10)).ok());
  ASSERT_TRUE(store->Reset("q").ok());
  EXPECT_TRUE(Keys(store.get()).empty());
  auto last = store->LastCommitted("q").value();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->record.batch_id, BatchId(0));
  EXPECT_TRUE(last->record.positions.empty());
  EXPECT_EQ(last->record.watermark_ms, INT64_MIN);
  EXPECT_TRUE(store->Commit(Batch(1, {{"c", "3"}}, 1)).ok());
  EXPECT_EQ(Keys(store.get()), (std::vector<std::string>{"c"}));
}

TEST_F(RocksDbStoreTest, ADatabaseWithoutCurrentIsAnErrorNotANewDatabase) {
  {
    auto store = Open();
    ASSERT_TRUE(store->Commit(Batch(0, {{"a", "1"}}, 10)).ok());
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
  ASSERT_TRUE(store->Commit(Batch(0, puts, 1)).ok());
  const NamespaceStats stats = store->Stats("q");
  EXPECT_GT(stats.keys, 500);
  EXPECT_GT(stats.bytes, 100'000);
  EXPECT_GT(store->Tickers().at("bytes_written"), 100'000u);
}

}  // namespace
}  // namespace runnel::state
