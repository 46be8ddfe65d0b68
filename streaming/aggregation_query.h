// AggregationQuery: the flagship query as a building block. Per batch of JSON lines:
//   parse (only the fields the query uses) -> drop invalid records (counted by reason) ->
//   key by (group values, window start) for every window of the record's event time -> drop
//   windows the watermark has closed (late, counted) -> partial aggregates with map-side
//   combine (ReduceByKey) -> merge into the state store -> emit records (update: every
//   changed aggregate with its full value; final: every window the new watermark closed) ->
//   commit state, source positions, watermark and batch id in ONE StateStore::Commit.
// Output is handed to the sink before the commit, under the batch id: a batch that ran but
// did not commit runs again with the same id and input, and its sink output is replaced. In
// update mode each reduce partition hands its own records to the sink from its task, as one
// part (see sinks/record_sink.h); final mode's records are one part, from the driver.
// An empty batch (no record, no position moved, same watermark) commits nothing and writes no
// output; batch ids in state therefore increase but may skip.
//
// Thread safety: a query runs on its streaming context's runner thread; counters and reads
// (ReadRecords, counters()) may be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "streaming/aggregates.h"
#include "streaming/aggregation_options.h"
#include "streaming/dstream.h"
#include "streaming/event_time.h"
#include "streaming/state_key.h"
#include "streaming/state_store.h"

namespace runnel::streaming {

struct InvalidRecord {
  std::string reason;  // empty, too_large, malformed_json, not_an_object, missing_field,
                       // wrong_type, bad_timestamp, bad_number
  std::string line;
};

// Running totals since the query started (for metrics).
struct QueryCounters {
  int64_t records = 0;
  int64_t late = 0;
  int64_t filtered = 0;  // records a `where:` condition left out
  int64_t batches = 0;
  std::map<std::string, int64_t> invalid;  // by reason
};

class AggregationQuery {
 public:
  // Where a batch's output records (one JSON object each) go, in parts, before the batch
  // commits: `begin` on the query's thread before the batch's job runs; `part` from the
  // workers at once, each reduce partition's records in chunks (`first` starts the part, again
  // when its task is retried, replacing what the earlier attempt wrote; `last` ends it);
  // `publish` on the query's thread after every part.
  struct Output {
    std::function<Status(BatchId)> begin;
    std::function<Status(BatchId, int part, const std::vector<std::string>& records, bool first,
                         bool last)>
        part;
    std::function<Status(BatchId)> publish;
  };
  // Receives the batch's output records (one JSON object each, in key order) at once.
  using OutputFn = std::function<Status(BatchId, const std::vector<std::string>& records)>;
  using DeadLetterFn = std::function<Status(BatchId, const std::vector<InvalidRecord>&)>;
  // Receives the batch's late records (the raw lines), before the batch commits.
  using LateFn = std::function<Status(BatchId, const std::vector<std::string>& lines)>;

  // Validates `options`; `store` must outlive the query.
  static Result<std::shared_ptr<AggregationQuery>> Make(AggregationOptions options,
                                                        StateStore* store);

  // Reads the last committed batch of the query (watermark) from the store. Returns the id
  // the next batch must have, and the committed source positions. When the state was written
  // by a different definition (see Definition()), FailedPrecondition, or with
  // reset_on_definition_change the state is dropped first.
  Result<CommittedBatch> Recover();

  // What the state's meaning depends on (group_by, event time, window, lateness, aggregates),
  // as canonical text, and its 64-bit XXH3 fingerprint in hex. Stored with every commit.
  const std::string& Definition() const { return definition_; }
  // The same for `options`, without making a query (a config reload compares definitions).
  static std::string DefinitionText(const AggregationOptions& options);
  const std::string& Fingerprint() const { return fingerprint_; }

  // Runs the query on every batch of `lines`.
  void Attach(const DStream<std::string>& lines, Output output, DeadLetterFn dead_letters = {});
  // The same with the batch's parts gathered in memory and handed to `sink` whole (tests).
  void Attach(const DStream<std::string>& lines, OutputFn sink, DeadLetterFn dead_letters = {});

  // Sends late records to `sink` as well as counting them. Call before the first batch.
  void SetLateOutput(LateFn sink) { late_output_ = std::move(sink); }

