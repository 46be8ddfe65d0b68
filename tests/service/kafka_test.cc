// The Kafka path end to end: `runnel broker` in its own process, kcat (an outside client)
// producing the golden data, `runnel run --available-now` over a Kafka source.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/context.h"
#include "sources/kafka_source.h"
#include "streaming/dstream.h"
#include "tests/service/service_test_util.h"

extern char** environ;

namespace runnel::testing {
namespace {

std::string KafkaConfig(const std::string& dir, const std::string& bootstrap) {
  return WithKafkaSource(HourlyConfig(dir, "unused", 1000), bootstrap, 700);
}

// The same, reading a partition's backlog in one batch. Tests that compare with the golden
// aggregates use it: until lateness is judged per partition (issue 19) which records are late
// depends on where batches are cut, and kcat spreads the records over the partitions at
// random, so capped cuts differ from run to run.
std::string UncappedKafkaConfig(const std::string& dir, const std::string& bootstrap) {
  return WithKafkaSource(HourlyConfig(dir, "unused", 1000), bootstrap, 100000);
}

// The offsets consumer group `group` committed for partitions 0..partitions-1, summed.
int64_t CommittedOffsets(const std::string& bootstrap, const std::string& group,
                         const std::string& topic, int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof(err));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (rk == nullptr) return -1;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  int64_t sum = -1;
  if (rd_kafka_committed(rk, list, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    sum = 0;
    for (int i = 0; i < list->cnt; ++i) sum += std::max<int64_t>(0, list->elems[i].offset);
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return sum;
}

// Produces `values` to partition 0 of `topic` with librdkafka (kcat sends neither a null value
// nor a message above its own size limit); nullopt is a null value. Every one must be delivered.
void ProduceValues(const std::string& bootstrap, const std::string& topic,
                   const std::vector<std::optional<std::string>>& values) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [key, value] : std::map<std::string, std::string>{
           {"bootstrap.servers", bootstrap}, {"message.max.bytes", "4000000"}}) {
    ASSERT_EQ(rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof(err)),
              RD_KAFKA_CONF_OK)
        << err;
  }
  int failed = 0;
  rd_kafka_conf_set_opaque(conf, &failed);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) ++*static_cast<int*>(opaque);
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  ASSERT_NE(rk, nullptr) << err;
  for (const auto& v : values) {
    void* data = v ? const_cast<char*>(v->data()) : nullptr;
    const size_t size = v ? v->size() : 0;
    const rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE(data, size),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    EXPECT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(e);
  }
  EXPECT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(failed, 0);
  rd_kafka_destroy(rk);
}

TEST(KafkaTest, GoldenDataFromKcatThroughTheKafkaSourceAndOnWithMoreData) {
  Broker broker({"clicks:4"});
  TempDir dir;
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  ASSERT_EQ(lines.size(), 20000u);
  std::string first, second;
  for (size_t i = 0; i < lines.size(); ++i) (i < 11000 ? first : second) += lines[i] + "\n";
  WriteText(dir.path() + "/first.jsonl", first);
  WriteText(dir.path() + "/second.jsonl", second);
  WriteText(dir.path() + "/q.yaml", UncappedKafkaConfig(dir.path(), broker.bootstrap()));
  const std::vector<std::string> run = {RunnelBinary(), "run", "--config", dir.path() + "/q.yaml",
                                        "--available-now"};

  Produce(broker.bootstrap(), "clicks", dir.path() + "/first.jsonl");
  auto r1 = RunProcess(run);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_NE(r1.err.find("11000 records, 0 invalid, 0 late"), std::string::npos) << r1.err;

  // More data arrives: the next run continues from the committed offsets.
  Produce(broker.bootstrap(), "clicks", dir.path() + "/second.jsonl");
  auto r2 = RunProcess(run);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_NE(r2.err.find("9000 records, 0 invalid, 0 late"), std::string::npos)
      << "no record read twice or missed:\n"
      << r2.err;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  // The final checkpoint's offsets went to the consumer group, for lag tools.
  EXPECT_EQ(CommittedOffsets(broker.bootstrap(), "runnel", "clicks", 4), 20000);
}

