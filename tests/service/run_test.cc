// `runnel run --available-now` end to end: file source, RocksDB state, JSON sink.
#include <cstdlib>
#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

TEST(RunTest, CleanGoldenDataThroughTheBinary) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl"));
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("20000 records, 0 invalid, 0 late"), std::string::npos) << r.err;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
}

TEST(RunTest, DirtyGoldenDataCountsInvalidAndLate) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml",
            HourlyConfig(dir.path(), GoldenDir() + "/clicks-dirty.jsonl", 1000, "1h"));
  auto r = RunProcess({RunnelBinary(), "--log-format", "json", "run", "--config",
                       dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("30 invalid, 40 late"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\"logger\":\"service\""), std::string::npos) << "JSON logs";
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-dirty.jsonl")));
}

TEST(RunTest, ASecondRunContinuesFromCommittedPositions) {
  TempDir dir;
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  const std::string input = dir.path() + "/in";
  std::filesystem::create_directories(input);
  std::string first, second;
  for (size_t i = 0; i < lines.size(); ++i) (i < 12345 ? first : second) += lines[i] + "\n";
  WriteText(input + "/clicks.jsonl", first);
  WriteText(dir.path() + "/q.yaml", HourlyConfig(dir.path(), input, 1000));
  auto r1 =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_NE(r1.err.find("12345 records"), std::string::npos) << r1.err;
  // More data arrives; the next run reads only the new lines.
  std::ofstream(input + "/clicks.jsonl", std::ios::app) << second;
  auto r2 =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_NE(r2.err.find("next batch 13"), std::string::npos) << r2.err;
  EXPECT_NE(r2.err.find("7655 records"), std::string::npos) << r2.err;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  // Nothing new: nothing runs, nothing changes.
  auto r3 =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r3.exit_code, 0) << r3.err;
  EXPECT_NE(r3.err.find("caught up after 0 batches"), std::string::npos) << r3.err;
}

// At scale, within a small budget (16 MiB: a task's share is 4 MiB, so batches spill and
// commit sorted runs): `runnel gen` events, the engine's and the state's large paths. Under
// the sanitizers (their Debug JSON parsing of the outputs is slow) an eighth of the events.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kScale = 8;
#else
constexpr int kScale = 1;
#endif
std::string SmallBudget(std::string config) {
  config.replace(config.find("engine: { workers: 2 }"), 22,
                 "engine: { workers: 2, memory_budget: 16MiB }");
  return config;
}

TEST(RunTest, ExactDistinctCountsAtScaleEqualThePageViewsOfUniqueVisitors) {
  // Every event has its own session: each (customer, url, hour)'s visitors must equal its
  // page views, over 300k events and ~12.5k visitors a key, in batches of 50k.
  TempDir dir;
  const std::string events = dir.path() + "/events.jsonl";
  const int n = 300000 / kScale;
  auto gen = RunProcess({RunnelBinary(), "gen", "--events", std::to_string(n), "--customers", "1",
                         "--urls", "1", "--unique-sessions", "--seed", "4", "--out", events});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  WriteText(dir.path() + "/q.yaml", SmallBudget(HourlyConfig(dir.path(), events, 50000, "1d")));
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = SinkContent(dir.path());
  ASSERT_EQ(out.size(), 24u);
  int64_t views = 0;
  for (const auto& [id, rec] : out) {
    const auto& m = rec.at("metrics");
    EXPECT_EQ(m.at("visitors"), m.at("page_views")) << id;
    EXPECT_GT(m.at("visitors").as_int64(), 10000 / kScale) << id;
    views += m.at("page_views").as_int64();
  }
  EXPECT_EQ(views, n);
}

