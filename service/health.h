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
  // The listener that tracks one query's batch attempts (owned by Health).
  streaming::BatchListener* ForQuery(const std::string& name);
  // A problem source: returns "" while fine. Called on every readiness check.
  void AddProbe(std::function<std::string()> probe);
  // Every current problem, one line each.
  std::vector<std::string> Problems() const;

 private:
  class QueryTracker;
  mutable std::mutex mu_;
  std::map<std::string, std::string> failing_;        // query -> last failure; guarded by mu_
  std::vector<std::function<std::string()>> probes_;  // guarded by mu_
  std::vector<std::unique_ptr<QueryTracker>> trackers_;
};

}  // namespace runnel::service
