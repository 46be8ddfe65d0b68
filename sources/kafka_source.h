// Kafka direct source, after Spark's direct Kafka stream: every batch is a fixed set of offset
// ranges [from, until), one per topic partition, capped per partition; the batch's RDD has one
// partition per range and reads exactly that range, so it can always be recomputed from its
// lineage. Positions ("kafka:TOPIC/PARTITION" -> next offset) commit with the batch; a
// restarted query resumes from them (otherwise from `starting_offsets`).
//
// Consumers are cached per topic partition and reused across batches: a range that starts
// where the previous one ended is read without a seek, and no record is read twice in the
// normal path. Offsets that are no longer available (the log was truncated) follow
// `on_data_loss`: fail the batch, or skip to the earliest offset and count what was lost.
//
// Partition ownership (`membership`): with `group` (the default) the source joins the consumer
// group `group_id` and plans only the partitions the group assigns it; several instances with
// one group_id share a topic's partitions. The group is polled at the start of each Plan, so a
// rebalance always happens between batches: the running batch finishes and commits first, and
// a partition is never read after it was revoked. On revocation the source commits the
// partitions' confirmed positions to the group, and a newly assigned partition starts at
// max(its position in this instance's state, the group's committed offset) — the group's
// offset where this instance has no position or lost the partition to another member before.
// With `all`, the source reads every partition and uses the group only to publish offsets.
// After each checkpoint the service calls CommitToGroup with the checkpointed positions, so
// standard lag tools see the group's progress. Lag() is each owned partition's end offset minus
// the position after the last planned batch.
//
// Broker trouble never stops the source by itself: librdkafka retries fetches; a read that
// makes no progress for `stall_ms` while the broker reports data marks the source troubled
// (Trouble(), for readiness) until a read completes; requests that time out fail the batch
// with Unavailable, which the streaming context retries.
//
// Thread safety: Plan, Abandon, Confirm run on the batch thread (and the group's rebalance
// callback, from Plan's poll); range reads run on engine workers, each consumer used by one
// task at a time (a mutex per consumer); Lag, Trouble, counters and CommitToGroup on any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "streaming/dstream.h"
#include "streaming/rate_controller.h"

typedef struct rd_kafka_s rd_kafka_t;

