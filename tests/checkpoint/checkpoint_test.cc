#include "checkpoint/checkpoint.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "checkpoint/state_dir.h"
#include "common/file_util.h"
#include "engine/context.h"

namespace runnel::checkpoint {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  std::unique_ptr<state::RocksDbStateStore> OpenLive() {
    auto store = OpenState(dir_, {.sync_commits = false});
    EXPECT_TRUE(store.ok()) << store.status();
    return std::move(store).value();
  }

  // Commits batch `id` of query "q": key "k<id>" = "v<id>", offset id + 1.
  static void CommitBatch(state::RocksDbStateStore* store, int64_t id) {
    streaming::BatchCommit c;
    c.ns = "q";
    c.record.batch_id = BatchId(id);
    c.puts = {{"k" + std::to_string(id), "v" + std::to_string(id)}};
    c.record.positions["kafka:clicks/0"].set_next_offset(id + 1);
    c.record.watermark_ms = 1000 * id;
    ASSERT_TRUE(store->Commit(c).ok());
  }

  static int64_t LastBatch(state::RocksDbStateStore* store) {
    auto last = store->LastCommitted("q");
    EXPECT_TRUE(last.ok() && last->has_value());
    return last.ok() && last->has_value() ? (*last)->record.batch_id.value() : -1;
  }

  static void FlipByte(const std::string& path, size_t offset) {
    std::string bytes = ReadFile(path).value();
    ASSERT_LT(offset, bytes.size());
    bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
    ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  }

  std::unique_ptr<engine::Context> tmp_ = engine::Context::Make({}).value();
  std::string dir_ = tmp_->local_dir() + "/state";
};

v1::Manifest SampleManifest() {
  v1::Manifest m;
  m.set_format_version(kManifestFormatVersion);
  m.set_checkpoint_id(7);
  m.set_created_unix_ms(1'700'000'000'000);
  auto* q = m.add_queries();
  q->set_name("hourly_pages");
  q->set_batch_id(41);
  // As versions before typed batch records wrote it.
  (*q->mutable_positions())["kafka:clicks/0"] = "1234";
  (*q->mutable_metadata())["watermark"] = "1505624400000";
  auto* f = m.add_files();
  f->set_name("000009.sst");
  f->set_size(4096);
  f->set_crc32c(0xdeadbeef);
  return m;
}

TEST(ManifestTest, RoundTripsAndDetectsEveryFlippedByte) {
  const v1::Manifest m = SampleManifest();
  const std::string bytes = EncodeManifest(m);
  auto decoded = DecodeManifest(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->SerializeAsString(), m.SerializeAsString());
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_EQ(DecodeManifest(bad).status().code(), StatusCode::kCorruption) << "byte " << i;
  }
  EXPECT_FALSE(DecodeManifest(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(DecodeManifest("").ok());
}

TEST(ManifestTest, AQueryWrittenBeforeTypedRecordsReadsAsTheSameRecord) {
  const v1::Manifest m = SampleManifest();
  auto record = QueryRecord(m.queries(0));
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->batch_id, BatchId(41));
  EXPECT_EQ(record->positions.at("kafka:clicks/0").next_offset(), 1234);
  EXPECT_EQ(record->watermark_ms, 1505624400000);
  EXPECT_NE(ManifestText(m).find("position kafka:clicks/0 = 1234"), std::string::npos)
      << ManifestText(m);
}

TEST(ManifestTest, RefusesAnUnknownFormatVersion) {
  v1::Manifest m = SampleManifest();
  m.set_format_version(2);
  EXPECT_EQ(DecodeManifest(EncodeManifest(m)).status().code(), StatusCode::kCorruption);
}

TEST(ManifestTest, RefusesFileNamesOutsideTheCheckpoint) {
  // A manifest with a valid CRC can still be crafted: Verify must never read outside db/.
  for (const char* name : {"../../etc/passwd", "/etc/passwd", "a/../../b", "..", ""}) {
    v1::Manifest m = SampleManifest();
    m.mutable_files(0)->set_name(name);
    auto decoded = DecodeManifest(EncodeManifest(m));
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption) << name;
  }
  v1::Manifest fine = SampleManifest();
  fine.mutable_files(0)->set_name("sub/..hidden.sst");  // ".." inside a name is a name
  EXPECT_TRUE(DecodeManifest(EncodeManifest(fine)).ok());
}

TEST(ManifestTest, Crc32cIsCastagnoli) {
  // The standard check value of CRC-32C, and the same when fed in two pieces.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  Crc32cAccumulator pieces;
  pieces.process_bytes("1234", 4);
  pieces.process_bytes("56789", 5);
  EXPECT_EQ(pieces.checksum(), 0xE3069283u);
}

