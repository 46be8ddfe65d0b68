#include "sources/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <charconv>
#include <chrono>

#include <fmt/format.h>

#include "common/logging.h"
#include "sources/kafka_conf.h"

namespace runnel::sources {
namespace {

Status FromKafka(rd_kafka_resp_err_t err, std::string_view what) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::OK();
  const std::string msg = fmt::format("{}: {}", what, rd_kafka_err2str(err));
  switch (err) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return Status::Unavailable(msg);
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
      return Status::OutOfRange(msg);
    default:
      return Status::IOError(msg);
  }
}

Result<rd_kafka_t*> NewConsumer(const KafkaSourceOptions& o, const std::string& suffix) {
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", o.bootstrap_servers},
      {"group.id", o.group_id + suffix},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"auto.offset.reset", "error"},
      {"log_level", "3"},
  };
  for (const auto& [k, v] : o.librdkafka) props[k] = v;
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, MakeKafkaConf(props, "kafka source " + o.name));
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return Status::InvalidArgument(fmt::format("kafka consumer: {}", errstr));
  rd_kafka_poll_set_consumer(rk);
  return rk;
}

}  // namespace

std::string PositionKey(const std::string& topic, int32_t partition) {
  return fmt::format("kafka:{}/{}", topic, partition);
}

struct KafkaSource::Consumer {
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

Result<std::shared_ptr<KafkaSource>> KafkaSource::Make(streaming::StreamingContext* ssc,
                                                       KafkaSourceOptions options) {
  if (options.bootstrap_servers.empty())
    return Status::InvalidArgument("kafka: no bootstrap servers");
  if (options.topics.empty()) return Status::InvalidArgument("kafka: no topics");
  ASSIGN_OR_RETURN(rd_kafka_t * meta, NewConsumer(options, "-meta"));
  auto source = std::shared_ptr<KafkaSource>(new KafkaSource(ssc, std::move(options), meta));
  RETURN_NOT_OK(source->DiscoverPartitions());
  ssc->AddInput(source.get());
  return source;
}

KafkaSource::KafkaSource(streaming::StreamingContext* ssc, KafkaSourceOptions options,
                         rd_kafka_t* meta)
    : DStreamNode<std::string>(ssc, ssc->batch_interval(), {}),
      options_(std::move(options)),
      meta_(meta) {}

KafkaSource::~KafkaSource() {
  consumers_.clear();
  if (committer_ != nullptr) rd_kafka_destroy(committer_);
  rd_kafka_destroy(meta_);
}

std::vector<PartitionLag> KafkaSource::Lag() const {
  std::lock_guard lock(mu_);
  std::vector<PartitionLag> out;
  for (const auto& [tp, records] : lag_) out.push_back({tp.first, tp.second, records});
  return out;
}

Status KafkaSource::CommitToGroup(const std::map<std::string, std::string>& positions) {
  // The synchronous commit talks to the broker: it holds commit_mu_, never mu_, so batches
  // keep planning meanwhile.
  std::vector<std::pair<std::string, int32_t>> partitions;
  {
    std::lock_guard lock(mu_);
    for (const auto& [tp, unused] : positions_) partitions.push_back(tp);
  }
  std::lock_guard commit_lock(commit_mu_);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  for (const auto& tp : partitions) {
    auto it = positions.find(PositionKey(tp.first, tp.second));
    int64_t offset = -1;
    if (it == positions.end()) continue;
    auto [end, ec] =
        std::from_chars(it->second.data(), it->second.data() + it->second.size(), offset);
    if (ec != std::errc() || end != it->second.data() + it->second.size() || offset < 0) continue;
    rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second)->offset = offset;
  }
  if (list->cnt == 0) {
    rd_kafka_topic_partition_list_destroy(list);
    return Status::OK();
  }
  if (committer_ == nullptr) {
    auto rk = NewConsumer(options_, "");
    if (!rk.ok()) {
      rd_kafka_topic_partition_list_destroy(list);
      return rk.status();
    }
    committer_ = *rk;
  }
  const rd_kafka_resp_err_t err = rd_kafka_commit(committer_, list, /*async=*/0);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Unavailable(
        fmt::format("commit offsets to group {}: {}", options_.group_id, rd_kafka_err2str(err)));
  }
  return Status::OK();
}

Status KafkaSource::DiscoverPartitions() {
  for (const std::string& topic : options_.topics) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(meta_, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(meta_, 0, t, &md, options_.timeout_ms);
    rd_kafka_topic_destroy(t);
    RETURN_NOT_OK(FromKafka(err, "metadata of " + topic));
    Status st;
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      st = Status::NotFound(
          fmt::format("kafka topic {}: {}", topic,
                      md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "none"));
    } else {
      std::lock_guard lock(mu_);
      for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
        positions_.try_emplace({topic, md->topics[0].partitions[i].id}, -1);
      }
    }
    rd_kafka_metadata_destroy(md);
    RETURN_NOT_OK(st);
  }
  return Status::OK();
}

Result<std::pair<int64_t, int64_t>> KafkaSource::Watermarks(const std::string& topic,
                                                            int32_t partition) const {
  int64_t low = 0, high = 0;
  RETURN_NOT_OK(FromKafka(rd_kafka_query_watermark_offsets(meta_, topic.c_str(), partition, &low,
                                                           &high, options_.timeout_ms),
                          fmt::format("watermarks of {}/{}", topic, partition)));
  return std::pair(low, high);
}

