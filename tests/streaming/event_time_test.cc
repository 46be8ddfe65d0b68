#include "streaming/event_time.h"

#include <gtest/gtest.h>

#include "streaming/aggregation_query.h"

namespace runnel::streaming {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t k20170917 = 1'505'606'400'000;  // 2017-09-17T00:00:00Z

TEST(IsoTimestampTest, ParsesTheFormsUsersSend) {
  EXPECT_EQ(*ParseIsoTimestamp("2017-09-17T00:00:00"), k20170917);
  EXPECT_EQ(*ParseIsoTimestamp("2017-09-17T00:00:00Z"), k20170917);
  EXPECT_EQ(*ParseIsoTimestamp("2017-09-17 05:00:00"), k20170917 + 5 * kHour);
  EXPECT_EQ(*ParseIsoTimestamp("2017-09-17T00:00:00.5Z"), k20170917 + 500);
  EXPECT_EQ(*ParseIsoTimestamp("2017-09-17T00:00:00.123456"), k20170917 + 123);
  EXPECT_EQ(*ParseIsoTimestamp("2017-09-17T02:00:00+02:00"), k20170917);
  EXPECT_EQ(*ParseIsoTimestamp("2017-09-16T22:30:00-01:30"), k20170917);
  EXPECT_EQ(*ParseIsoTimestamp("1970-01-01T00:00:00"), 0);
  EXPECT_EQ(*ParseIsoTimestamp("2100-01-01T00:00:00"), 4'102'444'800'000);
}

TEST(IsoTimestampTest, RejectsEverythingElse) {
  for (const char* bad : {"", "yesterday", "2017-09-17", "2017-09-17T00:00", "2017-13-01T00:00:00",
                          "2017-02-30T00:00:00", "2017-09-17T24:00:00", "2017-09-17T00:00:00.",
                          "2017-09-17T00:00:00+2", "2017-09-17T00:00:00 ", "1969-12-31T23:59:59",
                          "２017-09-17T00:00:00", "2017-09-17T00:00:00Zjunk"}) {
    EXPECT_FALSE(ParseIsoTimestamp(bad).ok()) << bad;
  }
}

TEST(IsoTimestampTest, FormatsUtcWithoutMillis) {
  EXPECT_EQ(FormatIsoTimestamp(k20170917 + 5 * kHour + 999), "2017-09-17T05:00:00");
  EXPECT_EQ(FormatIsoTimestamp(0), "1970-01-01T00:00:00");
}

TEST(WindowSpecTest, TumblingWindowsAlignToTheEpoch) {
  WindowSpec hourly{kHour, kHour};
  EXPECT_EQ(hourly.WindowsOf(k20170917 + 5 * kHour + 59 * 60'000),
            (std::vector<int64_t>{k20170917 + 5 * kHour}));
  EXPECT_EQ(hourly.WindowsOf(k20170917), (std::vector<int64_t>{k20170917}));
  EXPECT_EQ(WindowFrequencyName(kHour), "1hour");
  EXPECT_EQ(WindowFrequencyName(24 * kHour), "1day");
  EXPECT_EQ(WindowFrequencyName(15 * 60'000), "15min");
}

TEST(WindowSpecTest, SlidingWindowsHoldEveryWindowOfTheTime) {
  WindowSpec sliding{kHour, 15 * 60'000};
  const int64_t t = k20170917 + 40 * 60'000;  // 00:40
  const auto windows = sliding.WindowsOf(t);
  ASSERT_EQ(windows.size(), 4u);
  EXPECT_EQ(windows.front(), k20170917 - 15 * 60'000);  // 23:45 the day before
  EXPECT_EQ(windows.back(), k20170917 + 30 * 60'000);
  for (int64_t start : windows) {
    EXPECT_LE(start, t);
    EXPECT_GT(sliding.EndOf(start), t);
  }
}

TEST(WatermarkTest, TrailsTheMaxEventTimeAndNeverMovesBack) {
  Watermark wm(10 * 60'000);
  EXPECT_EQ(wm.current(), Watermark::kNone);
  EXPECT_FALSE(wm.IsLate(0));
  wm.AdvanceTo(k20170917 + 2 * kHour);
  EXPECT_EQ(wm.current(), k20170917 + 2 * kHour - 10 * 60'000);
  wm.AdvanceTo(k20170917);  // an older batch max: no change
  EXPECT_EQ(wm.current(), k20170917 + 2 * kHour - 10 * 60'000);
  EXPECT_TRUE(wm.IsLate(k20170917 + kHour));       // window ended 01:00 <= 01:50
  EXPECT_FALSE(wm.IsLate(k20170917 + 2 * kHour));  // window ending 02:00 is open
}

// The query's event-time behaviour on small hand-made batches.
class EventTimeQueryTest : public ::testing::Test {
 protected:
  EventTimeQueryTest() {
    AggregationOptions o;
    o.name = "q";
    o.group_by = {"k"};
    o.window = {kHour, kHour};
    o.allowed_lateness_ms = 30 * 60'000;
    o.aggregates = {{"n", AggregateSpec::Kind::kCount, ""}};
    query_ = AggregationQuery::Make(o, &store_).value();
  }

  static std::string Event(const std::string& k, const std::string& ts) {
    return R"({"k":")" + k + R"(","ts":")" + ts + R"("})";
  }

  Status Batch(std::vector<std::string> lines) {
    BatchInfo info;
    info.progress.batch_id = BatchId(batch_++);
    info.progress.batch_time = BatchTime(1'700'000'000'000);  // 2023: the 2017 events are past
    return query_->RunBatch(engine_->Parallelize(std::move(lines), 2), &info);
  }

  int64_t CountOf(const std::string& k, const std::string& hour) {
    for (const std::string& r : query_->ReadRecords({k}).value()) {
      if (r.find(hour) != std::string::npos) {
        const auto pos = r.find("\"n\":");
        return std::stoll(r.substr(pos + 4));
      }
    }
    return 0;
  }

  std::unique_ptr<engine::Context> engine_ = engine::Context::Make({.workers = 2}).value();
  InMemoryStateStore store_;
  std::shared_ptr<AggregationQuery> query_;
  int64_t batch_ = 0;
};

TEST_F(EventTimeQueryTest, OutOfOrderWithinLatenessCountsAndLaterIsDropped) {
  ASSERT_TRUE(Batch({Event("a", "2017-09-17T02:10:00")}).ok());
  // Watermark 01:40: the 01:00 window (ends 02:00) is still open; 00:00 (ends 01:00) is closed.
  EXPECT_EQ(query_->watermark(), k20170917 + kHour + 40 * 60'000);
  ASSERT_TRUE(Batch({Event("a", "2017-09-17T01:59:00"), Event("a", "2017-09-17T00:30:00")}).ok());
  EXPECT_EQ(CountOf("a", "T01:00:00"), 1);
  EXPECT_EQ(CountOf("a", "T00:00:00"), 0);
  EXPECT_EQ(query_->counters().late, 1);
  // Within a batch, records are judged against the watermark the batch started with.
  ASSERT_TRUE(Batch({Event("a", "2017-09-17T05:00:00"), Event("a", "2017-09-17T01:45:00")}).ok());
  EXPECT_EQ(CountOf("a", "T01:00:00"), 2);
  ASSERT_TRUE(Batch({Event("a", "2017-09-17T04:00:00")}).ok());  // window ends 05:00: open
  EXPECT_EQ(query_->counters().late, 1);
  ASSERT_TRUE(Batch({Event("a", "2017-09-17T03:30:00")}).ok());  // ends 04:00 <= 04:30: late
  EXPECT_EQ(query_->counters().late, 2);
  EXPECT_EQ(query_->watermark(), k20170917 + 4 * kHour + 30 * 60'000);
}

TEST_F(EventTimeQueryTest, LateRecordsGoToTheLateOutputWhenOneIsSet) {
  std::vector<std::string> late_lines;
  query_->SetLateOutput([&](BatchId, const std::vector<std::string>& lines) {
    late_lines.insert(late_lines.end(), lines.begin(), lines.end());
    return Status::OK();
  });
  ASSERT_TRUE(Batch({Event("a", "2017-09-17T05:00:00")}).ok());
  const std::string late = Event("b", "2017-09-17T01:00:00");
  ASSERT_TRUE(Batch({late, Event("a", "2017-09-17T05:10:00")}).ok());
  EXPECT_EQ(late_lines, (std::vector<std::string>{late}));
  EXPECT_EQ(query_->counters().late, 1);
  EXPECT_EQ(CountOf("b", "T01:00:00"), 0);
}

TEST_F(EventTimeQueryTest, EpochMillisAndBadTimestamps) {
  ASSERT_TRUE(Batch({R"({"k":"a","ts":1505606400000})", R"({"k":"a","ts":-5})",
                     R"({"k":"a","ts":"2017-09-17"})", R"({"k":"a","ts":true})", R"({"k":"a"})",
                     R"({"k":5,"ts":1505606400000})", R"(["k"])", "", "{"})
                  .ok());
  EXPECT_EQ(CountOf("a", "T00:00:00"), 1);
  auto invalid = query_->counters().invalid;
  EXPECT_EQ(invalid["bad_timestamp"], 3);
  EXPECT_EQ(invalid["missing_field"], 1);
  EXPECT_EQ(invalid["wrong_type"], 1);
  EXPECT_EQ(invalid["not_an_object"], 1);
  EXPECT_EQ(invalid["empty"], 1);
  EXPECT_EQ(invalid["malformed_json"], 1);
}

TEST_F(EventTimeQueryTest, StateKeysSortByGroupThenTime) {
  const std::string a1 = EncodeStateKey({"a", "x"}, 1000);
  const std::string a2 = EncodeStateKey({"a", "x"}, 2000);
  const std::string neg = EncodeStateKey({"a", "x"}, -1000);
  const std::string ab = EncodeStateKey({"ab", ""}, 0);
  const std::string zero = EncodeStateKey({std::string("a\0b", 3), "x"}, 0);
  EXPECT_LT(neg, a1);
  EXPECT_LT(a1, a2);
  EXPECT_LT(a2, ab);
  std::vector<std::string> values;
  int64_t start = 0;
  ASSERT_TRUE(DecodeStateKey(zero, 2, &values, &start).ok());
  EXPECT_EQ(values, (std::vector<std::string>{std::string("a\0b", 3), "x"}));
  ASSERT_TRUE(DecodeStateKey(neg, 2, &values, &start).ok());
  EXPECT_EQ(start, -1000);
  EXPECT_FALSE(DecodeStateKey(a1.substr(0, 5), 2, &values, &start).ok());
}

}  // namespace
}  // namespace runnel::streaming
