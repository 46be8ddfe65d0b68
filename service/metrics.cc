#include "service/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include <prometheus/text_serializer.h>

#include "common/build_info.h"

namespace runnel::service {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Reads utime+stime (ticks) and the start time (ticks since boot) of this process.
bool ReadProcStat(double* cpu_seconds, double* start_seconds) {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t close = line.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  if (f.size() < 20) return false;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  *cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;  // utime, stime
  double uptime = 0;
  std::ifstream up("/proc/uptime");
  up >> uptime;
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  *start_seconds = now - uptime + std::stod(f[19]) / ticks;  // starttime
  return true;
}

}  // namespace

class Metrics::QueryProbe final : public streaming::BatchListener {
 public:
  QueryProbe(Metrics* m, const std::string& name,
             std::shared_ptr<streaming::AggregationQuery> query,
             std::function<StateSize()> state_size)
      : m_(m),
        name_(name),
        query_(std::move(query)),
        state_size_fn_(std::move(state_size)),
        batches_(m->batches_.Add({{"query", name}})),
        failures_(m->batch_failures_.Add({{"query", name}})),
        duration_(m->batch_duration_.Add(
            {{"query", name}},
            prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                    2.5, 5, 10, 30})),
        delay_(m->scheduling_delay_.Add({{"query", name}})),
        records_(m->records_.Add({{"query", name}})),
        late_(m->late_.Add({{"query", name}})),
        filtered_(m->filtered_.Add({{"query", name}})),
        watermark_(m->watermark_.Add({{"query", name}})),
        keys_(m->state_keys_.Add({{"query", name}})),
        bytes_(m->state_bytes_.Add({{"query", name}})) {}

  void OnBatchCompleted(const streaming::BatchProgress& p) override {
    if (!p.status.ok()) {
      failures_.Increment();
      return;
    }
    batches_.Increment();
    duration_.Observe(p.processing_seconds);
    delay_.Set(p.scheduling_delay_seconds);
    // Counted from what this probe's query counted (a query restarted by a reload counts from
    // zero again; its series go on).
    const streaming::QueryCounters c = query_->counters();
    records_.Increment(static_cast<double>(c.records - seen_.records));
    late_.Increment(static_cast<double>(c.late - seen_.late));
    filtered_.Increment(static_cast<double>(c.filtered - seen_.filtered));
    for (const auto& [reason, n] : c.invalid) {
      auto& counter = m_->invalid_.Add({{"query", name_}, {"reason", reason}});
      auto it = seen_.invalid.find(reason);
      counter.Increment(static_cast<double>(n - (it == seen_.invalid.end() ? 0 : it->second)));
    }
    seen_ = c;
    if (p.watermark_ms != INT64_MIN) watermark_.Set(static_cast<double>(p.watermark_ms) / 1000.0);
    if (state_size_fn_) {
      const StateSize size = state_size_fn_();
      keys_.Set(static_cast<double>(size.keys));
      bytes_.Set(static_cast<double>(size.bytes));
    }
  }

  const std::string& name() const { return name_; }

  // Removes the query's series (it left the config).
  void RemoveSeries() {
    m_->batches_.Remove(&batches_);
    m_->batch_failures_.Remove(&failures_);
    m_->batch_duration_.Remove(&duration_);
    m_->scheduling_delay_.Remove(&delay_);
    m_->records_.Remove(&records_);
    m_->late_.Remove(&late_);
    m_->filtered_.Remove(&filtered_);
    m_->watermark_.Remove(&watermark_);
    m_->state_keys_.Remove(&keys_);
    m_->state_bytes_.Remove(&bytes_);
    for (const auto& [reason, n] : seen_.invalid) {
      m_->invalid_.Remove(&m_->invalid_.Add({{"query", name_}, {"reason", reason}}));
    }
  }

 private:
  Metrics* const m_;
  const std::string name_;
  const std::shared_ptr<streaming::AggregationQuery> query_;
  const std::function<StateSize()> state_size_fn_;
  prometheus::Counter& batches_;
  prometheus::Counter& failures_;
  prometheus::Histogram& duration_;
  prometheus::Gauge& delay_;
  prometheus::Counter& records_;
  prometheus::Counter& late_;
  prometheus::Counter& filtered_;
  prometheus::Gauge& watermark_;
  prometheus::Gauge& keys_;
  prometheus::Gauge& bytes_;
  streaming::QueryCounters seen_;  // the query's counters at its last batch
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      batches_(BuildCounter()
                   .Name("runnel_batches_total")
                   .Help("Batches completed")
                   .Register(*registry_)),
      batch_duration_(BuildHistogram()
                          .Name("runnel_batch_duration_seconds")
                          .Help("Processing time of a batch")
                          .Register(*registry_)),
      scheduling_delay_(BuildGauge()
                            .Name("runnel_batch_scheduling_delay_seconds")
                            .Help("How late the last batch started after its batch time")
                            .Register(*registry_)),
      records_(
          BuildCounter().Name("runnel_records_total").Help("Records read").Register(*registry_)),
      invalid_(BuildCounter()
                   .Name("runnel_invalid_records_total")
                   .Help("Records that could not be parsed, by reason")
                   .Register(*registry_)),
      late_(BuildCounter()
                .Name("runnel_late_records_total")
                .Help("Records dropped as later than the watermark")
                .Register(*registry_)),
      filtered_(BuildCounter()
                    .Name("runnel_filtered_records_total")
                    .Help("Records a where: condition left out")
                    .Register(*registry_)),
      batch_failures_(BuildCounter()
                          .Name("runnel_batch_failures_total")
                          .Help("Batch attempts that failed (transient failures are retried)")
                          .Register(*registry_)),
      lag_(BuildGauge()
               .Name("runnel_kafka_consumer_lag_records")
               .Help("Records in a partition past the last planned batch")
               .Register(*registry_)),
      fetch_errors_(BuildCounter()
                        .Name("runnel_kafka_fetch_errors_total")
                        .Help("Errors a Kafka source's reads got from the broker")
                        .Register(*registry_)),
      rebalances_(BuildCounter()
                      .Name("runnel_kafka_rebalances_total")
                      .Help("Consumer-group assignments and revocations a source went through")
                      .Register(*registry_)),
      lost_(BuildCounter()
                .Name("runnel_kafka_lost_records_total")
                .Help("Records skipped because the log no longer held them (on_data_loss: skip)")
                .Register(*registry_)),
      assigned_(BuildGauge()
                    .Name("runnel_kafka_assigned_partitions")
                    .Help("Partitions a Kafka source owns now")
                    .Register(*registry_)),
      watermark_(BuildGauge()
                     .Name("runnel_watermark_timestamp_seconds")
                     .Help("Event-time watermark")
                     .Register(*registry_)),
      state_keys_(BuildGauge()
                      .Name("runnel_state_keys")
                      .Help("Keys in state (estimate)")
                      .Register(*registry_)),
      state_bytes_(BuildGauge()
                       .Name("runnel_state_size_bytes")
                       .Help("State on disk and in memtables")
                       .Register(*registry_)),
      checkpoint_duration_(
          BuildHistogram()
              .Name("runnel_checkpoint_duration_seconds")
              .Help("Time to take a checkpoint (RocksDB checkpoint, file checksums, manifest)")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                               2.5, 5, 10, 30, 60})),
      last_checkpoint_(BuildGauge()
                           .Name("runnel_last_checkpoint_timestamp_seconds")
                           .Help("When the last checkpoint finished")
                           .Register(*registry_)
                           .Add({})),
      reloads_(BuildCounter()
                   .Name("runnel_config_reloads_total")
                   .Help("Config reloads (SIGHUP, POST /v1/reload), by result: applied, partial "
                         "(something refused, failed or needing a restart), invalid")
                   .Register(*registry_)),
      last_reload_(BuildGauge()
                       .Name("runnel_config_last_reload_timestamp_seconds")
                       .Help("When the config was last reloaded and applied (0: never)")
                       .Register(*registry_)
                       .Add({})),
      broken_states_(BuildGauge()
                         .Name("runnel_state_broken_databases")
                         .Help("Live databases set aside as corrupt (db.broken-*) in state_dir, "
                               "left for an operator to inspect and remove")
                         .Register(*registry_)
                         .Add({})),
      cpu_seconds_(BuildCounter()
                       .Name("process_cpu_seconds_total")
                       .Help("User and system CPU time")
                       .Register(*registry_)
                       .Add({})),
      resident_bytes_(BuildGauge()
                          .Name("process_resident_memory_bytes")
                          .Help("Resident memory")
                          .Register(*registry_)
                          .Add({})),
      virtual_bytes_(BuildGauge()
                         .Name("process_virtual_memory_bytes")
                         .Help("Virtual memory")
                         .Register(*registry_)
                         .Add({})),
      open_fds_(BuildGauge()
                    .Name("process_open_fds")
                    .Help("Open file descriptors")
                    .Register(*registry_)
                    .Add({})),
      start_time_(BuildGauge()
                      .Name("process_start_time_seconds")
                      .Help("Start time since the Unix epoch")
                      .Register(*registry_)
                      .Add({})) {
  BuildGauge()
      .Name("runnel_build_info")
      .Help("Version and commit of the running binary (always 1)")
      .Register(*registry_)
      .Add({{"version", std::string(BuildVersion())}, {"commit", std::string(BuildCommit())}})
      .Set(1);
}

