// DStream<T>: a discretized stream (Zaharia et al., SOSP 2013): one RDD per batch time, each
// with its own lineage. Transformations build a graph of DStream nodes; output operations
// (ForeachRdd) register with the StreamingContext and run once per batch, asking the graph for
// that batch's RDD. Nodes remember the RDDs they generated as long as a window downstream may
// need them, and forget them after.
//
// Thread safety: the graph is built before StreamingContext::Start; batches then run on the
// context's runner thread, one at a time. Generated-RDD caches are guarded by a mutex.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "engine/rdd.h"
#include "streaming/dstream_node.h"
#include "streaming/planned_input.h"
#include "streaming/state_store.h"
#include "streaming/streaming_context.h"

namespace runnel::streaming {

template <typename T>
class DStream;

// ---- Inputs ----

// A stream whose batches are fixed lists of records: each batch takes the next list (an empty
// RDD when the queue is empty). For tests and for replaying recorded data. Its position is the
// number of lists taken; lists are dropped once a batch that took them commits.
template <typename T>
class QueueInputNode final
    : public PlannedInput<T, std::shared_ptr<const std::vector<T>>, int64_t> {
  using Base = PlannedInput<T, std::shared_ptr<const std::vector<T>>, int64_t>;

 public:
  QueueInputNode(StreamingContext* ssc, std::deque<std::vector<T>> batches, int partitions)
      : Base(ssc, 0), partitions_(partitions), registration_(ssc->AddInput(this)) {
    for (auto& b : batches) Push(std::move(b));
  }

  void Push(std::vector<T> batch) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::make_shared<const std::vector<T>>(std::move(batch)));
  }

 protected:
  Result<typename Base::Planned> PlanFrom(BatchInfo* info, const int64_t& from) override {
    std::lock_guard lock(mu_);
    const auto index = static_cast<size_t>(from - dropped_);
    if (index >= queue_.size()) {
      info->progress.input["queue"] = "0 records";
      return typename Base::Planned{std::make_shared<const std::vector<T>>(), from};
    }
    const auto& batch = queue_[index];
    info->progress.records_in += static_cast<int64_t>(batch->size());
    info->progress.input["queue"] = fmt::format("{} records", batch->size());
    return typename Base::Planned{batch, from + 1};
  }
  Result<std::optional<engine::Rdd<T>>> Read(
      const std::shared_ptr<const std::vector<T>>& plan) override {
    auto data = plan ? plan : std::make_shared<const std::vector<T>>();
    return std::optional(this->ssc().engine().Parallelize(std::move(data), partitions_));
  }
  void OnConfirmed(const std::shared_ptr<const std::vector<T>>&, const int64_t& after) override {
    std::lock_guard lock(mu_);
    while (dropped_ < after && !queue_.empty()) {
      queue_.pop_front();
      ++dropped_;
    }
  }

 private:
  std::mutex mu_;
  std::deque<std::shared_ptr<const std::vector<T>>> queue_;  // from list `dropped_` on; mu_
  int64_t dropped_ = 0;                                      // guarded by mu_
  const int partitions_;
  StreamingContext::Registration registration_;  // last: unregisters first
};

// ---- Transformations ----

// Any RDD-to-RDD function of one parent, applied per batch (Map, Filter, ReduceByKey, ...).
template <typename T, typename U>
class TransformedNode final : public DStreamNode<U> {
 public:
  using Fn = std::function<Result<engine::Rdd<U>>(const engine::Rdd<T>&, BatchTime)>;
  TransformedNode(std::shared_ptr<DStreamNode<T>> parent, Fn fn)
      : DStreamNode<U>(&parent->ssc(), parent->slide(), {parent.get()}),
        parent_(std::move(parent)),
        fn_(std::move(fn)) {}

 protected:
  Result<std::optional<engine::Rdd<U>>> Compute(BatchTime t) override {
    ASSIGN_OR_RETURN(std::optional<engine::Rdd<T>> in, parent_->GetOrCompute(t));
    if (!in) return std::optional<engine::Rdd<U>>();
    ASSIGN_OR_RETURN(engine::Rdd<U> out, fn_(*in, t));
    return std::optional(std::move(out));
  }

 private:
  const std::shared_ptr<DStreamNode<T>> parent_;
  const Fn fn_;
};

