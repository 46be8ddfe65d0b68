#include "common/logging.h"

#include <string>

#include <gtest/gtest.h>
#include <simdjson.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/ostream_sink.h>

namespace runnel {
namespace {

// Formats one message with the JSON formatter, as a logger named `logger` would.
std::string FormatJson(std::string_view logger, std::string_view message,
                       spdlog::level::level_enum level = spdlog::level::info) {
  auto formatter = MakeJsonFormatter();
  spdlog::details::log_msg msg(spdlog::string_view_t(logger.data(), logger.size()), level,
                               spdlog::string_view_t(message.data(), message.size()));
  spdlog::memory_buf_t buf;
  formatter->format(msg, buf);
  return std::string(buf.data(), buf.size());
}

struct Parsed {
  std::string time, level, logger, msg;
};

// Parses a JSON log line with simdjson (a strict parser: it rejects invalid UTF-8 too).
Parsed ParseLine(const std::string& line) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(line);  // throws on invalid JSON
  Parsed p;
  p.time = std::string(doc["time"].get_string().value());
  p.level = std::string(doc["level"].get_string().value());
  p.logger = std::string(doc["logger"].get_string().value());
  p.msg = std::string(doc["msg"].get_string().value());
  return p;
}

TEST(JsonLogTest, OneLineWithTheFourFields) {
  const std::string line = FormatJson("engine", "stage 2 done", spdlog::level::warn);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  Parsed p = ParseLine(line);
  EXPECT_EQ(p.level, "warning");
  EXPECT_EQ(p.logger, "engine");
  EXPECT_EQ(p.msg, "stage 2 done");
  // 2026-11-23T19:30:05.123Z
  ASSERT_EQ(p.time.size(), 24u) << p.time;
  EXPECT_EQ(p.time[10], 'T');
  EXPECT_EQ(p.time.back(), 'Z');
}

TEST(JsonLogTest, EscapesQuotesNewlinesAndControlCharacters) {
  const std::string tricky = "say \"hi\"\nthen\t\\leave\x01 {\"json\":1}";
  const std::string line = FormatJson("service", tricky);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "a raw newline would split the line";
  EXPECT_EQ(ParseLine(line).msg, tricky);
}

TEST(JsonLogTest, KeepsNonAsciiText) {
  const std::string text = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80 \xE6\x97\xA5\xE6\x9C\xAC";
  EXPECT_EQ(ParseLine(FormatJson("kafka", text)).msg, text);
}

TEST(JsonLogTest, ReplacesInvalidUtf8SoTheLineStaysValid) {
  const std::string text = std::string("bad \xFF\xFE byte and truncated \xE2\x82");
  Parsed p = ParseLine(FormatJson("sources", text));
  EXPECT_EQ(p.msg, "bad \xEF\xBF\xBD\xEF\xBF\xBD byte and truncated \xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(LoggingTest, ParsesFormatsAndLevels) {
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_FALSE(ParseLogFormat("xml").ok());
  EXPECT_EQ(*ParseLogLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(*ParseLogLevel("warn"), spdlog::level::warn);
  EXPECT_FALSE(ParseLogLevel("loud").ok());
}

TEST(LoggingTest, ModuleLoggersAreSharedAndFollowTheConfiguredLevel) {
  ConfigureLogging({LogFormat::kJson, spdlog::level::warn});
  auto a = Logger("test_module");
  auto b = Logger("test_module");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_FALSE(a->should_log(spdlog::level::info));
  EXPECT_TRUE(a->should_log(spdlog::level::warn));
  ConfigureLogging({LogFormat::kText, spdlog::level::debug});
  EXPECT_TRUE(a->should_log(spdlog::level::debug));
}

}  // namespace
}  // namespace runnel
