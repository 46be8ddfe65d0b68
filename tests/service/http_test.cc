// `runnel run` serving: the HTTP API, metrics (checked by promtool), readiness, robustness
// against malformed requests and many concurrent scrapes, and a clean SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "service/http_server.h"
#include "tests/service/service_test_util.h"

extern char** environ;

namespace runnel::testing {
namespace {

TEST(HttpTest, ApiMetricsAndReadinessOfARunningService) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", ServeConfig(dir.path()));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  // Wait until the whole file went through (20 batches with data, then empty ones).
  std::string metrics;
  for (int i = 0; i < 300; ++i) {
    metrics = Body(Get(service.Url("/metrics")));
    if (metrics.find("runnel_records_total{query=\"hourly_pages\"} 20070") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(metrics.find("runnel_records_total{query=\"hourly_pages\"} 20070"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("runnel_late_records_total{query=\"hourly_pages\"} 40"),
            std::string::npos);
  EXPECT_NE(metrics.find(
                "runnel_invalid_records_total{query=\"hourly_pages\",reason=\"malformed_json\"}"),
            std::string::npos);
  EXPECT_NE(metrics.find("runnel_batch_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_NE(metrics.find("runnel_engine_tasks_total{status=\"succeeded\"}"), std::string::npos);
  EXPECT_NE(metrics.find("runnel_checkpoint_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.find("runnel_state_size_bytes{query=\"hourly_pages\"}"), std::string::npos);
  EXPECT_NE(metrics.find("runnel_build_info{"), std::string::npos);
  WriteText(dir.path() + "/metrics.txt", metrics + "\n");
  auto lint = RunProcess({"bash", "-c", "promtool check metrics < " + dir.path() + "/metrics.txt"});
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;

  EXPECT_EQ(Code(Get(service.Url("/readyz"))), 200);
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200);
  EXPECT_EQ(Code(Get(service.Url("/healthz"))), 200);

  auto list = Get(service.Url("/v1/queries"));
  EXPECT_EQ(Code(list), 200);
  EXPECT_NE(Body(list).find("\"name\":\"hourly_pages\""), std::string::npos);
  auto one = Get(service.Url("/v1/queries/hourly_pages"));
  EXPECT_NE(Body(one).find("\"progress\":[{"), std::string::npos) << Body(one);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/lineage"))), 200);

  // Aggregates read from state equal the golden records.
  const auto want = ById(ReadLines(GoldenDir() + "/expected-dirty.jsonl"));
  auto agg = Get(
      service.Url("/v1/queries/hourly_pages/aggregates?customer=a.com&url=http://a.com/articles/1"
                  "&from=2017-09-17T01:00:00&to=2017-09-17T03:00:00"));
  ASSERT_EQ(Code(agg), 200) << agg.out;
  auto got = boost::json::parse(Body(agg)).as_array();
  ASSERT_EQ(got.size(), 2u) << Body(agg);
  for (const auto& rec : got) EXPECT_EQ(rec, want.at(std::string(rec.at("_id").as_string())));
  auto all = boost::json::parse(Body(Get(service.Url("/v1/queries/hourly_pages/aggregates"))));
  EXPECT_EQ(all.as_array().size(), want.size());

  // Clean 4xx for what is wrong.
  EXPECT_EQ(Code(Get(service.Url("/nope"))), 404);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/other"))), 404);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/aggregates?colour=red"))), 400);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/aggregates?from=yesterday"))), 400);
  auto post = RunProcess({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                          service.Url("/metrics")});
  EXPECT_EQ(post.out, "405");
  auto huge = RunProcess({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                          "X-Big: " + std::string(20000, 'x'), service.Url("/livez")});
  EXPECT_EQ(huge.out, "431");
  auto bad_target = RunProcess({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "--request-target", "no-slash", service.Url("/livez")});
  EXPECT_EQ(bad_target.out, "400");

  // 200 concurrent scrapes.
  std::vector<std::thread> scrapers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 200; ++i) {
    scrapers.emplace_back([&] {
      if (Code(Get(service.Url("/metrics"))) == 200) ++ok;
    });
  }
  for (auto& t : scrapers) t.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200);

  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0) << "SIGTERM drains and exits 0";
}

TEST(HttpTest, ABearerTokenGuardsTheQueryApiButNotMetricsOrProbes) {
  TempDir dir;
  WriteText(dir.path() + "/token", "s3cret-token\n");
  std::string config = ServeConfig(dir.path(), "clicks-clean.jsonl");
  config.replace(config.find("service: {"), 10,
                 "service: { http_token_file: " + dir.path() + "/token,");
  WriteText(dir.path() + "/q.yaml", config);
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  auto with = [&](const std::string& header, const std::string& path) {
    return Code(RunProcess({"curl", "-s", "-S", "--max-time", "10", "-o", "/dev/null", "-w",
                            "\n%{http_code}", "-H", header, service.Url(path)}));
  };
  EXPECT_EQ(Code(Get(service.Url("/v1/queries"))), 401);
  EXPECT_EQ(with("Authorization: Bearer wrong", "/v1/queries"), 401);
  EXPECT_EQ(with("Authorization: Bearer s3cret-tokenX", "/v1/queries"), 401);
  EXPECT_EQ(with("Authorization: Bearer s3cret-token", "/v1/queries"), 200);
  EXPECT_EQ(with("Authorization: Bearer s3cret-token", "/v1/queries/hourly_pages/aggregates"), 200);
  EXPECT_EQ(Code(Get(service.Url("/metrics"))), 200);
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200);
  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
}

TEST(HttpTest, AnswerRequestParsesLikeTheServerWithItsLimits) {
  int calls = 0;
  const service::HttpHandler echo = [&](const service::HttpRequest& req) {
    ++calls;
    return service::HttpResponse{
        200, "text/plain",
        req.method + " " + req.path + " " + req.params.at("q") + " " + req.authorization};
  };
  const service::HttpServerOptions options{.max_header_bytes = 256, .max_body_bytes = 16};
  auto ok = service::AnswerRequest("GET /a%20b?q=x%2By HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n",
                                   options, echo);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "GET /a b x+y Bearer t");
  EXPECT_EQ(service::AnswerRequest("NOT HTTP\r\n\r\n", options, echo).status, 400);
  EXPECT_EQ(service::AnswerRequest("GET / HTTP/1.1\r\nHost: x", options, echo).status, 400)
      << "a request cut short";
  const std::string big_header = "GET / HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n";
  EXPECT_EQ(service::AnswerRequest(big_header, options, echo).status, 431);
  EXPECT_EQ(
      service::AnswerRequest("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'b'),
                             options, echo)
          .status,
      431);
  EXPECT_EQ(service::AnswerRequest("GET http://[::1 HTTP/1.1\r\n\r\n", options, echo).status, 400);
  EXPECT_EQ(service::AnswerRequest("GET /v1/queries/a%DD HTTP/1.1\r\n\r\n", options, echo).status,
            400)
      << "found by http_fuzz: a %-escape that is not UTF-8 ended up in a JSON error";
  EXPECT_EQ(calls, 1) << "the handler sees only well-formed requests";
  const service::HttpHandler throws = [](const service::HttpRequest&) -> service::HttpResponse {
    throw std::runtime_error("boom");
  };
  EXPECT_EQ(service::AnswerRequest("GET / HTTP/1.1\r\n\r\n", options, throws).status, 500);
}

}  // namespace
}  // namespace runnel::testing
