// StreamingContext: cuts time into batches and runs each batch's jobs on the shared engine.
//
// Batch t covers one interval; at t the timer queues the batch, and one runner thread runs
// queued batches strictly one after another (a query never has two batches running). A slow
// batch delays the next, which shows as scheduling delay in its progress record. Each batch:
// every input stream plans its input (deterministically, e.g. fixed offset ranges), then every
// output operation runs (each builds the batch's RDDs from the DStream graph and acts on them),
// then listeners get the batch's progress record.
//
// Time comes from a Clock: with a ManualClock, tests drive batches without sleeping.
//
// Thread safety: Start, Stop, RunBatch, AwaitTermination and the readers may be called from any
// thread. Registration (inputs, outputs, listeners) happens before Start.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "engine/context.h"
#include "streaming/batch_record.h"

namespace runnel::streaming {

// What one batch did; kept for the last N batches (HTTP API, tests, logs).
struct BatchProgress {
  BatchId batch_id;
  BatchTime batch_time;
  int64_t records_in = 0;                    // records the inputs planned for the batch
  int64_t records_out = 0;                   // records the outputs emitted
  int64_t late = 0;                          // records dropped as later than the watermark
  int64_t invalid = 0;                       // records that could not be parsed
  double scheduling_delay_seconds = 0;       // batch time -> processing start
  double processing_seconds = 0;             // processing start -> end
  int64_t watermark_ms = INT64_MIN;          // after the batch; INT64_MIN: none yet
  std::map<std::string, std::string> input;  // per input: its plan, e.g. "clicks/0" -> "[10,20)"
  std::string lineage;                       // the batch's last RDD lineage (DebugString)
  Status status;                             // OK, or why the batch failed
  bool committed = true;                     // false: an empty batch that had nothing to commit
};

// The mutable record of the running batch: outputs fill in what they learn.
struct BatchInfo {
  BatchProgress progress;
  // Source positions after this batch, committed with it (e.g. "kafka:clicks/0" -> offset 20).
  SourcePositions positions;
};

class InputStreamBase {
 public:
  virtual ~InputStreamBase() = default;
  // Fixes the input of batch `info` (recorded in info->progress.input/records_in and
  // info->positions). Called once per batch, before any output runs.
  virtual Status Plan(BatchInfo* info) = 0;
  // Whether the source holds data no batch has planned yet (what --available-now drains).
  virtual bool HasPendingData() const { return false; }
  // The batch planned at `t` failed and will be planned again: forget its plan, so the next
  // Plan starts where `t`'s did (nothing skipped, nothing read twice).
  virtual void Abandon(BatchTime t) { (void)t; }
  // The batch planned at `t` failed with an error no retry helps: the stream stops. Its plan
  // stays (nothing is planned after it).
  virtual void Stopped(BatchTime t) { (void)t; }
  // The batch planned at `t` succeeded: its outputs committed the positions it planned.
  virtual void Confirm(BatchTime t) { (void)t; }
};

// What the context asks of a stream node around batches: its memo of generated RDDs, and the
// state changes a stateful node computed for a batch.
class StreamNodeHooks {
 public:
  virtual ~StreamNodeHooks() = default;
  // After the batch at `t` ran all its outputs successfully: a stateful node commits the
  // changes it computed for `t` (so a batch that fails and runs again applies them once). An
  // error fails the batch (retried when transient).
  virtual Status CommitBatch(BatchTime t) {
    (void)t;
    return Status::OK();
  }
  // After every batch, with its time: drop RDDs no window downstream needs any more.
  virtual void ClearOlderThan(BatchTime now) = 0;
  // A batch failed and will run again, after the inputs abandoned their plans: forget the RDDs
  // generated for it, so the retry computes them from the inputs' new plans.
  virtual void Forget(BatchTime t) = 0;
};

class BatchListener {
 public:
  virtual ~BatchListener() = default;
  // Called on the runner thread after every batch, successful or not.
  virtual void OnBatchCompleted(const BatchProgress& progress) = 0;
};

struct StreamingOptions {
  // Interval between batches; also the slide of input streams.
  Millis batch_interval{1000};
  // The clock of the batch timer; not owned. Default: the system clock.
  Clock* clock = nullptr;
  // Batch ids continue from here (a restarted query resumes after its last committed batch).
  BatchId first_batch_id{0};
  // Progress records kept in memory.
  size_t progress_history = 100;
  // A batch whose error has RetryScope::kBatch is abandoned and run again at the same time and
  // id, after a pause doubling from `retry_backoff` up to `retry_backoff_max`, until it
  // succeeds or the context stops; one with kReplan is planned again at once (the pause
  // applies from the second new plan on). Any other error stops the stream. Listeners see
  // every failed attempt. Off: the first failure stops the stream.
  bool retry_transient = true;
  Millis retry_backoff{100};
  Millis retry_backoff_max{5000};
};

class StreamingContext {
 public:
  StreamingContext(engine::Context* engine, StreamingOptions options);
  // Stops (see Stop) and joins the threads.
  ~StreamingContext();

