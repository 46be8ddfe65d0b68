#include "engine/spill.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include <fmt/format.h>

#include "common/crash_point.h"
#include "common/file_util.h"

namespace runnel::engine {
namespace {

constexpr size_t kWriteBuffer = size_t{1} << 20;

// An anonymous file in `dir`: O_TMPFILE where the file system has it, else a unique name
// unlinked at once.
Result<int> OpenAnonymous(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    return Status::FromErrno("create a spill file in " + dir, errno);
  }
  std::string name = dir + "/spill-XXXXXX";
  fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("create a spill file in " + dir, errno);
  ::unlink(name.c_str());
  return fd;
}

}  // namespace

Result<std::shared_ptr<SpillFile>> SpillFile::Create(const std::string& dir, std::string what) {
  ASSIGN_OR_RETURN(int fd, OpenAnonymous(dir));
  return std::shared_ptr<SpillFile>(new SpillFile(fd, dir, std::move(what)));
}

SpillFile::SpillFile(int fd, std::string dir, std::string what)
    : fd_(fd), dir_(std::move(dir)), what_(std::move(what)) {}

SpillFile::~SpillFile() { ::close(fd_); }

Status SpillFile::Append(std::string_view bytes) {
  buffer_.append(bytes);
  size_ += static_cast<int64_t>(bytes.size());
  return buffer_.size() >= kWriteBuffer ? Flush() : Status::OK();
}

Status SpillFile::Finish() {
  RETURN_NOT_OK(Flush());
  buffer_.shrink_to_fit();
  CrashPoint("mid_spill");  // a run on disk, the batch not done
  return Status::OK();
}

Status SpillFile::Flush() {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::pwrite(fd_, buffer_.data() + done, buffer_.size() - done, written_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      return Status::FromErrno(
          fmt::format("{}: spilling to {} failed after {} MiB (the task passed its memory share; "
                      "free space there, or raise engine.memory_budget so it spills less)",
                      what_, dir_, written_ >> 20),
          err);
    }
    done += static_cast<size_t>(n);
    written_ += n;
  }
  buffer_.clear();
  return Status::OK();
}

Status SpillFile::ReadAt(int64_t offset, size_t n, std::string* out) const {
  const size_t start = out->size();
  out->resize(start + n);
  size_t done = 0;
  while (done < n) {
    const ssize_t r =
        ::pread(fd_, out->data() + start + done, n - done, offset + static_cast<int64_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno(what_ + ": read a spill file", errno);
    if (r == 0) return Status::Corruption(what_ + ": a spill file is shorter than written");
    done += static_cast<size_t>(r);
  }
  return Status::OK();
}

SpillReader::SpillReader(std::shared_ptr<const SpillFile> file, int64_t offset, int64_t length,
                         size_t chunk_bytes)
    : file_(std::move(file)), offset_(offset), remaining_(length), chunk_(chunk_bytes) {}

Status SpillReader::Refill() {
  buffer_.erase(0, pos_);
  pos_ = 0;
  // A record longer than a chunk: read at least as much again as is buffered.
  const size_t want = std::max(chunk_, buffer_.size());
  const size_t n = static_cast<size_t>(std::min<int64_t>(remaining_, static_cast<int64_t>(want)));
  RETURN_NOT_OK(file_->ReadAt(offset_, n, &buffer_));
  offset_ += static_cast<int64_t>(n);
  remaining_ -= static_cast<int64_t>(n);
  return Status::OK();
}

Status ResetSpillDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return Status::FromErrno("remove " + dir, ec.value());
  return MakeDirs(dir);
}

}  // namespace runnel::engine
