#include "sources/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <chrono>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/crash_point.h"
#include "common/logging.h"

namespace runnel::sources {

std::string PositionKey(const std::string& topic, int32_t partition) {
  return fmt::format("kafka:{}/{}", topic, partition);
}

Result<std::shared_ptr<KafkaSource>> KafkaSource::Make(streaming::StreamingContext* ssc,
                                                       KafkaSourceOptions options) {
  if (options.bootstrap_servers.empty())
    return Status::InvalidArgument("kafka: no bootstrap servers");
  if (options.topics.empty()) return Status::InvalidArgument("kafka: no topics");
  ASSIGN_OR_RETURN(rd_kafka_t * meta, NewConsumer(options, "-meta"));
  auto source = std::shared_ptr<KafkaSource>(new KafkaSource(ssc, std::move(options), meta));
  ASSIGN_OR_RETURN(KafkaPositions known, source->DiscoverPartitions());
  source->SetPosition(known);
  KafkaSource* self = source.get();
  KafkaGroup::Callbacks callbacks{.assigned = [self](const auto& p) { self->OnAssigned(p); },
                                  .revoked = [self](const auto& p) { self->OnRevoked(p); }};
  ASSIGN_OR_RETURN(source->group_, KafkaGroup::Make(self->options_, std::move(callbacks)));
  if (self->group_->member()) {
    Logger("kafka")->info("source {}: joined group {}, owns {}", self->options_.name,
                          self->options_.group_id, fmt::join(self->Owned(), ", "));
  } else {
    std::lock_guard lock(self->mu_);
    for (const auto& [tp, unused] : known) self->owned_.insert(tp);
  }
  source->registration_ = ssc->AddInput(self);
  return source;
}

KafkaSource::KafkaSource(streaming::StreamingContext* ssc, KafkaSourceOptions options,
                         rd_kafka_t* meta)
    : PlannedInput(ssc, {}), options_(std::move(options)), meta_(meta), reader_(options_) {
  if (options_.rate_control) {
    streaming::RateControlOptions rc = *options_.rate_control;
    rc.batch_interval_seconds = std::chrono::duration<double>(ssc->batch_interval()).count();
    rate_.emplace(rc);
  }
}

KafkaSource::~KafkaSource() {
  registration_ = {};           // no batch plans this source from here on
  if (group_) group_->Leave();  // the revocation commits, through this source
  group_.reset();
  reader_.Clear();
  rd_kafka_destroy(meta_);
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

void KafkaSource::OnAssigned(const std::vector<TopicPartition>& partitions) {
  {
    std::lock_guard lock(mu_);
    for (const auto& tp : partitions) {
      owned_.insert(tp);
      fresh_.insert(tp);
    }
  }
  // A partition added to the topic since start has no position yet.
  UpdatePosition([&](KafkaPositions& positions) {
    for (const auto& tp : partitions) positions.try_emplace(tp, -1);
  });
  Logger("kafka")->info("source {}: assigned {} partitions", options_.name, partitions.size());
}

void KafkaSource::OnRevoked(const std::vector<TopicPartition>& partitions) {
  // Between batches (the group is polled only before a plan): what the last successful batch
  // committed is final. Hand it to the group, so the next owner starts right there.
  std::map<TopicPartition, int64_t> offsets;
  {
    std::lock_guard lock(mu_);
    for (const auto& tp : partitions) {
      if (auto it = confirmed_.find(tp); it != confirmed_.end() && it->second >= 0) {
        offsets[tp] = it->second;
      }
      owned_.erase(tp);
      fresh_.erase(tp);
      lost_ownership_.insert(tp);
      lag_.erase(tp);
    }
  }
  for (const auto& tp : partitions) reader_.Drop(tp);
  CrashPoint("during_rebalance");
  Logger("kafka")->info("source {}: {} partitions revoked; committing {} offsets to group {}",
                        options_.name, partitions.size(), offsets.size(), options_.group_id);
  if (group_ == nullptr) return;  // revoked while joining: nothing was confirmed yet
  if (Status st = group_->Commit(std::move(offsets), /*async=*/false); !st.ok()) {
    Logger("kafka")->warn("source {}: on revocation: {}", options_.name, st.ToString());
  }
}

std::vector<std::string> KafkaSource::Owned() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [topic, partition] : owned_)
    out.push_back(fmt::format("{}/{}", topic, partition));
  return out;
}

