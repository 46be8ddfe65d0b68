#include "sources/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <charconv>
#include <chrono>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/crash_point.h"
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
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:  // out of range, and auto.offset.reset=error
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
      // Offset queries wait for their request, not for their own timeout: bound the request.
      {"socket.timeout.ms", std::to_string(std::max(o.timeout_ms, 2000))},
      // A broker that comes back is found within 2 s (librdkafka's default backs off to 10 s).
      {"reconnect.backoff.max.ms", "2000"},
      // A batch reads only records that existed when it was planned, so a reader never needs
      // a fetch to wait for new data; a fetch waiting at the log end (500 ms by default) only
      // delays the next read from another offset (a retried batch rewinds every partition).
      {"fetch.wait.max.ms", "100"},
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

// How much of a partition's `backlog` one batch reads when no partition may read more than
// `cap` and the largest backlog is `largest`: the same fraction of every backlog (rounded up),
// so partitions advance through event time together. A fixed per-partition cap would let a
// short partition run hours ahead of a long one and make the long one's records late.
int64_t Share(int64_t backlog, int64_t largest, int64_t cap) {
  if (backlog <= 0) return 0;
  if (largest <= cap) return backlog;
  const auto scaled =
      static_cast<int64_t>((static_cast<__int128>(backlog) * cap + largest - 1) / largest);
  return std::clamp<int64_t>(scaled, 1, cap);
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
  if (source->options_.group_membership) {
    RETURN_NOT_OK(source->JoinGroup());
  } else {
    std::scoped_lock lock(source->mu_, source->view_mu_);
    for (const auto& [tp, unused] : source->positions_) source->owned_.insert(tp);
  }
  source->registration_ = ssc->AddInput(source.get());
  return source;
}

KafkaSource::KafkaSource(streaming::StreamingContext* ssc, KafkaSourceOptions options,
                         rd_kafka_t* meta)
    : DStreamNode<std::string>(ssc, ssc->batch_interval(), {}),
      options_(std::move(options)),
      meta_(meta) {
  if (options_.rate_control) {
    streaming::RateControlOptions rc = *options_.rate_control;
    rc.batch_interval_seconds = std::chrono::duration<double>(ssc->batch_interval()).count();
    rate_.emplace(rc);
  }
}

void KafkaSource::OnBatchCompleted(const streaming::BatchProgress& p) {
  if (!p.status.ok() || !p.committed) return;
  std::lock_guard lock(mu_);
  if (!rate_) return;
  if (auto next =
          rate_->OnBatchCompleted(static_cast<double>(p.batch_time.value()) / 1000.0, p.records_in,
                                  p.processing_seconds, p.scheduling_delay_seconds)) {
    Logger("kafka")->debug("source {}: rate {:.0f} records/s", options_.name, *next);
  }
}

double KafkaSource::rate() const {
  std::lock_guard lock(mu_);
  return rate_ ? rate_->rate() : 0;
}

KafkaSource::~KafkaSource() {
  registration_ = {};  // no batch plans this source from here on
  if (member_ != nullptr) {
    rd_kafka_consumer_close(member_);  // leaves the group (the revocation commits)
    rd_kafka_destroy(member_);
  }
  consumers_.clear();
  if (committer_ != nullptr) rd_kafka_destroy(committer_);
  rd_kafka_destroy(meta_);
}

Status KafkaSource::JoinGroup() {
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
  std::from_chars(props["session.timeout.ms"].data(),
                  props["session.timeout.ms"].data() + props["session.timeout.ms"].size(),
                  session_ms);
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf,
                   MakeKafkaConf(props, "kafka source " + options_.name + " (group member)"));
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_rebalance_cb(
      conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
               void* opaque) { RebalanceCallback(rk, static_cast<int>(err), partitions, opaque); });
  char errstr[512];
  member_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (member_ == nullptr) {
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
        fmt::format("kafka source {}: no partition assignment from group "
                    "{} within {} ms",
                    options_.name, options_.group_id, options_.timeout_ms + session_ms));
  }
  Logger("kafka")->info("source {}: joined group {}, owns {}", options_.name, options_.group_id,
                        fmt::join(Owned(), ", "));
  return Status::OK();
}

void KafkaSource::PollGroup() {
  if (member_ == nullptr) return;
  // The member's partitions are paused: anything it returns is an event, not input.
  while (rd_kafka_message_t* msg = rd_kafka_consumer_poll(member_, 0)) {
    rd_kafka_message_destroy(msg);
  }
}