template <typename T>
class UnionNode final : public DStreamNode<T> {
 public:
  explicit UnionNode(std::vector<std::shared_ptr<DStreamNode<T>>> parents)
      : DStreamNode<T>(&parents.front()->ssc(), parents.front()->slide(), Raw(parents)),
        parents_(std::move(parents)) {}

 protected:
  Result<std::optional<engine::Rdd<T>>> Compute(BatchTime t) override {
    std::vector<engine::Rdd<T>> rdds;
    for (const auto& p : parents_) {
      ASSIGN_OR_RETURN(auto rdd, p->GetOrCompute(t));
      if (rdd) rdds.push_back(*rdd);
    }
    return engine::Rdd<T>::UnionAll(rdds);
  }

 private:
  static std::vector<DStreamNodeBase*> Raw(const std::vector<std::shared_ptr<DStreamNode<T>>>& ps) {
    std::vector<DStreamNodeBase*> raw;
    for (const auto& p : ps) raw.push_back(p.get());
    return raw;
  }
  const std::vector<std::shared_ptr<DStreamNode<T>>> parents_;
};

// The union of the parent's RDDs of the batches in (t - length, t], every `slide`.
template <typename T>
class WindowedNode final : public DStreamNode<T> {
 public:
  WindowedNode(std::shared_ptr<DStreamNode<T>> parent, Millis length, Millis slide)
      : DStreamNode<T>(&parent->ssc(), slide, {parent.get()}),
        parent_(std::move(parent)),
        length_(length) {
    parent_->RememberAtLeast(length + parent_->slide());
  }

 protected:
  Result<std::optional<engine::Rdd<T>>> Compute(BatchTime t) override {
    const int64_t step = parent_->slide().count();
    ASSIGN_OR_RETURN(auto window,
                     parent_->UnionOver(t.value() - length_.count() + step, t.value(), step));
    if (!window) return std::optional(this->ssc().engine().Parallelize(std::vector<T>{}, 1));
    return window;
  }

 private:
  const std::shared_ptr<DStreamNode<T>> parent_;
  const Millis length_;
};

// ReduceByKeyAndWindow with an inverse function: the window's value is the previous window's,
// plus the batches that entered, minus (by `inverse`) the batches that left. Each window's
// result is persisted for the next and checkpointed now and then to bound its lineage.
template <typename K, typename V, typename F, typename Inv>
class ReducedWindowedNode final : public DStreamNode<std::pair<K, V>> {
 public:
  using KV = std::pair<K, V>;
  ReducedWindowedNode(std::shared_ptr<DStreamNode<KV>> parent, F f, Inv inverse, Millis length,
                      Millis slide, int partitions)
      : DStreamNode<KV>(&parent->ssc(), slide, {parent.get()}),
        parent_(std::move(parent)),
        f_(std::move(f)),
        inverse_(std::move(inverse)),
        length_(length),
        partitions_(partitions) {
    parent_->RememberAtLeast(length + slide + parent_->slide());
    this->RememberAtLeast(slide + slide);
  }

 protected:
  Result<std::optional<engine::Rdd<KV>>> Compute(BatchTime t) override {
    const int64_t step = parent_->slide().count();
    const int64_t slide = this->slide().count();
    ASSIGN_OR_RETURN(auto previous, this->GetOrCompute(BatchTime(t.value() - slide)));
    // Without a previous window (the first one), reduce the whole window from scratch.
    const int64_t new_from =
        previous ? t.value() - slide + step : t.value() - length_.count() + step;
    ASSIGN_OR_RETURN(auto entered, parent_->UnionOver(new_from, t.value(), step));
    std::vector<engine::Rdd<std::pair<K, std::pair<int, V>>>> tagged;
    const F& f = f_;
    const Inv& inverse = inverse_;
    auto tag = [](int which) {
      return [which](V v) { return std::pair<int, V>(which, std::move(v)); };
    };
    if (previous) {
      tagged.push_back(previous->MapValues(tag(0)));
      ASSIGN_OR_RETURN(auto left, parent_->UnionOver(t.value() - length_.count() - slide + step,
                                                     t.value() - length_.count(), step));
      if (left) tagged.push_back(left->ReduceByKey(f, partitions_).MapValues(tag(2)));
    }
    if (entered) tagged.push_back(entered->ReduceByKey(f, partitions_).MapValues(tag(1)));
    auto all = engine::Rdd<std::pair<K, std::pair<int, V>>>::UnionAll(tagged);
    if (!all) return std::optional(this->ssc().engine().Parallelize(std::vector<KV>{}, 1));
    auto combined =
        all->GroupByKey(partitions_)
            .FlatMap([f, inverse](std::pair<K, std::vector<std::pair<int, V>>>&& group) {
              std::optional<V> acc;
              // Previous value first, then what entered, then subtract what left.
              for (int which : {0, 1, 2}) {
                for (auto& [w, v] : group.second) {
                  if (w != which) continue;
                  if (which == 2) {
                    acc = inverse(std::move(*acc), std::move(v));
                  } else {
                    acc = acc ? f(std::move(*acc), std::move(v)) : std::move(v);
                  }
                }
              }
              std::vector<KV> out;
              if (acc && !(*acc == V{})) out.emplace_back(std::move(group.first), std::move(*acc));
              return out;
            });
    combined.Persist(engine::StorageLevel::kMemoryAndDisk);
    if (++windows_ % kCheckpointEvery == 0) RETURN_NOT_OK(combined.Checkpoint());
    return std::optional(combined);
  }

