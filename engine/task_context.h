// TaskContext: what a running task knows about itself (stage, partition, attempt), the counters
// it reports to the scheduler, and its private accumulator updates, which reach the
// accumulators only if the attempt succeeds.
//
// Thread safety: a TaskContext belongs to the one thread running its task.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace runnel::engine {

class Context;

// The type-erased side of an accumulator (see accumulator.h).
class AccumulatorStateBase {
 public:
  virtual ~AccumulatorStateBase() = default;
  // A task-local partial starting at the accumulator's zero.
  virtual std::shared_ptr<void> NewPartial() const = 0;
  // Merges a partial made by NewPartial into the accumulator's value. Thread-safe.
  virtual void MergePartial(const void* partial) = 0;
};

struct TaskMetrics {
  int64_t records_in = 0;           // records read from sources, cached blocks or shuffles
  int64_t records_out = 0;          // records the stage's last RDD produced
  int64_t shuffle_read_bytes = 0;   // bytes fetched from shuffle outputs
  int64_t shuffle_write_bytes = 0;  // bytes written as shuffle output
  int64_t spill_bytes = 0;          // bytes written to spill files (engine/spill.h)
};

class TaskContext {
 public:
  TaskContext(Context* context, int stage_id, int partition, int attempt)
      : context_(context), stage_id_(stage_id), partition_(partition), attempt_(attempt) {}

  // The task running on this thread, or nullptr outside tasks (on the driver).
  static TaskContext* Current();

  Context& context() const { return *context_; }
  int stage_id() const { return stage_id_; }
  int partition() const { return partition_; }
  // 0 for the first attempt, 1 for the first retry, ...
  int attempt() const { return attempt_; }

  TaskMetrics& metrics() { return metrics_; }

  // The task-local partial of an accumulator, made on first use. Called per record by
  // Accumulator::Add: a linear scan over the task's few accumulators, and no shared_ptr copy
  // (converting to shared_ptr<AccumulatorStateBase> cost two atomic operations per call).
  template <typename State>
  void* AccumulatorPartial(const std::shared_ptr<State>& acc) {
    for (auto& [state, partial] : partials_) {
      if (state == acc.get()) return partial.value.get();
    }
    return NewAccumulatorPartial(acc);
  }
  // Applies every partial to its accumulator. Called once, when the attempt succeeded.
  void CommitAccumulators();

  // Makes this the Current() task of the calling thread for the scope's lifetime.
  class Scope {
   public:
    explicit Scope(TaskContext* tc);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    TaskContext* previous_;
  };

 private:
  Context* context_;
  int stage_id_;
  int partition_;
  int attempt_;
  TaskMetrics metrics_;
  struct Partial {
    std::shared_ptr<AccumulatorStateBase> acc;
    std::shared_ptr<void> value;
  };
  void* NewAccumulatorPartial(std::shared_ptr<AccumulatorStateBase> acc);
  std::vector<std::pair<const AccumulatorStateBase*, Partial>> partials_;
};

}  // namespace runnel::engine