TEST(KafkaTest, TwoQueriesOnOneSourceEachReadEveryPartitionThroughOneGroupMember) {
  Broker broker({"clicks:4"});
  TempDir dir;
  Produce(broker.bootstrap(), "clicks", GoldenDir() + "/clicks-clean.jsonl");
  std::string config = UncappedKafkaConfig(dir.path(), broker.bootstrap());
  std::string copy = config.substr(config.find("  - name: hourly_pages"));
  copy.replace(copy.find("hourly_pages"), 12, "copy");
  copy.replace(copy.rfind(dir.path() + "/out"), dir.path().size() + 4, dir.path() + "/out2");
  WriteText(dir.path() + "/q.yaml", config + copy);
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Each query read all 20000 records: the group gave the one member every partition.
  EXPECT_NE(r.err.find("query hourly_pages: caught up after"), std::string::npos) << r.err;
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  auto second = sinks::JsonFileSink::ReadLatest(dir.path() + "/out2/copy");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(ById(*second), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  EXPECT_EQ(CommittedOffsets(broker.bootstrap(), "runnel", "clicks", 4), 20000);
}

TEST(KafkaTest, ConsumerLagIsExportedPerPartition) {
  Broker broker({"clicks:4"});
  TempDir dir;
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  std::string first;
  for (size_t i = 0; i < 11000; ++i) first += lines[i] + "\n";
  WriteText(dir.path() + "/first.jsonl", first);
  Produce(broker.bootstrap(), "clicks", dir.path() + "/first.jsonl");
  WriteText(dir.path() + "/q.yaml", Serving(KafkaConfig(dir.path(), broker.bootstrap()), "3s"));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());  // joined the group
  // The first batch reads at most 700 records from each of 4 partitions (the fullest reads
  // exactly 700, the others the same share of theirs); what it left is the lag.
  std::string metrics;
  double records = 0;
  for (int i = 0; i < 400 && records == 0; ++i) {
    metrics = Body(Get(service.Url("/metrics")));
    records = SumOf(metrics, "runnel_records_total");
    if (records == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(records, 700) << metrics;
  EXPECT_LE(records, 2800) << metrics;
  EXPECT_EQ(SumOf(metrics, "runnel_kafka_consumer_lag_records"), 11000 - records) << metrics;
  EXPECT_NE(metrics.find("runnel_kafka_consumer_lag_records{partition=\"3\",topic=\"clicks\"}"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
}

// The query over the same events read from a file: the truth for the Kafka runs.
std::map<std::string, boost::json::value> FileTruth(const std::string& dir,
                                                    const std::string& events) {
  const std::string truth = dir + "/truth";
  std::filesystem::create_directories(truth);
  WriteText(truth + "/q.yaml", HourlyConfig(truth, events, 100000, "1d"));
  auto r = RunProcess({RunnelBinary(), "run", "--config", truth + "/q.yaml", "--available-now"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return SinkContent(truth);
}

// SIGTERM while the generator produces and batches run: exit 0 within the budget; a second
// signal exits at once; restarts catch up with nothing lost or counted twice.
TEST(KafkaTest, SignalsUnderLoadDrainAndRestartsLoseNothing) {
  // 8 partitions: the mock keeps ~5 MiB each, and the group joins take seconds.
  Broker broker({"clicks:8"});
  TempDir dir;
  constexpr int kEvents = 120000;
  const std::vector<std::string> gen = {
      RunnelBinary(), "gen", "--events", std::to_string(kEvents), "--seed", "9", "--disorder", "60",
      "--customers",  "3"};
  std::vector<std::string> to_kafka = gen;
  for (const char* a : {"--bootstrap", "", "--topic", "clicks", "--rate", "15000"}) {
    to_kafka.push_back(a);
  }
  to_kafka[to_kafka.size() - 5] = broker.bootstrap();
  std::vector<std::string> to_file = gen;
  to_file.push_back("--out");
  to_file.push_back(dir.path() + "/events.jsonl");
  ASSERT_EQ(RunProcess(to_file).exit_code, 0);

  const std::string config = Serving(
      WithKafkaSource(HourlyConfig(dir.path(), "unused", 1000, "1d"), broker.bootstrap(), 5000),
      "200ms");
  WriteText(dir.path() + "/q.yaml", config);

  const pid_t producer = Spawn(to_kafka);
  {
    // First: one SIGTERM mid-stream drains and exits 0 within the 20 s budget.
    Service service(dir.path() + "/q.yaml", dir.path() + "/log1");
    ASSERT_TRUE(service.WaitReady());
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  }
  {
    // Then: a second signal during the drain exits at once, with 1. (Two different signals:
    // two pending SIGTERMs would merge into one.)
    Service service(dir.path() + "/q.yaml", dir.path() + "/log2");
    ASSERT_TRUE(service.WaitReady());
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    EXPECT_EQ(service.Terminate(std::chrono::seconds(20), {SIGTERM, SIGINT}), 1);
  }
  ASSERT_EQ(WaitFor(producer), 0);
  // The rest of the stream, and the comparison with the same events read from a file.
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto want = FileTruth(dir.path(), dir.path() + "/events.jsonl");
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(SinkContent(dir.path()), want);
}

// The Kafka sink: every output record keyed by its _id, the batch id in a header; the latest
// value per key is the peer's aggregates, and the topic holds exactly what the file sink holds.
TEST(KafkaTest, KafkaSinkProducesEachRecordKeyedByIdWithItsBatchId) {
  Broker broker({"pages:2"});
  TempDir dir;
  std::string config = HourlyConfig(dir.path(), GoldenDir() + "/clicks-clean.jsonl", 1000);
  const std::string file_sink = "sinks: [ { type: json_files, path: " + dir.path() + "/out } ]";
  config.replace(config.find(file_sink), file_sink.size(),
                 "sinks: [ { type: json_files, path: " + dir.path() +
                     "/out }, { type: kafka, bootstrap_servers: \"" + broker.bootstrap() +
                     "\", topic: pages } ]");
  WriteText(dir.path() + "/q.yaml", config);
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto consumed = RunProcess({"timeout", "60", "kcat", "-C", "-b", broker.bootstrap(), "-t",
                              "pages", "-o", "beginning", "-e", "-q", "-f", "%k\t%h\t%s\n"});
  ASSERT_EQ(consumed.exit_code, 0) << consumed.err;
  std::map<std::string, boost::json::value> latest;
  std::set<std::string> batches;
  int messages = 0;
  std::istringstream in(consumed.out);
  for (std::string line; std::getline(in, line);) {
    const size_t tab1 = line.find('\t');
    const size_t tab2 = line.find('\t', tab1 + 1);
    ASSERT_NE(tab2, std::string::npos) << line;
    const std::string key = line.substr(0, tab1);
    const std::string header = line.substr(tab1 + 1, tab2 - tab1 - 1);
    boost::json::value record = boost::json::parse(line.substr(tab2 + 1));
    EXPECT_EQ(record.at("_id").as_string(), key);
    ASSERT_TRUE(header.starts_with("runnel-batch-id=")) << header;
    batches.insert(header.substr(16));
    latest[key] = std::move(record);
    ++messages;
  }
  EXPECT_EQ(latest, ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  EXPECT_EQ(batches.size(), 20u) << "one batch id per batch of 1000 records";
  int file_records = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path() + "/out")) {
    if (e.path().extension() == ".jsonl") {  // the parts (not the INCARNATION mark)
      file_records += static_cast<int>(ReadLines(e.path().string()).size());
    }
  }
  EXPECT_EQ(messages, file_records) << "each record produced once";
}

TEST(KafkaTest, GenProducesTheWorkloadThatTheServiceCounts) {
  Broker broker({"clicks:4"});
  TempDir dir;
  auto g = RunProcess({RunnelBinary(), "gen", "--events", "20000", "--disorder", "60",
                       "--bootstrap", broker.bootstrap(), "--topic", "clicks"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  WriteText(dir.path() + "/q.yaml", KafkaConfig(dir.path(), broker.bootstrap()));
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Keyed by url, each partition is in time order, but partitions of different sizes drift
  // apart in event time batch by batch: a few records may be late. Every record is either
  // counted once or counted as late.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("20000 records, 0 invalid, ([0-9]+) late")))
      << r.err;
  const int64_t late = std::stoll(m[1]);
  EXPECT_LT(late, 200);
  int64_t views = 0;
  for (const auto& [id, rec] : SinkContent(dir.path())) {
    views += rec.at("metrics").at("page_views").as_int64();
  }
  EXPECT_EQ(views + late, 20000);
}

// Messages only Kafka can carry: empty, null (a tombstone) and above the record size limit,
// between the golden data. Each is counted under its reason and dead-lettered; the rest is
// exact.
TEST(KafkaTest, EmptyNullAndOversizedMessagesAreCountedAndTheRestIsExact) {
  Broker broker({"clicks:2"});
  TempDir dir;
  const auto lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  std::string first, second;
  for (size_t i = 0; i < lines.size(); ++i) (i < 9000 ? first : second) += lines[i] + "\n";
  WriteText(dir.path() + "/first.jsonl", first);
  WriteText(dir.path() + "/second.jsonl", second);
  Produce(broker.bootstrap(), "clicks", dir.path() + "/first.jsonl");
  ProduceValues(broker.bootstrap(), "clicks",
                {std::string(), std::nullopt, std::string(),
                 "{\"customer\": \"" + std::string(1100000, 'x') + "\"}"});
  Produce(broker.bootstrap(), "clicks", dir.path() + "/second.jsonl");
  WriteText(dir.path() + "/q.yaml",
            WithDeadLetters(UncappedKafkaConfig(dir.path(), broker.bootstrap()), dir.path()));

  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err.substr(0, 4000);
  EXPECT_NE(r.err.find("20004 records, 4 invalid"), std::string::npos) << r.err.substr(0, 4000);
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));
  EXPECT_EQ(DeadLettersByReason(dir.path()),
            (std::map<std::string, size_t>{{"empty", 3}, {"too_large", 1}}));
}

TEST(KafkaTest, GroupOffsetsFollowTheConfirmedBatches) {
  // Batches commit their offsets to the group as they go, and so does each checkpoint. The
  // group's offset must not go back.
  Broker broker({"fwd:1"});
  ProduceValues(broker.bootstrap(), "fwd",
                std::vector<std::optional<std::string>>(100, std::string("{}")));
  auto engine = engine::Context::Make({.workers = 2}).value();
  ManualClock clock(TimePoint(Millis(1'700'000'000'000)));
  streaming::StreamingContext ssc(engine.get(), {.batch_interval = Millis(1000), .clock = &clock});
  auto source = sources::KafkaSource::Make(&ssc, {.name = "fwd",
                                                  .bootstrap_servers = broker.bootstrap(),
                                                  .topics = {"fwd"},
                                                  .group_id = "fwd-group",
                                                  .max_records_per_partition = 30,
                                                  .librdkafka = {{"session.timeout.ms", "6000"}}});
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->Restore({}).ok());
  std::atomic<int64_t> read{0};
  streaming::DStream<std::string>(*source).ForeachRdd(
      [&read](const engine::Rdd<std::string>& rdd, streaming::BatchInfo*) -> Status {
        ASSIGN_OR_RETURN(auto records, rdd.Collect());
        read += static_cast<int64_t>(records.size());
        return Status::OK();
      });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (read < 100 && std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(ssc.RunBatch(clock.Now()).ok());
    clock.Advance(Millis(1000));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(read, 100);
  // The checkpoint's commit: the confirmed positions again, never behind the batches' 100.
  ASSERT_TRUE((*source)->subscription()->CommitConfirmed(/*async=*/false).ok());
  int64_t committed = -1;
  for (int i = 0; i < 100 && committed != 100; ++i) {
    committed = CommittedOffsets(broker.bootstrap(), "fwd-group", "fwd", 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(committed, 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // an in-flight commit lands
  EXPECT_EQ(CommittedOffsets(broker.bootstrap(), "fwd-group", "fwd", 1), 100);
}

TEST(KafkaTest, ASinkRecordOverTheSizeLimitStopsTheQueryNamingIt) {
  // A record no retry can deliver (over message.max.bytes) must stop the query with a message
  // naming it, not be retried forever while /readyz stays 503.
  Broker broker({"pages:1"});
  TempDir dir;
  const std::string long_url = "http://a.com/" + std::string(3000, 'x');
  WriteText(
      dir.path() + "/in.jsonl",
      "{\"customer\": \"a.com\", \"url\": \"" + long_url +
          "\", \"referrer\": \"r\", \"session_id\": \"s\", \"ts\": \"2017-09-17T00:00:00\"}\n");
  std::string config = HourlyConfig(dir.path(), dir.path() + "/in.jsonl", 1000);
  const std::string file_sink = "sinks: [ { type: json_files, path: " + dir.path() + "/out } ]";
  config.replace(config.find(file_sink), file_sink.size(),
                 "sinks: [ { type: kafka, bootstrap_servers: \"" + broker.bootstrap() +
                     "\", topic: pages, librdkafka: { message.max.bytes: \"2000\" } } ]");
  WriteText(dir.path() + "/q.yaml", config);
  auto r = RunProcess({"timeout", "60", RunnelBinary(), "run", "--config", dir.path() + "/q.yaml",
                       "--available-now"});
  EXPECT_EQ(r.exit_code, 1) << r.err;  // not 124: it did not retry until killed
  EXPECT_NE(r.err.find("InvalidArgument: kafka sink: produce record _id " + long_url),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("too large"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace runnel::testing
