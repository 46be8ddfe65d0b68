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
#include <sstream>
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
  EXPECT_EQ(with("Authorization: bearer s3cret-token", "/v1/queries"), 200) << "scheme: any case";
  EXPECT_EQ(with("Authorization: BEARER s3cret-token", "/v1/queries"), 200);
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
  EXPECT_EQ(
      service::AnswerRequest("GET /x?q=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", options, echo)
          .status,
      400)
      << "GET takes no body";
  EXPECT_EQ(calls, 1) << "the handler sees only well-formed requests";
  const service::HttpHandler throws = [](const service::HttpRequest&) -> service::HttpResponse {
    throw std::runtime_error("boom");
  };
  EXPECT_EQ(service::AnswerRequest("GET / HTTP/1.1\r\n\r\n", options, throws).status, 500);
}

// Every page of /v1/queries/NAME/aggregates, following the Link headers from `first`; the
// number of records of each page in `sizes`.
std::vector<std::string> AllPages(const Service& service, const std::string& first,
                                  std::vector<size_t>* sizes) {
  std::vector<std::string> records;
  std::string path = first;
  for (int page = 0; page < 1000 && !path.empty(); ++page) {
    auto r = RunProcess({"curl", "-s", "-S", "--max-time", "10", "-D", "-", service.Url(path)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const size_t split = r.out.find("\r\n\r\n");
    const std::string headers = r.out.substr(0, split);
    const boost::json::array body = boost::json::parse(r.out.substr(split + 4)).as_array();
    sizes->push_back(body.size());
    for (const auto& v : body) records.push_back(boost::json::serialize(v));
    std::smatch m;
    path.clear();
    static const std::regex kLink("Link: <([^>]+)>; rel=\"next\"");
    if (std::regex_search(headers, m, kLink)) path = m[1];
  }
  return records;
}

TEST(HttpTest, AggregatesComeInBoundedPagesLinkedByTheirLastId) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", ServeConfig(dir.path(), "clicks-clean.jsonl"));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  for (int i = 0; i < 300; ++i) {
    if (SumOf(Body(Get(service.Url("/metrics"))), "runnel_records_total") >= 20000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const auto want = ById(ReadLines(GoldenDir() + "/expected-clean.jsonl"));  // 480 records
  std::vector<size_t> sizes;
  const auto paged = AllPages(service, "/v1/queries/hourly_pages/aggregates?limit=100", &sizes);
  EXPECT_EQ(sizes, (std::vector<size_t>{100, 100, 100, 100, 80}));
  EXPECT_EQ(ById(paged), want);
  EXPECT_EQ(paged.size(), want.size()) << "no record on two pages";
  // The default page is 1000 records (all of these); the cap is 10000.
  sizes.clear();
  EXPECT_EQ(AllPages(service, "/v1/queries/hourly_pages/aggregates", &sizes).size(), 480u);
  EXPECT_EQ(sizes.size(), 1u);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/aggregates?limit=10001"))), 400);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/aggregates?limit=0"))), 400);
  EXPECT_EQ(Code(Get(service.Url("/v1/queries/hourly_pages/aggregates?after=nonsense"))), 400);
  // Paging within one customer keeps the other parameters in the link.
  sizes.clear();
  const auto one =
      AllPages(service,
               "/v1/queries/hourly_pages/aggregates?customer=" +
                   std::string(want.begin()->second.at("customer").as_string()) + "&limit=7",
               &sizes);
  for (const auto& r : one) {
    EXPECT_EQ(boost::json::parse(r).at("customer"), want.begin()->second.at("customer"));
  }
  EXPECT_GT(sizes.size(), 1u);
  // HEAD: the headers GET would send, no body.
  auto head = RunProcess({"curl", "-s", "-S", "--max-time", "10", "-I", service.Url("/livez")});
  EXPECT_NE(head.out.find("Content-Length: 3"), std::string::npos) << head.out;
  EXPECT_EQ(head.out.find("ok"), std::string::npos) << head.out;
  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
}

