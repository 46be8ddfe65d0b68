// Small fixtures shared by the engine tests.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/rdd.h"

namespace runnel::engine {

inline std::unique_ptr<Context> MakeContext(int workers = 2, int64_t budget = int64_t{1} << 30) {
  auto ctx = Context::Make({.workers = workers, .memory_budget_bytes = budget});
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return std::move(ctx).value();
}

// The value of an action, failing the test when it returned an error.
template <typename T>
T Must(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

template <typename T>
std::vector<T> Sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

template <typename K, typename V>
std::map<K, V> AsMap(const std::vector<std::pair<K, V>>& v) {
  return std::map<K, V>(v.begin(), v.end());
}

inline std::vector<int> Range(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

}  // namespace runnel::engine