std::vector<PartitionLag> KafkaSource::Lag() const {
  std::lock_guard lock(mu_);
  std::vector<PartitionLag> out;
  for (const auto& [tp, records] : lag_) out.push_back({tp.first, tp.second, records});
  return out;
}

Status KafkaSource::CommitToGroup(const streaming::SourcePositions& positions) {
  std::map<TopicPartition, int64_t> offsets;
  {
    std::lock_guard lock(mu_);
    for (const auto& tp : owned_) {
      auto it = positions.find(PositionKey(tp.first, tp.second));
      if (it == positions.end() || !it->second.has_next_offset()) continue;
      if (it->second.next_offset() >= 0) offsets[tp] = it->second.next_offset();
    }
  }
  return group_->Commit(std::move(offsets), /*async=*/false);
}

Result<KafkaPositions> KafkaSource::DiscoverPartitions() const {
  KafkaPositions known;
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
        known.try_emplace({topic, md->topics[0].partitions[i].id}, -1);
      }
    }
    rd_kafka_metadata_destroy(md);
    RETURN_NOT_OK(st);
  }
  return known;
}

Result<std::map<TopicPartition, LogBounds>> KafkaSource::Bounds(
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

Status KafkaSource::Restore(const streaming::SourcePositions& positions, bool use_group_offsets) {
  KafkaPositions restored = position();
  std::lock_guard lock(mu_);
  for (auto& [tp, offset] : restored) {
    const std::string key = PositionKey(tp.first, tp.second);
    auto it = positions.find(key);
    if (it == positions.end()) continue;
    if (!it->second.has_next_offset()) {
      return Status::Corruption(fmt::format("committed position of {} is not an offset", key));
    }
    offset = it->second.next_offset();
    confirmed_[tp] = offset;
  }
  use_group_offsets_ = use_group_offsets;
  SetPosition(std::move(restored));
  return Status::OK();
}

Status KafkaSource::BeforePlan() {
  group_->Poll();  // rebalances happen here, between batches
  std::set<TopicPartition> fresh;
  std::set<TopicPartition> lost_before;
  bool use_group = false;
  {
    std::lock_guard lock(mu_);
    if (fresh_.empty()) return Status::OK();
    fresh = fresh_;
    lost_before = lost_ownership_;
    use_group = use_group_offsets_;
  }
  // Where the group says a newly owned partition stands: its previous owner's last commit.
  std::map<TopicPartition, int64_t> group;
  if (use_group) {
    ASSIGN_OR_RETURN(group, group_->Committed(fresh));
  }
  UpdatePosition([&](KafkaPositions& positions) {
    for (const auto& tp : fresh) {
      int64_t& position = positions.try_emplace(tp, -1).first->second;
      auto g = group.find(tp);
      const int64_t start =
          StartOfAssigned(position, g == group.end() ? std::nullopt : std::optional(g->second),
                          lost_before.count(tp) > 0);
      if (start != position) {
        Logger("kafka")->info("source {}: {}/{} starts at the group's offset {} (state: {})",
                              options_.name, tp.first, tp.second, start, position);
        position = start;
      }
    }
  });
  std::lock_guard lock(mu_);
  for (const auto& tp : fresh) fresh_.erase(tp);
  return Status::OK();
}

Result<KafkaSource::Planned> KafkaSource::PlanFrom(streaming::BatchInfo* info,
                                                   const KafkaPositions& from) {
  std::set<TopicPartition> owned;
  OffsetPlanOptions plan_options{.start_at_earliest = options_.start_at_earliest,
                                 .fail_on_data_loss = options_.fail_on_data_loss,
                                 .max_records_per_partition = options_.max_records_per_partition};
  {
    std::lock_guard lock(mu_);
    owned = owned_;
    if (rate_) {
      plan_options.max_records_per_partition =
          std::min(plan_options.max_records_per_partition,
                   rate_->RecordsPerPartition(static_cast<int>(owned.size())));
    }
  }
  ASSIGN_OR_RETURN(const auto bounds, Bounds(owned));
  KafkaPositions at;
  for (const TopicPartition& tp : owned) {
    auto it = from.find(tp);
    at[tp] = it == from.end() ? -1 : it->second;
  }
  ASSIGN_OR_RETURN(OffsetPlan plan, PlanOffsets(at, bounds, plan_options));
  for (const auto& [tp, records] : plan.lost) {
    Logger("kafka")->warn("{}/{}: skipped {} records no longer available", tp.first, tp.second,
                          records);
  }
  for (const OffsetRange& r : plan.ranges) {
    info->progress.input[PositionKey(r.topic, r.partition)] =
        fmt::format("[{}, {})", r.from, r.until);
    info->progress.records_in += r.until - r.from;
  }
  Planned planned{{std::move(plan.ranges), std::move(plan.lost)}, from};
  for (const auto& [tp, next] : plan.next) {
    planned.next[tp] = next;
    info->positions[PositionKey(tp.first, tp.second)].set_next_offset(next);
  }
  std::lock_guard lock(mu_);
  for (const auto& [tp, records] : plan.lag) lag_[tp] = records;
  return planned;
}

void KafkaSource::OnConfirmed(const KafkaPlan& plan, const KafkaPositions& after) {
  for (const auto& [tp, records] : plan.lost) lost_ += records;
  std::map<TopicPartition, int64_t> moved;
  {
    std::lock_guard lock(mu_);
    for (const TopicPartition& tp : owned_) {
      auto it = after.find(tp);
      if (it == after.end()) continue;
      int64_t& confirmed = confirmed_[tp];
      if (group_->member() && it->second >= 0 && it->second != confirmed) moved[tp] = it->second;
      confirmed = it->second;
    }
  }
  // A group member publishes each committed batch's offsets at once (asynchronously): the
  // member that takes over a partition starts where this one stopped, even when the commit on
  // revocation is refused (a broker may refuse commits while the group rebalances).
  if (Status st = group_->Commit(std::move(moved), /*async=*/true); !st.ok()) {
    Logger("kafka")->warn("source {}: {}", options_.name, st.ToString());
  }
}

bool KafkaSource::HasPendingData() const {
  std::set<TopicPartition> owned;
  {
    std::lock_guard lock(mu_);
    if (!fresh_.empty()) return true;  // not resolved yet: let a batch look
    owned = owned_;
  }
  const KafkaPositions at = position();
  auto bounds = Bounds(owned);
  if (!bounds.ok()) return true;  // unknown: let a batch try (and report the error)
  for (const auto& [tp, b] : *bounds) {
    auto it = at.find(tp);
    const int64_t from =
        StartOffset(it == at.end() ? -1 : it->second, b, options_.start_at_earliest);
    if (b.end > from) return true;
  }
  return false;
}

Result<std::optional<engine::Rdd<std::string>>> KafkaSource::Read(const KafkaPlan& plan) {
  if (plan.ranges.empty()) {
    return std::optional(this->ssc().engine().Parallelize(std::vector<std::string>{}, 1));
  }
  const int n = static_cast<int>(plan.ranges.size());
  return std::optional(engine::FromSource<std::string>(
      this->ssc().engine(), "kafka", n,
      [this, ranges = plan.ranges](int p, engine::TaskContext& tc, engine::Emit<std::string> emit) {
        return reader_.Read(ranges[static_cast<size_t>(p)], tc, emit);
      }));
}

}  // namespace runnel::sources
