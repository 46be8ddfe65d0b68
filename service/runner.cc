#include "service/runner.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/state_dir.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "engine/context.h"
#include "service/checkpointer.h"
#include "service/exit_codes.h"
#include "service/health.h"
#include "service/http_api.h"
#include "service/metrics.h"
#include "service/systemd_notify.h"
#include "sinks/json_file_sink.h"
#include "sinks/kafka_sink.h"
#include "sinks/rejected_record.h"
#include "sources/file_source.h"
#include "sources/kafka_source.h"
#include "state/rocksdb_store.h"
#include "streaming/aggregation_query.h"
#include "streaming/available_now.h"

namespace runnel::service {
namespace {

std::optional<streaming::RateControlOptions> RateControl(const SourceConfig& source) {
  if (!source.rate_control) return std::nullopt;
  return streaming::RateControlOptions{.min_rate = static_cast<double>(source.min_rate),
                                       .initial_rate = static_cast<double>(source.initial_rate)};
}

// One registered query and what it runs on.
struct RunningQuery {
  const QueryConfig* config = nullptr;
  std::unique_ptr<streaming::StreamingContext> ssc;
  streaming::InputStreamBase* input = nullptr;  // the query's source (owned by `stream`)
  sources::KafkaSource* kafka = nullptr;        // the same, when it is a Kafka source
  std::optional<streaming::DStream<std::string>> stream;
  std::shared_ptr<streaming::AggregationQuery> query;
  std::vector<std::unique_ptr<sinks::RecordSink>> sinks;
  std::unique_ptr<sinks::JsonFileSink> dead_letters;
  std::unique_ptr<sinks::JsonFileSink> late_output;
};

// A JSON file sink under `root` for query `name`, claimed for the state's incarnation.
Result<std::unique_ptr<sinks::JsonFileSink>> JsonSink(const std::string& root,
                                                      const std::string& name,
                                                      const std::string& incarnation,
                                                      bool state_has_batches) {
  auto sink = std::make_unique<sinks::JsonFileSink>(root, name);
  RETURN_NOT_OK(sink->Claim(incarnation, /*adopt_unmarked=*/state_has_batches));
  return sink;
}

Status BuildQuery(const Config& config, const QueryConfig& qc, engine::Context* engine,
                  state::RocksDbStateStore* store, RunningQuery* rq) {
  const std::string& name = qc.aggregation.name;
  const SourceConfig& source = config.sources.at(qc.source);
  rq->config = &qc;
  ASSIGN_OR_RETURN(rq->query, streaming::AggregationQuery::Make(qc.aggregation, store));
  ASSIGN_OR_RETURN(streaming::CommittedBatch next, rq->query->Recover());
  const bool has_batches = next.record.batch_id.value() > 0;  // the state holds batches of its own
  rq->ssc = std::make_unique<streaming::StreamingContext>(
      engine, streaming::StreamingOptions{.batch_interval = Millis(qc.batch_interval_ms),
                                          .first_batch_id = next.record.batch_id});
  if (source.type == SourceType::kFile) {
    ASSIGN_OR_RETURN(
        auto file, sources::FileSource::Make(rq->ssc.get(),
                                             {.path = source.path,
                                              .max_records_per_batch = source.max_records_per_batch,
                                              .name = source.name}));
    RETURN_NOT_OK(file->Restore(next.record.positions));
    rq->input = file.get();
    rq->stream.emplace(file);
  } else {
    ASSIGN_OR_RETURN(auto kafka, sources::KafkaSource::Make(
                                     rq->ssc.get(),
                                     {.name = source.name,
                                      .bootstrap_servers = source.bootstrap_servers,
                                      .topics = source.topics,
                                      .group_id = source.group_id,
                                      .group_membership = source.group_membership,
                                      .start_at_earliest = source.start_at_earliest,
                                      .max_records_per_partition = source.max_records_per_partition,
                                      .fail_on_data_loss = source.fail_on_data_loss,
                                      .librdkafka = source.librdkafka,
                                      .timeout_ms = static_cast<int>(source.request_timeout_ms),
                                      .rate_control = RateControl(source)}));
    RETURN_NOT_OK(kafka->Restore(next.record.positions, /*use_group_offsets=*/!next.reset));
    rq->input = kafka.get();
    rq->kafka = kafka.get();
    rq->ssc->AddListener(kafka.get());  // rate control learns from each batch
    rq->stream.emplace(kafka);
  }
  for (const SinkConfig& s : qc.sinks) {
    if (s.type == SinkType::kKafka) {
      ASSIGN_OR_RETURN(auto sink, sinks::KafkaSink::Make({.bootstrap_servers = s.bootstrap_servers,
                                                          .topic = s.topic,
                                                          .librdkafka = s.librdkafka}));
      rq->sinks.push_back(std::move(sink));
    } else {
      ASSIGN_OR_RETURN(auto sink, JsonSink(s.path, name, store->incarnation(), has_batches));
      rq->sinks.push_back(std::move(sink));
    }
  }
  if (!qc.dead_letter_path.empty()) {
    ASSIGN_OR_RETURN(rq->dead_letters,
                     JsonSink(qc.dead_letter_path, name, store->incarnation(), has_batches));
  }
  if (!qc.late_output_path.empty()) {
    ASSIGN_OR_RETURN(rq->late_output,
                     JsonSink(qc.late_output_path, name, store->incarnation(), has_batches));
    auto* late = rq->late_output.get();
    rq->query->SetLateOutput([late](BatchId batch, const std::vector<std::string>& lines) {
      std::vector<std::string> records;
      for (const auto& l : lines) {
        records.push_back(sinks::RejectedRecord(batch, records.size(), "late", l));
      }
      return late->Write(batch, records);
    });
  }
  auto* sinks = &rq->sinks;
  auto* dead = rq->dead_letters.get();
  rq->query->Attach(
      *rq->stream,
      [sinks](BatchId batch, const std::vector<std::string>& records) {
        for (auto& sink : *sinks) RETURN_NOT_OK(sink->Write(batch, records));
        return Status::OK();
      },
      [dead](BatchId batch, const std::vector<streaming::InvalidRecord>& invalid) {
        if (dead == nullptr) return Status::OK();
        std::vector<std::string> lines;
        for (const auto& r : invalid) {
          lines.push_back(sinks::RejectedRecord(batch, lines.size(), r.reason, r.line));
        }
        return dead->Write(batch, lines);
      });
  Logger("service")->info("query {} recovered: next batch {}, {} source positions", name,
                          next.record.batch_id, next.record.positions.size());
  return Status::OK();
}

}  // namespace

sigset_t BlockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

namespace {

// `runnel run` in named phases: lock, open, recover, serve, then run (until a signal, or until
// the sources are drained with --available-now) and drain. Each phase returns a Status; the
// exit code comes from ExitCodeFor. Wiring only: the work is in the modules it calls.
class Service {
 public:
  Service(const Config& config, const RunOptions& options, sigset_t signals)
      : config_(config), options_(options), signals_(signals), log_(Logger("service")) {}