TEST_F(CheckpointTest, TakeRecordsBatchesAndKeepsTheNewest) {
  auto store = OpenLive();
  CheckpointStore checkpoints(dir_, /*keep=*/2);
  for (int64_t batch = 0; batch < 3; ++batch) {
    CommitBatch(store.get(), batch);
    auto m = checkpoints.Take(store.get());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->checkpoint_id(), batch + 1);
    ASSERT_EQ(m->queries_size(), 1);
    EXPECT_EQ(m->queries(0).name(), "q");
    EXPECT_EQ(m->queries(0).batch_id(), batch);
    EXPECT_EQ(m->queries(0).watermark_ms(), 1000 * batch);
    EXPECT_EQ(QueryRecord(m->queries(0))->positions.at("kafka:clicks/0").next_offset(), batch + 1);
    EXPECT_GT(m->files_size(), 0);
  }
  auto entries = ListCheckpoints(dir_).value();
  ASSERT_EQ(entries.size(), 2u);  // keep: 2
  EXPECT_EQ(entries[0].id, 2);
  EXPECT_EQ(entries[1].id, 3);
  for (const auto& e : entries) EXPECT_TRUE(Verify(e).status.ok());
}

TEST_F(CheckpointTest, ACheckpointReadsOnlyTheFilesThatChangedSinceTheLastOne) {
  auto store = OpenLive();
  // A state of some megabytes that does not compress (the checkpoint flushes it into SSTs).
  std::mt19937_64 random(7);
  for (int64_t batch = 0; batch < 4; ++batch) {
    streaming::BatchCommit c{.ns = "q", .record = {.batch_id = BatchId(batch)}};
    for (int i = 0; i < 2000; ++i) {
      std::string value;
      for (int w = 0; w < 125; ++w) value += fmt::format("{:016x}", random());
      c.puts.emplace_back(fmt::format("b{}k{:05}", batch, i), std::move(value));
    }
    ASSERT_TRUE(store->Commit(c).ok());
  }
  CheckpointStore checkpoints(dir_, /*keep=*/2);
  auto first = checkpoints.Take(store.get());
  ASSERT_TRUE(first.ok()) << first.status();
  const auto full = checkpoints.last_take();
  EXPECT_EQ(full.scanned_files, full.files) << "the first checkpoint reads everything";
  EXPECT_GT(full.scanned_bytes, 4'000'000);

  // One small batch more: only the new SST and the small files are read again.
  CommitBatch(store.get(), 4);
  auto second = checkpoints.Take(store.get());
  ASSERT_TRUE(second.ok()) << second.status();
  const auto changed = checkpoints.last_take();
  EXPECT_LT(changed.scanned_bytes, full.scanned_bytes / 10)
      << changed.scanned_files << " of " << changed.files << " files read";
  EXPECT_LT(changed.scanned_files, changed.files);
  // Its manifest still describes every file, and verification reads them all.
  auto entries = ListCheckpoints(dir_).value();
  ASSERT_EQ(entries.size(), 2u);
  const Verification v = Verify(entries.back());
  EXPECT_TRUE(v.status.ok()) << v.status;
  EXPECT_EQ(v.files, changed.files);

  // A file that changed under a reused name is still caught by verification.
  for (const v1::FileEntry& f : entries.back().manifest->files()) {
    if (!f.name().ends_with(".sst")) continue;
    FlipByte(entries.back().path + "/db/" + f.name(), 100);
    break;
  }
  EXPECT_FALSE(Verify(entries.back()).status.ok());
}

TEST_F(CheckpointTest, LeftoverTemporaryCheckpointIsIgnoredAndRemoved) {
  auto store = OpenLive();
  CommitBatch(store.get(), 0);
  ASSERT_TRUE(MakeDirs(dir_ + "/checkpoints/5.tmp/db").ok());  // a crash mid-checkpoint
  EXPECT_TRUE(ListCheckpoints(dir_).value().empty());
  CheckpointStore checkpoints(dir_, 3);
  auto m = checkpoints.Take(store.get());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->checkpoint_id(), 1);
  EXPECT_FALSE(fs::exists(dir_ + "/checkpoints/5.tmp"));
}

TEST_F(CheckpointTest, VerifyFindsAChangedFileAndAFlippedManifestByte) {
  auto store = OpenLive();
  CommitBatch(store.get(), 0);
  CheckpointStore checkpoints(dir_, 3);
  ASSERT_TRUE(checkpoints.Take(store.get()).ok());
  auto entries = ListCheckpoints(dir_).value();
  ASSERT_EQ(entries.size(), 1u);
  const v1::Manifest manifest = *entries[0].manifest;

  // A data file changed behind the manifest's back.
  const std::string victim = manifest.files(0).name();
  const std::string path = entries[0].path + "/db/" + victim;
  const std::string original = ReadFile(path).value();
  FlipByte(path, original.size() / 2);
  Verification v = Verify(entries[0]);
  EXPECT_FALSE(v.status.ok());
  ASSERT_FALSE(v.problems.empty());
  EXPECT_NE(v.problems[0].find(victim), std::string::npos) << v.problems[0];
  ASSERT_TRUE(WriteFileAtomically(path, original).ok());
  EXPECT_TRUE(Verify(entries[0]).status.ok());

  // A flipped byte in the manifest.
  FlipByte(entries[0].path + "/" + kManifestFile, 20);
  entries = ListCheckpoints(dir_).value();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_FALSE(entries[0].manifest.has_value());
  EXPECT_EQ(entries[0].manifest_status.code(), StatusCode::kCorruption);
  EXPECT_FALSE(Verify(entries[0]).status.ok());
}

