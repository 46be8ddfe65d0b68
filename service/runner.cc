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
#include <boost/beast/core/detail/base64.hpp>
#include <boost/json.hpp>

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
#include "sources/file_source.h"
#include "sources/kafka_source.h"
#include "state/rocksdb_store.h"
#include "streaming/aggregation_query.h"

namespace runnel::service {
namespace {

// A record that did not make it into the aggregates (dead letter or late), as a JSON line.
// A line that is not valid UTF-8 is kept exactly, in base64 beside a readable copy.
std::string RejectedRecord(BatchId batch, size_t index, std::string_view reason,
                           const std::string& line) {
  boost::json::object record{
      {"_id", fmt::format("{}-{}", batch, index)}, {"reason", reason}, {"line", ToValidUtf8(line)}};
  if (record["line"].as_string() != line) {
    std::string encoded(boost::beast::detail::base64::encoded_size(line.size()), '\0');
    encoded.resize(boost::beast::detail::base64::encode(encoded.data(), line.data(), line.size()));
    record["line_base64"] = encoded;
  }
  return boost::json::serialize(record);
}

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
  if (source.type == "file") {
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
                                      .group_membership = source.assignment == "group",
                                      .start_at_earliest = source.starting_offsets == "earliest",
                                      .max_records_per_partition = source.max_records_per_partition,
                                      .fail_on_data_loss = source.on_data_loss == "fail",
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
    if (s.type == "kafka") {
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
    rq->query->SetLateSink([late](BatchId batch, const std::vector<std::string>& lines) {
      std::vector<std::string> records;
      for (const auto& l : lines) {
        records.push_back(RejectedRecord(batch, records.size(), "late", l));
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
          lines.push_back(RejectedRecord(batch, lines.size(), r.reason, r.line));
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

int RunService(const Config& config, const RunOptions& options) {
  auto log = Logger("service");
  // Signals are taken by sigwait on this thread; block them before any thread starts.
  const sigset_t signals = BlockTerminationSignals();

  auto engine = engine::Context::Make(
      {.workers = config.workers, .memory_budget_bytes = config.memory_budget_bytes});
  if (!engine.ok()) {
    log->error("engine: {}", engine.status().ToString());
    return kExitFailure;
  }
  // One process owns a state directory: nothing in it is touched before the lock is held.
  auto lock = checkpoint::StateDirLock::Acquire(config.state_dir);
  if (!lock.ok()) {
    log->error("state: {}", lock.status().ToString());
    return lock.status().code() == StatusCode::kUnavailable ? kExitStateDirBusy : kExitFailure;
  }
  // RUNNEL_DISK_FAULT_FILE (tests only): state writes fail while that file exists.
  const char* disk_fault = std::getenv("RUNNEL_DISK_FAULT_FILE");  // NOLINT(concurrency-mt-unsafe)
  auto store = checkpoint::OpenState(config.state_dir,
                                     {.block_cache_bytes = config.state_block_cache_bytes,
                                      .write_buffer_bytes = config.state_write_buffer_bytes,
                                      .disk_fault_file = disk_fault ? disk_fault : ""});
  if (!store.ok()) {
    log->error("state: {}", store.status().ToString());
    return kExitFailure;
  }
  Metrics metrics;
  // Listed after OpenState, so a database it set aside just now is logged and counted too.
  const std::vector<std::string> broken = checkpoint::BrokenStates(config.state_dir);
  for (const std::string& dir : broken) {
    log->warn(
        "state: {} is a database set aside as corrupt; inspect it and remove it when done "
        "(runnel never deletes it)",
        dir);
  }
  metrics.SetBrokenStates(static_cast<int64_t>(broken.size()));
  auto* db = store->get();
  metrics.SetStorageProbe([db] { return db->Tickers(); });
  metrics.SetEngineProbe([context = engine->get()] {
    const auto totals = context->task_totals();
    return std::pair(totals.succeeded, totals.failed);
  });
  std::vector<RunningQuery> queries(config.queries.size());
  // After each checkpoint, its Kafka offsets go to the consumer group (for lag tools).
  auto commit_to_groups = [&queries, log](const checkpoint::v1::Manifest& manifest) {
    for (const checkpoint::v1::QueryState& q : manifest.queries()) {
      for (RunningQuery& rq : queries) {
        if (rq.kafka == nullptr || rq.config->aggregation.name != q.name()) continue;
        auto record = checkpoint::QueryRecord(q);
        Status st = record.ok() ? rq.kafka->CommitToGroup(record->positions) : record.status();
        if (!st.ok()) {
          log->warn("query {}: {}", q.name(), st.ToString());
        }
      }
    }
  };
  Checkpointer checkpointer({.state_dir = config.state_dir,
                             .keep = config.checkpoint_keep,
                             .every_ms = config.checkpoint_every_ms,
                             .every_batches = config.checkpoint_every_batches,
                             .on_checkpoint = commit_to_groups},
                            db, &metrics);
  SystemdNotifier notifier;
  Health health;
  std::atomic<bool> ready{false};
  ApiContext api{.metrics = &metrics,
                 .ready = &ready,
                 .problems = [&health] { return health.Problems(); },
                 .token = config.http_token};
  std::unique_ptr<HttpServer> http;
  if (!options.available_now) {
    auto server =
        HttpServer::Start({.listen = config.http_listen,
                           .max_connections = static_cast<size_t>(config.http_max_connections)},
                          MakeApiHandler(&api));
    if (!server.ok()) {
      log->error("http: {}", server.status().ToString());
      return kExitFailure;
    }
    http = std::move(server).value();
    log->info("serving http on port {} ({}): /metrics, /readyz, /v1/queries", http->port(),
              config.http_listen);
  }
  for (size_t i = 0; i < config.queries.size(); ++i) {
    Status st = BuildQuery(config, config.queries[i], engine->get(), store->get(), &queries[i]);
    if (!st.ok()) {
      log->error("{}", st.ToString());
      if (st.code() == StatusCode::kFailedPrecondition) return kExitConfig;  // definition changed
      return st.code() == StatusCode::kNotImplemented ? kExitUnavailable : kExitFailure;
    }
  }
  for (RunningQuery& rq : queries) {
    const std::string& name = rq.config->aggregation.name;
    rq.ssc->AddListener(metrics.ForQuery(name, rq.query, [db, name] {
      const state::NamespaceStats stats = db->Stats(name);
      return StateSize{.keys = stats.keys, .bytes = stats.bytes};
    }));
    rq.ssc->AddListener(checkpointer.listener());
    rq.ssc->AddListener(health.ForQuery(name));
    if (rq.kafka != nullptr) {
      auto* kafka = rq.kafka;
      metrics.AddKafkaProbe(rq.config->source, [kafka] {
        KafkaSourceStats stats{.fetch_errors = kafka->fetch_errors(),
                               .rebalances = kafka->rebalances(),
                               .records_lost = kafka->records_lost(),
                               .assigned_partitions = static_cast<int64_t>(kafka->Owned().size())};
        for (const auto& p : kafka->Lag()) stats.lag.push_back({p.topic, p.partition, p.records});
        return stats;
      });
      health.AddProbe([kafka, source = rq.config->source] {
        const std::string why = kafka->Trouble();
        return why.empty() ? why : fmt::format("source {}: {}", source, why);
      });
    }
    rq.ssc->AddListener(notifier.listener());
    api.queries.push_back({.name = name,
                           .source = rq.config->source,
                           .batch_interval_ms = rq.config->batch_interval_ms,
                           .query = rq.query,
                           .ssc = rq.ssc.get()});
  }
  ready = true;  // state recovered, sources connected
  notifier.Ready(fmt::format("{} queries recovered, running", queries.size()));
  checkpointer.Start();

  if (options.available_now) {
    // A signal stops the catch-up (also a batch waiting to retry); committed batches stay.
    std::atomic<bool> interrupted{false};
    std::jthread stopper([&signals, &queries, &interrupted, log](std::stop_token stop) {
      const timespec poll{.tv_sec = 0, .tv_nsec = 100'000'000};
      while (!stop.stop_requested()) {
        if (sigtimedwait(&signals, nullptr, &poll) > 0) {
          log->warn("signal: stopping the catch-up after the running batch");
          interrupted = true;
          for (RunningQuery& rq : queries) rq.ssc->Stop(Millis(0)).IgnoreError();
          return;
        }
      }
    });
    for (RunningQuery& rq : queries) {
      // Batch times on the query's grid, starting now.
      TimePoint t = SystemClock::Get().Now();
      while (!interrupted && rq.input->HasPendingData()) {
        Status st = rq.ssc->RunBatch(t);
        t += Millis(rq.config->batch_interval_ms);
        if (!st.ok()) {
          log->error("query {}: {}", rq.config->aggregation.name, st.ToString());
          return kExitFailure;
        }
      }
      const auto counters = rq.query->counters();
      int64_t invalid = 0;
      for (const auto& [reason, n] : counters.invalid) invalid += n;
      log->info("query {}: caught up after {} batches: {} records, {} invalid, {} late",
                rq.config->aggregation.name, counters.batches, counters.records, invalid,
                counters.late);
    }
    if (Status st = checkpointer.Final(); !st.ok()) {
      log->error("final checkpoint: {}", st.ToString());
      return kExitFailure;
    }
    return interrupted ? kExitFailure : kExitOk;
  }

  for (RunningQuery& rq : queries) {
    Status st = rq.ssc->Start();
    if (!st.ok()) {
      log->error("query {}: {}", rq.config->aggregation.name, st.ToString());
      return kExitFailure;
    }
  }
  std::jthread reporter;
  if (options.progress_log_ms > 0) {
    reporter = std::jthread([&queries, &options, &notifier, log](std::stop_token token) {
      std::mutex mu;
      std::condition_variable_any cv;
      std::unique_lock lock(mu);
      while (true) {
        cv.wait_for(lock, token, std::chrono::milliseconds(options.progress_log_ms),
                    [] { return false; });
        if (token.stop_requested()) break;
        for (RunningQuery& rq : queries) {
          const auto c = rq.query->counters();
          const auto progress = rq.ssc->RecentProgress();
          const double last = progress.empty() ? 0 : progress.back().processing_seconds;
          const int64_t wm = rq.query->watermark();
          const std::string line =
              fmt::format("{}: {} batches, {} records, {} late; last batch {:.3f}s; watermark {}",
                          rq.config->aggregation.name, c.batches, c.records, c.late, last,
                          wm == INT64_MIN ? "none" : streaming::FormatIsoTimestamp(wm));
          log->info("{}", line);
          notifier.Status(line);
        }
      }
    });
  }
  // A query that fails stops the service: wake the signal wait.
  std::atomic<bool> failed{false};
  std::vector<std::jthread> watchers;
  for (RunningQuery& rq : queries) {
    watchers.emplace_back([&rq, &failed, log] {
      Status st = rq.ssc->AwaitTermination();
      if (!st.ok() && !failed.exchange(true)) {
        log->error("query {} stopped: {}", rq.config->aggregation.name, st.ToString());
        kill(getpid(), SIGTERM);
      }
    });
  }
  int sig = 0;
  sigwait(&signals, &sig);
  notifier.Stopping(failed ? "a query failed: stopping" : "draining: finishing running batches");
  log->info("{}: draining (finishing running batches, at most {} ms)",
            failed ? "query failure" : strsignal(sig), config.shutdown_timeout_ms);
  // A second signal while draining exits at once: every commit is atomic, so state stays
  // consistent and the next start resumes from the last committed batch.
  std::jthread second_signal([&signals, log](std::stop_token stop) {
    const timespec poll{.tv_sec = 0, .tv_nsec = 100'000'000};
    while (!stop.stop_requested()) {
      if (sigtimedwait(&signals, nullptr, &poll) > 0) {
        log->warn("second signal: exiting now, without waiting for running batches");
        spdlog::shutdown();
        _exit(kExitFailure);
      }
    }
  });
  int code = failed ? kExitFailure : kExitOk;
  // shutdown_timeout bounds the whole drain: every query stops at once, each within it.
  std::vector<Status> stopped(queries.size());
  {
    std::vector<std::jthread> stoppers;
    for (size_t i = 0; i < queries.size(); ++i) {
      stoppers.emplace_back(
          [&, i] { stopped[i] = queries[i].ssc->Stop(Millis(config.shutdown_timeout_ms)); });
    }
  }
  for (size_t i = 0; i < queries.size(); ++i) {
    if (stopped[i].ok()) continue;
    log->error("query {}: {}", queries[i].config->aggregation.name, stopped[i].ToString());
    code = kExitFailure;
    if (stopped[i].code() == StatusCode::kDeadlineExceeded) {
      // A batch still running past the timeout: exit now. Every commit is atomic, so the
      // next start resumes from the last committed batch.
      log->error("shutdown_timeout ({} ms) passed with a batch still running: exiting",
                 config.shutdown_timeout_ms);
      notifier.Stopping("shutdown_timeout passed: exiting");
      spdlog::shutdown();
      _exit(kExitFailure);
    }
  }
  for (auto& w : watchers) w.join();
  if (Status st = checkpointer.Final(); !st.ok()) {
    log->error("final checkpoint: {}", st.ToString());
    code = kExitFailure;
  }
  if (reporter.joinable()) {
    reporter.request_stop();
    reporter.join();
  }
  if (http) http->Stop();
  return code;
}

}  // namespace runnel::service