  int Run() {
    RunPhase phase = RunPhase::kStart;
    // Each failure is logged once, as "<what>: <status>", and mapped to its exit code.
    auto failed = [&](std::string_view what, const Status& st) {
      if (what.empty()) {
        log_->error("{}", st.ToString());
      } else {
        log_->error("{}: {}", what, st.ToString());
      }
      return ExitCodeFor(phase, st);
    };
    if (Status st = Start(); !st.ok()) return failed("engine", st);
    phase = RunPhase::kLock;
    if (Status st = Lock(); !st.ok()) return failed("state", st);
    phase = RunPhase::kOpen;
    if (Status st = Open(); !st.ok()) return failed("state", st);
    phase = RunPhase::kServe;
    if (Status st = Serve(); !st.ok()) return failed("http", st);
    phase = RunPhase::kRecover;
    if (Status st = Recover(); !st.ok()) return failed("", st);  // its errors name the query
    std::string what;  // what a failure of the phase is about
    phase = RunPhase::kRun;
    if (options_.available_now) {
      if (Status st = CatchUp(&what); !st.ok()) return failed(what, st);
      return kExitOk;
    }
    if (Status st = StartQueries(&what); !st.ok()) return failed(what, st);
    const bool query_failed = AwaitSignal();
    phase = RunPhase::kDrain;
    if (Status st = Drain(); !st.ok()) return ExitCodeFor(phase, st);  // Drain logs each
    return query_failed ? kExitFailure : kExitOk;
  }

