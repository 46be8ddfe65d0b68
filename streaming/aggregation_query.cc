#include "streaming/aggregation_query.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/json.hpp>

#include "common/logging.h"
#include "engine/hash.h"
#include "streaming/event_parser.h"

namespace runnel::streaming {
namespace {

// Keys per MultiGet of a partition's merge with the state.
constexpr size_t kMergeChunk = 512;

std::vector<int> AllPartitionsOf(int n) {
  std::vector<int> all(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) all[static_cast<size_t>(p)] = p;
  return all;
}

// The merge of list accumulators (dead letters, late lines).
template <typename T>
std::vector<T> Concat(std::vector<T> a, std::vector<T> b) {
  a.insert(a.end(), std::make_move_iterator(b.begin()), std::make_move_iterator(b.end()));
  return a;
}

}  // namespace

Result<std::shared_ptr<AggregationQuery>> AggregationQuery::Make(AggregationOptions options,
                                                                 StateStore* store) {
  if (options.name.empty()) return Status::InvalidArgument("query needs a name");
  if (options.group_by.empty()) return Status::InvalidArgument("query needs group_by fields");
  if (options.time_field.empty()) return Status::InvalidArgument("query needs an event time field");
  if (options.window.length_ms <= 0 || options.window.slide_ms <= 0 ||
      options.window.slide_ms > options.window.length_ms) {
    return Status::InvalidArgument("window: need 0 < slide <= length");
  }
  if (options.allowed_lateness_ms < 0) return Status::InvalidArgument("allowed_lateness < 0");
  if (options.aggregates.empty()) return Status::InvalidArgument("query needs aggregates");
  for (const AggregateSpec& a : options.aggregates) {
    if (a.kind != AggregateSpec::Kind::kCount && a.field.empty()) {
      return Status::InvalidArgument(fmt::format("aggregate {} needs a field", a.name));
    }
    if (a.kind == AggregateSpec::Kind::kApproxDistinct &&
        (a.hll_precision < 4 || a.hll_precision > 18)) {
      return Status::InvalidArgument(fmt::format("aggregate {}: precision must be 4..18", a.name));
    }
  }
  if (store == nullptr) return Status::InvalidArgument("query needs a state store");
  return std::shared_ptr<AggregationQuery>(
      new AggregationQuery(std::make_shared<const AggregationOptions>(std::move(options)), store));
}

AggregationQuery::AggregationQuery(std::shared_ptr<const AggregationOptions> options,
                                   StateStore* store)
    : options_(std::move(options)),
      store_(store),
      definition_(DefinitionText(*options_)),
      fingerprint_(fmt::format("{:016x}", engine::KeyHash<std::string>()(definition_))),
      watermark_(options_->allowed_lateness_ms) {}

EventTimeMs AggregationQuery::ExpireBefore(EventTimeMs watermark) const {
  if (options_->retention_ms <= 0 || watermark == Watermark::kNone) return INT64_MIN;
  return watermark - options_->retention_ms - options_->window.length_ms;
}

std::string AggregationQuery::DefinitionText(const AggregationOptions& o) {
  std::string text = fmt::format("group_by={}; event_time={}; window={}ms/{}ms; lateness={}ms",
                                 fmt::join(o.group_by, ","), o.time_field, o.window.length_ms,
                                 o.window.slide_ms, o.allowed_lateness_ms);
  for (const AggregateSpec& a : o.aggregates) {
    text += fmt::format("; {}={}({})", a.name, AggregateKindName(a.kind), a.field);
    if (a.kind == AggregateSpec::Kind::kApproxDistinct)
      text += fmt::format("/p{}", a.hll_precision);
    if (a.kind == AggregateSpec::Kind::kCountValues && a.top_k > 0)
      text += fmt::format("/top{}", a.top_k);
  }
  static constexpr const char* kOps[] = {"==", "!=", "^="};
  for (const FieldCondition& c : o.where) {
    text += fmt::format("; where {} {} {:?}", c.field, kOps[static_cast<int>(c.op)], c.value);
  }
  return text;
}

namespace {

// Final mode's index: one key per window, kIndexPrefix + the window's end (as a state key's
// time, so it sorts by time) + the state key, with an empty value. UTF-8 never holds 0xFF, so
// no state key starts with it; the key ends with the window start, so retention drops index
// keys with their windows. The marker (kIndexPrefix alone) says whether the index covers
// every key: "1" when it was kept from the state's first batch on, "0" once an update-mode
// batch committed keys without index entries.
constexpr char kIndexPrefix = '\xff';
const std::string kIndexMarker(1, kIndexPrefix);

std::string IndexKey(EventTimeMs end, const std::string& state_key) {
  return kIndexMarker + EncodeStateKey({}, end) + state_key;
}

bool IsIndexKey(const std::string& key) { return !key.empty() && key[0] == kIndexPrefix; }

}  // namespace

Status AggregationQuery::LoadIndexState(bool fresh) {
  const bool final_mode = options_->output_mode == OutputMode::kFinal;
  ASSIGN_OR_RETURN(std::optional<std::string> marker, store_->Get(options_->name, kIndexMarker));
  if (!fresh && !marker) {
    // A state without keys is indexed trivially (a reset, then a crash before its next
    // commit, leaves one).
    bool empty = true;
    RETURN_NOT_OK(store_->Scan(options_->name, "", "", [&](const std::string&, const std::string&) {
      empty = false;
      return false;
    }));
    fresh = empty;
  }
  indexed_ = final_mode && (fresh || (marker && *marker == "1"));
  marker_to_write_.clear();
  if (final_mode && indexed_ && !marker) marker_to_write_ = "1";
  if (!final_mode && marker && *marker == "1") marker_to_write_ = "0";
  if (final_mode && !indexed_) {
    Logger("query")->info(
        "query {}: final mode without a window-end index (the state was written in update "
        "mode or by an older version): each batch scans the query's state; a new query "
        "name (a new state) builds the index from its first batch",
        options_->name);
  }
  return Status::OK();
}

Result<CommittedBatch> AggregationQuery::Recover() {
  ASSIGN_OR_RETURN(std::optional<CommittedBatch> last, store_->LastCommitted(options_->name));
  if (!last) {
    RETURN_NOT_OK(LoadIndexState(/*fresh=*/true));
    return CommittedBatch{};
  }
  if (const std::string& stored = last->record.definition_fingerprint;
      !stored.empty() && stored != Fingerprint()) {
    const std::string was =
        last->record.definition.empty() ? "fingerprint " + stored : last->record.definition;
    if (!options_->reset_on_definition_change) {
      return Status::FailedPrecondition(fmt::format(
          "query {}: its definition changed since its state was written (state: {}; config: "
          "{}). Restore the old definition, rename the query, or set on_definition_change: "
          "reset to drop its state and rebuild it from the source's starting offsets",
          options_->name, was, Definition()));
    }
    Logger("query")->warn(
        "query {}: definition changed (state: {}; config: {}); dropping its "
        "state (on_definition_change: reset)",
        options_->name, was, Definition());
    RETURN_NOT_OK(store_->Reset(options_->name));
    RETURN_NOT_OK(LoadIndexState(/*fresh=*/true));
    ASSIGN_OR_RETURN(last, store_->LastCommitted(options_->name));
    if (!last) return CommittedBatch{.reset = true};
    last->reset = true;
  } else {
    RETURN_NOT_OK(LoadIndexState(/*fresh=*/false));
  }
  {
    std::lock_guard lock(mu_);
    watermark_.Restore(last->record.watermark_ms, last->record.max_event_time_ms);
  }
  CommittedBatch next = *last;
  next.record.batch_id = BatchId(last->record.batch_id.value() + 1);
  std::lock_guard lock(mu_);
  committed_positions_ = next.record.positions;
  return next;
}

void AggregationQuery::Attach(const DStream<std::string>& lines, OutputFn sink,
                              DeadLetterFn dead_letters) {
  struct Gathered {
    std::mutex mu;
    std::map<int, std::vector<std::string>> parts;
  };
  auto gathered = std::make_shared<Gathered>();
  Output output{.begin =
                    [gathered](BatchId) {
                      std::lock_guard lock(gathered->mu);
                      gathered->parts.clear();
                      return Status::OK();
                    },
                .part =
                    [gathered](BatchId, int part, const std::vector<std::string>& records,
                               bool first, bool /*last*/) {
                      std::lock_guard lock(gathered->mu);
                      auto& kept = gathered->parts[part];
                      if (first) kept.clear();
                      kept.insert(kept.end(), records.begin(), records.end());
                      return Status::OK();
                    },
                .publish =
                    [gathered, sink = std::move(sink)](BatchId batch) {
                      std::vector<std::string> all;
                      {
                        std::lock_guard lock(gathered->mu);
                        for (auto& [part, records] : gathered->parts) {
                          std::move(records.begin(), records.end(), std::back_inserter(all));
                        }
                        gathered->parts.clear();
                      }
                      return sink(batch, all);
                    }};
  Attach(lines, std::move(output), std::move(dead_letters));
}

void AggregationQuery::Attach(const DStream<std::string>& lines, Output output,
                              DeadLetterFn dead_letters) {
  output_ = std::move(output);
  dead_letters_ = std::move(dead_letters);
  lines.ForeachRdd(
      [this](const engine::Rdd<std::string>& rdd, BatchInfo* info) { return RunBatch(rdd, info); });
}

// One reduce partition's share of the batch, merged with the state by its own task: the puts
// (in key order) and, in update mode, the output records (handed to the sink by the task,
// which keeps only their number).
struct AggregationQuery::MergedPart {
  std::vector<std::pair<std::string, std::string>> puts;
  int64_t put_bytes = 0;  // of `puts`
  // Past its share, the partition's puts go to a sorted run (and leave `puts`) as it merges.
  std::unique_ptr<SortedRun> run;
  std::vector<std::string> out;
  int64_t out_bytes = 0;  // of `out`
  int64_t records_out = 0;
  bool out_started = false;  // a chunk of the part went to the sink
};

// What reading one batch found: its merged partitions and what the accumulators counted.
struct AggregationQuery::Scan {
  std::vector<MergedPart> parts;
  int64_t records = 0;
  int64_t late = 0;
  int64_t filtered = 0;
  EventTimeMs max_event_time = Watermark::kNone;
  std::map<std::string, int64_t> invalid;  // by reason
  int64_t invalid_total = 0;
  std::vector<InvalidRecord> dead;      // kept unless on_invalid: skip
  std::vector<std::string> late_lines;  // kept with a late sink
};

Status AggregationQuery::RunBatch(const engine::Rdd<std::string>& lines, BatchInfo* info) {
  const BatchId batch_id = info->progress.batch_id;
  // A store that cannot commit now (a full disk) fails the attempt before the input is read.
  RETURN_NOT_OK(store_->Writable());
  Watermark next_watermark(0);
  {
    std::lock_guard lock(mu_);
    next_watermark = watermark_;
  }
  const EventTimeMs watermark_now = next_watermark.current();
  if (output_.begin) RETURN_NOT_OK(output_.begin(batch_id));
  ASSIGN_OR_RETURN(Scan scan, ScanBatch(lines, watermark_now, info));
  RETURN_NOT_OK(HandleInvalid(batch_id, scan));
  for (size_t p = 0; p < scan.parts.size(); ++p) {  // records the tasks held (on_invalid: fail)
    if (output_.part && !scan.parts[p].out.empty()) {
      RETURN_NOT_OK(output_.part(batch_id, static_cast<int>(p), scan.parts[p].out, true, true));
    }
  }

  BatchCommit commit;
  commit.ns = options_->name;
  int64_t records_out = 0;
  std::vector<std::unique_ptr<SortedRun>> runs;  // kept until the commit applied them
  for (MergedPart& part : scan.parts) {
    std::move(part.puts.begin(), part.puts.end(), std::back_inserter(commit.puts));
    records_out += part.records_out;
    if (part.run) {
      commit.runs.push_back(part.run.get());
      runs.push_back(std::move(part.run));
    }
    part = {};
  }
  if (!marker_to_write_.empty()) commit.puts.emplace_back(kIndexMarker, marker_to_write_);
  next_watermark.AdvanceTo(scan.max_event_time);
  if (options_->output_mode == OutputMode::kFinal) {
    ASSIGN_OR_RETURN(std::vector<std::string> out,
                     SelectFinal(commit, watermark_now, next_watermark.current()));
    records_out = static_cast<int64_t>(out.size());
    if (output_.part) RETURN_NOT_OK(output_.part(batch_id, 0, out, true, true));
  }

  BatchRecord& record = commit.record;
  record.batch_id = batch_id;
  record.batch_time = info->progress.batch_time;
  record.positions = info->positions;
  record.watermark_ms = next_watermark.current();
  record.max_event_time_ms = next_watermark.max_event_time();
  record.definition_fingerprint = fingerprint_;
  record.definition = definition_;
  record.expire_before_ms = ExpireBefore(next_watermark.current());
  const bool moved = next_watermark.current() != watermark_now || scan.records > 0 ||
                     PositionsMoved(record.positions);
  if (moved) {
    // Sinks first, under the batch id; the commit makes the batch count.
    if (late_output_ && scan.late > 0) RETURN_NOT_OK(late_output_(batch_id, scan.late_lines));
    if (output_.publish) RETURN_NOT_OK(output_.publish(batch_id));
    RETURN_NOT_OK(store_->Commit(commit));
    marker_to_write_.clear();
  } else {
    info->progress.committed = false;
  }

  std::lock_guard lock(mu_);
  for (const auto& [input, position] : record.positions) committed_positions_[input] = position;
  watermark_ = next_watermark;
  counters_.records += scan.records;
  counters_.late += scan.late;
  counters_.filtered += scan.filtered;
  ++counters_.batches;
  for (const auto& [reason, n] : scan.invalid) counters_.invalid[reason] += n;
  info->progress.late += scan.late;
  info->progress.invalid += scan.invalid_total;
  info->progress.records_out += records_out;
  info->progress.watermark_ms = watermark_.current();
  return Status::OK();
}

Result<AggregationQuery::Scan> AggregationQuery::ScanBatch(const engine::Rdd<std::string>& lines,
                                                           EventTimeMs watermark_now,
                                                           BatchInfo* info) {
  // "In the future" is judged against the batch's own time (the context's clock), so a batch
  // that runs again judges every record the same way.
  const EventTimeMs latest_allowed = info->progress.batch_time.value() + options_->max_future_ms;
  auto opts = options_;
  engine::Context& ctx = lines.context();
  auto invalid = ctx.MakeAccumulator<std::map<std::string, int64_t>>(
      {}, [](std::map<std::string, int64_t> a, std::map<std::string, int64_t> b) {
        for (const auto& [k, v] : b) a[k] += v;
        return a;
      });
  const bool keep_dead = opts->on_invalid != OnInvalid::kSkip;
  auto dead = ctx.MakeAccumulator<std::vector<InvalidRecord>>({}, Concat<InvalidRecord>);
  auto late = engine::MakeSumAccumulator<int64_t>();
  const bool keep_late = static_cast<bool>(late_output_);
  auto late_lines = ctx.MakeAccumulator<std::vector<std::string>>({}, Concat<std::string>);
  auto records = engine::MakeSumAccumulator<int64_t>();
  auto filtered = engine::MakeSumAccumulator<int64_t>();
  auto max_time = ctx.MakeAccumulator<int64_t>(Watermark::kNone,
                                               [](int64_t a, int64_t b) { return std::max(a, b); });

  auto partials = lines
                      .FlatMap([=](std::string&& line) {
                        records.Add(1);
                        ParsedEvent parsed = ParseEvent(*opts, watermark_now, latest_allowed, line);
                        if (!parsed.invalid_reason.empty()) {
                          invalid.Add({{parsed.invalid_reason, 1}});
                          if (keep_dead)
                            dead.Add({InvalidRecord{parsed.invalid_reason, std::move(line)}});
                        } else if (parsed.filtered) {
                          filtered.Add(1);
                        } else {
                          max_time.Add(parsed.event_time);
                          if (parsed.late) {
                            late.Add(1);
                            if (keep_late) late_lines.Add({std::move(line)});
                          }
                        }
                        return std::move(parsed.partials);
                      })
                      // Map-side, each record folds straight into its key's row.
                      .CombineByKey<AggRow>(
                          [opts](RecordValues v) {
                            AggRow row;
                            AddRecord(opts->aggregates, v, &row);
                            return row;
                          },
                          [opts](AggRow row, RecordValues v) {
                            AddRecord(opts->aggregates, v, &row);
                            return row;
                          },
                          [opts](AggRow a, AggRow b) {
                            MergeRow(opts->aggregates, b, &a);
                            return a;
                          },
                          // In key order: each partition's merge spills sorted runs past
                          // its memory share and merges them back in order.
                          engine::CombineOptions{.partitions = opts->shuffle_partitions,
                                                 .key_ordered = true,
                                                 .name = "aggregate"});
  // Each reduce partition merges its keys (in key order) with the state on the worker that
  // made them: nothing of the batch's keys is collected on the driver.
  Scan scan;
  scan.parts.resize(static_cast<size_t>(partials.num_partitions()));
  const BatchId batch_id = info->progress.batch_id;
  const bool update = opts->output_mode == OutputMode::kUpdate;
  // A partition's puts and records past these go to a sorted run and to the sink as it
  // merges (final mode selects its output from the puts: they stay).
  const int64_t share = ctx.task_memory_bytes();
  const int64_t run_past = update ? std::min<int64_t>(share / 4, 1 << 20) : INT64_MAX;
  const int64_t out_past = std::max<int64_t>(share / 8, 64 << 10);
  // With on_invalid: fail a batch may still be refused after its job: its records wait for
  // that (RunBatch writes them), so that no sink sees a batch that fails.
  const bool stream_output = opts->on_invalid != OnInvalid::kFail;
  auto flush = [&](int p, MergedPart& part, bool last) -> Status {
    if (part.run != nullptr || part.put_bytes > run_past) {
      if (part.run == nullptr) {
        ASSIGN_OR_RETURN(part.run, store_->NewSortedRun(opts->name));
      }
      for (const auto& [k, v] : part.puts) RETURN_NOT_OK(part.run->Add(k, v));
      std::vector<std::pair<std::string, std::string>>().swap(part.puts);
      part.put_bytes = 0;
      if (last) RETURN_NOT_OK(part.run->Finish());
    }
    if (!output_.part || !stream_output || (!last && part.out_bytes <= out_past)) {
      return Status::OK();
    }
    if (!part.out.empty() || (last && part.out_started)) {
      RETURN_NOT_OK(output_.part(batch_id, p, part.out, !part.out_started, last));
      part.out_started = true;
    }
    part.out.clear();
    part.out_bytes = 0;
    return Status::OK();
  };
  RETURN_NOT_OK(partials.RunOnPartitions(
      AllPartitionsOf(partials.num_partitions()), [&](int p, engine::TaskContext& tc) {
        MergedPart& part = scan.parts[static_cast<size_t>(p)];
        part = {};  // a retried attempt starts over
        std::vector<std::pair<std::string, AggRow>> chunk;
        Status merged;
        int64_t keys = 0;
        RETURN_NOT_OK(partials.node()->Iterate(p, tc, [&](std::pair<std::string, AggRow>&& kv) {
          chunk.push_back(std::move(kv));
          ++keys;
          if (chunk.size() == kMergeChunk) {
            merged = MergeChunk(&chunk, update, &part);
            if (merged.ok()) merged = flush(p, part, /*last=*/false);
            chunk.clear();
          }
          return merged.ok();
        }));
        RETURN_NOT_OK(merged);
        tc.metrics().records_out += keys;
        RETURN_NOT_OK(MergeChunk(&chunk, update, &part));
        // The partition's records go to the sink from here, its puts to a run past its share:
        // the driver never holds them all.
        RETURN_NOT_OK(flush(p, part, /*last=*/true));
        if (stream_output) std::vector<std::string>().swap(part.out);
        return Status::OK();
      }));
  info->progress.lineage = partials.DebugString();
  scan.records = records.value();
  scan.late = late.value();
  scan.filtered = filtered.value();
  scan.max_event_time = max_time.value();
  scan.invalid = invalid.value();
  for (const auto& [reason, n] : scan.invalid) scan.invalid_total += n;
  scan.dead = dead.value();
  scan.late_lines = late_lines.value();
  return scan;
}

Status AggregationQuery::HandleInvalid(BatchId batch_id, const Scan& scan) {
  if (scan.invalid_total == 0) return Status::OK();
  const AggregationOptions& o = *options_;
  Logger("query")->warn("{} batch {}: {} invalid records skipped", o.name, batch_id,
                        scan.invalid_total);
  if (o.on_invalid == OnInvalid::kFail) {
    return Status::InvalidArgument(fmt::format(
        "{} batch {}: {} invalid records (on_invalid: fail), first: {}", o.name, batch_id,
        scan.invalid_total, scan.dead.empty() ? "" : scan.dead.front().reason));
  }
  if (o.on_invalid == OnInvalid::kDeadLetter && dead_letters_) {
    return dead_letters_(batch_id, scan.dead);
  }
  return Status::OK();
}

Status AggregationQuery::MergeChunk(std::vector<std::pair<std::string, AggRow>>* chunk, bool update,
                                    MergedPart* part) const {
  if (chunk->empty()) return Status::OK();
  std::vector<std::string> keys;
  keys.reserve(chunk->size());
  for (const auto& kv : *chunk) keys.push_back(kv.first);
  ASSIGN_OR_RETURN(std::vector<std::optional<std::string>> stored,
                   store_->MultiGet(options_->name, keys));
  for (size_t i = 0; i < chunk->size(); ++i) {
    auto& [key, partial] = (*chunk)[i];
    AggRow current;
    if (stored[i]) {
      ASSIGN_OR_RETURN(current, DecodeRow(*stored[i]));
    }
    MergeRow(options_->aggregates, partial, &current);
    if (update) {
      part->out.push_back(FormatRecord(key, current));
      part->out_bytes += static_cast<int64_t>(part->out.back().size());
      ++part->records_out;
    }
    if (indexed_ && !stored[i]) {
      std::vector<std::string> values;
      EventTimeMs start = 0;
      RETURN_NOT_OK(DecodeStateKey(key, options_->group_by.size(), &values, &start));
      part->puts.emplace_back(IndexKey(options_->window.EndOf(start), key), std::string());
    }
    part->puts.emplace_back(std::move(key), EncodeRow(current));
    part->put_bytes +=
        static_cast<int64_t>(part->puts.back().first.size() + part->puts.back().second.size());
  }
  return Status::OK();
}

Result<std::vector<std::string>> AggregationQuery::SelectFinal(const BatchCommit& commit,
                                                               EventTimeMs from, EventTimeMs to) {
  const AggregationOptions& o = *options_;
  std::vector<std::string> out;
  if (to == from) return out;
  // Final: every window whose end the watermark passed in this batch.
  const EventTimeMs expired = ExpireBefore(to);
  auto closed_now = [&](const std::string& key) {
    std::vector<std::string> values;
    EventTimeMs start = 0;
    if (IsIndexKey(key) || !DecodeStateKey(key, o.group_by.size(), &values, &start).ok()) {
      return false;
    }
    const EventTimeMs end = o.window.EndOf(start);
    return (from == Watermark::kNone || end > from) && end <= to && start >= expired;
  };
  std::map<std::string, std::string> closed;
  if (indexed_) {
    // The index's windows with from < end <= to; their rows, but for this batch's own.
    const std::string begin = IndexKey(from == Watermark::kNone ? INT64_MIN : from + 1, "");
    const std::string end = IndexKey(to + 1, "");
    std::vector<std::string> keys;
    RETURN_NOT_OK(store_->Scan(o.name, begin, end, [&](const std::string& k, const std::string&) {
      keys.push_back(k.substr(kIndexMarker.size() + 8));
      return true;
    }));
    for (size_t i = 0; i < keys.size(); i += kMergeChunk) {
      std::vector<std::string> chunk(
          keys.begin() + static_cast<ptrdiff_t>(i),
          keys.begin() + static_cast<ptrdiff_t>(std::min(keys.size(), i + kMergeChunk)));
      ASSIGN_OR_RETURN(auto rows, store_->MultiGet(o.name, chunk));
      for (size_t j = 0; j < chunk.size(); ++j) {
        if (rows[j] && closed_now(chunk[j])) closed[chunk[j]] = std::move(*rows[j]);
      }
    }
  } else {
    // No index: the whole state (its state keys, below the index's).
    RETURN_NOT_OK(
        store_->Scan(o.name, "", kIndexMarker, [&](const std::string& k, const std::string& v) {
          if (closed_now(k)) closed[k] = v;
          return true;
        }));
  }
  for (const auto& [k, v] : commit.puts) {
    if (closed_now(k)) closed[k] = v;
  }
  for (const auto& [k, v] : closed) {
    ASSIGN_OR_RETURN(AggRow row, DecodeRow(v));
    out.push_back(FormatRecord(k, row));
  }
  return out;
}

bool AggregationQuery::PositionsMoved(const SourcePositions& positions) const {
  std::lock_guard lock(mu_);
  for (const auto& [input, position] : positions) {
    auto it = committed_positions_.find(input);
    if (it == committed_positions_.end() || !SamePosition(it->second, position)) return true;
  }
  return false;
}

void AppendIdPart(std::string_view value, std::string* id) {
  for (char c : value) {
    if (c == '|' || c == '\\') id->push_back('\\');
    id->push_back(c);
  }
  id->push_back('|');
}

std::string AggregationQuery::FormatRecord(const std::string& key, const AggRow& row) const {
  std::vector<std::string> values;
  EventTimeMs start = 0;
  if (!DecodeStateKey(key, options_->group_by.size(), &values, &start).ok()) return "{}";
  const std::string ts = FormatIsoTimestamp(start);
  std::string id;
  for (auto it = values.rbegin(); it != values.rend(); ++it) AppendIdPart(*it, &id);
  id += ts;
  boost::json::object record;
  record["_id"] = id;
  for (size_t i = 0; i < values.size(); ++i) record[options_->group_by[i]] = values[i];
  record["freq"] = WindowFrequencyName(options_->window.length_ms);
  record["ts"] = ts;
  boost::json::object metrics;
  for (size_t i = 0; i < options_->aggregates.size() && i < row.size(); ++i) {
    const AggregateSpec& spec = options_->aggregates[i];
    if (spec.is_map()) continue;
    const double v = ScalarValue(spec, row[i]);
    switch (spec.kind) {
      case AggregateSpec::Kind::kSum:
      case AggregateSpec::Kind::kMin:
      case AggregateSpec::Kind::kMax:
        metrics[spec.name] = v;
        break;
      default:
        metrics[spec.name] = static_cast<int64_t>(v);
    }
    if (const double se = StandardError(spec, row[i]); se > 0) {
      metrics[spec.name + "_standard_error"] = se;
    }
  }
  record["metrics"] = std::move(metrics);
  for (size_t i = 0; i < options_->aggregates.size() && i < row.size(); ++i) {
    const AggregateSpec& spec = options_->aggregates[i];
    if (!spec.is_map()) continue;
    boost::json::object m;
    for (const auto& [value, n] : row[i].values) m[value] = n;
    record[spec.name] = std::move(m);
  }
  return boost::json::serialize(record);
}

Status ParseId(std::string_view id, size_t group_count, std::vector<std::string>* values,
               EventTimeMs* window_start) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < id.size(); ++i) {
    if (id[i] == '\\' && i + 1 < id.size()) {
      parts.back().push_back(id[++i]);
    } else if (id[i] == '|') {
      parts.emplace_back();
    } else {
      parts.back().push_back(id[i]);
    }
  }
  if (parts.size() != group_count + 1) {
    return Status::InvalidArgument(fmt::format("'{}' is not an _id of this query", id));
  }
  ASSIGN_OR_RETURN(*window_start, ParseIsoTimestamp(parts.back()));
  values->assign(std::make_move_iterator(parts.rbegin() + 1),
                 std::make_move_iterator(parts.rend()));
  return Status::OK();
}