void KafkaSource::RebalanceCallback(rd_kafka_t* rk, int err, void* partitions, void* opaque) {
  auto* self = static_cast<KafkaSource*>(opaque);
  auto* list = static_cast<rd_kafka_topic_partition_list_t*>(partitions);
  std::vector<TopicPartition> tps;
  for (int i = 0; i < list->cnt; ++i)
    tps.emplace_back(list->elems[i].topic, list->elems[i].partition);
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, list)) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, list);
    }
    rd_kafka_pause_partitions(rk, list);  // the member only holds ownership; readers fetch
    self->OnAssigned(tps);
  } else {
    self->OnRevoked(tps);
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, list)) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }
}

void KafkaSource::OnAssigned(const std::vector<TopicPartition>& partitions) {
  ++rebalances_;
  std::vector<TopicPartition> known;
  {
    std::scoped_lock lock(mu_, view_mu_);
    for (const auto& tp : partitions) {
      positions_.try_emplace(tp, -1);  // a partition added to the topic since start
      owned_.insert(tp);
      fresh_.insert(tp);
      known.push_back(tp);
    }
  }
  Logger("kafka")->info("source {}: assigned {} partitions", options_.name, known.size());
  assigned_once_ = true;
}

void KafkaSource::OnRevoked(const std::vector<TopicPartition>& partitions) {
  ++rebalances_;
  // Between batches (the group is polled only at the start of Plan): what the last successful
  // batch committed is final. Hand it to the group, so the next owner starts right there.
  std::map<TopicPartition, int64_t> offsets;
  {
    std::scoped_lock lock(mu_, view_mu_);
    for (const auto& tp : partitions) {
      if (auto it = confirmed_.find(tp); it != confirmed_.end() && it->second >= 0) {
        offsets[tp] = it->second;
      }
      owned_.erase(tp);
      fresh_.erase(tp);
      lost_ownership_.insert(tp);
      lag_.erase(tp);
      stalls_.erase(tp);
      consumers_.erase(tp);
    }
  }
  CrashPoint("during_rebalance");
  Logger("kafka")->info("source {}: {} partitions revoked; committing {} offsets to group {}",
                        options_.name, partitions.size(), offsets.size(), options_.group_id);
  if (Status st = CommitOffsets(offsets); !st.ok()) {
    Logger("kafka")->warn("source {}: on revocation: {}", options_.name, st.ToString());
  }
}

std::vector<std::string> KafkaSource::Owned() const {
  std::lock_guard lock(view_mu_);
  std::vector<std::string> out;
  for (const auto& [topic, partition] : owned_)
    out.push_back(fmt::format("{}/{}", topic, partition));
  return out;
}

std::string KafkaSource::Trouble() const {
  std::lock_guard lock(view_mu_);
  std::string out;
  for (const auto& [tp, why] : stalls_) out += (out.empty() ? "" : "; ") + why;
  return out;
}

std::vector<PartitionLag> KafkaSource::Lag() const {
  std::lock_guard lock(view_mu_);
  std::vector<PartitionLag> out;
  for (const auto& [tp, records] : lag_) out.push_back({tp.first, tp.second, records});
  return out;
}

Status KafkaSource::CommitToGroup(const std::map<std::string, std::string>& positions) {
  std::map<TopicPartition, int64_t> offsets;
  {
    std::lock_guard lock(view_mu_);
    for (const auto& tp : owned_) {
      auto it = positions.find(PositionKey(tp.first, tp.second));
      if (it == positions.end()) continue;
      int64_t offset = -1;
      auto [end, ec] =
          std::from_chars(it->second.data(), it->second.data() + it->second.size(), offset);
      if (ec != std::errc() || end != it->second.data() + it->second.size() || offset < 0) {
        continue;
      }
      offsets[tp] = offset;
    }
  }
  return CommitOffsets(std::move(offsets));
}

