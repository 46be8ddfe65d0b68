// KafkaGroup: the Kafka source's consumer group: membership (which partitions this instance
// owns) and the group's committed offsets (what lag tools and the next owner of a partition
// read).
//
// With membership, the group member joins `group_id` and subscribes to the topics; its
// partitions stay paused (it only holds ownership, readers fetch). Rebalances are served only
// in Poll, which the source calls at the start of each batch's plan, so a partition is never
// revoked while a batch reads it. The callbacks run inside Poll (and inside Join and the
// destructor, which leaves the group).
//
// Commit is the one place that commits group offsets (batches, revocations, checkpoints),
// each offset with its metadata (KafkaSubscription puts each query's own offset there); an
// async commit of what was sent last is left out. The callers commit confirmed positions
// only, so a query's offset moves back only when its state does (a reset). Without
// membership, a plain consumer commits (made on first use).
//
// Thread safety: Join, Poll and Committed on the batch thread; Commit from any thread (one at
// a time; an async commit skips when another commit is in flight); rebalances() anywhere.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "sources/kafka_client.h"
#include "sources/offset_planner.h"

namespace runnel::sources {

// A partition's committed offset in the group, with the metadata committed with it.
struct GroupOffset {
  int64_t offset = -1;
  std::string metadata;
  bool operator==(const GroupOffset&) const = default;
};

class KafkaGroup {
 public:
  struct Callbacks {
    // Partitions the group gave this member.
    std::function<void(const std::vector<TopicPartition>&)> assigned;
    // Partitions taken away; runs before the member lets them go (commit their offsets here).
    std::function<void(const std::vector<TopicPartition>&)> revoked;
  };

  // With options.group_membership: joins the group and waits (bounded) for the first
  // assignment, calling callbacks.assigned. Without: only commits offsets.
  static Result<std::unique_ptr<KafkaGroup>> Make(const KafkaSourceOptions& options,
                                                  Callbacks callbacks);
  // Leaves the group (the revocation callback runs, and commits) unless Leave did.
  ~KafkaGroup();
  // Leaves the group: the revocation callback runs here, while its owner is whole.
  void Leave();

  KafkaGroup(const KafkaGroup&) = delete;
  KafkaGroup& operator=(const KafkaGroup&) = delete;

  bool member() const { return member_ != nullptr; }
  // Serves the group's events (rebalances); the callbacks run here.
  void Poll();
  // The group's committed offsets of `partitions` (those without one are left out).
  Result<std::map<TopicPartition, GroupOffset>> Committed(
      const std::set<TopicPartition>& partitions);
  Status Commit(std::map<TopicPartition, GroupOffset> offsets, bool async);
  int64_t rebalances() const { return rebalances_.load(); }

 private:
  KafkaGroup(const KafkaSourceOptions& options, Callbacks callbacks)
      : options_(options), callbacks_(std::move(callbacks)) {}
  Status Join();
  static void RebalanceCallback(rd_kafka_t* rk, int err, void* partitions, void* opaque);

  const KafkaSourceOptions options_;
  const Callbacks callbacks_;
  rd_kafka_t* member_ = nullptr;  // with membership
  bool left_ = false;             // Leave ran (batch thread and destructor)
  std::atomic<bool> assigned_once_{false};
  std::atomic<int64_t> rebalances_{0};
  std::mutex commit_mu_;                             // serializes commits
  std::map<TopicPartition, GroupOffset> committed_;  // largest sent per partition; commit_mu_
  rd_kafka_t* committer_ = nullptr;  // without membership, made on use; guarded by commit_mu_
};

}  // namespace runnel::sources
