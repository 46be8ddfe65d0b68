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

Result<std::shared_ptr<KafkaSource>> KafkaSource::Make(
    streaming::StreamingContext* ssc, std::shared_ptr<KafkaSubscription> subscription,
    std::string query, KafkaSourceOptions options) {
  if (subscription == nullptr) return Status::InvalidArgument("kafka: no subscription");
  auto source = std::shared_ptr<KafkaSource>(
      new KafkaSource(ssc, std::move(subscription), std::move(query), std::move(options)));
  source->sub_->Attach(source.get());  // OnAttached sets what the process owns now
  source->attached_ = true;
  source->registration_ = ssc->AddInput(source.get());
  return source;
}

void KafkaSource::OnAttached(const KafkaSubscription::Ownership& ownership) {
  KafkaPositions known;
  for (const auto& tp : ownership.known) known[tp] = -1;
  SetPosition(std::move(known));
  std::lock_guard lock(mu_);
  owned_ = ownership.owned;
  // With membership, where each owned partition starts is resolved before the first plan.
  if (sub_->member()) fresh_ = ownership.owned;
  lost_ownership_ = ownership.lost_before;
}

Result<std::shared_ptr<KafkaSource>> KafkaSource::Make(streaming::StreamingContext* ssc,
                                                       KafkaSourceOptions options) {
  std::string query = options.name;
  ASSIGN_OR_RETURN(auto subscription, KafkaSubscription::Make(options));
  return Make(ssc, std::move(subscription), std::move(query), std::move(options));
}

KafkaSource::KafkaSource(streaming::StreamingContext* ssc,
                         std::shared_ptr<KafkaSubscription> subscription, std::string query,
                         KafkaSourceOptions options)
    : PlannedInput(ssc, {}),
      sub_(std::move(subscription)),
      options_(std::move(options)),
      reader_(options_),
      query_(std::move(query)) {
  if (options_.rate_control) {
    streaming::RateControlOptions rc = *options_.rate_control;
    rc.batch_interval_seconds = std::chrono::duration<double>(ssc->batch_interval()).count();
    rate_.emplace(rc);
  }
}

KafkaSource::~KafkaSource() {
  registration_ = {};                 // no batch plans this source from here on
  if (attached_) sub_->Detach(this);  // commits its confirmed positions
  reader_.Clear();
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
}

void KafkaSource::OnRevoked(const std::vector<TopicPartition>& partitions) {
  {
    std::lock_guard lock(mu_);
    for (const auto& tp : partitions) {
      owned_.erase(tp);
      fresh_.erase(tp);
      lost_ownership_.insert(tp);
      lag_.erase(tp);
    }
  }
  for (const auto& tp : partitions) reader_.Drop(tp);
}

std::map<TopicPartition, int64_t> KafkaSource::Confirmed() const {
  std::lock_guard lock(mu_);
  return confirmed_;
}

std::vector<PartitionLag> KafkaSource::Lag() const {
  std::lock_guard lock(mu_);
  std::vector<PartitionLag> out;
  for (const auto& [tp, records] : lag_) out.push_back({tp.first, tp.second, records});
  return out;
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
  sub_->BeginBatch(this);  // rebalances happen here, between batches; ended by OnBatchEnded
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
  // Where the group says a newly owned partition stands for this query: its previous
  // owner's last commit.
  std::map<TopicPartition, GroupOffset> group;
  if (use_group) {
    ASSIGN_OR_RETURN(group, sub_->Committed(fresh));
  }
  UpdatePosition([&](KafkaPositions& positions) {
    for (const auto& tp : fresh) {
      int64_t& position = positions.try_emplace(tp, -1).first->second;
      auto g = group.find(tp);
      const int64_t start = StartOfAssigned(
          position, g == group.end() ? std::nullopt : GroupOffsetOf(g->second, query_),
          lost_before.count(tp) > 0);
      if (start != position) {
        Logger("kafka")->info("query {}: {}/{} starts at the group's offset {} (state: {})", query_,
                              tp.first, tp.second, start, position);
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
  ASSIGN_OR_RETURN(const auto bounds, sub_->Bounds(owned));
  KafkaPositions at;
  int64_t backlog_sum = 0, backlog_max = 0;
  for (const TopicPartition& tp : owned) {
    auto it = from.find(tp);
    at[tp] = it == from.end() ? -1 : it->second;
    if (auto b = bounds.find(tp); b != bounds.end()) {
      const int64_t backlog =
          b->second.end - StartOffset(at[tp], b->second, options_.start_at_earliest);
      backlog_sum += std::max<int64_t>(0, backlog);
      backlog_max = std::max(backlog_max, backlog);
    }
  }
  plan_options.max_records_per_partition =
      std::min(plan_options.max_records_per_partition,
               RecordsPerPartitionForBytes(backlog_sum, backlog_max));
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

int64_t KafkaSource::RecordsPerPartitionForBytes(int64_t backlog_sum, int64_t backlog_max) {
  // The average size of the last batch's messages (before any: 16 KiB, a hundred times a
  // click event's, so that a first batch of larger messages overshoots little).
  const int64_t records = read_records_.load();
  const int64_t bytes = read_bytes_.load();
  if (records > planned_records_) {
    average_bytes_ = std::max<int64_t>(1, (bytes - planned_bytes_) / (records - planned_records_));
  }
  planned_records_ = records;
  planned_bytes_ = bytes;
  const int64_t per_batch = std::max<int64_t>(1, options_.max_bytes_per_batch / average_bytes_);
  if (backlog_sum <= 0 || backlog_max <= 0) return per_batch;
  // Every partition reads the same share of its backlog (Share), the largest reading the cap:
  // the batch reads cap * backlog_sum / backlog_max records in all.
  const double cap = static_cast<double>(per_batch) * static_cast<double>(backlog_max) /
                     static_cast<double>(backlog_sum);
  return std::max<int64_t>(1, static_cast<int64_t>(cap));
}

void KafkaSource::OnConfirmed(const KafkaPlan& plan, const KafkaPositions& after) {
  for (const auto& [tp, records] : plan.lost) lost_ += records;
  bool moved = false;
  {
    std::lock_guard lock(mu_);
    for (const TopicPartition& tp : owned_) {
      auto it = after.find(tp);
      if (it == after.end()) continue;
      int64_t& confirmed = confirmed_[tp];
      moved = moved || (it->second >= 0 && it->second != confirmed);
      confirmed = it->second;
    }
  }
  // A group member publishes each committed batch's offsets at once (asynchronously): the
  // member that takes over a partition starts where this one stopped, even when the commit on
  // revocation is refused (a broker may refuse commits while the group rebalances).
  if (!moved || !sub_->member()) return;
  if (Status st = sub_->CommitConfirmed(/*async=*/true); !st.ok()) {
    Logger("kafka")->warn("query {}: {}", query_, st.ToString());
  }
}

void KafkaSource::OnBatchEnded() { sub_->EndBatch(this); }

bool KafkaSource::HasPendingData() const {
  std::set<TopicPartition> owned;
  {
    std::lock_guard lock(mu_);
    if (!fresh_.empty()) return true;  // not resolved yet: let a batch look
    owned = owned_;
  }
  const KafkaPositions at = position();
  auto bounds = sub_->Bounds(owned);
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
        int64_t records = 0, bytes = 0;
        Status st = reader_.Read(ranges[static_cast<size_t>(p)], tc, [&](std::string&& m) {
          ++records;
          bytes += static_cast<int64_t>(m.size());
          return emit(std::move(m));
        });
        read_records_ += records;
        read_bytes_ += bytes;
        return st;
      }));
}

}  // namespace runnel::sources
