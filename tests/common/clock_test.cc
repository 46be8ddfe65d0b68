#include "common/clock.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

namespace runnel {
namespace {

TimePoint At(int64_t ms) { return TimePoint(Millis(ms)); }

// Blocks until `clock` has `n` waiters (the other thread is parked in WaitUntil).
void AwaitWaiters(const ManualClock& clock, int n) {
  while (clock.waiters() != n) std::this_thread::yield();
}

TEST(ManualClockTest, StartsWhereToldAndMovesOnlyForward) {
  ManualClock clock(At(1000));
  EXPECT_EQ(clock.Now(), At(1000));
  clock.Advance(Millis(250));
  EXPECT_EQ(clock.Now(), At(1250));
  clock.Set(At(900));  // backwards: ignored
  EXPECT_EQ(clock.Now(), At(1250));
  clock.Set(At(5000));
  EXPECT_EQ(clock.Now(), At(5000));
}

TEST(ManualClockTest, WaitUntilPastDeadlineReturnsAtOnce) {
  ManualClock clock(At(100));
  std::stop_source stop;
  EXPECT_TRUE(clock.WaitUntil(At(50), stop.get_token()));
}

TEST(ManualClockTest, WaiterWakesOnlyWhenDeadlineIsReached) {
  ManualClock clock(At(0));
  std::atomic<bool> woke{false};
  std::stop_source stop;
  std::thread waiter([&] {
    EXPECT_TRUE(clock.WaitUntil(At(1000), stop.get_token()));
    woke = true;
  });
  AwaitWaiters(clock, 1);
  clock.Advance(Millis(999));
  // Still parked: the deadline is 1 ms away.
  AwaitWaiters(clock, 1);
  EXPECT_FALSE(woke.load());
  clock.Advance(Millis(1));
  waiter.join();
  EXPECT_TRUE(woke.load());
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(ManualClockTest, StopRequestInterruptsTheWait) {
  ManualClock clock(At(0));
  std::stop_source stop;
  bool reached = true;
  std::thread waiter([&] { reached = clock.WaitUntil(At(1000), stop.get_token()); });
  AwaitWaiters(clock, 1);
  stop.request_stop();
  waiter.join();
  EXPECT_FALSE(reached);
  EXPECT_EQ(clock.Now(), At(0));
}

TEST(SystemClockTest, StopRequestInterruptsALongWait) {
  SystemClock& clock = SystemClock::Get();
  std::stop_source stop;
  const auto start = clock.Now();
  std::thread stopper([&] { stop.request_stop(); });
  // An hour away: only the stop request can end this wait.
  const bool reached = clock.WaitUntil(start + std::chrono::hours(1), stop.get_token());
  stopper.join();
  EXPECT_FALSE(reached);
}

TEST(SystemClockTest, ShortWaitReachesItsDeadline) {
  SystemClock& clock = SystemClock::Get();
  std::stop_source stop;
  const auto deadline = clock.Now() + Millis(5);
  EXPECT_TRUE(clock.WaitUntil(deadline, stop.get_token()));
  EXPECT_GE(clock.Now(), deadline);
}

}  // namespace
}  // namespace runnel
