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
// After each checkpoint the service calls CommitToGroup with the checkpointed positions, so
// standard lag tools see the group's progress (the group does not own the offsets: state does).
// Lag() is each partition's end offset minus the position after the last planned batch.
// Not yet: consumer-group membership (partitions assigned by the group's rebalance).
//
// Thread safety: Plan runs on the batch thread; range reads run on engine workers, each
// consumer used by one task at a time (a mutex per consumer).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "streaming/dstream.h"

typedef struct rd_kafka_s rd_kafka_t;

namespace runnel::sources {

struct KafkaSourceOptions {
  std::string name = "kafka";
  std::string bootstrap_servers;
  std::vector<std::string> topics;
  std::string group_id = "runnel";
  bool start_at_earliest = true;
  int64_t max_records_per_partition = 200000;
  bool fail_on_data_loss = true;
  // Passed to librdkafka as they are.
  std::map<std::string, std::string> librdkafka;
  // How long one range read or metadata request may wait for the broker.
  int timeout_ms = 30000;
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
                          public streaming::InputStreamBase {
 public:
  static Result<std::shared_ptr<KafkaSource>> Make(streaming::StreamingContext* ssc,
                                                   KafkaSourceOptions options);
  ~KafkaSource() override;

  Status Restore(const std::map<std::string, std::string>& positions);
  Status Plan(streaming::BatchInfo* info) override;
  // True when some partition's end offset is past this source's position.
  bool HasPendingData() const override;

  int64_t records_lost() const { return lost_.load(); }
  std::vector<PartitionLag> Lag() const;
  // Commits this source's entries of `positions` ("kafka:TOPIC/PARTITION" -> next offset) to
  // the consumer group `group_id`.
  Status CommitToGroup(const std::map<std::string, std::string>& positions);

 protected:
  Result<std::optional<engine::Rdd<std::string>>> Compute(BatchTime t) override;

 private:
  struct Consumer;
  KafkaSource(streaming::StreamingContext* ssc, KafkaSourceOptions options, rd_kafka_t* meta);
  Status DiscoverPartitions();
  Result<std::pair<int64_t, int64_t>> Watermarks(const std::string& topic, int32_t partition) const;
  Status ReadRange(const OffsetRange& range, engine::TaskContext& tc,
                   engine::Sink<std::string> sink);
  Result<std::shared_ptr<Consumer>> ConsumerFor(const std::string& topic, int32_t partition);

  const KafkaSourceOptions options_;
  rd_kafka_t* const meta_;  // for metadata and watermark queries
  std::atomic<int64_t> lost_{0};
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int32_t>, int64_t> positions_;  // guarded by mu_
  std::map<int64_t, std::vector<OffsetRange>> planned_;           // guarded by mu_
  std::map<std::pair<std::string, int32_t>, int64_t> lag_;        // guarded by mu_
  std::mutex commit_mu_;                                          // serializes CommitToGroup
  rd_kafka_t* committer_ = nullptr;  // guarded by commit_mu_; the group's handle, made on use
  std::map<std::pair<std::string, int32_t>, std::shared_ptr<Consumer>> consumers_;  // mu_
};

std::string PositionKey(const std::string& topic, int32_t partition);

}  // namespace runnel::sources
