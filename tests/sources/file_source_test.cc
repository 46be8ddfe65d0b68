#include "sources/file_source.h"
#include "streaming/dstream.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "sources/generator.h"

namespace runnel::sources {
namespace {

class FileSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = engine_->local_dir() + "/in";
    ASSERT_TRUE(MakeDirs(dir_).ok());
  }

  // Runs batches until the source is exhausted; returns the lines of each batch.
  std::vector<std::vector<std::string>> Drain(streaming::StreamingContext& ssc,
                                              const std::shared_ptr<FileSource>& source) {
    std::vector<std::vector<std::string>> batches;
    streaming::DStream<std::string>(source).ForeachRdd(
        [&](const engine::Rdd<std::string>& rdd, streaming::BatchInfo*) -> Status {
          ASSIGN_OR_RETURN(auto lines, rdd.Collect());
          if (!lines.empty()) batches.push_back(lines);
          return Status::OK();
        });
    int64_t t = 1000;
    do {
      EXPECT_TRUE(ssc.RunBatch(TimePoint(Millis(t += 1000))).ok());
    } while (!source->exhausted());
    return batches;
  }

  std::unique_ptr<engine::Context> engine_ = engine::Context::Make({.workers = 2}).value();
  ManualClock clock_;
  std::string dir_;
};

TEST_F(FileSourceTest, BatchesTakeAtMostTheCapInFileOrder) {
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/a.jsonl", "a1\na2\na3\n").ok());
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/b.jsonl", "b1\nb2 no newline").ok());
  streaming::StreamingContext ssc(engine_.get(), {.clock = &clock_});
  auto source = FileSource::Make(&ssc, {.path = dir_, .max_records_per_batch = 2}).value();
  const auto batches = Drain(ssc, source);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0], (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(batches[1], (std::vector<std::string>{"a3", "b1"}));
  EXPECT_EQ(batches[2], (std::vector<std::string>{"b2 no newline"}));
  const auto progress = ssc.RecentProgress();
  EXPECT_EQ(progress[0].records_in, 2);
}

TEST_F(FileSourceTest, BatchesTakeAtMostTheByteCapInWholeLines) {
  // Lines of 10 bytes (with the newline), one of 30 bytes, and a last line without a newline.
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/a.jsonl", "aaaaaaaaa\nbbbbbbbbb\nccccccccc\n" +
                                                         std::string(29, 'L') + "\nddddddddd\neeee")
                  .ok());
  streaming::StreamingContext ssc(engine_.get(), {.clock = &clock_});
  auto source = FileSource::Make(
                    &ssc, {.path = dir_, .max_records_per_batch = 100, .max_bytes_per_batch = 25})
                    .value();
  const auto batches = Drain(ssc, source);
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches[0], (std::vector<std::string>{"aaaaaaaaa", "bbbbbbbbb"})) << "20 of 25 bytes";
  EXPECT_EQ(batches[1], (std::vector<std::string>{"ccccccccc"}));
  EXPECT_EQ(batches[2], (std::vector<std::string>{std::string(29, 'L')}))
      << "a line over the cap goes alone";
  EXPECT_EQ(batches[3], (std::vector<std::string>{"ddddddddd", "eeee"}));
  EXPECT_FALSE(FileSource::Make(&ssc, {.path = dir_, .max_bytes_per_batch = 0}).ok());
}

TEST_F(FileSourceTest, RestoreContinuesFromCommittedPositions) {
  GeneratorOptions gen{.events = 5000, .seed = 3};
  ASSERT_TRUE(GenerateToFile(gen, dir_ + "/events.jsonl").ok());
  const auto all = ReadFile(dir_ + "/events.jsonl").value();
  streaming::SourcePositions positions;
  std::vector<std::string> first_part;
  {
    streaming::StreamingContext ssc(engine_.get(), {.clock = &clock_});
    auto source = FileSource::Make(&ssc, {.path = dir_, .max_records_per_batch = 1200}).value();
    streaming::DStream<std::string>(source).ForeachRdd(
        [&](const engine::Rdd<std::string>& rdd, streaming::BatchInfo* info) -> Status {
          ASSIGN_OR_RETURN(auto lines, rdd.Collect());
          first_part.insert(first_part.end(), lines.begin(), lines.end());
          positions = info->positions;
          return Status::OK();
        });
    ASSERT_TRUE(ssc.RunBatch(TimePoint(Millis(1000))).ok());
    ASSERT_TRUE(ssc.RunBatch(TimePoint(Millis(2000))).ok());
  }
  EXPECT_EQ(first_part.size(), 2400u);
  streaming::StreamingContext ssc(engine_.get(), {.clock = &clock_});
  auto source = FileSource::Make(&ssc, {.path = dir_, .max_records_per_batch = 1000}).value();
  ASSERT_TRUE(source->Restore(positions).ok());
  std::vector<std::string> rest;
  for (const auto& b : Drain(ssc, source)) rest.insert(rest.end(), b.begin(), b.end());
  EXPECT_EQ(rest.size(), 2600u);
  std::string joined;
  for (const auto& l : first_part) joined += l + "\n";
  for (const auto& l : rest) joined += l + "\n";
  EXPECT_EQ(joined, all) << "every line once, in order";
}

TEST_F(FileSourceTest, MissingPathIsAClearError) {
  streaming::StreamingContext ssc(engine_.get(), {.clock = &clock_});
  auto source = FileSource::Make(&ssc, {.path = dir_ + "/nope.jsonl"});
  EXPECT_EQ(source.status().code(), StatusCode::kNotFound);
}

TEST(GeneratorTest, DeterministicSeedWorkload) {
  auto lines = [](uint64_t seed) {
    Generator g({.events = 1000, .seed = seed, .customers = 2});
    std::string out;
    for (int i = 0; i < 1000; ++i) g.AppendNext(&out);
    return out;
  };
  EXPECT_EQ(lines(7), lines(7));
  EXPECT_NE(lines(7), lines(8));
  const std::string text = lines(7);
  EXPECT_NE(text.find("\"customer\": \"a.com\""), std::string::npos);
  EXPECT_NE(text.find("\"customer\": \"c1.example\""), std::string::npos);
  EXPECT_NE(text.find("\"ts\": \"2017-09-17T"), std::string::npos);
  // ceil(1000^(1/3)) = 10 urls per customer.
  EXPECT_NE(text.find("/articles/10\""), std::string::npos);
  EXPECT_EQ(text.find("/articles/11\""), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1000);
}

}  // namespace
}  // namespace runnel::sources
