// RunningQuery: one registered query and what it runs on (its streaming context, source, sinks
// and dead-letter and late outputs), built from its config by BuildQuery: state recovered from
// the query's last committed batch, sources connected, sinks claimed. Wiring only.
//
// Thread safety: built, started and stopped by one thread at a time (the service's, under its
// reload lock); `ssc` and `query` are shared with readers (the HTTP API), which may use them
// from any thread while the query lives and after it stopped.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "service/config.h"
#include "sinks/json_file_sink.h"
#include "sinks/record_sink.h"
#include "sources/kafka_source.h"
#include "state/rocksdb_store.h"
#include "streaming/aggregation_query.h"
#include "streaming/streaming_context.h"

namespace runnel::service {

struct RunningQuery {
  QueryConfig config;
  SourceConfig source;  // the source's settings the query was built with
  // Declared first, destroyed last: the sources hold registrations in it.
  std::shared_ptr<streaming::StreamingContext> ssc;
  streaming::InputStreamBase* input = nullptr;  // the query's source (owned by `stream`)
  sources::KafkaSource* kafka = nullptr;        // the same, when it is a Kafka source
  std::optional<streaming::DStream<std::string>> stream;
  std::shared_ptr<streaming::AggregationQuery> query;
  std::vector<std::unique_ptr<sinks::RecordSink>> sinks;
  std::unique_ptr<sinks::JsonFileSink> dead_letters;
  std::unique_ptr<sinks::JsonFileSink> late_output;
  // Waits for the context to end (the service stops when a query fails); joined after Stop.
  std::thread watcher;

  const std::string& name() const { return config.aggregation.name; }

  // Stops the context if its watcher still runs (an error path), joins the watcher, and
  // releases the context's graph (its source goes with the query, whoever holds the context).
  ~RunningQuery();
};

// The Kafka source options of a configured source.
sources::KafkaSourceOptions KafkaOptions(const SourceConfig& source);

// The subscription of a Kafka source, shared by every query that reads it (the service keeps
// one per configured source while a query uses it).
using Subscribe =
    std::function<Result<std::shared_ptr<sources::KafkaSubscription>>(const SourceConfig&)>;

// Builds `qc` over `source`: recovers its state from `store` (a changed definition is refused,
// or with on_definition_change: reset drops the state first), connects the source at the
// committed positions (a Kafka source through `subscribe`), claims the sinks for the state's
// incarnation. Not started.
Result<std::unique_ptr<RunningQuery>> BuildQuery(const QueryConfig& qc, const SourceConfig& source,
                                                 engine::Context* engine,
                                                 state::RocksDbStateStore* store,
                                                 const Subscribe& subscribe);

}  // namespace runnel::service