 private:
  Status Start() {
    ASSIGN_OR_RETURN(engine_,
                     engine::Context::Make({.workers = config_.workers,
                                            .memory_budget_bytes = config_.memory_budget_bytes}));
    return Status::OK();
  }

  // One process owns a state directory: nothing in it is touched before the lock is held.
  Status Lock() {
    ASSIGN_OR_RETURN(lock_, checkpoint::StateDirLock::Acquire(config_.state_dir));
    return Status::OK();
  }

  Status Open() {
    // RUNNEL_DISK_FAULT_FILE (tests only): state writes fail while that file exists.
    const char* disk_fault =
        std::getenv("RUNNEL_DISK_FAULT_FILE");  // NOLINT(concurrency-mt-unsafe)
    ASSIGN_OR_RETURN(store_,
                     checkpoint::OpenState(config_.state_dir,
                                           {.block_cache_bytes = config_.state_block_cache_bytes,
                                            .write_buffer_bytes = config_.state_write_buffer_bytes,
                                            .disk_fault_file = disk_fault ? disk_fault : ""}));
    // Listed after OpenState, so a database it set aside just now is logged and counted too.
    const std::vector<std::string> broken = checkpoint::BrokenStates(config_.state_dir);
    for (const std::string& dir : broken) {
      log_->warn(
          "state: {} is a database set aside as corrupt; inspect it and remove it when done "
          "(runnel never deletes it)",
          dir);
    }
    metrics_.SetBrokenStates(static_cast<int64_t>(broken.size()));
    auto* db = store_.get();
    metrics_.SetStorageProbe([db] { return db->Tickers(); });
    metrics_.SetEngineProbe([context = engine_.get()] {
      const auto totals = context->task_totals();
      return std::pair(totals.succeeded, totals.failed);
    });
    // After each checkpoint, its Kafka offsets go to the consumer group (for lag tools).
    auto commit_to_groups = [this](const checkpoint::v1::Manifest& manifest) {
      for (const checkpoint::v1::QueryState& q : manifest.queries()) {
        for (RunningQuery& rq : queries_) {
          if (rq.kafka == nullptr || rq.config->aggregation.name != q.name()) continue;
          auto record = checkpoint::QueryRecord(q);
          Status st = record.ok() ? rq.kafka->CommitToGroup(record->positions) : record.status();
          if (!st.ok()) log_->warn("query {}: {}", q.name(), st.ToString());
        }
      }
    };
    checkpointer_ = std::make_unique<Checkpointer>(
        CheckpointerOptions{.state_dir = config_.state_dir,
                            .keep = config_.checkpoint_keep,
                            .every_ms = config_.checkpoint_every_ms,
                            .every_batches = config_.checkpoint_every_batches,
                            .on_checkpoint = commit_to_groups},
        db, &metrics_);
    api_ = ApiContext{.metrics = &metrics_,
                      .ready = &ready_,
                      .problems = [this] { return health_.Problems(); },
                      .token = config_.http_token};
    return Status::OK();
  }

  // The HTTP surface, up before recovery so /readyz says why the service is not ready yet.
  Status Serve() {
    if (options_.available_now) return Status::OK();
    ASSIGN_OR_RETURN(
        http_,
        HttpServer::Start({.listen = config_.http_listen,
                           .max_connections = static_cast<size_t>(config_.http_max_connections)},
                          MakeApiHandler(&api_)));
    log_->info("serving http on port {} ({}): /metrics, /readyz, /v1/queries", http_->port(),
               config_.http_listen);
    return Status::OK();
  }

  // Every query from its last committed batch, its sources connected, its listeners wired.
  Status Recover() {
    queries_.resize(config_.queries.size());
    for (size_t i = 0; i < config_.queries.size(); ++i) {
      RETURN_NOT_OK(
          BuildQuery(config_, config_.queries[i], engine_.get(), store_.get(), &queries_[i]));
    }
    auto* db = store_.get();
    for (RunningQuery& rq : queries_) {
      const std::string& name = rq.config->aggregation.name;
      rq.ssc->AddListener(metrics_.ForQuery(name, rq.query, [db, name] {
        const state::NamespaceStats stats = db->Stats(name);
        return StateSize{.keys = stats.keys, .bytes = stats.bytes};
      }));
      rq.ssc->AddListener(checkpointer_->listener());
      rq.ssc->AddListener(health_.ForQuery(name));
      if (rq.kafka != nullptr) WireKafka(rq);
      rq.ssc->AddListener(notifier_.listener());
      api_.queries.push_back({.name = name,
                              .source = rq.config->source,
                              .batch_interval_ms = rq.config->batch_interval_ms,
                              .query = rq.query,
                              .ssc = rq.ssc.get()});
    }
    ready_ = true;  // state recovered, sources connected
    notifier_.Ready(fmt::format("{} queries recovered, running", queries_.size()));
    checkpointer_->Start();
    return Status::OK();
  }