 private:
  static constexpr int kCheckpointEvery = 10;

  const std::shared_ptr<DStreamNode<KV>> parent_;
  const F f_;
  const Inv inverse_;
  const Millis length_;
  const int partitions_;
  int64_t windows_ = 0;
};

// UpdateStateByKey over a StateStore: per batch, for every key with new values (and every key
// idle for `timeout`, with no values and timed_out set), state = update(key, values, state,
// timed_out); nullopt removes the key. The stream's RDD holds the keys updated in the batch
// with their new state. The changes commit to the store once per batch, after the batch's
// outputs succeeded (CommitBatch): a batch that fails and runs again computes from the state
// before it, and applies once.
template <typename K, typename V, typename S>
class StateUpdateNode final : public DStreamNode<std::pair<K, S>> {
 public:
  using UpdateFn = std::function<std::optional<S>(const K&, const std::vector<V>&, std::optional<S>,
                                                  bool timed_out)>;
  StateUpdateNode(std::shared_ptr<DStreamNode<std::pair<K, V>>> parent, StateStore* store,
                  std::string ns, UpdateFn update, Millis timeout)
      : DStreamNode<std::pair<K, S>>(&parent->ssc(), parent->slide(), {parent.get()}),
        parent_(std::move(parent)),
        store_(store),
        ns_(std::move(ns)),
        update_(std::move(update)),
        timeout_(timeout) {}
  ~StateUpdateNode() override { this->Unregister(); }

