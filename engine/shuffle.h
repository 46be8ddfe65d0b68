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
#include "engine/spill.h"

namespace runnel::engine {

class Context;
class RddNodeBase;
class ShuffleDependencyBase;
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

// One map task's output. In memory, one bucket per reduce partition; spilled (it passed the
// task's memory share, or the store's memory share was full), runs of buckets in a spill file:
// runs[r][p] is the (offset, length) of bucket p in run r. Records are (K, X) pairs in Serde.
struct MapOutput {
  std::vector<std::string> buckets;
  std::shared_ptr<const SpillFile> file;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> runs;
  int64_t bytes = 0;
};

class ShuffleStore {
 public:
  // Map outputs held in memory may take up to `memory_bytes` together; later ones spill.
  explicit ShuffleStore(int64_t memory_bytes) : memory_limit_(memory_bytes) {}
  // Keeps `output` (held in memory, `output->bytes` of it) when it fits beside the other map
  // outputs in memory, and says whether it did: the check and the insert are one step, so
  // map tasks finishing at once cannot together pass the limit.
  bool PutIfFits(int shuffle_id, int map_partition, const std::shared_ptr<const MapOutput>& output);
  void Put(int shuffle_id, int map_partition, std::shared_ptr<const MapOutput> output);
  // nullptr when that map output does not exist (never computed, or lost).
  std::shared_ptr<const MapOutput> Get(int shuffle_id, int map_partition);
  // The map partitions in [0, num_maps) that have no output.
  std::vector<int> Missing(int shuffle_id, int num_maps);
  // Drops one map output: the test hook for "a lost shuffle output".
  void Remove(int shuffle_id, int map_partition);
  void RemoveShuffle(int shuffle_id);
  int64_t total_bytes();
  int64_t memory_bytes();

 private:
  const int64_t memory_limit_;
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

  Context& context() const { return *context_; }

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

// Builds one map task's output (ShuffleDependency::RunMapTask): the caller serializes records
// into bucket(p) and reports the bytes with Added; SpillIfOver writes the buckets as a run to
// a spill file when they pass a limit; Finish hands the output to the store.
class MapOutputBuilder {
 public:
  MapOutputBuilder(ShuffleDependencyBase* dep, int map_partition, TaskContext& tc);
  std::string& bucket(int p) { return output_->buckets[static_cast<size_t>(p)]; }
  void Added(size_t bytes) { buffered_ += static_cast<int64_t>(bytes); }
  Status SpillIfOver(int64_t limit) { return buffered_ > limit ? SpillRun() : Status::OK(); }
  // In memory when nothing spilled and the store has room; spilled otherwise.
  Status Finish();

 private:
  Status SpillRun();

  ShuffleDependencyBase* const dep_;
  const int map_partition_;
  TaskContext& tc_;
  std::shared_ptr<MapOutput> output_;
  std::shared_ptr<SpillFile> file_;
  int64_t buffered_ = 0;
};

}  // namespace runnel::engine
