// Kafka direct source, after Spark's direct Kafka stream: every batch is a fixed set of offset
// ranges [from, until), one per topic partition, capped per partition; the batch's RDD has one
// partition per range and reads exactly that range, so it can always be recomputed from its
// lineage. Positions ("kafka:TOPIC/PARTITION" -> SourcePosition.next_offset) commit with
// the batch; a
// restarted query resumes from them (otherwise from `starting_offsets`). Offsets that are no
// longer available (the log was truncated) follow `on_data_loss`: fail the batch, or skip to
// the earliest offset and count what was lost.
//
// The source is four parts: this adapter, which plans batches through the PlannedInput
// protocol (streaming/planned_input.h); the offset planner (offset_planner.h: shares of a
// backlog, caps, data loss; no broker); the consumer group (kafka_group.h: membership and
// committed offsets); the range readers (kafka_reader.h: a consumer per partition, stalls).
// No broker round trip happens under a lock of the source: the planner gets the log bounds
// first and the plan is applied after.
//
// Partition ownership (`membership`): with `group` (the default) the source joins the consumer
// group `group_id` and plans only the partitions the group assigns it; several instances with
// one group_id share a topic's partitions. The group is polled before each plan, so a
// rebalance always happens between batches: the running batch finishes and commits first, and
// a partition is never read after it was revoked. On revocation the source commits the
// partitions' confirmed positions to the group, and a newly assigned partition starts at
// max(its position in this instance's state, the group's committed offset) — the group's
// offset where this instance has no position or lost the partition to another member before
// (StartOfAssigned). With `all`, the source reads every partition and uses the group only to
// publish offsets. Each confirmed batch's offsets are committed to the group asynchronously,
// and after each checkpoint the service calls CommitToGroup with the checkpointed positions,
// so standard lag tools see the group's progress. Lag() is each owned partition's end offset
// minus the position after the last planned batch.
//
// Broker trouble never stops the source by itself (see kafka_reader.h); requests that time out
// fail the batch with Unavailable, which the streaming context retries.
//
// Thread safety: PlannedInput's (planning, abandon, confirm and the group's callbacks on the
// batch thread); range reads on engine workers; Lag, Owned, Trouble, HasPendingData, counters
// and CommitToGroup on any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sources/kafka_client.h"
#include "sources/kafka_group.h"
#include "sources/kafka_reader.h"
#include "sources/offset_planner.h"
#include "streaming/planned_input.h"

namespace runnel::sources {

struct PartitionLag {
  std::string topic;
  int32_t partition = 0;
  int64_t records = 0;  // end offset (high watermark) - position, at the last Plan
};

// The source's position: the next offset of every partition it knows (-1: none yet).
using KafkaPositions = std::map<TopicPartition, int64_t>;

// A batch's plan: its offset ranges, and the records its plan skipped as no longer in the log
// (counted when the batch commits, so a plan made again is not counted twice).
struct KafkaPlan {
  std::vector<OffsetRange> ranges;
  std::map<TopicPartition, int64_t> lost;
};

class KafkaSource final : public streaming::PlannedInput<std::string, KafkaPlan, KafkaPositions>,
                          public streaming::BatchListener {
 public:
  static Result<std::shared_ptr<KafkaSource>> Make(streaming::StreamingContext* ssc,
                                                   KafkaSourceOptions options);
  ~KafkaSource() override;

  // Continues from committed positions ("kafka:TOPIC/PARTITION" -> next offset). Without
  // `use_group_offsets` (a query whose state was just reset) the group's committed offsets
  // are ignored and partitions without a position start at `starting_offsets`.
  Status Restore(const streaming::SourcePositions& positions, bool use_group_offsets = true);
  // Feeds the rate controller (register the source as a listener of its context).
  void OnBatchCompleted(const streaming::BatchProgress& progress) override;
  // Records per second the rate controller allows now; 0 without rate control.
  double rate() const;
  // True when some owned partition's end offset is past this source's position.
  bool HasPendingData() const override;

  int64_t records_lost() const { return lost_.load(); }
  int64_t fetch_errors() const { return reader_.fetch_errors(); }
  int64_t rebalances() const { return group_ ? group_->rebalances() : 0; }
  std::vector<PartitionLag> Lag() const;
  // The partitions this source reads now ("topic/partition").
  std::vector<std::string> Owned() const;
  // Why the source is not healthy now (a stalled read), or empty.
  std::string Trouble() const { return reader_.Trouble(); }
  // Commits this source's entries of `positions` ("kafka:TOPIC/PARTITION" -> next offset) to
  // the consumer group `group_id`; entries at or below what the source committed before are
  // left out (a checkpoint's positions may be older than the batches committed since).
  Status CommitToGroup(const streaming::SourcePositions& positions);

 protected:
  // Serves the group (rebalances) and fixes where newly assigned partitions start.
  Status BeforePlan() override;
  Result<Planned> PlanFrom(streaming::BatchInfo* info, const KafkaPositions& from) override;
  Result<std::optional<engine::Rdd<std::string>>> Read(const KafkaPlan& plan) override;
  // Counts what the batch skipped; publishes its offsets to the group (asynchronously).
  void OnConfirmed(const KafkaPlan& plan, const KafkaPositions& after) override;

 private:
  KafkaSource(streaming::StreamingContext* ssc, KafkaSourceOptions options, rd_kafka_t* meta);
  Result<KafkaPositions> DiscoverPartitions() const;
  void OnAssigned(const std::vector<TopicPartition>& partitions);
  void OnRevoked(const std::vector<TopicPartition>& partitions);
  // The log bounds of each partition, in one round trip each for starts and ends.
  Result<std::map<TopicPartition, LogBounds>> Bounds(
      const std::set<TopicPartition>& partitions) const;

  const KafkaSourceOptions options_;
  rd_kafka_t* const meta_;  // for metadata and log-bound queries
  KafkaRangeReader reader_;
  std::atomic<int64_t> lost_{0};
  // The source's own state; never held across a broker call.
  mutable std::mutex mu_;
  std::set<TopicPartition> owned_;                          // guarded by mu_
  std::set<TopicPartition> lost_ownership_;                 // revoked at some point; guarded by mu_
  std::set<TopicPartition> fresh_;                          // assigned, start not resolved; mu_
  bool use_group_offsets_ = true;                           // guarded by mu_
  KafkaPositions confirmed_;                                // of the last confirmed batch; mu_
  std::map<TopicPartition, int64_t> lag_;                   // guarded by mu_
  std::optional<streaming::RateController> rate_;           // guarded by mu_
  std::unique_ptr<KafkaGroup> group_;                       // after the state its callbacks use
  streaming::StreamingContext::Registration registration_;  // as an input of the context
};

std::string PositionKey(const std::string& topic, int32_t partition);

}  // namespace runnel::sources