 protected:
  Result<std::optional<engine::Rdd<std::pair<K, S>>>> Compute(BatchTime t) override {
    {
      // Committed already (a later hook of the batch failed and it runs again): the state now
      // includes this batch, so its result is the one computed before, not a second update.
      std::lock_guard lock(pending_mu_);
      if (committed_ && committed_->first == t.value()) {
        return std::optional(committed_->second);
      }
    }
    ASSIGN_OR_RETURN(auto in, parent_->GetOrCompute(t));
    if (!in) return std::optional<engine::Rdd<std::pair<K, S>>>();
    ASSIGN_OR_RETURN(auto grouped, in->GroupByKey().Collect());
    BatchCommit commit;
    commit.ns = ns_;
    std::vector<std::pair<K, S>> updated;
    std::set<std::string> touched;
    auto apply = [&](const K& key, const std::string& skey, const std::vector<V>& values,
                     std::optional<S> old, bool timed_out) {
      std::optional<S> next = update_(key, values, std::move(old), timed_out);
      touched.insert(skey);
      if (!next) {
        commit.deletes.push_back(skey);
        return;
      }
      std::string bytes;
      engine::Serde<int64_t>::Write(t.value(), &bytes);
      engine::Serde<S>::Write(*next, &bytes);
      commit.puts.emplace_back(skey, std::move(bytes));
      updated.emplace_back(key, std::move(*next));
    };
    for (auto& [key, values] : grouped) {
      std::string skey;
      engine::Serde<K>::Write(key, &skey);
      ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->Get(ns_, skey));
      std::optional<S> old;
      if (stored) {
        ASSIGN_OR_RETURN(auto decoded, Decode(*stored));
        old = std::move(decoded.second);
      }
      apply(key, skey, values, std::move(old), false);
    }
    if (timeout_ > Millis::zero()) {
      std::vector<std::pair<std::string, std::string>> idle;
      RETURN_NOT_OK(store_->Scan(ns_, "", "", [&](const std::string& k, const std::string& v) {
        if (!touched.contains(k)) idle.emplace_back(k, v);
        return true;
      }));
      for (const auto& [skey, bytes] : idle) {
        ASSIGN_OR_RETURN(auto decoded, Decode(bytes));
        if (decoded.first > t.value() - timeout_.count()) continue;
        K key{};
        std::string_view view = skey;
        if (!engine::Serde<K>::Read(&view, &key)) return Status::Corruption(ns_ + ": bad key");
        apply(key, skey, {}, std::move(decoded.second), true);
      }
    }
    auto rdd = this->ssc().engine().Parallelize(std::move(updated), 1);
    {
      std::lock_guard lock(pending_mu_);
      // A retry before the commit computes it again, from the same state.
      pending_.insert_or_assign(t.value(), std::pair(std::move(commit), rdd));
    }
    return std::optional(std::move(rdd));
  }

  Status CommitBatch(BatchTime t) override {
    std::lock_guard lock(pending_mu_);
    auto it = pending_.find(t.value());
    if (it == pending_.end()) return Status::OK();  // not one of this stream's slides
    if (!next_batch_) {
      ASSIGN_OR_RETURN(auto last, store_->LastCommitted(ns_));
      next_batch_ = last ? last->record.batch_id.value() + 1 : 0;
    }
    it->second.first.record.batch_id = BatchId(*next_batch_);
    RETURN_NOT_OK(store_->Commit(it->second.first));
    ++*next_batch_;
    committed_.emplace(t.value(), std::move(it->second.second));
    pending_.erase(pending_.begin(), std::next(it));
    return Status::OK();
  }

 private:
  // (last update time, state)
  Result<std::pair<int64_t, S>> Decode(std::string_view bytes) const {
    std::pair<int64_t, S> out{};
    if (!engine::Serde<int64_t>::Read(&bytes, &out.first) ||
        !engine::Serde<S>::Read(&bytes, &out.second)) {
      return Status::Corruption(ns_ + ": malformed state value");
    }
    return out;
  }

  const std::shared_ptr<DStreamNode<std::pair<K, V>>> parent_;
  StateStore* const store_;
  const std::string ns_;
  const UpdateFn update_;
  const Millis timeout_;
  std::mutex pending_mu_;
  // By batch time, computed and not yet committed: the changes and the stream's RDD.
  std::map<int64_t, std::pair<BatchCommit, engine::Rdd<std::pair<K, S>>>> pending_;  // pending_mu_
  // The last committed batch time and its RDD (for a retry of that batch); pending_mu_.
  std::optional<std::pair<int64_t, engine::Rdd<std::pair<K, S>>>> committed_;
  std::optional<int64_t> next_batch_;  // the next batch id in the store; pending_mu_
};

// ---- The handle ----

template <typename T>
class DStream {
 public:
  explicit DStream(std::shared_ptr<DStreamNode<T>> node) : node_(std::move(node)) {}

  const std::shared_ptr<DStreamNode<T>>& node() const { return node_; }
  StreamingContext& ssc() const { return node_->ssc(); }

  // Any RDD-to-RDD function per batch: fn(const Rdd<T>&, BatchTime) -> Rdd<U>.
  template <typename Fn>
  auto Transform(Fn fn) const {
    using U = typename std::invoke_result_t<Fn&, const engine::Rdd<T>&, BatchTime>::value_type;
    typename TransformedNode<T, U>::Fn wrapped =
        [fn = std::move(fn)](const engine::Rdd<T>& rdd, BatchTime t) -> Result<engine::Rdd<U>> {
      return fn(rdd, t);
    };
    return DStream<U>(std::make_shared<TransformedNode<T, U>>(node_, std::move(wrapped)));
  }

