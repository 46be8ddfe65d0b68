// Persistence, eviction under a budget, spill to disk, loss and recomputation, checkpoint.
#include <atomic>
#include <filesystem>

#include "tests/engine/engine_test_util.h"

namespace runnel::engine {
namespace {

// An RDD of `partitions` partitions of 1000 strings each, counting how often records are
// computed. Each partition holds roughly 1000 * 64 bytes in memory.
struct CountedRdd {
  std::shared_ptr<std::atomic<int>> computed = std::make_shared<std::atomic<int>>(0);
  Rdd<std::string> rdd;
};

CountedRdd MakeCounted(Context& ctx, int partitions) {
  CountedRdd c{.rdd = ctx.Parallelize(Range(1000 * partitions), partitions).Map([](int x) {
    return std::string(40, 'a' + x % 26);
  })};
  c.rdd = c.rdd.Map([counter = c.computed](std::string s) {
    ++*counter;
    return s;
  });
  return c;
}

TEST(PersistTest, MemoryOnlyServesLaterJobsFromCache) {
  auto ctx = MakeContext();
  auto c = MakeCounted(*ctx, 4);
  c.rdd.Persist(StorageLevel::kMemoryOnly);
  EXPECT_EQ(Must(c.rdd.Count()), 4000);
  EXPECT_EQ(c.computed->load(), 4000);
  EXPECT_EQ(Must(c.rdd.Count()), 4000);
  EXPECT_EQ(c.computed->load(), 4000) << "second job must read the cache";
  EXPECT_EQ(ctx->block_manager().stats().memory_blocks, 4);
  EXPECT_NE(c.rdd.DebugString().find("[MemoryOnly]"), std::string::npos);

  c.rdd.Unpersist();
  EXPECT_EQ(ctx->block_manager().stats().memory_blocks, 0);
  EXPECT_EQ(Must(c.rdd.Count()), 4000);
  EXPECT_EQ(c.computed->load(), 8000);
}

TEST(PersistTest, LostBlockIsRecomputedFromLineage) {
  auto ctx = MakeContext();
  auto c = MakeCounted(*ctx, 4);
  c.rdd.Cache();
  const auto expected = Must(c.rdd.Collect());
  ctx->block_manager().Remove({c.rdd.id(), 2});
  EXPECT_EQ(Must(c.rdd.Collect()), expected);
  EXPECT_EQ(c.computed->load(), 5000) << "only the lost partition is recomputed";
}

TEST(PersistTest, SmallBudgetEvictsLeastRecentlyUsed) {
  // Room for about two of the four partitions.
  auto ctx = MakeContext(2, 4 * 150 * 1000);  // persisted blocks get a quarter
  auto c = MakeCounted(*ctx, 4);
  c.rdd.Persist(StorageLevel::kMemoryOnly);
  ASSERT_TRUE(c.rdd.Count().ok());
  const auto stats = ctx->block_manager().stats();
  EXPECT_LE(stats.memory_used_bytes, 150 * 1000);
  EXPECT_GE(stats.evictions, 1);
  EXPECT_LT(stats.memory_blocks, 4);
  // Results stay right: evicted partitions are recomputed.
  EXPECT_EQ(Must(c.rdd.Count()), 4000);
}

TEST(PersistTest, LowerPriorityIsEvictedFirst) {
  auto ctx = MakeContext(1, 4 * 150 * 1000);  // persisted blocks get a quarter
  auto keep = MakeCounted(*ctx, 1);
  auto drop = MakeCounted(*ctx, 1);
  keep.rdd.Persist(StorageLevel::kMemoryOnly, /*priority=*/10);
  drop.rdd.Persist(StorageLevel::kMemoryOnly, /*priority=*/0);
  ASSERT_TRUE(keep.rdd.Count().ok());
  ASSERT_TRUE(drop.rdd.Count().ok());
  // A third block needs room: the low-priority one goes although it is the most recent.
  auto third = MakeCounted(*ctx, 1);
  third.rdd.Persist(StorageLevel::kMemoryOnly, 5);
  ASSERT_TRUE(third.rdd.Count().ok());
  EXPECT_TRUE(ctx->block_manager().Contains({keep.rdd.id(), 0}));
  EXPECT_FALSE(ctx->block_manager().Contains({drop.rdd.id(), 0}));
}

TEST(PersistTest, MemoryAndDiskSpillsInsteadOfDropping) {
  auto ctx = MakeContext(2, 4 * 150 * 1000);  // persisted blocks get a quarter
  auto c = MakeCounted(*ctx, 4);
  c.rdd.Persist(StorageLevel::kMemoryAndDisk);
  const auto expected = Must(c.rdd.Collect());
  const auto stats = ctx->block_manager().stats();
  EXPECT_GE(stats.spills, 1);
  EXPECT_GE(stats.disk_blocks, 1);
  EXPECT_EQ(Must(c.rdd.Collect()), expected);
  EXPECT_EQ(c.computed->load(), 4000) << "spilled blocks are read back, not recomputed";
}

TEST(PersistTest, DiskOnlyKeepsNothingInMemory) {
  auto ctx = MakeContext();
  auto c = MakeCounted(*ctx, 3);
  c.rdd.Persist(StorageLevel::kDiskOnly);
  const auto expected = Must(c.rdd.Collect());
  EXPECT_EQ(ctx->block_manager().stats().memory_blocks, 0);
  EXPECT_EQ(ctx->block_manager().stats().disk_blocks, 3);
  EXPECT_EQ(Must(c.rdd.Collect()), expected);
  EXPECT_EQ(c.computed->load(), 3000);
}

TEST(PersistTest, DeletedSpillFileIsRecomputed) {
  auto ctx = MakeContext();
  auto c = MakeCounted(*ctx, 2);
  c.rdd.Persist(StorageLevel::kDiskOnly);
  const auto expected = Must(c.rdd.Collect());
  for (const auto& entry : std::filesystem::directory_iterator(ctx->local_dir() + "/blocks")) {
    std::filesystem::remove(entry.path());
  }
  EXPECT_EQ(Must(c.rdd.Collect()), expected);
  EXPECT_EQ(c.computed->load(), 4000);
}

TEST(CheckpointTest, CheckpointCutsLineageAndServesTheSameData) {
  auto ctx = MakeContext();
  auto c = MakeCounted(*ctx, 3);
  auto pairs = c.rdd.Map([](std::string s) { return std::pair<std::string, int>(s, 1); })
                   .ReduceByKey([](int a, int b) { return a + b; }, 2);
  const auto expected = AsMap(Must(pairs.Collect()));
  EXPECT_NE(pairs.DebugString().find("parallelize"), std::string::npos);

  ASSERT_TRUE(pairs.Checkpoint().ok());
  const int computed_before = c.computed->load();
  EXPECT_EQ(AsMap(Must(pairs.Collect())), expected);
  EXPECT_EQ(c.computed->load(), computed_before) << "reads the checkpoint, not the parents";
  const std::string lineage = pairs.DebugString();
  EXPECT_EQ(lineage.find("parallelize"), std::string::npos) << lineage;
  EXPECT_NE(lineage.find("Checkpointed"), std::string::npos) << lineage;
  EXPECT_EQ(ctx->LastJob().stages.size(), 1u);
}

TEST(SerdeTest, RoundTripsNestedStandardTypes) {
  using Value = std::pair<std::string, std::vector<std::map<int64_t, std::optional<double>>>>;
  std::vector<Value> values = {
      {"", {}},
      {std::string(300, 'z'), {{{1, 2.5}, {-7, std::nullopt}}, {}}},
  };
  std::vector<Value> back;
  ASSERT_TRUE(DeserializeAll(SerializeAll(values), &back));
  EXPECT_EQ(back, values);
  const std::string bytes = SerializeAll(values);
  EXPECT_FALSE(DeserializeAll(std::string_view(bytes).substr(0, bytes.size() - 1), &back));
  EXPECT_FALSE(DeserializeAll(bytes + "x", &back));
}

}  // namespace
}  // namespace runnel::engine

// A user type registers its Serde by specialization.
struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point&) const = default;
};
template <>
struct runnel::engine::Serde<Point> {
  static void Write(const Point& p, std::string* out) {
    Serde<int>::Write(p.x, out);
    Serde<int>::Write(p.y, out);
  }
  static bool Read(std::string_view* in, Point* p) {
    return Serde<int>::Read(in, &p->x) && Serde<int>::Read(in, &p->y);
  }
  static size_t MemorySize(const Point&) { return sizeof(Point); }
};

namespace runnel::engine {
namespace {

TEST(SerdeTest, UserTypePersistsToDisk) {
  auto ctx = MakeContext();
  auto points = ctx->Parallelize(std::vector<Point>{{1, 2}, {3, 4}, {5, 6}}, 2);
  points.Persist(StorageLevel::kDiskOnly);
  auto first = Must(points.Collect());
  EXPECT_EQ(Must(points.Collect()), first);
  EXPECT_EQ(ctx->block_manager().stats().disk_blocks, 2);
}

}  // namespace
}  // namespace runnel::engine