namespace runnel::sources {

struct KafkaSourceOptions {
  std::string name = "kafka";
  std::string bootstrap_servers;
  std::vector<std::string> topics;
  std::string group_id = "runnel";
  // Join the group and read only the partitions it assigns (false: read every partition).
  bool group_membership = true;
  bool start_at_earliest = true;
  // No partition reads more per batch; the others read the same share of their backlog.
  int64_t max_records_per_partition = 200000;
  bool fail_on_data_loss = true;
  // Passed to librdkafka as they are.
  std::map<std::string, std::string> librdkafka;
  // How long one range read or metadata request may wait for the broker.
  int timeout_ms = 30000;
  // A read that gets no record for this long while the broker reports data is a stall.
  int stall_ms = 2000;
  // Backpressure: when set, batches take at most what the rate controller allows (see
  // streaming/rate_controller.h), on top of max_records_per_partition.
  std::optional<streaming::RateControlOptions> rate_control;
};

struct PartitionLag {
  std::string topic;
  int32_t partition = 0;
  int64_t records = 0;  // end offset (high watermark) - position, at the last Plan
};

struct OffsetRange {
  std::string topic;
  int32_t partition = 0;
  int64_t from = 0;
  int64_t until = 0;
};

class KafkaSource final : public streaming::DStreamNode<std::string>,
                          public streaming::InputStreamBase,
                          public streaming::BatchListener {
 public:
  static Result<std::shared_ptr<KafkaSource>> Make(streaming::StreamingContext* ssc,
                                                   KafkaSourceOptions options);
  ~KafkaSource() override;

  // Continues from committed positions ("kafka:TOPIC/PARTITION" -> next offset). Without
  // `use_group_offsets` (a query whose state was just reset) the group's committed offsets
  // are ignored and partitions without a position start at `starting_offsets`.
  Status Restore(const std::map<std::string, std::string>& positions,
                 bool use_group_offsets = true);
  Status Plan(streaming::BatchInfo* info) override;
  void Abandon(BatchTime t) override;
  void Confirm(BatchTime t) override;
  // Feeds the rate controller (register the source as a listener of its context).
  void OnBatchCompleted(const streaming::BatchProgress& progress) override;
  // Records per second the rate controller allows now; 0 without rate control.
  double rate() const;
  // True when some owned partition's end offset is past this source's position.
  bool HasPendingData() const override;

  int64_t records_lost() const { return lost_.load(); }
  int64_t fetch_errors() const { return fetch_errors_.load(); }
  int64_t rebalances() const { return rebalances_.load(); }
  std::vector<PartitionLag> Lag() const;
  // The partitions this source reads now ("topic/partition").
  std::vector<std::string> Owned() const;
  // Why the source is not healthy now (a stalled read), or empty.
  std::string Trouble() const;
  // Commits this source's entries of `positions` ("kafka:TOPIC/PARTITION" -> next offset) to
  // the consumer group `group_id`; entries at or below what the source committed before are
  // left out (a checkpoint's positions may be older than the batches committed since).
  Status CommitToGroup(const std::map<std::string, std::string>& positions);

 protected:
  Result<std::optional<engine::Rdd<std::string>>> Compute(BatchTime t) override;

 private:
  struct Consumer;
  using TopicPartition = std::pair<std::string, int32_t>;
  KafkaSource(streaming::StreamingContext* ssc, KafkaSourceOptions options, rd_kafka_t* meta);
  Status DiscoverPartitions();
  // Joins the group and waits (bounded) for the first assignment.
  Status JoinGroup();
  // Serves the group's events (rebalances); never holds mu_ while polling.
  void PollGroup();
  static void RebalanceCallback(rd_kafka_t* rk, int err, void* partitions, void* opaque);
  void OnAssigned(const std::vector<TopicPartition>& partitions);
  void OnRevoked(const std::vector<TopicPartition>& partitions);
  // Commits offsets to the group on the member handle (or a plain committer without one).
  // The one place that commits group offsets (batches, revocations, checkpoints): an offset
  // below what was sent before for its partition is dropped (async: at or below), so the
  // group's offsets only move forward. Takes commit_mu_ (an async commit skips when it is
  // busy); callers hold no other lock of the source.
  Status CommitOffsets(std::map<TopicPartition, int64_t> offsets, bool async = false);
  // Fixes the start of partitions assigned since the last Plan; mu_ held.
  Status ResolveFreshPartitions();
  // (log start, log end) of each partition.
  Result<std::map<TopicPartition, std::pair<int64_t, int64_t>>> Watermarks(
      const std::set<TopicPartition>& partitions) const;
  Status ReadRange(const OffsetRange& range, engine::TaskContext& tc,
                   engine::Sink<std::string> sink);
  Result<std::shared_ptr<Consumer>> ConsumerFor(const std::string& topic, int32_t partition);

  const KafkaSourceOptions options_;
  rd_kafka_t* const meta_;        // for metadata and watermark queries
  rd_kafka_t* member_ = nullptr;  // the group member (group_membership), polled by Plan
  std::atomic<int64_t> lost_{0};
  std::atomic<int64_t> fetch_errors_{0};
  std::atomic<int64_t> rebalances_{0};
  std::atomic<bool> assigned_once_{false};
  mutable std::mutex mu_;
  std::map<TopicPartition, int64_t> positions_;  // every partition; guarded by mu_
  // What readers on other threads need (never held across a broker call). owned_ is written
  // under mu_ and view_mu_, so either guards a read.
  mutable std::mutex view_mu_;
  std::set<TopicPartition> owned_;
  std::set<TopicPartition> lost_ownership_;        // revoked at some point; guarded by mu_
  std::set<TopicPartition> fresh_;                 // assigned, start not resolved; mu_
  bool use_group_offsets_ = true;                  // guarded by mu_
  std::map<TopicPartition, int64_t> confirmed_;    // positions of the last confirmed batch; mu_
  std::optional<streaming::RateController> rate_;  // guarded by mu_
  // The last Plan's batch time, positions before it and after it; guarded by mu_.
  int64_t last_plan_time_ = -1;
  std::map<TopicPartition, int64_t> before_last_plan_;
  std::map<TopicPartition, int64_t> after_last_plan_;
  std::map<int64_t, std::vector<OffsetRange>> planned_;  // guarded by mu_
  std::map<TopicPartition, int64_t> lag_;                // guarded by view_mu_
  std::map<TopicPartition, std::string> stalls_;         // stalled reads; view_mu_
  std::mutex commit_mu_;                                 // serializes commits
  std::map<TopicPartition, int64_t> committed_offsets_;  // largest sent per partition; commit_mu_
  rd_kafka_t* committer_ = nullptr;  // guarded by commit_mu_; without membership, made on use
  std::map<TopicPartition, std::shared_ptr<Consumer>> consumers_;  // guarded by mu_
  streaming::StreamingContext::Registration registration_;         // as an input of the context
};

std::string PositionKey(const std::string& topic, int32_t partition);

}  // namespace runnel::sources
