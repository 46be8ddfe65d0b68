// Kafka under trouble, end to end: `runnel broker` (3 brokers) with faults sent on its stdin
// while the service runs; two instances sharing one consumer group; offsets that aged out of
// the log. The aggregates must stay exact and the service must stay up.
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

using std::chrono::seconds;

// The hourly query over the topic `clicks`, serving HTTP, 200 ms batches, broker requests
// bounded by 2 s, in consumer group `group`.
std::string FaultConfig(const std::string& dir, const std::string& bootstrap,
                        const std::string& group = "runnel") {
  std::string config =
      Serving(WithKafkaSource(HourlyConfig(dir, "unused", 1000, "1d"), bootstrap, 700), "200ms");
  const std::string topic = "topic: clicks,";
  config.replace(config.find(topic), topic.size(),
                 topic + " request_timeout: 2s, group_id: " + group + ",");
  return config;
}

// Writes lines [from, to) of the clean golden input to `path`.
void GoldenSlice(const std::string& path, size_t from, size_t to) {
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  std::string text;
  for (size_t i = from; i < to && i < lines.size(); ++i) text += lines[i] + "\n";
  WriteText(path, text);
}

double Scrape(const Service& service, const std::string& metric) {
  return SumOf(Body(Get(service.Url("/metrics"))), metric);
}

// Polls until `done` holds; false after `timeout`.
template <typename F>
bool Eventually(F done, seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::map<std::string, int64_t> PageViews(const std::map<std::string, boost::json::value>& rows) {
  std::map<std::string, int64_t> out;
  for (const auto& [id, row] : rows) {
    out[id] = row.at("metrics").at("page_views").to_number<int64_t>();
  }
  return out;
}

TEST(KafkaFaultsTest, BrokerDownLeaderMovesAndRequestErrorsLeaveTheAggregatesExact) {
  Broker broker({"clicks:4"}, /*brokers=*/3);
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", FaultConfig(dir.path(), broker.bootstrap()));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());

  GoldenSlice(dir.path() + "/1.jsonl", 0, 7000);
  Produce(broker.bootstrap(), "clicks", dir.path() + "/1.jsonl");
  ASSERT_TRUE(
      Eventually([&] { return Scrape(service, "runnel_records_total") == 7000; }, seconds(30)));

  // Broker 1 leads every partition (the service reads through it), then goes down for 8 s:
  // nothing can be read, batches fail and are retried, and /readyz says why.
  for (int p = 0; p < 4; ++p) {
    const std::string cmd = "leader clicks " + std::to_string(p) + " 1";
    ASSERT_EQ(broker.Control(cmd), "OK " + cmd);
  }
  GoldenSlice(dir.path() + "/2.jsonl", 7000, 12000);
  Produce(broker.bootstrap(), "clicks", dir.path() + "/2.jsonl");
  ASSERT_TRUE(
      Eventually([&] { return Scrape(service, "runnel_records_total") == 12000; }, seconds(30)))
      << ServiceLog(dir.path() + "/log");
  ASSERT_EQ(broker.Control("down 1"), "OK down 1");
  const auto down_at = std::chrono::steady_clock::now();
  std::string not_ready;
  EXPECT_TRUE(Eventually(
      [&] {
        auto r = Get(service.Url("/readyz"));
        if (Code(r) == 503) not_ready = Body(r);
        return !not_ready.empty();
      },
      seconds(20)));
  EXPECT_NE(not_ready.find("not ready"), std::string::npos)
      << not_ready << ServiceLog(dir.path() + "/log");
  std::this_thread::sleep_until(down_at + seconds(8));
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200) << "the service must stay up";
  ASSERT_EQ(broker.Control("up 1"), "OK up 1");
  EXPECT_TRUE(Eventually([&] { return Code(Get(service.Url("/readyz"))) == 200; }, seconds(60)))
      << Body(Get(service.Url("/readyz"))) << ServiceLog(dir.path() + "/log");

  // Leaders move, then Fetch (1) and OffsetCommit (8) requests fail for a while.
  EXPECT_EQ(broker.Control("leader clicks 0 2"), "OK leader clicks 0 2");
  EXPECT_EQ(broker.Control("leader clicks 1 3"), "OK leader clicks 1 3");
  EXPECT_EQ(broker.Control("errors 1 20 6"), "OK errors 1 20 6");  // NOT_LEADER_FOR_PARTITION
  EXPECT_EQ(broker.Control("errors 8 5 15"), "OK errors 8 5 15");  // COORDINATOR_NOT_AVAILABLE
  EXPECT_EQ(broker.Control("rtt 2 300"), "OK rtt 2 300");
  GoldenSlice(dir.path() + "/3.jsonl", 12000, 20000);
  Produce(broker.bootstrap(), "clicks", dir.path() + "/3.jsonl");

  EXPECT_TRUE(
      Eventually([&] { return Scrape(service, "runnel_records_total") == 20000; }, seconds(90)))
      << Scrape(service, "runnel_records_total") << ServiceLog(dir.path() + "/log");
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  EXPECT_EQ(service.Terminate(seconds(30)), 0) << ServiceLog(dir.path() + "/log");
}

