// A StateStore that hands every call to another one: tests derive from it and override the
// calls they make fail (a commit that crashes, a disk that fills up).
#pragma once

#include "streaming/state_store.h"

namespace runnel::streaming {

class ForwardingStateStore : public StateStore {
 public:
  explicit ForwardingStateStore(StateStore* inner) : inner_(inner) {}
  Result<std::optional<std::string>> Get(const std::string& ns, const std::string& k) override {
    return inner_->Get(ns, k);
  }
  Status Scan(const std::string& ns, const std::string& b, const std::string& e,
              const std::function<bool(const std::string&, const std::string&)>& fn) override {
    return inner_->Scan(ns, b, e, fn);
  }
  Status Commit(const BatchCommit& commit) override { return inner_->Commit(commit); }
  Result<std::unique_ptr<SortedRun>> NewSortedRun(const std::string& ns) override {
    return inner_->NewSortedRun(ns);
  }
  Result<std::optional<CommittedBatch>> LastCommitted(const std::string& ns) override {
    return inner_->LastCommitted(ns);
  }
  Status Reset(const std::string& ns) override { return inner_->Reset(ns); }
  Status Writable() override { return inner_->Writable(); }

 private:
  StateStore* const inner_;
};

}  // namespace runnel::streaming
