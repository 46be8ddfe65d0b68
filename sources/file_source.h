// File source: JSON lines (or any lines) read in order from files, one input partition per
// file. Each batch takes at most `max_records_per_batch` lines and `max_bytes_per_batch` bytes
// (whole lines; a longer line goes alone), from the files in path order;
// its input is a fixed set of byte ranges (whole lines), so a batch's RDD is recomputable from
// its lineage, and positions ("file:<path>" -> SourcePosition.file: byte offset and line
// number) commit with the batch like Kafka offsets. A restarted query resumes from the committed
// positions.
//
// Files are read as they are when a batch is planned; a last line without a newline is taken
// as a complete line.
//
// Use it as a stream: DStream<std::string>(source).
//
// Plan, abandon and confirm are the PlannedInput protocol (streaming/planned_input.h): the
// position is one (byte, line) per file, a plan the byte ranges of one batch.
//
// Thread safety: PlannedInput's (batches on the streaming context's batch thread); Restore
// before the context starts; exhausted and HasPendingData from any thread.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "streaming/planned_input.h"

namespace runnel::sources {

struct FileSourceOptions {
  // A file, or a directory whose regular files are read in name order.
  std::string path;
  // Lines per batch, over all files.
  int64_t max_records_per_batch = 100000;
  // And at most this many bytes of input (whole lines; a longer line goes alone).
  int64_t max_bytes_per_batch = int64_t{256} << 20;
  // Name used in position keys and progress records.
  std::string name = "file";
};

// Where a file stands: the next line's byte offset and number.
struct LinePosition {
  int64_t byte = 0;
  int64_t line = 0;
};

class FileSource final : public streaming::PlannedInput<std::string, std::vector<engine::Split>,
                                                        std::vector<LinePosition>> {
 public:
  // Lists the files now (new files in a directory are not picked up later).
  static Result<std::shared_ptr<FileSource>> Make(streaming::StreamingContext* ssc,
                                                  FileSourceOptions options);

  // Continues from positions a committed batch recorded (keys this source does not know are
  // ignored).
  Status Restore(const streaming::SourcePositions& positions);

  // True when the last planned batch found nothing left to read.
  bool exhausted() const { return exhausted_.load(); }
  // True when a file holds bytes past this source's position (what --available-now drains).
  bool HasPendingData() const override;

 protected:
  Result<Planned> PlanFrom(streaming::BatchInfo* info,
                           const std::vector<LinePosition>& from) override;
  Result<std::optional<engine::Rdd<std::string>>> Read(
      const std::vector<engine::Split>& plan) override;

 private:
  FileSource(streaming::StreamingContext* ssc, FileSourceOptions options,
             std::vector<std::string> files);

  const FileSourceOptions options_;
  const std::vector<std::string> files_;
  std::atomic<bool> exhausted_{false};
  streaming::StreamingContext::Registration registration_;  // last: unregisters first
};

}  // namespace runnel::sources
