// PlannedInput: the plan / abandon / confirm protocol of an input stream, written once for
// every source (docs/batch-protocol.md).
//
// A source has a position (Kafka: an offset per partition; files: a byte and line per file).
// Each batch, Plan fixes the batch's input from the position — a Plan value that says exactly
// what the batch reads (offset ranges, byte ranges) — and moves the position past it. The plan
// is kept until the batch ends and as long as a window downstream may read the batch after:
//   - Confirm(t): the batch committed; OnConfirmed sees the position after it (the Kafka
//     source publishes it to its consumer group), and plans older than the stream's remember
//     duration before t are dropped (without windows: every plan before t);
//   - Abandon(t): the batch failed and will be planned again; its plan is dropped and the
//     position goes back to where the batch started, so nothing is skipped or read twice. A
//     confirmed batch is never abandoned.
// Compute(t) reads batch t's plan (an empty read when there is none); it may run more than
// once for a batch (a retry after Forget, a window that reads t later) and never changes it.
//
// A source implements PlanFrom (pure with respect to the ledger: it gets the position, returns
// the plan and the next position) and Read, and may hook BeforePlan and OnConfirmed. PlanFrom runs
// without the ledger's lock, so a source may talk to a broker while planning and readers of the
// position are never blocked.
//
// Thread safety: Plan, Abandon, Confirm and Compute run on the streaming context's batch
// thread (one batch at a time); position(), SetPosition and UpdatePosition may be called from
// any thread (they take the ledger's lock). A source registers itself (AddInput) and holds the
// Registration as its own last member.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "streaming/dstream_node.h"

namespace runnel::streaming {

template <typename T, typename PlanT, typename PositionT>
class PlannedInput : public DStreamNode<T>, public InputStreamBase {
 public:
  using Position = PositionT;
  using BatchPlan = PlanT;

  // What PlanFrom decided for one batch.
  struct Planned {
    BatchPlan plan;
    Position next;  // the position after the batch
  };

  Status Plan(BatchInfo* info) final {
    const BatchTime t = info->progress.batch_time;
    RETURN_NOT_OK(BeforePlan());
    Position from = position();
    ASSIGN_OR_RETURN(Planned planned, PlanFrom(info, from));
    std::lock_guard lock(ledger_mu_);
    position_ = planned.next;
    plans_.insert_or_assign(t.value(), Entry{std::move(planned.plan), std::move(from)});
    return Status::OK();
  }

  void Abandon(BatchTime t) final {
    {
      std::lock_guard lock(ledger_mu_);
      if (t.value() > confirmed_through_) {  // committed: nothing to give back
        if (auto it = plans_.find(t.value()); it != plans_.end()) {
          // Only the newest plan can be abandoned: batches run one at a time.
          if (std::next(it) == plans_.end()) position_ = std::move(it->second.before);
          plans_.erase(it);
        }
      }
    }
    OnBatchEnded();
  }

  void Stopped(BatchTime t) final {
    (void)t;
    OnBatchEnded();
  }

  void Confirm(BatchTime t) final {
    std::optional<std::pair<BatchPlan, Position>> confirmed;
    {
      std::lock_guard lock(ledger_mu_);
      auto it = plans_.find(t.value());
      if (it != plans_.end() && t.value() > confirmed_through_) {
        confirmed_through_ = t.value();
        if (std::next(it) == plans_.end()) confirmed.emplace(it->second.plan, position_);
        // A window downstream may still read a batch this far back (an input is never asked
        // for an RDD at a batch that was not a slide of the window when it ran).
        const int64_t keep_from = t.value() - this->remember().count();
        plans_.erase(plans_.begin(), plans_.lower_bound(keep_from));
      }
    }
    if (confirmed) OnConfirmed(confirmed->first, confirmed->second);
    OnBatchEnded();
  }

  // The position the next batch starts from.
  Position position() const {
    std::lock_guard lock(ledger_mu_);
    return position_;
  }

 protected:
  PlannedInput(StreamingContext* ssc, Position start)
      : DStreamNode<T>(ssc, ssc->batch_interval(), {}), position_(std::move(start)) {}

  // Runs before the position is read for a plan: a source brings it up to date with the
  // world here (the Kafka source serves rebalances and places newly assigned partitions).
  // What it changes with UpdatePosition is where the batch starts, and where an abandoned
  // batch goes back to. An error fails the batch.
  virtual Status BeforePlan() { return Status::OK(); }
  // Fixes batch `info`'s input from position `from`: records what it plans in
  // info->progress (input, records_in) and info->positions, returns the plan and the position
  // after it. An error fails the batch before anything ran.
  virtual Result<Planned> PlanFrom(BatchInfo* info, const Position& from) = 0;
  // The batch's RDD over `plan` (a plan the source made; an empty plan reads nothing).
  virtual Result<std::optional<engine::Rdd<T>>> Read(const BatchPlan& plan) = 0;
  // A batch committed: `plan` is what it read, `after` the position it planned up to.
  virtual void OnConfirmed(const BatchPlan& plan, const Position& after) {
    (void)plan;
    (void)after;
  }

  // After every Confirm, Abandon and Stopped: the batch that Plan began has ended, either way.
  virtual void OnBatchEnded() {}

  // Replaces the position (Restore, before the context starts).
  void SetPosition(Position position) {
    std::lock_guard lock(ledger_mu_);
    position_ = std::move(position);
  }
  // Changes the position in place under the ledger's lock (a partition assigned between
  // batches). `fn` must not call back into the ledger.
  template <typename Fn>
  void UpdatePosition(Fn&& fn) {
    std::lock_guard lock(ledger_mu_);
    fn(position_);
  }

  Result<std::optional<engine::Rdd<T>>> Compute(BatchTime t) final {
    BatchPlan plan;
    {
      std::lock_guard lock(ledger_mu_);
      if (auto it = plans_.find(t.value()); it != plans_.end()) plan = it->second.plan;
    }
    return Read(plan);
  }

 private:
  struct Entry {
    BatchPlan plan;
    Position before;  // the position the batch started from (for Abandon)
  };

  mutable std::mutex ledger_mu_;
  Position position_;                      // guarded by ledger_mu_
  std::map<int64_t, Entry> plans_;         // by batch time; guarded by ledger_mu_
  int64_t confirmed_through_ = INT64_MIN;  // the last confirmed batch time; ledger_mu_
};

}  // namespace runnel::streaming
