#include "streaming/state_store.h"

#include <fmt/format.h>

namespace runnel::streaming {

Result<std::optional<std::string>> InMemoryStateStore::Get(const std::string& ns,
                                                           const std::string& key) {
  std::lock_guard lock(mu_);
  auto n = namespaces_.find(ns);
  if (n == namespaces_.end()) return std::optional<std::string>();
  auto it = n->second.data.find(key);
  if (it == n->second.data.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status InMemoryStateStore::Scan(
    const std::string& ns, const std::string& begin, const std::string& end,
    const std::function<bool(const std::string&, const std::string&)>& fn) {
  std::vector<std::pair<std::string, std::string>> rows;
  {
    std::lock_guard lock(mu_);
    auto n = namespaces_.find(ns);
    if (n == namespaces_.end()) return Status::OK();
    auto& data = n->second.data;
    for (auto it = data.lower_bound(begin); it != data.end() && (end.empty() || it->first < end);
         ++it) {
      rows.emplace_back(*it);
    }
  }
  for (const auto& [k, v] : rows) {
    if (!fn(k, v)) break;
  }
  return Status::OK();
}

Status InMemoryStateStore::Commit(const BatchCommit& commit) {
  std::lock_guard lock(mu_);
  Namespace& n = namespaces_[commit.ns];
  if (n.last && commit.batch_id.value() <= n.last->batch_id.value()) {
    return Status::FailedPrecondition(fmt::format("{}: commit of batch {} after batch {}",
                                                  commit.ns, commit.batch_id,
                                                  n.last ? n.last->batch_id.value() : -1));
  }
  for (const auto& [k, v] : commit.puts) n.data[k] = v;
  for (const auto& k : commit.deletes) n.data.erase(k);
  CommittedBatch last = n.last.value_or(CommittedBatch{});
  last.batch_id = commit.batch_id;
  for (const auto& [k, v] : commit.positions) last.positions[k] = v;
  for (const auto& [k, v] : commit.metadata) last.metadata[k] = v;
  if (commit.expire_before_ms != INT64_MIN) {
    last.metadata[kExpireBeforeKey] = std::to_string(commit.expire_before_ms);
  }
  n.last = std::move(last);
  return Status::OK();
}

Result<std::optional<CommittedBatch>> InMemoryStateStore::LastCommitted(const std::string& ns) {
  std::lock_guard lock(mu_);
  auto n = namespaces_.find(ns);
  if (n == namespaces_.end()) return std::optional<CommittedBatch>();
  return n->second.last;
}

Status InMemoryStateStore::Reset(const std::string& ns) {
  std::lock_guard lock(mu_);
  auto n = namespaces_.find(ns);
  if (n == namespaces_.end()) return Status::OK();
  n->second.data.clear();
  if (n->second.last) n->second.last = CommittedBatch{n->second.last->batch_id, {}, {}};
  return Status::OK();
}

}  // namespace runnel::streaming
