// DStreamNode<T>: a node of the DStream graph (see dstream.h): it computes the RDD of a batch
// time from its parents and memoizes it for as long as a window downstream may need it.
//
// Thread safety: the graph is built before StreamingContext::Start; batches then run on the
// context's runner thread, one at a time. The generated-RDD memo is guarded by a mutex.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "engine/rdd.h"
#include "streaming/streaming_context.h"

namespace runnel::streaming {

class DStreamNodeBase {
 public:
  DStreamNodeBase(StreamingContext* ssc, Millis slide, std::vector<DStreamNodeBase*> parents)
      : ssc_(ssc), slide_(slide), parents_(std::move(parents)) {}
  virtual ~DStreamNodeBase() = default;

  StreamingContext& ssc() const { return *ssc_; }
  Millis slide() const { return slide_; }

  // Keep generated RDDs at least `d` back (a window downstream needs them), and make the
  // parents keep what that window's inputs need.
  void RememberAtLeast(Millis d) {
    if (d > remember_) remember_ = d;
    for (auto* p : parents_) p->RememberAtLeast(remember_);
  }
  Millis remember() const { return remember_; }

 protected:
  // A batch time at which this stream produces an RDD: a whole number of slides after zero.
  bool IsSlideTime(BatchTime t) const {
    const int64_t since_zero = t.value() - ssc_->zero_time().time_since_epoch().count();
    return since_zero >= 0 && since_zero % slide_.count() == 0;
  }

 private:
  StreamingContext* const ssc_;
  const Millis slide_;
  const std::vector<DStreamNodeBase*> parents_;
  Millis remember_{0};
};

// A node registers with its context while it lives (a stream built and then discarded is
// unregistered, never called again); it must not outlive the context.
template <typename T>
class DStreamNode : public DStreamNodeBase, public StreamNodeHooks {
 public:
  DStreamNode(StreamingContext* ssc, Millis slide, std::vector<DStreamNodeBase*> parents)
      : DStreamNodeBase(ssc, slide, std::move(parents)), registration_(ssc->AddNode(this)) {}

  // The RDD of batch time t (memoized); nullopt when t is not one of this stream's slides.
  Result<std::optional<engine::Rdd<T>>> GetOrCompute(BatchTime t) {
    std::lock_guard lock(mu_);
    if (auto it = generated_.find(t.value()); it != generated_.end()) return it->second;
    if (!IsSlideTime(t)) return std::optional<engine::Rdd<T>>();
    ASSIGN_OR_RETURN(std::optional<engine::Rdd<T>> rdd, Compute(t));
    generated_.emplace(t.value(), rdd);
    return rdd;
  }

  // The union of this stream's RDDs at batch times from, from + step, ... up to `to`
  // (nullopt when none of them has one): what a window over this stream reads.
  Result<std::optional<engine::Rdd<T>>> UnionOver(int64_t from, int64_t to, int64_t step) {
    std::vector<engine::Rdd<T>> rdds;
    for (int64_t u = from; u <= to; u += step) {
      ASSIGN_OR_RETURN(auto rdd, GetOrCompute(BatchTime(u)));
      if (rdd) rdds.push_back(*rdd);
    }
    return engine::Rdd<T>::UnionAll(rdds);
  }

 protected:
  virtual Result<std::optional<engine::Rdd<T>>> Compute(BatchTime t) = 0;
  // A node whose hooks use members of its own calls this first in its destructor: the context
  // stops calling it before those members go.
  void Unregister() { registration_ = {}; }

 private:
  void ClearOlderThan(BatchTime now) final {
    std::lock_guard lock(mu_);
    const int64_t keep_from = now.value() - remember().count();
    while (!generated_.empty() && generated_.begin()->first < keep_from) {
      generated_.erase(generated_.begin());
    }
  }
  void Forget(BatchTime t) final {
    std::lock_guard lock(mu_);
    generated_.erase(t.value());
  }

  // Recursive: a node may ask itself for an earlier batch's RDD while computing (the
  // incremental window reads the previous window).
  std::recursive_mutex mu_;
  std::map<int64_t, std::optional<engine::Rdd<T>>> generated_;  // guarded by mu_
  StreamingContext::Registration registration_;                 // last: unregisters first
};

}  // namespace runnel::streaming
