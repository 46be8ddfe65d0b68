// File source: JSON lines (or any lines) read in order from files, one input partition per
// file. Each batch takes at most `max_records_per_batch` lines, from the files in path order;
// its input is a fixed set of byte ranges (whole lines), so a batch's RDD is recomputable from
// its lineage, and positions ("file:<path>" -> "<byte offset> <line number>") commit with the
// batch like Kafka offsets. A restarted query resumes from the committed positions.
//
// Files are read as they are when a batch is planned; a last line without a newline is taken
// as a complete line.
//
// Use it as a stream: DStream<std::string>(source).
//
// Thread safety: Plan and Compute run on the streaming context's batch thread; Restore before
// the context starts.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "streaming/dstream.h"

namespace runnel::sources {

struct FileSourceOptions {
  // A file, or a directory whose regular files are read in name order.
  std::string path;
  // Lines per batch, over all files.
  int64_t max_records_per_batch = 100000;
  // Name used in position keys and progress records.
  std::string name = "file";
};

class FileSource final : public streaming::DStreamNode<std::string>,
                         public streaming::InputStreamBase {
 public:
  // Lists the files now (new files in a directory are not picked up later).
  static Result<std::shared_ptr<FileSource>> Make(streaming::StreamingContext* ssc,
                                                  FileSourceOptions options);

  // Continues from positions a committed batch recorded (keys this source does not know are
  // ignored).
  Status Restore(const std::map<std::string, std::string>& positions);

  Status Plan(streaming::BatchInfo* info) override;
  void Abandon(BatchTime t) override;

  // True when the last planned batch found nothing left to read.
  bool exhausted() const;
  // True when a file holds bytes past this source's position (what --available-now drains).
  bool HasPendingData() const override;

 protected:
  Result<std::optional<engine::Rdd<std::string>>> Compute(BatchTime t) override;

 private:
  struct FilePosition {
    int64_t byte = 0;
    int64_t line = 0;
  };
  FileSource(streaming::StreamingContext* ssc, FileSourceOptions options,
             std::vector<std::string> files);

  const FileSourceOptions options_;
  const std::vector<std::string> files_;
  mutable std::mutex mu_;
  std::vector<FilePosition> positions_;                    // guarded by mu_
  std::map<int64_t, std::vector<engine::Split>> planned_;  // guarded by mu_
  bool exhausted_ = false;                                 // guarded by mu_
  // The positions before the last Plan, and its batch time (for Abandon); guarded by mu_.
  std::pair<int64_t, std::vector<FilePosition>> before_last_plan_{-1, {}};
  streaming::StreamingContext::Registration registration_;  // last: unregisters first
};

}  // namespace runnel::sources