Metrics::~Metrics() = default;

streaming::BatchListener* Metrics::ForQuery(const std::string& name,
                                            std::shared_ptr<streaming::AggregationQuery> query,
                                            std::function<StateSize()> state_size) {
  std::lock_guard lock(mu_);
  std::erase_if(probes_, [&](const auto& p) { return p->name() == name; });
  probes_.push_back(
      std::make_unique<QueryProbe>(this, name, std::move(query), std::move(state_size)));
  return probes_.back().get();
}

void Metrics::RemoveQuery(const std::string& name) {
  std::lock_guard lock(mu_);
  for (auto& p : probes_) {
    if (p->name() == name) p->RemoveSeries();
  }
  std::erase_if(probes_, [&](const auto& p) { return p->name() == name; });
}

void Metrics::SetStorageProbe(std::function<std::map<std::string, uint64_t>()> tickers) {
  // RocksDB tickers as counters, in base units.
  struct Exported {
    const char* ticker;
    const char* name;
    const char* help;
  };
  static constexpr Exported kExported[] = {
      {"block_cache_hit", "runnel_state_block_cache_hits_total", "Block cache hits"},
      {"block_cache_miss", "runnel_state_block_cache_misses_total", "Block cache misses"},
      {"bytes_written", "runnel_state_written_bytes_total", "Bytes written to state"},
      {"bytes_read", "runnel_state_read_bytes_total", "Bytes read from state"},
      {"compaction_bytes_written", "runnel_state_compaction_written_bytes_total",
       "Bytes written by compactions"},
      {"wal_syncs", "runnel_state_wal_syncs_total", "WAL fsyncs"},
  };
  std::lock_guard lock(mu_);
  storage_probe_ = std::move(tickers);
  for (const Exported& e : kExported) {
    storage_counters_[e.ticker] =
        &BuildCounter().Name(e.name).Help(e.help).Register(*registry_).Add({});
  }
}

