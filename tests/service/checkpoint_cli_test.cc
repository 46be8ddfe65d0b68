// Checkpoints through the binary: `runnel run` takes them, `runnel checkpoint` lists, inspects
// and verifies them, a lost database is restored from them, and a changed query definition is
// refused (or reset) at start.
#include <filesystem>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "common/file_util.h"
#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

namespace fs = std::filesystem;

class CheckpointCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteText(config(), HourlyConfig(dir_.path(), GoldenDir() + "/clicks-clean.jsonl", 1000));
  }
  std::string config() const { return dir_.path() + "/q.yaml"; }
  std::string state() const { return dir_.path() + "/state"; }
  ProcessOutput Run() {
    return RunProcess({RunnelBinary(), "run", "--config", config(), "--available-now"});
  }
  ProcessOutput Checkpoint(const std::string& verb, std::vector<std::string> more = {}) {
    std::vector<std::string> argv = {RunnelBinary(), "checkpoint", verb, "--state-dir", state()};
    argv.insert(argv.end(), more.begin(), more.end());
    return RunProcess(argv);
  }
  TempDir dir_;
};

TEST_F(CheckpointCliTest, RunTakesCheckpointsThatListInspectAndVerify) {
  auto r = Run();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 20 batches, "every: 10 batches", keep 2, plus the final one when anything is new.
  auto list = Checkpoint("list", {"--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  const auto entries = boost::json::parse(list.out).as_array();
  ASSERT_EQ(entries.size(), 2u) << list.out;
  const auto& newest = entries.back().at("manifest").as_object();
  const auto& query = newest.at("queries").as_array().at(0).as_object();
  EXPECT_EQ(query.at("name").as_string(), "hourly_pages");
  EXPECT_EQ(query.at("batch_id").as_string(), "19");  // int64 as a string (proto3 JSON)
  EXPECT_FALSE(query.at("definition_fingerprint").as_string().empty());

  auto text = Checkpoint("inspect");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("query hourly_pages"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("batch 19"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("clicks-clean.jsonl"), std::string::npos) << text.out;

  auto verify = Checkpoint("verify");
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_NE(verify.out.find("ok"), std::string::npos) << verify.out;

  // A flipped byte in the newest manifest: verify says which, and exits 65.
  const int64_t newest_id = entries.back().at("id").as_int64();
  const std::string manifest = fmt::format("{}/checkpoints/{}/MANIFEST.runnel", state(), newest_id);
  std::string bytes = ReadFile(manifest).value();
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
  WriteText(manifest, bytes);
  verify = Checkpoint("verify");
  EXPECT_EQ(verify.exit_code, 65) << verify.out;
  EXPECT_NE(verify.out.find(fmt::format("checkpoint {}: CORRUPT", newest_id)), std::string::npos)
      << verify.out;
  EXPECT_EQ(Checkpoint("verify", {"--id", "12345"}).exit_code, 66);
}

TEST_F(CheckpointCliTest, ALostDatabaseIsRestoredAndTheRunStillEndsExact) {
  ASSERT_EQ(Run().exit_code, 0);
  fs::remove_all(state() + "/db");
  auto r = Run();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("restored state from checkpoint"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("caught up after 0 batches"), std::string::npos) << r.err;
  EXPECT_EQ(SinkContent(dir_.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
}

TEST_F(CheckpointCliTest, AChangedDefinitionIsRefusedWithExit78UnlessReset) {
  ASSERT_EQ(Run().exit_code, 0);
  std::string yaml = ReadFile(config()).value();
  const std::string exact = "visitors: { count_distinct: session_id }";
  const size_t at = yaml.find(exact);
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, exact.size(), "visitors: { count_distinct: session_id, approx: true }");
  WriteText(config(), yaml);
  auto r = Run();
  EXPECT_EQ(r.exit_code, 78) << r.err;
  EXPECT_NE(r.err.find("definition changed"), std::string::npos) << r.err;

  yaml += "    on_definition_change: reset\n";
  WriteText(config(), yaml);
  r = Run();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("caught up after 20 batches"), std::string::npos) << r.err;
  // Rebuilt from the start of the file: page views match the peer again.
  const auto want = ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"));
  const auto got = SinkContent(dir_.path());
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, w] : want) {
    EXPECT_EQ(got.at(id).at("metrics").at("page_views"), w.at("metrics").at("page_views")) << id;
  }
}

}  // namespace
}  // namespace runnel::testing
