// Config reload (SIGHUP, POST /v1/reload) on the real binary: queries start, stop, restart and
// are refused between batches while the others run on, and every query ends exact.
#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

namespace json = boost::json;

const std::string kGoldenIn = "clicks-clean.jsonl";

// The flagship query over `input`, served on a free port, batches every `interval`, at most
// `batch` records each.
std::string BaseConfig(const std::string& dir, const std::string& input, int64_t batch,
                       const std::string& interval) {
  return Serving(HourlyConfig(dir, input, batch, "1h"), interval);
}

// `config` with a copy of its hourly_pages query named `name`, writing under `dir`/`out`.
std::string WithCopy(const std::string& config, const std::string& name, const std::string& out) {
  std::string query = config.substr(config.find("  - name: hourly_pages"));
  query.replace(query.find("hourly_pages"), 12, name);
  const size_t path = query.rfind("path: ") + 6;
  query.replace(path, query.find(' ', path) - path, out);
  return config + query;
}

// The current content of query `name`'s JSON sink under `out`.
std::map<std::string, json::value> Content(const std::string& out, const std::string& name) {
  auto latest = sinks::JsonFileSink::ReadLatest(out + "/" + name);
  return ById(latest.ok() ? *latest : std::vector<std::string>{});
}

std::map<std::string, json::value> Golden() {
  return ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"));
}

// Polls until `done` or `seconds` pass; returns done().
bool Eventually(const std::function<bool()>& done, int seconds = 60) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

json::value GetJson(const Service& service, const std::string& path) {
  auto r = Get(service.Url(path));
  if (Code(r) != 200) return nullptr;
  return json::parse(Body(r));
}

// The names of the queries /v1/queries lists.
std::vector<std::string> QueryNames(const Service& service) {
  std::vector<std::string> names;
  json::value list = GetJson(service, "/v1/queries");
  if (!list.is_array()) return names;
  for (const auto& q : list.as_array()) names.emplace_back(q.at("name").as_string());
  return names;
}

// What the last reload did to query `name`, as /v1/queries/NAME reports it ("" if nothing).
std::string ReloadOutcome(const Service& service, const std::string& name) {
  json::value q = GetJson(service, "/v1/queries/" + name);
  if (!q.is_object() || q.at("reload").is_null()) return "";
  return std::string(q.at("reload").at("outcome").as_string());
}

std::string Metrics(const Service& service) { return Body(Get(service.Url("/metrics"))); }

// Sends SIGHUP and waits until runnel_config_reloads_total reaches `reloads`.
void ReloadBySignal(const Service& service, int reloads, int seconds = 60) {
  kill(service.pid(), SIGHUP);
  ASSERT_TRUE(Eventually(
      [&] { return SumOf(Metrics(service), "runnel_config_reloads_total") >= reloads; }, seconds))
      << "the reload did not end";
}

