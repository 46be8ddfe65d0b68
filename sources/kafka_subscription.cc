#include "sources/kafka_subscription.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <charconv>
#include <chrono>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/json.hpp>

#include "common/crash_point.h"
#include "common/logging.h"

namespace runnel::sources {

namespace json = boost::json;

std::string EncodeQueryOffsets(const QueryOffsets& offsets) {
  json::object queries;
  for (const auto& [query, offset] : offsets) queries[query] = offset;
  return json::serialize(json::object{{"queries", std::move(queries)}});
}

std::optional<QueryOffsets> DecodeQueryOffsets(const std::string& metadata) {
  if (metadata.empty()) return std::nullopt;
  boost::system::error_code ec;
  const json::value v = json::parse(metadata, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::value* queries = v.as_object().if_contains("queries");
  if (queries == nullptr || !queries->is_object()) return std::nullopt;
  QueryOffsets out;
  for (const auto& [query, offset] : queries->as_object()) {
    if (!offset.is_int64()) return std::nullopt;
    out[std::string(query)] = offset.as_int64();
  }
  return out;
}

std::optional<int64_t> GroupOffsetOf(const GroupOffset& committed, const std::string& query) {
  const std::optional<QueryOffsets> queries = DecodeQueryOffsets(committed.metadata);
  if (!queries) return committed.offset;
  auto it = queries->find(query);
  if (it == queries->end()) return std::nullopt;
  return it->second;
}

bool SameSubscription(const KafkaSourceOptions& a, const KafkaSourceOptions& b) {
  return a.name == b.name && a.bootstrap_servers == b.bootstrap_servers && a.topics == b.topics &&
         a.group_id == b.group_id && a.group_membership == b.group_membership &&
         a.librdkafka == b.librdkafka && a.timeout_ms == b.timeout_ms;
}

Result<std::shared_ptr<KafkaSubscription>> KafkaSubscription::Make(KafkaSourceOptions options) {
  if (options.bootstrap_servers.empty())
    return Status::InvalidArgument("kafka: no bootstrap servers");
  if (options.topics.empty()) return Status::InvalidArgument("kafka: no topics");
  ASSIGN_OR_RETURN(rd_kafka_t * meta, NewConsumer(options, "-meta"));
  auto sub = std::shared_ptr<KafkaSubscription>(new KafkaSubscription(std::move(options), meta));
  ASSIGN_OR_RETURN(std::set<TopicPartition> known, sub->DiscoverPartitions());
  KafkaSubscription* self = sub.get();
  {
    std::lock_guard lock(self->mu_);
    self->known_ = known;
  }
  KafkaGroup::Callbacks callbacks{.assigned = [self](const auto& p) { self->OnAssigned(p); },
                                  .revoked = [self](const auto& p) { self->OnRevoked(p); }};
  ASSIGN_OR_RETURN(sub->group_, KafkaGroup::Make(self->options_, std::move(callbacks)));
  if (self->group_->member()) {
    Logger("kafka")->info("source {}: joined group {}, owns {}", self->options_.name,
                          self->options_.group_id, fmt::join(self->Owned(), ", "));
  } else {
    std::lock_guard lock(self->mu_);
    self->owned_ = std::move(known);
  }
  return sub;
}

KafkaSubscription::KafkaSubscription(KafkaSourceOptions options, rd_kafka_t* meta)
    : options_(std::move(options)), meta_(meta) {}

KafkaSubscription::~KafkaSubscription() {
  if (group_) group_->Leave();  // no member is left: the revocation commits nothing more
  group_.reset();
  rd_kafka_destroy(meta_);
}

void KafkaSubscription::Attach(Member* member) {
  // Under mu_: no rebalance runs between the member learning what is owned and its callbacks.
  std::lock_guard lock(mu_);
  member->OnAttached({.known = known_, .owned = owned_, .lost_before = lost_before_});
  members_.push_back(member);
}

void KafkaSubscription::Detach(Member* member) {
  // Its last positions go to the group first: the handover, if a partition moves later.
  std::map<TopicPartition, GroupOffset> offsets;
  {
    std::lock_guard lock(mu_);
    offsets = ConfirmedOffsets(members_, {});
    std::erase(members_, member);
    in_batch_.erase(member);
    cv_.notify_all();
  }
  if (Status st = group_->Commit(std::move(offsets), /*async=*/false); !st.ok()) {
    Logger("kafka")->warn("source {}: {}", options_.name, st.ToString());
  }
}

void KafkaSubscription::BeginBatch(Member* member) {
  {
    std::lock_guard poll(poll_mu_);
    group_->Poll();  // rebalances happen here
  }
  std::lock_guard lock(mu_);
  in_batch_.insert(member);
}

void KafkaSubscription::EndBatch(Member* member) {
  std::lock_guard lock(mu_);
  in_batch_.erase(member);
  cv_.notify_all();
}

void KafkaSubscription::AwaitBetweenBatches(std::unique_lock<std::mutex>& lock) {
  // A batch is never cut short by a rebalance; a member that does not poll for
  // max.poll.interval.ms (300 s by default) leaves the group, so the wait stays below it.
  int64_t max_poll_ms = 300000;
  if (auto it = options_.librdkafka.find("max.poll.interval.ms"); it != options_.librdkafka.end()) {
    std::from_chars(it->second.data(), it->second.data() + it->second.size(), max_poll_ms);
  }
  const auto timeout = std::chrono::milliseconds(std::max<int64_t>(max_poll_ms * 4 / 5, 1000));
  if (!cv_.wait_for(lock, timeout, [&] { return in_batch_.empty(); })) {
    Logger("kafka")->warn(
        "source {}: a rebalance waited {} ms for {} queries' batches; going on while they run",
        options_.name, timeout.count(), in_batch_.size());
  }
}

void KafkaSubscription::OnAssigned(const std::vector<TopicPartition>& partitions) {
  {
    // Members are called under mu_, so none detaches (and goes) meanwhile.
    std::unique_lock lock(mu_);
    AwaitBetweenBatches(lock);
    for (const auto& tp : partitions) {
      owned_.insert(tp);
      known_.insert(tp);  // a partition added to the topic since start
    }
    for (Member* m : members_) m->OnAssigned(partitions);
  }
  Logger("kafka")->info("source {}: assigned {} partitions", options_.name, partitions.size());
}

void KafkaSubscription::OnRevoked(const std::vector<TopicPartition>& partitions) {
  // Between batches: what the members' last successful batches committed is final. Hand it
  // to the group, so the next owner starts right there.
  std::map<TopicPartition, GroupOffset> offsets;
  {
    std::unique_lock lock(mu_);
    AwaitBetweenBatches(lock);
    offsets = ConfirmedOffsets(members_, {partitions.begin(), partitions.end()});
    for (const auto& tp : partitions) {
      owned_.erase(tp);
      lost_before_.insert(tp);
    }
    for (Member* m : members_) m->OnRevoked(partitions);
  }
  CrashPoint("during_rebalance");
  Logger("kafka")->info("source {}: {} partitions revoked; committing {} offsets to group {}",
                        options_.name, partitions.size(), offsets.size(), options_.group_id);
  if (group_ == nullptr) return;  // revoked while joining: nothing was confirmed yet
  if (Status st = group_->Commit(std::move(offsets), /*async=*/false); !st.ok()) {
    Logger("kafka")->warn("source {}: on revocation: {}", options_.name, st.ToString());
  }
}

std::map<TopicPartition, GroupOffset> KafkaSubscription::ConfirmedOffsets(
    const std::vector<Member*>& members, const std::set<TopicPartition>& only) {
  std::map<TopicPartition, QueryOffsets> by_partition;
  for (Member* m : members) {
    for (const auto& [tp, offset] : m->Confirmed()) {
      if (offset < 0 || !owned_.contains(tp) || (!only.empty() && !only.contains(tp))) continue;
      by_partition[tp][m->query()] = offset;
    }
  }
  std::map<TopicPartition, GroupOffset> out;
  for (const auto& [tp, queries] : by_partition) {
    int64_t least = INT64_MAX;
    for (const auto& [query, offset] : queries) least = std::min(least, offset);
    out[tp] = {.offset = least, .metadata = EncodeQueryOffsets(queries)};
  }
  return out;
}

Status KafkaSubscription::CommitConfirmed(bool async) {
  std::map<TopicPartition, GroupOffset> offsets;
  {
    std::lock_guard lock(mu_);
    offsets = ConfirmedOffsets(members_, {});
  }
  return group_->Commit(std::move(offsets), async);
}

Result<std::map<TopicPartition, GroupOffset>> KafkaSubscription::Committed(
    const std::set<TopicPartition>& partitions) {
  return group_->Committed(partitions);
}

std::vector<std::string> KafkaSubscription::Owned() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [topic, partition] : owned_)
    out.push_back(fmt::format("{}/{}", topic, partition));
  return out;
}

