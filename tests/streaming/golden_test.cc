// The golden data of ../shared/golden (a peer system's answers) through the flagship query in
// batches of 1,000 records: the aggregates must be reproduced exactly.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "streaming/aggregation_query.h"
#include "tests/streaming/forwarding_store.h"
#include "tests/support/subprocess.h"

namespace runnel::streaming {
namespace {

std::string GoldenDir() {
  if (const char* dir = std::getenv("RUNNEL_GOLDEN_DIR")) return dir;  // NOLINT
  return testing::SourceDir() + "/../shared/golden";
}

// The lines of a golden file; aborts the test binary with a clear message when the golden
// data (../shared/golden beside the repository, or $RUNNEL_GOLDEN_DIR) is missing.
std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (lines.empty()) {
    std::fprintf(stderr, "golden data missing or empty: %s\n", path.c_str());
    std::abort();
  }
  return lines;
}

// _id -> record, parsed.
std::map<std::string, boost::json::value> ById(const std::vector<std::string>& records) {
  std::map<std::string, boost::json::value> out;
  for (const std::string& r : records) {
    boost::json::value v = boost::json::parse(r);
    out[std::string(v.at("_id").as_string())] = v;
  }
  return out;
}

AggregationOptions HourlyPages() {
  AggregationOptions o;
  o.name = "hourly_pages";
  o.group_by = {"customer", "url"};
  o.time_field = "ts";
  o.window = {3600 * 1000, 3600 * 1000};
  o.allowed_lateness_ms = 10 * 60 * 1000;
  o.aggregates = {{"page_views", AggregateSpec::Kind::kCount, ""},
                  {"visitors", AggregateSpec::Kind::kCountDistinct, "session_id"},
                  {"referrers", AggregateSpec::Kind::kCountValues, "referrer"}};
  return o;
}

struct RunResult {
  std::vector<std::string> state_records;
  std::map<std::string, boost::json::value> latest_output;  // the sink's latest record per _id
  QueryCounters counters;
  std::vector<BatchProgress> progress;
  int64_t spill_bytes = 0;  // over every stage of every batch
};

RunResult RunGolden(const std::string& input, AggregationOptions options, size_t batch_size,
                    int64_t memory_budget = int64_t{1} << 30) {
  auto engine = engine::Context::Make({.workers = 2, .memory_budget_bytes = memory_budget}).value();
  InMemoryStateStore store;
  auto query = AggregationQuery::Make(std::move(options), &store).value();
  ManualClock clock(TimePoint(Millis(1'700'000'000'000)));
  StreamingContext ssc(engine.get(), {.batch_interval = Millis(1000), .clock = &clock});
  const std::vector<std::string> lines = ReadLines(input);
  std::deque<std::vector<std::string>> batches;
  for (size_t i = 0; i < lines.size(); i += batch_size) {
    batches.emplace_back(
        lines.begin() + static_cast<ptrdiff_t>(i),
        lines.begin() + static_cast<ptrdiff_t>(std::min(lines.size(), i + batch_size)));
  }
  const size_t n = batches.size();
  RunResult result;
  query->Attach(QueueStream(ssc, std::move(batches), 2),
                [&](BatchId, const std::vector<std::string>& records) {
                  for (auto& [id, v] : ById(records)) result.latest_output[id] = v;
                  return Status::OK();
                });
  for (size_t b = 0; b < n; ++b) {
    Status st = ssc.RunBatch(clock.Now());
    EXPECT_TRUE(st.ok()) << st;
    clock.Advance(Millis(1000));
  }
  result.state_records = query->ReadRecords().value();
  result.counters = query->counters();
  result.progress = ssc.RecentProgress();
  for (const engine::JobMetrics& job : engine->RecentJobs()) {
    for (const engine::StageMetrics& stage : job.stages)
      result.spill_bytes += stage.totals.spill_bytes;
  }
  return result;
}

void ExpectSameAggregates(const std::map<std::string, boost::json::value>& got,
                          const std::map<std::string, boost::json::value>& want) {
  EXPECT_EQ(got.size(), want.size());
  int mismatches = 0;
  for (const auto& [id, w] : want) {
    auto it = got.find(id);
    if (it == got.end()) {
      if (++mismatches < 5) ADD_FAILURE() << "missing " << id;
      continue;
    }
    if (it->second != w && ++mismatches < 5) {
      ADD_FAILURE() << "differs for " << id << "\n got: " << boost::json::serialize(it->second)
                    << "\nwant: " << boost::json::serialize(w);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(GoldenTest, CleanDataReproducesThePeersAggregates) {
  RunResult r = RunGolden(GoldenDir() + "/clicks-clean.jsonl", HourlyPages(), 1000);
  const auto want = ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"));
  ASSERT_EQ(want.size(), 480u);
  ExpectSameAggregates(ById(r.state_records), want);
  ExpectSameAggregates(r.latest_output, want);
  EXPECT_EQ(r.counters.records, 20000);
  EXPECT_EQ(r.counters.late, 0);
  EXPECT_TRUE(r.counters.invalid.empty());
  ASSERT_EQ(r.progress.size(), 20u);
  EXPECT_EQ(r.progress.back().batch_id, BatchId(19));
  EXPECT_EQ(r.progress.back().records_in, 1000);
}

TEST(GoldenTest, ABatchPastItsMemoryShareSpillsAndIsExact) {
  // One batch of all 20,000 events; 256 KiB leaves each task 64 KiB, less than the batch's
  // 480 rows with their visitor sets, so combine and merge tables spill.
  RunResult r = RunGolden(GoldenDir() + "/clicks-clean.jsonl", HourlyPages(), 20000, 256 << 10);
  EXPECT_GT(r.spill_bytes, 0);
  const auto want = ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"));
  ExpectSameAggregates(ById(r.state_records), want);
  ExpectSameAggregates(r.latest_output, want);
  EXPECT_EQ(r.counters.records, 20000);
}

TEST(GoldenTest, DirtyDataCountsInvalidAndLateAndReproducesTheRest) {
  AggregationOptions options = HourlyPages();
  options.allowed_lateness_ms = 60 * 60 * 1000;  // the most the golden README allows
  RunResult r = RunGolden(GoldenDir() + "/clicks-dirty.jsonl", options, 1000);
  const auto want = ById(ReadLines(GoldenDir() + "/expected-dirty.jsonl"));
  ExpectSameAggregates(ById(r.state_records), want);
  ExpectSameAggregates(r.latest_output, want);
  int64_t invalid = 0;
  for (const auto& [reason, n] : r.counters.invalid) invalid += n;
  EXPECT_EQ(invalid, 30);
  EXPECT_EQ(r.counters.late, 40);
  EXPECT_GT(r.counters.invalid["empty"], 0);
  EXPECT_GT(r.counters.invalid["malformed_json"], 0);
  int64_t late_in_progress = 0;
  for (const auto& p : r.progress) late_in_progress += p.late;
  EXPECT_EQ(late_in_progress, 40);
  EXPECT_NE(r.progress.back().watermark_ms, INT64_MIN);
}

TEST(GoldenTest, FinalModeEmitsEachClosedWindowOnceWithItsFinalValue) {
  AggregationOptions options = HourlyPages();
  options.output_mode = OutputMode::kFinal;
  auto engine = engine::Context::Make({.workers = 2}).value();
  InMemoryStateStore store;
  auto query = AggregationQuery::Make(options, &store).value();
  ManualClock clock(TimePoint(Millis(1'700'000'000'000)));  // after the data: none "future"
  StreamingContext ssc(engine.get(), {.batch_interval = Millis(1000), .clock = &clock});
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  std::deque<std::vector<std::string>> batches;
  for (size_t i = 0; i < lines.size(); i += 1000) {
    batches.emplace_back(lines.begin() + static_cast<ptrdiff_t>(i),
                         lines.begin() + static_cast<ptrdiff_t>(std::min(lines.size(), i + 1000)));
  }
  std::map<std::string, int> emitted;
  std::map<std::string, boost::json::value> values;
  query->Attach(QueueStream(ssc, std::move(batches)), [&](BatchId, const auto& records) {
    for (auto& [id, v] : ById(records)) {
      ++emitted[id];
      values[id] = v;
    }
    return Status::OK();
  });
  for (int b = 0; b < 20; ++b) {
    ASSERT_TRUE(ssc.RunBatch(clock.Now()).ok());
    clock.Advance(Millis(1000));
  }
  const auto want = ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"));
  // The last hour is still open (the watermark is 10 minutes behind the last event): 5 of 6
  // hours are final, each emitted exactly once with the peer's value.
  EXPECT_EQ(emitted.size(), 400u);
  for (const auto& [id, n] : emitted) {
    EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(values[id], want.at(id)) << id;
  }
}

}  // namespace
}  // namespace runnel::streaming

namespace runnel::streaming {
namespace {

// Counts the rows a query's scans visit.
class CountingStore final : public ForwardingStateStore {
 public:
  using ForwardingStateStore::ForwardingStateStore;
  Status Scan(const std::string& ns, const std::string& b, const std::string& e,
              const std::function<bool(const std::string&, const std::string&)>& fn) override {
    return ForwardingStateStore::Scan(ns, b, e, [&](const std::string& k, const std::string& v) {
      ++visited;
      return fn(k, v);
    });
  }
  int64_t visited = 0;
};

// Runs golden batches [first, last) (1000 events each) through a new query on `store`;
// records every emission.
void RunBatches(StateStore* store, OutputMode mode, int first, int last,
                std::map<std::string, int>* emitted,
                std::map<std::string, boost::json::value>* values) {
  AggregationOptions options = HourlyPages();
  options.output_mode = mode;
  auto engine = engine::Context::Make({.workers = 2}).value();
  auto query = AggregationQuery::Make(options, store).value();
  const CommittedBatch next = query->Recover().value();
  ManualClock clock(TimePoint(Millis(1'700'000'000'000)));
  StreamingContext ssc(
      engine.get(),
      {.batch_interval = Millis(1000), .clock = &clock, .first_batch_id = next.record.batch_id});
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  std::deque<std::vector<std::string>> batches;
  for (int b = first; b < last; ++b) {
    batches.emplace_back(lines.begin() + b * 1000, lines.begin() + (b + 1) * 1000);
  }
  query->Attach(QueueStream(ssc, std::move(batches)), [&](BatchId, const auto& records) {
    for (auto& [id, v] : ById(records)) {
      ++(*emitted)[id];
      (*values)[id] = v;
    }
    return Status::OK();
  });
  for (int b = first; b < last; ++b) {
    ASSERT_TRUE(ssc.RunBatch(clock.Now()).ok());
    clock.Advance(Millis(1000));
  }
}

// Every emitted window was emitted once, with the peer's value.
void ExpectEachOnceWithItsValue(const std::map<std::string, int>& emitted,
                                const std::map<std::string, boost::json::value>& values,
                                const std::map<std::string, boost::json::value>& want) {
  for (const auto& [id, n] : emitted) {
    EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(values.at(id), want.at(id)) << id;
  }
}

TEST(GoldenTest, FinalModeReadsOnlyClosedWindowsThroughItsIndexAndScansWithoutOne) {
  const auto want = ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"));
  // A state made in final mode: the index covers every key; each batch visits only the
  // index entries of the windows it closes (400 over the run, at most 480 with retries).
  {
    InMemoryStateStore memory;
    CountingStore store(&memory);
    std::map<std::string, int> emitted;
    std::map<std::string, boost::json::value> values;
    RunBatches(&store, OutputMode::kFinal, 0, 20, &emitted, &values);
    EXPECT_EQ(emitted.size(), 400u);
    ExpectEachOnceWithItsValue(emitted, values, want);
    EXPECT_LE(store.visited, 480);
  }
  // A state made in update mode, then run in final mode: no index, so each batch that moves
  // the watermark scans the state; the output is the same.
  {
    InMemoryStateStore memory;
    CountingStore store(&memory);
    std::map<std::string, int> emitted, ignored;
    std::map<std::string, boost::json::value> values, ignored_values;
    RunBatches(&store, OutputMode::kUpdate, 0, 10, &ignored, &ignored_values);
    store.visited = 0;
    RunBatches(&store, OutputMode::kFinal, 10, 20, &emitted, &values);
    EXPECT_GT(emitted.size(), 100u);
    ExpectEachOnceWithItsValue(emitted, values, want);
    EXPECT_GT(store.visited, 2000);  // ten scans of ~480 keys
  }
  // Final, then update (keys added without index entries: the marker says so), then final
  // again: the index is off, and the output still exact.
  {
    InMemoryStateStore memory;
    CountingStore store(&memory);
    std::map<std::string, int> emitted, ignored;
    std::map<std::string, boost::json::value> values, ignored_values;
    RunBatches(&store, OutputMode::kFinal, 0, 5, &ignored, &ignored_values);
    RunBatches(&store, OutputMode::kUpdate, 5, 10, &ignored, &ignored_values);
    store.visited = 0;
    RunBatches(&store, OutputMode::kFinal, 10, 20, &emitted, &values);
    EXPECT_GT(emitted.size(), 100u);
    ExpectEachOnceWithItsValue(emitted, values, want);
    EXPECT_GT(store.visited, 2000);
  }
}

}  // namespace
}  // namespace runnel::streaming
