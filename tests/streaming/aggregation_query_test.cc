// AggregationQuery against its state store: definition fingerprints, re-delivery after a
// crash between sink output and commit, and retention.
#include "streaming/aggregation_query.h"

#include <atomic>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "tests/streaming/forwarding_store.h"

namespace runnel::streaming {
namespace {

AggregationOptions HourlyPages() {
  AggregationOptions o;
  o.name = "hourly_pages";
  o.group_by = {"customer", "url"};
  o.window = {3600 * 1000, 3600 * 1000};
  o.aggregates = {{"page_views", AggregateSpec::Kind::kCount, ""},
                  {"visitors", AggregateSpec::Kind::kCountDistinct, "session_id"}};
  return o;
}

std::string Click(const std::string& session, const std::string& ts) {
  return boost::json::serialize(boost::json::object{
      {"customer", "a.com"}, {"url", "/1"}, {"session_id", session}, {"ts", ts}});
}

// A store that can fail its next commit: a crash after the sink wrote, before the commit.
class FlakyStore final : public ForwardingStateStore {
 public:
  using ForwardingStateStore::ForwardingStateStore;
  Status Commit(const BatchCommit& commit) override {
    if (fail_next_) {
      fail_next_ = false;
      return Status::IOError("crash before commit");
    }
    return ForwardingStateStore::Commit(commit);
  }
  Status Writable() override { return writable_; }
  bool fail_next_ = false;
  Status writable_;
};

// One "process": a query on `store` that runs the given batches in order from its recovered
// batch id, as a restarted service would. Returns the sink's records per batch.
struct QueryRun {
  std::shared_ptr<AggregationQuery> query;
  std::map<int64_t, std::vector<std::string>> output;
  Status last;
};

QueryRun RunBatches(AggregationOptions options, StateStore* store,
                    std::deque<std::vector<std::string>> batches) {
  QueryRun run;
  auto query = AggregationQuery::Make(std::move(options), store);
  EXPECT_TRUE(query.ok()) << query.status();
  run.query = *query;
  auto next = run.query->Recover();
  if (!next.ok()) {
    run.last = next.status();
    return run;
  }
  auto engine = engine::Context::Make({.workers = 2}).value();
  ManualClock clock(TimePoint(Millis(1'700'000'000'000)));
  StreamingContext ssc(
      engine.get(),
      {.batch_interval = Millis(1000), .clock = &clock, .first_batch_id = next->record.batch_id});
  const size_t n = batches.size();
  run.query->Attach(QueueStream(ssc, std::move(batches), 1),
                    [&run](BatchId id, const std::vector<std::string>& records) {
                      run.output[id.value()] = records;
                      return Status::OK();
                    });
  for (size_t b = 0; b < n && run.last.ok(); ++b) {
    run.last = ssc.RunBatch(clock.Now());
    clock.Advance(Millis(1000));
  }
  return run;
}

int64_t PageViews(const std::string& record) {
  return boost::json::parse(record).at("metrics").at("page_views").as_int64();
}

TEST(AggregationQueryTest, EventsTooFarAfterTheBatchTimeAreInvalid) {
  // The batch clock reads 2023-11-14T22:13:20Z (RunBatches); max_future is 1 day. Judged by
  // the batch's time, not the wall clock, so a re-run batch judges every record the same way.
  InMemoryStateStore store;
  QueryRun run =
      RunBatches(HourlyPages(), &store,
                 {{Click("s1", "2023-11-15T20:00:00Z"), Click("s2", "2023-11-16T00:00:00Z"),
                   Click("s3", "2017-09-17T05:10:00Z")}});
  ASSERT_TRUE(run.last.ok()) << run.last;
  const QueryCounters c = run.query->counters();
  EXPECT_EQ(c.invalid.count("ts_in_future") ? c.invalid.at("ts_in_future") : 0, 1);
  EXPECT_EQ(c.records, 3);
}

TEST(AggregationQueryTest, AChangedDefinitionIsRefusedUnlessResetIsAsked) {
  InMemoryStateStore store;
  QueryRun first =
      RunBatches(HourlyPages(), &store,
                 {{Click("s1", "2017-09-17T05:10:00Z"), Click("s2", "2017-09-17T05:20:00Z")}});
  ASSERT_TRUE(first.last.ok()) << first.last;

  // The same definition resumes.
  auto same = AggregationQuery::Make(HourlyPages(), &store).value();
  EXPECT_EQ(same->Recover().value().record.batch_id, BatchId(1));
  EXPECT_EQ(same->Fingerprint(), first.query->Fingerprint());

  // Another aggregate: refused with both definitions in the message.
  AggregationOptions changed = HourlyPages();
  changed.aggregates[1].kind = AggregateSpec::Kind::kApproxDistinct;
  auto refused = AggregationQuery::Make(changed, &store).value();
  EXPECT_NE(refused->Fingerprint(), first.query->Fingerprint());
  auto st = refused->Recover().status();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("count_distinct(session_id)"), std::string::npos) << st;
  EXPECT_NE(st.message().find("approx_distinct(session_id)"), std::string::npos) << st;
  EXPECT_NE(st.message().find("on_definition_change: reset"), std::string::npos) << st;
  EXPECT_EQ(refused->ReadRecords().value().size(), 1u) << "a refusal changes nothing";

