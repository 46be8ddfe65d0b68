#include "sinks/json_file_sink.h"

#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "common/crash_point.h"
#include "common/file_util.h"

namespace runnel::sinks {

JsonFileSink::JsonFileSink(std::string root, std::string query)
    : dir_(std::move(root) + "/" + std::move(query)) {}

Status JsonFileSink::Claim(const std::string& incarnation, bool adopt_unmarked) {
  const std::string mark = dir_ + "/" + kIncarnationFile;
  std::error_code ec;
  if (std::filesystem::exists(mark, ec)) {
    ASSIGN_OR_RETURN(std::string found, ReadFile(mark, 4096));
    while (!found.empty() && (found.back() == '\n' || found.back() == ' ')) found.pop_back();
    if (found == incarnation) return Status::OK();
    return Status::FailedPrecondition(fmt::format(
        "sink {} holds the output of another state (incarnation {}; this state is {}): the "
        "state started over, and its batch ids would replace and be shadowed by the old ones. "
        "Move the old output away, or give the sink a new path",
        dir_, found, incarnation));
  }
  bool has_batches = false;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    has_batches |= entry.path().filename().string().starts_with("batch=");
  }
  if (has_batches && !adopt_unmarked) {
    return Status::FailedPrecondition(fmt::format(
        "sink {} holds batches of an earlier state, and this state (incarnation {}) is new: its "
        "batch ids would replace and be shadowed by the old ones. Move the old output away, or "
        "give the sink a new path",
        dir_, incarnation));
  }
  RETURN_NOT_OK(MakeDirs(dir_));
  return WriteFileAtomically(mark, incarnation + "\n", /*sync=*/true);
}

Status JsonFileSink::Write(BatchId batch, const std::vector<std::string>& records) {
  if (records.empty()) return Status::OK();
  RETURN_NOT_OK(MakeDirs(dir_));
  const std::string final_dir = fmt::format("{}/batch={}", dir_, batch);
  const std::string tmp_dir = fmt::format("{}/.tmp-batch={}", dir_, batch);
  std::error_code ec;
  std::filesystem::remove_all(tmp_dir, ec);
  RETURN_NOT_OK(MakeDirs(tmp_dir));
  std::string content;
  for (const std::string& r : records) {
    content += r;
    content.push_back('\n');
  }
  const std::string part = tmp_dir + "/part-00000.jsonl";
  RETURN_NOT_OK(WriteFileAtomically(part, content));
  RETURN_NOT_OK(SyncPath(part));
  RETURN_NOT_OK(SyncPath(tmp_dir));
  // A rerun of the batch replaces what its earlier run wrote.
  std::filesystem::remove_all(final_dir, ec);
  if (ec) return Status::FromErrno("remove " + final_dir, ec.value());
  CrashPoint("before_sink_rename");
  std::filesystem::rename(tmp_dir, final_dir, ec);
  if (ec) return Status::FromErrno("rename " + tmp_dir, ec.value());
  return SyncPath(dir_);
}

Result<std::vector<std::string>> JsonFileSink::ReadLatest(const std::string& query_dir) {
  std::map<int64_t, std::string> batches;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(query_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("batch=")) continue;
    batches[std::stoll(name.substr(6))] = entry.path().string();
  }
  if (ec) return Status::IOError(fmt::format("list {}: {}", query_dir, ec.message()));
  std::map<std::string, std::string> latest;
  for (const auto& [id, dir] : batches) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(dir + "/part-00000.jsonl"));
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(start, end - start);
      start = end + 1;
      if (line.empty()) continue;
      boost::system::error_code jec;
      boost::json::value v = boost::json::parse(line, jec);
      if (jec || !v.is_object() || !v.as_object().contains("_id")) {
        return Status::Corruption(fmt::format("{}: a line is not an output record", dir));
      }
      latest[std::string(v.at("_id").as_string())] = line;
    }
  }
  std::vector<std::string> out;
  for (auto& [id, line] : latest) out.push_back(std::move(line));
  return out;
}

}  // namespace runnel::sinks
