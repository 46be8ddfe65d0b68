// Context: the engine one process shares. It owns the worker pool (a fixed number of slots),
// the block manager (persisted partitions within a memory budget), the shuffle store, the DAG
// scheduler and the id counters; RDDs are created from it (rdd.h adds the factories).
//
// Thread safety: every method may be called from any thread; jobs from many threads share
// the pool fairly. A Context must outlive every RDD made from it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "engine/accumulator.h"
#include "engine/block_manager.h"
#include "engine/scheduler.h"
#include "engine/shuffle.h"
#include "engine/worker_pool.h"

namespace runnel::engine {

template <typename T>
class Rdd;

// A byte range of a text file: it owns the lines that start inside [begin, end).
struct Split {
  std::string path;
  int64_t begin = 0;
  int64_t end = 0;
};

struct ContextOptions {
  // Worker threads (task slots) shared by all jobs. Config: engine.workers.
  int workers = 2;
  // The engine's memory: half for running tasks' tables (an equal share per worker slot: a
  // task's combine and merge tables spill past it), a quarter for shuffle map outputs held in
  // memory (later ones go to spill files), a quarter for persisted partitions. The service
  // passes engine.memory_budget less the state store's share (README, "Memory").
  int64_t memory_budget_bytes = int64_t{1} << 30;
  // Where spill files, spilled blocks and RDD checkpoints go: spill/ and blocks/ under it are
  // emptied at start. Empty: a fresh directory under $TMPDIR (or /tmp), removed when the
  // Context is destroyed.
  std::string local_dir;
  // Attempts per task before its job fails.
  int max_task_attempts = 4;
  // Partitions of Parallelize and of shuffles when not given. 0: 2 x workers.
  int default_parallelism = 0;
};

class Context {
 public:
  static Result<std::unique_ptr<Context>> Make(ContextOptions options);
  ~Context();

  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const ContextOptions& options() const { return options_; }
  int default_parallelism() const { return options_.default_parallelism; }

  // RDD factories (defined in rdd.h).
  // The elements of `data`, split into `num_slices` contiguous partitions (0: default).
  template <typename T>
  Rdd<T> Parallelize(std::vector<T> data, int num_slices = 0);
  // The same over data the caller shares (no copy); it must not change while RDDs use it.
  template <typename T>
  Rdd<T> Parallelize(std::shared_ptr<const std::vector<T>> data, int num_slices = 0);
  // Lines of text files (without the newline). A file smaller than `split_bytes` is one
  // partition; a larger one is cut into byte ranges, each line read by the range it starts in.
  Result<Rdd<std::string>> TextFile(const std::vector<std::string>& paths,
                                    int64_t split_bytes = int64_t{32} << 20);
  // Lines of exactly these ranges, one partition each (a file source's batch).
  Rdd<std::string> TextRanges(std::vector<Split> ranges, std::string name = "textRanges");

  template <typename T>
  Accumulator<T> MakeAccumulator(T zero, std::function<T(T, T)> merge) {
    return Accumulator<T>(std::move(zero), std::move(merge));
  }
  template <typename T>
  Broadcast<T> MakeBroadcast(T value) {
    return Broadcast<T>(std::move(value));
  }

  WorkerPool& pool() { return *pool_; }
  BlockManager& block_manager() { return *block_manager_; }
  ShuffleStore& shuffle_store() { return shuffle_store_; }
  DagScheduler& scheduler() { return scheduler_; }
  const std::string& local_dir() const { return options_.local_dir; }
  // Anonymous spill files go here (engine/spill.h).
  std::string spill_dir() const { return options_.local_dir + "/spill"; }
  // What one task's tables may hold before they spill (ContextOptions::memory_budget_bytes).
  int64_t task_memory_bytes() const {
    return std::max<int64_t>(options_.memory_budget_bytes / (2 * options_.workers), 64 << 10);
  }

  int NewRddId() { return next_rdd_id_.fetch_add(1); }
  int NewShuffleId() { return next_shuffle_id_.fetch_add(1); }
  int NewStageId() { return next_stage_id_.fetch_add(1); }
  int NewJobId() { return next_job_id_.fetch_add(1); }

  // The metrics of the most recent jobs (the last 100), newest last.
  void RecordJob(const JobMetrics& job);
  JobMetrics LastJob() const;
  std::vector<JobMetrics> RecentJobs() const;

  // Task attempts of every recorded job since the context started (for metrics).
  struct TaskTotals {
    int64_t succeeded = 0;
    int64_t failed = 0;  // attempts that failed (and were retried)
  };
  TaskTotals task_totals() const;

 private:
  Context(ContextOptions options, bool owns_local_dir);

  ContextOptions options_;
  const bool owns_local_dir_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<BlockManager> block_manager_;
  ShuffleStore shuffle_store_;
  DagScheduler scheduler_;
  std::atomic<int> next_rdd_id_{0};
  std::atomic<int> next_shuffle_id_{0};
  std::atomic<int> next_stage_id_{0};
  std::atomic<int> next_job_id_{0};
  mutable std::mutex jobs_mu_;
  std::deque<JobMetrics> recent_jobs_;  // guarded by jobs_mu_
  TaskTotals task_totals_;              // guarded by jobs_mu_
};

}  // namespace runnel::engine
