#include "engine/shuffle.h"

#include "engine/context.h"

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

}  // namespace runnel::engine
