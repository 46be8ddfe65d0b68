// The HTTP API of the service: /metrics, /livez, /healthz, /readyz, /v1/queries,
// /v1/queries/NAME, /v1/queries/NAME/aggregates?FIELD=..&from=..&to=.., /v1/queries/NAME/lineage.
// Thread safety: the handler may run on any thread. `queries` is filled before `ready` becomes
// true and read only after it is; /v1/* answers 503 until then.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "service/http_server.h"
#include "service/metrics.h"
#include "streaming/aggregation_query.h"
#include "streaming/streaming_context.h"

namespace runnel::service {

struct QueryView {
  std::string name;
  std::string source;
  int64_t batch_interval_ms = 0;
  std::shared_ptr<streaming::AggregationQuery> query;
  streaming::StreamingContext* ssc = nullptr;
};

struct ApiContext {
  Metrics* metrics = nullptr;
  const std::atomic<bool>* ready = nullptr;
  // Problems that make a recovered service not ready (see Health); may be empty.
  std::function<std::vector<std::string>()> problems;
  std::vector<QueryView> queries;
  // When set, /v1/* requests need "Authorization: Bearer <token>" (service.http_token_file);
  // /metrics and the health endpoints stay open for scrapers and probes.
  std::string token;
};

// The request handler; `api` must outlive the server that calls it.
HttpHandler MakeApiHandler(const ApiContext* api);

}  // namespace runnel::service
