// ParseEvent: one input line of an aggregation query -> its state keys, one per open window of
// the record's event time, with the record's values for the aggregates (AddRecord folds them
// into a key's row without a row per record), or the reason the record was skipped (invalid,
// filtered by `where:`, late). Only the fields the query uses are read (simdjson DOM, a parser per
// thread); a record whose top-level keys repeat is invalid ("duplicate_field").
//
// Thread safety: a pure function of its arguments; safe to call from any thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "streaming/aggregates.h"
#include "streaming/aggregation_options.h"
#include "streaming/event_time.h"

namespace runnel::streaming {

struct ParsedEvent {
  // (state key, see EncodeStateKey; the record's values), one per open window of the record.
  std::vector<std::pair<std::string, RecordValues>> partials;
  std::string invalid_reason;  // set when the record is invalid
  bool late = false;           // every window of the record was closed
  bool filtered = false;       // a `where:` condition left it out
  EventTimeMs event_time = Watermark::kNone;
};

// `watermark_now`: windows ending at or before it are closed (Watermark::kNone: none is).
// `latest_allowed`: event times after it are invalid ("ts_in_future").
ParsedEvent ParseEvent(const AggregationOptions& opts, EventTimeMs watermark_now,
                       EventTimeMs latest_allowed, const std::string& line);

}  // namespace runnel::streaming
