// A table of broken configs: each is refused with exit 78 and a message naming its line.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "service/config.h"
#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

// A valid config; each case below breaks one thing. Line numbers are 1-based.
const char* kValid =
    R"(service: { http_listen: "127.0.0.1:9464", state_dir: ./var/state, log_format: text }
engine: { workers: 2, memory_budget: 1GiB }
checkpoint: { every: 30s, keep: 3 }
sources:
  clicks: { type: file, path: INPUT, max_records_per_batch: 1000 }
queries:
  - name: hourly_pages
    source: clicks
    batch_interval: 1s
    event_time: { field: ts }
    window: 1h
    allowed_lateness: 10m
    group_by: [customer, url]
    aggregates:
      page_views: count
      visitors: { count_distinct: session_id }
      referrers: { count_values: referrer }
    output_mode: update
    on_invalid: skip
    sinks: [ { type: json_files, path: ./var/out } ]
)";

struct Case {
  const char* name;
  const char* find;     // text of the valid config to replace
  const char* replace;  // with this
  int line;             // the line the error must name
  const char* message;  // a part of the message
};

const Case kCases[] = {
    {"unknown top-level key", "engine:", "engines:", 2, "unknown key 'engines'"},
    {"token file that never ends", "log_format: text }",
     "log_format: text, http_token_file: /dev/zero }", 1, "longer than 65536 bytes"},
    {"unknown key in a query", "    output_mode: update", "    output_mod: update", 18,
     "unknown key 'output_mod'"},
    {"bad duration", "batch_interval: 1s", "batch_interval: soon", 9, "not a duration"},
    {"bad size", "memory_budget: 1GiB", "memory_budget: lots", 2, "not a size"},
    {"state cache over half the budget", "memory_budget: 1GiB",
     "memory_budget: 1GiB }\nstate: { block_cache: 600MiB", 3,
     "more than half of engine.memory_budget"},
    {"write buffer over the cache", "memory_budget: 1GiB",
     "memory_budget: 1GiB }\nstate: { block_cache: 64MiB, write_buffer: 65MiB", 3,
     "more than state.block_cache"},
    {"workers not an integer", "workers: 2", "workers: two", 2, "must be an integer"},
    {"workers out of range", "workers: 2", "workers: 0", 2, "between 1 and 256"},
    {"unknown source", "source: clicks", "source: clicks2", 8, "unknown source 'clicks2'"},
    {"window not dividing a day", "window: 1h", "window: 7h", 11, "must divide a day"},
    {"duplicate query name", "    sinks: [ { type: json_files, path: ./var/out } ]",
     "    sinks: [ { type: json_files, path: ./var/out } ]\n  - name: hourly_pages\n    source: "
     "clicks\n"
     "    event_time: { field: ts }\n    window: 1h\n    group_by: [a]\n    aggregates: { n: count "
     "}",
     21, "duplicate query name"},
    {"unset variable without default", "path: ./var/out", "path: ${RUNNEL_TEST_UNSET_VAR}", 20,
     "RUNNEL_TEST_UNSET_VAR is not set"},
    {"query name escaping its directory", "name: hourly_pages", "name: ../etc", 7, "no '..'"},
    {"source name with a slash", "  clicks: {", "  a/b: {", 5, "source name 'a/b'"},
    {"unknown aggregate", "page_views: count", "page_views: average", 15, "not an aggregate"},
    {"two aggregate kinds", "{ count_distinct: session_id }",
     "{ count_distinct: session_id, sum: x }", 16, "exactly one of"},
    {"bad output mode", "output_mode: update", "output_mode: append", 18,
     "must be one of final|update"},
    {"bad on_invalid", "on_invalid: skip", "on_invalid: ignore", 19, "must be one of"},
    {"unreadable input file", "path: INPUT", "path: /nonexistent/clicks.jsonl", 5, "cannot read"},
    {"empty group_by", "group_by: [customer, url]", "group_by: []", 13, "non-empty list"},
    {"YAML syntax error", "window: 1h", "window: [1h", 12, ""},
    {"dead letter without a path", "on_invalid: skip", "on_invalid: dead_letter", 19,
     "dead_letter: { path"},
    {"precision out of range", "{ count_distinct: session_id }",
     "{ count_distinct: session_id, approx: true, precision: 30 }", 16, "between 4 and 18"},
    {"where condition with two operators", "    output_mode: update",
     "    where: [ { field: customer, equals: a.com, prefix: a } ]\n    output_mode: update", 18,
     "exactly one of equals, not_equals, prefix"},
    {"where condition with an unknown operator", "    output_mode: update",
     "    where: [ { field: customer, like: a.com } ]\n    output_mode: update", 18,
     "unknown key 'like'"},
    {"where not a list", "    output_mode: update", "    where: customer\n    output_mode: update",
     18, "'where' must be a non-empty list"},
    {"bad on_definition_change", "    output_mode: update",
     "    on_definition_change: keep\n    output_mode: update", 18, "must be one of fail|reset"},
    {"unreadable http token file", "log_format: text }",
     "log_format: text, http_token_file: /nonexistent/token }", 1, "cannot read http_token_file"},
    {"kafka sink without a topic", "sinks: [ { type: json_files, path: ./var/out } ]",
     "sinks: [ { type: kafka, bootstrap_servers: \"127.0.0.1:9092\" } ]", 20,
     "missing required key 'topic'"},
    {"kafka sink with a path", "sinks: [ { type: json_files, path: ./var/out } ]",
     "sinks: [ { type: kafka, bootstrap_servers: b, topic: t, path: ./x } ]", 20,
     "'path' is for json_files sinks"},
    {"checkpoint every neither duration nor batches", "every: 30s", "every: often", 3,
     "not a duration"},
    // Values that overflowed, hung or crashed the service.
    {"duration overflowing int64", "allowed_lateness: 10m", "allowed_lateness: 999999999999d", 12,
     "not a duration"},
    {"size overflowing int64", "memory_budget: 1GiB", "memory_budget: 999999999999999GiB", 2,
     "not a size"},
    {"duration past its bound", "batch_interval: 1s", "batch_interval: 2h", 9,
     "longer than the most allowed, 1h"},
    {"lateness past its bound", "allowed_lateness: 10m", "allowed_lateness: 3651d", 12,
     "longer than the most allowed"},
    {"size past its bound", "memory_budget: 1GiB", "memory_budget: 2048GiB", 2,
     "larger than the most allowed"},
    {"record cap past its bound", "max_records_per_batch: 1000",
     "max_records_per_batch: 1000000000000", 5, "between 1 and 100000000"},
    {"sliding window with too many windows per event", "window: 1h",
     "window: { length: 1d, slide: 1m }", 11, "puts each event in 1440 windows"},
    {"map aggregate named like an output field", "referrers: { count_values: referrer }",
     "ts: { count_values: referrer }", 17, "aggregate name 'ts' collides"},
    {"map aggregate named like a group field", "referrers: { count_values: referrer }",
     "url: { count_values: referrer }", 17, "aggregate name 'url' collides"},
    {"sub-second window", "window: 1h", "window: { length: 1s, slide: 500ms }", 11,
     "whole seconds"},
    {"group field named like an API parameter", "group_by: [customer, url]",
     "group_by: [customer, limit]", 13, "the aggregates API's own parameter 'limit'"},
    {"group field named like an output field", "group_by: [customer, url]",
     "group_by: [customer, metrics]", 13, "group field 'metrics' collides"},
    {"dead letters written over the sink", "on_invalid: skip",
     "on_invalid: dead_letter\n    dead_letter: { path: ./var/out }", 7,
     "write overlapping directories"},
    {"sink over the state's checkpoints", "path: ./var/out", "path: ./var/state/checkpoints", 7,
     "over the state in service.state_dir"},
    {"http_listen not an address", "127.0.0.1:9464", "localhost:http", 1, "not ADDRESS:PORT"},
    {"non-loopback listen without a token", "127.0.0.1:9464", "0.0.0.0:9464", 1,
     "not a loopback address: set http_token_file"},
};

