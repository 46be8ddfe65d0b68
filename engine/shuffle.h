// Shuffle: how records cross a wide dependency.
//
// Each map task of a shuffle (one per partition of the parent RDD) hash- or range-partitions
// its records (combined map-side when the shuffle has an aggregator) into one serialized
// bucket per reduce partition and hands the buckets to the ShuffleStore. A reduce task reads
// bucket r of every map output. Map outputs stay in the store while the shuffle's dependency
// object lives, so later jobs over the same RDDs reuse them (skipped stages); a lost map
// output is recomputed from lineage by the scheduler (a "fetch failure").
//
// Thread safety: ShuffleStore is safe from any thread. Map outputs are immutable once put.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace runnel::engine {

class Context;
class RddNodeBase;
class TaskContext;

// Identifies how a shuffle places keys: two RDDs with equal partitioners are co-partitioned,
// so a join or cogroup of them needs no shuffle.
struct Partitioner {
  enum class Kind { kHash, kRange };
  Kind kind = Kind::kHash;
  int num_partitions = 1;
  int64_t range_id = 0;  // kRange: unique per range partitioner (its bounds are not compared)
  bool operator==(const Partitioner&) const = default;
};

struct MapOutput {
  std::vector<std::string> buckets;  // one per reduce partition
  int64_t bytes = 0;
};

class ShuffleStore {
 public:
  void Put(int shuffle_id, int map_partition, std::shared_ptr<const MapOutput> output);
  // nullptr when that map output does not exist (never computed, or lost).
  std::shared_ptr<const MapOutput> Get(int shuffle_id, int map_partition);
  // The map partitions in [0, num_maps) that have no output.
  std::vector<int> Missing(int shuffle_id, int num_maps);
  // Drops one map output: the test hook for "a lost shuffle output".
  void Remove(int shuffle_id, int map_partition);
  void RemoveShuffle(int shuffle_id);
  int64_t total_bytes();

 private:
  std::mutex mu_;
  std::map<std::pair<int, int>, std::shared_ptr<const MapOutput>> outputs_;  // guarded by mu_
};

// The type-erased side of a shuffle dependency (the typed side is in rdd_internal.h).
class ShuffleDependencyBase {
 public:
  ShuffleDependencyBase(Context* context, std::shared_ptr<RddNodeBase> parent,
                        Partitioner partitioner, bool map_side_combine);
  // Drops the shuffle's map outputs: they are unreachable once no RDD depends on them.
  virtual ~ShuffleDependencyBase();

  int shuffle_id() const { return shuffle_id_; }
  const std::shared_ptr<RddNodeBase>& parent() const { return parent_; }
  const Partitioner& partitioner() const { return partitioner_; }
  int num_reduce_partitions() const { return partitioner_.num_partitions; }
  bool map_side_combine() const { return map_side_combine_; }

  // Computes map partition `map_partition` of the parent and stores its buckets.
  virtual Status RunMapTask(int map_partition, TaskContext& tc) = 0;

  // Held by the scheduler while it computes missing map outputs, so two concurrent jobs
  // needing the same shuffle compute it once.
  std::mutex& compute_mutex() { return compute_mu_; }

 protected:
  Context* const context_;

 private:
  const int shuffle_id_;
  const std::shared_ptr<RddNodeBase> parent_;
  const Partitioner partitioner_;
  const bool map_side_combine_;
  std::mutex compute_mu_;
};

}  // namespace runnel::engine