  template <typename F>
  auto Map(F f) const {
    return Transform([f](const engine::Rdd<T>& rdd, BatchTime) { return rdd.Map(f); });
  }
  template <typename F>
  DStream<T> Filter(F f) const {
    return Transform([f](const engine::Rdd<T>& rdd, BatchTime) { return rdd.Filter(f); });
  }
  template <typename F>
  auto FlatMap(F f) const {
    return Transform([f](const engine::Rdd<T>& rdd, BatchTime) { return rdd.FlatMap(f); });
  }
  template <typename F>
  auto MapPartitions(F f) const {
    return Transform([f](const engine::Rdd<T>& rdd, BatchTime) { return rdd.MapPartitions(f); });
  }
  template <typename F>
  auto ReduceByKey(F f, int partitions = 0) const {
    return Transform([f, partitions](const engine::Rdd<T>& rdd, BatchTime) {
      return rdd.ReduceByKey(f, partitions);
    });
  }

  DStream<T> Union(const DStream<T>& other) const {
    return DStream<T>(std::make_shared<UnionNode<T>>(
        std::vector<std::shared_ptr<DStreamNode<T>>>{node_, other.node_}));
  }

  // Every `slide`, the records of the batches in the last `length`. Both are multiples of the
  // batch interval.
  DStream<T> Window(Millis length, Millis slide) const {
    return DStream<T>(std::make_shared<WindowedNode<T>>(node_, length, slide));
  }

  // Per key, f over the window's values, recomputed from the window's batches.
  template <typename F>
  auto ReduceByKeyAndWindow(F f, Millis length, Millis slide, int partitions = 0) const {
    return Window(length, slide).ReduceByKey(f, partitions);
  }

  // The same, incrementally: previous window + entered batches - left batches (by `inverse`,
  // with f(inverse(a, b), b) == a). Keys whose value returns to V{} are dropped.
  template <typename F, typename Inv>
  auto ReduceByKeyAndWindow(F f, Inv inverse, Millis length, Millis slide,
                            int partitions = 0) const {
    using K = typename engine::PairTraits<T>::Key;
    using V = typename engine::PairTraits<T>::Value;
    return DStream<T>(std::make_shared<ReducedWindowedNode<K, V, F, Inv>>(
        node_, std::move(f), std::move(inverse), length, slide, partitions));
  }

  // Records in each window, as a one-record stream.
  DStream<int64_t> CountByWindow(Millis length, Millis slide) const {
    return Map([](const T&) { return std::pair<int, int64_t>(0, 1); })
        .ReduceByKeyAndWindow([](int64_t a, int64_t b) { return a + b; },
                              [](int64_t a, int64_t b) { return a - b; }, length, slide, 1)
        .Transform([](const engine::Rdd<std::pair<int, int64_t>>& rdd, BatchTime) {
          return rdd.Values();
        });
  }

  // Keeps per-key state S across batches in `store` under namespace `ns`:
  // update(key, this batch's values, previous state, timed_out) -> new state, or nullopt to
  // remove it. With a timeout, keys idle that long are offered once more with no values and
  // timed_out = true.
  template <typename S, typename Update>
  auto UpdateStateByKey(StateStore* store, std::string ns, Update update,
                        Millis timeout = Millis(0)) const {
    using K = typename engine::PairTraits<T>::Key;
    using V = typename engine::PairTraits<T>::Value;
    return DStream<std::pair<K, S>>(std::make_shared<StateUpdateNode<K, V, S>>(
        node_, store, std::move(ns), std::move(update), timeout));
  }

  // Runs fn(rdd, info) for every batch: the output operation.
  void ForeachRdd(std::function<Status(const engine::Rdd<T>&, BatchInfo*)> fn) const {
    auto node = node_;
    ssc().AddOutput([node, fn = std::move(fn)](BatchInfo* info) -> Status {
      ASSIGN_OR_RETURN(auto rdd, node->GetOrCompute(info->progress.batch_time));
      if (!rdd) return Status::OK();
      info->progress.lineage = rdd->DebugString();
      return fn(*rdd, info);
    });
  }

 private:
  std::shared_ptr<DStreamNode<T>> node_;
};

// A stream of fixed batches (see QueueInputNode); returns the stream and the node to push to.
template <typename T>
DStream<T> QueueStream(StreamingContext& ssc, std::deque<std::vector<T>> batches,
                       int partitions = 2) {
  return DStream<T>(std::make_shared<QueueInputNode<T>>(&ssc, std::move(batches), partitions));
}

}  // namespace runnel::streaming
