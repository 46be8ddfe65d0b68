// `runnel run` serving: the HTTP API, metrics (checked by promtool), readiness, robustness
// against malformed requests and many concurrent scrapes, and a clean SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

extern char** environ;

namespace runnel::testing {
namespace {

// `runnel run --config FILE` in the background, stderr to a file; SIGKILLed if still running.
class Service {
 public:
  Service(const std::string& config, const std::string& log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> argv = {RunnelBinary(), "run", "--config", config};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    // The log names the port once the server listens.
    const std::regex port_line("serving http on port ([0-9]+)");
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::smatch m;
      if (std::regex_search(text, m, port_line)) port_ = std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_NE(port_, 0) << "the service did not start serving";
  }
  ~Service() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Sends SIGTERM and returns the exit code (or -1 if it did not exit within `timeout`).
  int Terminate(std::chrono::seconds timeout) {
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

ProcessOutput Get(const std::string& url) {
  return RunProcess({"curl", "-s", "-S", "--max-time", "10", "-w", "\n%{http_code}", url});
}

// The HTTP status code of a curl -w run, and the body before it.
int Code(const ProcessOutput& r) { return std::stoi(r.out.substr(r.out.rfind('\n') + 1)); }
std::string Body(const ProcessOutput& r) { return r.out.substr(0, r.out.rfind('\n')); }

std::string ServeConfig(const std::string& dir) {
  std::string config = HourlyConfig(dir, GoldenDir() + "/clicks-dirty.jsonl", 1000, "1h");
  config.replace(config.find("service: {"), 10, "service: { http_listen: \"127.0.0.1:0\",");
  config.replace(config.find("batch_interval: 1s"), 18, "batch_interval: 100ms");
  return config;
}

TEST(HttpTest, ApiMetricsAndReadinessOfARunningService) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", ServeConfig(dir.path()));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  // Wait until the whole file went through (20 batches with data, then empty ones).
  std::string metrics;
  for (int i = 0; i < 300; ++i) {
    metrics = Body(Get(service.Url("/metrics")));
    if (metrics.find("runnel_records_total{query=\"hourly_pages\"} 20070") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(metrics.find("runnel_records_total{query=\"hourly_pages\"} 20070"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("runnel_late_records_total{query=\"hourly_pages\"} 40"),
            std::string::npos);
  EXPECT_NE(metrics.find(
                "runnel_invalid_records_total{query=\"hourly_pages\",reason=\"malformed_json\"}"),
            std::string::npos);
  EXPECT_NE(metrics.find("runnel_batch_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_NE(metrics.find("runnel_build_info{"), std::string::npos);
  WriteText(dir.path() + "/metrics.txt", metrics + "\n");
  auto lint = RunProcess({"bash", "-c", "promtool check metrics < " + dir.path() + "/metrics.txt"});
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;

  EXPECT_EQ(Code(Get(service.Url("/readyz"))), 200);
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200);
  EXPECT_EQ(Code(Get(service.Url("/healthz"))), 200);

  auto list = Get(service.Url("/v1/queries"));
  EXPECT_EQ(Code(list), 200);
  EXPECT_NE(Body(list).find("\"name\":\"hourly_pages\""), std::string::npos);
  auto one = Get(service.Url("/v1/queries/hourly_pages"));
  EXPECT_NE(Body(one).find("\"progress\":[{"), std::string::npos) << Body(one);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/lineage"))), 200);

  // Aggregates read from state equal the golden records.
  const auto want = ById(ReadLines(GoldenDir() + "/expected-dirty.jsonl"));
  auto agg = Get(
      service.Url("/v1/queries/hourly_pages/aggregates?customer=a.com&url=http://a.com/articles/1"
                  "&from=2017-09-17T01:00:00&to=2017-09-17T03:00:00"));
  ASSERT_EQ(Code(agg), 200) << agg.out;
  auto got = boost::json::parse(Body(agg)).as_array();
  ASSERT_EQ(got.size(), 2u) << Body(agg);
  for (const auto& rec : got) EXPECT_EQ(rec, want.at(std::string(rec.at("_id").as_string())));
  auto all = boost::json::parse(Body(Get(service.Url("/v1/queries/hourly_pages/aggregates"))));
  EXPECT_EQ(all.as_array().size(), want.size());

  // Clean 4xx for what is wrong.
  EXPECT_EQ(Code(Get(service.Url("/nope"))), 404);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/other"))), 404);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/aggregates?colour=red"))), 400);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/aggregates?from=yesterday"))), 400);
  auto post = RunProcess({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                          service.Url("/metrics")});
  EXPECT_EQ(post.out, "405");
  auto huge = RunProcess({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                          "X-Big: " + std::string(20000, 'x'), service.Url("/livez")});
  EXPECT_EQ(huge.out, "431");
  auto bad_target = RunProcess({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "--request-target", "no-slash", service.Url("/livez")});
  EXPECT_EQ(bad_target.out, "400");

  // 200 concurrent scrapes.
  std::vector<std::thread> scrapers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 200; ++i) {
    scrapers.emplace_back([&] {
      if (Code(Get(service.Url("/metrics"))) == 200) ++ok;
    });
  }
  for (auto& t : scrapers) t.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200);

  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0) << "SIGTERM drains and exits 0";
}

}  // namespace
}  // namespace runnel::testing
