#include "streaming/streaming_context.h"

#include <chrono>
#include <utility>

#include <fmt/format.h>

#include "common/logging.h"

namespace runnel::streaming {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

StreamingContext::StreamingContext(engine::Context* engine, StreamingOptions options)
    : engine_(engine),
      options_(options),
      clock_(options.clock ? options.clock : &SystemClock::Get()),
      next_batch_id_(options.first_batch_id.value()) {}

StreamingContext::~StreamingContext() {
  Stop().IgnoreError();  // the destructor cannot report; Stop's status was for the caller
  timer_ = std::jthread();
  runner_ = std::jthread();
  // Outputs hold stream nodes, whose Registrations unregister from this context.
  outputs_.clear();
}

StreamingContext::Registration::Registration(Registration&& other) noexcept
    : ssc_(std::exchange(other.ssc_, nullptr)), input_(other.input_), node_(other.node_) {}

StreamingContext::Registration& StreamingContext::Registration::operator=(
    Registration&& other) noexcept {
  if (this != &other) {
    Reset();
    ssc_ = std::exchange(other.ssc_, nullptr);
    input_ = other.input_;
    node_ = other.node_;
  }
  return *this;
}

StreamingContext::Registration::~Registration() { Reset(); }

void StreamingContext::Registration::Reset() {
  if (ssc_ == nullptr) return;
  std::lock_guard lock(ssc_->graph_mu_);
  std::erase(ssc_->inputs_, input_);
  std::erase(ssc_->nodes_, node_);
  ssc_ = nullptr;
}

StreamingContext::Registration StreamingContext::AddInput(InputStreamBase* input) {
  std::lock_guard lock(graph_mu_);
  inputs_.push_back(input);
  return Registration(this, input, nullptr);
}

StreamingContext::Registration StreamingContext::AddNode(StreamNodeHooks* node) {
  std::lock_guard lock(graph_mu_);
  nodes_.push_back(node);
  return Registration(this, nullptr, node);
}

Status StreamingContext::Start(std::optional<TimePoint> first_batch) {
  std::lock_guard lock(mu_);
  if (started_) return Status::FailedPrecondition("streaming context already started");
  if (stopping_) return Status::FailedPrecondition("streaming context was stopped");
  const Millis interval = options_.batch_interval;
  if (interval <= Millis::zero()) return Status::InvalidArgument("batch interval must be positive");
  TimePoint first =
      first_batch.value_or(TimePoint((clock_->Now().time_since_epoch() / interval + 1) * interval));
  zero_time_ = first;
  started_ = true;
  runner_ = std::jthread([this](std::stop_token stop) { RunnerLoop(stop); });
  timer_ = std::jthread([this, first](std::stop_token stop) { TimerLoop(stop, first); });
  return Status::OK();
}

void StreamingContext::TimerLoop(std::stop_token stop, TimePoint first) {
  for (TimePoint next = first; !stop.stop_requested(); next += options_.batch_interval) {
    if (!clock_->WaitUntil(next, stop)) return;
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push_back(next);
    queue_cv_.notify_all();
  }
}

void StreamingContext::RunnerLoop(std::stop_token stop) {
  while (true) {
    TimePoint time;
    {
      std::unique_lock lock(mu_);
      queue_cv_.wait(lock, stop, [&] { return !queue_.empty() || stopping_; });
      if (stopping_ || stop.stop_requested() || queue_.empty()) break;
      time = queue_.front();
      queue_.pop_front();
      batch_running_ = true;
    }
    Status st = RunOne(time);
    std::lock_guard lock(mu_);
    batch_running_ = false;
    done_cv_.notify_all();
    if (st.code() == StatusCode::kCancelled && stopping_) break;  // Stop ended a retry
    if (!st.ok()) {
      // A failed batch stops the stream: skipping it would lose its input.
      Logger("streaming")
          ->error("batch at {} failed, stopping: {}", time.time_since_epoch().count(),
                  st.ToString());
      failure_ = st;
      break;
    }
  }
  std::lock_guard lock(mu_);
  runner_done_ = true;
  queue_.clear();
  done_cv_.notify_all();
}

Status StreamingContext::RunBatch(TimePoint time) {
  {
    std::lock_guard lock(mu_);
    if (started_) return Status::FailedPrecondition("RunBatch while the timer runs");
    if (zero_time_ == TimePoint{}) zero_time_ = time;
    // Off the batch grid, windowed streams would plan input they never compute.
    if ((time - zero_time_) % options_.batch_interval != Millis::zero() || time < zero_time_) {
      return Status::InvalidArgument(
          fmt::format("batch time {} is not a whole number of intervals after the first batch",
                      time.time_since_epoch().count()));
    }
  }
  return RunOne(time);
}

Status StreamingContext::RunOne(TimePoint time) {
  std::lock_guard run_lock(run_mu_);
  const BatchTime t(time.time_since_epoch().count());
  Millis backoff = options_.retry_backoff;
  bool replanned = false;
  for (int attempt = 1;; ++attempt) {
    Status st = Attempt(time);
    if (st.ok()) {
      std::lock_guard lock(graph_mu_);
      for (InputStreamBase* input : inputs_) input->Confirm(t);
      return st;
    }
    // The batch retries what the batch can help: a resource that may come back (kBatch) and
    // a plan that no longer holds (kReplan). Task and stage retries happened in the engine.
    const RetryScope scope = st.retry();
    if (!options_.retry_transient ||
        (scope != RetryScope::kBatch && scope != RetryScope::kReplan)) {
      // The batch ends here, failed, and so does the stream (its plan stays, for diagnosis).
      std::lock_guard lock(graph_mu_);
      for (InputStreamBase* input : inputs_) input->Stopped(t);
      return st;
    }
    // A new plan is tried at once, the first time; a plan that keeps failing waits too.
    const Millis pause = scope == RetryScope::kReplan && !replanned ? Millis::zero() : backoff;
    replanned = replanned || scope == RetryScope::kReplan;
    {
      std::lock_guard lock(graph_mu_);
      for (InputStreamBase* input : inputs_) input->Abandon(t);
      for (StreamNodeHooks* node : nodes_) node->Forget(t);
    }
    Logger("streaming")
        ->warn("batch at {} failed (attempt {}, retry: {}), retrying in {} ms: {}",
               time.time_since_epoch().count(), attempt, RetryScopeName(scope), pause.count(),
               st.ToString());
    std::unique_lock lock(mu_);
    if (stop_cv_.wait_for(lock, pause, [&] { return stopping_; })) {
      return Status::Cancelled(fmt::format("stopped while retrying: {}", st.ToString()));
    }
    // Batches the timer queued meanwhile would each plan an empty slice: keep the newest.
    if (queue_.size() > 1) queue_.erase(queue_.begin(), queue_.end() - 1);
    if (pause != Millis::zero()) backoff = std::min(backoff * 2, options_.retry_backoff_max);
  }
}

Status StreamingContext::Attempt(TimePoint time) {
  const auto start = std::chrono::steady_clock::now();
  BatchInfo info;
  info.progress.batch_id = BatchId(next_batch_id_);
  info.progress.batch_time = BatchTime(time.time_since_epoch().count());
  info.progress.scheduling_delay_seconds =
      std::max(0.0, std::chrono::duration<double>(clock_->Now() - time).count());
  Status st;
  {
    std::lock_guard lock(graph_mu_);
    for (InputStreamBase* input : inputs_) {
      st = input->Plan(&info);
      if (!st.ok()) break;
    }
    for (size_t i = 0; st.ok() && i < outputs_.size(); ++i) st = outputs_[i](&info);
    for (size_t i = 0; st.ok() && i < nodes_.size(); ++i) {
      st = nodes_[i]->CommitBatch(info.progress.batch_time);
    }
    info.progress.processing_seconds = Seconds(std::chrono::steady_clock::now() - start);
    info.progress.status = st;
    if (st.ok()) ++next_batch_id_;
    for (StreamNodeHooks* node : nodes_) node->ClearOlderThan(info.progress.batch_time);
  }
  Logger("streaming")
      ->debug("batch {} at {}: {} records in {:.3f}s (delay {:.3f}s): {}", info.progress.batch_id,
              info.progress.batch_time, info.progress.records_in, info.progress.processing_seconds,
              info.progress.scheduling_delay_seconds, st.ToString());
  {
    std::lock_guard lock(mu_);
    if (st.ok()) {
      ++completed_;
    } else {
      ++failed_attempts_;
    }
    progress_.push_back(info.progress);
    while (progress_.size() > options_.progress_history) progress_.pop_front();
  }
  for (BatchListener* l : listeners_) l->OnBatchCompleted(info.progress);
  return st;
}

void StreamingContext::ReleaseOutputs() {
  std::lock_guard lock(graph_mu_);
  outputs_.clear();
  listeners_.clear();
}

Status StreamingContext::Stop(Millis timeout) {
  std::unique_lock lock(mu_);
  if (stopping_) return Status::OK();
  stopping_ = true;
  queue_.clear();
  queue_cv_.notify_all();
  stop_cv_.notify_all();
  if (!started_) return Status::OK();
  lock.unlock();
  timer_.request_stop();
  lock.lock();
  const bool finished = done_cv_.wait_for(lock, timeout, [&] { return runner_done_; });
  if (!finished) {
    return Status::DeadlineExceeded(
        fmt::format("the running batch did not finish within {} ms", timeout.count()));
  }
  return Status::OK();
}

Status StreamingContext::AwaitTermination() {
  std::unique_lock lock(mu_);
  if (!started_) return failure_;
  done_cv_.wait(lock, [&] { return runner_done_; });
  return failure_;
}

std::vector<BatchProgress> StreamingContext::RecentProgress() const {
  std::lock_guard lock(mu_);
  return {progress_.begin(), progress_.end()};
}

int64_t StreamingContext::batches_completed() const {
  std::lock_guard lock(mu_);
  return completed_;
}

int64_t StreamingContext::failed_attempts() const {
  std::lock_guard lock(mu_);
  return failed_attempts_;
}

size_t StreamingContext::queued_batches() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

}  // namespace runnel::streaming
