// Fuzz target: one input line through the aggregation query's event parser, under the
// flagship query (hourly tumbling windows) and a sliding-window query with a `where:` and a
// numeric sum. Properties: every line ends as exactly one of invalid (with a known reason),
// filtered, late, or partial aggregates whose keys decode back to the record's group values
// and windows holding its event time.
#include <cstdint>
#include <set>
#include <string>

#include "streaming/event_parser.h"
#include "streaming/state_key.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using runnel::streaming::AggregateSpec;
using runnel::streaming::AggregationOptions;
using runnel::streaming::DecodeStateKey;
using runnel::streaming::EncodeStateKey;
using runnel::streaming::EventTimeMs;
using runnel::streaming::FieldCondition;
using runnel::streaming::ParsedEvent;

constexpr EventTimeMs kNow = 1'700'000'000'000;  // 2023-11-14: "now" for ts_in_future
constexpr EventTimeMs kWatermark = 1'600'000'000'000;

AggregationOptions Hourly() {
  AggregationOptions o;
  o.name = "hourly";
  o.group_by = {"customer", "url"};
  o.aggregates = {{"page_views", AggregateSpec::Kind::kCount, ""},
                  {"visitors", AggregateSpec::Kind::kCountDistinct, "session_id"},
                  {"referrers", AggregateSpec::Kind::kCountValues, "referrer"}};
  o.max_record_bytes = 4096;
  return o;
}

AggregationOptions Sliding() {
  AggregationOptions o;
  o.name = "sliding";
  o.group_by = {"customer"};
  o.window = {.length_ms = 3'600'000, .slide_ms = 900'000};
  o.where = {{"url", FieldCondition::Op::kPrefix, "/"}};
  o.aggregates = {{"spent", AggregateSpec::Kind::kSum, "amount"},
                  {"largest", AggregateSpec::Kind::kMax, "amount"},
                  {"approx_visitors", AggregateSpec::Kind::kApproxDistinct, "session_id", 10}};
  return o;
}

void Check(const AggregationOptions& opts, const std::string& line) {
  static const std::set<std::string> kReasons = {
      "empty",         "too_large",  "malformed_json", "not_an_object", "duplicate_field",
      "missing_field", "wrong_type", "bad_timestamp",  "ts_in_future",  "bad_number"};
  const ParsedEvent e = ParseEvent(opts, kWatermark, kNow, line);
  if (!e.invalid_reason.empty()) {
    FUZZ_CHECK(kReasons.count(e.invalid_reason) == 1);
    FUZZ_CHECK(e.partials.empty() && !e.filtered && !e.late);
    return;
  }
  if (e.filtered) {
    FUZZ_CHECK(e.partials.empty() && !e.late);
    return;
  }
  FUZZ_CHECK(e.event_time >= 0 && e.event_time <= kNow);
  FUZZ_CHECK(e.late == e.partials.empty());
  FUZZ_CHECK(e.partials.size() <= opts.window.WindowsOf(e.event_time).size());
  for (const auto& [key, record] : e.partials) {
    std::vector<std::string> values;
    EventTimeMs start = 0;
    FUZZ_CHECK(DecodeStateKey(key, opts.group_by.size(), &values, &start).ok());
    FUZZ_CHECK(EncodeStateKey(values, start) == key);
    FUZZ_CHECK(start <= e.event_time && e.event_time < opts.window.EndOf(start));
    FUZZ_CHECK(opts.window.EndOf(start) > kWatermark);  // closed windows are never produced
    FUZZ_CHECK(record.size() == opts.aggregates.size());
    runnel::streaming::AggRow row;
    AddRecord(opts.aggregates, record, &row);
    FUZZ_CHECK(runnel::streaming::DecodeRow(runnel::streaming::EncodeRow(row)).ok());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const AggregationOptions hourly = Hourly();
  static const AggregationOptions sliding = Sliding();
  const std::string line(reinterpret_cast<const char*>(data), size);
  Check(hourly, line);
  Check(sliding, line);
  return 0;
}
