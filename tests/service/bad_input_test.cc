// The bad-input corpus: every kind of broken or hostile record, mixed into the golden input.
// Each is counted under its reason and sent to the dead-letter output; nothing crashes; the
// good records (some with unusual but valid timestamps) give exactly the peer's aggregates.
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

constexpr char kGood[] =
    R"("customer": "a.com", "url": "http://a.com/articles/1", "referrer": "http://bing.com/", )"
    R"("session_id": "abc")";

std::string Event(const std::string& ts_json) {
  return std::string("{") + kGood + ", \"ts\": " + ts_json + "}";
}

TEST(BadInputTest, EveryBrokenRecordIsCountedUnderItsReasonAndTheRestIsExact) {
  TempDir dir;
  // reason -> records of that kind
  const std::map<std::string, std::vector<std::string>> bad = {
      {"malformed_json",
       {R"({"customer": "a.com", "url":)",                            // truncated
        std::string("{\"customer\": \"a.com\xff\xfe\", \"ts\": 1}"),  // invalid UTF-8
        std::string("{\"customer\": \"a\0b\", \"ts\": 1}", 25),       // a NUL byte
        std::string(10000, '[') + std::string(10000, ']'),            // 10k-deep nesting
        Event("99999999999999999999999")}},                           // beyond 64 bits
      {"not_an_object", {"null", "[1, 2, 3]", "\"text\"", "42"}},
      {"duplicate_field",
       {R"({"customer": "a.com", "customer": "b.com", "url": "u", "referrer": "r", )"
        R"("session_id": "s", "ts": "2017-09-17T10:00:00Z"})"}},
      {"wrong_type",
       {R"({"customer": 5, "url": "u", "referrer": "r", "session_id": "s", )"
        R"("ts": "2017-09-17T10:00:00Z"})",
        R"({"customer": "a.com", "url": ["u"], "referrer": "r", "session_id": "s", )"
        R"("ts": "2017-09-17T10:00:00Z"})"}},
      {"missing_field",
       {R"({"customer": null, "url": "u", "referrer": "r", "session_id": "s", )"
        R"("ts": "2017-09-17T10:00:00Z"})",
        std::string("{") + kGood + "}",  // no ts
        Event("null")}},
      {"bad_timestamp",
       {Event("-5"), Event("\"yesterday\""), Event("\"2017-13-45T10:00:00Z\""),
        Event("\"2017-09-17T10:00:00+25:00\""), Event("1.5e3"), Event("true")}},
      {"ts_in_future", {Event("\"2100-01-01T00:00:00Z\""), Event("4102444800")}},
      {"too_large", {std::string("{\"customer\": \"") + std::string(1100000, 'x') + "\"}"}},
      {"empty", {"", "   ", "\t"}},
  };
  // The golden input, two events rewritten to the same instants in other notations: epoch
  // seconds and an offset other than Z (both must count as the original).
  std::vector<std::string> lines = ReadLines(GoldenDir() + "/clicks-clean.jsonl");
  auto rewrite = [&](size_t i, const std::string& from, const std::string& to) {
    const size_t at = lines[i].find(from);
    ASSERT_NE(at, std::string::npos) << lines[i];
    lines[i].replace(at, from.size(), to);
  };
  rewrite(0, "\"ts\": \"2017-09-17T00:00:00\"", "\"ts\": 1505606400");
  rewrite(1, "\"ts\": \"2017-09-17T00:00:00\"", "\"ts\": \"2017-09-17T02:00:00+02:00\"");
  std::string input;
  size_t n_bad = 0, i = 0;
  for (const auto& [reason, records] : bad) {
    for (const auto& r : records) {
      // Spread over the file: between golden lines.
      for (size_t k = 0; k < 97 && i < lines.size(); ++k) input += lines[i++] + "\n";
      input += r + "\n";
      ++n_bad;
    }
  }
  while (i < lines.size()) input += lines[i++] + "\n";
  WriteText(dir.path() + "/in.jsonl", input);
  WriteText(
      dir.path() + "/q.yaml",
      WithDeadLetters(HourlyConfig(dir.path(), dir.path() + "/in.jsonl", 1000, "1d"), dir.path()));

  auto r =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(r.exit_code, 0) << r.err.substr(0, 4000);
  EXPECT_NE(r.err.find(std::to_string(n_bad) + " invalid"), std::string::npos)
      << r.err.substr(0, 4000);
  EXPECT_EQ(SinkContent(dir.path()), ById(ReadLines(GoldenDir() + "/expected-clean.jsonl")));

  // Every bad record is in the dead letters, under its reason, with its line.
  std::map<std::string, size_t> want;
  for (const auto& [reason, records] : bad) want[reason] = records.size();
  EXPECT_EQ(DeadLettersByReason(dir.path()), want);
}

}  // namespace
}  // namespace runnel::testing
