#include "checkpoint/state_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/file_util.h"

namespace runnel::checkpoint {

Result<std::unique_ptr<StateDirLock>> StateDirLock::Acquire(const std::string& state_dir) {
  RETURN_NOT_OK(MakeDirs(state_dir));
  const std::string path = state_dir + "/" + kLockFile;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(fmt::format("open {}: {}", path, std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder(32, '\0');
    const ssize_t n = ::pread(fd, holder.data(), holder.size(), 0);
    holder.resize(n > 0 ? static_cast<size_t>(n) : 0);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return Status::IOError(fmt::format("lock {}: {}", path, std::strerror(err)));
    }
    return Status::Unavailable(fmt::format(
        "state directory {} is in use by another runnel process (pid {}); one process owns a "
        "state directory at a time",
        state_dir, holder.empty() ? "unknown" : holder));
  }
  const std::string pid = fmt::format("{}\n", ::getpid());
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd);
    return Status::IOError(fmt::format("write {}: {}", path, std::strerror(err)));
  }
  return std::unique_ptr<StateDirLock>(new StateDirLock(state_dir, fd));
}

StateDirLock::~StateDirLock() { ::close(fd_); }  // drops the flock

std::vector<std::string> BrokenStates(const std::string& state_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(state_dir, ec)) {
    if (e.path().filename().string().starts_with("db.broken-")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace runnel::checkpoint