std::vector<PartitionLag> KafkaSubscription::Lag() const {
  std::map<TopicPartition, int64_t> most;
  std::lock_guard lock(mu_);
  for (Member* m : members_) {
    for (const PartitionLag& l : m->Lag()) {
      int64_t& lag = most.try_emplace({l.topic, l.partition}, 0).first->second;
      lag = std::max(lag, l.records);
    }
  }
  std::vector<PartitionLag> out;
  for (const auto& [tp, records] : most) out.push_back({tp.first, tp.second, records});
  return out;
}

int64_t KafkaSubscription::fetch_errors() const {
  std::lock_guard lock(mu_);
  int64_t errors = 0;
  for (Member* m : members_) errors += m->fetch_errors();
  return errors;
}

std::string KafkaSubscription::Trouble() const {
  std::lock_guard lock(mu_);
  for (Member* m : members_) {
    if (std::string why = m->Trouble(); !why.empty()) return why;
  }
  return "";
}

int64_t KafkaSubscription::records_lost() const {
  std::lock_guard lock(mu_);
  int64_t lost = 0;
  for (Member* m : members_) lost += m->records_lost();
  return lost;
}

Result<std::set<TopicPartition>> KafkaSubscription::DiscoverPartitions() const {
  std::set<TopicPartition> known;
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
      for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
        known.insert({topic, md->topics[0].partitions[i].id});
      }
    }
    rd_kafka_metadata_destroy(md);
    RETURN_NOT_OK(st);
  }
  return known;
}