// Keeps test names short in ctest's output.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ConfigTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(ConfigTableTest, RefusedWithExit78AndTheLine) {
  const Case& c = GetParam();
  TempDir dir;
  WriteText(dir.path() + "/input.jsonl", "");
  std::string text = kValid;
  const size_t at = text.find(c.find);
  ASSERT_NE(at, std::string::npos) << c.find;
  text.replace(at, std::string(c.find).size(), c.replace);
  if (const size_t input = text.find("INPUT"); input != std::string::npos) {
    text.replace(input, 5, dir.path() + "/input.jsonl");
  }
  const std::string path = dir.path() + "/broken.yaml";
  WriteText(path, text);
  auto r = RunProcess({RunnelBinary(), "validate", "--config", path});
  EXPECT_EQ(r.exit_code, 78) << r.err;
  const std::string where = path + ":" + std::to_string(c.line) + ":";
  EXPECT_NE(r.err.find(where), std::string::npos) << "want " << where << " in:\n" << r.err;
  EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  // `run` applies the same validation before touching state.
  auto run = RunProcess({RunnelBinary(), "run", "--config", path, "--available-now"});
  EXPECT_EQ(run.exit_code, 78);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/var"));
}

INSTANTIATE_TEST_SUITE_P(Broken, ConfigTableTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name = info.param.name;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(ConfigTest, ValidConfigPassesWithInterpolation) {
  TempDir dir;
  WriteText(dir.path() + "/input.jsonl", "");
  std::string text = kValid;
  text.replace(text.find("INPUT"), 5, "${RUNNEL_TEST_INPUT_DIR:-" + dir.path() + "}/input.jsonl");
  WriteText(dir.path() + "/ok.yaml", text);
  auto r = RunProcess({RunnelBinary(), "validate", "--config", dir.path() + "/ok.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("1 sources, 1 queries"), std::string::npos) << r.out;
}

TEST(ConfigTest, ReportsEveryProblemNotJustTheFirst) {
  TempDir dir;
  WriteText(dir.path() + "/b.yaml",
            "engine: { workers: 0, memory_budget: x }\nsources: {}\nqueries: []\nextra: 1\n");
  auto r = RunProcess({RunnelBinary(), "validate", "--config", dir.path() + "/b.yaml"});
  EXPECT_EQ(r.exit_code, 78);
  EXPECT_NE(r.err.find("b.yaml:1:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a size"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("b.yaml:4:1: unknown key 'extra'"), std::string::npos) << r.err;
}

TEST(ConfigTest, MissingFileIsAConfigError) {
  auto r = RunProcess({RunnelBinary(), "validate", "--config", "/nonexistent/runnel.yaml"});
  EXPECT_EQ(r.exit_code, 78);
  EXPECT_NE(r.err.find("/nonexistent/runnel.yaml:1:1: cannot read"), std::string::npos) << r.err;
}

TEST(ConfigTest, ZeroLatenessAndAnOpenListenWithConsentAreValid) {
  TempDir dir;
  WriteText(dir.path() + "/input.jsonl", "");
  std::string text = kValid;
  text.replace(text.find("INPUT"), 5, dir.path() + "/input.jsonl");
  text.replace(text.find("allowed_lateness: 10m"), 21, "allowed_lateness: 0s");
  text.replace(text.find("127.0.0.1:9464\""), 15,
               "0.0.0.0:9464\", http_allow_unauthenticated: true");
  WriteText(dir.path() + "/ok.yaml", text);
  auto r = RunProcess({RunnelBinary(), "validate", "--config", dir.path() + "/ok.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(ConfigTest, ATokenFileOthersCanReadIsAWarning) {
  TempDir dir;
  WriteText(dir.path() + "/input.jsonl", "");
  WriteText(dir.path() + "/token", "secret\n");
  ASSERT_EQ(::chmod((dir.path() + "/token").c_str(), 0644), 0);
  std::string text = kValid;
  text.replace(text.find("INPUT"), 5, dir.path() + "/input.jsonl");
  text.replace(text.find("log_format: text }"), 18,
               "log_format: text, http_token_file: " + dir.path() + "/token }");
  WriteText(dir.path() + "/ok.yaml", text);
  auto r = RunProcess({RunnelBinary(), "validate", "--config", dir.path() + "/ok.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("can be read by others"), std::string::npos) << r.err;
  ASSERT_EQ(::chmod((dir.path() + "/token").c_str(), 0600), 0);
  r = RunProcess({RunnelBinary(), "validate", "--config", dir.path() + "/ok.yaml"});
  EXPECT_EQ(r.err.find("can be read by others"), std::string::npos) << r.err;
}

TEST(DurationTest, ParsesUnits) {
  EXPECT_EQ(service::ParseDuration("500ms"), 500);
  EXPECT_EQ(service::ParseDuration("10m"), 600'000);
  EXPECT_EQ(service::ParseDuration("1d"), 86'400'000);
  EXPECT_FALSE(service::ParseDuration("1.5h"));
  EXPECT_EQ(service::ParseSize("1GiB"), int64_t{1} << 30);
  EXPECT_FALSE(service::ParseSize("1 GiB"));
  EXPECT_FALSE(service::ParseDuration("999999999999d"));  // overflows int64 milliseconds
  EXPECT_FALSE(service::ParseSize("999999999999999GiB"));
  EXPECT_EQ(service::ParseDuration("0s"), 0);
}

}  // namespace
}  // namespace runnel::testing
