#include "sinks/json_file_sink.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

std::string JsonFileSink::TmpDir(BatchId batch) const {
  return fmt::format("{}/.tmp-batch={}", dir_, batch);
}

Status JsonFileSink::Begin(BatchId batch) {
  {
    std::lock_guard lock(mu_);
    std::erase_if(open_, [&](const auto& p) { return p.first.first == batch.value(); });
  }
  // What an earlier attempt of this batch left (it may have had other parts) goes.
  std::error_code ec;
  std::filesystem::remove_all(TmpDir(batch), ec);
  if (ec) return Status::FromErrno("remove " + TmpDir(batch), ec.value());
  return Status::OK();
}

Status JsonFileSink::WritePart(BatchId batch, int part, const std::vector<std::string>& records,
                               bool first, bool last) {
  const std::pair<int64_t, int> id{batch.value(), part};
  AtomicFileWriter* file = nullptr;
  {
    std::lock_guard lock(mu_);
    if (first) open_.erase(id);  // a retried task's part starts over
    if (auto it = open_.find(id); it != open_.end()) file = it->second.get();
  }
  const std::string path = fmt::format("{}/part-{:05d}.jsonl", TmpDir(batch), part);
  if (first && ::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno("remove " + path, errno);  // what an earlier attempt finished
  }
  if (!records.empty()) {
    if (file == nullptr) {
      const std::string tmp_dir = TmpDir(batch);
      RETURN_NOT_OK(MakeDirs(tmp_dir));  // parts may create it at once: an existing one is fine
      ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> opened, AtomicFileWriter::Open(path));
      file = opened.get();
      std::lock_guard lock(mu_);
      open_[id] = std::move(opened);
    }
    size_t bytes = 0;
    for (const std::string& r : records) bytes += r.size() + 1;
    std::string content;
    content.reserve(bytes);
    for (const std::string& r : records) {
      content += r;
      content.push_back('\n');
    }
    RETURN_NOT_OK(file->Append(content));
  }
  if (!last || file == nullptr) return Status::OK();
  Status st = file->Commit(/*sync=*/true);
  std::lock_guard lock(mu_);
  open_.erase(id);
  return st;
}

Status JsonFileSink::Publish(BatchId batch) {
  const std::string tmp_dir = TmpDir(batch);
  const std::string final_dir = fmt::format("{}/batch={}", dir_, batch);
  std::error_code ec;
  const bool has_parts = std::filesystem::exists(tmp_dir, ec);
  if (ec) return Status::FromErrno("stat " + tmp_dir, ec.value());
  if (!has_parts) {
    // No part had records. An earlier run of this batch that did (it read more before a
    // restart cut the batch smaller) must not outlive it.
    const bool stale = std::filesystem::exists(final_dir, ec);
    if (ec) return Status::FromErrno("stat " + final_dir, ec.value());
    if (!stale) return Status::OK();
    std::filesystem::remove_all(final_dir, ec);
    if (ec) return Status::FromErrno("remove " + final_dir, ec.value());
    return SyncPath(dir_);
  }
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
    std::vector<std::string> parts;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with("part-") && name.ends_with(".jsonl")) parts.push_back(name);
    }
    if (ec) return Status::IOError(fmt::format("list {}: {}", dir, ec.message()));
    std::sort(parts.begin(), parts.end());
    std::string text;
    for (const std::string& name : parts) {
      ASSIGN_OR_RETURN(std::string part, ReadFile(dir + "/" + name));
      text += part;
    }
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