Status KafkaSource::CommitOffsets(std::map<TopicPartition, int64_t> offsets, bool async) {
  // The synchronous commit talks to the broker: it holds commit_mu_, never mu_, so batches
  // keep planning meanwhile. An async commit (a batch's) does not wait for a synchronous one
  // in flight: it is left out, and the next batch, the revocation or the checkpoint commits
  // at least as far.
  std::unique_lock commit_lock(commit_mu_, std::defer_lock);
  if (async) {
    if (!commit_lock.try_lock()) return Status::OK();
  } else {
    commit_lock.lock();
  }
  std::map<TopicPartition, int64_t> before;  // to restore if the commit fails
  for (auto it = offsets.begin(); it != offsets.end();) {
    auto [previous, fresh] = committed_offsets_.try_emplace(it->first, -1);
    // Never below what was sent before. A synchronous commit may repeat the last offset: an
    // async commit of it may have been refused (during a rebalance), and the revocation's
    // commit is the handover the next owner relies on.
    if (it->second < previous->second || (async && it->second == previous->second)) {
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
  for (const auto& [tp, offset] : offsets) {
    rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second)->offset = offset;
  }
  const rd_kafka_resp_err_t err = rd_kafka_commit(rk, list, async ? 1 : 0);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (const auto& [tp, offset] : before) committed_offsets_[tp] = offset;
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

Result<std::map<KafkaSource::TopicPartition, std::pair<int64_t, int64_t>>> KafkaSource::Watermarks(
    const std::set<TopicPartition>& partitions) const {
  // One ListOffsets round for the log starts and one for the ends, for every partition at
  // once. rd_kafka_offsets_for_times honours its timeout even when a leader is unreachable
  // (rd_kafka_query_watermark_offsets may not: it retries while broker states change).
  std::map<TopicPartition, std::pair<int64_t, int64_t>> marks;
  if (partitions.empty()) return marks;
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
      auto& mark = marks[{e.topic, e.partition}];
      (which == RD_KAFKA_OFFSET_BEGINNING ? mark.first : mark.second) = e.offset;
    }
    rd_kafka_topic_partition_list_destroy(list);
    RETURN_NOT_OK(st);
  }
  return marks;
}

Status KafkaSource::Restore(const std::map<std::string, std::string>& positions,
                            bool use_group_offsets) {
  std::lock_guard lock(mu_);
  use_group_offsets_ = use_group_offsets;
  for (auto& [tp, offset] : positions_) {
    auto it = positions.find(PositionKey(tp.first, tp.second));
    if (it == positions.end()) continue;
    try {
      offset = std::stoll(it->second);
    } catch (const std::exception&) {
      return Status::Corruption(
          fmt::format("bad committed offset '{}' for {}", it->second, it->first));
    }
    confirmed_[tp] = offset;
  }
  return Status::OK();
}

Status KafkaSource::ResolveFreshPartitions() {
  if (fresh_.empty()) return Status::OK();
  // Where the group says a newly owned partition stands: its previous owner's last commit.
  std::map<TopicPartition, int64_t> group;
  if (member_ != nullptr && use_group_offsets_) {
    rd_kafka_topic_partition_list_t* list =
        rd_kafka_topic_partition_list_new(static_cast<int>(fresh_.size()));
    for (const auto& tp : fresh_)
      rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second);
    const rd_kafka_resp_err_t err = rd_kafka_committed(member_, list, options_.timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_topic_partition_list_destroy(list);
      return FromKafka(err, "committed offsets of group " + options_.group_id);
    }
    for (int i = 0; i < list->cnt; ++i) {
      if (list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[i].offset >= 0) {
        group[{list->elems[i].topic, list->elems[i].partition}] = list->elems[i].offset;
      }
    }
    rd_kafka_topic_partition_list_destroy(list);
  }
  for (const auto& tp : fresh_) {
    int64_t& position = positions_[tp];
    auto g = group.find(tp);
    // This instance's state is the truth for partitions it kept; the group's offset is newer
    // where another member read the partition (this instance never did, or lost it meanwhile).
    const bool other_owner = position < 0 || lost_ownership_.count(tp) > 0;
    if (g != group.end() && other_owner && g->second > position) {
      Logger("kafka")->info("source {}: {}/{} starts at the group's offset {} (state: {})",
                            options_.name, tp.first, tp.second, g->second, position);
      position = g->second;
    }
  }
  fresh_.clear();
  return Status::OK();
}

