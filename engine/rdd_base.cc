#include "engine/rdd_base.h"

#include <fmt/format.h>

#include "engine/context.h"

namespace runnel::engine {

RddNodeBase::RddNodeBase(Context* context, std::string name, int num_partitions,
                         std::vector<Dependency> dependencies,
                         std::optional<Partitioner> partitioner)
    : context_(context),
      id_(context->NewRddId()),
      name_(std::move(name)),
      num_partitions_(num_partitions),
      partitioner_(partitioner),
      dependencies_(std::move(dependencies)) {}

std::vector<Dependency> RddNodeBase::dependencies() const {
  std::lock_guard lock(mu_);
  return dependencies_;
}

StorageLevel RddNodeBase::storage_level() const {
  std::lock_guard lock(mu_);
  return storage_level_;
}

int RddNodeBase::storage_priority() const {
  std::lock_guard lock(mu_);
  return storage_priority_;
}

void RddNodeBase::SetStorage(StorageLevel level, int priority) {
  std::lock_guard lock(mu_);
  storage_level_ = level;
  storage_priority_ = priority;
}

std::vector<std::string> RddNodeBase::checkpoint_files() const {
  std::lock_guard lock(mu_);
  return checkpoint_files_;
}

void RddNodeBase::MarkCheckpointed(std::vector<std::string> files) {
  std::lock_guard lock(mu_);
  checkpoint_files_ = std::move(files);
  dependencies_.clear();
}

namespace {

// One line for `rdd` after `lead`; narrow parents follow at the stage's member indent
// `indent` behind "|  ", shuffle parents open a new stage behind "+-", indented further.
void AppendLineage(const RddNodeBase& rdd, const std::string& lead, const std::string& indent,
                   bool stage_root, std::string* out) {
  const StorageLevel level = rdd.storage_level();
  std::string tags;
  if (level != StorageLevel::kNone) tags = std::string(StorageLevelName(level));
  if (!rdd.checkpoint_files().empty()) tags += tags.empty() ? "Checkpointed" : ", Checkpointed";
  const std::string partitions =
      stage_root ? fmt::format("({}) ", rdd.num_partitions()) : std::string();
  out->append(fmt::format("{}{}Rdd[{}] {} [{}]\n", lead, partitions, rdd.id(), rdd.name(), tags));
  for (const Dependency& dep : rdd.dependencies()) {
    if (dep.kind == Dependency::Kind::kShuffle) {
      AppendLineage(*dep.parent, indent + "+-", indent + "   ", true, out);
    } else {
      AppendLineage(*dep.parent, indent + "|  ", indent, false, out);
    }
  }
}

}  // namespace

std::string DebugString(const RddNodeBase& rdd) {
  std::string out;
  AppendLineage(rdd, "", " ", true, &out);
  return out;
}

}  // namespace runnel::engine