TEST(HttpTest, ASlowRequestDoesNotDelayTheProbes) {
  const service::HttpHandler handler = [](const service::HttpRequest& req) {
    if (req.path == "/v1/slow") std::this_thread::sleep_for(std::chrono::seconds(3));
    return service::HttpResponse{200, "text/plain", "ok\n"};
  };
  auto server = service::HttpServer::Start({.listen = "127.0.0.1:0"}, handler);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());
  std::vector<std::thread> slow;
  for (int i = 0; i < 4; ++i) slow.emplace_back([&] { Get(base + "/v1/slow"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // all four are being served
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Code(Get(base + "/livez")), 200);
  EXPECT_EQ(Code(Get(base + "/metrics")), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  for (auto& t : slow) t.join();
}

TEST(HttpTest, TwoThousandIdleConnectionsNeitherStopBatchesNorSpin) {
  TempDir dir;
  WriteText(dir.path() + "/q.yaml", ServeConfig(dir.path(), "clicks-clean.jsonl"));
  Service service(dir.path() + "/q.yaml", dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  for (int i = 0; i < 600; ++i) {  // the input is read: what follows is empty batches
    if (SumOf(Body(Get(service.Url("/metrics"))), "runnel_records_total") >= 20000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double batches_before = SumOf(Body(Get(service.Url("/metrics"))), "runnel_batches_total");
  // 2000 connections that send nothing, held for 5 s, counting what the service answered.
  WriteText(dir.path() + "/idle.py", R"(
import socket, sys, time
port = int(sys.argv[1])
held = []
for _ in range(2000):
    s = socket.create_connection(("127.0.0.1", port))
    held.append(s)
time.sleep(5)
refused = 0
for s in held:
    s.setblocking(False)
    try:
        if s.recv(64).startswith(b"HTTP/1.1 503"):
            refused += 1
    except BlockingIOError:
        pass
print(refused)
)");
  const auto cpu = [&] {
    std::ifstream stat("/proc/" + std::to_string(service.pid()) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream in(text.substr(text.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    }
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  };
  const double cpu_before = cpu();
  auto idle = RunProcess({"python3", dir.path() + "/idle.py", std::to_string(service.port())});
  ASSERT_EQ(idle.exit_code, 0) << idle.err;
  const double cpu_used = cpu() - cpu_before;
  EXPECT_EQ(std::stoi(idle.out), 2000 - 256) << "beyond the cap: 503 and closed";
  // 10 batches a second ran meanwhile, on 20 000 records; an accept loop spinning would burn
  // the whole 5 s.
  EXPECT_LT(cpu_used, 2.5) << "cpu seconds while 2000 connections were held";
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Code(Get(service.Url("/livez"))), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_GT(SumOf(Body(Get(service.Url("/metrics"))), "runnel_batches_total"), batches_before + 20)
      << "batches kept committing";
  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
}

// The peak resident set of `pid` so far (VmHWM), in bytes.
int64_t PeakRss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

TEST(HttpTest, PagingAHundredThousandKeysKeepsMemoryBounded) {
  TempDir dir;
  {
    std::ofstream in(dir.path() + "/keys.jsonl");
    for (int i = 0; i < 100000; ++i) {
      in << "{\"customer\": \"a.com\", \"url\": \"http://a.com/p/" << i
         << "\", \"referrer\": \"r\", \"session_id\": \"s\", \"ts\": \"2017-09-17T05:00:00\"}\n";
    }
  }
  const std::string config = dir.path() + "/q.yaml";
  WriteText(config,
            Serving(HourlyConfig(dir.path(), dir.path() + "/keys.jsonl", 100000, "1d"), "100ms"));
  auto load = RunProcess({RunnelBinary(), "run", "--config", config, "--available-now"});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  Service service(config, dir.path() + "/log");
  ASSERT_TRUE(service.WaitReady());
  const int64_t peak_before = PeakRss(service.pid());
  std::vector<size_t> sizes;
  const auto records = AllPages(service, "/v1/queries/hourly_pages/aggregates", &sizes);
  const int64_t peak_after = PeakRss(service.pid());
  EXPECT_EQ(records.size(), 100000u);
  EXPECT_EQ(ById(records).size(), 100000u) << "every key once";
  EXPECT_EQ(sizes.size(), 100u);  // pages of the default 1000
  for (size_t n : sizes) EXPECT_EQ(n, 1000u);
    // One page is ~250 KiB of JSON; all 100k records at once would be ~25 MiB of text and
    // several times that parsed. Under ASan/TSan the RSS holds the sanitizer's quarantine and
    // shadow memory, so the bound is checked in the plain build only.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  (void)peak_before;
  (void)peak_after;
#else
  EXPECT_LT(peak_after - peak_before, 32 << 20) << "peak RSS grew while paging";
#endif
  EXPECT_EQ(service.Terminate(std::chrono::seconds(20)), 0);
}

}  // namespace
}  // namespace runnel::testing
