// The crash loop, after RocksDB's stress tests and Kafka's exactly-once system tests:
// `runnel broker` in its own process, `runnel gen` producing at a steady rate, and the service
// SIGKILLed at random moments K times (RUNNEL_CHAOS_KILLS, default 20) and restarted each
// time; then an --available-now run catches up. The truth is computed here, independently,
// from the same events written to a file: page views per (customer, url, hour). Prints
//   chaos: kills=K lost=L duplicated=D max_key_diff=M ready_p50=..s ready_p99=..s
// and requires L = D = M = 0 (and every record equal to the file run's).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

// Page views per output _id ("URL|CUSTOMER|HOUR:00:00"), straight from the events.
std::map<std::string, int64_t> PageViewsFromEvents(const std::string& path) {
  std::map<std::string, int64_t> views;
  for (const std::string& line : ReadLines(path)) {
    const auto v = boost::json::parse(line).as_object();
    const std::string ts(v.at("ts").as_string());
    views[std::string(v.at("url").as_string()) + "|" + std::string(v.at("customer").as_string()) +
          "|" + ts.substr(0, 13) + ":00:00"]++;
  }
  return views;
}

TEST(ChaosTest, SigkillLoopWithBrokerAndGeneratorLosesAndDuplicatesNothing) {
  const char* env = std::getenv("RUNNEL_CHAOS_KILLS");  // NOLINT(concurrency-mt-unsafe)
  const int kills = env != nullptr ? std::atoi(env) : 20;
  constexpr int kEvents = 300000;
  Broker broker({"clicks:16"});
  TempDir dir;
  const std::vector<std::string> gen = {
      RunnelBinary(), "gen",        "--events", std::to_string(kEvents), "--seed",
      "77",           "--disorder", "30",       "--customers",           "3"};
  std::vector<std::string> to_file = gen;
  to_file.insert(to_file.end(), {"--out", dir.path() + "/events.jsonl"});
  ASSERT_EQ(RunProcess(to_file).exit_code, 0);
  std::vector<std::string> to_kafka = gen;
  to_kafka.insert(to_kafka.end(),
                  {"--bootstrap", broker.bootstrap(), "--topic", "clicks", "--rate", "12000"});

  std::string config = Serving(
      WithKafkaSource(HourlyConfig(dir.path(), "unused", 1000, "1d"), broker.bootstrap(), 4000),
      "200ms");
  const std::string topic = "topic: clicks,";
  config.replace(config.find(topic), topic.size(), topic + " assignment: all,");
  WriteText(dir.path() + "/q.yaml", config);

  const pid_t producer = Spawn(to_kafka);
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> run_ms(200, 1500);
  std::vector<double> ready_seconds;
  for (int k = 0; k < kills; ++k) {
    const auto start = std::chrono::steady_clock::now();
    Service service(dir.path() + "/q.yaml", dir.path() + "/log" + std::to_string(k));
    ASSERT_TRUE(service.WaitReady()) << "restart " << k;
    ready_seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::this_thread::sleep_for(std::chrono::milliseconds(run_ms(rng)));
    // ~Service: SIGKILL, at whatever the service is doing.
  }
  ASSERT_EQ(WaitFor(producer), 0);
  auto caught_up =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(caught_up.exit_code, 0) << caught_up.err;

  const auto truth = PageViewsFromEvents(dir.path() + "/events.jsonl");
  const auto got = SinkContent(dir.path());
  int64_t lost = 0, duplicated = 0, max_diff = 0;
  for (const auto& [id, want] : truth) {
    auto it = got.find(id);
    const int64_t have =
        it == got.end() ? 0 : it->second.at("metrics").at("page_views").to_number<int64_t>();
    lost += std::max<int64_t>(0, want - have);
    duplicated += std::max<int64_t>(0, have - want);
    max_diff = std::max(max_diff, std::abs(have - want));
  }
  for (const auto& [id, row] : got) {
    if (!truth.count(id)) duplicated += row.at("metrics").at("page_views").to_number<int64_t>();
  }
  std::sort(ready_seconds.begin(), ready_seconds.end());
  auto pct = [&](double q) {
    return ready_seconds.empty()
               ? 0.0
               : ready_seconds[std::min(ready_seconds.size() - 1,
                                        static_cast<size_t>(q * ready_seconds.size()))];
  };
  std::printf(
      "chaos: kills=%d lost=%ld duplicated=%ld max_key_diff=%ld ready_p50=%.2fs "
      "ready_p99=%.2fs\n",
      kills, lost, duplicated, max_diff, pct(0.5), pct(0.99));
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(duplicated, 0);
  EXPECT_EQ(max_diff, 0);
}

}  // namespace
}  // namespace runnel::testing
