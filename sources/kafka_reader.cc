#include "sources/kafka_reader.h"

#include <librdkafka/rdkafka.h>

#include <chrono>

#include <fmt/format.h>

#include "common/logging.h"

namespace runnel::sources {

struct KafkaRangeReader::Consumer {
  std::mutex mu;
  rd_kafka_t* rk = nullptr;
  int64_t next = -1;  // the offset the next message will have; -1: not assigned
  ~Consumer() {
    if (rk != nullptr) {
      rd_kafka_consumer_close(rk);
      rd_kafka_destroy(rk);
    }
  }
};

Result<std::shared_ptr<KafkaRangeReader::Consumer>> KafkaRangeReader::ConsumerFor(
    const TopicPartition& tp) {
  std::lock_guard lock(mu_);
  auto& slot = consumers_[tp];
  if (!slot) {
    auto consumer = std::make_shared<Consumer>();
    ASSIGN_OR_RETURN(consumer->rk, NewConsumer(options_, ""));
    slot = consumer;
  }
  return slot;
}

void KafkaRangeReader::Drop(const TopicPartition& tp) {
  std::shared_ptr<Consumer> dropped;  // closed outside the lock
  std::lock_guard lock(mu_);
  if (auto it = consumers_.find(tp); it != consumers_.end()) {
    dropped = std::move(it->second);
    consumers_.erase(it);
  }
  stalls_.erase(tp);
}

void KafkaRangeReader::Clear() {
  std::map<TopicPartition, std::shared_ptr<Consumer>> dropped;
  std::lock_guard lock(mu_);
  dropped.swap(consumers_);
  stalls_.clear();
}

std::string KafkaRangeReader::Trouble() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [tp, why] : stalls_) out += (out.empty() ? "" : "; ") + why;
  return out;
}

Status KafkaRangeReader::Read(const OffsetRange& range, engine::TaskContext& tc,
                              engine::Emit<std::string> emit) {
  const TopicPartition tp(range.topic, range.partition);
  ASSIGN_OR_RETURN(std::shared_ptr<Consumer> consumer, ConsumerFor(tp));
  std::lock_guard consumer_lock(consumer->mu);
  const auto started = std::chrono::steady_clock::now();
  const bool reassigned = consumer->next != range.from;
  if (reassigned) {  // not where the last range ended: (re)assign
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, range.topic.c_str(), range.partition)->offset =
        range.from;
    const rd_kafka_resp_err_t err = rd_kafka_assign(consumer->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    RETURN_NOT_OK(FromKafka(err, "assign"));
    consumer->next = range.from;
  }
  const auto now = [] { return std::chrono::steady_clock::now(); };
  const auto deadline = now() + std::chrono::milliseconds(options_.timeout_ms);
  auto last_progress = now();
  bool stalled = false;
  bool stopped = false;
  Status st;
  while (consumer->next < range.until) {
    if (now() > deadline) {
      st = Status::Unavailable(fmt::format("{}/{}: timed out reading [{}, {}) at {}", range.topic,
                                           range.partition, range.from, range.until,
                                           consumer->next));
      consumer->next = -1;  // reassign on the retry
      break;
    }
    if (!stalled && now() - last_progress > std::chrono::milliseconds(options_.stall_ms)) {
      stalled = true;
      const std::string why =
          fmt::format("{}/{}: no record for {} ms at offset {} (the broker reports data up to {})",
                      range.topic, range.partition, options_.stall_ms, consumer->next, range.until);
      Logger("kafka")->warn("source {}: {}", options_.name, why);
      std::lock_guard lock(mu_);
      stalls_[tp] = why;
    }
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(consumer->rk, 100);
    if (msg == nullptr) continue;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const rd_kafka_resp_err_t err = msg->err;
      rd_kafka_message_destroy(msg);
      if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
      ++fetch_errors_;
      Status fetch = FromKafka(err, fmt::format("fetch {}/{}", range.topic, range.partition));
      if (fetch.retry() == RetryScope::kBatch) continue;  // librdkafka retries the fetch itself
      consumer->next = -1;
      if (fetch.code() == StatusCode::kOutOfRange) {
        // The log lost the range's start after the batch was planned (retention): the plan
        // no longer holds. The batch is planned again, where on_data_loss decides: stop, or
        // skip to the log start and count what was lost.
        st = Status::OutOfRange(
                 fmt::format("{}/{}: offsets from {} left the log while the batch read them; "
                             "planning again ({})",
                             range.topic, range.partition, range.from, fetch.message()))
                 .WithRetry(RetryScope::kReplan);
        break;
      }
      st = std::move(fetch);
      break;
    }
    const int64_t offset = msg->offset;
    if (offset >= consumer->next && offset < range.until && !stopped) {
      ++tc.metrics().records_in;
      // A null value (a tombstone) reads as an empty record, which the parser counts.
      std::string value = msg->payload == nullptr
                              ? std::string()
                              : std::string(static_cast<const char*>(msg->payload), msg->len);
      stopped = !emit(std::move(value));
    }
    if (offset >= consumer->next) {
      consumer->next = offset + 1;
      last_progress = now();
    }
    rd_kafka_message_destroy(msg);
  }
  Logger("kafka")->debug("source {}: read {}/{} [{}, {}) in {:.3f}s{}: {}", options_.name,
                         range.topic, range.partition, range.from, range.until,
                         std::chrono::duration<double>(now() - started).count(),
                         reassigned ? " (from another offset)" : "", st.ToString());
  if (stalled && st.ok()) {
    Logger("kafka")->info("source {}: {}/{} reads again", options_.name, range.topic,
                          range.partition);
    std::lock_guard lock(mu_);
    stalls_.erase(tp);
  }
  return st;
}

}  // namespace runnel::sources
