// KafkaSubscription: what the queries reading one configured Kafka source share in a process:
// its consumer-group membership (one member however many queries read the source, so the
// group gives this process all of its share of the partitions, and each query reads all of
// it), the metadata handle for partitions and log bounds, and the range readers. Each query
// reads through its own KafkaSource (its positions, plans and rate control; kafka_source.h),
// attached here as a Member. The subscription lives as long as its last query's source holds
// it, and leaves the group when it goes.
//
// Rebalances happen between batches of every member: the group is polled only in BeginBatch
// (the start of a member's plan), and a rebalance that comes waits until no other member is
// inside a batch (BeginBatch .. EndBatch; at most 4/5 of max.poll.interval.ms, after which the
// group would drop the member). On revocation the members'
// confirmed positions are committed to the group, the handover for the next owner.
//
// Group offsets with several queries: a partition's committed offset is the smallest of its
// queries' next offsets (what lag tools show), and its metadata holds each query's own
// ({"queries":{"NAME":OFFSET,...}}, QueryOffsets). The next owner of a partition starts each
// query from that query's own entry; an offset committed without runnel's metadata (by an
// earlier version, or another tool) stands for every query.
//
// Thread safety: every method may be called from any thread. BeginBatch runs the members'
// OnAssigned/OnRevoked on the calling thread. Members are called with the subscription's lock
// held (so none detaches meanwhile): a member must not hold its own locks when it calls into
// the subscription.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sources/kafka_client.h"
#include "sources/kafka_group.h"
#include "sources/offset_planner.h"

namespace runnel::sources {

struct PartitionLag {
  std::string topic;
  int32_t partition = 0;
  int64_t records = 0;  // end offset (high watermark) - position, at the last Plan
};

// Per query name, its next offset in one partition (the group offset's metadata).
using QueryOffsets = std::map<std::string, int64_t>;
std::string EncodeQueryOffsets(const QueryOffsets& offsets);
// Empty when `metadata` is not runnel's (empty, or written by something else).
std::optional<QueryOffsets> DecodeQueryOffsets(const std::string& metadata);
// Where the group says `query` stands in a partition: its own entry in the metadata, or the
// offset itself when the metadata is not runnel's; nullopt when runnel's metadata has no
// entry for the query (it never read the partition, or not under this group).
std::optional<int64_t> GroupOffsetOf(const GroupOffset& committed, const std::string& query);

// Whether sources with these options can share one subscription: the same connection,
// group, membership and topics. The planning options (starting offsets, caps, data loss, rate
// control) are each query's own.
bool SameSubscription(const KafkaSourceOptions& a, const KafkaSourceOptions& b);

// Every partition of the topics, the partitions the process owns now, and those it lost to
// another member at some point: what a member attached now starts with.
struct SubscriptionOwnership {
  std::set<TopicPartition> known;
  std::set<TopicPartition> owned;
  std::set<TopicPartition> lost_before;
};

class KafkaSubscription {
 public:
  // A query's source attached to the subscription.
  class Member {
   public:
    virtual ~Member() = default;
    // The query's name (its entry in the group offsets' metadata).
    virtual const std::string& query() const = 0;
    // The group gave this process `partitions` (between the member's batches).
    virtual void OnAssigned(const std::vector<TopicPartition>& partitions) = 0;
    // The group took `partitions` away (between the member's batches).
    virtual void OnRevoked(const std::vector<TopicPartition>& partitions) = 0;
    // Attach: what the process owns as the member joins (before any callback reaches it).
    virtual void OnAttached(const SubscriptionOwnership& ownership) = 0;
    // The position after the member's last committed batch, per partition (-1: none).
    virtual std::map<TopicPartition, int64_t> Confirmed() const = 0;
    virtual std::vector<PartitionLag> Lag() const = 0;
    virtual int64_t records_lost() const = 0;
    // Its readers' fetch errors, and why they stall ("" when fine).
    virtual int64_t fetch_errors() const = 0;
    virtual std::string Trouble() const = 0;
  };
  using Ownership = SubscriptionOwnership;

  // Discovers the topics' partitions and (with membership) joins the group, waiting (bounded)
  // for the first assignment.
  static Result<std::shared_ptr<KafkaSubscription>> Make(KafkaSourceOptions options);
  // Leaves the group. Every member has detached.
  ~KafkaSubscription();
  KafkaSubscription(const KafkaSubscription&) = delete;
  KafkaSubscription& operator=(const KafkaSubscription&) = delete;

  // The options it was made with: its connection, group and topics (SameSubscription).
  const KafkaSourceOptions& options() const { return options_; }
  bool member() const { return group_->member(); }

  // The member joins: OnAttached gets what the process owns now, then the callbacks follow.
  void Attach(Member* member);
  // Commits the member's confirmed positions (synchronously), then forgets it.
  void Detach(Member* member);

  // Serves the group (rebalances run here, see above), then counts `member` inside a batch.
  void BeginBatch(Member* member);
  // The member's batch committed or was abandoned.
  void EndBatch(Member* member);

  // The group's committed offsets of `partitions` (those without one are left out).
  Result<std::map<TopicPartition, GroupOffset>> Committed(
      const std::set<TopicPartition>& partitions);
  // Commits every member's confirmed positions of the owned partitions (see above).
  Status CommitConfirmed(bool async);

  // The log bounds of each partition, in one round trip each for starts and ends.
  Result<std::map<TopicPartition, LogBounds>> Bounds(
      const std::set<TopicPartition>& partitions) const;

  // For metrics and readiness: the owned partitions ("topic/partition"), the largest lag of
  // any member per partition, the members' lost records and fetch errors, the group's
  // rebalances, the first member's reader stall.
  std::vector<std::string> Owned() const;
  std::vector<PartitionLag> Lag() const;
  int64_t records_lost() const;
  int64_t rebalances() const { return group_->rebalances(); }
  int64_t fetch_errors() const;
  std::string Trouble() const;

 private:
  KafkaSubscription(KafkaSourceOptions options, rd_kafka_t* meta);
  Result<std::set<TopicPartition>> DiscoverPartitions() const;
  void OnAssigned(const std::vector<TopicPartition>& partitions);
  void OnRevoked(const std::vector<TopicPartition>& partitions);
  // Waits (bounded) until no member is inside a batch; `lock` holds mu_.
  void AwaitBetweenBatches(std::unique_lock<std::mutex>& lock);
  // The group offsets of the owned partitions in `only` (all when empty) from the members'
  // confirmed positions.
  std::map<TopicPartition, GroupOffset> ConfirmedOffsets(const std::vector<Member*>& members,
                                                         const std::set<TopicPartition>& only);

  const KafkaSourceOptions options_;
  rd_kafka_t* const meta_;  // for metadata and log-bound queries
  std::mutex poll_mu_;      // one poll (and its rebalance callbacks) at a time
  mutable std::mutex mu_;
  std::condition_variable cv_;            // a member's batch ended
  std::set<TopicPartition> known_;        // guarded by mu_
  std::set<TopicPartition> owned_;        // guarded by mu_
  std::set<TopicPartition> lost_before_;  // revoked at some point; guarded by mu_
  std::vector<Member*> members_;          // guarded by mu_
  std::set<Member*> in_batch_;            // guarded by mu_
  std::unique_ptr<KafkaGroup> group_;     // after the state its callbacks use
};

}  // namespace runnel::sources