Result<std::map<TopicPartition, LogBounds>> KafkaSubscription::Bounds(
    const std::set<TopicPartition>& partitions) const {
  // One ListOffsets round for the log starts and one for the ends, for every partition at
  // once. rd_kafka_offsets_for_times honours its timeout even when a leader is unreachable
  // (rd_kafka_query_watermark_offsets may not: it retries while broker states change).
  std::map<TopicPartition, LogBounds> bounds;
  if (partitions.empty()) return bounds;
  for (const int64_t which : {int64_t{RD_KAFKA_OFFSET_BEGINNING}, int64_t{RD_KAFKA_OFFSET_END}}) {
    rd_kafka_topic_partition_list_t* list =
        rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
    for (const auto& [topic, partition] : partitions) {
      rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = which;
    }
    Status st = FromKafka(rd_kafka_offsets_for_times(meta_, list, options_.timeout_ms),
                          "list offsets of " + options_.name);
    for (int i = 0; st.ok() && i < list->cnt; ++i) {
      const auto& e = list->elems[i];
      st = FromKafka(e.err, fmt::format("offsets of {}/{}", e.topic, e.partition));
      LogBounds& b = bounds[{e.topic, e.partition}];
      (which == RD_KAFKA_OFFSET_BEGINNING ? b.start : b.end) = e.offset;
    }
    rd_kafka_topic_partition_list_destroy(list);
    RETURN_NOT_OK(st);
  }
  return bounds;
}

}  // namespace runnel::sources
