#include "service/health.h"

#include <fmt/format.h>

namespace runnel::service {

class Health::QueryTracker final : public streaming::BatchListener {
 public:
  QueryTracker(Health* health, std::string name) : health_(health), name_(std::move(name)) {}
  void OnBatchCompleted(const streaming::BatchProgress& p) override {
    std::lock_guard lock(health_->mu_);
    if (p.status.ok()) {
      health_->failing_.erase(name_);
    } else {
      health_->failing_[name_] = fmt::format("query {}: batch {} failed, retrying: {}", name_,
                                             p.batch_id, p.status.ToString());
    }
  }

 private:
  Health* const health_;
  const std::string name_;
};

Health::Health() = default;
Health::~Health() = default;

streaming::BatchListener* Health::ForQuery(const std::string& name) {
  std::lock_guard lock(mu_);
  auto& tracker = trackers_[name];
  tracker = std::make_unique<QueryTracker>(this, name);
  return tracker.get();
}

void Health::RemoveQuery(const std::string& name) {
  std::lock_guard lock(mu_);
  trackers_.erase(name);
  failing_.erase(name);
}

void Health::AddProbe(const std::string& key, std::function<std::string()> probe) {
  std::lock_guard lock(mu_);
  probes_[key] = std::move(probe);
}

void Health::RemoveProbe(const std::string& key) {
  std::lock_guard lock(mu_);
  probes_.erase(key);
}

std::vector<std::string> Health::Problems() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [query, why] : failing_) out.push_back(why);
  for (const auto& [key, probe] : probes_) {
    if (std::string why = probe(); !why.empty()) out.push_back(std::move(why));
  }
  return out;
}

}  // namespace runnel::service
