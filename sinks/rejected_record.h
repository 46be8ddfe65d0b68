// The record format of dead letters and late output: one JSON object per input line that did
// not make it into the aggregates, {"_id": "<batch>-<index>", "reason": ..., "line": ...}. A
// line that is not valid UTF-8 is kept exactly, in "line_base64", beside a readable copy.
//
// Thread safety: a pure function.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/ids.h"

namespace runnel::sinks {

std::string RejectedRecord(BatchId batch, size_t index, std::string_view reason,
                           const std::string& line);

}  // namespace runnel::sinks
