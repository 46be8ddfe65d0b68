#include "common/status.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/ids.h"
#include "common/result.h"

namespace runnel {
namespace {

Status FailIfNegative(int x) {
  if (x < 0) return Status::InvalidArgument("negative");
  return Status::OK();
}

Status TwoSteps(int a, int b, int* reached) {
  RETURN_NOT_OK(FailIfNegative(a));
  *reached = 1;
  RETURN_NOT_OK(FailIfNegative(b));
  *reached = 2;
  return Status::OK();
}

Result<int> ParsePositive(const std::string& text) {
  int value = std::stoi(text);
  if (value <= 0) return Status::OutOfRange("not positive: " + text);
  return value;
}

Result<int> AddParsed(const std::string& a, const std::string& b) {
  ASSIGN_OR_RETURN(int x, ParsePositive(a));
  ASSIGN_OR_RETURN(int y, ParsePositive(b));
  return x + y;
}

TEST(StatusTest, DefaultIsOkAndHasNoMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = Status::Corruption("bad crc in manifest");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.ToString(), "Corruption: bad crc in manifest");
}

TEST(StatusTest, WithContextPrefixesErrorsAndKeepsOk) {
  EXPECT_EQ(Status::NotFound("no such key").WithContext("state").ToString(),
            "NotFound: state: no such key");
  EXPECT_TRUE(Status::OK().WithContext("state").ok());
}

TEST(StatusTest, FromErrnoNamesTheCall) {
  Status s = Status::FromErrno("open /x", ENOENT);
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_NE(s.message().find("open /x"), std::string::npos);
  EXPECT_NE(s.message().find("No such file"), std::string::npos);
}

TEST(StatusTest, RetryScopeDefaultsByCodeAndTravelsWithContext) {
  EXPECT_EQ(Status::OK().retry(), RetryScope::kNone);
  EXPECT_EQ(Status::Unavailable("broker down").retry(), RetryScope::kBatch);
  EXPECT_EQ(Status::ResourceExhausted("disk full").retry(), RetryScope::kBatch);
  EXPECT_EQ(Status::Corruption("bad block").retry(), RetryScope::kNone);
  EXPECT_EQ(Status::FromErrno("write /x", ENOSPC).retry(), RetryScope::kBatch);
  EXPECT_EQ(Status::FromErrno("open /x", EACCES).retry(), RetryScope::kNone);

  const Status replan = Status::OutOfRange("offsets left the log").WithRetry(RetryScope::kReplan);
  EXPECT_EQ(replan.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(replan.retry(), RetryScope::kReplan);
  EXPECT_EQ(replan.WithContext("batch 3").retry(), RetryScope::kReplan);
  EXPECT_EQ(replan.WithContext("batch 3").message(), "batch 3: offsets left the log");
  EXPECT_TRUE(Status::OK().WithRetry(RetryScope::kTask).ok());
  EXPECT_EQ(RetryScopeName(RetryScope::kStage), "stage");
}

TEST(StatusTest, CopiesCompareEqual) {
  Status a = Status::Unavailable("broker down");
  Status b = a;
  EXPECT_EQ(a, b);
  EXPECT_FALSE(a == Status::Unavailable("other"));
}

TEST(StatusTest, ReturnNotOkStopsAtFirstError) {
  int reached = 0;
  EXPECT_TRUE(TwoSteps(1, 2, &reached).ok());
  EXPECT_EQ(reached, 2);
  reached = 0;
  EXPECT_EQ(TwoSteps(1, -1, &reached).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reached, 1);
  reached = 0;
  EXPECT_FALSE(TwoSteps(-1, 2, &reached).ok());
  EXPECT_EQ(reached, 0);
}

TEST(ResultTest, HoldsValueOrError) {
  Result<int> good = ParsePositive("7");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  EXPECT_TRUE(good.status().ok());

  Result<int> bad = ParsePositive("-3");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(bad.ValueOr(42), 42);
}

TEST(ResultTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(*AddParsed("2", "3"), 5);
  Result<int> r = AddParsed("2", "0");
  EXPECT_EQ(r.status().ToString(), "OutOfRange: not positive: 0");
}

TEST(ResultTest, OkStatusIsNotAValue) {
  Result<int> r = Status::OK();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(ResultTest, MovesOnlyTypes) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(9);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 9);
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  Result<int> r = Status::Internal("boom");
  EXPECT_DEATH((void)r.value(), "boom");
}

TEST(IdsTest, StrongIdsCompareAndHashByValue) {
  EXPECT_LT(BatchId(1), BatchId(2));
  EXPECT_EQ(Offset(5), Offset(5));
  EXPECT_EQ(std::hash<PartitionId>()(PartitionId(3)), std::hash<int32_t>()(3));
  EXPECT_EQ(fmt::format("batch {}", BatchId(12)), "batch 12");
  static_assert(!std::is_convertible_v<BatchId, Offset>, "ids must not mix");
  static_assert(!std::is_convertible_v<int64_t, BatchId>, "ids are explicit");
}

}  // namespace
}  // namespace runnel
