// State keys: how the aggregation query names a (group values, window) in its state. The one
// owner of the layout: the query encodes and decodes keys here, and the state store's
// retention reads a key's time here (StateKeyTime).
//
// Layout: each group value escaped (0x00 -> 0x00 0xFF) and ended by 0x00 0x01, then the window
// start as 8 big-endian bytes with the sign bit flipped, so keys sort by group values and then
// by time: one group's windows are a contiguous range (docs/state-format.md).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace runnel::streaming {

std::string EncodeStateKey(const std::vector<std::string>& group_values, int64_t window_start);
// Corruption when `key` is not a key of `group_count` group values.
Status DecodeStateKey(std::string_view key, size_t group_count, std::vector<std::string>* values,
                      int64_t* window_start);
// The window start at the end of a state key (false: too short to be one).
bool StateKeyTime(std::string_view key, int64_t* window_start);

}  // namespace runnel::streaming
