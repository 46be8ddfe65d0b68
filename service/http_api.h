// The HTTP API of the service: /metrics, /livez, /healthz, /readyz, /v1/queries,
// /v1/queries/NAME, /v1/queries/NAME/aggregates?FIELD=..&from=..&to=.., /v1/queries/NAME/lineage,
// and POST /v1/reload (only when a token is set).
// Thread safety: the handler may run on any thread, and so may the context's functions;
// /v1/* answers 503 until `ready`.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "service/http_server.h"
#include "service/metrics.h"
#include "service/reload_plan.h"
#include "streaming/aggregation_query.h"
#include "streaming/streaming_context.h"

namespace runnel::service {

struct QueryView {
  std::string name;
  std::string source;
  int64_t batch_interval_ms = 0;
  std::shared_ptr<streaming::AggregationQuery> query;
  std::shared_ptr<streaming::StreamingContext> ssc;
  ReloadOutcome reload;  // what the last reload did to the query
};

struct ApiContext {
  Metrics* metrics = nullptr;
  const std::atomic<bool>* ready = nullptr;
  // Problems that make a recovered service not ready (see Health); may be empty.
  std::function<std::vector<std::string>()> problems;
  // The running queries now, in config order.
  std::function<std::vector<QueryView>()> queries;
  // Reloads the config file (POST /v1/reload, which needs `token`): blocks until the reload
  // ended. Empty: no reload over HTTP.
  std::function<ReloadReport()> reload;
  // When set, /v1/* requests need "Authorization: Bearer <token>" (service.http_token_file);
  // /metrics and the health endpoints stay open for scrapers and probes.
  std::string token;
};

// The request handler; `api` must outlive the server that calls it.
HttpHandler MakeApiHandler(const ApiContext* api);

}  // namespace runnel::service