Result<std::vector<std::string>> AggregationQuery::ReadRecords(
    const std::vector<std::string>& group_prefix, EventTimeMs from_ms, EventTimeMs to_ms) {
  ASSIGN_OR_RETURN(Page page, ReadPage(group_prefix, from_ms, to_ms, "", SIZE_MAX));
  return std::move(page.records);
}

Result<AggregationQuery::Page> AggregationQuery::ReadPage(
    const std::vector<std::string>& group_prefix, EventTimeMs from_ms, EventTimeMs to_ms,
    const std::string& after, size_t limit) {
  std::string begin;
  for (const std::string& v : group_prefix) {
    const std::string one = EncodeStateKey({v}, 0);
    begin += one.substr(0, one.size() - 8);
  }
  std::string end = begin;
  if (!end.empty()) end.back() = static_cast<char>(end.back() + 1);  // past the prefix
  if (end.empty()) end = kIndexMarker;  // the state keys, not final mode's index
  if (!after.empty()) {
    std::vector<std::string> values;
    EventTimeMs start = 0;
    RETURN_NOT_OK(
        ParseId(after, options_->group_by.size(), &values, &start).WithContext("'after'"));
    std::string key = EncodeStateKey(values, start);
    key.push_back('\0');  // strictly after it
    begin = std::max(begin, key);
  }
  Page page;
  if (limit == 0) return Status::InvalidArgument("a page holds at least one record");
  if (!end.empty() && begin >= end) return page;  // `after` is past the group's range
  std::vector<std::string>& out = page.records;
  Status inner;
  from_ms = std::max(from_ms, ExpireBefore(watermark()));
  RETURN_NOT_OK(
      store_->Scan(options_->name, begin, end, [&](const std::string& k, const std::string& v) {
        std::vector<std::string> values;
        EventTimeMs start = 0;
        if (!DecodeStateKey(k, options_->group_by.size(), &values, &start).ok()) return true;
        if (start < from_ms || start >= to_ms) return true;
        auto row = DecodeRow(v);
        if (!row.ok()) {
          inner = row.status();
          return false;
        }
        if (out.size() == limit) {  // one more exists: the page ends before it
          page.next_after = std::string(boost::json::parse(out.back()).at("_id").as_string());
          return false;
        }
        out.push_back(FormatRecord(k, *row));
        return true;
      }));
  RETURN_NOT_OK(inner);
  return page;
}

QueryCounters AggregationQuery::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

EventTimeMs AggregationQuery::watermark() const {
  std::lock_guard lock(mu_);
  return watermark_.current();
}

}  // namespace runnel::streaming
