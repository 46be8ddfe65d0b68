#include "engine/shuffle.h"

#include "engine/context.h"

#include <fmt/format.h>

#include "engine/task_context.h"

namespace runnel::engine {

void ShuffleStore::Put(int shuffle_id, int map_partition, std::shared_ptr<const MapOutput> output) {
  std::lock_guard lock(mu_);
  outputs_[{shuffle_id, map_partition}] = std::move(output);
}

std::shared_ptr<const MapOutput> ShuffleStore::Get(int shuffle_id, int map_partition) {
  std::lock_guard lock(mu_);
  auto it = outputs_.find({shuffle_id, map_partition});
  return it == outputs_.end() ? nullptr : it->second;
}

std::vector<int> ShuffleStore::Missing(int shuffle_id, int num_maps) {
  std::lock_guard lock(mu_);
  std::vector<int> missing;
  for (int m = 0; m < num_maps; ++m) {
    if (!outputs_.contains({shuffle_id, m})) missing.push_back(m);
  }
  return missing;
}

void ShuffleStore::Remove(int shuffle_id, int map_partition) {
  std::lock_guard lock(mu_);
  outputs_.erase({shuffle_id, map_partition});
}

void ShuffleStore::RemoveShuffle(int shuffle_id) {
  std::lock_guard lock(mu_);
  outputs_.erase(outputs_.lower_bound({shuffle_id, 0}), outputs_.lower_bound({shuffle_id + 1, 0}));
}

bool ShuffleStore::PutIfFits(int shuffle_id, int map_partition,
                             const std::shared_ptr<const MapOutput>& output) {
  std::lock_guard lock(mu_);
  const std::pair<int, int> key{shuffle_id, map_partition};
  int64_t total = 0;
  for (const auto& [k, out] : outputs_) {
    if (!out->file && k != key) total += out->bytes;  // an output it replaces does not count
  }
  if (total + output->bytes > memory_limit_) return false;
  outputs_[key] = output;
  return true;
}

int64_t ShuffleStore::memory_bytes() {
  std::lock_guard lock(mu_);
  int64_t total = 0;
  for (const auto& [key, out] : outputs_) {
    if (!out->file) total += out->bytes;
  }
  return total;
}

int64_t ShuffleStore::total_bytes() {
  std::lock_guard lock(mu_);
  int64_t total = 0;
  for (const auto& [key, out] : outputs_) total += out->bytes;
  return total;
}

ShuffleDependencyBase::ShuffleDependencyBase(Context* context, std::shared_ptr<RddNodeBase> parent,
                                             Partitioner partitioner, bool map_side_combine)
    : context_(context),
      shuffle_id_(context->NewShuffleId()),
      parent_(std::move(parent)),
      partitioner_(partitioner),
      map_side_combine_(map_side_combine) {}

ShuffleDependencyBase::~ShuffleDependencyBase() {
  context_->shuffle_store().RemoveShuffle(shuffle_id_);
}

MapOutputBuilder::MapOutputBuilder(ShuffleDependencyBase* dep, int map_partition, TaskContext& tc)
    : dep_(dep), map_partition_(map_partition), tc_(tc), output_(std::make_shared<MapOutput>()) {
  output_->buckets.resize(static_cast<size_t>(dep->num_reduce_partitions()));
}

Status MapOutputBuilder::SpillRun() {
  if (!file_) {
    ASSIGN_OR_RETURN(
        file_, SpillFile::Create(dep_->context().spill_dir(),
                                 fmt::format("stage {}: shuffle {} map output {}", tc_.stage_id(),
                                             dep_->shuffle_id(), map_partition_)));
  }
  auto& run = output_->runs.emplace_back();
  for (std::string& b : output_->buckets) {
    run.emplace_back(file_->size(), static_cast<int64_t>(b.size()));
    RETURN_NOT_OK(file_->Append(b));
    std::string().swap(b);
  }
  tc_.metrics().spill_bytes += buffered_;
  buffered_ = 0;
  return Status::OK();
}

Status MapOutputBuilder::Finish() {
  ShuffleStore& store = dep_->context().shuffle_store();
  if (!file_) {
    output_->bytes = buffered_;
    if (store.PutIfFits(dep_->shuffle_id(), map_partition_, output_)) {
      tc_.metrics().shuffle_write_bytes += output_->bytes;
      output_.reset();
      return Status::OK();
    }
  }
  // Spilled already, or no room beside the other outputs in memory: to the spill file.
  RETURN_NOT_OK(SpillRun());
  RETURN_NOT_OK(file_->Finish());
  output_->file = file_;
  output_->bytes = file_->size();
  output_->buckets.clear();
  tc_.metrics().shuffle_write_bytes += output_->bytes;
  store.Put(dep_->shuffle_id(), map_partition_, std::move(output_));
  return Status::OK();
}

}  // namespace runnel::engine
