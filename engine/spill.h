// Spill files: what a task's tables write to disk when they pass the task's memory share
// (sorted runs of a reduce-side merge, map outputs of a shuffle), and how they are read back.
//
// A SpillFile is anonymous: it is created with O_TMPFILE (or created and unlinked at once)
// in the context's spill directory, so it has no name on disk and the kernel frees it when the
// last descriptor closes: after the batch, and after any crash (kill -9 included). Nothing is
// left to clean up on start; the directory is emptied then anyway, for files of older versions.
//
// Thread safety: Append and Finish from one thread; after Finish, ReadAt from any thread.
// SpillReader belongs to one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace runnel::engine {

class SpillFile {
 public:
  // `what` names the data in errors ("stage 3 (aggregate) shuffle output").
  static Result<std::shared_ptr<SpillFile>> Create(const std::string& dir, std::string what);
  ~SpillFile();
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  // Buffered; a full disk fails here or in Finish with ResourceExhausted, naming the data, the
  // directory, how much was written and the setting that decides when a task spills.
  Status Append(std::string_view bytes);
  // Writes what is buffered. No fsync: a spill file never outlives the process.
  Status Finish();
  // Bytes appended so far (the offset of the next Append).
  int64_t size() const { return size_; }
  Status ReadAt(int64_t offset, size_t n, std::string* out) const;

 private:
  SpillFile(int fd, std::string dir, std::string what);
  Status Flush();

  const int fd_;
  const std::string dir_;
  const std::string what_;
  std::string buffer_;
  int64_t size_ = 0;     // appended
  int64_t written_ = 0;  // on disk
};

// A byte range of a spill file read forward in chunks: Next hands `parse` a view of the
// buffered bytes; parse consumes one record from it and returns true, or returns false when
// the view holds only part of one (the reader then reads more and calls it again).
class SpillReader {
 public:
  SpillReader(std::shared_ptr<const SpillFile> file, int64_t offset, int64_t length,
              size_t chunk_bytes = size_t{256} << 10);

  // True: a record was parsed; false: the range is done. Corruption when the range ends
  // inside a record.
  template <typename Parse>
  Result<bool> Next(Parse&& parse) {
    for (;;) {
      std::string_view rest = std::string_view(buffer_).substr(pos_);
      if (!rest.empty()) {
        std::string_view view = rest;
        if (parse(&view)) {
          pos_ += rest.size() - view.size();
          return true;
        }
      }
      if (remaining_ == 0) {
        if (rest.empty()) return false;
        return Status::Corruption("a spill file ends inside a record");
      }
      RETURN_NOT_OK(Refill());
    }
  }

 private:
  Status Refill();

  std::shared_ptr<const SpillFile> file_;
  int64_t offset_;     // of the next read
  int64_t remaining_;  // bytes of the range not read yet
  size_t chunk_;
  std::string buffer_;
  size_t pos_ = 0;
};

// Empties `dir` (creating it when missing): spill files an older version left by name.
Status ResetSpillDir(const std::string& dir);

}  // namespace runnel::engine
