// WorkerPool: a fixed number of worker threads (slots) shared by every job of a Context.
//
// Fairness: each RunAll call is one task group (a stage of some job). Workers take tasks from
// the groups round-robin, so a stage with 1,000 tasks does not starve a stage submitted after
// it by another job: both progress, a task at a time each.
//
// Thread safety: RunAll may be called from any number of threads at once. It must not be
// called from inside a task (a task waiting for the pool it runs on can deadlock it).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace runnel::engine {

class WorkerPool {
 public:
  // Starts `slots` (>= 1) worker threads.
  explicit WorkerPool(int slots);
  // Finishes the tasks already queued, then joins the workers.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int slots() const { return static_cast<int>(threads_.size()); }

  // Runs every task on the workers and blocks until all have returned. Tasks must not throw.
  void RunAll(std::vector<std::function<void()>> tasks);

 private:
  struct Group {
    std::deque<std::function<void()>> queue;  // guarded by WorkerPool::mu_
    size_t remaining = 0;                     // guarded by WorkerPool::mu_
    std::condition_variable done;
  };

  void WorkerLoop();

  std::mutex mu_;
  std::condition_variable work_available_;
  std::list<std::shared_ptr<Group>> groups_;  // groups with queued tasks; guarded by mu_
  bool stopping_ = false;                     // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace runnel::engine
