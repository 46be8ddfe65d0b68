// Clock: the one source of "now" for timers and timestamps, so tests can drive time by hand.
// The batch timer waits on its Clock; with a ManualClock, no unit test ever sleeps.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>

namespace runnel {

// Wall-clock time with millisecond precision (UTC, since the Unix epoch).
using TimePoint = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;
using Millis = std::chrono::milliseconds;

// Thread safety: implementations are safe to call from any thread.
class Clock {
 public:
  virtual ~Clock() = default;

  virtual TimePoint Now() const = 0;

  // Blocks until Now() >= deadline (returns true) or a stop is requested on `stop`
  // (returns false, promptly).
  virtual bool WaitUntil(TimePoint deadline, std::stop_token stop) = 0;
};

// The system's real-time clock. A process-wide instance: SystemClock::Get().
class SystemClock final : public Clock {
 public:
  static SystemClock& Get();

  TimePoint Now() const override;
  bool WaitUntil(TimePoint deadline, std::stop_token stop) override;

 private:
  std::mutex mu_;
  std::condition_variable_any cv_;  // only woken by stop requests
};

// A clock that moves only when told to. Waiters wake when Advance/Set reach their deadline.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint{}) : now_(start) {}

  TimePoint Now() const override;
  bool WaitUntil(TimePoint deadline, std::stop_token stop) override;

  // Moves time forward by `delta` (must be >= 0) and wakes the waiters whose deadline passed.
  void Advance(Millis delta);
  // Sets the time; it never moves backwards (an earlier `t` is ignored).
  void Set(TimePoint t);
  // Number of threads blocked in WaitUntil now: lets a test wait until the timer is parked.
  int waiters() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  TimePoint now_;    // guarded by mu_
  int waiters_ = 0;  // guarded by mu_
};

}  // namespace runnel
