// Small file helpers with Status errors, shared by every module that writes files.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace runnel {

// A file written front to back and made visible whole: Open creates "<path>.tmp-<pid>-<n>",
// Append adds bytes, Commit (fsyncing first with `sync`) closes it and renames it to `path`.
// Destroyed without a Commit (or after a failed one), the temporary file is removed.
//
// Thread safety: one thread at a time.
class AtomicFileWriter {
 public:
  static Result<std::unique_ptr<AtomicFileWriter>> Open(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  Status Append(std::string_view bytes);
  // With `sync`, the file is fsynced before the rename (its directory is not).
  Status Commit(bool sync);

 private:
  AtomicFileWriter(std::string path, std::string tmp, int fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}
  // Closes the file (if open) and removes the temporary name; returns `st`.
  Status Abandon(Status st);

  const std::string path_;
  const std::string tmp_;
  int fd_;
};

// Writes `path` through "<path>.tmp-<pid>-<n>" and a rename, so readers see all or nothing.
// With `sync`, the file is fsynced before the rename and its directory after: durable once
// this returns, even across power loss.
Status WriteFileAtomically(const std::string& path, std::string_view content, bool sync = false);

// fsync of a file or directory (a directory: so renames and new entries in it are durable).
Status SyncPath(const std::string& path);

// The whole file; ResourceExhausted when it holds more than `max_bytes` (a config or secret
// named by mistake as /dev/zero or a log file must not eat the memory).
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = SIZE_MAX);
// Reads `path` front to back, handing each chunk (up to 64 KiB) to `chunk`; stops early (OK)
// when `chunk` returns false.
Status ReadFileChunks(const std::string& path, const std::function<bool(std::string_view)>& chunk);

// Creates `dir` and its parents if missing.
Status MakeDirs(const std::string& dir);

}  // namespace runnel
