#include "sources/offset_planner.h"

#include <algorithm>

#include <fmt/format.h>

namespace runnel::sources {

int64_t Share(int64_t backlog, int64_t largest, int64_t cap) {
  if (backlog <= 0) return 0;
  if (largest <= cap) return backlog;
  const auto scaled =
      static_cast<int64_t>((static_cast<__int128>(backlog) * cap + largest - 1) / largest);
  return std::clamp<int64_t>(scaled, 1, cap);
}

int64_t StartOffset(int64_t position, const LogBounds& bounds, bool start_at_earliest) {
  if (position >= 0) return position;
  return start_at_earliest ? bounds.start : bounds.end;
}

Result<OffsetPlan> PlanOffsets(const std::map<TopicPartition, int64_t>& positions,
                               const std::map<TopicPartition, LogBounds>& bounds,
                               const OffsetPlanOptions& options) {
  OffsetPlan plan;
  // Where each partition starts and how much it has to read.
  std::map<TopicPartition, int64_t> starts;
  int64_t largest_backlog = 0;
  for (const auto& [tp, position] : positions) {
    auto b = bounds.find(tp);
    if (b == bounds.end()) {
      return Status::Internal(fmt::format("no log bounds for {}/{}", tp.first, tp.second));
    }
    int64_t from = StartOffset(position, b->second, options.start_at_earliest);
    if (from < b->second.start) {
      if (options.fail_on_data_loss) {
        return Status::OutOfRange(
            fmt::format("{}/{}: offsets [{}, {}) are no longer available (on_data_loss: fail)",
                        tp.first, tp.second, from, b->second.start));
      }
      plan.lost[tp] = b->second.start - from;
      from = b->second.start;
    }
    starts[tp] = from;
    largest_backlog = std::max(largest_backlog, b->second.end - from);
  }
  for (const auto& [tp, from] : starts) {
    const int64_t end = bounds.at(tp).end;
    const int64_t until =
        from + Share(end - from, largest_backlog, options.max_records_per_partition);
    if (until > from) plan.ranges.push_back({tp.first, tp.second, from, until});
    plan.next[tp] = until;
    plan.lag[tp] = std::max<int64_t>(0, end - until);
  }
  return plan;
}

int64_t StartOfAssigned(int64_t position, std::optional<int64_t> group_offset, bool lost_before) {
  const bool other_owner = position < 0 || lost_before;
  if (group_offset && *group_offset >= 0 && other_owner && *group_offset > position) {
    return *group_offset;
  }
  return position;
}

}  // namespace runnel::sources