  // Runs one batch over `lines` (what Attach registers per batch).
  Status RunBatch(const engine::Rdd<std::string>& lines, BatchInfo* info);

  // Output records read from committed state, in key order: all of them, or those of one
  // group (values for a prefix of group_by) with window start in [from_ms, to_ms).
  Result<std::vector<std::string>> ReadRecords(const std::vector<std::string>& group_prefix = {},
                                               EventTimeMs from_ms = INT64_MIN,
                                               EventTimeMs to_ms = INT64_MAX);
  // One page of the same: at most `limit` records after the record whose `_id` is `after`
  // (empty: from the start), in key order. Memory is bounded by `limit`, whatever the state
  // size. InvalidArgument when `after` is not an `_id` of this query.
  struct Page {
    std::vector<std::string> records;
    std::string next_after;  // the last record's `_id` when more may follow, else empty
  };
  Result<Page> ReadPage(const std::vector<std::string>& group_prefix, EventTimeMs from_ms,
                        EventTimeMs to_ms, const std::string& after, size_t limit);

  const AggregationOptions& options() const { return *options_; }
  QueryCounters counters() const;
  EventTimeMs watermark() const;

 private:
  AggregationQuery(std::shared_ptr<const AggregationOptions> options, StateStore* store);

  // The stages of RunBatch, in order.
  struct Scan;
  // Runs the batch's job: parse, key, combine; what it found and counted.
  Result<Scan> ScanBatch(const engine::Rdd<std::string>& lines, EventTimeMs watermark_now,
                         BatchInfo* info);
  // on_invalid: fail the batch, or hand the invalid records to the dead-letter sink.
  Status HandleInvalid(BatchId batch_id, const Scan& scan);
  struct MergedPart;
  // Reads the stored rows of a chunk of one partition's changed keys (in key order, one
  // MultiGet), merges the batch's partials into them, adds the puts (and, in update mode, the
  // output records) to `part`. Runs on a worker; the chunk's keys are moved out.
  Status MergeChunk(std::vector<std::pair<std::string, AggRow>>* chunk, bool update,
                    MergedPart* part) const;
  // Final mode's output: every window the watermark's move from `from` to `to` closed. With
  // the window-end index, it reads only those windows' rows; without (a state written in
  // update mode or before the index existed), it scans the query's state.
  Result<std::vector<std::string>> SelectFinal(const BatchCommit& commit, EventTimeMs from,
                                               EventTimeMs to);
  // Whether the final-mode index covers every key, from the state's marker (Recover).
  Status LoadIndexState(bool fresh);
  // Whether some position differs from the last committed one.
  bool PositionsMoved(const SourcePositions& positions) const;

  std::string FormatRecord(const std::string& key, const AggRow& row) const;
  // Window starts before this have left state under retention (INT64_MIN: none).
  EventTimeMs ExpireBefore(EventTimeMs watermark) const;

  const std::shared_ptr<const AggregationOptions> options_;
  StateStore* const store_;
  const std::string definition_;
  const std::string fingerprint_;
  Output output_;
  DeadLetterFn dead_letters_;
  LateFn late_output_;
  // Final mode's window-end index (kIndexPrefix keys, beside the state keys in the query's
  // namespace): whether it covers every key, and the marker value the next commit must write
  // (empty: none). The runner thread only.
  bool indexed_ = false;
  std::string marker_to_write_;

  mutable std::mutex mu_;
  Watermark watermark_;     // guarded by mu_
  QueryCounters counters_;  // guarded by mu_
  // Source positions as of the last commit: a batch that read nothing, moved no position and
  // left the watermark where it was has nothing to commit (no write, no fsync, no output).
  SourcePositions committed_positions_;  // guarded by mu_
};

// An output record's `_id` is its group values last to first, then `ts`, joined by '|'. Inside
// a value, '|' and '\\' are escaped with a '\\', so two groups never share an `_id` (values
// without either character keep the plain joined form). Appends `value` and a '|' to `id`.
void AppendIdPart(std::string_view value, std::string* id);
// The group values (in group_by order) and window start of an `_id` with `group_count` group
// values; InvalidArgument when it is not one.
Status ParseId(std::string_view id, size_t group_count, std::vector<std::string>* values,
               EventTimeMs* window_start);

}  // namespace runnel::streaming