Status KafkaSource::Restore(const std::map<std::string, std::string>& positions) {
  std::lock_guard lock(mu_);
  for (auto& [tp, offset] : positions_) {
    auto it = positions.find(PositionKey(tp.first, tp.second));
    if (it == positions.end()) continue;
    try {
      offset = std::stoll(it->second);
    } catch (const std::exception&) {
      return Status::Corruption(
          fmt::format("bad committed offset '{}' for {}", it->second, it->first));
    }
  }
  return Status::OK();
}

Status KafkaSource::Plan(streaming::BatchInfo* info) {
  std::lock_guard lock(mu_);
  std::vector<OffsetRange> ranges;
  for (auto& [tp, position] : positions_) {
    ASSIGN_OR_RETURN(auto marks, Watermarks(tp.first, tp.second));
    const auto [low, high] = marks;
    int64_t from = position >= 0 ? position : (options_.start_at_earliest ? low : high);
    if (from < low) {
      if (options_.fail_on_data_loss) {
        return Status::OutOfRange(
            fmt::format("{}/{}: offsets [{}, {}) are no longer available (on_data_loss: fail)",
                        tp.first, tp.second, from, low));
      }
      lost_ += low - from;
      Logger("kafka")->warn("{}/{}: skipped {} records no longer available", tp.first, tp.second,
                            low - from);
      from = low;
    }
    const int64_t until = std::min(high, from + options_.max_records_per_partition);
    if (until > from) {
      ranges.push_back({tp.first, tp.second, from, until});
      info->progress.input[PositionKey(tp.first, tp.second)] = fmt::format("[{}, {})", from, until);
      info->progress.records_in += until - from;
    }
    position = std::max(from, until);
    lag_[tp] = std::max<int64_t>(0, high - position);
    info->positions[PositionKey(tp.first, tp.second)] = std::to_string(position);
  }
  planned_[info->progress.batch_time.value()] = std::move(ranges);
  return Status::OK();
}

bool KafkaSource::HasPendingData() const {
  std::lock_guard lock(mu_);
  for (const auto& [tp, position] : positions_) {
    auto marks = Watermarks(tp.first, tp.second);
    if (!marks.ok()) return true;  // unknown: let a batch try (and report the error)
    const int64_t from =
        position >= 0 ? position : (options_.start_at_earliest ? marks->first : marks->second);
    if (marks->second > from) return true;
  }
  return false;
}

Result<std::shared_ptr<KafkaSource::Consumer>> KafkaSource::ConsumerFor(const std::string& topic,
                                                                        int32_t partition) {
  std::lock_guard lock(mu_);
  auto& slot = consumers_[{topic, partition}];
  if (!slot) {
    auto consumer = std::make_shared<Consumer>();
    ASSIGN_OR_RETURN(consumer->rk, NewConsumer(options_, ""));
    slot = consumer;
  }
  return slot;
}

Status KafkaSource::ReadRange(const OffsetRange& range, engine::TaskContext& tc,
                              engine::Sink<std::string> sink) {
  ASSIGN_OR_RETURN(std::shared_ptr<Consumer> consumer, ConsumerFor(range.topic, range.partition));
  std::lock_guard lock(consumer->mu);
  if (consumer->next != range.from) {  // not where the last range ended: (re)assign
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, range.topic.c_str(), range.partition)->offset =
        range.from;
    const rd_kafka_resp_err_t err = rd_kafka_assign(consumer->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    RETURN_NOT_OK(FromKafka(err, "assign"));
    consumer->next = range.from;
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  bool stopped = false;
  while (consumer->next < range.until) {
    if (std::chrono::steady_clock::now() > deadline) {
      consumer->next = -1;  // reassign on the retry
      return Status::Unavailable(fmt::format("{}/{}: timed out reading [{}, {}) at {}", range.topic,
                                             range.partition, range.from, range.until,
                                             consumer->next));
    }
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(consumer->rk, 100);
    if (msg == nullptr) continue;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const rd_kafka_resp_err_t err = msg->err;
      rd_kafka_message_destroy(msg);
      if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
      Status st = FromKafka(err, fmt::format("fetch {}/{}", range.topic, range.partition));
      if (st.code() == StatusCode::kUnavailable) continue;  // transient: librdkafka retries
      consumer->next = -1;
      return st;
    }
    const int64_t offset = msg->offset;
    if (offset >= consumer->next && offset < range.until && !stopped) {
      ++tc.metrics().records_in;
      std::string value(static_cast<const char*>(msg->payload), msg->len);
      stopped = !sink(std::move(value));
    }
    if (offset >= consumer->next) consumer->next = offset + 1;
    rd_kafka_message_destroy(msg);
  }
  return Status::OK();
}

Result<std::optional<engine::Rdd<std::string>>> KafkaSource::Compute(BatchTime t) {
  std::vector<OffsetRange> ranges;
  {
    std::lock_guard lock(mu_);
    auto it = planned_.find(t.value());
    if (it != planned_.end()) ranges = it->second;
    planned_.erase(planned_.begin(), planned_.upper_bound(t.value()));
  }
  if (ranges.empty()) {
    return std::optional(this->ssc().engine().Parallelize(std::vector<std::string>{}, 1));
  }
  const int n = static_cast<int>(ranges.size());
  return std::optional(engine::FromSource<std::string>(
      this->ssc().engine(), "kafka", n,
      [this, ranges = std::move(ranges)](int p, engine::TaskContext& tc,
                                         engine::Sink<std::string> sink) {
        return ReadRange(ranges[static_cast<size_t>(p)], tc, sink);
      }));
}

}  // namespace runnel::sources