  // Reset: state dropped, batch ids go on, sources start over.
  changed.reset_on_definition_change = true;
  auto reset = AggregationQuery::Make(changed, &store).value();
  auto next = reset->Recover();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->record.batch_id, BatchId(1));
  EXPECT_TRUE(next->record.positions.empty());
  EXPECT_TRUE(reset->ReadRecords().value().empty());
}

TEST(AggregationQueryTest, ABatchRedeliveredAfterACrashBeforeItsCommitCountsOnce) {
  InMemoryStateStore inner;
  FlakyStore store(&inner);
  const std::vector<std::string> batch0 = {Click("s1", "2017-09-17T05:10:00Z")};
  const std::vector<std::string> batch1 = {Click("s2", "2017-09-17T05:20:00Z"),
                                           Click("s3", "2017-09-17T05:30:00Z")};
  // First process: batch 0 commits; batch 1 reaches the sink, then the commit fails.
  {
    QueryRun one = RunBatches(HourlyPages(), &store, {batch0});
    ASSERT_TRUE(one.last.ok()) << one.last;
    store.fail_next_ = true;
    QueryRun two = RunBatches(HourlyPages(), &store, {batch1});
    EXPECT_FALSE(two.last.ok());
    ASSERT_EQ(two.output.count(1), 1u) << "the sink saw batch 1 before the failed commit";
    EXPECT_EQ(PageViews(two.output.at(1).at(0)), 3);
  }
  // The restarted process gets batch 1 again (same id, same input) and replaces its output.
  QueryRun restarted = RunBatches(HourlyPages(), &store, {batch1});
  ASSERT_TRUE(restarted.last.ok()) << restarted.last;
  ASSERT_EQ(restarted.output.count(1), 1u);
  EXPECT_EQ(PageViews(restarted.output.at(1).at(0)), 3);
  const auto records = restarted.query->ReadRecords().value();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(PageViews(records[0]), 3) << "counted once, not 5";
  EXPECT_EQ(inner.LastCommitted("hourly_pages").value()->record.batch_id, BatchId(1));
}

// A full disk: the batch fails before it reads its input (a retry then costs no re-read of
// the source), and runs whole once the store can commit again.
TEST(AggregationQueryTest, AStoreThatCannotCommitFailsTheBatchBeforeItsInputIsRead) {
  InMemoryStateStore inner;
  FlakyStore store(&inner);
  auto query = AggregationQuery::Make(HourlyPages(), &store).value();
  ASSERT_TRUE(query->Recover().ok());
  auto engine = engine::Context::Make({.workers = 2}).value();
  std::atomic<int> read{0};
  auto lines = engine
                   ->Parallelize(std::vector<std::string>{Click("s1", "2017-09-17T05:10:00Z"),
                                                          Click("s2", "2017-09-17T05:20:00Z")},
                                 2)
                   .Map([&read](std::string line) {
                     ++read;
                     return line;
                   });
  BatchInfo info;
  info.progress.batch_id = BatchId(0);
  info.progress.batch_time = BatchTime(1'700'000'000'000);
  store.writable_ = Status::Unavailable("state: the disk is full");
  EXPECT_EQ(query->RunBatch(lines, &info).code(), StatusCode::kUnavailable);
  EXPECT_EQ(read.load(), 0);
  EXPECT_FALSE(inner.LastCommitted("hourly_pages").value().has_value());

  store.writable_ = Status::OK();
  const Status st = query->RunBatch(lines, &info);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(read.load(), 2);
  const auto records = query->ReadRecords().value();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(PageViews(records[0]), 2);
}

TEST(AggregationQueryTest, WindowsPastRetentionLeaveReadsAndAreMarkedForCompaction) {
  InMemoryStateStore store;
  AggregationOptions o = HourlyPages();
  o.retention_ms = 2 * 3600 * 1000;  // 2h after the window ends
  QueryRun run = RunBatches(o, &store,
                            {{Click("s1", "2017-09-17T01:10:00Z")},
                             {Click("s2", "2017-09-17T04:40:00Z")},
                             {Click("s3", "2017-09-17T06:30:00Z")}});
  ASSERT_TRUE(run.last.ok()) << run.last;
  // Watermark 06:30: the 01:00 window ended 4.5h before it, the 04:00 one 1.5h before.
  std::vector<std::string> hours;
  for (const auto& r : run.query->ReadRecords().value()) {
    hours.emplace_back(boost::json::parse(r).at("ts").as_string());
  }
  EXPECT_EQ(hours, (std::vector<std::string>{"2017-09-17T04:00:00", "2017-09-17T06:00:00"}));
  const auto record = store.LastCommitted("hourly_pages").value()->record;
  EXPECT_EQ(record.expire_before_ms, run.query->watermark() - o.retention_ms - o.window.length_ms);
}

