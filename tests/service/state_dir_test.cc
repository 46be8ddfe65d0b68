// One process per state directory: a second `runnel run` on a state directory in use is
// refused before it touches anything, and the owner goes on committing and checkpointing.
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

namespace fs = std::filesystem;

TEST(StateDirTest, ASecondProcessOnAStateDirInUseIsRefusedAndChangesNothing) {
  TempDir dir;
  const std::string config = dir.path() + "/q.yaml";
  WriteText(config, ServeConfig(dir.path(), "clicks-clean.jsonl"));
  Service service(config, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  const std::string state = dir.path() + "/state";
  const auto before = fs::last_write_time(state + "/db/CURRENT");

  // The "quick manual catch-up" of the bug report: same config, while the service runs.
  auto second = RunProcess({RunnelBinary(), "run", "--config", config, "--available-now"});
  EXPECT_EQ(second.exit_code, 75) << second.err;
  EXPECT_NE(second.err.find("state directory " + state), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("pid " + std::to_string(service.pid())), std::string::npos)
      << second.err;
  bool set_aside = false;
  for (const auto& e : fs::directory_iterator(state)) {
    set_aside |= e.path().filename().string().starts_with("db.broken-");
  }
  EXPECT_FALSE(set_aside) << "the live database was moved";
  EXPECT_EQ(fs::last_write_time(state + "/db/CURRENT"), before);

  // The owner still checkpoints (a final one at stop) into the database at its path.
  std::string metrics;
  for (int i = 0; i < 300; ++i) {
    metrics = Body(Get(service.Url("/metrics")));
    if (SumOf(metrics, "runnel_records_total") >= 20000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(SumOf(metrics, "runnel_state_broken_databases"), 0) << metrics;
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0) << ServiceLog(dir.path() + "/log");
  const std::string log = ServiceLog(dir.path() + "/log");
  EXPECT_EQ(log.find("final checkpoint:"), std::string::npos) << log;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  // Once the owner has gone, the directory is free again.
  auto third = RunProcess({RunnelBinary(), "run", "--config", config, "--available-now"});
  EXPECT_EQ(third.exit_code, 0) << third.err;
}

TEST(StateDirTest, SetAsideDatabasesAreCountedAndLoggedAtStart) {
  TempDir dir;
  const std::string config = dir.path() + "/q.yaml";
  WriteText(config, ServeConfig(dir.path(), "clicks-clean.jsonl"));
  fs::create_directories(dir.path() + "/state/db.broken-1700000000000");
  Service service(config, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  EXPECT_EQ(SumOf(Body(Get(service.Url("/metrics"))), "runnel_state_broken_databases"), 1);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
  EXPECT_NE(ServiceLog(dir.path() + "/log").find("db.broken-1700000000000"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir.path() + "/state/db.broken-1700000000000"));  // never deleted
}

TEST(StateDirTest, AStateThatStartsOverRefusesAnEarlierStatesOutput) {
  TempDir dir;
  const std::string config = dir.path() + "/q.yaml";
  WriteText(config, HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl"));
  auto run = [&] {
    return RunProcess({RunnelBinary(), "run", "--config", config, "--available-now"});
  };
  auto first = run();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string mark = dir.path() + "/out/hourly_pages/INCARNATION";
  ASSERT_TRUE(fs::exists(mark));
  const std::string incarnation = ReadLines(mark).at(0);
  EXPECT_EQ(incarnation.size(), 32u);

  // The state is lost (or removed by hand); a new one would start at batch 0 over the old
  // output, its batch=0 replacing the old one and the old batch=1.. shadowing its values.
  fs::remove_all(dir.path() + "/state");
  auto second = run();
  EXPECT_EQ(second.exit_code, 78) << second.err;
  EXPECT_NE(second.err.find("holds the output of another state (incarnation " + incarnation),
            std::string::npos)
      << second.err;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")))
      << "the earlier output was changed";

  // Output of a version before incarnations (no mark) is refused by a new state too...
  fs::remove(mark);
  fs::remove_all(dir.path() + "/state");
  auto third = run();
  EXPECT_EQ(third.exit_code, 78) << third.err;
  EXPECT_NE(third.err.find("holds batches of an earlier state"), std::string::npos) << third.err;
  // ...and adopted by the state that wrote it (an upgrade): moved aside, the old output is
  // the new state's own; a run with nothing new adopts it and marks it.
  fs::rename(dir.path() + "/out", dir.path() + "/out.old");
  ASSERT_EQ(run().exit_code, 0);
  fs::remove(mark);
  auto upgraded = run();
  EXPECT_EQ(upgraded.exit_code, 0) << upgraded.err;
  EXPECT_TRUE(fs::exists(mark));
}

}  // namespace
}  // namespace runnel::testing
