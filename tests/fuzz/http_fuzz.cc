// Fuzz target: the bytes a client sends, through the HTTP server's request parsing (Beast,
// with the server's limits) and the service's API handler over one query with a few stored
// aggregates, behind a bearer token. Properties: the answer is one of the statuses the API
// documents (never 500), JSON answers parse, and no /v1/ path answers 200 without the token.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <boost/algorithm/string/predicate.hpp>
#include <boost/json.hpp>

#include "engine/context.h"
#include "service/http_api.h"
#include "service/http_server.h"
#include "streaming/event_parser.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace rs = runnel::streaming;
namespace sv = runnel::service;

constexpr char kToken[] = "fuzz-token";

// One query ("hourly") with two stored aggregates, and everything the handler reads.
struct Api {
  Api() {
    auto made = runnel::engine::Context::Make({.workers = 1});
    FUZZ_CHECK(made.ok());
    engine = std::move(*made);
    ssc = std::make_unique<rs::StreamingContext>(engine.get(), rs::StreamingOptions{});
    rs::AggregationOptions o;
    o.name = "hourly";
    o.group_by = {"customer", "url"};
    o.aggregates = {{"page_views", rs::AggregateSpec::Kind::kCount, ""},
                    {"visitors", rs::AggregateSpec::Kind::kCountDistinct, "session_id"},
                    {"referrers", rs::AggregateSpec::Kind::kCountValues, "referrer"}};
    auto made_query = rs::AggregationQuery::Make(o, &store);
    FUZZ_CHECK(made_query.ok());
    query = *made_query;
    rs::BatchCommit commit{.ns = "hourly", .record = {.batch_id = runnel::BatchId(0)}};
    for (const char* line :
         {R"({"customer":"c1","url":"/a","session_id":"s1","referrer":"x","ts":1000})",
          R"({"customer":"c1","url":"/b","session_id":"s2","referrer":"y","ts":7200000})"}) {
      for (const auto& [key, values] :
           rs::ParseEvent(o, rs::Watermark::kNone, INT64_MAX, line).partials) {
        rs::AggRow row;
        rs::AddRecord(o.aggregates, values, &row);
        commit.puts.emplace_back(key, rs::EncodeRow(row));
      }
    }
    FUZZ_CHECK(store.Commit(commit).ok());
    ready.store(true);
    context.metrics = &metrics;
    context.ready = &ready;
    context.queries = [this] {
      return std::vector<sv::QueryView>{{.name = "hourly",
                                         .source = "clicks",
                                         .batch_interval_ms = 1000,
                                         .query = query,
                                         .ssc = ssc}};
    };
    context.token = kToken;
    // POST /v1/reload answers what a reload did; here, always that nothing changed.
    context.reload = [] { return sv::ReloadReport{.result = "applied", .at_ms = 1}; };
    handler = sv::MakeApiHandler(&context);
  }

  std::unique_ptr<runnel::engine::Context> engine;
  std::shared_ptr<rs::StreamingContext> ssc;
  rs::InMemoryStateStore store;
  std::shared_ptr<rs::AggregationQuery> query;
  sv::Metrics metrics;
  std::atomic<bool> ready{false};
  sv::ApiContext context;
  sv::HttpHandler handler;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Api* api = new Api();  // lives for the process, like the service's
  static const sv::HttpServerOptions options{.max_header_bytes = 2048, .max_body_bytes = 1024};
  bool handled = false;
  auto checked = [&](const sv::HttpRequest& req) {
    handled = true;
    sv::HttpResponse res = api->handler(req);
    if (req.path.starts_with("/v1/") && res.status == 200) {
      // The scheme is case-insensitive (RFC 7235), the token is not.
      const std::string_view auth = req.authorization;
      FUZZ_CHECK(auth.size() == 7 + std::string_view(kToken).size());
      FUZZ_CHECK(boost::algorithm::iequals(auth.substr(0, 7), "Bearer "));
      FUZZ_CHECK(auth.substr(7) == kToken);
    }
    return res;
  };
  const sv::HttpResponse res = sv::AnswerRequest(
      std::string_view(reinterpret_cast<const char*>(data), size), options, checked);
  FUZZ_CHECK(res.status == 200 || res.status == 400 || res.status == 401 || res.status == 404 ||
             res.status == 405 || res.status == 431);
  if (!handled) FUZZ_CHECK(res.status == 400 || res.status == 431);
  if (res.content_type.starts_with("application/json")) {
    boost::system::error_code ec;
    boost::json::parse(res.body, ec);
    FUZZ_CHECK(!ec);
  }
  return 0;
}
