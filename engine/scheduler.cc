#include "engine/scheduler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "common/logging.h"
#include "engine/context.h"

namespace runnel::engine {
namespace {

constexpr int kMaxStageAttempts = 4;
// A task that failed with RetryScope::kTask runs again after this pause, doubled per attempt.
constexpr std::chrono::milliseconds kTaskRetryPause{20};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs one attempt, turning exceptions from user functions into a Status (RetryScope::kTask:
// Spark's rule, a task may fail for reasons its next attempt does not meet).
Status RunAttempt(const std::function<Status(int, TaskContext&)>& work, int partition,
                  TaskContext& tc) {
  TaskContext::Scope scope(&tc);
  try {
    return work(partition, tc);
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("task threw: {}", e.what())).WithRetry(RetryScope::kTask);
  } catch (...) {
    return Status::Internal("task threw a non-standard exception").WithRetry(RetryScope::kTask);
  }
}

void AddTaskMetrics(TaskMetrics* total, const TaskMetrics& m) {
  total->records_in += m.records_in;
  total->records_out += m.records_out;
  total->shuffle_read_bytes += m.shuffle_read_bytes;
  total->shuffle_write_bytes += m.shuffle_write_bytes;
  total->spill_bytes += m.spill_bytes;
}

}  // namespace

Status FetchFailure(TaskContext& tc, int shuffle_id, int map_partition) {
  return Status::Unavailable(fmt::format("shuffle {} map output {} is missing (stage {})",
                                         shuffle_id, map_partition, tc.stage_id()))
      .WithRetry(RetryScope::kStage);
}

std::vector<std::shared_ptr<ShuffleDependencyBase>> ParentShuffles(const RddNodeBase& rdd) {
  std::vector<std::shared_ptr<ShuffleDependencyBase>> result;
  std::set<int> seen_rdds;
  std::set<int> seen_shuffles;
  std::vector<const RddNodeBase*> stack = {&rdd};
  while (!stack.empty()) {
    const RddNodeBase* node = stack.back();
    stack.pop_back();
    if (!seen_rdds.insert(node->id()).second) continue;
    for (const Dependency& dep : node->dependencies()) {
      if (dep.kind == Dependency::Kind::kShuffle) {
        if (seen_shuffles.insert(dep.shuffle->shuffle_id()).second) result.push_back(dep.shuffle);
      } else {
        stack.push_back(dep.parent.get());
      }
    }
  }
  return result;
}

Result<JobMetrics> DagScheduler::RunJob(const RddNodeBase& rdd, const std::vector<int>& partitions,
                                        const ResultTask& task) {
  const auto start = std::chrono::steady_clock::now();
  JobMetrics job;
  job.job_id = context_->NewJobId();
  std::vector<int> pending = partitions;
  for (int stage_attempt = 0; !pending.empty(); ++stage_attempt) {
    if (stage_attempt == kMaxStageAttempts) {
      return Status::Unavailable(
          fmt::format("job {}: shuffle outputs kept going missing after {} stage attempts",
                      job.job_id, kMaxStageAttempts));
    }
    RETURN_NOT_OK(EnsureParents(rdd, &job));
    std::vector<int> fetch_failed;
    RETURN_NOT_OK(RunStage(rdd, /*shuffle_map=*/false, pending, task, &fetch_failed, &job));
    pending = std::move(fetch_failed);
  }
  job.seconds = SecondsSince(start);
  context_->RecordJob(job);
  return job;
}

Status DagScheduler::EnsureParents(const RddNodeBase& rdd, JobMetrics* job) {
  for (const auto& dep : ParentShuffles(rdd)) RETURN_NOT_OK(EnsureShuffle(*dep, job));
  return Status::OK();
}

Status DagScheduler::EnsureShuffle(ShuffleDependencyBase& dep, JobMetrics* job) {
  std::lock_guard lock(dep.compute_mutex());
  ShuffleStore& store = context_->shuffle_store();
  const int num_maps = dep.parent()->num_partitions();
  std::vector<int> missing = store.Missing(dep.shuffle_id(), num_maps);
  if (missing.empty()) {
    ++job->skipped_stages;
    return Status::OK();
  }
  for (int stage_attempt = 0; !missing.empty(); ++stage_attempt) {
    if (stage_attempt == kMaxStageAttempts) {
      return Status::Unavailable(
          fmt::format("shuffle {}: parent outputs kept going missing", dep.shuffle_id()));
    }
    RETURN_NOT_OK(EnsureParents(*dep.parent(), job));
    std::vector<int> fetch_failed;
    RETURN_NOT_OK(RunStage(
        *dep.parent(), /*shuffle_map=*/true, missing,
        [&dep](int p, TaskContext& tc) { return dep.RunMapTask(p, tc); }, &fetch_failed, job));
    missing = std::move(fetch_failed);
  }
  return Status::OK();
}

Status DagScheduler::RunStage(const RddNodeBase& rdd, bool shuffle_map,
                              const std::vector<int>& partitions,
                              const std::function<Status(int, TaskContext&)>& work,
                              std::vector<int>* fetch_failed, JobMetrics* job) {
  const auto start = std::chrono::steady_clock::now();
  StageMetrics stage;
  stage.stage_id = context_->NewStageId();
  stage.shuffle_map = shuffle_map;
  stage.rdd = fmt::format("Rdd[{}] {}", rdd.id(), rdd.name());

  std::mutex mu;
  Status first_error;  // guarded by mu
  std::vector<std::function<void()>> tasks;
  tasks.reserve(partitions.size());
  for (int partition : partitions) {
    tasks.push_back([&, partition] {
      for (int attempt = 0; attempt < max_task_attempts_; ++attempt) {
        if (attempt > 0) {
          std::this_thread::sleep_for(kTaskRetryPause * (1 << std::min(attempt - 1, 5)));
        }
        TaskContext tc(context_, stage.stage_id, partition, attempt);
        Status st = RunAttempt(work, partition, tc);
        std::lock_guard lock(mu);
        if (st.ok()) {
          tc.CommitAccumulators();
          ++stage.tasks;
          AddTaskMetrics(&stage.totals, tc.metrics());
          return;
        }
        if (st.retry() == RetryScope::kStage) {
          fetch_failed->push_back(partition);
          return;
        }
        ++stage.failed_attempts;
        Logger("engine")->warn("stage {} task {} attempt {} failed (retry: {}): {}", stage.stage_id,
                               partition, attempt, RetryScopeName(st.retry()), st.ToString());
        // Only a task-scoped failure is worth another attempt here; the others are for the
        // caller (a batch retry, a new plan) or for nobody.
        const bool last = st.retry() != RetryScope::kTask || attempt + 1 == max_task_attempts_;
        if (!last) continue;
        if (first_error.ok()) {
          first_error =
              st.retry() == RetryScope::kTask
                  ? st.WithContext(fmt::format("stage {} task {} failed {} times", stage.stage_id,
                                               partition, max_task_attempts_))
                        .WithRetry(RetryScope::kNone)
                  : st.WithContext(fmt::format("stage {} task {}", stage.stage_id, partition));
        }
        return;
      }
    });
  }
  context_->pool().RunAll(std::move(tasks));
  stage.seconds = SecondsSince(start);
  job->stages.push_back(stage);
  return first_error;
}

}  // namespace runnel::engine
