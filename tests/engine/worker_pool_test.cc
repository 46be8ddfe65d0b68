#include "engine/worker_pool.h"

#include <atomic>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace runnel::engine {
namespace {

TEST(WorkerPoolTest, RunsEveryTaskAndWaitsForThem) {
  WorkerPool pool(3);
  std::atomic<int> done{0};
  std::vector<std::function<void()>> tasks;
  for (int i = 0; i < 100; ++i) tasks.push_back([&] { ++done; });
  pool.RunAll(std::move(tasks));
  EXPECT_EQ(done.load(), 100);
}

TEST(WorkerPoolTest, NeverRunsMoreTasksThanSlots) {
  WorkerPool pool(2);
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  std::vector<std::function<void()>> tasks;
  for (int i = 0; i < 20; ++i) {
    tasks.push_back([&] {
      const int now = ++running;
      int p = peak.load();
      while (now > p && !peak.compare_exchange_weak(p, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      --running;
    });
  }
  pool.RunAll(std::move(tasks));
  EXPECT_LE(peak.load(), 2);
}

TEST(WorkerPoolTest, GroupsAreServedRoundRobin) {
  // One slot, a long group queued first: a second group's tasks interleave with it instead
  // of waiting for all of it.
  WorkerPool pool(1);
  std::mutex mu;
  std::vector<char> order;
  std::atomic<bool> gate_open{false};
  std::atomic<int> started{0};
  std::vector<std::function<void()>> long_group;
  for (int i = 0; i < 10; ++i) {
    long_group.push_back([&] {
      ++started;
      while (!gate_open.load()) std::this_thread::yield();
      std::lock_guard lock(mu);
      order.push_back('L');
    });
  }
  std::thread first([&] { pool.RunAll(std::move(long_group)); });
  while (started.load() == 0) std::this_thread::yield();  // L task 1 holds the slot
  std::thread second([&] {
    std::vector<std::function<void()>> short_group;
    for (int i = 0; i < 3; ++i) {
      short_group.push_back([&] {
        std::lock_guard lock(mu);
        order.push_back('S');
      });
    }
    pool.RunAll(std::move(short_group));
  });
  // Give the second group time to be queued behind the running task, then let it go.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  gate_open = true;
  first.join();
  second.join();
  ASSERT_EQ(order.size(), 13u);
  // All S tasks finish well before the end of the L group.
  size_t last_s = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] == 'S') last_s = i;
  }
  EXPECT_LT(last_s, 8u) << std::string(order.begin(), order.end());
}

}  // namespace
}  // namespace runnel::engine
