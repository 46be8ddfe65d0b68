// Helpers for tests that run the real `runnel` binary on configs they write.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "sinks/json_file_sink.h"
#include "tests/support/subprocess.h"

namespace runnel::testing {

// ../shared/golden beside the repository (as in CI), or $RUNNEL_GOLDEN_DIR.
inline std::string GoldenDir() {
  const char* dir = std::getenv("RUNNEL_GOLDEN_DIR");  // NOLINT(concurrency-mt-unsafe)
  return dir != nullptr ? dir : SourceDir() + "/../shared/golden";
}

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "runnel-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The flagship query over a file source, as YAML.
inline std::string HourlyConfig(const std::string& dir, const std::string& input,
                                int64_t batch = 1000, const std::string& lateness = "10m") {
  return "service: { state_dir: " + dir +
         "/state }\n"
         "engine: { workers: 2 }\n"
         "checkpoint: { every: 10 batches, keep: 2 }\n"
         "sources:\n"
         "  clicks: { type: file, path: " +
         input + ", max_records_per_batch: " + std::to_string(batch) +
         " }\n"
         "queries:\n"
         "  - name: hourly_pages\n"
         "    source: clicks\n"
         "    batch_interval: 1s\n"
         "    event_time: { field: ts }\n"
         "    window: 1h\n"
         "    allowed_lateness: " +
         lateness +
         "\n"
         "    group_by: [customer, url]\n"
         "    aggregates:\n"
         "      page_views: count\n"
         "      visitors: { count_distinct: session_id }\n"
         "      referrers: { count_values: referrer }\n"
         "    sinks: [ { type: json_files, path: " +
         dir + "/out } ]\n";
}

// _id -> parsed record.
inline std::map<std::string, boost::json::value> ById(const std::vector<std::string>& lines) {
  std::map<std::string, boost::json::value> out;
  for (const auto& l : lines) {
    if (l.empty()) continue;
    auto v = boost::json::parse(l);
    out[std::string(v.at("_id").as_string())] = v;
  }
  return out;
}

// The JSON sink's current content: the latest record per _id.
inline std::map<std::string, boost::json::value> SinkContent(const std::string& dir) {
  auto latest = sinks::JsonFileSink::ReadLatest(dir + "/out/hourly_pages");
  EXPECT_TRUE(latest.ok()) << latest.status();
  return ById(latest.ok() ? *latest : std::vector<std::string>{});
}

}  // namespace runnel::testing
