// Runs the real `runnel` binary and checks what a user sees.
#include <gtest/gtest.h>

#include "tests/support/subprocess.h"

namespace runnel {
namespace {

using testing::RunnelBinary;
using testing::RunProcess;

TEST(CliTest, VersionPrintsVersionAndCommit) {
  auto r = RunProcess({RunnelBinary(), "--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("runnel 0.")) << r.out;
  EXPECT_NE(r.out.find("(commit "), std::string::npos) << r.out;
}

TEST(CliTest, HelpListsEverySubcommand) {
  auto r = RunProcess({RunnelBinary(), "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* sub : {"run", "validate", "demo", "broker", "gen", "checkpoint"}) {
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  }
}

TEST(CliTest, UnknownSubcommandFailsWithUsage) {
  auto r = RunProcess({RunnelBinary(), "bogus"});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_NE(r.err.find("bogus"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--help"), std::string::npos) << r.err;
}

TEST(CliTest, NoSubcommandFailsWithUsage) {
  auto r = RunProcess({RunnelBinary()});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_FALSE(r.err.empty());
}

TEST(CliTest, MissingRequiredOptionFails) {
  auto r = RunProcess({RunnelBinary(), "validate"});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_NE(r.err.find("--config"), std::string::npos) << r.err;
}

TEST(CliTest, GenRejectsBothOutAndBootstrap) {
  auto r = RunProcess({RunnelBinary(), "gen", "--events", "5", "--out", "/tmp/x", "--bootstrap",
                       "127.0.0.1:9092", "--topic", "t"});
  EXPECT_EQ(r.exit_code, 64) << r.err;
}

}  // namespace
}  // namespace runnel
