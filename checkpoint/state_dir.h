// Ownership of a service's state directory (service.state_dir), and what it holds besides
// the live database and the checkpoints.
//
// StateDirLock: one process at a time owns a state directory. Acquire takes an exclusive
// flock(2) on STATE_DIR/LOCK before anything else in the directory is touched, and writes the
// owner's pid into the file; the lock is released when the object is destroyed or the process
// exits (kill -9 included: the kernel drops flock locks with the last descriptor). A second
// process (or a second Acquire in the same process) is refused at once with Unavailable,
// naming the directory and the holder's pid; it changes nothing.
//
// Thread safety: a StateDirLock is immutable after Acquire; the free functions are
// thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace runnel::checkpoint {

inline constexpr char kLockFile[] = "LOCK";

class StateDirLock {
 public:
  // Creates `state_dir` (and parents) if missing, then locks STATE_DIR/LOCK. Unavailable when
  // another holder has it; IOError when the directory or file cannot be made or opened.
  static Result<std::unique_ptr<StateDirLock>> Acquire(const std::string& state_dir);
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

  const std::string& dir() const { return dir_; }

 private:
  StateDirLock(std::string dir, int fd) : dir_(std::move(dir)), fd_(fd) {}
  const std::string dir_;
  const int fd_;
};

// Live databases set aside by earlier starts (STATE_DIR/db.broken-<unix ms>), oldest first.
// They are never deleted by Runnel: an operator inspects and removes them.
std::vector<std::string> BrokenStates(const std::string& state_dir);

}  // namespace runnel::checkpoint
