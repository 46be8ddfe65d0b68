// BlockManager: the cache of persisted RDD partitions ("blocks"), within a memory budget.
//
// A block is one partition of one persisted RDD, held in memory as an opaque object (the
// typed side, rdd.h, stores a std::vector<T>) and/or on disk as bytes. When memory would pass
// the budget, blocks are evicted lowest priority first, then least recently used; an evicted
// MemoryAndDisk block is written to disk, a MemoryOnly block is dropped (and recomputed from
// lineage when next needed). DiskOnly blocks are only ever on disk.
//
// Thread safety: all methods may be called from any thread. Disk writes for spills happen
// under the manager's lock (simple and correct; spills are rare by design).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/result.h"

namespace runnel::engine {

enum class StorageLevel { kNone, kMemoryOnly, kMemoryAndDisk, kDiskOnly };

std::string_view StorageLevelName(StorageLevel level);

struct BlockId {
  int rdd_id = 0;
  int partition = 0;
  auto operator<=>(const BlockId&) const = default;
};

struct BlockManagerStats {
  int64_t memory_used_bytes = 0;
  int64_t memory_blocks = 0;
  int64_t disk_blocks = 0;
  int64_t evictions = 0;  // blocks removed from memory to make room
  int64_t spills = 0;     // of which written to disk
  int64_t hits = 0;
  int64_t misses = 0;
};

class BlockManager {
 public:
  // Blocks spill into `spill_dir` (created if missing).
  BlockManager(int64_t memory_budget_bytes, std::string spill_dir);

  struct PutRequest {
    BlockId id;
    std::shared_ptr<const void> object;  // the partition in memory
    int64_t memory_bytes = 0;            // what `object` holds
    StorageLevel level = StorageLevel::kMemoryOnly;
    int priority = 0;  // higher stays longer
    // Turns `object` into bytes, for disk levels.
    std::function<std::string(const void*)> serialize;
  };

  // Caches a block. A block larger than the whole budget goes to disk (disk levels) or is not
  // cached (MemoryOnly). Errors only on disk I/O failure.
  Status Put(PutRequest request);

  struct Found {
    std::shared_ptr<const void> object;  // set when in memory
    std::string bytes;                   // otherwise, the serialized block read from disk
  };
  // The block, or nullopt when it is not cached (never was, evicted, or removed).
  std::optional<Found> Get(BlockId id);

  bool Contains(BlockId id);
  // Drops one block (memory and disk): the test hook for "a lost cached block".
  void Remove(BlockId id);
  // Drops every block of an RDD (Unpersist).
  void RemoveRdd(int rdd_id);

  BlockManagerStats stats();
  int64_t memory_budget_bytes() const { return budget_; }

 private:
  struct Entry {
    std::shared_ptr<const void> object;  // null when only on disk
    int64_t memory_bytes = 0;
    StorageLevel level = StorageLevel::kNone;
    int priority = 0;
    uint64_t last_use = 0;
    std::function<std::string(const void*)> serialize;
    std::string disk_path;  // empty when not on disk
  };

  // Evicts until `needed` more bytes fit; never evicts `keep`. Requires mu_ held.
  Status MakeRoomLocked(int64_t needed, BlockId keep);
  Status WriteToDiskLocked(BlockId id, Entry* entry);
  void RemoveLocked(std::map<BlockId, Entry>::iterator it);
  std::string PathFor(BlockId id) const;

  const int64_t budget_;
  const std::string spill_dir_;
  std::mutex mu_;
  std::map<BlockId, Entry> blocks_;  // guarded by mu_
  int64_t memory_used_ = 0;          // guarded by mu_
  uint64_t clock_ = 0;               // guarded by mu_; LRU tick
  BlockManagerStats stats_;          // guarded by mu_ (memory/block counts computed on read)
};

}  // namespace runnel::engine