void Metrics::SetEngineProbe(std::function<std::pair<int64_t, int64_t>()> tasks) {
  std::lock_guard lock(mu_);
  engine_probe_ = std::move(tasks);
  tasks_ = &BuildCounter()
                .Name("runnel_engine_tasks_total")
                .Help("Engine task attempts, by status (succeeded, failed)")
                .Register(*registry_);
}

void Metrics::AddKafkaProbe(const std::string& source, std::function<KafkaSourceStats()> stats) {
  std::lock_guard lock(mu_);
  std::erase_if(kafka_probes_, [&](const KafkaProbe& p) { return p.source == source; });
  kafka_probes_.push_back({source, std::move(stats), {}, {}});
}

void Metrics::RemoveKafkaProbe(const std::string& source) {
  std::lock_guard lock(mu_);
  for (KafkaProbe& probe : kafka_probes_) {
    if (probe.source != source) continue;
    for (prometheus::Gauge* old : probe.lag_series) lag_.Remove(old);
    const std::map<std::string, std::string> labels = {{"source", probe.source}};
    for (auto* family : {&fetch_errors_, &rebalances_, &lost_})
      family->Remove(&family->Add(labels));
    assigned_.Remove(&assigned_.Add(labels));
  }
  std::erase_if(kafka_probes_, [&](const KafkaProbe& p) { return p.source == source; });
}

