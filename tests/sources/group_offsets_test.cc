// The group offsets' metadata: each query's own next offset, read back per query, and what an
// offset committed without it (an earlier version, another tool) means.
#include <gtest/gtest.h>

#include "sources/kafka_subscription.h"

namespace runnel::sources {
namespace {

TEST(GroupOffsetsTest, EachQueryReadsItsOwnOffsetBack) {
  const std::string metadata = EncodeQueryOffsets({{"hourly_pages", 1200}, {"copy", 800}});
  EXPECT_EQ(metadata, R"({"queries":{"copy":800,"hourly_pages":1200}})");
  const GroupOffset committed{.offset = 800, .metadata = metadata};
  EXPECT_EQ(GroupOffsetOf(committed, "hourly_pages"), 1200);
  EXPECT_EQ(GroupOffsetOf(committed, "copy"), 800);
  EXPECT_EQ(GroupOffsetOf(committed, "new_query"), std::nullopt)
      << "a query the metadata does not name never read the partition under this group";
}

TEST(GroupOffsetsTest, AnOffsetWithoutRunnelsMetadataStandsForEveryQuery) {
  for (const std::string metadata :
       {"", "some tool's note", "{\"other\":1}", "[1,2]", "{\"queries\":{\"q\":\"x\"}}"}) {
    EXPECT_EQ(DecodeQueryOffsets(metadata), std::nullopt) << metadata;
    EXPECT_EQ(GroupOffsetOf({.offset = 500, .metadata = metadata}, "q"), 500) << metadata;
  }
}

}  // namespace
}  // namespace runnel::sources
