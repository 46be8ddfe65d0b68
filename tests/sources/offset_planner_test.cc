// The Kafka source's plan arithmetic, without a broker: shares of a backlog, caps, where a
// partition without a position starts, data loss, and where a newly assigned partition starts.
#include "sources/offset_planner.h"

#include <gtest/gtest.h>

namespace runnel::sources {
namespace {

const TopicPartition kP0{"clicks", 0};
const TopicPartition kP1{"clicks", 1};

OffsetPlanOptions Capped(int64_t cap) { return {.max_records_per_partition = cap}; }

TEST(OffsetPlannerTest, ShareKeepsPartitionsTogetherInTime) {
  EXPECT_EQ(Share(0, 100, 10), 0);
  EXPECT_EQ(Share(50, 50, 100), 50) << "under the cap: the whole backlog";
  EXPECT_EQ(Share(1000, 1000, 100), 100) << "the largest backlog reads the cap";
  EXPECT_EQ(Share(100, 1000, 100), 10) << "a tenth of the largest: a tenth of the cap";
  EXPECT_EQ(Share(1, 1000000, 100), 1) << "a partition with data always moves";
  // No overflow near the top of int64.
  EXPECT_EQ(Share(INT64_MAX / 2, INT64_MAX / 2, 1000), 1000);
}

TEST(OffsetPlannerTest, PlansEachPartitionsShareAndItsLag) {
  const auto plan =
      PlanOffsets({{kP0, 0}, {kP1, 900}}, {{kP0, {0, 1000}}, {kP1, {0, 1000}}}, Capped(100));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->ranges.size(), 2u);
  EXPECT_EQ(plan->ranges[0].from, 0);
  EXPECT_EQ(plan->ranges[0].until, 100);
  EXPECT_EQ(plan->ranges[1].from, 900);
  EXPECT_EQ(plan->ranges[1].until, 910) << "a tenth of the largest backlog: a tenth of the cap";
  EXPECT_EQ(plan->next.at(kP0), 100);
  EXPECT_EQ(plan->next.at(kP1), 910);
  EXPECT_EQ(plan->lag.at(kP0), 900);
  EXPECT_EQ(plan->lag.at(kP1), 90);
  EXPECT_TRUE(plan->lost.empty());
}

TEST(OffsetPlannerTest, APartitionWithNothingNewHasNoRangeButAPosition) {
  const auto plan = PlanOffsets({{kP0, 40}}, {{kP0, {0, 40}}}, Capped(100));
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->ranges.empty());
  EXPECT_EQ(plan->next.at(kP0), 40);
  EXPECT_EQ(plan->lag.at(kP0), 0);
}

TEST(OffsetPlannerTest, WithoutAPositionStartsAtTheConfiguredEnd) {
  const std::map<TopicPartition, LogBounds> bounds{{kP0, {10, 50}}};
  const auto earliest = PlanOffsets({{kP0, -1}}, bounds, {.start_at_earliest = true});
  ASSERT_TRUE(earliest.ok());
  ASSERT_EQ(earliest->ranges.size(), 1u);
  EXPECT_EQ(earliest->ranges[0].from, 10);
  EXPECT_EQ(earliest->ranges[0].until, 50);

  const auto latest = PlanOffsets({{kP0, -1}}, bounds, {.start_at_earliest = false});
  ASSERT_TRUE(latest.ok());
  EXPECT_TRUE(latest->ranges.empty());
  EXPECT_EQ(latest->next.at(kP0), 50) << "the position is fixed at the log end";
  EXPECT_EQ(StartOffset(-1, {10, 50}, false), 50);
  EXPECT_EQ(StartOffset(20, {10, 50}, false), 20);
}

TEST(OffsetPlannerTest, DataLossFailsOrSkipsAndCounts) {
  const std::map<TopicPartition, int64_t> at{{kP0, 5}};
  const std::map<TopicPartition, LogBounds> bounds{{kP0, {30, 60}}};
  const auto failed = PlanOffsets(at, bounds, {.fail_on_data_loss = true});
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(failed.status().retry(), RetryScope::kNone) << "the operator decides, not a retry";
  EXPECT_NE(failed.status().message().find("clicks/0: offsets [5, 30)"), std::string::npos)
      << failed.status();

  const auto skipped = PlanOffsets(at, bounds, {.fail_on_data_loss = false});
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(skipped->lost.at(kP0), 25);
  ASSERT_EQ(skipped->ranges.size(), 1u);
  EXPECT_EQ(skipped->ranges[0].from, 30);
  EXPECT_EQ(skipped->ranges[0].until, 60);
}

TEST(OffsetPlannerTest, APartitionWithoutLogBoundsIsAnError) {
  EXPECT_EQ(PlanOffsets({{kP0, 0}}, {}, {}).status().code(), StatusCode::kInternal);
}

TEST(OffsetPlannerTest, AnAssignedPartitionStartsAtTheNewerOfStateAndGroup) {
  // Never read here: the group's offset (the previous owner's commit).
  EXPECT_EQ(StartOfAssigned(-1, 70, /*lost_before=*/false), 70);
  // No group offset: this instance's state, or none.
  EXPECT_EQ(StartOfAssigned(-1, std::nullopt, false), -1);
  EXPECT_EQ(StartOfAssigned(40, std::nullopt, true), 40);
  // Kept all along: this instance's state is the truth, whatever the group says.
  EXPECT_EQ(StartOfAssigned(40, 70, false), 40);
  // Lost to another member and back: the group's offset when it is further along.
  EXPECT_EQ(StartOfAssigned(40, 70, true), 70);
  EXPECT_EQ(StartOfAssigned(90, 70, true), 90) << "never rewinds behind this state";
}

}  // namespace
}  // namespace runnel::sources
