#include "engine/task_context.h"

namespace runnel::engine {
namespace {
thread_local TaskContext* current_task = nullptr;
}  // namespace

TaskContext* TaskContext::Current() { return current_task; }

TaskContext::Scope::Scope(TaskContext* tc) : previous_(current_task) { current_task = tc; }
TaskContext::Scope::~Scope() { current_task = previous_; }

void* TaskContext::AccumulatorPartial(const std::shared_ptr<AccumulatorStateBase>& acc) {
  auto [it, inserted] = partials_.try_emplace(acc.get());
  if (inserted) it->second = Partial{acc, acc->NewPartial()};
  return it->second.value.get();
}

void TaskContext::CommitAccumulators() {
  for (auto& [key, partial] : partials_) partial.acc->MergePartial(partial.value.get());
  partials_.clear();
}

}  // namespace runnel::engine