  StreamingContext(const StreamingContext&) = delete;
  StreamingContext& operator=(const StreamingContext&) = delete;

  engine::Context& engine() { return *engine_; }
  Clock& clock() { return *clock_; }
  Millis batch_interval() const { return options_.batch_interval; }
  // The time of the first batch: window slides are counted from it.
  TimePoint zero_time() const { return zero_time_; }

  // While it is alive, a Registration keeps an input or a stream node registered; its
  // destructor unregisters it (waiting for a running batch to end), so an object that
  // registers itself holds its Registration as its last member and is never called after it
  // has gone. Not to be destroyed from inside a batch (an input's Plan, an output). The
  // context must outlive every Registration.
  class [[nodiscard]] Registration {
   public:
    Registration() = default;
    Registration(Registration&& other) noexcept;
    Registration& operator=(Registration&& other) noexcept;
    ~Registration();

   private:
    friend class StreamingContext;
    Registration(StreamingContext* ssc, InputStreamBase* input, StreamNodeHooks* node)
        : ssc_(ssc), input_(input), node_(node) {}
    void Reset();
    StreamingContext* ssc_ = nullptr;
    InputStreamBase* input_ = nullptr;
    StreamNodeHooks* node_ = nullptr;
  };
  // Inputs are planned, abandoned and confirmed with every batch.
  Registration AddInput(InputStreamBase* input);
  // Stream nodes: ClearOlderThan after every batch, Forget before a retry.
  Registration AddNode(StreamNodeHooks* node);
  void AddOutput(std::function<Status(BatchInfo*)> output) {
    outputs_.push_back(std::move(output));
  }
  void AddListener(BatchListener* listener) { listeners_.push_back(listener); }
  // Drops the outputs and listeners, and with them what they hold (the DStream graph and its
  // sources), so a context kept for its progress records holds nothing else. Only before
  // Start or after the runner ended (Stop, then AwaitTermination).
  void ReleaseOutputs();

  // Starts the timer: the first batch is at `first_batch` (default: the next multiple of the
  // batch interval after now), then one every interval.
  Status Start(std::optional<TimePoint> first_batch = std::nullopt);

  // Runs the batch at `time` on the calling thread, now. For tests and for `--available-now`;
  // not while started. The first call fixes the zero time; later times must be whole batch
  // intervals after it. Returns the batch's status (transient failures are retried until
  // Stop, as for started contexts).
  Status RunBatch(TimePoint time);

  // Stops the timer, drops batches not yet started, lets the running one finish (outputs
  // included), and returns. Idempotent. DeadlineExceeded when the running batch did not end
  // within `timeout` (it still finishes; the destructor waits for it).
  Status Stop(Millis timeout = Millis(20000));

  // Blocks until the runner stops: after Stop, or after a failed batch (its status).
  Status AwaitTermination();

  std::vector<BatchProgress> RecentProgress() const;
  int64_t batches_completed() const;
  // Batch attempts that failed (each retry of a transient failure counts).
  int64_t failed_attempts() const;
  // Batches queued but not started.
  size_t queued_batches() const;

 private:
  void TimerLoop(std::stop_token stop, TimePoint first);
  void RunnerLoop(std::stop_token stop);
  // Runs the batch at `time`, retrying transient failures (see StreamingOptions).
  Status RunOne(TimePoint time);
  Status Attempt(TimePoint time);

  engine::Context* const engine_;
  const StreamingOptions options_;
  Clock* const clock_;
  TimePoint zero_time_{};
  // Taken by (un)registration and, in a batch, around every use of inputs_ and nodes_.
  std::mutex graph_mu_;
  std::vector<InputStreamBase*> inputs_;  // guarded by graph_mu_
  std::vector<StreamNodeHooks*> nodes_;   // guarded by graph_mu_
  std::vector<std::function<Status(BatchInfo*)>> outputs_;
  std::vector<BatchListener*> listeners_;

  std::mutex run_mu_;  // held while a batch runs: batches never overlap

  mutable std::mutex mu_;
  std::condition_variable_any queue_cv_;
  std::deque<TimePoint> queue_;          // guarded by mu_
  bool started_ = false;                 // guarded by mu_
  bool stopping_ = false;                // guarded by mu_
  bool runner_done_ = false;             // guarded by mu_
  bool batch_running_ = false;           // guarded by mu_
  Status failure_;                       // guarded by mu_
  int64_t next_batch_id_;                // guarded by run_mu_
  int64_t completed_ = 0;                // guarded by mu_
  int64_t failed_attempts_ = 0;          // guarded by mu_
  std::deque<BatchProgress> progress_;   // guarded by mu_
  std::condition_variable_any stop_cv_;  // Stop was called (wakes retry pauses)
  std::condition_variable_any done_cv_;  // runner finished a batch or stopped

  std::jthread timer_;
  std::jthread runner_;
};

}  // namespace runnel::streaming