TEST(AggregationQueryTest, EmptyBatchesCommitNothingAndWriteNoOutput) {
  InMemoryStateStore store;
  QueryRun run = RunBatches(
      HourlyPages(), &store,
      {{Click("s1", "2017-09-17T05:10:00Z")}, {}, {}, {Click("s2", "2017-09-17T05:20:00Z")}, {}});
  ASSERT_TRUE(run.last.ok()) << run.last;
  std::vector<int64_t> with_output;
  for (const auto& [id, records] : run.output) with_output.push_back(id);
  EXPECT_EQ(with_output, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(store.LastCommitted("hourly_pages").value()->record.batch_id, BatchId(3));
  EXPECT_EQ(run.query->counters().batches, 5);
  // A restart resumes after the last committed batch.
  auto again = AggregationQuery::Make(HourlyPages(), &store).value();
  EXPECT_EQ(again->Recover().value().record.batch_id, BatchId(4));
}

std::string Event(const std::string& customer, const std::string& url,
                  const std::string& referrer) {
  return boost::json::serialize(boost::json::object{{"customer", customer},
                                                    {"url", url},
                                                    {"referrer", referrer},
                                                    {"session_id", "s"},
                                                    {"ts", "2017-09-17T05:10:00Z"}});
}

TEST(AggregationQueryTest, WhereKeepsOnlyRecordsMeetingEveryCondition) {
  InMemoryStateStore store;
  AggregationOptions o = HourlyPages();
  o.where = {{"customer", FieldCondition::Op::kEquals, "a.com"},
             {"url", FieldCondition::Op::kPrefix, "/articles/"},
             {"referrer", FieldCondition::Op::kNotEquals, "bing"}};
  QueryRun run = RunBatches(o, &store,
                            {{Event("a.com", "/articles/1", "google"),        // kept
                              Event("a.com", "/articles/1", "bing"),          // referrer is bing
                              Event("b.com", "/articles/1", "google"),        // another customer
                              Event("a.com", "/about", "google"),             // not an article
                              Event("a.com", "/articles/2", "facebook"),      // kept
                              R"({"customer":"a.com","url":"/articles/3"})",  // no referrer
                              "not json"}});
  ASSERT_TRUE(run.last.ok()) << run.last;
  std::map<std::string, int64_t> views;
  for (const auto& r : run.query->ReadRecords().value()) {
    views[std::string(boost::json::parse(r).at("url").as_string())] = PageViews(r);
  }
  EXPECT_EQ(views, (std::map<std::string, int64_t>{{"/articles/1", 1}, {"/articles/2", 1}}));
  const QueryCounters c = run.query->counters();
  EXPECT_EQ(c.records, 7);
  EXPECT_EQ(c.filtered, 4);
  EXPECT_EQ(c.invalid.at("malformed_json"), 1);
  // The conditions are part of the definition: changing them changes the fingerprint.
  AggregationOptions other = o;
  other.where[0].value = "b.com";
  EXPECT_NE(AggregationQuery::Make(other, &store).value()->Fingerprint(), run.query->Fingerprint());
  EXPECT_EQ(AggregationQuery::Make(HourlyPages(), &store).value()->Definition().find("where"),
            std::string::npos);
}

TEST(AggregationQueryTest, GroupValuesHoldingTheSeparatorKeepDistinctIds) {
  // (url "x|y", customer "z") and (url "x", customer "y|z") joined plainly are both "x|y|z|ts".
  auto click = [](const std::string& customer, const std::string& url) {
    return boost::json::serialize(boost::json::object{
        {"customer", customer}, {"url", url}, {"session_id", "s"}, {"ts", "2017-09-17T05:10:00Z"}});
  };
  InMemoryStateStore store;
  QueryRun run = RunBatches(
      HourlyPages(), &store,
      {{click("z", "x|y"), click("y|z", "x"), click("a.com", "/b\\|c"), click("a.com", "/plain")}});
  ASSERT_TRUE(run.last.ok()) << run.last;
  std::map<std::string, std::string> by_id;
  for (const std::string& r : run.output.at(0)) {
    by_id[std::string(boost::json::parse(r).at("_id").as_string())] = r;
  }
  ASSERT_EQ(by_id.size(), 4u);
  EXPECT_TRUE(by_id.contains("x\\|y|z|2017-09-17T05:00:00"));
  EXPECT_TRUE(by_id.contains("x|y\\|z|2017-09-17T05:00:00"));
  EXPECT_TRUE(by_id.contains("/b\\\\\\|c|a.com|2017-09-17T05:00:00"));
  EXPECT_TRUE(by_id.contains("/plain|a.com|2017-09-17T05:00:00"));  // unchanged form
  for (const auto& [id, record] : by_id) EXPECT_EQ(PageViews(record), 1) << id;
}

}  // namespace
}  // namespace runnel::streaming
