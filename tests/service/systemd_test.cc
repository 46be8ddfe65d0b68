// The systemd notify protocol as systemd sees it: the test owns a NOTIFY_SOCKET and receives
// READY=1, WATCHDOG=1 (at WATCHDOG_USEC / 2 from the batch loop), STATUS=, RELOADING=1 and
// STOPPING=1.
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

// A datagram socket bound to `path`, as systemd's notify socket is.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    EXPECT_LT(path.size(), sizeof(addr.sun_path));
    std::copy(path.begin(), path.end(), addr.sun_path);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << errno;
    timeval timeout{.tv_sec = 0, .tv_usec = 200'000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~NotifySocket() { close(fd_); }

  // Messages received until `done` returns true for all received so far, or `seconds` pass.
  std::vector<std::string> ReceiveUntil(const std::function<bool(const std::string&)>& done,
                                        int seconds) {
    std::vector<std::string> got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) continue;
      got.emplace_back(buf, static_cast<size_t>(n));
      if (done(got.back())) break;
    }
    return got;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool Has(const std::vector<std::string>& messages, const std::string& line) {
  for (const auto& m : messages) {
    if (m.find(line) != std::string::npos) return true;
  }
  return false;
}

TEST(SystemdTest, ReadyWatchdogStatusAndStoppingReachTheNotifySocket) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", ServeConfig(dir.path(), "clicks-clean.jsonl"));
  NotifySocket socket(dir.path() + "/notify");
  // 400 ms watchdog: pings expected every 200 ms from the 100 ms batch loop.
  Service service(dir.path() + "/q.yaml", dir.path() + "/log",
                  {"NOTIFY_SOCKET=" + dir.path() + "/notify", "WATCHDOG_USEC=400000"});
  int watchdogs = 0;
  auto got = socket.ReceiveUntil(
      [&](const std::string& m) {
        watchdogs += m.find("WATCHDOG=1") != std::string::npos;
        return watchdogs >= 3;
      },
      20);
  ASSERT_FALSE(got.empty()) << "nothing received on NOTIFY_SOCKET";
  EXPECT_NE(got.front().find("READY=1"), std::string::npos) << got.front();
  EXPECT_NE(got.front().find("STATUS="), std::string::npos) << got.front();
  EXPECT_GE(watchdogs, 3);

  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
  auto after = socket.ReceiveUntil([](const std::string&) { return false; }, 1);
  EXPECT_TRUE(Has(after, "STOPPING=1")) << (after.empty() ? "" : after.back());
}

TEST(SystemdTest, AReloadIsReloadingThenReadyAgain) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", ServeConfig(dir.path(), "clicks-clean.jsonl"));
  NotifySocket socket(dir.path() + "/notify");
  Service service(dir.path() + "/q.yaml", dir.path() + "/log",
                  {"NOTIFY_SOCKET=" + dir.path() + "/notify"});
  auto ready = socket.ReceiveUntil(
      [](const std::string& m) { return m.find("READY=1") != std::string::npos; }, 20);
  ASSERT_TRUE(Has(ready, "READY=1"));
  kill(service.pid(), SIGHUP);
  auto got = socket.ReceiveUntil(
      [](const std::string& m) { return m.find("READY=1") != std::string::npos; }, 20);
  ASSERT_GE(got.size(), 2u);
  EXPECT_NE(got.front().find("RELOADING=1"), std::string::npos) << got.front();
  EXPECT_NE(got.front().find("MONOTONIC_USEC="), std::string::npos) << got.front();
  EXPECT_NE(got.back().find("READY=1"), std::string::npos) << got.back();
  EXPECT_NE(got.back().find("STATUS=reloaded (applied): 1 queries running"), std::string::npos)
      << got.back();
  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
}

TEST(SystemdTest, WatchdogPingsAreSpacedByHalfTheInterval) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", ServeConfig(dir.path(), "clicks-clean.jsonl"));
  NotifySocket socket(dir.path() + "/notify");
  // 2 s watchdog with 100 ms batches: about one ping a second, not one per batch.
  Service service(dir.path() + "/q.yaml", dir.path() + "/log",
                  {"NOTIFY_SOCKET=" + dir.path() + "/notify", "WATCHDOG_USEC=2000000"});
  const auto start = std::chrono::steady_clock::now();
  auto got = socket.ReceiveUntil([](const std::string&) { return false; }, 3);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int watchdogs = 0;
  for (const auto& m : got) watchdogs += m.find("WATCHDOG=1") != std::string::npos;
  EXPECT_GE(watchdogs, 2) << "over " << seconds << " s";
  EXPECT_LE(watchdogs, static_cast<int>(seconds) + 2) << "over " << seconds << " s";
}

}  // namespace
}  // namespace runnel::testing
