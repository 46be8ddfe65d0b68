// state_bench: the cost of a batch commit and of a checkpoint, each next to a plain RocksDB
// baseline measured in the same run on the same disk.
//
//   state_bench [--keys=1000,10000,100000] [--batches=5] [--checkpoint_keys=1000000,10000000]
//               [--runs=3] [--dir=DIR] [--json=FILE]
//
// commit:     per batch of K changed (customer, url, hour) keys, each holding the flagship
//             aggregates (count, distinct sessions, referrer counts): read the stored row,
//             merge, encode (protobuf), and commit with positions in one synced WriteBatch.
//             Baseline: DB::Write of a WriteBatch with the same keys and value bytes (synced),
//             no read, no merge, no encoding.
// checkpoint: CheckpointStore::Take of a state with N keys (RocksDB checkpoint + CRC32C and
//             fsync of every file + manifest). Baseline: rocksdb::Checkpoint alone. Then, for
//             each run, a batch of 100k changed keys, a checkpoint after it (only new files
//             are checksummed), and a restart to ready (open + every query's batch record).
// hot_key:    per record, adding a visitor to one key's exact count_distinct holding D
//             distinct visitors (each record a new visitor, then the cell encoded once, as a
//             batch does). Baseline: the same at D = the smallest size. Target: D = 1M within 2x
//             of D = 1k.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "checkpoint/checkpoint.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "streaming/aggregation_query.h"

