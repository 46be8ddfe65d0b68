#include "service/runner.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
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
#include "service/reload_plan.h"
#include "service/running_query.h"
#include "service/systemd_notify.h"
#include "state/rocksdb_store.h"
#include "streaming/available_now.h"

namespace runnel::service {

sigset_t BlockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Waits for one of `signals` other than SIGHUP for up to 100 ms; 0 when none came.
int PollStopSignal(const sigset_t& signals) {
  const timespec poll{.tv_sec = 0, .tv_nsec = 100'000'000};
  const int sig = sigtimedwait(&signals, nullptr, &poll);
  return sig > 0 && sig != SIGHUP ? sig : 0;
}

// `runnel run` in named phases: lock, open, recover, serve, then run (until a signal, or until
// the sources are drained with --available-now) and drain. Each phase returns a Status; the
// exit code comes from ExitCodeFor. While running, SIGHUP (and POST /v1/reload) reloads the
// config between batches (Reload). Wiring only: the work is in the modules it calls.
//
// Threads: Run's (the phases, signals, SIGHUP reloads), the HTTP handlers (views of the
// queries, POST /v1/reload), the checkpointer's, the progress reporter's and one watcher per
// query. The query list changes only under reload_mu_ (a reload, the drain), and each change
// also under queries_mu_, which the readers take.
class Service {
 public:
  Service(Config config, const RunOptions& options, sigset_t signals)
      : config_(std::move(config)), options_(options), signals_(signals), log_(Logger("service")) {}

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
    phase = RunPhase::kLock;
    if (Status st = Lock(); !st.ok()) return failed("state", st);
    // After the lock: the engine empties its spill directory under state_dir.
    phase = RunPhase::kStart;
    if (Status st = Start(); !st.ok()) return failed("engine", st);
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
                                            .memory_budget_bytes = EngineMemoryBytes(config_),
                                            .local_dir = config_.state_dir + "/engine"}));
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
                                           {.block_cache_bytes = StateCacheBytes(config_),
                                            .write_buffer_bytes = StateWriteBufferBytes(config_),
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
    // After each checkpoint, the Kafka sources' confirmed offsets go to their consumer groups
    // again (batches commit theirs asynchronously, and may skip one).
    auto commit_to_groups = [this](const checkpoint::v1::Manifest&) {
      std::vector<std::shared_ptr<sources::KafkaSubscription>> live;
      {
        std::lock_guard lock(queries_mu_);
        for (const auto& [name, entry] : subscriptions_) {
          if (auto sub = entry.second.lock()) live.push_back(std::move(sub));
        }
      }
      for (const auto& sub : live) {
        if (Status st = sub->CommitConfirmed(/*async=*/false); !st.ok()) {
          log_->warn("source {}: {}", sub->options().name, st.ToString());
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
                      .queries = [this] { return Views(); },
                      .reload = [this] { return Reload(/*wait=*/false); },
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
    for (const QueryConfig& qc : config_.queries) {
      ASSIGN_OR_RETURN(auto rq, BuildQuery(qc, config_.sources.at(qc.source), engine_.get(),
                                           store_.get(), subscribe_));
      Wire(*rq);
      std::lock_guard lock(queries_mu_);
      queries_.push_back(std::move(rq));
    }
    ready_ = true;  // state recovered, sources connected
    notifier_.Ready(fmt::format("{} queries recovered, running", queries_.size()));
    checkpointer_->Start();
    return Status::OK();
  }

  // The query's batches reach the metrics, readiness, the checkpointer and systemd's watchdog.
  void Wire(RunningQuery& rq) {
    const std::string& name = rq.name();
    auto* db = store_.get();
    rq.ssc->AddListener(metrics_.ForQuery(name, rq.query, [db, name] {
      const state::NamespaceStats stats = db->Stats(name);
      return StateSize{.keys = stats.keys, .bytes = stats.bytes};
    }));
    rq.ssc->AddListener(checkpointer_->listener());
    rq.ssc->AddListener(health_.ForQuery(name));
    rq.ssc->AddListener(notifier_.listener());
  }

  // A Kafka source's subscription: the live one when its connection settings are the same
  // (SameSubscription), else a new one (joining the group), with its metrics and readiness
  // probes.
  Result<std::shared_ptr<sources::KafkaSubscription>> Subscribe(const SourceConfig& source) {
    {
      std::lock_guard lock(queries_mu_);
      auto it = subscriptions_.find(source.name);
      if (it != subscriptions_.end() &&
          sources::SameSubscription(KafkaOptions(it->second.first), KafkaOptions(source))) {
        if (auto live = it->second.second.lock()) return live;
      }
    }
    ASSIGN_OR_RETURN(auto sub, sources::KafkaSubscription::Make(KafkaOptions(source)));
    std::weak_ptr<sources::KafkaSubscription> weak = sub;
    metrics_.AddKafkaProbe(source.name, [weak] {
      KafkaSourceStats stats;
      auto sub = weak.lock();
      if (sub == nullptr) return stats;
      stats = {.fetch_errors = sub->fetch_errors(),
               .rebalances = sub->rebalances(),
               .records_lost = sub->records_lost(),
               .assigned_partitions = static_cast<int64_t>(sub->Owned().size())};
      for (const auto& p : sub->Lag()) stats.lag.push_back({p.topic, p.partition, p.records});
      return stats;
    });
    health_.AddProbe("source " + source.name, [weak, name = source.name] {
      auto sub = weak.lock();
      const std::string why = sub == nullptr ? "" : sub->Trouble();
      return why.empty() ? why : fmt::format("source {}: {}", name, why);
    });
    std::lock_guard lock(queries_mu_);
    subscriptions_[source.name] = {source, sub};
    return sub;
  }

  // Sources whose last query went: their probes go too.
  void ForgetUnusedSources() {
    std::vector<std::string> gone;
    {
      std::lock_guard lock(queries_mu_);
      for (auto it = subscriptions_.begin(); it != subscriptions_.end();) {
        if (!it->second.second.expired()) {
          ++it;
          continue;
        }
        gone.push_back(it->first);
        it = subscriptions_.erase(it);
      }
    }
    for (const std::string& name : gone) {
      metrics_.RemoveKafkaProbe(name);
      health_.RemoveProbe("source " + name);
      log_->info("source {}: stopped (no query reads it)", name);
    }
  }

  // The query stopped and goes (before it is destroyed): nothing calls into it any more.
  // `removed`: it left the config, so its series and problems go too.
  void Unwire(const RunningQuery& rq, bool removed) {
    if (removed) {
      metrics_.RemoveQuery(rq.name());
      health_.RemoveQuery(rq.name());
    }
  }

  // Starts the query's batches, and a watcher that stops the service when the query fails.
  Status StartQuery(RunningQuery& rq) {
    RETURN_NOT_OK(rq.ssc->Start());
    rq.watcher = std::thread([this, ssc = rq.ssc, name = rq.name()] {
      Status st = ssc->AwaitTermination();
      if (!st.ok() && !query_failed_.exchange(true)) {
        log_->error("query {} stopped: {}", name, st.ToString());
        kill(getpid(), SIGTERM);
      }
    });
    return Status::OK();
  }

  std::vector<QueryView> Views() const {
    std::lock_guard lock(queries_mu_);
    std::vector<QueryView> views;
    for (const auto& rq : queries_) {
      auto outcome = reloads_.find(rq->name());
      views.push_back({.name = rq->name(),
                       .source = rq->config.source,
                       .batch_interval_ms = rq->config.batch_interval_ms,
                       .query = rq->query,
                       .ssc = rq->ssc,
                       .reload = outcome == reloads_.end() ? ReloadOutcome{} : outcome->second});
    }
    return views;
  }

  // --available-now: every query until its sources hold nothing unplanned, then a final
  // checkpoint. A signal stops the catch-up (also a batch waiting to retry); committed
  // batches stay. SIGHUP is ignored: the run ends with the config it started with.
  Status CatchUp(std::string* what) {
    std::atomic<bool> interrupted{false};
    std::jthread stopper([this, &interrupted](std::stop_token stop) {
      while (!stop.stop_requested()) {
        if (PollStopSignal(signals_) != 0) {
          log_->warn("signal: stopping the catch-up after the running batch");
          interrupted = true;
          for (const auto& rq : queries_) rq->ssc->Stop(Millis(0)).IgnoreError();
          return;
        }
      }
    });
    for (const auto& rq : queries_) {
      const std::string& name = rq->name();
      // Batch times on the query's grid, starting now.
      *what = "query " + name;
      auto ran =
          streaming::RunAvailableNow(*rq->ssc, *rq->input, SystemClock::Get().Now(), interrupted);
      RETURN_NOT_OK(ran.status());
      const auto counters = rq->query->counters();
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
    for (const auto& rq : queries_) {
      *what = "query " + rq->name();
      if (Status st = StartQuery(*rq); !st.ok()) {
        // The queries started already stop before what their batches use goes.
        for (const auto& other : queries_) {
          other->ssc->Stop(Millis(config_.shutdown_timeout_ms)).IgnoreError();
        }
        return st;
      }
    }
    if (options_.progress_log_ms > 0) {
      reporter_ = std::jthread([this](std::stop_token token) { ReportProgress(token); });
    }
    started_ = true;
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
      std::lock_guard queries(queries_mu_);
      for (const auto& rq : queries_) {
        const auto c = rq->query->counters();
        const auto progress = rq->ssc->RecentProgress();
        const double last = progress.empty() ? 0 : progress.back().processing_seconds;
        const int64_t wm = rq->query->watermark();
        const std::string line =
            fmt::format("{}: {} batches, {} records, {} late; last batch {:.3f}s; watermark {}",
                        rq->name(), c.batches, c.records, c.late, last,
                        wm == INT64_MIN ? "none" : streaming::FormatIsoTimestamp(wm));
        log_->info("{}", line);
        notifier_.Status(line);
      }
    }
  }

  // Reloads the config file and applies what changed between batches (see reload_plan.h):
  // queries that leave or change stop after their running batch, then queries that are new or
  // changed start. The other queries run on undisturbed. One reload at a time: without `wait`
  // (over HTTP) a reload already running answers "busy"; none runs before the queries started
  // or once the drain began, and a drain that begins meanwhile skips what is left to start.
  ReloadReport Reload(bool wait) {
    ReloadReport report{.at_ms = NowMs()};
    std::unique_lock reload(reload_mu_, std::defer_lock);
    if (wait) {
      reload.lock();
    } else if (!reload.try_lock()) {
      report.result = "busy";
      report.errors.push_back("a reload is running");
      return report;
    }
    if (draining_ || !started_) {
      report.result = draining_ ? "stopping" : "busy";
      if (!draining_) report.errors.push_back("the queries are starting");
      return report;
    }
    notifier_.Reloading("reloading " + config_.file);
    log_->info("reload: reading {}", config_.file);
    std::vector<ConfigError> errors;
    auto file = LoadConfig(config_.file, &errors);
    if (!file.ok()) {
      for (const ConfigError& e : errors) report.errors.push_back(e.ToString());
      if (errors.empty()) report.errors.push_back(file.status().ToString());
      for (const std::string& e : report.errors) log_->error("reload: {}", e);
      log_->error("reload: {} is invalid; nothing changed, running as before", config_.file);
      report.result = "invalid";
      metrics_.ObserveReload(report.result, /*applied=*/false);
      notifier_.Ready("reload refused: the config is invalid; running as before");
      return report;
    }
    ReloadPlan plan = PlanReload(config_, *file);
    for (const std::string& s : plan.needs_restart) {
      log_->warn("reload: {} needs a restart; left as it is", s);
    }
    report.needs_restart = plan.needs_restart;
    bool partial = !plan.needs_restart.empty();
    std::map<std::string, QueryChange> changes;
    for (const QueryChange& c : plan.changes) changes[c.name] = c;
    auto outcome = [&](const std::string& name, std::string what, std::string message) {
      if (what == "failed" || what == "refused") {
        partial = true;
        log_->error("reload: query {}: {}: {}", name, what, message);
      } else {
        log_->info("reload: query {}: {}: {}", name, what, message);
      }
      report.queries.emplace_back(name, ReloadOutcome{report.at_ms, what, std::move(message)});
    };

    // What leaves or changes stops first: every running batch commits (the reload waits).
    Config& next = plan.next;
    auto next_of = [&](const std::string& name) -> const QueryConfig* {
      for (const QueryConfig& q : next.queries) {
        if (q.aggregation.name == name) return &q;
      }
      return nullptr;
    };
    std::vector<std::unique_ptr<RunningQuery>> stopping;
    {
      std::lock_guard lock(queries_mu_);
      for (auto& rq : queries_) {
        const QueryConfig* q = next_of(rq->name());
        if (q != nullptr && *q == rq->config && next.sources.at(q->source) == rq->source) continue;
        stopping.push_back(std::move(rq));
      }
      std::erase(queries_, nullptr);
    }
    StopAll(stopping);
    // A Kafka subscription whose connection stays lives on while its queries restart: no
    // rebalance for a query's or a source's planning settings.
    std::vector<std::shared_ptr<sources::KafkaSubscription>> keep;
    for (const auto& rq : stopping) {
      auto source = next.sources.find(rq->config.source);
      if (rq->kafka != nullptr && source != next.sources.end() &&
          sources::SameSubscription(KafkaOptions(rq->source), KafkaOptions(source->second))) {
        keep.push_back(rq->kafka->subscription());
      }
    }
    std::map<std::string, std::pair<QueryConfig, SourceConfig>> previous;
    for (auto& rq : stopping) {
      const bool removed = next_of(rq->name()) == nullptr;
      Unwire(*rq, removed);
      if (removed) {
        outcome(rq->name(), "stopped", "no longer in the config; its state stays on disk");
        std::lock_guard lock(queries_mu_);
        reloads_.erase(rq->name());
      }
      previous.emplace(rq->name(), std::pair(rq->config, rq->source));
      rq.reset();  // its source detaches (a subscription goes with its last query)
    }

    // Then what is new or changed starts, from its committed batch. The list the readers see
    // changes once, at the end.
    std::vector<QueryConfig> applied;
    std::map<std::string, std::unique_ptr<RunningQuery>> launched;
    for (const QueryConfig& qc : next.queries) {
      const std::string& name = qc.aggregation.name;
      auto change = changes.find(name);
      if (draining_) {
        if (!Running(name)) outcome(name, "failed", "not started: the service is stopping");
        if (Running(name)) applied.push_back(qc);
        continue;
      }
      if (!previous.contains(name) && Running(name)) {  // unchanged, or refused and left running
        if (change != changes.end()) outcome(name, "refused", change->second.why);
        applied.push_back(qc);
        continue;
      }
      Result<std::unique_ptr<RunningQuery>> built = Launch(qc, next.sources.at(qc.source));
      if (built.ok()) {
        outcome(name, change == changes.end() ? "restarted" : OutcomeName(change->second.kind),
                change == changes.end() ? "source settings changed" : change->second.why);
        applied.push_back(qc);
        launched[name] = std::move(built).value();
        continue;
      }
      std::string why = built.status().ToString();
      const bool reset =
          change != changes.end() && change->second.kind == QueryChange::Kind::kReset;
      if (auto was = previous.find(name); was != previous.end() && !reset) {
        // It ran before this reload: back with the query settings it had. Its source's as
        // they were only when they share the new settings' group member (never two members
        // of one group for one source in the process); the source stays as the file has it.
        const SourceConfig& now = next.sources.at(was->second.first.source);
        const SourceConfig& source =
            was->second.first.source == was->second.second.name &&
                    sources::SameSubscription(KafkaOptions(was->second.second), KafkaOptions(now))
                ? was->second.second
                : now;
        auto back = Launch(was->second.first, source);
        if (back.ok()) {
          outcome(name, "failed", why + "; kept running with its previous settings");
          applied.push_back(was->second.first);
          launched[name] = std::move(back).value();
          continue;
        }
        why += "; with its previous settings: " + back.status().ToString();
      }
      // Not running (after a reset, its state was dropped already): the next reload tries
      // again.
      outcome(name, "failed", why + "; not running");
      metrics_.RemoveQuery(name);
      health_.RemoveQuery(name);
    }
    {
      std::lock_guard lock(queries_mu_);
      std::vector<std::unique_ptr<RunningQuery>> ordered;
      for (const QueryConfig& qc : applied) {
        const std::string& name = qc.aggregation.name;
        if (auto it = launched.find(name); it != launched.end()) {
          ordered.push_back(std::move(it->second));
          continue;
        }
        for (auto& rq : queries_) {
          if (rq && rq->name() == name) ordered.push_back(std::move(rq));
        }
      }
      queries_ = std::move(ordered);
    }
    keep.clear();
    ForgetUnusedSources();  // one whose queries went, or one a failed start made
    next.queries = std::move(applied);
    config_ = std::move(next);
    {
      std::lock_guard lock(queries_mu_);
      for (const auto& [name, r] : report.queries) {
        if (r.outcome != "stopped") reloads_[name] = r;
      }
      std::erase_if(reloads_, [&](const auto& entry) {
        return std::none_of(queries_.begin(), queries_.end(),
                            [&](const auto& rq) { return rq->name() == entry.first; });
      });
    }
    report.result = partial ? "partial" : "applied";
    metrics_.ObserveReload(report.result, /*applied=*/true);
    const std::string status =
        fmt::format("reloaded ({}): {} queries running", report.result, queries_.size());
    log_->info("reload: {}", status);
    notifier_.Ready(status);
    return report;
  }

  bool Running(const std::string& name) const {
    std::lock_guard lock(queries_mu_);
    return std::any_of(queries_.begin(), queries_.end(),
                       [&](const auto& rq) { return rq->name() == name; });
  }

  // Builds, wires and starts a query; on failure nothing of it is left running.
  Result<std::unique_ptr<RunningQuery>> Launch(const QueryConfig& qc, const SourceConfig& source) {
    ASSIGN_OR_RETURN(auto rq, BuildQuery(qc, source, engine_.get(), store_.get(), subscribe_));
    Wire(*rq);
    if (Status st = StartQuery(*rq); !st.ok()) {
      Unwire(*rq, /*removed=*/false);
      return st;
    }
    return rq;
  }

  // Stops every query of `queries` at once, each after its running batch (the wait is not
  // bounded: a reload never abandons a batch; shutdown_timeout only makes it log).
  void StopAll(std::vector<std::unique_ptr<RunningQuery>>& queries) {
    std::vector<std::jthread> stoppers;
    for (auto& rq : queries) {
      stoppers.emplace_back([this, q = rq.get()] {
        if (Status st = q->ssc->Stop(Millis(config_.shutdown_timeout_ms)); !st.ok()) {
          log_->warn("reload: query {}: {}; waiting for its batch", q->name(), st.ToString());
        }
        if (q->watcher.joinable()) q->watcher.join();
      });
    }
  }

  // Waits for SIGTERM or SIGINT (or a failed query, which raises SIGTERM); SIGHUP reloads the
  // config meanwhile. True when a query failed.
  // Reloads run on a thread of their own, so a signal that comes during one is taken at once.
  bool AwaitSignal() {
    std::mutex mu;
    std::condition_variable_any cv;
    bool requested = false;  // guarded by mu
    std::jthread reloader([&](std::stop_token stop) {
      while (true) {
        {
          std::unique_lock lock(mu);
          if (!cv.wait(lock, stop, [&] { return requested; })) return;
          requested = false;
        }
        Reload(/*wait=*/true);
      }
    });
    int sig = 0;
    while (true) {
      sigwait(&signals_, &sig);
      if (sig != SIGHUP) break;
      std::lock_guard lock(mu);
      requested = true;  // reloads asked for while one runs make one more
      cv.notify_one();
    }
    draining_ = true;  // a running reload starts nothing more
    const bool failed = query_failed_.load();
    notifier_.Stopping(failed ? "a query failed: stopping" : "draining: finishing running batches");
    log_->info("{}: draining (finishing running batches)",
               failed ? "query failure" : strsignal(sig));
    reloader.request_stop();
    return failed;
  }

  // Every query finishes its running batch (within shutdown_timeout), then a final checkpoint.
  Status Drain() {
    // A second signal while draining exits at once: every commit is atomic, so state stays
    // consistent and the next start resumes from the last committed batch.
    std::jthread second_signal([this](std::stop_token stop) {
      while (!stop.stop_requested()) {
        if (PollStopSignal(signals_) != 0) {
          log_->warn("second signal: exiting now, without waiting for running batches");
          spdlog::shutdown();
          _exit(kExitFailure);
        }
      }
    });
    std::unique_lock reload(reload_mu_);  // a running reload ends first; none starts after
    draining_ = true;
    Status result;
    // shutdown_timeout bounds the whole drain: every query stops at once, each within it.
    std::vector<Status> stopped(queries_.size());
    {
      std::vector<std::jthread> stoppers;
      for (size_t i = 0; i < queries_.size(); ++i) {
        stoppers.emplace_back(
            [&, i] { stopped[i] = queries_[i]->ssc->Stop(Millis(config_.shutdown_timeout_ms)); });
      }
    }
    for (size_t i = 0; i < queries_.size(); ++i) {
      if (stopped[i].ok()) continue;
      log_->error("query {}: {}", queries_[i]->name(), stopped[i].ToString());
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
    for (const auto& rq : queries_) {
      if (rq->watcher.joinable()) rq->watcher.join();
    }
    if (Status st = checkpointer_->Final(); !st.ok()) {
      log_->error("final checkpoint: {}", st.ToString());
      if (result.ok()) result = st;
    }
    if (reporter_.joinable()) {
      reporter_.request_stop();
      reporter_.join();
    }
    reload.unlock();  // a reload request waiting on the HTTP pool answers "stopping"
    if (http_) http_->Stop();
    return result;
  }

  Config config_;  // what runs: the file at start, then as each reload applied it
  const RunOptions& options_;
  sigset_t signals_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<engine::Context> engine_;
  std::unique_ptr<checkpoint::StateDirLock> lock_;
  std::unique_ptr<state::RocksDbStateStore> store_;
  Metrics metrics_;
  // Destroyed in reverse: the HTTP server first, then what it and the checkpointer's thread
  // read (the API context, the queries), then the store and the lock.
  std::mutex reload_mu_;  // held by a reload and by the drain
  std::atomic<bool> draining_{false};
  std::atomic<bool> started_{false};  // the queries started: reloads may run
  mutable std::mutex queries_mu_;
  std::vector<std::unique_ptr<RunningQuery>> queries_;  // in config order; see the class comment
  std::map<std::string, ReloadOutcome> reloads_;        // by query; guarded by queries_mu_
  // Kafka sources by name, with the settings they were made with; held by their queries'
  // sources only. Guarded by queries_mu_.
  std::map<std::string, std::pair<SourceConfig, std::weak_ptr<sources::KafkaSubscription>>>
      subscriptions_;
  const service::Subscribe subscribe_ = [this](const SourceConfig& s) { return Subscribe(s); };
  std::unique_ptr<Checkpointer> checkpointer_;
  SystemdNotifier notifier_;
  Health health_;
  std::atomic<bool> ready_{false};
  ApiContext api_;
  std::unique_ptr<HttpServer> http_;
  std::atomic<bool> query_failed_{false};
  std::jthread reporter_;
};

}  // namespace

int RunService(const Config& config, const RunOptions& options) {
  // Signals are taken by sigwait on this thread; block them before any thread starts.
  const sigset_t signals = BlockTerminationSignals();
  return Service(config, options, signals).Run();
}

}  // namespace runnel::service
