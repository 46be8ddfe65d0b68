// Transformations and actions of Rdd<T>, including empty partitions and empty RDDs.
#include <atomic>
#include <string>

#include "tests/engine/engine_test_util.h"

namespace runnel::engine {
namespace {

using KV = std::pair<std::string, int>;

class RddTest : public ::testing::Test {
 protected:
  std::unique_ptr<Context> ctx_ = MakeContext();
};

TEST_F(RddTest, ParallelizeSplitsIntoContiguousSlices) {
  auto rdd = ctx_->Parallelize(Range(10), 3);
  EXPECT_EQ(rdd.num_partitions(), 3);
  EXPECT_EQ(Must(rdd.Collect()), Range(10));  // order kept across partitions
  EXPECT_EQ(Must(rdd.Count()), 10);
}

TEST_F(RddTest, MoreSlicesThanRecordsGivesEmptyPartitions) {
  auto rdd = ctx_->Parallelize(std::vector<int>{1, 2}, 5);
  EXPECT_EQ(Must(rdd.Map([](int x) { return x * 10; }).Collect()), (std::vector<int>{10, 20}));
  EXPECT_EQ(Must(rdd.Count()), 2);
}

TEST_F(RddTest, EmptyRddThroughEveryKindOfOperation) {
  auto empty = ctx_->Parallelize(std::vector<int>{}, 3);
  EXPECT_TRUE(Must(empty.Collect()).empty());
  EXPECT_EQ(Must(empty.Count()), 0);
  EXPECT_TRUE(Must(empty.Take(3)).empty());
  EXPECT_EQ(Must(empty.Fold(7, [](int a, int b) { return a + b; })), 7 * 4);
  EXPECT_EQ(empty.Reduce([](int a, int b) { return a + b; }).status().code(),
            StatusCode::kInvalidArgument);
  auto pairs = empty.Map([](int x) { return std::pair<int, int>(x, x); });
  EXPECT_TRUE(Must(pairs.ReduceByKey([](int a, int b) { return a + b; }).Collect()).empty());
  EXPECT_TRUE(Must(pairs.GroupByKey().Collect()).empty());
  EXPECT_TRUE(Must(pairs.Join(pairs).Collect()).empty());
  EXPECT_TRUE(Must(Must(pairs.SortByKey()).Collect()).empty());
  EXPECT_TRUE(Must(empty.Distinct().Collect()).empty());
}

TEST_F(RddTest, MapFilterFlatMap) {
  auto rdd = ctx_->Parallelize(Range(6), 2);
  EXPECT_EQ(Must(rdd.Map([](int x) { return x * x; }).Collect()),
            (std::vector<int>{0, 1, 4, 9, 16, 25}));
  EXPECT_EQ(Must(rdd.Filter([](int x) { return x % 2 == 1; }).Collect()),
            (std::vector<int>{1, 3, 5}));
  EXPECT_EQ(Must(rdd.FlatMap([](int x) { return std::vector<int>(static_cast<size_t>(x % 3), x); })
                     .Collect()),
            (std::vector<int>{1, 2, 2, 4, 5, 5}));
}

TEST_F(RddTest, MapChangesTheElementType) {
  auto strings = ctx_->Parallelize(Range(3), 2).Map([](int x) { return std::to_string(x) + "!"; });
  EXPECT_EQ(Must(strings.Collect()), (std::vector<std::string>{"0!", "1!", "2!"}));
}

TEST_F(RddTest, MapPartitionsSeesWholePartitions) {
  auto sums = ctx_->Parallelize(Range(10), 2)
                  .MapPartitionsWithIndex([](int index, std::vector<int>&& part) {
                    int sum = 0;
                    for (int x : part) sum += x;
                    return std::vector<std::pair<int, int>>{{index, sum}};
                  });
  EXPECT_EQ(Must(sums.Collect()), (std::vector<std::pair<int, int>>{{0, 10}, {1, 35}}));
  auto sizes = ctx_->Parallelize(Range(10), 5).MapPartitions([](std::vector<int>&& part) {
    return std::vector<size_t>{part.size()};
  });
  EXPECT_EQ(Must(sizes.Collect()), (std::vector<size_t>{2, 2, 2, 2, 2}));
}

TEST_F(RddTest, UnionConcatenatesPartitions) {
  auto a = ctx_->Parallelize(std::vector<int>{1, 2}, 2);
  auto b = ctx_->Parallelize(std::vector<int>{3}, 1);
  auto u = a.Union(b);
  EXPECT_EQ(u.num_partitions(), 3);
  EXPECT_EQ(Must(u.Collect()), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(Must(a.Union({b, a}).Count()), 5);
}

TEST_F(RddTest, DistinctRemovesDuplicates) {
  auto rdd = ctx_->Parallelize(std::vector<std::string>{"x", "y", "x", "z", "y", "x"}, 3);
  EXPECT_EQ(Sorted(Must(rdd.Distinct(2).Collect())), (std::vector<std::string>{"x", "y", "z"}));
}

TEST_F(RddTest, KeyByKeysValuesMapValues) {
  auto rdd = ctx_->Parallelize(std::vector<std::string>{"apple", "kiwi"}, 2);
  auto keyed = rdd.KeyBy([](const std::string& s) { return s.size(); });
  EXPECT_EQ(Must(keyed.Collect()),
            (std::vector<std::pair<size_t, std::string>>{{5, "apple"}, {4, "kiwi"}}));
  EXPECT_EQ(Must(keyed.Keys().Collect()), (std::vector<size_t>{5, 4}));
  EXPECT_EQ(Must(keyed.Values().Collect()), (std::vector<std::string>{"apple", "kiwi"}));
  EXPECT_EQ(Must(keyed.MapValues([](std::string s) { return s[0]; }).Collect()),
            (std::vector<std::pair<size_t, char>>{{5, 'a'}, {4, 'k'}}));
}

TEST_F(RddTest, ReduceByKeySumsPerKey) {
  std::vector<KV> data;
  for (int i = 0; i < 1000; ++i) data.emplace_back("k" + std::to_string(i % 7), i);
  auto reduced = ctx_->Parallelize(data, 4).ReduceByKey([](int a, int b) { return a + b; }, 3);
  EXPECT_EQ(reduced.num_partitions(), 3);
  std::map<std::string, int> expected;
  for (const auto& [k, v] : data) expected[k] += v;
  EXPECT_EQ(AsMap(Must(reduced.Collect())), expected);
}

TEST_F(RddTest, GroupByKeyKeepsEveryValue) {
  auto rdd = ctx_->Parallelize(std::vector<KV>{{"a", 1}, {"b", 2}, {"a", 3}, {"a", 4}}, 3);
  auto groups = AsMap(Must(rdd.GroupByKey(2).Collect()));
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(Sorted(groups["a"]), (std::vector<int>{1, 3, 4}));
  EXPECT_EQ(groups["b"], (std::vector<int>{2}));
}

TEST_F(RddTest, AggregateByKeyAndCombineByKey) {
  auto rdd = ctx_->Parallelize(std::vector<KV>{{"a", 3}, {"b", 5}, {"a", 9}, {"a", 1}}, 2);
  // (min, max) per key.
  using MinMax = std::pair<int, int>;
  auto minmax = rdd.AggregateByKey(
      MinMax{1 << 30, -(1 << 30)},
      [](MinMax acc, int v) {
        return MinMax{std::min(acc.first, v), std::max(acc.second, v)};
      },
      [](MinMax a, MinMax b) {
        return MinMax{std::min(a.first, b.first), std::max(a.second, b.second)};
      });
  auto m = AsMap(Must(minmax.Collect()));
  EXPECT_EQ(m["a"], MinMax(1, 9));
  EXPECT_EQ(m["b"], MinMax(5, 5));

  // (sum, count) per key, for an average.
  using SumCount = std::pair<int, int>;
  auto avg = rdd.CombineByKey<SumCount>(
      [](int v) {
        return SumCount{v, 1};
      },
      [](SumCount c, int v) {
        return SumCount{c.first + v, c.second + 1};
      },
      [](SumCount a, SumCount b) {
        return SumCount{a.first + b.first, a.second + b.second};
      });
  auto sc = AsMap(Must(avg.Collect()));
  EXPECT_EQ(sc["a"], SumCount(13, 3));
  EXPECT_EQ(sc["b"], SumCount(5, 1));
}

TEST_F(RddTest, JoinIsInnerWithEveryPairOfValues) {
  auto left = ctx_->Parallelize(std::vector<KV>{{"a", 1}, {"a", 2}, {"b", 3}, {"c", 4}}, 2);
  auto right = ctx_->Parallelize(
      std::vector<std::pair<std::string, std::string>>{{"a", "x"}, {"b", "y"}, {"b", "z"}}, 3);
  auto joined = Sorted(Must(left.Join(right).Collect()));
  using Row = std::pair<std::string, std::pair<int, std::string>>;
  EXPECT_EQ(joined,
            (std::vector<Row>{{"a", {1, "x"}}, {"a", {2, "x"}}, {"b", {3, "y"}}, {"b", {3, "z"}}}));
}

TEST_F(RddTest, CoGroupKeepsKeysOfEitherSide) {
  auto left = ctx_->Parallelize(std::vector<KV>{{"a", 1}, {"b", 2}}, 2);
  auto right = ctx_->Parallelize(std::vector<std::pair<std::string, char>>{{"b", 'x'}, {"c", 'y'}});
  auto groups = AsMap(Must(left.CoGroup(right, 3).Collect()));
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups["a"].first, (std::vector<int>{1}));
  EXPECT_TRUE(groups["a"].second.empty());
  EXPECT_EQ(groups["b"].second, (std::vector<char>{'x'}));
  EXPECT_TRUE(groups["c"].first.empty());
}

TEST_F(RddTest, PartitionByPlacesEachKeyInOnePartition) {
  std::vector<std::pair<int, int>> data;
  for (int i = 0; i < 200; ++i) data.emplace_back(i % 10, i);
  auto parted = ctx_->Parallelize(data, 4).PartitionBy(3);
  EXPECT_EQ(parted.num_partitions(), 3);
  auto where = parted.MapPartitionsWithIndex([](int index, std::vector<std::pair<int, int>>&& p) {
    std::vector<std::pair<int, int>> out;
    for (const auto& kv : p) out.emplace_back(kv.first, index);
    return out;
  });
  std::map<int, std::set<int>> partitions_of_key;
  for (const auto& [k, index] : Must(where.Collect())) partitions_of_key[k].insert(index);
  EXPECT_EQ(partitions_of_key.size(), 10u);
  for (const auto& [k, parts] : partitions_of_key) EXPECT_EQ(parts.size(), 1u) << k;
  EXPECT_EQ(Must(parted.Count()), 200);
  // Already partitioned that way: no new shuffle.
  EXPECT_EQ(parted.PartitionBy(3).id(), parted.id());
}

TEST_F(RddTest, SortByKeyOrdersAcrossPartitions) {
  std::vector<std::pair<int, std::string>> data;
  for (int i = 0; i < 500; ++i) data.emplace_back((i * 7919) % 1000, std::to_string(i));
  auto rdd = ctx_->Parallelize(data, 4);
  auto asc = Must(Must(rdd.SortByKey(true, 3)).Collect());
  ASSERT_EQ(asc.size(), 500u);
  EXPECT_TRUE(std::is_sorted(asc.begin(), asc.end(),
                             [](const auto& a, const auto& b) { return a.first < b.first; }));
  auto desc = Must(Must(rdd.SortByKey(false, 2)).Collect());
  EXPECT_TRUE(std::is_sorted(desc.begin(), desc.end(),
                             [](const auto& a, const auto& b) { return a.first > b.first; }));
}

TEST_F(RddTest, RepartitionBalancesAndCoalesceMerges) {
  auto skewed = ctx_->Parallelize(Range(100), 1);
  auto spread = skewed.Repartition(4);
  EXPECT_EQ(spread.num_partitions(), 4);
  auto sizes =
      Must(spread.MapPartitions([](std::vector<int>&& p) { return std::vector<size_t>{p.size()}; })
               .Collect());
  for (size_t s : sizes) EXPECT_GT(s, 10u);
  EXPECT_EQ(Sorted(Must(spread.Collect())), Range(100));

  auto merged = ctx_->Parallelize(Range(10), 5).Coalesce(2);
  EXPECT_EQ(merged.num_partitions(), 2);
  EXPECT_EQ(Must(merged.Collect()), Range(10));
}

TEST_F(RddTest, ReduceFoldForeach) {
  auto rdd = ctx_->Parallelize(Range(101), 4);
  EXPECT_EQ(Must(rdd.Reduce([](int a, int b) { return a + b; })), 5050);
  EXPECT_EQ(Must(rdd.Fold(0, [](int a, int b) { return a + b; })), 5050);
  std::atomic<int> sum{0};
  ASSERT_TRUE(rdd.Foreach([&](int x) { sum += x; }).ok());
  EXPECT_EQ(sum.load(), 5050);
  std::atomic<int> partitions{0};
  ASSERT_TRUE(rdd.ForeachPartition([&](std::vector<int>& p) { partitions += !p.empty(); }).ok());
  EXPECT_EQ(partitions.load(), 4);
}

TEST_F(RddTest, TakeComputesOnlyWhatItNeeds) {
  std::atomic<int> calls{0};
  auto rdd = ctx_->Parallelize(Range(100000), 2).Map([&calls](int x) {
    ++calls;
    return x + 1;
  });
  EXPECT_EQ(Must(rdd.Take(5)), (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_LE(calls.load(), 6) << "Take(5) must not map the whole partition";
  EXPECT_EQ(Must(rdd.Take(0)).size(), 0u);
  // More than partition 0 holds: later partitions are scanned too.
  EXPECT_EQ(Must(ctx_->Parallelize(Range(10), 5).Take(7)), Range(7));
}

TEST_F(RddTest, ErrorsFromUserFunctionsFailTheAction) {
  auto rdd = ctx_->Parallelize(Range(10), 2).Map([](int x) {
    if (x == 7) throw std::runtime_error("bad record 7");
    return x;
  });
  Status st = rdd.Collect().status();
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_NE(st.message().find("bad record 7"), std::string::npos) << st;
}

TEST_F(RddTest, SaveAsTextFileWritesPartFiles) {
  const std::string dir = ctx_->local_dir() + "/out";
  auto rdd = ctx_->Parallelize(std::vector<KV>{{"a", 1}, {"b", 2}, {"c", 3}}, 2);
  ASSERT_TRUE(rdd.SaveAsTextFile(dir).ok());
  EXPECT_EQ(*ReadFile(dir + "/part-00000"), "a\t1\n");
  EXPECT_EQ(*ReadFile(dir + "/part-00001"), "b\t2\nc\t3\n");
  EXPECT_TRUE(ReadFile(dir + "/_SUCCESS").ok());
  // Reading it back gives the same lines.
  auto lines = Must(ctx_->TextFile({dir + "/part-00000", dir + "/part-00001"}));
  EXPECT_EQ(Must(lines.Collect()), (std::vector<std::string>{"a\t1", "b\t2", "c\t3"}));
}

TEST_F(RddTest, TextFileSplitsByByteRangeWithoutLosingLines) {
  const std::string path = ctx_->local_dir() + "/lines.txt";
  std::string content;
  std::vector<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    expected.push_back(std::string(static_cast<size_t>(i % 37), 'x') + std::to_string(i));
    content += expected.back() + "\n";
  }
  content += "last-without-newline";
  expected.push_back("last-without-newline");
  ASSERT_TRUE(WriteFileAtomically(path, content).ok());
  for (int64_t split : {int64_t{7}, int64_t{13}, int64_t{100}, int64_t{4096}, int64_t{1} << 20}) {
    auto rdd = Must(ctx_->TextFile({path}, split));
    EXPECT_EQ(Must(rdd.Collect()), expected) << "split " << split;
  }
  EXPECT_EQ(ctx_->TextFile({ctx_->local_dir() + "/missing"}).status().code(), StatusCode::kIOError);
}

TEST_F(RddTest, BroadcastValueIsSharedByTasks) {
  auto stop = ctx_->MakeBroadcast(std::set<std::string>{"the", "a"});
  auto words = ctx_->Parallelize(std::vector<std::string>{"the", "cat", "a", "hat"}, 2);
  auto kept = words.Filter([stop](const std::string& w) { return !stop.value().contains(w); });
  EXPECT_EQ(Must(kept.Collect()), (std::vector<std::string>{"cat", "hat"}));
}

TEST_F(RddTest, FromSourceCallsTheComputeFunctionPerPartition) {
  auto rdd = FromSource<int>(*ctx_, "test-source", 3, [](int p, TaskContext&, Emit<int> emit) {
    for (int i = 0; i < 2; ++i) emit(p * 10 + i);
    return Status::OK();
  });
  EXPECT_EQ(Must(rdd.Collect()), (std::vector<int>{0, 1, 10, 11, 20, 21}));
}

}  // namespace
}  // namespace runnel::engine
