// Spilling: a shuffle whose tables pass the task's memory share writes sorted runs and map
// outputs to spill files and still gives the exact result; key-ordered output; no file left.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "engine/shuffle.h"
#include "engine/spill.h"
#include "tests/engine/engine_test_util.h"

namespace runnel::engine {
namespace {

int64_t SpillBytes(const JobMetrics& job) {
  int64_t total = 0;
  for (const StageMetrics& s : job.stages) total += s.totals.spill_bytes;
  return total;
}

size_t FilesIn(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

// 200,000 keys, each seen three times, in 4 map partitions.
std::vector<std::pair<std::string, int64_t>> ManyKeys() {
  std::vector<std::pair<std::string, int64_t>> records;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 200'000; ++i) records.emplace_back("key-" + std::to_string(i), i + round);
  }
  return records;
}

std::map<std::string, int64_t> Expected() {
  std::map<std::string, int64_t> sums;
  for (const auto& [k, v] : ManyKeys()) sums[k] += v;
  return sums;
}

std::map<std::string, int64_t> AsMap(const std::vector<std::pair<std::string, int64_t>>& v) {
  return {v.begin(), v.end()};
}

auto Sum() {
  return [](int64_t a, int64_t b) { return a + b; };
}

TEST(SpillTest, AReduceLargerThanItsShareSpillsAndIsExact) {
  // 4 MiB: 1 MiB per task; the 200k keys take ~10 MiB in a table.
  auto ctx = MakeContext(2, 4 << 20);
  auto sums = ctx->Parallelize(ManyKeys(), 4).ReduceByKey(Sum(), 4);
  auto got = Must(sums.Collect());
  EXPECT_GT(SpillBytes(ctx->LastJob()), 0) << "the tables passed their share";
  EXPECT_EQ(AsMap(got), Expected());
  EXPECT_EQ(got.size(), 200'000u) << "every key once, merged across runs";
  EXPECT_EQ(FilesIn(ctx->spill_dir()), 0u) << "spill files have no name on disk";
}

TEST(SpillTest, WithoutMapSideCombineTheMapOutputsSpillToo) {
  auto ctx = MakeContext(1, 2 << 20);
  auto sums =
      ctx->Parallelize(ManyKeys(), 3)
          .CombineByKey<int64_t>([](int64_t v) { return v; }, Sum(), Sum(),
                                 CombineOptions{.partitions = 2, .map_side_combine = false});
  auto got = Must(sums.Collect());
  const JobMetrics job = ctx->LastJob();
  ASSERT_EQ(job.stages.size(), 2u);
  EXPECT_GT(job.stages[0].totals.spill_bytes, 0) << "map outputs went to spill files";
  EXPECT_GT(job.stages[1].totals.spill_bytes, 0) << "the merge spilled sorted runs";
  EXPECT_EQ(AsMap(got), Expected());
}

TEST(SpillTest, KeyOrderedOutputIsSortedPerPartitionSpilledOrNot) {
  for (int64_t budget : {int64_t{1} << 30, int64_t{4} << 20}) {
    auto ctx = MakeContext(2, budget);
    auto sums = ctx->Parallelize(ManyKeys(), 4)
                    .CombineByKey<int64_t>([](int64_t v) { return v; }, Sum(), Sum(),
                                           CombineOptions{.partitions = 3, .key_ordered = true});
    std::vector<std::vector<std::string>> keys(3);
    std::mutex mu;
    ASSERT_TRUE(sums.RunOnPartitions({0, 1, 2},
                                     [&](int p, TaskContext& tc) {
                                       std::vector<std::string> mine;
                                       RETURN_NOT_OK(sums.node()->Iterate(
                                           p, tc, [&](std::pair<std::string, int64_t>&& kv) {
                                             mine.push_back(kv.first);
                                             return true;
                                           }));
                                       std::lock_guard lock(mu);
                                       keys[static_cast<size_t>(p)] = std::move(mine);
                                       return Status::OK();
                                     })
                    .ok());
    size_t total = 0;
    for (const auto& part : keys) {
      EXPECT_TRUE(std::is_sorted(part.begin(), part.end())) << "budget " << budget;
      EXPECT_EQ(std::adjacent_find(part.begin(), part.end()), part.end()) << "no key twice";
      total += part.size();
    }
    EXPECT_EQ(total, 200'000u);
    EXPECT_EQ(SpillBytes(ctx->LastJob()) > 0, budget < (int64_t{1} << 30));
  }
}

TEST(SpillTest, ASpillFileReadsBackWhatWasAppendedAcrossChunks) {
  auto ctx = MakeContext(1);
  auto file = Must(SpillFile::Create(ctx->spill_dir(), "test"));
  std::string expected;
  for (int i = 0; i < 100'000; ++i) {
    std::string rec = std::to_string(i) + ";";
    expected += rec;
    ASSERT_TRUE(file->Append(rec).ok());
  }
  ASSERT_TRUE(file->Finish().ok());
  EXPECT_EQ(file->size(), static_cast<int64_t>(expected.size()));
  // Records of "digits;" parsed through a reader with tiny chunks.
  SpillReader reader(file, 0, file->size(), 7);
  std::string got;
  for (;;) {
    Result<bool> r = reader.Next([&](std::string_view* in) {
      const size_t end = in->find(';');
      if (end == std::string_view::npos) return false;
      got.append(in->substr(0, end + 1));
      in->remove_prefix(end + 1);
      return true;
    });
    ASSERT_TRUE(r.ok()) << r.status();
    if (!*r) break;
  }
  EXPECT_EQ(got, expected);
  // A range that ends inside a record is corrupt, not a silent end.
  SpillReader cut(file, 0, 5, 4);
  Result<bool> r = Result<bool>(true);
  while (r.ok() && *r) {
    r = cut.Next([](std::string_view* in) {
      const size_t end = in->find(';');
      if (end == std::string_view::npos) return false;
      in->remove_prefix(end + 1);
      return true;
    });
  }
  EXPECT_FALSE(r.ok());
}

// Peak resident set (VmHWM) in bytes, and a reset of it to the current size
// (/proc/self/clear_refs, "5"), so a test measures only its own peak.
int64_t PeakRss() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}
bool ResetPeakRss() { return static_cast<bool>(std::ofstream("/proc/self/clear_refs") << "5"); }

TEST(SpillTest, TwoMillionKeysStayWithinABudgetOf32MiB) {
  constexpr int64_t kBudget = int64_t{32} << 20;
  // 2,000,000 distinct keys, each twice; a tenth under the sanitizers, which are ~20x slower
  // and where only the result is checked (see below).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int kSeeds = 64, kPerSeed = 3'125;
#else
  constexpr int kSeeds = 64, kPerSeed = 31'250;
#endif
  auto ctx = MakeContext(2, kBudget);
  std::vector<int> seeds(kSeeds);
  for (int i = 0; i < kSeeds; ++i) seeds[static_cast<size_t>(i)] = i;
  auto pairs = ctx->Parallelize(seeds, 8).FlatMap([](int seed) {
    std::vector<std::pair<std::string, int64_t>> out;
    out.reserve(2 * kPerSeed);
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < kPerSeed; ++i) {
        out.emplace_back(
            fmt::format("customer-{:02}/http://example.com/{:08}", seed % 20, seed * kPerSeed + i),
            1);
      }
    }
    return out;
  });
  ASSERT_TRUE(ResetPeakRss()) << "needs /proc/self/clear_refs";
  const int64_t before = PeakRss();
  auto counts = pairs.ReduceByKey(Sum(), 8);
  auto twice =
      counts.Filter([](const std::pair<std::string, int64_t>& kv) { return kv.second == 2; });
  EXPECT_EQ(Must(twice.Count()), kSeeds * kPerSeed) << "every key, merged from both of its records";
  const int64_t grew = PeakRss() - before;
  EXPECT_GT(SpillBytes(ctx->LastJob()), 0);
  // The same job held in memory takes ~250 MB more; spilled, its tables stay in the budget,
  // with room for the allocator's slack and the generated input in flight. Sanitizers keep
  // freed memory in quarantine and pad every allocation: there the peak says nothing.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  (void)grew;
#else
  EXPECT_LT(grew, kBudget + (int64_t{48} << 20)) << "peak grew by " << (grew >> 20) << " MiB";
#endif
}

TEST(SpillTest, MapOutputsFinishingAtOnceNeverTogetherPassTheShuffleStoresLimit) {
  // 8 threads put 50 outputs each of 30 bytes into a store that holds 100: at most 3 fit,
  // whichever threads win, and the store's memory stays within its limit throughout.
  ShuffleStore store(100);
  std::atomic<int> kept{0};
  std::atomic<int64_t> worst{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto out = std::make_shared<MapOutput>();
        out->bytes = 30;
        if (store.PutIfFits(0, t * 50 + i, out)) ++kept;
        int64_t now = store.memory_bytes();
        int64_t seen = worst.load();
        while (now > seen && !worst.compare_exchange_weak(seen, now)) {
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(kept.load(), 3);
  EXPECT_LE(worst.load(), 100);
  // Replacing an output (a retried map task) counts only the new one.
  auto again = std::make_shared<MapOutput>();
  again->bytes = 40;
  int replaced = -1;
  for (int m = 0; m < 400 && replaced < 0; ++m) {
    if (store.Get(0, m) != nullptr) replaced = m;
  }
  ASSERT_GE(replaced, 0);
  EXPECT_TRUE(store.PutIfFits(0, replaced, again));  // 60 + 40
  EXPECT_EQ(store.memory_bytes(), 100);
}

TEST(SpillTest, AContextEmptiesTheSpillDirectoryItIsGiven) {
  // What a process that ended left under its local_dir (an older version's named files).
  const std::string dir = ::testing::TempDir() + "/spill-test-local";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/spill");
  std::filesystem::create_directories(dir + "/blocks");
  { std::ofstream(dir + "/spill/left-over") << "x"; }
  { std::ofstream(dir + "/blocks/rdd_1_0") << "x"; }
  auto ctx = Context::Make({.workers = 1, .local_dir = dir});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ(FilesIn(dir + "/spill"), 0u);
  EXPECT_EQ(FilesIn(dir + "/blocks"), 0u);
  ctx->reset();
  EXPECT_TRUE(std::filesystem::exists(dir)) << "a given local_dir is the caller's";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace runnel::engine
