#include "engine/worker_pool.h"

namespace runnel::engine {

WorkerPool::WorkerPool(int slots) {
  const int n = slots < 1 ? 1 : slots;
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_available_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::RunAll(std::vector<std::function<void()>> tasks) {
  if (tasks.empty()) return;
  auto group = std::make_shared<Group>();
  group->remaining = tasks.size();
  std::unique_lock lock(mu_);
  for (auto& t : tasks) group->queue.push_back(std::move(t));
  groups_.push_back(group);
  work_available_.notify_all();
  group->done.wait(lock, [&] { return group->remaining == 0; });
}

void WorkerPool::WorkerLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    work_available_.wait(lock, [&] { return stopping_ || !groups_.empty(); });
    if (groups_.empty()) return;  // stopping and nothing left
    // Round-robin: take one task from the front group, then move that group to the back.
    std::shared_ptr<Group> group = groups_.front();
    groups_.pop_front();
    std::function<void()> task = std::move(group->queue.front());
    group->queue.pop_front();
    if (!group->queue.empty()) groups_.push_back(group);
    lock.unlock();
    task();
    task = nullptr;  // destroy captures outside the lock
    lock.lock();
    if (--group->remaining == 0) group->done.notify_all();
  }
}

}  // namespace runnel::engine
