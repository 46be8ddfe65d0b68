// The arithmetic of a Kafka batch's plan, without a broker: where each owned partition starts,
// how much of its backlog one batch reads, what data loss does, and where a partition assigned
// by the consumer group starts. KafkaSource feeds it what the broker reported (log bounds, the
// group's committed offsets) and applies what it returns.
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace runnel::sources {

using TopicPartition = std::pair<std::string, int32_t>;

// A batch's input in one partition: offsets [from, until).
struct OffsetRange {
  std::string topic;
  int32_t partition = 0;
  int64_t from = 0;
  int64_t until = 0;
};

// What the broker reports of a partition's log: offsets [start, end) exist.
struct LogBounds {
  int64_t start = 0;
  int64_t end = 0;
};

struct OffsetPlanOptions {
  // Where a partition without a position starts: the log start (true) or the log end.
  bool start_at_earliest = true;
  // Offsets below the log start (deleted by retention): fail the batch (true), or skip them.
  bool fail_on_data_loss = true;
  // No partition reads more per batch (the rate controller may lower it).
  int64_t max_records_per_partition = 200000;
};

struct OffsetPlan {
  std::vector<OffsetRange> ranges;         // the non-empty ranges, in partition order
  std::map<TopicPartition, int64_t> next;  // every planned partition's position after it
  std::map<TopicPartition, int64_t> lag;   // log end - next
  std::map<TopicPartition, int64_t> lost;  // records skipped as no longer in the log
};

// How much of a partition's `backlog` one batch reads when no partition may read more than
// `cap` and the largest backlog is `largest`: the same fraction of every backlog (rounded up),
// so partitions advance through event time together. A fixed per-partition cap would let a
// short partition run hours ahead of a long one and make the long one's records late.
int64_t Share(int64_t backlog, int64_t largest, int64_t cap);

// Where a partition at `position` (-1: none yet) starts reading, before data loss.
int64_t StartOffset(int64_t position, const LogBounds& bounds, bool start_at_earliest);

// Plans one batch over the partitions of `positions` (-1: no position yet), each of which has
// an entry in `bounds`. Data loss with fail_on_data_loss is OutOfRange (no retry helps: the
// operator decides), naming the partition and the offsets gone.
Result<OffsetPlan> PlanOffsets(const std::map<TopicPartition, int64_t>& positions,
                               const std::map<TopicPartition, LogBounds>& bounds,
                               const OffsetPlanOptions& options);

// Where a partition the group just assigned starts. This instance's state (`position`, -1:
// none) is the truth for a partition it kept; where another member may have read it since
// (this instance never read it, or `lost_before`: it lost the partition in a rebalance), the
// group's committed offset when that is further along.
int64_t StartOfAssigned(int64_t position, std::optional<int64_t> group_offset, bool lost_before);

}  // namespace runnel::sources
