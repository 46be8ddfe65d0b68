// The crash loop, after RocksDB's stress tests and Kafka's exactly-once system tests:
// `runnel broker` in its own process, `runnel gen` producing at a steady rate, and the service
// SIGKILLed at random moments K times (RUNNEL_CHAOS_KILLS, default 20) and restarted each
// time; then an --available-now run catches up. The truth is computed here, independently,
// from the same events written to a file: page views per (customer, url, hour). Prints
//   chaos: kills=K lost=L duplicated=D max_key_diff=M ready_p50=..s ready_p99=..s
// and requires L = D = M = 0 (and every record equal to the file run's).
#include <chrono>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "tests/chaos/chaos_util.h"

namespace runnel::testing {
namespace {

TEST(ChaosTest, SigkillLoopWithBrokerAndGeneratorLosesAndDuplicatesNothing) {
  const int kills = EnvInt("RUNNEL_CHAOS_KILLS", 20);
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

  const Exactness e =
      Compare(PageViewsFromEvents(dir.path() + "/events.jsonl"), SinkContent(dir.path()));
  std::printf(
      "chaos: kills=%d lost=%ld duplicated=%ld max_key_diff=%ld ready_p50=%.2fs "
      "ready_p99=%.2fs\n",
      kills, e.lost, e.duplicated, e.max_key_diff, Quantile(ready_seconds, 0.5),
      Quantile(ready_seconds, 0.99));
  EXPECT_EQ(e.lost, 0);
  EXPECT_EQ(e.duplicated, 0);
  EXPECT_EQ(e.max_key_diff, 0);
}

}  // namespace
}  // namespace runnel::testing
