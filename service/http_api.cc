#include "service/http_api.h"

#include <charconv>

#include <fmt/format.h>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/json.hpp>
#include <boost/url.hpp>

#include "streaming/event_time.h"

namespace runnel::service {
namespace {

namespace json = boost::json;

constexpr int64_t kDefaultPageRecords = 1000;
constexpr int64_t kMaxPageRecords = 10000;

std::string IsoTime(int64_t ms) { return streaming::FormatIsoTimestamp(ms) + "Z"; }

HttpResponse Json(int status, const json::value& v) {
  return {status, "application/json", json::serialize(v) + "\n"};
}

HttpResponse Error(int status, const std::string& message) {
  return Json(status, json::object{{"error", message}});
}

json::object ProgressJson(const streaming::BatchProgress& p) {
  json::object input;
  for (const auto& [k, v] : p.input) input[k] = v;
  json::object o{{"batch_id", p.batch_id.value()},
                 {"batch_time", IsoTime(p.batch_time.value())},
                 {"records_in", p.records_in},
                 {"records_out", p.records_out},
                 {"late", p.late},
                 {"invalid", p.invalid},
                 {"scheduling_delay_seconds", p.scheduling_delay_seconds},
                 {"processing_seconds", p.processing_seconds},
                 {"input", std::move(input)},
                 {"status", p.status.ToString()}};
  if (p.watermark_ms != INT64_MIN) o["watermark"] = IsoTime(p.watermark_ms);
  return o;
}

json::value ReloadJson(const ReloadOutcome& r) {
  if (r.at_ms == 0) return nullptr;
  return json::object{{"at", IsoTime(r.at_ms)}, {"outcome", r.outcome}, {"message", r.message}};
}

HttpResponse ReloadResponse(const ReloadReport& report) {
  json::array queries;
  for (const auto& [name, r] : report.queries) {
    queries.push_back(json::object{{"name", name}, {"outcome", r.outcome}, {"message", r.message}});
  }
  json::array errors(report.errors.begin(), report.errors.end());
  json::array restart(report.needs_restart.begin(), report.needs_restart.end());
  const int status = report.result == "invalid"                               ? 422
                     : report.result == "stopping" || report.result == "busy" ? 409
                                                                              : 200;
  return Json(status, json::object{{"result", report.result},
                                   {"at", IsoTime(report.at_ms)},
                                   {"errors", std::move(errors)},
                                   {"needs_restart", std::move(restart)},
                                   {"queries", std::move(queries)}});
}

json::object Definition(const QueryView& q) {
  const auto& o = q.query->options();
  json::array group;
  for (const auto& g : o.group_by) group.emplace_back(g);
  json::object aggregates;
  for (const auto& a : o.aggregates) aggregates[a.name] = a.field;
  return {{"name", q.name},
          {"source", q.source},
          {"batch_interval_ms", q.batch_interval_ms},
          {"event_time_field", o.time_field},
          {"window_ms", o.window.length_ms},
          {"slide_ms", o.window.slide_ms},
          {"allowed_lateness_ms", o.allowed_lateness_ms},
          {"group_by", std::move(group)},
          {"aggregates", std::move(aggregates)},
          {"output_mode", o.output_mode == streaming::OutputMode::kFinal ? "final" : "update"},
          {"reload", ReloadJson(q.reload)}};
}

HttpResponse Aggregates(const QueryView& q, const HttpRequest& req) {
  const auto& o = q.query->options();
  std::vector<std::string> prefix;
  for (const auto& field : o.group_by) {
    auto it = req.params.find(field);
    if (it == req.params.end()) break;
    prefix.push_back(it->second);
  }
  for (const auto& [key, value] : req.params) {
    if (key == "from" || key == "to" || key == "limit" || key == "after") continue;
    if (std::find(o.group_by.begin(), o.group_by.end(), key) == o.group_by.end()) {
      return Error(
          400, fmt::format("unknown parameter '{}' (group fields, from, to, limit, after)", key));
    }
    if (std::find(o.group_by.begin(), o.group_by.begin() + static_cast<ptrdiff_t>(prefix.size()),
                  key) == o.group_by.begin() + static_cast<ptrdiff_t>(prefix.size())) {
      return Error(400, fmt::format("'{}' needs the group fields before it", key));
    }
  }
  int64_t from = INT64_MIN, to = INT64_MAX;
  for (auto [name, out] : {std::pair{"from", &from}, std::pair{"to", &to}}) {
    if (auto it = req.params.find(name); it != req.params.end()) {
      auto t = streaming::ParseIsoTimestamp(it->second);
      if (!t.ok()) return Error(400, fmt::format("'{}': {}", name, t.status().message()));
      *out = *t;
    }
  }
  int64_t limit = kDefaultPageRecords;
  if (auto it = req.params.find("limit"); it != req.params.end()) {
    const std::string& text = it->second;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (ec != std::errc() || end != text.data() + text.size() || limit < 1 ||
        limit > kMaxPageRecords) {
      return Error(400, fmt::format("'limit' must be an integer from 1 to {}", kMaxPageRecords));
    }
  }
  const auto after = req.params.find("after");
  auto page = q.query->ReadPage(prefix, from, to, after == req.params.end() ? "" : after->second,
                                static_cast<size_t>(limit));
  if (!page.ok()) {
    return Error(page.status().code() == StatusCode::kInvalidArgument ? 400 : 500,
                 page.status().ToString());
  }
  json::array out;
  for (const auto& r : page->records) out.push_back(json::parse(r));
  HttpResponse response = Json(200, out);
  if (!page->next_after.empty()) {
    // The same query from the page's last _id: every parameter but `after` as it came.
    boost::urls::url next(req.path);
    for (const auto& [key, value] : req.params) {
      if (key != "after") next.params().append({key, value});
    }
    next.params().append({"after", page->next_after});
    response.headers.emplace_back("Link", fmt::format("<{}>; rel=\"next\"", next.buffer()));
  }
  return response;
}

// Whether `authorization` is "Bearer <token>" (the scheme in any case, RFC 7235), the token
// compared in constant time.
bool TokenMatches(std::string_view authorization, const std::string& token) {
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() < kBearer.size() ||
      !boost::algorithm::iequals(authorization.substr(0, kBearer.size()), kBearer)) {
    return false;
  }
  const std::string_view given = authorization.substr(kBearer.size());
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < token.size(); ++i) {
    diff |= static_cast<unsigned char>(token[i] ^ (i < given.size() ? given[i] : 0));
  }
  return diff == 0;
}

}  // namespace

