#include "service/checkpointer.h"

#include <chrono>

#include "common/logging.h"

namespace runnel::service {

Checkpointer::Checkpointer(CheckpointerOptions options, state::RocksDbStateStore* db,
                           Metrics* metrics)
    : options_(std::move(options)),
      db_(db),
      metrics_(metrics),
      store_(options_.state_dir, options_.keep) {}

Checkpointer::~Checkpointer() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

void Checkpointer::Listener::OnBatchCompleted(const streaming::BatchProgress& progress) {
  if (!progress.status.ok() || !progress.committed) return;
  std::lock_guard lock(c_->mu_);
  ++c_->committed_;
  c_->cv_.notify_all();
}

void Checkpointer::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
}

void Checkpointer::Loop(std::stop_token stop) {
  auto log = Logger("checkpoint");
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(mu_);
      if (options_.every_ms > 0) {
        cv_.wait_for(lock, stop, std::chrono::milliseconds(options_.every_ms),
                     [] { return false; });
      } else {
        cv_.wait(lock, stop, [this] {
          return committed_ - checkpointed_at_ >= std::max<int64_t>(options_.every_batches, 1);
        });
      }
    }
    if (stop.stop_requested()) break;
    if (Status st = TakeIfChanged(); !st.ok()) {
      // The live state is intact; the next checkpoint tries again.
      log->error("checkpoint failed: {}", st.ToString());
    }
  }
}

Status Checkpointer::TakeIfChanged() {
  std::lock_guard take(take_mu_);
  int64_t committed = 0;
  {
    std::lock_guard lock(mu_);
    committed = committed_;
    if (committed == checkpointed_at_) return Status::OK();
  }
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(checkpoint::v1::Manifest manifest, store_.Take(db_));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  {
    std::lock_guard lock(mu_);
    checkpointed_at_ = committed;
  }
  metrics_->ObserveCheckpoint(seconds);
  if (options_.on_checkpoint) options_.on_checkpoint(manifest);
  std::string batches;
  for (const auto& q : manifest.queries()) {
    batches += fmt::format("{}{} at batch {}", batches.empty() ? "" : ", ", q.name(), q.batch_id());
  }
  Logger("checkpoint")
      ->info("checkpoint {} taken in {:.3f}s: {} files; {}", manifest.checkpoint_id(), seconds,
             manifest.files_size(), batches.empty() ? "no queries" : batches);
  return Status::OK();
}

Status Checkpointer::Final() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  RETURN_NOT_OK(TakeIfChanged());
  return db_->FlushWal();
}

}  // namespace runnel::service
