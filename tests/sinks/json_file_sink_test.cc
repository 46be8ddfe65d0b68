#include "sinks/json_file_sink.h"

#include <algorithm>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
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

TEST(JsonFileSinkTest, PartsWrittenAtOnceArePublishedAsOneAndARerunReplacesThemAll) {
  auto tmp = engine::Context::Make({}).value();
  JsonFileSink sink(tmp->local_dir() + "/out", "q");
  // A first attempt of batch 0 wrote parts 0..3 and died before Publish.
  ASSERT_TRUE(sink.Begin(BatchId(0)).ok());
  for (int p = 0; p < 4; ++p) {
    ASSERT_TRUE(
        sink.WritePart(BatchId(0), p, {fmt::format(R"({{"_id":"old{}"}})", p)}, true, true).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(sink.dir() + "/batch=0"));  // invisible until Publish
  // The rerun has parts 1 and 3 only (written from threads at once; part 1 in two chunks;
  // part 3's first attempt dies after a chunk and its retry writes it whole), and part 0 empty.
  ASSERT_TRUE(sink.Begin(BatchId(0)).ok());
  std::vector<std::thread> writers;
  std::vector<Status> results(3);
  writers.emplace_back([&] { results[0] = sink.WritePart(BatchId(0), 0, {}, true, true); });
  writers.emplace_back([&] {
    results[1] = sink.WritePart(BatchId(0), 1, {R"({"_id":"b","n":1})"}, true, false);
    if (results[1].ok()) {
      results[1] = sink.WritePart(BatchId(0), 1, {R"({"_id":"c","n":1})"}, false, true);
    }
  });
  writers.emplace_back([&] {
    results[2] = sink.WritePart(BatchId(0), 3, {R"({"_id":"a","n":0})"}, true, false);
    if (results[2].ok()) {
      results[2] = sink.WritePart(BatchId(0), 3, {R"({"_id":"a","n":1})"}, true, true);
    }
  });
  for (auto& w : writers) w.join();
  for (const Status& st : results) ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(sink.Publish(BatchId(0)).ok());
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(sink.dir() + "/batch=0")) {
    files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"part-00001.jsonl", "part-00003.jsonl"}));
  EXPECT_EQ(JsonFileSink::ReadLatest(sink.dir()).value(),
            (std::vector<std::string>{R"({"_id":"a","n":1})", R"({"_id":"b","n":1})",
                                      R"({"_id":"c","n":1})"}));
  // A batch whose parts all had no records publishes nothing.
  ASSERT_TRUE(sink.Begin(BatchId(1)).ok());
  ASSERT_TRUE(sink.WritePart(BatchId(1), 0, {}, true, true).ok());
  ASSERT_TRUE(sink.Publish(BatchId(1)).ok());
  EXPECT_FALSE(std::filesystem::exists(sink.dir() + "/batch=1"));
  // A part finished by a task that is then retried, and empty in the retry: the retry's
  // (nothing) is what the batch holds.
  ASSERT_TRUE(sink.Begin(BatchId(2)).ok());
  ASSERT_TRUE(sink.WritePart(BatchId(2), 0, {R"({"_id":"d","n":1})"}, true, true).ok());
  ASSERT_TRUE(sink.WritePart(BatchId(2), 1, {R"({"_id":"e","n":1})"}, true, true).ok());
  ASSERT_TRUE(sink.WritePart(BatchId(2), 1, {}, true, true).ok());
  ASSERT_TRUE(sink.Publish(BatchId(2)).ok());
  EXPECT_TRUE(std::filesystem::exists(sink.dir() + "/batch=2/part-00000.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(sink.dir() + "/batch=2/part-00001.jsonl"));
  // Batch 2 runs again with no records (a restart cut it smaller): its old output goes.
  ASSERT_TRUE(sink.Begin(BatchId(2)).ok());
  ASSERT_TRUE(sink.Publish(BatchId(2)).ok());
  EXPECT_FALSE(std::filesystem::exists(sink.dir() + "/batch=2"));
}

}  // namespace
}  // namespace runnel::sinks
