#include "engine/task_context.h"

namespace runnel::engine {
namespace {
thread_local TaskContext* current_task = nullptr;
}  // namespace

TaskContext* TaskContext::Current() { return current_task; }

TaskContext::Scope::Scope(TaskContext* tc) : previous_(current_task) { current_task = tc; }
TaskContext::Scope::~Scope() { current_task = previous_; }

void* TaskContext::NewAccumulatorPartial(std::shared_ptr<AccumulatorStateBase> acc) {
  const AccumulatorStateBase* key = acc.get();
  std::shared_ptr<void> value = acc->NewPartial();
  partials_.emplace_back(key, Partial{std::move(acc), std::move(value)});
  return partials_.back().second.value.get();
}

void TaskContext::CommitAccumulators() {
  for (auto& [key, partial] : partials_) partial.acc->MergePartial(partial.value.get());
  partials_.clear();
}

}  // namespace runnel::engine
