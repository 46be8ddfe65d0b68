// Kafka direct source, after Spark's direct Kafka stream: every batch is a fixed set of offset
// ranges [from, until), one per topic partition, capped per partition; the batch's RDD has one
// partition per range and reads exactly that range, so it can always be recomputed from its
// lineage. Positions ("kafka:TOPIC/PARTITION" -> SourcePosition.next_offset) commit with
// the batch; a
// restarted query resumes from them (otherwise from `starting_offsets`). Offsets that are no
// longer available (the log was truncated) follow `on_data_loss`: fail the batch, or skip to
// the earliest offset and count what was lost.
//
// The source is five parts: this adapter, which plans one query's batches through the
// PlannedInput protocol (streaming/planned_input.h); the subscription it reads through
// (kafka_subscription.h: shared by every query of the source in the process: group
// membership, log bounds, readers); the offset planner (offset_planner.h: shares of a
// backlog, caps, data loss; no broker); the consumer group (kafka_group.h: membership and
// committed offsets); the range readers (kafka_reader.h: a consumer per partition, stalls).
// No broker round trip happens under a lock of the source: the planner gets the log bounds
// first and the plan is applied after.
//
// Partition ownership (`membership`): with `group` (the default) the subscription joins the
// consumer group `group_id` and the source plans only the partitions the group assigns the
// process; several instances with one group_id share a topic's partitions, and several
// queries of one instance all read the instance's share. The group is polled before each
// plan, so a rebalance always happens between batches of every query of the source: their
// running batches finish and commit first, and a partition is never read after it was
// revoked. On revocation the subscription commits the queries' confirmed positions to the
// group, and a newly assigned partition starts at max(its position in this query's state,
// the query's group offset) — the group's where this instance has no position or lost the
// partition to another member before (StartOfAssigned). With `all`, the source reads every
// partition and uses the group only to publish offsets. Each confirmed batch's offsets are
// committed to the group asynchronously, and after each checkpoint the service commits
// again (KafkaSubscription::CommitConfirmed), so standard lag tools see the group's
// progress. Lag() is each owned partition's end offset minus the position after the last
// planned batch.
//
// Broker trouble never stops the source by itself (see kafka_reader.h); requests that time out
// fail the batch with Unavailable, which the streaming context retries.
//
// Thread safety: PlannedInput's (planning, abandon, confirm on the batch thread; the
// subscription's rebalance callbacks on the batch thread of whichever query of the source
// polls); range reads on engine workers; Lag, Trouble, HasPendingData and counters on
// any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sources/kafka_reader.h"
#include "sources/kafka_subscription.h"
#include "streaming/planned_input.h"

namespace runnel::sources {

// The source's position: the next offset of every partition it knows (-1: none yet).
using KafkaPositions = std::map<TopicPartition, int64_t>;

// A batch's plan: its offset ranges, and the records its plan skipped as no longer in the log
// (counted when the batch commits, so a plan made again is not counted twice).
struct KafkaPlan {
  std::vector<OffsetRange> ranges;
  std::map<TopicPartition, int64_t> lost;
};

class KafkaSource final : public streaming::PlannedInput<std::string, KafkaPlan, KafkaPositions>,
                          public streaming::BatchListener,
                          public KafkaSubscription::Member {
 public:
  // Query `query`'s source over `subscription`, planning and reading with `options`
  // (starting offsets, caps, data loss, rate control; the group is the subscription's).
  static Result<std::shared_ptr<KafkaSource>> Make(streaming::StreamingContext* ssc,
                                                   std::shared_ptr<KafkaSubscription> subscription,
                                                   std::string query, KafkaSourceOptions options);
  // Without a subscription of its own to share: makes one (a source read by one query).
  static Result<std::shared_ptr<KafkaSource>> Make(streaming::StreamingContext* ssc,
                                                   KafkaSourceOptions options);
  // Stops planning, then detaches (its confirmed positions are committed to the group).
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

  const std::shared_ptr<KafkaSubscription>& subscription() const { return sub_; }
  int64_t records_lost() const override { return lost_.load(); }
  std::vector<PartitionLag> Lag() const override;

  // KafkaSubscription::Member
  const std::string& query() const override { return query_; }
  void OnAssigned(const std::vector<TopicPartition>& partitions) override;
  void OnRevoked(const std::vector<TopicPartition>& partitions) override;
  void OnAttached(const KafkaSubscription::Ownership& ownership) override;
  std::map<TopicPartition, int64_t> Confirmed() const override;
  int64_t fetch_errors() const override { return reader_.fetch_errors(); }
  std::string Trouble() const override { return reader_.Trouble(); }

 protected:
  // Serves the group (rebalances) and fixes where newly assigned partitions start.
  Status BeforePlan() override;
  Result<Planned> PlanFrom(streaming::BatchInfo* info, const KafkaPositions& from) override;
  // max_bytes_per_batch as the per-partition record cap of a batch whose owned partitions'
  // backlogs sum to `backlog_sum`, the largest `backlog_max` (the runner thread only).
  int64_t RecordsPerPartitionForBytes(int64_t backlog_sum, int64_t backlog_max);
  Result<std::optional<engine::Rdd<std::string>>> Read(const KafkaPlan& plan) override;
  // Counts what the batch skipped; publishes its offsets to the group (asynchronously).
  void OnConfirmed(const KafkaPlan& plan, const KafkaPositions& after) override;
  void OnBatchEnded() override;

 private:
  KafkaSource(streaming::StreamingContext* ssc, std::shared_ptr<KafkaSubscription> subscription,
              std::string query, KafkaSourceOptions options);

  const std::shared_ptr<KafkaSubscription> sub_;
  const KafkaSourceOptions options_;  // for planning and reading
  KafkaRangeReader reader_;           // this query's consumers (queries read at their own offsets)
  const std::string query_;
  std::atomic<int64_t> lost_{0};
  // What this source's tasks have read, for max_bytes_per_batch's estimate.
  std::atomic<int64_t> read_records_{0};
  std::atomic<int64_t> read_bytes_{0};
  // What the previous plan saw of them, and the average message size they gave; the runner
  // thread only (PlanFrom).
  int64_t planned_records_ = 0;
  int64_t planned_bytes_ = 0;
  int64_t average_bytes_ = int64_t{16} << 10;
  // The source's own state; never held across a broker call or a call into the subscription.
  mutable std::mutex mu_;
  std::set<TopicPartition> owned_;                          // guarded by mu_
  std::set<TopicPartition> lost_ownership_;                 // revoked at some point; guarded by mu_
  std::set<TopicPartition> fresh_;                          // assigned, start not resolved; mu_
  bool use_group_offsets_ = true;                           // guarded by mu_
  KafkaPositions confirmed_;                                // of the last confirmed batch; mu_
  std::map<TopicPartition, int64_t> lag_;                   // guarded by mu_
  std::optional<streaming::RateController> rate_;           // guarded by mu_
  bool attached_ = false;                                   // Attach ran (the destructor detaches)
  streaming::StreamingContext::Registration registration_;  // as an input of the context
};

std::string PositionKey(const std::string& topic, int32_t partition);

}  // namespace runnel::sources
