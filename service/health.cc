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
  trackers_.push_back(std::make_unique<QueryTracker>(this, name));
  return trackers_.back().get();
}

void Health::AddProbe(std::function<std::string()> probe) {
  std::lock_guard lock(mu_);
  probes_.push_back(std::move(probe));
}

std::vector<std::string> Health::Problems() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [query, why] : failing_) out.push_back(why);
  for (const auto& probe : probes_) {
    if (std::string why = probe(); !why.empty()) out.push_back(std::move(why));
  }
  return out;
}

}  // namespace runnel::service
