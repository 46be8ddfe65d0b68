#include "engine/context.h"

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "common/file_util.h"

namespace runnel::engine {

Result<std::unique_ptr<Context>> Context::Make(ContextOptions options) {
  if (options.workers < 1) return Status::InvalidArgument("engine.workers must be >= 1");
  if (options.memory_budget_bytes < 0) {
    return Status::InvalidArgument("engine.memory_budget must be >= 0");
  }
  if (options.max_task_attempts < 1) {
    return Status::InvalidArgument("max_task_attempts must be >= 1");
  }
  if (options.default_parallelism <= 0) options.default_parallelism = 2 * options.workers;
  bool owns = false;
  if (options.local_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): read once
    std::string tmpl = fmt::format("{}/runnel-engine-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno("mkdtemp " + tmpl, errno);
    options.local_dir = tmpl;
    owns = true;
  }
  // The directories of an earlier process with this local_dir (which ended, or it would
  // hold the state directory's lock): nothing in them is of use now.
  RETURN_NOT_OK(ResetSpillDir(options.local_dir + "/blocks"));
  RETURN_NOT_OK(ResetSpillDir(options.local_dir + "/spill"));
  return std::unique_ptr<Context>(new Context(std::move(options), owns));
}

Context::Context(ContextOptions options, bool owns_local_dir)
    : options_(std::move(options)),
      owns_local_dir_(owns_local_dir),
      pool_(std::make_unique<WorkerPool>(options_.workers)),
      block_manager_(std::make_unique<BlockManager>(options_.memory_budget_bytes / 4,
                                                    options_.local_dir + "/blocks")),
      shuffle_store_(options_.memory_budget_bytes / 4),
      scheduler_(this, options_.max_task_attempts) {}

Context::~Context() {
  pool_.reset();  // joins the workers before anything they use goes away
  if (owns_local_dir_) {
    std::error_code ec;  // best effort: a temp dir left behind is harmless
    std::filesystem::remove_all(options_.local_dir, ec);
  }
}

void Context::RecordJob(const JobMetrics& job) {
  std::lock_guard lock(jobs_mu_);
  for (const StageMetrics& stage : job.stages) {
    task_totals_.succeeded += stage.tasks;
    task_totals_.failed += stage.failed_attempts;
  }
  recent_jobs_.push_back(job);
  if (recent_jobs_.size() > 100) recent_jobs_.pop_front();
}

Context::TaskTotals Context::task_totals() const {
  std::lock_guard lock(jobs_mu_);
  return task_totals_;
}

JobMetrics Context::LastJob() const {
  std::lock_guard lock(jobs_mu_);
  return recent_jobs_.empty() ? JobMetrics{} : recent_jobs_.back();
}

std::vector<JobMetrics> Context::RecentJobs() const {
  std::lock_guard lock(jobs_mu_);
  return {recent_jobs_.begin(), recent_jobs_.end()};
}

}  // namespace runnel::engine
