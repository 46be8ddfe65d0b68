// Readiness beyond recovery. /readyz answers 503 while any query's last batch attempt failed
// (it is being retried: a broker or the disk is in trouble) or any probe reports a problem (a
// Kafka source whose reads stall); the body names each problem.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "streaming/streaming_context.h"

namespace runnel::service {

class Health {
 public:
  Health();
  ~Health();
  // The listener that tracks one query's batch attempts (owned by Health). A second call for
  // the same name replaces the first listener (its context must no longer call it).
  streaming::BatchListener* ForQuery(const std::string& name);
  // The query left the config: its listener (its context must no longer call it) and its
  // problem go.
  void RemoveQuery(const std::string& name);
  // A problem source named `key`: returns "" while fine. Called on every readiness check.
  // Replaces an earlier probe of the same key.
  void AddProbe(const std::string& key, std::function<std::string()> probe);
  void RemoveProbe(const std::string& key);
  // Every current problem, one line each.
  std::vector<std::string> Problems() const;

 private:
  class QueryTracker;
  mutable std::mutex mu_;
  std::map<std::string, std::string> failing_;  // query -> last failure; guarded by mu_
  std::map<std::string, std::function<std::string()>> probes_;     // by key; guarded by mu_
  std::map<std::string, std::unique_ptr<QueryTracker>> trackers_;  // by query; guarded by mu_
};

}  // namespace runnel::service
