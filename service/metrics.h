// The service's Prometheus metrics (prometheus-cpp registry, text exposition). Modules do not
// call prometheus-cpp: each query's batches reach these metrics through a BatchListener (the
// query's probe), and process_* metrics are read from /proc at scrape time.
//
// Names and labels are those of the design (prefix runnel_, base units, no group keys in
// labels). Thread safety: every method may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "streaming/aggregation_query.h"
#include "streaming/streaming_context.h"

namespace runnel::service {

// A query's state size, read after each of its batches.
struct StateSize {
  int64_t keys = 0;
  int64_t bytes = 0;
};

// One partition's consumer lag, for runnel_kafka_consumer_lag_records.
struct KafkaLag {
  std::string topic;
  int32_t partition = 0;
  int64_t records = 0;
};

// What a Kafka source reports at each scrape.
struct KafkaSourceStats {
  std::vector<KafkaLag> lag;  // owned partitions only
  int64_t fetch_errors = 0;   // errors librdkafka returned to reads (it retries them)
  int64_t rebalances = 0;     // assignments and revocations of the group
  int64_t records_lost = 0;   // skipped because no longer in the log (on_data_loss: skip)
  int64_t assigned_partitions = 0;
};

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // The listener that records one query's batches (owned by Metrics). A second call for the
  // same name replaces the first listener (its context must no longer call it), and the
  // query's series go on.
  streaming::BatchListener* ForQuery(const std::string& name,
                                     std::shared_ptr<streaming::AggregationQuery> query,
                                     std::function<StateSize()> state_size);
  // The query left the config: its listener goes (its context must no longer call it), and so
  // do its series.
  void RemoveQuery(const std::string& name);

  // The state store's counters (RocksDB tickers by short name), read at each scrape.
  void SetStorageProbe(std::function<std::map<std::string, uint64_t>()> tickers);

  // The engine's task attempts so far (succeeded, failed), read at each scrape.
  void SetEngineProbe(std::function<std::pair<int64_t, int64_t>()> tasks);

  // A Kafka source's lag per partition and its counters, read at each scrape. Lag series of
  // partitions the source no longer owns are removed. Replaces an earlier probe of `source`.
  void AddKafkaProbe(const std::string& source, std::function<KafkaSourceStats()> stats);
  // The source is gone: its probe and its series.
  void RemoveKafkaProbe(const std::string& source);

  // A config reload ended with `result` (applied, partial, invalid); `applied`: the file was
  // valid and what it changes is in effect.
  void ObserveReload(std::string_view result, bool applied);

  // A checkpoint finished: its duration, and now as the last checkpoint time.
  void ObserveCheckpoint(double seconds);

  // How many set-aside databases (db.broken-*) the state directory holds.
  void SetBrokenStates(int64_t count) { broken_states_.Set(static_cast<double>(count)); }

  // Prometheus text format of every metric, process_* refreshed first.
  std::string Scrape();

 private:
  class QueryProbe;
  void RefreshProcess();

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& batches_;
  prometheus::Family<prometheus::Histogram>& batch_duration_;
  prometheus::Family<prometheus::Gauge>& scheduling_delay_;
  prometheus::Family<prometheus::Counter>& records_;
  prometheus::Family<prometheus::Counter>& invalid_;
  prometheus::Family<prometheus::Counter>& late_;
  prometheus::Family<prometheus::Counter>& filtered_;
  prometheus::Family<prometheus::Counter>& batch_failures_;
  prometheus::Family<prometheus::Gauge>& lag_;
  prometheus::Family<prometheus::Counter>& fetch_errors_;
  prometheus::Family<prometheus::Counter>& rebalances_;
  prometheus::Family<prometheus::Counter>& lost_;
  prometheus::Family<prometheus::Gauge>& assigned_;
  prometheus::Family<prometheus::Gauge>& watermark_;
  prometheus::Family<prometheus::Gauge>& state_keys_;
  prometheus::Family<prometheus::Gauge>& state_bytes_;
  prometheus::Histogram& checkpoint_duration_;
  prometheus::Gauge& last_checkpoint_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Gauge& last_reload_;
  prometheus::Gauge& broken_states_;
  prometheus::Counter& cpu_seconds_;
  prometheus::Gauge& resident_bytes_;
  prometheus::Gauge& virtual_bytes_;
  prometheus::Gauge& open_fds_;
  prometheus::Gauge& start_time_;
  std::mutex mu_;
  std::vector<std::unique_ptr<QueryProbe>> probes_;                 // guarded by mu_
  std::function<std::map<std::string, uint64_t>()> storage_probe_;  // guarded by mu_
  std::map<std::string, prometheus::Counter*> storage_counters_;    // by ticker name
  struct KafkaProbe {
    std::string source;
    std::function<KafkaSourceStats()> stats;
    std::vector<prometheus::Gauge*> lag_series;  // set at the last scrape
    KafkaSourceStats seen;                       // the counters at the last scrape
  };
  std::vector<KafkaProbe> kafka_probes_;                       // guarded by mu_
  std::function<std::pair<int64_t, int64_t>()> engine_probe_;  // guarded by mu_
  prometheus::Family<prometheus::Counter>* tasks_ = nullptr;   // guarded by mu_
};

}  // namespace runnel::service