  void WireKafka(RunningQuery& rq) {
    auto* kafka = rq.kafka;
    metrics_.AddKafkaProbe(rq.config->source, [kafka] {
      KafkaSourceStats stats{.fetch_errors = kafka->fetch_errors(),
                             .rebalances = kafka->rebalances(),
                             .records_lost = kafka->records_lost(),
                             .assigned_partitions = static_cast<int64_t>(kafka->Owned().size())};
      for (const auto& p : kafka->Lag()) stats.lag.push_back({p.topic, p.partition, p.records});
      return stats;
    });
    health_.AddProbe([kafka, source = rq.config->source] {
      const std::string why = kafka->Trouble();
      return why.empty() ? why : fmt::format("source {}: {}", source, why);
    });
  }

  // --available-now: every query until its sources hold nothing unplanned, then a final
  // checkpoint. A signal stops the catch-up (also a batch waiting to retry); committed
  // batches stay.
  Status CatchUp(std::string* what) {
    std::atomic<bool> interrupted{false};
    std::jthread stopper([this, &interrupted](std::stop_token stop) {
      const timespec poll{.tv_sec = 0, .tv_nsec = 100'000'000};
      while (!stop.stop_requested()) {
        if (sigtimedwait(&signals_, nullptr, &poll) > 0) {
          log_->warn("signal: stopping the catch-up after the running batch");
          interrupted = true;
          for (RunningQuery& rq : queries_) rq.ssc->Stop(Millis(0)).IgnoreError();
          return;
        }
      }
    });
    for (RunningQuery& rq : queries_) {
      const std::string& name = rq.config->aggregation.name;
      // Batch times on the query's grid, starting now.
      *what = "query " + name;
      auto ran =
          streaming::RunAvailableNow(*rq.ssc, *rq.input, SystemClock::Get().Now(), interrupted);
      RETURN_NOT_OK(ran.status());
      const auto counters = rq.query->counters();
      int64_t invalid = 0;
      for (const auto& [reason, n] : counters.invalid) invalid += n;
      log_->info("query {}: caught up after {} batches: {} records, {} invalid, {} late", name,
                 counters.batches, counters.records, invalid, counters.late);
    }
    *what = "final checkpoint";
    RETURN_NOT_OK(checkpointer_->Final());
    *what = "catch-up";
    if (interrupted) return Status::Cancelled("interrupted by a signal");
    return Status::OK();
  }

  Status StartQueries(std::string* what) {
    for (RunningQuery& rq : queries_) {
      *what = "query " + rq.config->aggregation.name;
      if (Status st = rq.ssc->Start(); !st.ok()) {
        // The queries started already stop before what their batches use goes.
        for (RunningQuery& other : queries_)
          other.ssc->Stop(Millis(config_.shutdown_timeout_ms)).IgnoreError();
        return st;
      }
    }
    if (options_.progress_log_ms > 0) {
      reporter_ = std::jthread([this](std::stop_token token) { ReportProgress(token); });
    }
    // A query that fails stops the service: wake the signal wait.
    for (RunningQuery& rq : queries_) {
      watchers_.emplace_back([this, &rq] {
        Status st = rq.ssc->AwaitTermination();
        if (!st.ok() && !query_failed_.exchange(true)) {
          log_->error("query {} stopped: {}", rq.config->aggregation.name, st.ToString());
          kill(getpid(), SIGTERM);
        }
      });
    }
    return Status::OK();
  }

