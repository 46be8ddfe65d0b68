#include "engine/block_manager.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "common/file_util.h"

namespace runnel::engine {

std::string_view StorageLevelName(StorageLevel level) {
  switch (level) {
    case StorageLevel::kNone:
      return "None";
    case StorageLevel::kMemoryOnly:
      return "MemoryOnly";
    case StorageLevel::kMemoryAndDisk:
      return "MemoryAndDisk";
    case StorageLevel::kDiskOnly:
      return "DiskOnly";
  }
  return "?";
}

BlockManager::BlockManager(int64_t memory_budget_bytes, std::string spill_dir)
    : budget_(memory_budget_bytes), spill_dir_(std::move(spill_dir)) {}

std::string BlockManager::PathFor(BlockId id) const {
  return fmt::format("{}/rdd_{}_{}.block", spill_dir_, id.rdd_id, id.partition);
}

Status BlockManager::Put(PutRequest request) {
  std::lock_guard lock(mu_);
  if (auto it = blocks_.find(request.id); it != blocks_.end()) RemoveLocked(it);
  Entry entry;
  entry.object = std::move(request.object);
  entry.memory_bytes = request.memory_bytes;
  entry.level = request.level;
  entry.priority = request.priority;
  entry.last_use = ++clock_;
  entry.serialize = std::move(request.serialize);

  const bool disk_allowed = entry.level != StorageLevel::kMemoryOnly;
  const bool fits = entry.memory_bytes <= budget_;
  if (entry.level == StorageLevel::kDiskOnly || (!fits && disk_allowed)) {
    RETURN_NOT_OK(WriteToDiskLocked(request.id, &entry));
    entry.object.reset();
    entry.memory_bytes = 0;
    blocks_.emplace(request.id, std::move(entry));
    return Status::OK();
  }
  if (!fits) return Status::OK();  // MemoryOnly and larger than everything: not cached
  RETURN_NOT_OK(MakeRoomLocked(entry.memory_bytes, request.id));
  memory_used_ += entry.memory_bytes;
  blocks_.emplace(request.id, std::move(entry));
  return Status::OK();
}

Status BlockManager::MakeRoomLocked(int64_t needed, BlockId keep) {
  while (memory_used_ + needed > budget_) {
    auto victim = blocks_.end();
    for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
      if (!it->second.object || it->first == keep) continue;
      if (victim == blocks_.end() || it->second.priority < victim->second.priority ||
          (it->second.priority == victim->second.priority &&
           it->second.last_use < victim->second.last_use)) {
        victim = it;
      }
    }
    if (victim == blocks_.end()) return Status::OK();  // nothing left to evict
    Entry& e = victim->second;
    ++stats_.evictions;
    memory_used_ -= e.memory_bytes;
    if (e.level == StorageLevel::kMemoryAndDisk && e.disk_path.empty()) {
      ++stats_.spills;
      RETURN_NOT_OK(WriteToDiskLocked(victim->first, &e));
    }
    e.object.reset();
    e.memory_bytes = 0;
    if (e.disk_path.empty()) blocks_.erase(victim);
  }
  return Status::OK();
}

Status BlockManager::WriteToDiskLocked(BlockId id, Entry* entry) {
  if (!entry->serialize) return Status::Internal("block has a disk level but no serializer");
  const std::string path = PathFor(id);
  RETURN_NOT_OK(WriteFileAtomically(path, entry->serialize(entry->object.get())));
  entry->disk_path = path;
  return Status::OK();
}

std::optional<BlockManager::Found> BlockManager::Get(BlockId id) {
  std::lock_guard lock(mu_);
  auto it = blocks_.find(id);
  if (it == blocks_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  Entry& e = it->second;
  e.last_use = ++clock_;
  if (e.object) {
    ++stats_.hits;
    return Found{e.object, {}};
  }
  auto bytes = ReadFile(e.disk_path);
  if (!bytes.ok()) {  // the spill file is gone: the block is lost; lineage recomputes it
    RemoveLocked(it);
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  return Found{nullptr, std::move(bytes).value()};
}

bool BlockManager::Contains(BlockId id) {
  std::lock_guard lock(mu_);
  return blocks_.contains(id);
}

void BlockManager::RemoveLocked(std::map<BlockId, Entry>::iterator it) {
  memory_used_ -= it->second.object ? it->second.memory_bytes : 0;
  if (!it->second.disk_path.empty()) {
    std::error_code ec;  // best effort: a leftover spill file is harmless and in a temp dir
    std::filesystem::remove(it->second.disk_path, ec);
  }
  blocks_.erase(it);
}

void BlockManager::Remove(BlockId id) {
  std::lock_guard lock(mu_);
  if (auto it = blocks_.find(id); it != blocks_.end()) RemoveLocked(it);
}

void BlockManager::RemoveRdd(int rdd_id) {
  std::lock_guard lock(mu_);
  auto it = blocks_.lower_bound(BlockId{rdd_id, 0});
  while (it != blocks_.end() && it->first.rdd_id == rdd_id) RemoveLocked(it++);
}

BlockManagerStats BlockManager::stats() {
  std::lock_guard lock(mu_);
  BlockManagerStats s = stats_;
  s.memory_used_bytes = memory_used_;
  for (const auto& [id, e] : blocks_) {
    if (e.object) ++s.memory_blocks;
    if (!e.disk_path.empty()) ++s.disk_blocks;
  }
  return s;
}

}  // namespace runnel::engine
