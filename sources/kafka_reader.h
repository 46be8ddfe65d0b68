// KafkaRangeReader: the Kafka source's readers. Reads one offset range of one partition into a
// task's emit, on a consumer cached per partition and reused across batches: a range that
// starts where the previous one ended is read without a seek, and no record is read twice in
// the normal path.
//
// Broker trouble: librdkafka retries failed fetches itself; a read that makes no progress for
// `stall_ms` while the broker reports data is a stall (Trouble(), for readiness) until a read
// of that partition completes; a read that takes longer than `timeout_ms` fails with
// Unavailable (RetryScope::kBatch). A range whose start left the log while it was read fails
// with OutOfRange and RetryScope::kReplan: the batch is planned again, and on_data_loss
// decides there.
//
// Thread safety: Read runs on engine workers, any number at once; each consumer serves one
// read at a time (a mutex per consumer). Drop, Trouble and fetch_errors from any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/rdd.h"
#include "sources/kafka_client.h"
#include "sources/offset_planner.h"

namespace runnel::sources {

class KafkaRangeReader {
 public:
  explicit KafkaRangeReader(KafkaSourceOptions options) : options_(std::move(options)) {}

  Status Read(const OffsetRange& range, engine::TaskContext& tc, engine::Emit<std::string> emit);
  // Closes the partition's consumer (the partition was revoked) and forgets its stall.
  void Drop(const TopicPartition& tp);
  // Closes every consumer.
  void Clear();
  // The stalled reads now ("; "-separated), or empty.
  std::string Trouble() const;
  int64_t fetch_errors() const { return fetch_errors_.load(); }

 private:
  struct Consumer;
  Result<std::shared_ptr<Consumer>> ConsumerFor(const TopicPartition& tp);

  const KafkaSourceOptions options_;
  std::atomic<int64_t> fetch_errors_{0};
  mutable std::mutex mu_;
  std::map<TopicPartition, std::shared_ptr<Consumer>> consumers_;  // guarded by mu_
  std::map<TopicPartition, std::string> stalls_;                   // guarded by mu_
};

}  // namespace runnel::sources
