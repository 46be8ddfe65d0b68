#include "sources/kafka_group.h"

#include <librdkafka/rdkafka.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "common/logging.h"
#include "sources/kafka_conf.h"

namespace runnel::sources {

Result<std::unique_ptr<KafkaGroup>> KafkaGroup::Make(const KafkaSourceOptions& options,
                                                     Callbacks callbacks) {
  auto group = std::unique_ptr<KafkaGroup>(new KafkaGroup(options, std::move(callbacks)));
  if (options.group_membership) RETURN_NOT_OK(group->Join());
  return group;
}

KafkaGroup::~KafkaGroup() {
  Leave();
  if (member_ != nullptr) rd_kafka_destroy(member_);
  if (committer_ != nullptr) rd_kafka_destroy(committer_);
}

void KafkaGroup::Leave() {
  if (member_ == nullptr || left_) return;
  left_ = true;
  rd_kafka_consumer_close(member_);
}

Status KafkaGroup::Join() {
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", options_.bootstrap_servers},
      {"group.id", options_.group_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"auto.offset.reset", "earliest"},
      // Kafka's pre-3.0 default: a member that died without leaving (kill -9) holds its
      // partitions for this long; so does one that left, on librdkafka's mock cluster.
      {"session.timeout.ms", "10000"},
      {"log_level", "3"},
  };
  for (const auto& [k, v] : options_.librdkafka) props[k] = v;
  int session_ms = 10000;
  const std::string& session = props["session.timeout.ms"];
  std::from_chars(session.data(), session.data() + session.size(), session_ms);
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf,
                   MakeKafkaConf(props, "kafka source " + options_.name + " (group member)"));
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_rebalance_cb(
      conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
               void* opaque) { RebalanceCallback(rk, static_cast<int>(err), partitions, opaque); });
  char errstr[512];
  member_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (member_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(fmt::format("kafka group member: {}", errstr));
  }
  rd_kafka_poll_set_consumer(member_);
  rd_kafka_topic_partition_list_t* topics =
      rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size()));
  for (const std::string& t : options_.topics) {
    rd_kafka_topic_partition_list_add(topics, t.c_str(), RD_KAFKA_PARTITION_UA);
  }
  const rd_kafka_resp_err_t err = rd_kafka_subscribe(member_, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  RETURN_NOT_OK(FromKafka(err, "subscribe"));
  // A query should not start (nor --available-now finish) before it knows what it owns. The
  // group may first wait out the session of a member that is gone.
  const int wait_ms = std::max(options_.timeout_ms, 30000) + session_ms;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (!assigned_once_ && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(member_, 100);
    if (msg != nullptr) rd_kafka_message_destroy(msg);
  }
  if (!assigned_once_) {
    return Status::Unavailable(
        fmt::format("kafka source {}: no partition assignment from group {} within {} ms",
                    options_.name, options_.group_id, options_.timeout_ms + session_ms));
  }
  return Status::OK();
}

void KafkaGroup::Poll() {
  if (member_ == nullptr || left_) return;
  // The member's partitions are paused: anything it returns is an event, not input.
  while (rd_kafka_message_t* msg = rd_kafka_consumer_poll(member_, 0)) {
    rd_kafka_message_destroy(msg);
  }
}

void KafkaGroup::RebalanceCallback(rd_kafka_t* rk, int err, void* partitions, void* opaque) {
  auto* self = static_cast<KafkaGroup*>(opaque);
  auto* list = static_cast<rd_kafka_topic_partition_list_t*>(partitions);
  std::vector<TopicPartition> tps;
  for (int i = 0; i < list->cnt; ++i)
    tps.emplace_back(list->elems[i].topic, list->elems[i].partition);
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  ++self->rebalances_;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, list)) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, list);
    }
    rd_kafka_pause_partitions(rk, list);  // the member only holds ownership; readers fetch
    self->callbacks_.assigned(tps);
    self->assigned_once_ = true;
  } else {
    self->callbacks_.revoked(tps);
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, list)) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }
}

Result<std::map<TopicPartition, GroupOffset>> KafkaGroup::Committed(
    const std::set<TopicPartition>& partitions) {
  std::map<TopicPartition, GroupOffset> out;
  if (member_ == nullptr || partitions.empty()) return out;
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (const auto& tp : partitions)
    rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second);
  const rd_kafka_resp_err_t err = rd_kafka_committed(member_, list, options_.timeout_ms);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& e = list->elems[i];
      if (e.err == RD_KAFKA_RESP_ERR_NO_ERROR && e.offset >= 0) {
        out[{e.topic, e.partition}] = {
            .offset = e.offset,
            .metadata = e.metadata == nullptr
                            ? std::string()
                            : std::string(static_cast<const char*>(e.metadata), e.metadata_size)};
      }
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  RETURN_NOT_OK(FromKafka(err, "committed offsets of group " + options_.group_id));
  return out;
}

Status KafkaGroup::Commit(std::map<TopicPartition, GroupOffset> offsets, bool async) {
  // The synchronous commit talks to the broker: batches keep planning meanwhile (nothing of
  // the source is locked). An async commit (a batch's) does not wait for a synchronous one in
  // flight: it is left out, and the next batch, the revocation or the checkpoint commits at
  // least as far.
  std::unique_lock commit_lock(commit_mu_, std::defer_lock);
  if (async) {
    if (!commit_lock.try_lock()) return Status::OK();
  } else {
    commit_lock.lock();
  }
  std::map<TopicPartition, GroupOffset> before;  // to restore if the commit fails
  for (auto it = offsets.begin(); it != offsets.end();) {
    auto [previous, fresh] = committed_.try_emplace(it->first);
    // An async commit of what was sent last is left out. A synchronous one goes again: an
    // async commit of it may have been refused (during a rebalance), and the revocation's
    // commit is the handover the next owner relies on. An offset may go down: it is the
    // smallest of the source's queries, and a query that joins (or was reset) starts lower.
    if (async && it->second == previous->second) {
      it = offsets.erase(it);
      continue;
    }
    before[it->first] = previous->second;
    previous->second = it->second;
    ++it;
  }
  if (offsets.empty()) return Status::OK();
  rd_kafka_t* rk = member_;
  if (rk == nullptr && committer_ == nullptr) {
    ASSIGN_OR_RETURN(committer_, NewConsumer(options_, ""));
  }
  if (rk == nullptr) rk = committer_;
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
  for (const auto& [tp, committed] : offsets) {
    rd_kafka_topic_partition_t* e =
        rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second);
    e->offset = committed.offset;
    if (!committed.metadata.empty()) {
      // Freed with the list.
      e->metadata = malloc(committed.metadata.size());  // NOLINT(cppcoreguidelines-no-malloc)
      memcpy(e->metadata, committed.metadata.data(), committed.metadata.size());
      e->metadata_size = committed.metadata.size();
    }
  }
  const rd_kafka_resp_err_t err = rd_kafka_commit(rk, list, async ? 1 : 0);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (const auto& [tp, offset] : before) committed_[tp] = offset;
    return Status::Unavailable(
        fmt::format("commit offsets to group {}: {}", options_.group_id, rd_kafka_err2str(err)));
  }
  return Status::OK();
}

}  // namespace runnel::sources
