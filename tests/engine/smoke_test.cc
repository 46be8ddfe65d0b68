#include <gtest/gtest.h>

#include "engine/rdd.h"

namespace runnel::engine {
namespace {

TEST(SmokeTest, WordCount) {
  auto ctx = *Context::Make({.workers = 2});
  std::vector<std::string> words = {"a", "b", "a", "c", "a", "b"};
  auto counts = ctx->Parallelize(words, 3)
                    .Map([](std::string w) { return std::pair<std::string, int>(w, 1); })
                    .ReduceByKey([](int a, int b) { return a + b; }, 2);
  auto out = *counts.Collect();
  std::map<std::string, int> m(out.begin(), out.end());
  EXPECT_EQ(m["a"], 3);
  EXPECT_EQ(m["b"], 2);
  EXPECT_EQ(m["c"], 1);
  std::cout << counts.DebugString();
}

}  // namespace
}  // namespace runnel::engine