Status KafkaSource::Plan(streaming::BatchInfo* info) {
  PollGroup();  // rebalances happen here, between batches
  std::lock_guard lock(mu_);
  RETURN_NOT_OK(ResolveFreshPartitions());
  last_plan_time_ = info->progress.batch_time.value();
  before_last_plan_.clear();
  after_last_plan_.clear();
  std::vector<OffsetRange> ranges;
  const int64_t cap = rate_ ? std::min(options_.max_records_per_partition,
                                       rate_->RecordsPerPartition(static_cast<int>(owned_.size())))
                            : options_.max_records_per_partition;
  ASSIGN_OR_RETURN(const auto marks, Watermarks(owned_));
  // Where each partition starts and how much it has to read.
  std::map<TopicPartition, int64_t> starts;
  int64_t largest_backlog = 0;
  for (const TopicPartition& tp : owned_) {
    const int64_t position = positions_[tp];
    const auto [low, high] = marks.at(tp);
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
    starts[tp] = from;
    largest_backlog = std::max(largest_backlog, high - from);
  }
  for (const TopicPartition& tp : owned_) {
    int64_t& position = positions_[tp];
    before_last_plan_[tp] = position;
    const int64_t from = starts.at(tp);
    const int64_t high = marks.at(tp).second;
    const int64_t until = from + Share(high - from, largest_backlog, cap);
    if (until > from) {
      ranges.push_back({tp.first, tp.second, from, until});
      info->progress.input[PositionKey(tp.first, tp.second)] = fmt::format("[{}, {})", from, until);
      info->progress.records_in += until - from;
    }
    position = until;
    after_last_plan_[tp] = position;
    std::lock_guard view_lock(view_mu_);
    lag_[tp] = std::max<int64_t>(0, high - position);
    info->positions[PositionKey(tp.first, tp.second)] = std::to_string(position);
  }
  planned_[info->progress.batch_time.value()] = std::move(ranges);
  return Status::OK();
}

void KafkaSource::Abandon(BatchTime t) {
  std::lock_guard lock(mu_);
  if (t.value() != last_plan_time_) return;
  for (const auto& [tp, position] : before_last_plan_) positions_[tp] = position;
  planned_.erase(t.value());
  last_plan_time_ = -1;
}

void KafkaSource::Confirm(BatchTime t) {
  std::map<TopicPartition, int64_t> moved;
  {
    std::lock_guard lock(mu_);
    if (t.value() != last_plan_time_) return;
    for (const auto& [tp, position] : after_last_plan_) {
      int64_t& confirmed = confirmed_[tp];
      if (member_ != nullptr && position >= 0 && position != confirmed) moved[tp] = position;
      confirmed = position;
    }
  }
  // A group member publishes each committed batch's offsets at once (asynchronously): the
  // member that takes over a partition starts where this one stopped, even when the commit on
  // revocation is refused (a broker may refuse commits while the group rebalances).
  if (Status st = CommitOffsets(std::move(moved), /*async=*/true); !st.ok()) {
    Logger("kafka")->warn("source {}: {}", options_.name, st.ToString());
  }
}

bool KafkaSource::HasPendingData() const {
  std::lock_guard lock(mu_);
  if (!fresh_.empty()) return true;  // not resolved yet: let a batch look
  auto marks = Watermarks(owned_);
  if (!marks.ok()) return true;  // unknown: let a batch try (and report the error)
  for (const auto& [tp, mark] : *marks) {
    const int64_t position = positions_.at(tp);
    const int64_t from =
        position >= 0 ? position : (options_.start_at_earliest ? mark.first : mark.second);
    if (mark.second > from) return true;
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
  const TopicPartition tp(range.topic, range.partition);
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
      std::lock_guard lock(view_mu_);
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
      if (fetch.code() == StatusCode::kUnavailable) continue;  // transient: librdkafka retries
      consumer->next = -1;
      if (fetch.code() == StatusCode::kOutOfRange) {
        // The log lost the range's start after the batch was planned (retention). Failing the
        // batch transiently makes it planned again, where on_data_loss decides: stop, or skip
        // to the log start and count what was lost.
        st = Status::Unavailable(fmt::format(
            "{}/{}: offsets from {} left the log while the batch read them; planning again ({})",
            range.topic, range.partition, range.from, fetch.message()));
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
      stopped = !sink(std::move(value));
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
  if (stalled) {
    if (st.ok())
      Logger("kafka")->info("source {}: {}/{} reads again", options_.name, range.topic,
                            range.partition);
    std::lock_guard lock(view_mu_);
    if (st.ok()) stalls_.erase(tp);
  }
  return st;
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
