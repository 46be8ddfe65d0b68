#include "common/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

namespace runnel {

Result<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Open(std::string path) {
  static std::atomic<uint64_t> counter{0};
  std::string tmp = fmt::format("{}.tmp-{}-{}", path, getpid(), counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("open " + tmp, errno);
  return std::unique_ptr<AtomicFileWriter>(
      new AtomicFileWriter(std::move(path), std::move(tmp), fd));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) Abandon(Status::OK()).IgnoreError();
}

Status AtomicFileWriter::Abandon(Status st) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  return st;
}

Status AtomicFileWriter::Append(std::string_view bytes) {
  if (fd_ < 0) return Status::FailedPrecondition("append to " + tmp_ + " after it ended");
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Abandon(Status::FromErrno("write " + tmp_, errno));
    }
    written += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status AtomicFileWriter::Commit(bool sync) {
  if (fd_ < 0) return Status::FailedPrecondition("commit of " + tmp_ + " after it ended");
  if (sync && ::fsync(fd_) != 0) return Abandon(Status::FromErrno("fsync " + tmp_, errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return Abandon(Status::FromErrno("close " + tmp_, errno));
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    return Abandon(Status::FromErrno("rename " + tmp_ + " -> " + path_, errno));
  }
  return Status::OK();
}

Status WriteFileAtomically(const std::string& path, std::string_view content, bool sync) {
  ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file, AtomicFileWriter::Open(path));
  RETURN_NOT_OK(file->Append(content));
  RETURN_NOT_OK(file->Commit(sync));
  if (sync) return SyncPath(std::filesystem::path(path).parent_path().string());
  return Status::OK();
}

Status SyncPath(const std::string& path) {
  const int fd = ::open(path.empty() ? "." : path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno("fsync " + path, err);
  return Status::OK();
}

Status ReadFileChunks(const std::string& path, const std::function<bool(std::string_view)>& chunk) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  std::string buf(1 << 16, '\0');
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Status::FromErrno("read " + path, err);
    }
    if (n == 0 || !chunk(std::string_view(buf.data(), static_cast<size_t>(n)))) break;
  }
  ::close(fd);
  return Status::OK();
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  std::string out;
  bool too_long = false;
  RETURN_NOT_OK(ReadFileChunks(path, [&](std::string_view chunk) {
    too_long = chunk.size() > max_bytes - out.size();
    if (!too_long) out += chunk;
    return !too_long;
  }));
  if (too_long) {
    return Status::ResourceExhausted(fmt::format("{} is longer than {} bytes", path, max_bytes));
  }
  return out;
}

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  // ENOSPC/EDQUOT and EIO keep their retry meaning (Status::FromErrno).
  if (ec) return Status::FromErrno("mkdir -p " + dir, ec.value());
  return Status::OK();
}

}  // namespace runnel