TEST(ReloadTest, AQueryAddedBySighupStartsWhileTheOtherRunsAndBothEndExact) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  // 10 batches of 2000 records, one every 300 ms.
  const std::string config = BaseConfig(dir.path(), GoldenDir() + "/" + kGoldenIn, 2000, "300ms");
  WriteText(config_path, config);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  ASSERT_TRUE(Eventually([&] {
    json::value q = GetJson(service, "/v1/queries/hourly_pages");
    return q.is_object() && q.at("progress").as_array().size() >= 2;
  }));
  WriteText(config_path, WithCopy(config, "copy", dir.path() + "/out2"));
  ReloadBySignal(service, 1);
  EXPECT_EQ(QueryNames(service), (std::vector<std::string>{"hourly_pages", "copy"}));
  EXPECT_EQ(ReloadOutcome(service, "copy"), "started");
  EXPECT_EQ(ReloadOutcome(service, "hourly_pages"), "") << "the running query was left alone";
  EXPECT_NE(Metrics(service).find("runnel_config_reloads_total{result=\"applied\"} 1"),
            std::string::npos);
  ASSERT_TRUE(Eventually([&] {
    return Content(dir.path() + "/out", "hourly_pages") == Golden() &&
           Content(dir.path() + "/out2", "copy") == Golden();
  })) << ServiceLog(dir.path() + "/log");

  // The running query was never stopped: one context holds its whole history, from batch 0.
  // And its runner never waited: between two batches it was idle only while the next batch's
  // time had not come, or for less than one interval (on a slow build batches run back to
  // back, late by their predecessors' time, which is no gap). Batch times are an interval
  // apart (the timer queues every one), so with d the scheduling delay and p the processing
  // time, batch i+1 could start at max(its time, end of batch i) and started
  // min(d[i+1], interval + d[i+1] - d[i] - p[i]) later than that.
  json::value q = GetJson(service, "/v1/queries/hourly_pages");
  const auto& progress = q.at("progress").as_array();
  ASSERT_GE(progress.size(), 10u);
  EXPECT_EQ(progress[0].at("batch_id").as_int64(), 0);
  const double interval = 0.3;
  for (size_t i = 1; i < progress.size(); ++i) {
    EXPECT_EQ(progress[i].at("batch_id").as_int64(), progress[i - 1].at("batch_id").as_int64() + 1);
    const double d0 = progress[i - 1].at("scheduling_delay_seconds").to_number<double>();
    const double p0 = progress[i - 1].at("processing_seconds").to_number<double>();
    const double d1 = progress[i].at("scheduling_delay_seconds").to_number<double>();
    const double waited = std::min(d1, interval + d1 - d0 - p0);
    EXPECT_LT(waited, interval) << "batch " << progress[i].at("batch_id").as_int64();
  }
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

TEST(ReloadTest, ARemovedQueryKeepsItsStateAndResumesFromItsCommittedBatchWhenAddedBack) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  const auto lines = ReadLines(GoldenDir() + "/" + kGoldenIn);
  const std::string input = dir.path() + "/in";
  std::filesystem::create_directories(input);
  std::string first, second;
  for (size_t i = 0; i < lines.size(); ++i) (i < 8000 ? first : second) += lines[i] + "\n";
  WriteText(input + "/clicks.jsonl", first);
  const std::string one = BaseConfig(dir.path(), input, 2000, "100ms");
  const std::string both = WithCopy(one, "copy", dir.path() + "/out2");
  WriteText(config_path, both);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  auto copy_batches = [&] {
    json::value q = GetJson(service, "/v1/queries/copy");
    int64_t last = -1;
    if (!q.is_object()) return last;
    for (const auto& p : q.at("progress").as_array()) {
      if (p.at("records_in").as_int64() > 0) last = p.at("batch_id").as_int64();
    }
    return last;
  };
  ASSERT_TRUE(Eventually([&] { return copy_batches() == 3; })) << "4 batches of 2000 records";

  // Removed: it stops, its series go, its state stays.
  WriteText(config_path, one);
  ReloadBySignal(service, 1);
  EXPECT_EQ(QueryNames(service), (std::vector<std::string>{"hourly_pages"}));
  const std::string metrics = Metrics(service);
  EXPECT_EQ(metrics.find("query=\"copy\""), std::string::npos) << "no series of a removed query";
  EXPECT_NE(metrics.find("runnel_batches_total{query=\"hourly_pages\"}"), std::string::npos);
  EXPECT_NE(ServiceLog(dir.path() + "/log").find("reload: query copy: stopped"), std::string::npos);

  // More data arrives while it is away; added back, it resumes after its committed batch and
  // reads only what it had not.
  std::ofstream(input + "/clicks.jsonl", std::ios::app) << second;
  WriteText(config_path, both);
  ReloadBySignal(service, 2);
  EXPECT_EQ(ReloadOutcome(service, "copy"), "started");
  const std::string log = ServiceLog(dir.path() + "/log");
  EXPECT_NE(log.find("query copy recovered: next batch 4"), std::string::npos) << log;
  ASSERT_TRUE(Eventually([&] {
    return Content(dir.path() + "/out", "hourly_pages") == Golden() &&
           Content(dir.path() + "/out2", "copy") == Golden();
  })) << ServiceLog(dir.path() + "/log");
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