  void ReportProgress(std::stop_token token) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    while (true) {
      cv.wait_for(lock, token, std::chrono::milliseconds(options_.progress_log_ms),
                  [] { return false; });
      if (token.stop_requested()) break;
      for (RunningQuery& rq : queries_) {
        const auto c = rq.query->counters();
        const auto progress = rq.ssc->RecentProgress();
        const double last = progress.empty() ? 0 : progress.back().processing_seconds;
        const int64_t wm = rq.query->watermark();
        const std::string line =
            fmt::format("{}: {} batches, {} records, {} late; last batch {:.3f}s; watermark {}",
                        rq.config->aggregation.name, c.batches, c.records, c.late, last,
                        wm == INT64_MIN ? "none" : streaming::FormatIsoTimestamp(wm));
        log_->info("{}", line);
        notifier_.Status(line);
      }
    }
  }

  // Waits for SIGTERM or SIGINT (or a failed query, which raises SIGTERM). True when a query
  // failed.
  bool AwaitSignal() {
    int sig = 0;
    sigwait(&signals_, &sig);
    const bool failed = query_failed_.load();
    notifier_.Stopping(failed ? "a query failed: stopping" : "draining: finishing running batches");
    log_->info("{}: draining (finishing running batches, at most {} ms)",
               failed ? "query failure" : strsignal(sig), config_.shutdown_timeout_ms);
    return failed;
  }

  // Every query finishes its running batch (within shutdown_timeout), then a final checkpoint.
  Status Drain() {
    // A second signal while draining exits at once: every commit is atomic, so state stays
    // consistent and the next start resumes from the last committed batch.
    std::jthread second_signal([this](std::stop_token stop) {
      const timespec poll{.tv_sec = 0, .tv_nsec = 100'000'000};
      while (!stop.stop_requested()) {
        if (sigtimedwait(&signals_, nullptr, &poll) > 0) {
          log_->warn("second signal: exiting now, without waiting for running batches");
          spdlog::shutdown();
          _exit(kExitFailure);
        }
      }
    });
    Status result;
    // shutdown_timeout bounds the whole drain: every query stops at once, each within it.
    std::vector<Status> stopped(queries_.size());
    {
      std::vector<std::jthread> stoppers;
      for (size_t i = 0; i < queries_.size(); ++i) {
        stoppers.emplace_back(
            [&, i] { stopped[i] = queries_[i].ssc->Stop(Millis(config_.shutdown_timeout_ms)); });
      }
    }
    for (size_t i = 0; i < queries_.size(); ++i) {
      if (stopped[i].ok()) continue;
      log_->error("query {}: {}", queries_[i].config->aggregation.name, stopped[i].ToString());
      if (result.ok()) result = stopped[i];
      if (stopped[i].code() == StatusCode::kDeadlineExceeded) {
        // A batch still running past the timeout: exit now. Every commit is atomic, so the
        // next start resumes from the last committed batch.
        log_->error("shutdown_timeout ({} ms) passed with a batch still running: exiting",
                    config_.shutdown_timeout_ms);
        notifier_.Stopping("shutdown_timeout passed: exiting");
        spdlog::shutdown();
        _exit(kExitFailure);
      }
    }
    for (auto& w : watchers_) w.join();
    if (Status st = checkpointer_->Final(); !st.ok()) {
      log_->error("final checkpoint: {}", st.ToString());
      if (result.ok()) result = st;
    }
    if (reporter_.joinable()) {
      reporter_.request_stop();
      reporter_.join();
    }
    if (http_) http_->Stop();
    return result;
  }

  const Config& config_;
  const RunOptions& options_;
  sigset_t signals_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<engine::Context> engine_;
  std::unique_ptr<checkpoint::StateDirLock> lock_;
  std::unique_ptr<state::RocksDbStateStore> store_;
  Metrics metrics_;
  // Destroyed in reverse: the HTTP server first, then what it and the checkpointer's thread
  // read (the API context, the queries), then the store and the lock.
  std::vector<RunningQuery> queries_;
  std::unique_ptr<Checkpointer> checkpointer_;
  SystemdNotifier notifier_;
  Health health_;
  std::atomic<bool> ready_{false};
  ApiContext api_;
  std::unique_ptr<HttpServer> http_;
  std::atomic<bool> query_failed_{false};
  std::jthread reporter_;
  std::vector<std::jthread> watchers_;
};

}  // namespace

int RunService(const Config& config, const RunOptions& options) {
  // Signals are taken by sigwait on this thread; block them before any thread starts.
  const sigset_t signals = BlockTerminationSignals();
  return Service(config, options, signals).Run();
}

}  // namespace runnel::service