TEST(KafkaFaultsTest, TwoMembersOfOneGroupShareThePartitionsAndReadEachRecordOnce) {
  Broker broker({"clicks:4"});
  TempDir a, b;
  WriteText(a.path() + "/q.yaml", FaultConfig(a.path(), broker.bootstrap(), "shared"));
  WriteText(b.path() + "/q.yaml", FaultConfig(b.path(), broker.bootstrap(), "shared"));
  Service first(a.path() + "/q.yaml", a.path() + "/log");
  ASSERT_TRUE(first.WaitReady());
  EXPECT_EQ(Scrape(first, "runnel_kafka_assigned_partitions"), 4);

  GoldenSlice(a.path() + "/1.jsonl", 0, 10000);
  Produce(broker.bootstrap(), "clicks", a.path() + "/1.jsonl");
  ASSERT_TRUE(
      Eventually([&] { return Scrape(first, "runnel_records_total") == 10000; }, seconds(30)));

  // A second member joins: the first gives up half of the partitions between two batches,
  // handing their offsets to the group, and the second starts right there.
  Service second(b.path() + "/q.yaml", b.path() + "/log");
  ASSERT_TRUE(second.WaitReady());
  EXPECT_TRUE(Eventually(
      [&] {
        return Scrape(first, "runnel_kafka_assigned_partitions") == 2 &&
               Scrape(second, "runnel_kafka_assigned_partitions") == 2;
      },
      seconds(30)));
  GoldenSlice(a.path() + "/2.jsonl", 10000, 20000);
  Produce(broker.bootstrap(), "clicks", a.path() + "/2.jsonl");
  auto total = [&] {
    return Scrape(first, "runnel_records_total") + Scrape(second, "runnel_records_total");
  };
  ASSERT_TRUE(Eventually([&] { return total() >= 20000; }, seconds(60))) << total();
  std::this_thread::sleep_for(seconds(1));  // a record read twice would show up now
  auto logs = [&] {
    std::string text;
    for (const auto* d : {&a, &b}) {
      for (const auto& l : ReadLines(d->path() + "/log")) {
        if (l.find("[kafka]") != std::string::npos) text += l + "\n";
      }
    }
    return text;
  };
  EXPECT_EQ(total(), 20000) << logs();
  EXPECT_GT(Scrape(second, "runnel_records_total"), 0);
  EXPECT_EQ(first.Terminate(seconds(30)), 0);
  EXPECT_EQ(second.Terminate(seconds(30)), 0);

  // Each instance counted its share: per key, the page views add up to the peer's.
  std::map<std::string, int64_t> sum = PageViews(SinkContent(a.path()));
  for (const auto& [id, n] : PageViews(SinkContent(b.path()))) sum[id] += n;
  EXPECT_EQ(sum, PageViews(ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"))));
}

TEST(KafkaFaultsTest, RateControlCapsTheFirstBatchThenFollowsTheProcessingRate) {
  Broker broker({"clicks:4"});
  TempDir dir;
  GoldenSlice(dir.path() + "/in.jsonl", 0, 11000);
  Produce(broker.bootstrap(), "clicks", dir.path() + "/in.jsonl");
  std::string config = FaultConfig(dir.path(), broker.bootstrap());
  const std::string topic = "topic: clicks,";
  config.replace(config.find(topic), topic.size(),
                 topic + " rate_control: { initial_rate: 2000, min_rate: 100 },");
  config.replace(config.find("batch_interval: 200ms"), 21, "batch_interval: 1s");
  WriteText(dir.path() + "/q.yaml", config);
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  // The first batch: 2000 records/s * 1 s over 4 partitions = at most 500 each (the fullest
  // partition reads 500, the others the same share of their backlog).
  std::string metrics;
  ASSERT_TRUE(Eventually(
      [&] {
        metrics = Body(Get(service.Url("/metrics")));
        return SumOf(metrics, "runnel_batches_total") >= 1;
      },
      seconds(30)));
  EXPECT_LE(SumOf(metrics, "runnel_records_total"), 2000) << metrics;
  EXPECT_GT(SumOf(metrics, "runnel_records_total"), 1000) << metrics;
  // Batches are far faster than 2000 records/s here: the rate rises and the rest follows.
  EXPECT_TRUE(
      Eventually([&] { return Scrape(service, "runnel_records_total") == 11000; }, seconds(30)));
  EXPECT_EQ(service.Terminate(seconds(30)), 0);
}

// 20000 golden events (~146 bytes each, 2.9 MB) in one partition, read with a 512KiB byte cap
// (and a record cap that alone would take them in one batch): the first batch takes 32 records
// (16 KiB a message before any was read), the later ones ~3600 (the previous batch's average).
TEST(KafkaFaultsTest, MaxBytesPerBatchCutsBatchesByTheAverageMessageSizeAndStaysExact) {
  Broker broker({"clicks:1"});
  TempDir dir;
  Produce(broker.bootstrap(), "clicks", GoldenDir() + "/clicks-clean.jsonl");
  std::string config =
      WithKafkaSource(HourlyConfig(dir.path(), "unused", 1000, "1d"), broker.bootstrap(), 100000);
  const std::string cap = "max_records_per_partition: 100000";
  config.replace(config.find(cap), cap.size(), cap + ", max_bytes_per_batch: 512KiB");
  WriteText(dir.path() + "/q.yaml", config);
  auto run =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::smatch m;
  const std::regex caught_up("caught up after ([0-9]+) batches: ([0-9]+) records");
  ASSERT_TRUE(std::regex_search(run.err, m, caught_up)) << run.err;
  EXPECT_EQ(std::stoi(m[2]), 20000);
  EXPECT_GE(std::stoi(m[1]), 6) << run.err;   // 1 + ceil(19968 / 3590)
  EXPECT_LE(std::stoi(m[1]), 10) << run.err;  // not the first batch's size throughout
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
}

TEST(KafkaFaultsTest, OffsetsNoLongerInTheLogFailOrAreSkippedAsConfigured) {
  Broker broker({"clicks:1"});
  TempDir dir;
  std::string config =
      WithKafkaSource(HourlyConfig(dir.path(), "unused", 1000, "1d"), broker.bootstrap(), 100000);
  WriteText(dir.path() + "/q.yaml", config);
  const std::vector<std::string> run = {RunnelBinary(), "run", "--config", dir.path() + "/q.yaml",
                                        "--available-now"};
  auto gen = [&](int events) {
    auto r = RunProcess({RunnelBinary(), "gen", "--events", std::to_string(events), "--seed", "3",
                         "--bootstrap", broker.bootstrap(), "--topic", "clicks"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  gen(100);
  auto first = RunProcess(run);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // ~9 MB more into one partition: the mock cluster keeps ~5 MiB, so offset 100 is gone.
  gen(60000);
  auto failed = RunProcess(run);
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_NE(failed.err.find("are no longer available (on_data_loss: fail)"), std::string::npos)
      << failed.err;

  const std::string fail = "max_records_per_partition: 100000";
  config.replace(config.find(fail), fail.size(), fail + ", on_data_loss: skip");
  WriteText(dir.path() + "/q.yaml", config);
  auto skipped = RunProcess(run);
  ASSERT_EQ(skipped.exit_code, 0) << skipped.err;
  const std::regex lost("skipped ([0-9]+) records no longer available");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(skipped.err, m, lost)) << skipped.err;
  const int64_t n = std::stoll(m[1]);
  EXPECT_GT(n, 0);
  // What was skipped plus what was read is everything produced after the first run.
  const std::regex caught("caught up after [0-9]+ batches: ([0-9]+) records");
  ASSERT_TRUE(std::regex_search(skipped.err, m, caught)) << skipped.err;
  EXPECT_EQ(n + std::stoll(m[1]), 60000);
}

}  // namespace
}  // namespace runnel::testing