HttpHandler MakeApiHandler(const ApiContext* api) {
  return [api](const HttpRequest& req) -> HttpResponse {
    const std::string& path = req.path;
    const bool reload = path == "/v1/reload";
    if (reload ? req.method != "POST" : req.method != "GET" && req.method != "HEAD") {
      return Error(405, reload ? "only POST" : "only GET");
    }
    if (path == "/livez" || path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
    if (path == "/readyz") {
      if (!api->ready->load()) {
        return HttpResponse{503, "text/plain; charset=utf-8", "not ready: recovering state\n"};
      }
      const std::vector<std::string> problems =
          api->problems ? api->problems() : std::vector<std::string>{};
      if (problems.empty()) return HttpResponse{200, "text/plain; charset=utf-8", "ready\n"};
      std::string body = "not ready:\n";
      for (const auto& p : problems) body += "  " + p + "\n";
      return HttpResponse{503, "text/plain; charset=utf-8", std::move(body)};
    }
    if (path == "/metrics") {
      return {200, "text/plain; version=0.0.4; charset=utf-8", api->metrics->Scrape()};
    }
    if (path.starts_with("/v1/") && !api->ready->load()) {
      return Error(503, "not ready: state is being recovered");
    }
    if (!api->token.empty() && path.starts_with("/v1/") &&
        !TokenMatches(req.authorization, api->token)) {
      return Error(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)");
    }
    if (reload) {
      if (!api->reload || api->token.empty()) {
        return Error(403, "reload over HTTP needs service.http_token_file; send SIGHUP instead");
      }
      return ReloadResponse(api->reload());
    }
    const std::vector<QueryView> queries = api->queries();
    if (path == "/v1/queries") {
      json::array list;
      for (const auto& q : queries) list.push_back(Definition(q));
      return Json(200, list);
    }
    constexpr std::string_view kPrefix = "/v1/queries/";
    if (!path.starts_with(kPrefix)) return Error(404, "no such path");
    std::string rest = path.substr(kPrefix.size());
    std::string sub;
    if (const size_t slash = rest.find('/'); slash != std::string::npos) {
      sub = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
    }
    auto q = std::find_if(queries.begin(), queries.end(),
                          [&](const QueryView& v) { return v.name == rest; });
    if (q == queries.end()) return Error(404, fmt::format("no query '{}'", rest));
    if (sub.empty()) {
      json::object o = Definition(*q);
      json::array progress;
      for (const auto& p : q->ssc->RecentProgress()) progress.push_back(ProgressJson(p));
      o["progress"] = std::move(progress);
      return Json(200, o);
    }
    if (sub == "aggregates") return Aggregates(*q, req);
    if (sub == "lineage") {
      const auto progress = q->ssc->RecentProgress();
      if (progress.empty()) return Error(404, "no batch has run yet");
      return {200, "text/plain; charset=utf-8", progress.back().lineage};
    }
    return Error(404, "no such path");
  };
}

}  // namespace runnel::service
