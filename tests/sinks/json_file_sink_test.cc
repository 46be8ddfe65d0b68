#include "sinks/json_file_sink.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "engine/context.h"

namespace runnel::sinks {
namespace {

TEST(JsonFileSinkTest, BatchDirectoriesAndIdempotentReruns) {
  auto tmp = engine::Context::Make({}).value();
  JsonFileSink sink(tmp->local_dir() + "/out", "q");
  ASSERT_TRUE(sink.Write(BatchId(0), {R"({"_id":"a","n":1})", R"({"_id":"b","n":1})"}).ok());
  ASSERT_TRUE(sink.Write(BatchId(1), {R"({"_id":"a","n":2})"}).ok());
  // Batch 1 runs again after a crash before its commit: it replaces its own output.
  ASSERT_TRUE(sink.Write(BatchId(1), {R"({"_id":"a","n":3})"}).ok());
  ASSERT_TRUE(sink.Write(BatchId(2), {}).ok());
  EXPECT_TRUE(std::filesystem::exists(sink.dir() + "/batch=0/part-00000.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(sink.dir() + "/batch=2"));
  EXPECT_FALSE(std::filesystem::exists(sink.dir() + "/.tmp-batch=1"));
  EXPECT_EQ(ReadFile(sink.dir() + "/batch=1/part-00000.jsonl").value(),
            "{\"_id\":\"a\",\"n\":3}\n");
  auto latest = JsonFileSink::ReadLatest(sink.dir()).value();
  EXPECT_EQ(latest, (std::vector<std::string>{R"({"_id":"a","n":3})", R"({"_id":"b","n":1})"}));
}

}  // namespace
}  // namespace runnel::sinks
