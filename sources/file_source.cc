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
Result<std::pair<int64_t, int64_t>> ScanLines(const std::string& path, int64_t start,
                                              int64_t max_lines) {
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
      if (end < pos) {  // a last line without a newline
        ++lines;
        end = pos;
      }
      break;
    }
    const char* data = buf.data();
    size_t i = 0;
    while (lines < max_lines) {
      const void* nl = std::memchr(data + i, '\n', static_cast<size_t>(n) - i);
      if (nl == nullptr) break;
      i = static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
      ++lines;
      end = pos + static_cast<int64_t>(i);
    }
    pos += n;
  }
  ::close(fd);
  return std::pair<int64_t, int64_t>(end, lines);
}

}  // namespace

Result<std::shared_ptr<FileSource>> FileSource::Make(streaming::StreamingContext* ssc,
                                                     FileSourceOptions options) {
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
    : DStreamNode<std::string>(ssc, ssc->batch_interval(), {}),
      options_(std::move(options)),
      files_(std::move(files)),
      positions_(files_.size()) {}

Status FileSource::Restore(const std::map<std::string, std::string>& positions) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < files_.size(); ++i) {
    auto it = positions.find("file:" + files_[i]);
    if (it == positions.end()) continue;
    FilePosition p;
    if (std::sscanf(it->second.c_str(), "%ld %ld", &p.byte, &p.line) != 2 || p.byte < 0) {
      return Status::Corruption(
          fmt::format("bad committed position {} for {}", it->second, files_[i]));
    }
    positions_[i] = p;
  }
  return Status::OK();
}

Status FileSource::Plan(streaming::BatchInfo* info) {
  std::lock_guard lock(mu_);
  before_last_plan_ = {info->progress.batch_time.value(), positions_};
  int64_t budget = options_.max_records_per_batch;
  std::vector<engine::Split> ranges;
  const int chunks = std::max(1, 2 * this->ssc().engine().options().workers);
  for (size_t i = 0; i < files_.size() && budget > 0; ++i) {
    FilePosition& pos = positions_[i];
    ASSIGN_OR_RETURN(auto scanned, ScanLines(files_[i], pos.byte, budget));
    const auto [end, lines] = scanned;
    if (lines == 0) continue;
    info->progress.input[options_.name + ":" + files_[i]] =
        fmt::format("lines [{}, {}) bytes [{}, {})", pos.line, pos.line + lines, pos.byte, end);
    // Cut the range into byte chunks for parallelism; each line belongs to the chunk it
    // starts in, so any cut points are correct.
    const int64_t size = end - pos.byte;
    const int64_t parts = std::clamp<int64_t>(size / (256 << 10), 1, chunks);
    for (int64_t c = 0; c < parts; ++c) {
      ranges.push_back({files_[i], pos.byte + size * c / parts, pos.byte + size * (c + 1) / parts});
    }
    budget -= lines;
    info->progress.records_in += lines;
    pos.byte = end;
    pos.line += lines;
  }
  exhausted_ = ranges.empty();
  for (size_t i = 0; i < files_.size(); ++i) {
    info->positions["file:" + files_[i]] =
        fmt::format("{} {}", positions_[i].byte, positions_[i].line);
  }
  planned_[info->progress.batch_time.value()] = std::move(ranges);
  return Status::OK();
}

void FileSource::Abandon(BatchTime t) {
  std::lock_guard lock(mu_);
  if (before_last_plan_.first != t.value()) return;
  positions_ = before_last_plan_.second;
  planned_.erase(t.value());
  exhausted_ = false;
}

bool FileSource::HasPendingData() const {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < files_.size(); ++i) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(files_[i], ec);
    if (!ec && static_cast<int64_t>(size) > positions_[i].byte) return true;
  }
  return false;
}

bool FileSource::exhausted() const {
  std::lock_guard lock(mu_);
  return exhausted_;
}

Result<std::optional<engine::Rdd<std::string>>> FileSource::Compute(BatchTime t) {
  std::vector<engine::Split> ranges;
  {
    std::lock_guard lock(mu_);
    auto it = planned_.find(t.value());
    if (it != planned_.end()) ranges = it->second;
    planned_.erase(planned_.begin(), planned_.upper_bound(t.value()));
  }
  return std::optional(this->ssc().engine().TextRanges(std::move(ranges), options_.name));
}

}  // namespace runnel::sources