TEST(ReloadTest, AnInvalidFileIsReportedAndEverythingRunsOnAsBefore) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  const std::string config = BaseConfig(dir.path(), GoldenDir() + "/" + kGoldenIn, 1000, "100ms");
  WriteText(config_path, config);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  std::string broken = WithCopy(config, "copy", dir.path() + "/out2");
  broken.replace(broken.rfind("window: 1h"), 10, "window: often");
  WriteText(config_path, broken);
  ReloadBySignal(service, 1);
  const std::string log = ServiceLog(dir.path() + "/log");
  // Each error as `validate` prints it: file, line, column, message.
  EXPECT_NE(log.find("reload: " + config_path + ":"), std::string::npos) << log;
  EXPECT_NE(log.find("window"), std::string::npos) << log;
  EXPECT_NE(log.find("nothing changed, running as before"), std::string::npos) << log;
  EXPECT_NE(Metrics(service).find("runnel_config_reloads_total{result=\"invalid\"} 1"),
            std::string::npos);
  EXPECT_EQ(SumOf(Metrics(service), "runnel_config_last_reload_timestamp_seconds"), 0);
  EXPECT_EQ(QueryNames(service), (std::vector<std::string>{"hourly_pages"}));
  ASSERT_TRUE(Eventually([&] { return Content(dir.path() + "/out", "hourly_pages") == Golden(); }))
      << ServiceLog(dir.path() + "/log");
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

