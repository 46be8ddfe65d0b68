// ParseEvent: one input line of an aggregation query -> its partial aggregates, one per open
// window of the record's event time, or the reason the record was skipped (invalid, filtered
// by `where:`, late). Only the fields the query uses are read (simdjson DOM, a parser per
// thread); a record whose top-level keys repeat is invalid ("duplicate_field").
//
// Thread safety: a pure function of its arguments; safe to call from any thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "streaming/aggregation_query.h"

namespace runnel::streaming {

// A state key (see EncodeStateKey) and the record's contribution to it.
using Partial = std::pair<std::string, AggRow>;

struct ParsedEvent {
  std::vector<Partial> partials;  // one per open window of the record
  std::string invalid_reason;     // set when the record is invalid
  bool late = false;              // every window of the record was closed
  bool filtered = false;          // a `where:` condition left it out
  EventTimeMs event_time = Watermark::kNone;
};

// `watermark_now`: windows ending at or before it are closed (Watermark::kNone: none is).
// `latest_allowed`: event times after it are invalid ("ts_in_future").
ParsedEvent ParseEvent(const AggregationOptions& opts, EventTimeMs watermark_now,
                       EventTimeMs latest_allowed, const std::string& line);

}  // namespace runnel::streaming
