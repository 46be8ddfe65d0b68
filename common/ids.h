// Strong types for the ids that flow through Runnel, so a batch id is never passed where an
// offset is expected. Each wraps one integer; comparison and hashing are by value.
//
// Thread safety: plain values.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>

#include <fmt/format.h>

namespace runnel {

template <typename Tag, typename Rep>
class StrongId {
 public:
  using rep_type = Rep;

  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep value) : value_(value) {}

  constexpr Rep value() const { return value_; }
  constexpr auto operator<=>(const StrongId&) const = default;

 private:
  Rep value_{};
};

// Dense id of a micro-batch of one query: 0, 1, 2, ... across restarts.
using BatchId = StrongId<struct BatchIdTag, int64_t>;
// The scheduled time of a batch, in milliseconds since the Unix epoch (UTC).
using BatchTime = StrongId<struct BatchTimeTag, int64_t>;
// A partition of a source (Kafka partition, or file index of a file source).
using PartitionId = StrongId<struct PartitionIdTag, int32_t>;
// A position inside a partition: a Kafka offset, or a line number of a file.
using Offset = StrongId<struct OffsetTag, int64_t>;

template <typename Tag, typename Rep>
std::ostream& operator<<(std::ostream& os, StrongId<Tag, Rep> id) {
  return os << id.value();
}

}  // namespace runnel

template <typename Tag, typename Rep>
struct std::hash<runnel::StrongId<Tag, Rep>> {
  size_t operator()(runnel::StrongId<Tag, Rep> id) const noexcept {
    return std::hash<Rep>()(id.value());
  }
};

template <typename Tag, typename Rep>
struct fmt::formatter<runnel::StrongId<Tag, Rep>> : fmt::formatter<Rep> {
  template <typename FormatContext>
  auto format(runnel::StrongId<Tag, Rep> id, FormatContext& ctx) const {
    return fmt::formatter<Rep>::format(id.value(), ctx);
  }
};
