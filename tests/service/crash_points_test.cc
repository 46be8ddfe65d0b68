// Named crash points (RUNNEL_CRASH_AT): the process is SIGKILLed at exactly one moment of the
// commit, sink, checkpoint or rebalance path; a restart must give the exact aggregates.
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

struct CrashCase {
  std::string point;  // NAME[:N]
};

std::ostream& operator<<(std::ostream& os, const CrashCase& c) { return os << c.point; }

class CrashPointTest : public ::testing::TestWithParam<CrashCase> {};

std::vector<std::string> RunArgv(const std::string& config, const std::string& crash_at = "") {
  std::vector<std::string> argv = {"env"};
  if (!crash_at.empty()) argv.push_back("RUNNEL_CRASH_AT=" + crash_at);
  for (const std::string& a : {RunnelBinary(), std::string("run"), std::string("--config"), config,
                               std::string("--available-now")}) {
    argv.push_back(a);
  }
  return argv;
}

TEST_P(CrashPointTest, KilledThereARestartGivesTheExactAggregates) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml",
            HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl", 1000, "1d"));
  auto crashed = RunProcess(RunArgv(dir.path() + "/q.yaml", GetParam().point));
  ASSERT_EQ(crashed.exit_code, 128 + 9) << crashed.err;  // SIGKILL, at the crash point
  EXPECT_NE(crashed.err.find("crash point reached"), std::string::npos) << crashed.err;
  auto restarted = RunProcess(RunArgv(dir.path() + "/q.yaml"));
  ASSERT_EQ(restarted.exit_code, 0) << restarted.err;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
}

// 20 batches of 1000 records; a checkpoint every 10 batches.
INSTANTIATE_TEST_SUITE_P(
    Points, CrashPointTest,
    ::testing::Values(CrashCase{"after_state_commit:1"}, CrashCase{"after_state_commit:7"},
                      CrashCase{"before_sink_rename:1"}, CrashCase{"before_sink_rename:13"},
                      CrashCase{"mid_checkpoint:1"}, CrashCase{"mid_checkpoint:2"},
                      CrashCase{"after_checkpoint_rename:1"}),
    [](const auto& info) {
      std::string name = info.param.point;
      for (char& c : name) {
        if (c == ':') c = '_';
      }
      return name;
    });

// Kill in the middle of a spilling batch: 150k events over ~150k keys in batches of 50k, with
// a 16 MiB budget (a task's share is 4 MiB), killed once the second run is on disk.
TEST(CrashPointSpillTest, KilledMidSpillLeavesNoSpillFileAndTheRestartIsExact) {
  TempDir dir, reference;
  const std::string events = dir.path() + "/events.jsonl";
  auto gen = RunProcess({RunnelBinary(), "gen", "--events", "150000", "--customers", "20", "--urls",
                         "100000", "--seed", "3", "--out", events});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  auto config = [&](const std::string& d) {
    std::string c = HourlyConfig(d, events, 50000, "1d");
    c.replace(c.find("engine: { workers: 2 }"), 22, "engine: { workers: 2, memory_budget: 16MiB }");
    WriteText(d + "/q.yaml", c);
    return d + "/q.yaml";
  };
  auto uninterrupted = RunProcess(RunArgv(config(reference.path())));
  ASSERT_EQ(uninterrupted.exit_code, 0) << uninterrupted.err;
  auto spill_files = [&] {
    int n = 0;
    std::error_code ec;
    for (const auto& f :
         std::filesystem::directory_iterator(dir.path() + "/state/engine/spill", ec)) {
      n += f.is_regular_file() ? 1 : 0;
    }
    return n;
  };
  auto crashed = RunProcess(RunArgv(config(dir.path()), "mid_spill:2"));
  ASSERT_EQ(crashed.exit_code, 128 + 9) << crashed.err;
  EXPECT_NE(crashed.err.find("crash point reached"), std::string::npos) << crashed.err;
  EXPECT_EQ(spill_files(), 0);
  auto restarted = RunProcess(RunArgv(dir.path() + "/q.yaml"));
  ASSERT_EQ(restarted.exit_code, 0) << restarted.err;
  EXPECT_EQ(spill_files(), 0);
  const auto want = SinkContent(reference.path());
  EXPECT_GT(want.size(), 100000u);
  EXPECT_EQ(SinkContent(dir.path()), want);
}

// A torn write at a crash: after a kill right after batch 17's commit (the checkpoint of batch
// 10 flushed what came before, so the write-ahead log holds batches 11-17), the newest state
// WAL is cut in the middle of a record. RocksDB recovers what the log still holds whole
// (point-in-time), offsets and state together, so the restart reads the rest of the input again
// and ends exact.
TEST(CrashPointWalTest, ATruncatedStateWalRecoversToTheExactAggregates) {
  for (const double keep : {0.5, 0.97}) {
    SCOPED_TRACE(keep);
    TempDir dir;
    WriteText(dir.path() + "/q.yaml",
              HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl", 1000, "1d"));
    auto crashed = RunProcess(RunArgv(dir.path() + "/q.yaml", "after_state_commit:17"));
    ASSERT_EQ(crashed.exit_code, 128 + 9) << crashed.err;
    std::filesystem::path wal;
    for (const auto& f : std::filesystem::directory_iterator(dir.path() + "/state/db")) {
      if (f.path().extension() == ".log" && (wal.empty() || f.path() > wal)) wal = f.path();
    }
    ASSERT_FALSE(wal.empty());
    const auto size = std::filesystem::file_size(wal);
    ASSERT_GT(size, 1000u) << wal;
    std::filesystem::resize_file(wal, static_cast<uintmax_t>(static_cast<double>(size) * keep));
    auto restarted = RunProcess(RunArgv(dir.path() + "/q.yaml"));
    ASSERT_EQ(restarted.exit_code, 0) << restarted.err;
    // The cut took commits with it: the restart goes on from an earlier batch than 17.
    const std::string recovered = "recovered: next batch ";
    const size_t at = restarted.err.find(recovered);
    ASSERT_NE(at, std::string::npos) << restarted.err;
    EXPECT_LT(std::stoi(restarted.err.substr(at + recovered.size())), 17) << restarted.err;
    EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  }
}

// A member killed while its partitions are revoked (at the end of --available-now, when it
// leaves the group): the next run neither loses nor re-reads a record.
TEST(CrashPointKafkaTest, KilledDuringRebalanceARestartGivesTheExactAggregates) {
  Broker broker({"clicks:4"});
  TempDir dir;
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  std::string first, second;
  for (size_t i = 0; i < lines.size(); ++i) (i < 12000 ? first : second) += lines[i] + "\n";
  WriteText(dir.path() + "/first.jsonl", first);
  WriteText(dir.path() + "/second.jsonl", second);
  WriteText(dir.path() + "/q.yaml", WithKafkaSource(HourlyConfig(dir.path(), "unused", 1000, "1d"),
                                                    broker.bootstrap(), 700));
  Produce(broker.bootstrap(), "clicks", dir.path() + "/first.jsonl");
  auto crashed = RunProcess(RunArgv(dir.path() + "/q.yaml", "during_rebalance"));
  ASSERT_EQ(crashed.exit_code, 128 + 9) << crashed.err;
  Produce(broker.bootstrap(), "clicks", dir.path() + "/second.jsonl");
  auto restarted = RunProcess(RunArgv(dir.path() + "/q.yaml"));
  ASSERT_EQ(restarted.exit_code, 0) << restarted.err;
  EXPECT_NE(restarted.err.find("8000 records"), std::string::npos) << restarted.err;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
}

}  // namespace
}  // namespace runnel::testing
