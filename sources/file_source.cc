#include "sources/file_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace runnel::sources {
namespace {

// Advances from `start` over up to `max_lines` lines; returns the end byte and lines taken.
// Whole lines from `start`: at most `max_lines`, ending at most `max_bytes` after `start`
// (always at least one line, however long, so a batch moves). Returns (end byte, lines).
Result<std::pair<int64_t, int64_t>> ScanLines(const std::string& path, int64_t start,
                                              int64_t max_lines, int64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  std::string buf(1 << 20, '\0');
  int64_t pos = start;
  int64_t lines = 0;
  int64_t end = start;
  while (lines < max_lines) {
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Status::FromErrno("read " + path, err);
    }
    if (n == 0) {
      if (end < pos && (lines == 0 || pos - start <= max_bytes)) {  // a last line, no newline
        ++lines;
        end = pos;
      }
      break;
    }
    const char* data = buf.data();
    size_t i = 0;
    bool full = false;
    while (lines < max_lines) {
      const void* nl = std::memchr(data + i, '\n', static_cast<size_t>(n) - i);
      if (nl == nullptr) break;
      const size_t next = static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
      if (lines > 0 && pos + static_cast<int64_t>(next) - start > max_bytes) {
        full = true;
        break;
      }
      i = next;
      ++lines;
      end = pos + static_cast<int64_t>(i);
    }
    if (full) break;
    pos += n;
  }
  ::close(fd);
  return std::pair<int64_t, int64_t>(end, lines);
}

}  // namespace

Result<std::shared_ptr<FileSource>> FileSource::Make(streaming::StreamingContext* ssc,
                                                     FileSourceOptions options) {
  if (options.max_bytes_per_batch <= 0) {
    return Status::InvalidArgument("max_bytes_per_batch must be positive");
  }
  if (options.max_records_per_batch <= 0) {
    return Status::InvalidArgument("max_records_per_batch must be positive");
  }
  std::error_code ec;
  std::vector<std::string> files;
  if (std::filesystem::is_directory(options.path, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(options.path, ec)) {
      if (entry.is_regular_file()) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
  } else if (std::filesystem::is_regular_file(options.path, ec)) {
    files.push_back(options.path);
  } else {
    return Status::NotFound(
        fmt::format("file source {}: no file or directory {}", options.name, options.path));
  }
  auto source =
      std::shared_ptr<FileSource>(new FileSource(ssc, std::move(options), std::move(files)));
  source->registration_ = ssc->AddInput(source.get());
  return source;
}

FileSource::FileSource(streaming::StreamingContext* ssc, FileSourceOptions options,
                       std::vector<std::string> files)
    : PlannedInput(ssc, std::vector<LinePosition>(files.size())),
      options_(std::move(options)),
      files_(std::move(files)) {}

Status FileSource::Restore(const streaming::SourcePositions& positions) {
  std::vector<LinePosition> restored = position();
  for (size_t i = 0; i < files_.size(); ++i) {
    auto it = positions.find("file:" + files_[i]);
    if (it == positions.end()) continue;
    const streaming::SourcePosition& p = it->second;
    if (!p.has_file() || p.file().byte() < 0) {
      return Status::Corruption(
          fmt::format("bad committed position {} for {}", streaming::PositionText(p), files_[i]));
    }
    restored[i] = {p.file().byte(), p.file().line()};
  }
  SetPosition(std::move(restored));
  return Status::OK();
}

Result<FileSource::Planned> FileSource::PlanFrom(streaming::BatchInfo* info,
                                                 const std::vector<LinePosition>& from) {
  Planned planned{{}, from};
  int64_t budget = options_.max_records_per_batch;
  int64_t bytes_budget = options_.max_bytes_per_batch;
  const int chunks = std::max(1, 2 * this->ssc().engine().options().workers);
  for (size_t i = 0; i < files_.size() && budget > 0 && bytes_budget > 0; ++i) {
    LinePosition& pos = planned.next[i];
    ASSIGN_OR_RETURN(auto scanned, ScanLines(files_[i], pos.byte, budget, bytes_budget));
    const auto [end, lines] = scanned;
    if (lines == 0) continue;
    info->progress.input[options_.name + ":" + files_[i]] =
        fmt::format("lines [{}, {}) bytes [{}, {})", pos.line, pos.line + lines, pos.byte, end);
    // Cut the range into byte chunks for parallelism; each line belongs to the chunk it
    // starts in, so any cut points are correct.
    const int64_t size = end - pos.byte;
    const int64_t parts = std::clamp<int64_t>(size / (256 << 10), 1, chunks);
    for (int64_t c = 0; c < parts; ++c) {
      planned.plan.push_back(
          {files_[i], pos.byte + size * c / parts, pos.byte + size * (c + 1) / parts});
    }
    budget -= lines;
    bytes_budget -= size;
    info->progress.records_in += lines;
    pos.byte = end;
    pos.line += lines;
  }
  exhausted_ = planned.plan.empty();
  for (size_t i = 0; i < files_.size(); ++i) {
    streaming::v1::FilePosition* p = info->positions["file:" + files_[i]].mutable_file();
    p->set_byte(planned.next[i].byte);
    p->set_line(planned.next[i].line);
  }
  return planned;
}

bool FileSource::HasPendingData() const {
  const std::vector<LinePosition> at = position();
  for (size_t i = 0; i < files_.size(); ++i) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(files_[i], ec);
    if (!ec && static_cast<int64_t>(size) > at[i].byte) return true;
  }
  return false;
}

Result<std::optional<engine::Rdd<std::string>>> FileSource::Read(
    const std::vector<engine::Split>& plan) {
  return std::optional(this->ssc().engine().TextRanges(plan, options_.name));
}

}  // namespace runnel::sources
