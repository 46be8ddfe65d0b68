// RddNodeBase: the type-erased part of an RDD, what the scheduler and DebugString see:
// an id, a partition count, dependencies on parents (narrow or shuffle), an optional
// partitioner, the persistence level and the checkpoint state.
//
// Thread safety: id, name and partition count are immutable. Dependencies, persistence and
// checkpoint state are guarded by a mutex, so reading them from tasks while the driver
// persists or checkpoints is safe; changing them while a job runs on the RDD is allowed and
// takes effect for tasks that start afterwards.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/shuffle.h"

namespace runnel::engine {

class Context;
class RddNodeBase;

struct Dependency {
  enum class Kind {
    kOneToOne,  // child partition i reads parent partition i (map, filter, cogroup of
                // co-partitioned parents, union with an offset)
    kRange,     // child partition i reads a range of parent partitions (coalesce)
    kShuffle,   // child partition i reads bucket i of every parent map output
  };
  Kind kind = Kind::kOneToOne;
  std::shared_ptr<RddNodeBase> parent;
  std::shared_ptr<ShuffleDependencyBase> shuffle;  // kShuffle only
};

class RddNodeBase {
 public:
  RddNodeBase(Context* context, std::string name, int num_partitions,
              std::vector<Dependency> dependencies, std::optional<Partitioner> partitioner);
  virtual ~RddNodeBase() = default;

  Context& context() const { return *context_; }
  int id() const { return id_; }
  // The operation that made this RDD, e.g. "map", "reduceByKey".
  const std::string& name() const { return name_; }
  int num_partitions() const { return num_partitions_; }
  const std::optional<Partitioner>& partitioner() const { return partitioner_; }

  // Empty once the RDD is checkpointed (its lineage is cut).
  std::vector<Dependency> dependencies() const;

  StorageLevel storage_level() const;
  int storage_priority() const;
  void SetStorage(StorageLevel level, int priority);

  // Files holding the RDD's partitions once checkpointed, one per partition; empty before.
  std::vector<std::string> checkpoint_files() const;
  // Cuts the lineage: from now on partitions are read from `files`.
  void MarkCheckpointed(std::vector<std::string> files);

 private:
  Context* const context_;
  const int id_;
  const std::string name_;
  const int num_partitions_;
  const std::optional<Partitioner> partitioner_;

  mutable std::mutex mu_;
  std::vector<Dependency> dependencies_;              // guarded by mu_
  StorageLevel storage_level_ = StorageLevel::kNone;  // guarded by mu_
  int storage_priority_ = 0;                          // guarded by mu_
  std::vector<std::string> checkpoint_files_;         // guarded by mu_
};

// Spark-style lineage text, one line per RDD, parents indented below their child; a "+-"
// marks a shuffle dependency, i.e. a stage boundary:
//   (2) Rdd[3] reduceByKey []
//    +-(4) Rdd[2] map []
//       |  Rdd[1] parallelize [MemoryOnly]
std::string DebugString(const RddNodeBase& rdd);

}  // namespace runnel::engine
