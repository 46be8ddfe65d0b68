// AggregationOptions: what an aggregation query is (group_by, event time, window, lateness,
// aggregates, filters, output mode, invalid-record policy, retention), as the config defines
// it. The parser (event_parser.h) and the query (aggregation_query.h) both read it.
//
// Thread safety: a value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "streaming/aggregates.h"
#include "streaming/event_time.h"

namespace runnel::streaming {

enum class OutputMode { kUpdate, kFinal };

enum class OnInvalid { kFail, kSkip, kDeadLetter };

// One condition of a query's `where:` (all must hold). A record whose field is missing or not
// a string fails every condition on it.
struct FieldCondition {
  enum class Op { kEquals, kNotEquals, kPrefix };
  std::string field;
  Op op = Op::kEquals;
  std::string value;
  bool operator==(const FieldCondition&) const = default;
};

struct AggregationOptions {
  std::string name;                   // query name: the state namespace and output directory
  std::vector<std::string> group_by;  // e.g. {"customer", "url"}
  std::string time_field = "ts";      // ISO-8601 text, epoch ms, or epoch s (below 10^11)
  // Event times further than this ahead of the batch's time (its context's clock) are invalid
  // ("ts_in_future"): one such record would move the watermark and make everything after it
  // late.
  int64_t max_future_ms = 86'400'000;
  WindowSpec window;  // default: tumbling 1h
  int64_t allowed_lateness_ms = 0;
  std::vector<AggregateSpec> aggregates;
  std::vector<FieldCondition> where;  // records failing one are skipped (counted as filtered)
  OutputMode output_mode = OutputMode::kUpdate;
  OnInvalid on_invalid = OnInvalid::kSkip;
  int shuffle_partitions = 0;         // 0: the engine's default parallelism
  size_t max_record_bytes = 1 << 20;  // longer lines are invalid ("too_large")
  // Windows that ended this long before the watermark leave state (0: kept forever).
  int64_t retention_ms = 0;
  // When the stored definition fingerprint differs: drop the state and rebuild it from the
  // source's starting positions (true), or refuse to start (false).
  bool reset_on_definition_change = false;
  bool operator==(const AggregationOptions&) const = default;
};

}  // namespace runnel::streaming
