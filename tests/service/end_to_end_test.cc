// End to end with real outside parts: `runnel broker`, kcat, `runnel run` and a real Prometheus
// server (Debian's `prometheus`) scraping it. Its query API must report the records Runnel
// counted, the alert rules of packaging/ must load, and every expression of the Grafana
// dashboard must evaluate.
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>
#include <boost/json.hpp>
#include <boost/url.hpp>

#include "common/file_util.h"
#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

// A TCP port that was free a moment ago.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// `prometheus` in the background; SIGKILLed at the end.
class Prometheus {
 public:
  Prometheus(const std::string& dir, int target_port) : port_(FreePort()) {
    WriteText(dir + "/prometheus.yml",
              "global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
              "rule_files: [" +
                  SourceDir() +
                  "/packaging/prometheus/alerts.yml]\n"
                  "scrape_configs:\n"
                  "  - job_name: runnel\n"
                  "    static_configs: [ { targets: [\"127.0.0.1:" +
                  std::to_string(target_port) + "\"] } ]\n");
    std::vector<std::string> argv = {"prometheus", "--config.file=" + dir + "/prometheus.yml",
                                     "--storage.tsdb.path=" + dir + "/tsdb",
                                     "--web.listen-address=127.0.0.1:" + std::to_string(port_)};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    const std::string log = dir + "/prometheus.log";
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    EXPECT_EQ(posix_spawnp(&pid_, "prometheus", &actions, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Prometheus() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  // The API's answer to an instant query (empty on any failure).
  boost::json::value Query(const std::string& expr) const {
    boost::url url("http://127.0.0.1/api/v1/query");
    url.set_port_number(static_cast<uint16_t>(port_));
    // Percent-encode everything but unreserved characters: a bare '+' would reach Prometheus
    // as a space (form encoding).
    url.encoded_params().set("query", boost::urls::encode(expr, boost::urls::unreserved_chars));
    auto r = Get(std::string(url.buffer()));
    if (r.exit_code != 0 || Code(r) != 200) return nullptr;
    boost::system::error_code ec;
    auto v = boost::json::parse(Body(r), ec);
    return ec ? boost::json::value(nullptr) : v;
  }
  std::string Api(const std::string& path) const {
    return Body(Get("http://127.0.0.1:" + std::to_string(port_) + path));
  }

 private:
  const int port_;
  pid_t pid_ = -1;
};

// The first sample's value of an instant vector result, or "" when there is none.
std::string FirstValue(const boost::json::value& answer) {
  if (!answer.is_object()) return "";
  const auto& result = answer.at("data").at("result").as_array();
  if (result.empty()) return "";
  return std::string(result[0].at("value").as_array()[1].as_string());
}

struct E2eCase {
  const char* name;
  const char* input;     // golden file produced to Kafka
  const char* expected;  // golden aggregates
  int records;           // runnel_records_total at the end
  int invalid;
  int late;
};

void PrintTo(const E2eCase& c, std::ostream* os) { *os << c.name; }

class EndToEndTest : public ::testing::TestWithParam<E2eCase> {};

// The whole path as a user runs it: `runnel broker`, kcat producing the golden data, `runnel
// run` serving, a real Prometheus scraping it. The JSON sink and the aggregates API must both
// reproduce the peer's aggregates, and Prometheus must see the counts. One partition keeps the
// file's order, so the dirty data's late records are late exactly as in the file.
TEST_P(EndToEndTest, KcatToKafkaToRunnelToSinkApiAndPrometheus) {
  const E2eCase& c = GetParam();
  Broker broker({"clicks:1"});
  Produce(broker.bootstrap(), "clicks", GoldenDir() + "/" + c.input);
  TempDir dir;
  const std::string config = Serving(
      WithKafkaSource(HourlyConfig(dir.path(), "unused", 1000, "1h"), broker.bootstrap(), 1000),
      "100ms");
  WriteText(dir.path() + "/q.yaml", config);
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  Prometheus prometheus(dir.path(), service.port());

  const std::string total = std::to_string(c.records);
  std::string records;
  for (int i = 0; i < 600 && records != total; ++i) {
    records = FirstValue(prometheus.Query("runnel_records_total{query=\"hourly_pages\"}"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(records, total) << ReadFile(dir.path() + "/prometheus.log").ValueOr("");
  EXPECT_EQ(FirstValue(prometheus.Query("up{job=\"runnel\"}")), "1");
  EXPECT_EQ(FirstValue(prometheus.Query("runnel_build_info")), "1");
  auto scalar = [&](const std::string& expr) {
    // The next scrape may not have happened yet: ask until it has.
    std::string v;
    for (int i = 0; i < 50; ++i) {
      v = FirstValue(prometheus.Query(expr));
      if (!v.empty()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return v.empty() ? std::string("0") : v;
  };
  EXPECT_EQ(scalar("sum(runnel_invalid_records_total)"), std::to_string(c.invalid));
  EXPECT_EQ(scalar("sum(runnel_late_records_total)"), std::to_string(c.late));

  const auto want = ById(ReadLines(GoldenDir() + "/" + c.expected));
  const auto api = Get(service.Url("/v1/queries/hourly_pages/aggregates"));
  ASSERT_EQ(Code(api), 200) << api.out;
  std::map<std::string, boost::json::value> from_api;
  const boost::json::value api_records = boost::json::parse(Body(api));
  for (const auto& rec : api_records.as_array()) {
    from_api[std::string(rec.at("_id").as_string())] = rec;
  }
  EXPECT_EQ(from_api, want) << "the aggregates API";
  EXPECT_EQ(SinkContent(dir.path()), want) << "the JSON sink";

  // The alert rules loaded and evaluate without errors.
  const auto rules = boost::json::parse(prometheus.Api("/api/v1/rules"));
  const auto& groups = rules.at("data").at("groups").as_array();
  ASSERT_EQ(groups.size(), 1u) << rules;
  for (const auto& rule : groups[0].at("rules").as_array()) {
    EXPECT_NE(rule.at("health").as_string(), "err") << rule;
  }
  // Every dashboard expression is valid PromQL over these metrics.
  const auto dashboard =
      boost::json::parse(ReadFile(SourceDir() + "/packaging/grafana/runnel.json").value());
  int checked = 0;
  for (const auto& panel : dashboard.at("panels").as_array()) {
    for (const auto& target : panel.at("targets").as_array()) {
      std::string expr(target.at("expr").as_string());
      for (auto [from, to] : {std::pair<std::string, std::string>{"$__rate_interval", "1m"},
                              {"$instance", ".*"},
                              {"$query", ".*"}}) {
        for (size_t i; (i = expr.find(from)) != std::string::npos;)
          expr.replace(i, from.size(), to);
      }
      const auto answer = prometheus.Query(expr);
      ASSERT_TRUE(answer.is_object()) << panel.at("title") << ": " << expr;
      EXPECT_EQ(answer.at("status").as_string(), "success") << expr;
      ++checked;
    }
  }
  EXPECT_GE(checked, 14);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
}

INSTANTIATE_TEST_SUITE_P(Golden, EndToEndTest,
                         ::testing::Values(E2eCase{"clean", "clicks-clean.jsonl",
                                                   "expected-clean.jsonl", 20000, 0, 0},
                                           // kcat -l sends no message for the file's 3
                                           // empty lines: 27 invalid records reach Kafka.
                                           E2eCase{"dirty", "clicks-dirty.jsonl",
                                                   "expected-dirty.jsonl", 20067, 27, 40}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace runnel::testing