void Metrics::ObserveReload(std::string_view result, bool applied) {
  reloads_.Add({{"result", std::string(result)}}).Increment();
  if (applied) {
    last_reload_.Set(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
}

void Metrics::ObserveCheckpoint(double seconds) {
  checkpoint_duration_.Observe(seconds);
  last_checkpoint_.Set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void Metrics::RefreshProcess() {
  double cpu = 0, start = 0;
  if (ReadProcStat(&cpu, &start)) {
    if (cpu > cpu_seconds_.Value()) cpu_seconds_.Increment(cpu - cpu_seconds_.Value());
    start_time_.Set(start);
  }
  std::ifstream statm("/proc/self/statm");
  double pages_virtual = 0, pages_resident = 0;
  if (statm >> pages_virtual >> pages_resident) {
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    virtual_bytes_.Set(pages_virtual * page);
    resident_bytes_.Set(pages_resident * page);
  }
  std::error_code ec;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  open_fds_.Set(fds);
}

std::string Metrics::Scrape() {
  RefreshProcess();
  {
    std::lock_guard lock(mu_);
    if (engine_probe_) {
      const auto [succeeded, failed] = engine_probe_();
      for (auto [status, n] : {std::pair{"succeeded", succeeded}, std::pair{"failed", failed}}) {
        auto& counter = tasks_->Add({{"status", status}});
        const double delta = static_cast<double>(n) - counter.Value();
        if (delta > 0) counter.Increment(delta);
      }
    }
    for (KafkaProbe& probe : kafka_probes_) {
      const KafkaSourceStats stats = probe.stats();
      std::vector<prometheus::Gauge*> series;
      for (const KafkaLag& l : stats.lag) {
        auto& gauge = lag_.Add({{"topic", l.topic}, {"partition", std::to_string(l.partition)}});
        gauge.Set(static_cast<double>(l.records));
        series.push_back(&gauge);
      }
      for (prometheus::Gauge* old : probe.lag_series) {
        if (std::find(series.begin(), series.end(), old) == series.end()) lag_.Remove(old);
      }
      probe.lag_series = std::move(series);
      const std::map<std::string, std::string> labels = {{"source", probe.source}};
      // Counted from what this probe's source counted (a source made again counts from 0).
      for (auto [family, value, seen] :
           {std::tuple{&fetch_errors_, stats.fetch_errors, &probe.seen.fetch_errors},
            std::tuple{&rebalances_, stats.rebalances, &probe.seen.rebalances},
            std::tuple{&lost_, stats.records_lost, &probe.seen.records_lost}}) {
        if (value > *seen) family->Add(labels).Increment(static_cast<double>(value - *seen));
        *seen = value;
      }
      assigned_.Add(labels).Set(static_cast<double>(stats.assigned_partitions));
    }
    if (storage_probe_) {
      for (const auto& [ticker, value] : storage_probe_()) {
        auto it = storage_counters_.find(ticker);
        if (it == storage_counters_.end()) continue;
        const double delta = static_cast<double>(value) - it->second->Value();
        if (delta > 0) it->second->Increment(delta);
      }
    }
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace runnel::service
