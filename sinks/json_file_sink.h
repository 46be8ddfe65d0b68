// JsonFileSink: a query's output records as JSON lines under PATH/QUERY/batch=ID/part-NNNNN.jsonl,
// one file per part with records (a query's reduce partition; part-00000 for a batch written
// whole). An _id is in one part of a batch.
//
// A batch's parts are written into a temporary directory PATH/QUERY/.tmp-batch=ID (each file
// chunk by chunk under a temporary name, then fsynced and renamed by the thread that wrote
// its last chunk), then Publish fsyncs the
// directory and renames it to batch=ID (the parent fsynced too): a batch directory is complete
// once it exists. Begin empties the temporary directory, so a batch rerun after a crash
// between output and commit replaces its whole directory, and the sink's content is exact
// after any crash. The latest batch holding an _id has its current value. Batches without
// records write nothing.
//
// Incarnations: batch ids restart at 0 when a state starts over (its database lost or removed),
// and a new batch=0 would replace the old one while the old higher-numbered batches shadow the
// new values. Claim ties PATH/QUERY to one state's incarnation (the file PATH/QUERY/INCARNATION)
// and refuses a directory that holds another incarnation's batches.
//
// Thread safety: as RecordSink (sinks/record_sink.h).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "common/ids.h"
#include "common/result.h"
#include "sinks/record_sink.h"

namespace runnel::sinks {

inline constexpr char kIncarnationFile[] = "INCARNATION";

class JsonFileSink final : public RecordSink {
 public:
  // `root` is the configured path; `query` a validated query name (no '/', no "..").
  JsonFileSink(std::string root, std::string query);

  Status Begin(BatchId batch) override;
  Status WritePart(BatchId batch, int part, const std::vector<std::string>& records, bool first,
                   bool last) override;
  Status Publish(BatchId batch) override;

  // Before the first Write: marks PATH/QUERY as the output of state incarnation `incarnation`.
  // OK when it already is, or holds no batch yet. A directory marked by another incarnation is
  // refused (FailedPrecondition, naming both). Batches without a mark (written before
  // incarnations existed) are adopted only when `adopt_unmarked` (the state has committed
  // batches of its own, so they are its output), refused otherwise.
  Status Claim(const std::string& incarnation, bool adopt_unmarked);

  // PATH/QUERY
  const std::string& dir() const { return dir_; }

  // The latest value per _id over all batch directories (for tests and tools): reads every
  // batch=N in order of N, and each of its part files.
  static Result<std::vector<std::string>> ReadLatest(const std::string& query_dir);

 private:
  std::string TmpDir(BatchId batch) const;

  const std::string dir_;
  std::mutex mu_;
  // Parts being written, by (batch, part); guarded by mu_ (each file by its part's writer).
  std::map<std::pair<int64_t, int>, std::unique_ptr<AtomicFileWriter>> open_;
};

}  // namespace runnel::sinks