TEST(ReloadTest, AChangedDefinitionIsRefusedWithoutResetAndRebuiltWithIt) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  const std::string config = BaseConfig(dir.path(), GoldenDir() + "/" + kGoldenIn, 5000, "100ms");
  WriteText(config_path, config);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  ASSERT_TRUE(Eventually([&] { return Content(dir.path() + "/out", "hourly_pages") == Golden(); }));

  std::string changed = config;
  changed.replace(changed.find("window: 1h"), 10, "window: 30m");
  WriteText(config_path, changed);
  ReloadBySignal(service, 1);
  EXPECT_EQ(ReloadOutcome(service, "hourly_pages"), "refused");
  json::value q = GetJson(service, "/v1/queries/hourly_pages");
  EXPECT_EQ(q.at("window_ms").as_int64(), 3'600'000) << "still the running definition";
  EXPECT_NE(Metrics(service).find("runnel_config_reloads_total{result=\"partial\"} 1"),
            std::string::npos);

  changed.replace(changed.find("    sinks:"), 0, "    on_definition_change: reset\n");
  WriteText(config_path, changed);
  ReloadBySignal(service, 2);
  EXPECT_EQ(ReloadOutcome(service, "hourly_pages"), "reset");
  q = GetJson(service, "/v1/queries/hourly_pages");
  EXPECT_EQ(q.at("window_ms").as_int64(), 1'800'000);

  // Rebuilt from the source's start: the same as a fresh run of the new definition.
  TempDir fresh;
  std::string reference = changed;
  for (size_t at; (at = reference.find(dir.path())) != std::string::npos;) {
    reference.replace(at, dir.path().size(), fresh.path());
  }
  WriteText(fresh.path() + "/q.yaml", reference);
  auto r =
      RunProcess({RunnelBinary(), "run", "--config", fresh.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto expected = Content(fresh.path() + "/out", "hourly_pages");
  ASSERT_FALSE(expected.empty());
  EXPECT_NE(expected, Golden());
  EXPECT_TRUE(Eventually([&] { return Content(dir.path() + "/out", "hourly_pages") == expected; }))
      << ServiceLog(dir.path() + "/log");
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

TEST(ReloadTest, ARestartOnlySettingIsReportedAndNotApplied) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  const std::string config = BaseConfig(dir.path(), GoldenDir() + "/" + kGoldenIn, 1000, "100ms");
  WriteText(config_path, config);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  std::string changed = config;
  changed.replace(changed.find("workers: 2"), 10, "workers: 3");
  changed.replace(changed.find("\"127.0.0.1:0\""), 13, "\"127.0.0.1:1\"");
  WriteText(config_path, changed);
  ReloadBySignal(service, 1);
  const std::string log = ServiceLog(dir.path() + "/log");
  EXPECT_NE(log.find("reload: engine.workers: 2 -> 3 needs a restart; left as it is"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("reload: service.http_listen: 127.0.0.1:0 -> 127.0.0.1:1 needs a restart"),
            std::string::npos)
      << log;
  EXPECT_NE(Metrics(service).find("runnel_config_reloads_total{result=\"partial\"} 1"),
            std::string::npos)
      << "still served where it was";
  EXPECT_EQ(ReloadOutcome(service, "hourly_pages"), "") << "the query was left alone";
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

TEST(ReloadTest, AReloadDuringABatchWaitsForTheBatchToCommit) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  const std::string input = dir.path() + "/clicks.jsonl";
  auto gen = RunProcess({RunnelBinary(), "gen", "--events", "2000000", "--out", input});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::string config = Serving(HourlyConfig(dir.path(), input, 2000000, "1d"), "100ms");
  config.replace(config.find("max_records_per_batch:"), 0, "max_bytes_per_batch: 1GiB, ");
  WriteText(config_path, config);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the one long batch runs
  json::value q = GetJson(service, "/v1/queries/hourly_pages");
  if (!q.at("progress").as_array().empty()) GTEST_SKIP() << "the batch ended before the reload";
  // A free setting changes: the query restarts, after its running batch.
  std::string changed = config;
  changed.replace(changed.find("batch_interval: 100ms"), 21, "batch_interval: 200ms");
  WriteText(config_path, changed);
  ReloadBySignal(service, 1, /*seconds=*/300);  // the batch takes a minute or more under ASan
  EXPECT_EQ(ReloadOutcome(service, "hourly_pages"), "restarted");
  const std::string log = ServiceLog(dir.path() + "/log");
  // It restarted after batch 0 committed, from batch 1 and the position after it.
  EXPECT_NE(log.find("query hourly_pages recovered: next batch 1, 1 source positions"),
            std::string::npos)
      << log;
  q = GetJson(service, "/v1/queries/hourly_pages");
  EXPECT_EQ(q.at("batch_interval_ms").as_int64(), 200);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
  auto rerun = RunProcess({RunnelBinary(), "run", "--config", config_path, "--available-now"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  EXPECT_NE(rerun.err.find("caught up after 0 batches"), std::string::npos)
      << "every record was committed once: " << rerun.err;
}

TEST(ReloadTest, AQueryAddedOnARunningKafkaSourceSharesItsGroupMemberAndReadsFromTheStart) {
  Broker broker({"clicks:4"});
  TempDir dir;
  Produce(broker.bootstrap(), "clicks", GoldenDir() + "/" + kGoldenIn);
  const std::string config_path = dir.path() + "/q.yaml";
  const std::string config =
      // Uncapped: which records are late depends on batch cuts until issue 19.
      WithKafkaSource(BaseConfig(dir.path(), "unused", 1000, "100ms"), broker.bootstrap(), 100000);
  WriteText(config_path, config);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  ASSERT_TRUE(Eventually([&] { return Content(dir.path() + "/out", "hourly_pages") == Golden(); }))
      << ServiceLog(dir.path() + "/log");
  const double rebalances = SumOf(Metrics(service), "runnel_kafka_rebalances_total");

  // The new query reads every partition the process owns, from the start (not from the group
  // offsets the other query committed), through the same group member: no rebalance.
  WriteText(config_path, WithCopy(config, "copy", dir.path() + "/out2"));
  ReloadBySignal(service, 1);
  EXPECT_EQ(ReloadOutcome(service, "copy"), "started");
  ASSERT_TRUE(Eventually([&] { return Content(dir.path() + "/out2", "copy") == Golden(); }))
      << ServiceLog(dir.path() + "/log");
  const std::string metrics = Metrics(service);
  EXPECT_EQ(SumOf(metrics, "runnel_kafka_rebalances_total"), rebalances);
  EXPECT_EQ(SumOf(metrics, "runnel_kafka_assigned_partitions"), 4);
  EXPECT_EQ(Content(dir.path() + "/out", "hourly_pages"), Golden());

  // A planning setting of the source (its cap) restarts both queries, on the same member.
  std::string capped = WithCopy(config, "copy", dir.path() + "/out2");
  capped.replace(capped.find("max_records_per_partition: 100000"), 33,
                 "max_records_per_partition: 50000");
  WriteText(config_path, capped);
  ReloadBySignal(service, 2);
  EXPECT_EQ(ReloadOutcome(service, "hourly_pages"), "restarted");
  EXPECT_EQ(ReloadOutcome(service, "copy"), "restarted");
  EXPECT_EQ(SumOf(Metrics(service), "runnel_kafka_rebalances_total"), rebalances);
  EXPECT_EQ(SumOf(Metrics(service), "runnel_kafka_assigned_partitions"), 4);

  // Removing the first query leaves the source running for the second.
  WriteText(
      config_path,
      capped.replace(capped.find("  - name: hourly_pages"),
                     capped.find("  - name: copy") - capped.find("  - name: hourly_pages"), ""));
  ReloadBySignal(service, 3);
  EXPECT_EQ(QueryNames(service), (std::vector<std::string>{"copy"}));
  EXPECT_EQ(SumOf(Metrics(service), "runnel_kafka_assigned_partitions"), 4);
  EXPECT_EQ(SumOf(Metrics(service), "runnel_kafka_rebalances_total"), rebalances);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

TEST(ReloadTest, ReloadOverHttpNeedsTheTokenAndAnswersWithWhatItDid) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  WriteText(dir.path() + "/token", "s3cret\n");
  chmod((dir.path() + "/token").c_str(), 0600);
  std::string config = BaseConfig(dir.path(), GoldenDir() + "/" + kGoldenIn, 1000, "100ms");
  config.replace(config.find("service: {"), 10,
                 "service: { http_token_file: " + dir.path() + "/token,");
  WriteText(config_path, config);
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  WriteText(config_path, WithCopy(config, "copy", dir.path() + "/out2"));
  auto post = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {"curl", "-s",   "-S", "--max-time",    "60",
                                     "-X",   "POST", "-w", "\n%{http_code}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(service.Url("/v1/reload"));
    return RunProcess(argv);
  };
  EXPECT_EQ(Code(post({})), 401);
  EXPECT_EQ(Code(Get(service.Url("/v1/reload"))), 405);
  auto r = post({"-H", "Authorization: Bearer s3cret"});
  ASSERT_EQ(Code(r), 200) << r.out;
  json::value report = json::parse(Body(r));
  EXPECT_EQ(report.at("result").as_string(), "applied");
  ASSERT_EQ(report.at("queries").as_array().size(), 1u);
  EXPECT_EQ(report.at("queries").as_array()[0].at("name").as_string(), "copy");
  EXPECT_EQ(report.at("queries").as_array()[0].at("outcome").as_string(), "started");

  WriteText(config_path, "queries: [\n");
  r = post({"-H", "Authorization: Bearer s3cret"});
  EXPECT_EQ(Code(r), 422) << r.out;
  report = json::parse(Body(r));
  EXPECT_EQ(report.at("result").as_string(), "invalid");
  EXPECT_FALSE(report.at("errors").as_array().empty());
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

TEST(ReloadTest, WithoutATokenOnlySighupReloads) {
  TempDir dir;
  const std::string config_path = dir.path() + "/q.yaml";
  WriteText(config_path, BaseConfig(dir.path(), GoldenDir() + "/" + kGoldenIn, 1000, "100ms"));
  Service service(config_path, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  auto r = RunProcess({"curl", "-s", "-S", "--max-time", "10", "-X", "POST", "-w", "\n%{http_code}",
                       service.Url("/v1/reload")});
  EXPECT_EQ(Code(r), 403) << r.out;
  EXPECT_EQ(SumOf(Metrics(service), "runnel_config_reloads_total"), 0);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(30)), 0);
}

}  // namespace
}  // namespace runnel::testing