TEST(RunTest, FinalModeAtScaleEmitsEachClosedWindowOnceWithTheUpdateModesValue) {
  // 200k time-ordered events over ~190k keys in batches of 20k: update mode's latest values
  // are the reference; final mode must emit every window the watermark closed exactly once,
  // with that value.
  TempDir dir, final_dir;
  const std::string events = dir.path() + "/events.jsonl";
  auto gen = RunProcess({RunnelBinary(), "gen", "--events", "200000", "--customers", "20", "--urls",
                         "100000", "--disorder", "60", "--seed", "6", "--out", events});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  WriteText(dir.path() + "/q.yaml", SmallBudget(HourlyConfig(dir.path(), events, 20000, "10m")));
  std::string final_config = SmallBudget(HourlyConfig(final_dir.path(), events, 20000, "10m"));
  final_config.replace(final_config.find("    sinks:"), 0, "    output_mode: final\n");
  WriteText(final_dir.path() + "/q.yaml", final_config);
  for (const std::string& d : {dir.path(), final_dir.path()}) {
    auto r = RunProcess({RunnelBinary(), "run", "--config", d + "/q.yaml", "--available-now"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const auto updated = SinkContent(dir.path());
  ASSERT_GT(updated.size(), 150000u / kScale);
  std::map<std::string, int> emitted;
  // Every emission, not just the latest: count each _id over all batch directories.
  for (const auto& b :
       std::filesystem::directory_iterator(final_dir.path() + "/out/hourly_pages")) {
    if (!b.is_directory()) continue;
    for (const auto& part : std::filesystem::directory_iterator(b.path())) {
      for (const auto& [id, rec] : ById(ReadLines(part.path().string()))) {
        ++emitted[id];
        EXPECT_EQ(rec, updated.at(id)) << id;
      }
    }
  }
  // All hours but the last, which the watermark (10 minutes behind the last event) leaves open.
  size_t open = 0;
  for (const auto& [id, rec] : updated) open += rec.at("ts").as_string() == "2017-09-17T23:00:00";
  EXPECT_EQ(emitted.size(), updated.size() - open);
  for (const auto& [id, n] : emitted) EXPECT_EQ(n, 1) << id;
}

TEST(GenTest, WritesTheSeedWorkloadThatRunAggregates) {
  TempDir dir;
  auto g = RunProcess({RunnelBinary(), "gen", "--events", "30000", "--seed", "5", "--customers",
                       "3", "--out", dir.path() + "/events.jsonl"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(ReadLines(dir.path() + "/events.jsonl").size(), 30000u);
  // Events are spread at random over the day: a day of lateness keeps every one.
  WriteText(dir.path() + "/q.yaml",
            HourlyConfig(dir.path(), dir.path() + "/events.jsonl", 5000, "1d"));
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int64_t views = 0;
  for (const auto& [id, rec] : SinkContent(dir.path())) {
    views += rec.at("metrics").at("page_views").as_int64();
  }
  EXPECT_EQ(views, 30000);
}

TEST(RunTest, ABatchPastTheShutdownTimeoutExitsOneAndTheRestartIsExact) {
  TempDir dir;
  const std::string input = dir.path() + "/clicks.jsonl";
  auto gen = RunProcess({RunnelBinary(), "gen", "--events", "3000000", "--out", input});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::string config =
      Serving(HourlyConfig(dir.path(), input, 3000000, "1d"), "100ms");  // one long batch
  config.replace(config.find("service: {"), 10, "service: { shutdown_timeout: 100ms,");
  WriteText(dir.path() + "/q.yaml", config);
  // The process exits with its batch thread still running, on purpose: under TSan that is a
  // "thread leak" report (exit 66), which is the behaviour under test, not a bug.
  const char* tsan = std::getenv("TSAN_OPTIONS");  // NOLINT(concurrency-mt-unsafe)
  Service service(dir.path() + "/q.yaml", dir.path() + "/log",
                  {std::string("TSAN_OPTIONS=") + (tsan ? tsan : "") + ":report_thread_leaks=0"});
  ASSERT_TRUE(service.WaitReady());
  std::this_thread::sleep_for(std::chrono::milliseconds(800));  // the batch is running
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3))
      << "exited at the timeout, not when the batch ended";
  EXPECT_NE(ServiceLog(dir.path() + "/log").find("shutdown_timeout (100 ms) passed"),
            std::string::npos)
      << ServiceLog(dir.path() + "/log");
  // Nothing of the interrupted batch was committed: the next run reads all of it.
  auto rerun =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  EXPECT_NE(rerun.err.find("3000000 records"), std::string::npos) << rerun.err;
}

}  // namespace
}  // namespace runnel::testing
