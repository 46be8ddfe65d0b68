#include "streaming/aggregates.h"
#include "engine/hash.h"
#include "streaming/aggregates.pb.h"

#include <algorithm>
#include <random>
#include <set>

#include <gtest/gtest.h>

namespace runnel::streaming {
namespace {

using Kind = AggregateSpec::Kind;

AggCell Of(const AggregateSpec& spec, const std::vector<std::string>& values) {
  AggCell c;
  for (const auto& v : values) EXPECT_TRUE(AddValue(spec, v, &c).ok());
  return c;
}

std::vector<AggregateSpec> AllKinds() {
  return {{"n", Kind::kCount, ""},
          {"d", Kind::kCountDistinct, "f"},
          {"h", Kind::kApproxDistinct, "f", 6},
          {"v", Kind::kCountValues, "f"},
          {"s", Kind::kSum, "f"},
          {"lo", Kind::kMin, "f"},
          {"hi", Kind::kMax, "f"}};
}

TEST(AggregatesTest, MergeIsAssociativeAndCommutativeForEveryKind) {
  std::mt19937 rng(1);
  for (const AggregateSpec& spec : AllKinds()) {
    auto random_cell = [&] {
      std::vector<std::string> values;
      for (int i = 0; i < 40; ++i) values.push_back(std::to_string(rng() % 50));
      return Of(spec, values);
    };
    const AggCell a = random_cell(), b = random_cell(), c = random_cell();
    AggCell ab_c = a;
    Merge(spec, b, &ab_c);
    Merge(spec, c, &ab_c);
    AggCell bc = b;
    Merge(spec, c, &bc);
    AggCell a_bc = a;
    Merge(spec, bc, &a_bc);
    AggCell cba = c;
    Merge(spec, b, &cba);
    Merge(spec, a, &cba);
    EXPECT_EQ(ScalarValue(spec, ab_c), ScalarValue(spec, a_bc)) << spec.name;
    EXPECT_EQ(ScalarValue(spec, ab_c), ScalarValue(spec, cba)) << spec.name;
    EXPECT_EQ(ab_c.values, cba.values) << spec.name;
  }
}

TEST(AggregatesTest, FoldingRecordsEqualsMergingOneRowPerRecord) {
  // The map-side combine folds records into a row (AddRecord); the old path built a row per
  // record and merged them. Both must agree for every kind, with precision 6 going dense and
  // top_k folding values into __other__.
  auto specs = AllKinds();
  specs.push_back({"top", Kind::kCountValues, "f", 14, /*top_k=*/3});
  std::mt19937 rng(7);
  AggRow folded, merged;
  for (int r = 0; r < 2000; ++r) {
    RecordValues record(specs.size());
    for (size_t i = 1; i < specs.size(); ++i) record[i] = std::to_string(rng() % 300);
    AddRecord(specs, record, &folded);
    AggRow one(specs.size());
    for (size_t i = 0; i < specs.size(); ++i)
      ASSERT_TRUE(AddValue(specs[i], record[i], &one[i]).ok());
    MergeRow(specs, one, &merged);
  }
  ASSERT_EQ(folded.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(folded[i], merged[i]) << specs[i].name;
  }
  EXPECT_EQ(folded[0].count, 2000);
  EXPECT_EQ(folded[7].values.size(), 4u) << "three values and __other__";
}

TEST(AggregatesTest, ValuesOfEachKind) {
  const auto specs = AllKinds();
  const std::vector<std::string> values = {"3", "1", "3", "7.5"};
  EXPECT_EQ(ScalarValue(specs[0], Of(specs[0], values)), 4);
  EXPECT_EQ(ScalarValue(specs[1], Of(specs[1], values)), 3);
  EXPECT_EQ(ScalarValue(specs[2], Of(specs[2], values)), 3);
  EXPECT_EQ(Of(specs[3], values).values, (ValueCounts{{"1", 1}, {"3", 2}, {"7.5", 1}}));
  EXPECT_DOUBLE_EQ(ScalarValue(specs[4], Of(specs[4], values)), 14.5);
  EXPECT_DOUBLE_EQ(ScalarValue(specs[5], Of(specs[5], values)), 1);
  EXPECT_DOUBLE_EQ(ScalarValue(specs[6], Of(specs[6], values)), 7.5);
  AggCell c;
  EXPECT_FALSE(AddValue(specs[4], "seven", &c).ok());
}

TEST(AggregatesTest, TopKFoldsTheRestIntoOther) {
  AggregateSpec spec{"r", Kind::kCountValues, "f", 14, 2};
  AggCell c = Of(spec, {"a", "a", "a", "b", "b", "c", "d"});
  EXPECT_EQ(c.values, (ValueCounts{{"a", 3}, {"b", 2}, {"__other__", 2}}));
}

TEST(AggregatesTest, TopKWithoutSortingPerValueKeepsWhatSortingWouldKeep) {
  // The reference: insert each new value, then sort by (count desc, value asc), keep k and
  // fold the rest into __other__ (what every new value cost before).
  auto reference = [](int k, const std::vector<std::string>& stream) {
    ValueCounts m;
    for (const std::string& v : stream) {
      if (auto it = m.find(v); it != m.end()) {
        ++it->second;
        continue;
      }
      m.emplace(v, 1);
      if (static_cast<int>(m.size()) <= k + 1) continue;
      int64_t other = 0;
      if (auto it = m.find("__other__"); it != m.end()) {
        other = it->second;
        m.erase(it);
      }
      std::vector<std::pair<std::string, int64_t>> sorted(m.begin(), m.end());
      std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      m.clear();
      for (size_t i = 0; i < sorted.size(); ++i) {
        if (static_cast<int>(i) < k) {
          m.insert(sorted[i]);
        } else {
          other += sorted[i].second;
        }
      }
      m["__other__"] = other;
    }
    return m;
  };
  std::mt19937 random(5);
  for (int k : {1, 3, 10}) {
    for (int round = 0; round < 20; ++round) {
      // Skewed: a few values often, many once.
      std::vector<std::string> stream;
      for (int i = 0; i < 2000; ++i) {
        const int v =
            random() % 4 == 0 ? static_cast<int>(random() % 5) : static_cast<int>(random() % 500);
        stream.push_back("v" + std::to_string(v));
      }
      const AggregateSpec spec{"r", Kind::kCountValues, "f", 14, k};
      EXPECT_EQ(Of(spec, stream).values, reference(k, stream)) << "k=" << k;
    }
  }
}

TEST(AggregatesTest, RowsRoundTripTheirEncoding) {
  const auto specs = AllKinds();
  AggRow row;
  for (const auto& spec : specs) row.push_back(Of(spec, {"1", "2", "2", "9"}));
  auto decoded = DecodeRow(EncodeRow(row));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, row);
  // A row written by a newer format is refused, not misread.
  state::v1::AggregateRow newer;
  ASSERT_TRUE(newer.ParseFromString(EncodeRow(row)));
  newer.set_format_version(2);
  EXPECT_EQ(DecodeRow(newer.SerializeAsString()).status().code(), StatusCode::kCorruption);
  EXPECT_FALSE(DecodeRow(EncodeRow(row).substr(0, 10)).ok());
}

TEST(AggregatesTest, ExactDistinctStaysExactThroughRepeatsMergesAndEncodings) {
  // A hot key: many visitors, most seen more than once, added one by one, merged from other
  // partial cells and encoded between (each read sorts what was appended since).
  const AggregateSpec spec{"v", Kind::kCountDistinct, "session_id"};
  std::mt19937_64 random(11);
  std::set<uint64_t> expected;
  AggCell cell;
  for (int round = 0; round < 20; ++round) {
    AggCell other;
    for (int i = 0; i < 20000; ++i) {
      const std::string value = "s" + std::to_string(random() % 150000);
      ASSERT_TRUE(AddValue(spec, value, i % 3 ? &cell : &other).ok());
      expected.insert(engine::KeyHash<std::string>()(value));
    }
    Merge(spec, other, &cell);
    if (round % 4 == 0) {
      auto decoded = DecodeRow(EncodeRow({cell}));
      ASSERT_TRUE(decoded.ok());
      EXPECT_EQ((*decoded)[0], cell);
      cell = (*decoded)[0];
    }
    ASSERT_EQ(ScalarValue(spec, cell), static_cast<double>(expected.size())) << round;
  }
  EXPECT_EQ(cell.hashes.sorted(), std::vector<uint64_t>(expected.begin(), expected.end()));
}

TEST(HyperLogLogTest, MillionDistinctWithinThreeStandardErrors) {
  AggregateSpec spec{"h", Kind::kApproxDistinct, "f", 14};
  AggCell a, b;
  for (int i = 0; i < 1'000'000; ++i) {
    ASSERT_TRUE(AddValue(spec, "session-" + std::to_string(i), i % 2 ? &a : &b).ok());
  }
  Merge(spec, b, &a);
  const double estimate = ScalarValue(spec, a);
  const double se = StandardError(spec, a);
  EXPECT_NEAR(se, 1.04 / 128, 1e-9);
  EXPECT_LT(std::abs(estimate - 1e6) / 1e6, 3 * se) << estimate;
  EXPECT_EQ(a.registers.size(), 16384u);
  EXPECT_TRUE(a.hashes.empty());
}

TEST(HyperLogLogTest, SmallSetsStayExactAndSparse) {
  AggregateSpec spec{"h", Kind::kApproxDistinct, "f", 14};
  AggCell c = Of(spec, {"a", "b", "a", "c"});
  EXPECT_EQ(ScalarValue(spec, c), 3);
  EXPECT_EQ(StandardError(spec, c), 0);
  EXPECT_TRUE(c.registers.empty());
}

}  // namespace
}  // namespace runnel::streaming
