#include "common/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

namespace runnel {

Status WriteFileAtomically(const std::string& path, std::string_view content, bool sync) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = fmt::format("{}.tmp-{}-{}", path, getpid(), counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("open " + tmp, errno);
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::FromErrno("write " + tmp, err);
    }
    written += static_cast<size_t>(n);
  }
  if (sync && ::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::FromErrno("fsync " + tmp, err);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno("close " + tmp, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno("rename " + tmp + " -> " + path, err);
  }
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