namespace runnel::bench {
namespace {

namespace fs = std::filesystem;
using streaming::AggregateSpec;
using streaming::AggRow;

const std::vector<AggregateSpec> kSpecs = {
    {"page_views", AggregateSpec::Kind::kCount, ""},
    {"visitors", AggregateSpec::Kind::kCountDistinct, "session_id"},
    {"referrers", AggregateSpec::Kind::kCountValues, "referrer"}};

double Seconds(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Check(const Status& st, const char* what) {
  if (!st.ok()) {
    fmt::print(stderr, "state_bench: {}: {}\n", what, st.ToString());
    std::exit(1);
  }
}

void Check(const rocksdb::Status& st, const char* what) {
  if (!st.ok()) {
    fmt::print(stderr, "state_bench: {}: {}\n", what, st.ToString());
    std::exit(1);
  }
}

// The partial aggregates one batch contributes to key i: a few views from a few sessions.
AggRow Partial(std::mt19937_64& rng) {
  static const char* kReferrers[] = {"http://google.com/", "http://bing.com/",
                                     "http://facebook.com/"};
  AggRow row(kSpecs.size());
  for (int v = 0; v < 3; ++v) {
    Check(streaming::AddValue(kSpecs[0], "", &row[0]), "add");
    Check(streaming::AddValue(kSpecs[1], fmt::format("s{}", rng() % 210), &row[1]), "add");
    Check(streaming::AddValue(kSpecs[2], kReferrers[rng() % 3], &row[2]), "add");
  }
  return row;
}

std::string Key(int64_t i) {
  return streaming::EncodeStateKey(
      {fmt::format("c{}.example", i % 100), fmt::format("http://c.example/articles/{}", i)},
      1'505'606'400'000 + (i % 24) * 3'600'000);
}

struct CommitFigure {
  int64_t keys = 0;
  double runnel_seconds = 0;    // median per batch: read + merge + encode + commit
  double baseline_seconds = 0;  // median per batch: DB::Write of the same bytes
};

CommitFigure MeasureCommit(const std::string& dir, int64_t keys, int batches) {
  CommitFigure f{.keys = keys};
  auto store = state::RocksDbStateStore::Open({.path = dir + "/runnel"}).value();
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  Check(rocksdb::DB::Open(options, dir + "/baseline", &raw), "open baseline");
  std::unique_ptr<rocksdb::DB> baseline(raw);
  std::mt19937_64 rng(7);
  std::vector<double> runnel, plain;
  for (int b = 0; b < batches; ++b) {
    // The batch's partials (computed upstream in the real query; not timed).
    std::vector<std::pair<std::string, AggRow>> partials;
    for (int64_t i = 0; i < keys; ++i) partials.emplace_back(Key(i), Partial(rng));
    std::vector<std::pair<std::string, std::string>> encoded;
    runnel.push_back(Seconds([&] {
      streaming::BatchCommit commit{.ns = "hourly_pages", .record = {.batch_id = BatchId(b)}};
      commit.record.positions["kafka:clicks/0"].set_next_offset((b + 1) * keys);
      for (auto& [key, partial] : partials) {
        AggRow current;
        auto stored = store->Get("hourly_pages", key).value();
        if (stored) current = streaming::DecodeRow(*stored).value();
        streaming::MergeRow(kSpecs, partial, &current);
        commit.puts.emplace_back(key, streaming::EncodeRow(current));
      }
      Check(store->Commit(commit), "commit");
      encoded = std::move(commit.puts);
    }));
    plain.push_back(Seconds([&] {
      rocksdb::WriteBatch batch;
      for (const auto& [k, v] : encoded) Check(batch.Put(k, v), "put");
      Check(batch.Put("batch/hourly_pages", std::to_string(b)), "put");
      rocksdb::WriteOptions write;
      write.sync = true;
      Check(baseline->Write(write, &batch), "write");
    }));
  }
  f.runnel_seconds = Median(runnel);
  f.baseline_seconds = Median(plain);
  return f;
}

struct CheckpointFigure {
  int64_t keys = 0;
  int64_t bytes = 0;
  double runnel_seconds = 0;
  double baseline_seconds = 0;
  double verify_seconds = 0;
  // A checkpoint right after a batch of 100k changed keys (what changed, not the state's
  // size: files checksummed before are not read again).
  double after_batch_seconds = 0;
  // A restart: opening the database and reading every query's last batch, as `runnel run`
  // does before /readyz turns 200.
  double restart_seconds = 0;
};

CheckpointFigure MeasureCheckpoint(const std::string& dir, int64_t keys, int runs) {
  CheckpointFigure f{.keys = keys};
  auto store = state::RocksDbStateStore::Open({.path = dir + "/db", .sync_commits = false}).value();
  std::mt19937_64 rng(11);
  constexpr int64_t kChunk = 100'000;
  for (int64_t from = 0, b = 0; from < keys; from += kChunk, ++b) {
    streaming::BatchCommit commit{.ns = "hourly_pages", .record = {.batch_id = BatchId(b)}};
    for (int64_t i = from; i < std::min(keys, from + kChunk); ++i) {
      commit.puts.emplace_back(Key(i), streaming::EncodeRow(Partial(rng)));
    }
    Check(store->Commit(commit), "fill");
  }
  checkpoint::CheckpointStore checkpoints(dir, /*keep=*/1);
  // Untimed: the first checkpoint flushes the memtables the fill left; both figures below are
  // then for a state whose writes are already in SST files.
  Check(checkpoints.Take(store.get()).status(), "warm-up");
  std::vector<double> runnel, plain, verify;
  for (int r = 0; r < runs; ++r) {
    runnel.push_back(Seconds([&] { Check(checkpoints.Take(store.get()).status(), "take"); }));
    const std::string target = fmt::format("{}/plain-{}", dir, r);
    // The RocksDB checkpoint alone (the store adds only its lock and a read of batch records).
    plain.push_back(
        Seconds([&] { Check(store->CreateCheckpoint(target).status(), "checkpoint"); }));
    fs::remove_all(target);
    auto entries = checkpoint::ListCheckpoints(dir).value();
    verify.push_back(Seconds([&] { Check(checkpoint::Verify(entries.back()).status, "verify"); }));
    f.bytes = checkpoint::Verify(entries.back()).bytes;
  }
  std::vector<double> after_batch, restart;
  for (int r = 0; r < runs; ++r) {
    streaming::BatchCommit commit{.ns = "hourly_pages",
                                  .record = {.batch_id = BatchId(keys / kChunk + 1 + r)}};
    for (int64_t i = 0; i < std::min(keys, kChunk); ++i) {
      commit.puts.emplace_back(Key((i * 7919 + r) % keys), streaming::EncodeRow(Partial(rng)));
    }
    Check(store->Commit(commit), "batch");
    after_batch.push_back(
        Seconds([&] { Check(checkpoints.Take(store.get()).status(), "take after a batch"); }));
    store.reset();
    restart.push_back(Seconds([&] {
      store = state::RocksDbStateStore::Open({.path = dir + "/db", .sync_commits = false}).value();
      Check(store->AllCommitted().status(), "read batch records");
    }));
  }
  f.runnel_seconds = Median(runnel);
  f.baseline_seconds = Median(plain);
  f.verify_seconds = Median(verify);
  f.after_batch_seconds = Median(after_batch);
  f.restart_seconds = Median(restart);
  return f;
}

}  // namespace
}  // namespace runnel::bench

namespace runnel::bench {
namespace {

// Seconds per record to fold `distinct` new visitors into one cell and encode it.
double HotKeyPerRecord(int64_t distinct, int runs) {
  const AggregateSpec spec{"visitors", AggregateSpec::Kind::kCountDistinct, "session_id"};
  std::vector<std::string> values;
  values.reserve(static_cast<size_t>(distinct));
  for (int64_t i = 0; i < distinct; ++i) values.push_back(fmt::format("session-{}", i * 7919));
  std::vector<double> per_record;
  for (int r = 0; r < runs; ++r) {
    AggRow row(1);
    size_t encoded = 0;
    const double s = Seconds([&] {
      for (const std::string& v : values) Check(AddValue(spec, v, &row[0]), "add");
      encoded = streaming::EncodeRow(row).size();
    });
    if (encoded < static_cast<size_t>(distinct) * 8) Check(Status::Internal("short row"), "encode");
    per_record.push_back(s / static_cast<double>(distinct));
  }
  return Median(per_record);
}

}  // namespace
}  // namespace runnel::bench

int main(int argc, char** argv) {
  using namespace runnel::bench;  // NOLINT
  CLI::App app("state_bench: commit and checkpoint cost against plain RocksDB");
  std::vector<int64_t> key_counts = {1000, 10000, 100000};
  int batches = 5;
  std::vector<int64_t> checkpoint_keys = {1'000'000, 10'000'000};
  int runs = 3;
  std::vector<int64_t> hot_key_distinct = {1000, 1000000};
  std::string dir = fs::temp_directory_path().string() + "/runnel-state-bench";
  std::string json_path;
  app.add_option("--keys", key_counts, "Changed keys per batch")->delimiter(',');
  app.add_option("--batches", batches, "Batches per size (median reported)");
  app.add_option("--checkpoint_keys", checkpoint_keys, "Keys in state for the checkpoint")
      ->delimiter(',');
  app.add_option("--runs", runs, "Checkpoint runs (median reported)");
  app.add_option("--hot_key_distinct", hot_key_distinct, "Distinct visitors of the hot key")
      ->delimiter(',');
  app.add_option("--dir", dir, "Scratch directory (removed first)");
  app.add_option("--json", json_path, "Write the figures here too");
  CLI11_PARSE(app, argc, argv);
  runnel::ConfigureLogging({});
  fs::remove_all(dir);

  boost::json::object out;
  boost::json::array commits;
  fmt::print("commit per batch (read + merge + encode + synced WriteBatch) vs DB::Write alone\n");
  fmt::print("{:>8}  {:>12}  {:>12}  {:>8}  {:>14}\n", "keys", "runnel (ms)", "plain (ms)", "ratio",
             "runnel keys/s");
  for (int64_t keys : key_counts) {
    const std::string sub = fmt::format("{}/commit-{}", dir, keys);
    const CommitFigure f = MeasureCommit(sub, keys, batches);
    fs::remove_all(sub);
    fmt::print("{:>8}  {:>12.2f}  {:>12.2f}  {:>7.2f}x  {:>14.0f}\n", keys, f.runnel_seconds * 1e3,
               f.baseline_seconds * 1e3, f.runnel_seconds / f.baseline_seconds,
               static_cast<double>(keys) / f.runnel_seconds);
    commits.push_back(boost::json::object{{"keys", keys},
                                          {"runnel_seconds", f.runnel_seconds},
                                          {"baseline_seconds", f.baseline_seconds},
                                          {"ratio", f.runnel_seconds / f.baseline_seconds}});
  }
  out["commit"] = std::move(commits);

  boost::json::array checkpoints;
  for (int64_t keys : checkpoint_keys) {
    const std::string sub = fmt::format("{}/checkpoint-{}", dir, keys);
    const CheckpointFigure c = MeasureCheckpoint(sub, keys, runs);
    fs::remove_all(sub);
    fmt::print(
        "\ncheckpoint of {} keys ({:.1f} MB): runnel {:.3f}s, rocksdb::Checkpoint alone {:.3f}s "
        "({:.2f}x); verify {:.3f}s; after a 100k-key batch {:.3f}s; restart to ready {:.3f}s\n",
        c.keys, static_cast<double>(c.bytes) / 1e6, c.runnel_seconds, c.baseline_seconds,
        c.runnel_seconds / c.baseline_seconds, c.verify_seconds, c.after_batch_seconds,
        c.restart_seconds);
    checkpoints.push_back(boost::json::object{{"keys", c.keys},
                                              {"bytes", c.bytes},
                                              {"runnel_seconds", c.runnel_seconds},
                                              {"baseline_seconds", c.baseline_seconds},
                                              {"verify_seconds", c.verify_seconds},
                                              {"after_batch_seconds", c.after_batch_seconds},
                                              {"restart_seconds", c.restart_seconds}});
  }
  out["checkpoint"] = std::move(checkpoints);
  fmt::print("\nhot key: per record into one exact count_distinct of D visitors (+ one encode)\n");
  fmt::print("{:>10}  {:>12}  {:>14}\n", "D", "ns/record", "vs smallest D");
  boost::json::array hot;
  double smallest = 0;
  for (int64_t d : hot_key_distinct) {
    const double per = HotKeyPerRecord(d, runs);
    if (smallest == 0) smallest = per;
    fmt::print("{:>10}  {:>12.1f}  {:>13.2f}x\n", d, per * 1e9, per / smallest);
    hot.push_back(boost::json::object{
        {"distinct", d}, {"seconds_per_record", per}, {"ratio", per / smallest}});
  }
  out["hot_key"] = std::move(hot);
  fs::remove_all(dir);
  if (!json_path.empty()) {
    runnel::Status st = runnel::WriteFileAtomically(json_path, boost::json::serialize(out) + "\n");
    if (!st.ok()) {
      fmt::print(stderr, "state_bench: {}\n", st.ToString());
      return 1;
    }
  }
  return 0;
}
