// Exactly-once across kill -9: the golden data through `runnel run --available-now`, the
// process killed with SIGKILL at random moments and restarted until a run completes; the
// JSON sink (and so state, which commits with it) must equal the peer's aggregates exactly.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

extern char** environ;

namespace runnel::testing {
namespace {

// Starts `argv`, kills it with SIGKILL after `kill_after` unless it exits first.
// Returns true when the process finished on its own with exit 0.
bool RunOrKill(const std::vector<std::string>& argv, std::chrono::milliseconds kill_after) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  const auto deadline = std::chrono::steady_clock::now() + kill_after;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(CrashTest, KillNineAtRandomMomentsThenRecoverExactly) {
  TempDir dir;
  // Small batches: 100 commits, so kills land between and inside them.
  WriteText(dir.path() + "/q.yaml",
            HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl", 200));
  const std::vector<std::string> argv = {RunnelBinary(), "run", "--config", dir.path() + "/q.yaml",
                                         "--available-now"};
  std::mt19937 rng(20261123);
  // K kills at random moments; the window grows so slow builds (sanitizers) still progress
  // between kills. Then one run to the end catches up.
  constexpr int kKills = 20;
  int kills = 0;
  bool done = false;
  for (int attempt = 0; attempt < 200 && kills < kKills && !done; ++attempt) {
    const auto after = std::chrono::milliseconds(5 + rng() % (40 + 15 * attempt));
    done = RunOrKill(argv, after);
    kills += done ? 0 : 1;
  }
  if (!done) {
    auto final_run = RunProcess(argv);
    ASSERT_EQ(final_run.exit_code, 0) << final_run.err;
  }
  EXPECT_GE(kills, 3) << "the test must actually kill the service mid-run";
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")))
      << "after " << kills << " kills";
  // And a final run finds nothing left: every record was read exactly once.
  auto r = RunProcess(argv);
  EXPECT_NE(r.err.find("caught up after 0 batches"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace runnel::testing
