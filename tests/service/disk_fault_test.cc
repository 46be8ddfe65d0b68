// A disk that fills up or fails under the running service (RUNNEL_DISK_FAULT_FILE makes state
// writes fail while a file exists): the query pauses with its offsets behind what is persisted,
// /readyz says why, and when the disk comes back the query resumes; the aggregates are exact.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

class DiskFaultServiceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DiskFaultServiceTest, QueryPausesWhileStateWritesFailAndResumesExactly) {
  TempDir dir;
  const std::string control = dir.path() + "/disk-fault";
  WriteText(
      dir.path() + "/q.yaml",
      Serving(HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl", 400, "1d"), "100ms"));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log",
                  {"RUNNEL_DISK_FAULT_FILE=" + control});
  ASSERT_TRUE(service.WaitReady());
  auto records = [&] { return SumOf(Body(Get(service.Url("/metrics"))), "runnel_records_total"); };
  while (records() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));

  WriteText(control, GetParam() + "\n");
  std::string not_ready;
  for (int i = 0; i < 100 && not_ready.empty(); ++i) {
    auto r = Get(service.Url("/readyz"));
    if (Code(r) == 503) not_ready = Body(r);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(not_ready.find("failed, retrying"), std::string::npos) << not_ready;
  const double paused_at = records();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(records(), paused_at) << "no batch commits while the disk fails";
  EXPECT_LT(paused_at, 20000);
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200);

  std::filesystem::remove(control);
  for (int i = 0; i < 600 && records() < 20000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(records(), 20000);
  EXPECT_EQ(Code(Get(service.Url("/readyz"))), 200);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
}

INSTANTIATE_TEST_SUITE_P(Faults, DiskFaultServiceTest, ::testing::Values("enospc", "eio"));

// A tmpfs mounted for one test, unmounted at the end; empty() when mounting is not allowed.
class SmallDisk {
 public:
  SmallDisk(const std::string& path, const std::string& options) : path_(path) {
    std::filesystem::create_directories(path);
    mounted_ = RunProcess({"mount", "-t", "tmpfs", "-o", options, "tmpfs", path}).exit_code == 0;
  }
  ~SmallDisk() {
    if (mounted_) RunProcess({"umount", "-l", path_});
  }
  bool mounted() const { return mounted_; }

 private:
  const std::string path_;
  bool mounted_ = false;
};

TEST(SinkDiskFaultTest, AFullSinkDiskPausesTheQueryAndItResumesExactly) {
  // The JSON sink's own disk fills up (here its inodes: mkdir and create fail with ENOSPC, as
  // on a full disk): retried like a full state disk, never a stopped query or a lost batch.
  TempDir dir;
  SmallDisk disk(dir.path() + "/out", "size=64m,nr_inodes=400");
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root (CI runs as root)";
  WriteText(
      dir.path() + "/q.yaml",
      Serving(HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl", 400, "1d"), "100ms"));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  auto records = [&] { return SumOf(Body(Get(service.Url("/metrics"))), "runnel_records_total"); };
  while (records() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // Fill the disk: files until no inode is left.
  const std::string filler = dir.path() + "/out/filler";
  std::filesystem::create_directories(filler);
  for (int i = 0; i < 1000; ++i) {
    std::ofstream f(filler + "/" + std::to_string(i));
    if (!f.good()) break;
  }
  std::string not_ready;
  for (int i = 0; i < 100 && not_ready.empty(); ++i) {
    auto r = Get(service.Url("/readyz"));
    if (Code(r) == 503) not_ready = Body(r);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(not_ready.find("No space left on device"), std::string::npos) << not_ready;
  const double paused_at = records();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(records(), paused_at) << "no batch commits while its output cannot be written";
  EXPECT_LT(paused_at, 20000);

  std::filesystem::remove_all(filler);
  for (int i = 0; i < 600 && records() < 20000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(records(), 20000);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0) << ServiceLog(dir.path() + "/log");
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
}

}  // namespace
}  // namespace runnel::testing
