#include "common/clock.h"

namespace runnel {

SystemClock& SystemClock::Get() {
  static SystemClock clock;
  return clock;
}

TimePoint SystemClock::Now() const {
  return std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
}

bool SystemClock::WaitUntil(TimePoint deadline, std::stop_token stop) {
  std::unique_lock lock(mu_);
  // Wakes on a stop request or at the deadline; the predicate reads the real clock.
  cv_.wait_until(lock, stop, deadline, [&] { return Now() >= deadline; });
  return Now() >= deadline;
}

TimePoint ManualClock::Now() const {
  std::lock_guard lock(mu_);
  return now_;
}

bool ManualClock::WaitUntil(TimePoint deadline, std::stop_token stop) {
  std::unique_lock lock(mu_);
  ++waiters_;
  bool reached = cv_.wait(lock, stop, [&] { return now_ >= deadline; });
  --waiters_;
  return reached;
}

void ManualClock::Advance(Millis delta) {
  {
    std::lock_guard lock(mu_);
    if (delta > Millis::zero()) now_ += delta;
  }
  cv_.notify_all();
}

void ManualClock::Set(TimePoint t) {
  {
    std::lock_guard lock(mu_);
    if (t > now_) now_ = t;
  }
  cv_.notify_all();
}

int ManualClock::waiters() const {
  std::lock_guard lock(mu_);
  return waiters_;
}

}  // namespace runnel
