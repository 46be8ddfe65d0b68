#include "streaming/state_store.h"

#include <fmt/format.h>

namespace runnel::streaming {

BatchRecord MergeRecord(const BatchRecord* stored, const BatchRecord& commit) {
  BatchRecord next = commit;
  if (stored == nullptr) return next;
  for (const auto& [input, position] : stored->positions)
    next.positions.try_emplace(input, position);
  // What the commit leaves unset keeps its stored value (a retention cutoff survives a batch
  // that sets none).
  if (next.batch_time.value() == 0) next.batch_time = stored->batch_time;
  if (next.watermark_ms == INT64_MIN) next.watermark_ms = stored->watermark_ms;
  if (next.max_event_time_ms == INT64_MIN) next.max_event_time_ms = stored->max_event_time_ms;
  if (next.definition_fingerprint.empty()) {
    next.definition_fingerprint = stored->definition_fingerprint;
  }
  if (next.definition.empty()) next.definition = stored->definition;
  if (next.expire_before_ms == INT64_MIN) next.expire_before_ms = stored->expire_before_ms;
  return next;
}

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

namespace {

class InMemoryRun final : public SortedRun {
 public:
  Status Add(std::string_view key, std::string_view value) override {
    if (!rows_.empty() && !(rows_.back().first < key)) {
      return Status::InvalidArgument("sorted run: keys out of order");
    }
    rows_.emplace_back(key, value);
    return Status::OK();
  }
  Status Finish() override { return Status::OK(); }
  int64_t entries() const override { return static_cast<int64_t>(rows_.size()); }
  const std::vector<std::pair<std::string, std::string>>& rows() const { return rows_; }

 private:
  std::vector<std::pair<std::string, std::string>> rows_;
};

}  // namespace

Result<std::unique_ptr<SortedRun>> InMemoryStateStore::NewSortedRun(const std::string&) {
  return std::unique_ptr<SortedRun>(std::make_unique<InMemoryRun>());
}

Status InMemoryStateStore::Commit(const BatchCommit& commit) {
  std::lock_guard lock(mu_);
  Namespace& n = namespaces_[commit.ns];
  if (n.last && commit.record.batch_id.value() <= n.last->record.batch_id.value()) {
    return Status::FailedPrecondition(fmt::format("{}: commit of batch {} after batch {}",
                                                  commit.ns, commit.record.batch_id,
                                                  n.last->record.batch_id));
  }
  for (const auto& [k, v] : commit.puts) n.data[k] = v;
  for (SortedRun* run : commit.runs) {
    for (const auto& [k, v] : static_cast<InMemoryRun*>(run)->rows()) n.data[k] = v;
  }
  for (const auto& k : commit.deletes) n.data.erase(k);
  n.last = CommittedBatch{MergeRecord(n.last ? &n.last->record : nullptr, commit.record)};
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
  if (n->second.last) {
    n->second.last = CommittedBatch{BatchRecord{.batch_id = n->second.last->record.batch_id}};
  }
  return Status::OK();
}

Result<std::vector<std::optional<std::string>>> StateStore::MultiGet(
    const std::string& ns, const std::vector<std::string>& keys) {
  std::vector<std::optional<std::string>> values;
  values.reserve(keys.size());
  for (const std::string& key : keys) {
    ASSIGN_OR_RETURN(std::optional<std::string> v, Get(ns, key));
    values.push_back(std::move(v));
  }
  return values;
}

}  // namespace runnel::streaming