TEST_F(CheckpointTest, ALostLiveDatabaseIsRestoredFromTheNewestValidCheckpoint) {
  {
    auto store = OpenLive();
    CheckpointStore checkpoints(dir_, 5);
    for (int64_t batch = 0; batch < 3; ++batch) {
      CommitBatch(store.get(), batch);
      ASSERT_TRUE(checkpoints.Take(store.get()).ok());
    }
  }
  // The newest checkpoint (3, batch 2) is corrupt; the live database lost its CURRENT file.
  FlipByte(dir_ + "/checkpoints/3/" + kManifestFile, 30);
  ASSERT_TRUE(fs::remove(dir_ + "/db/CURRENT"));

  auto store = OpenLive();
  EXPECT_EQ(LastBatch(store.get()), 1);  // checkpoint 2
  EXPECT_EQ(store->Get("q", "k1").value(), std::optional<std::string>("v1"));
  EXPECT_EQ(store->Get("q", "k2").value(), std::nullopt);
  EXPECT_EQ(store->LastCommitted("q").value()->record.positions.at("kafka:clicks/0").next_offset(),
            2);
  // The broken database was set aside, not deleted.
  bool kept_aside = false;
  for (const auto& e : fs::directory_iterator(dir_)) {
    kept_aside |= e.path().filename().string().starts_with("db.broken-");
  }
  EXPECT_TRUE(kept_aside);
}

TEST_F(CheckpointTest, ALiveDatabaseBehindTheNewestCheckpointIsReplaced) {
  const std::string old_copy = tmp_->local_dir() + "/old-db";
  {
    auto store = OpenLive();
    CheckpointStore checkpoints(dir_, 5);
    CommitBatch(store.get(), 0);
    ASSERT_TRUE(checkpoints.Take(store.get()).ok());
    ASSERT_TRUE(RestoreInto(ListCheckpoints(dir_).value().back(), old_copy).ok());
    CommitBatch(store.get(), 1);
    ASSERT_TRUE(checkpoints.Take(store.get()).ok());
  }
  // The live database goes back in time (say, a disk restored from an old snapshot).
  fs::remove_all(dir_ + "/db");
  fs::rename(old_copy, dir_ + "/db");
  auto store = OpenLive();
  EXPECT_EQ(LastBatch(store.get()), 1);
}

TEST_F(CheckpointTest, NoValidCheckpointAndABrokenDatabaseRefusesToStart) {
  {
    auto store = OpenLive();
    CommitBatch(store.get(), 0);
  }
  ASSERT_TRUE(fs::remove(dir_ + "/db/CURRENT"));
  auto store = OpenState(dir_, {.sync_commits = false});
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("no valid checkpoint"), std::string::npos)
      << store.status();
  EXPECT_TRUE(fs::exists(dir_ + "/db"));  // left for the operator
}

TEST_F(CheckpointTest, ADatabaseInUseIsReportedNeverSetAside) {
  auto store = OpenLive();
  CheckpointStore checkpoints(dir_, 5);
  CommitBatch(store.get(), 0);
  ASSERT_TRUE(checkpoints.Take(store.get()).ok());
  // A second open while the first holds the database: RocksDB's own lock refuses it. That is
  // an error to report, not a reason to restore a checkpoint over the live database.
  auto second = OpenState(dir_, {.sync_commits = false});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().code(), StatusCode::kCorruption) << second.status();
  EXPECT_NE(second.status().message().find("left as it is"), std::string::npos) << second.status();
  EXPECT_TRUE(BrokenStates(dir_).empty());
  // The first owner goes on: it commits and checkpoints into the database at its path.
  CommitBatch(store.get(), 1);
  ASSERT_TRUE(checkpoints.Take(store.get()).ok()) << "the live database was moved";
  EXPECT_EQ(LastBatch(store.get()), 1);
}

TEST_F(CheckpointTest, OneLockHolderPerStateDirectory) {
  auto first = StateDirLock::Acquire(dir_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(ReadFile(dir_ + "/" + kLockFile).value(), std::to_string(getpid()) + "\n");
  auto second = StateDirLock::Acquire(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(dir_), std::string::npos) << second.status();
  EXPECT_NE(second.status().message().find("pid " + std::to_string(getpid())), std::string::npos)
      << second.status();
  first->reset();  // released
  EXPECT_TRUE(StateDirLock::Acquire(dir_).ok());
}

}  // namespace
}  // namespace runnel::checkpoint
