// Accumulators and broadcast variables.
//
// Accumulator<T>: tasks add to it; the driver reads the total. Updates made by a task attempt
// are kept in the task and merged only when the attempt succeeds, so a retried task counts
// once. Defaults to a sum; MakeAccumulator takes any zero and associative merge (a min, a max,
// a set union). Add() may be called from any task or from the driver; value() from any thread.
//
// Broadcast<T>: a read-only value shared by every task of the process without copying.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "engine/task_context.h"

namespace runnel::engine {

template <typename T>
class AccumulatorState final : public AccumulatorStateBase {
 public:
  AccumulatorState(T zero, std::function<T(T, T)> merge)
      : zero_(zero), merge_(std::move(merge)), value_(std::move(zero)) {}

  std::shared_ptr<void> NewPartial() const override { return std::make_shared<T>(zero_); }

  void MergePartial(const void* partial) override { AddToValue(*static_cast<const T*>(partial)); }

  void AddToValue(const T& v) {
    std::lock_guard lock(mu_);
    value_ = merge_(std::move(value_), v);
  }
  T value() const {
    std::lock_guard lock(mu_);
    return value_;
  }
  void Reset() {
    std::lock_guard lock(mu_);
    value_ = zero_;
  }
  T Merge(T a, const T& b) const { return merge_(std::move(a), b); }

 private:
  const T zero_;
  const std::function<T(T, T)> merge_;
  mutable std::mutex mu_;
  T value_;  // guarded by mu_
};

template <typename T>
class Accumulator {
 public:
  Accumulator(T zero, std::function<T(T, T)> merge)
      : state_(std::make_shared<AccumulatorState<T>>(std::move(zero), std::move(merge))) {}

  // Inside a task: adds to the attempt's partial. On the driver: adds to the total at once.
  void Add(const T& v) const {
    if (TaskContext* tc = TaskContext::Current()) {
      T* partial = static_cast<T*>(tc->AccumulatorPartial(state_));
      *partial = state_->Merge(std::move(*partial), v);
    } else {
      state_->AddToValue(v);
    }
  }

  // The merged value of every successful task so far (and driver-side adds).
  T value() const { return state_->value(); }
  void Reset() const { state_->Reset(); }

 private:
  std::shared_ptr<AccumulatorState<T>> state_;
};

// A sum accumulator (numbers, or anything with operator+).
template <typename T>
Accumulator<T> MakeSumAccumulator(T zero = T{}) {
  return Accumulator<T>(std::move(zero), [](T a, T b) { return a + b; });
}

template <typename T>
class Broadcast {
 public:
  explicit Broadcast(T value) : value_(std::make_shared<const T>(std::move(value))) {}
  const T& value() const { return *value_; }

 private:
  std::shared_ptr<const T> value_;
};

}  // namespace runnel::engine
