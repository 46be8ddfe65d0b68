// DagScheduler: runs a job (an action on an RDD) as stages of tasks on the worker pool.
//
// The job's final RDD and everything reachable from it through narrow dependencies form the
// result stage. Every shuffle dependency met on the way is a parent stage (a shuffle map
// stage) that must have all its map outputs before the child stage runs; map outputs that
// already exist are reused (the stage is "skipped"), missing ones are computed, recursively.
// Tasks run one per partition. A failed task (an error or an exception) is retried up to
// `max_task_attempts` times; a task that finds a map output missing (a fetch failure) makes
// the scheduler recompute that output from lineage and rerun the task.
//
// Thread safety: RunJob may be called from several threads at once (jobs share the pool
// fairly); it blocks the calling thread, which must not be a pool worker.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "engine/rdd_base.h"
#include "engine/task_context.h"

namespace runnel::engine {

struct StageMetrics {
  int stage_id = 0;
  bool shuffle_map = false;  // a shuffle map stage, else the job's result stage
  std::string rdd;           // "Rdd[7] reduceByKey"
  int tasks = 0;             // tasks that succeeded
  int failed_attempts = 0;   // attempts that failed and were retried
  double seconds = 0;        // wall time of the stage
  TaskMetrics totals;        // summed over the stage's successful tasks
};

struct JobMetrics {
  int job_id = 0;
  double seconds = 0;
  std::vector<StageMetrics> stages;  // in the order they ran
  int skipped_stages = 0;            // shuffle stages whose outputs already existed
};

// The per-partition work of a job's result stage: computes partition `partition` and hands
// the records to the action. Must be safe to call concurrently for different partitions.
using ResultTask = std::function<Status(int partition, TaskContext& tc)>;

class DagScheduler {
 public:
  DagScheduler(Context* context, int max_task_attempts)
      : context_(context), max_task_attempts_(max_task_attempts) {}

  // Runs `task` for each of `partitions` of `rdd`, after the parent stages it needs.
  Result<JobMetrics> RunJob(const RddNodeBase& rdd, const std::vector<int>& partitions,
                            const ResultTask& task);

 private:
  // Computes the missing map outputs of `dep` (and, first, of the shuffles it depends on).
  Status EnsureShuffle(ShuffleDependencyBase& dep, JobMetrics* job);
  Status EnsureParents(const RddNodeBase& rdd, JobMetrics* job);

  // Runs `work` once per partition; a task that fails with RetryScope::kTask runs again after
  // a pause, up to max_task_attempts. `fetch_failed` gets the partitions whose attempt found a
  // shuffle output missing (kStage). Other failures end the stage with the first error, its
  // scope kept for the caller (a task that failed every attempt: kNone).
  Status RunStage(const RddNodeBase& rdd, bool shuffle_map, const std::vector<int>& partitions,
                  const std::function<Status(int, TaskContext&)>& work,
                  std::vector<int>* fetch_failed, JobMetrics* job);

  Context* const context_;
  const int max_task_attempts_;
};

// The shuffle dependencies reachable from `rdd` through narrow dependencies only: the parent
// stages of the stage `rdd` belongs to.
std::vector<std::shared_ptr<ShuffleDependencyBase>> ParentShuffles(const RddNodeBase& rdd);

// Marks, inside a task, that a shuffle map output was missing (RetryScope::kStage): the
// scheduler recomputes it from its lineage and runs the task again.
Status FetchFailure(TaskContext& tc, int shuffle_id, int map_partition);

}  // namespace runnel::engine
