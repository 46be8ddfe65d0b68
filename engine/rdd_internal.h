// The typed RDD nodes behind Rdd<T> (rdd.h). Not a public header: use rdd.h.
//
// Every node produces a partition by pushing records into an Emit, a FunctionRef that returns
// false to stop early. A chain of narrow nodes is therefore one pass per partition with no
// intermediate collections: Map(f).Filter(g).Take(5) calls f and g on about 5 records.
// Persisted and checkpointed nodes are served from the block manager or checkpoint files
// by RddNode::Iterate before Compute is ever called.
//
// Thread safety: Iterate/Compute are called concurrently for different partitions; user
// functions are called through a const reference and must be safe to call concurrently.
#pragma once

#include <algorithm>
#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/unordered/unordered_flat_map.hpp>

#include "common/file_util.h"
#include "engine/context.h"
#include "engine/function_ref.h"
#include "engine/hash.h"
#include "engine/rdd_base.h"
#include "engine/scheduler.h"
#include "engine/serde.h"
#include "engine/task_context.h"

namespace runnel::engine {

template <typename T>
using Emit = FunctionRef<bool(T&&)>;

template <typename T>
concept Serializable = requires(const T& v, std::string* out, std::string_view* in, T* t) {
  Serde<T>::Write(v, out);
  Serde<T>::Read(in, t);
  Serde<T>::MemorySize(v);
};

// Stands for the key and value types of an RDD that does not hold pairs, so the pair-only
// methods of Rdd<T> can be declared (never called) for every T.
struct NotAPair {};

template <typename T>
struct PairTraits {
  static constexpr bool kIsPair = false;
  using Key = NotAPair;
  using Value = NotAPair;
};
template <typename A, typename B>
struct PairTraits<std::pair<A, B>> {
  static constexpr bool kIsPair = true;
  using Key = A;
  using Value = B;
};
template <typename T>
concept PairType = PairTraits<T>::kIsPair;

template <typename K, typename V>
using HashMap = boost::unordered_flat_map<K, V, KeyHash<K>>;

template <typename T>
class RddNode : public RddNodeBase {
 public:
  using RddNodeBase::RddNodeBase;

  // Produces partition `p` into `emit`: from checkpoint files, from the cache, or by Compute.
  Status Iterate(int p, TaskContext& tc, Emit<T> emit) {
    if (std::vector<std::string> files = checkpoint_files(); !files.empty()) {
      return ReadCheckpoint(files[p], tc, emit);
    }
    if (storage_level() != StorageLevel::kNone) return IterateCached(p, tc, emit);
    return Compute(p, tc, emit);
  }

 protected:
  virtual Status Compute(int p, TaskContext& tc, Emit<T> emit) = 0;

 private:
  static Status EmitCopies(const std::vector<T>& values, TaskContext& tc, Emit<T> emit) {
    for (const T& v : values) {
      ++tc.metrics().records_in;
      T copy = v;
      if (!emit(std::move(copy))) break;
    }
    return Status::OK();
  }

  static Status EmitMoved(std::vector<T>& values, TaskContext& tc, Emit<T> emit) {
    for (T& v : values) {
      ++tc.metrics().records_in;
      if (!emit(std::move(v))) break;
    }
    return Status::OK();
  }

  Status ReadCheckpoint(const std::string& file, TaskContext& tc, Emit<T> emit) {
    if constexpr (Serializable<T>) {
      ASSIGN_OR_RETURN(std::string bytes, ReadFile(file));
      std::vector<T> values;
      if (!DeserializeAll(bytes, &values)) {
        return Status::Corruption(fmt::format("checkpoint file {} is malformed", file));
      }
      return EmitMoved(values, tc, emit);
    } else {
      return Status::NotImplemented("checkpointing this RDD needs a Serde for its element type");
    }
  }

  Status IterateCached(int p, TaskContext& tc, Emit<T> emit) {
    if constexpr (Serializable<T>) {
      BlockManager& bm = context().block_manager();
      const BlockId id{this->id(), p};
      if (auto found = bm.Get(id)) {
        if (found->object) {
          return EmitCopies(*std::static_pointer_cast<const std::vector<T>>(found->object), tc,
                            emit);
        }
        std::vector<T> values;
        if (!DeserializeAll(found->bytes, &values)) {
          return Status::Corruption(
              fmt::format("block rdd {} partition {} is malformed", id.rdd_id, id.partition));
        }
        return EmitMoved(values, tc, emit);
      }
      // Not cached: compute the whole partition, cache it, then serve it.
      auto values = std::make_shared<std::vector<T>>();
      RETURN_NOT_OK(Compute(p, tc, [&](T&& v) {
        values->push_back(std::move(v));
        return true;
      }));
      BlockManager::PutRequest put;
      put.id = id;
      put.memory_bytes = static_cast<int64_t>(Serde<std::vector<T>>::MemorySize(*values));
      put.level = storage_level();
      put.priority = storage_priority();
      put.serialize = [](const void* object) {
        return SerializeAll(*static_cast<const std::vector<T>*>(object));
      };
      put.object = values;
      RETURN_NOT_OK(bm.Put(std::move(put)));
      return EmitCopies(*values, tc, emit);
    } else {
      return Status::NotImplemented("persisting this RDD needs a Serde for its element type");
    }
  }
};

// ---- Sources ----------------------------------------------------------------------------

template <typename T>
class ParallelizeNode final : public RddNode<T> {
 public:
  ParallelizeNode(Context* ctx, std::shared_ptr<const std::vector<T>> data, int slices)
      : RddNode<T>(ctx, "parallelize", slices, {}, std::nullopt), data_(std::move(data)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<T> emit) override {
    const size_t n = data_->size();
    const size_t slices = static_cast<size_t>(this->num_partitions());
    const size_t begin = n * static_cast<size_t>(p) / slices;
    const size_t end = n * static_cast<size_t>(p + 1) / slices;
    for (size_t i = begin; i < end; ++i) {
      ++tc.metrics().records_in;
      T copy = (*data_)[i];
      if (!emit(std::move(copy))) break;
    }
    return Status::OK();
  }

 private:
  const std::shared_ptr<const std::vector<T>> data_;
};

// A source-defined partition function (the Kafka RDD reads one offset range per partition).
template <typename T>
class SourceNode final : public RddNode<T> {
 public:
  using ComputeFn = std::function<Status(int partition, TaskContext& tc, Emit<T> emit)>;
  SourceNode(Context* ctx, std::string name, int partitions, ComputeFn fn)
      : RddNode<T>(ctx, std::move(name), partitions, {}, std::nullopt), fn_(std::move(fn)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<T> emit) override { return fn_(p, tc, emit); }

 private:
  const ComputeFn fn_;
};

// ---- Narrow transformations ------------------------------------------------------------

template <typename T>
std::vector<Dependency> OneToOne(const std::shared_ptr<RddNode<T>>& parent) {
  return {Dependency{Dependency::Kind::kOneToOne, parent, nullptr}};
}

template <typename T, typename U, typename F>
class MapNode final : public RddNode<U> {
 public:
  MapNode(std::shared_ptr<RddNode<T>> parent, F f, std::string name,
          std::optional<Partitioner> partitioner)
      : RddNode<U>(&parent->context(), std::move(name), parent->num_partitions(), OneToOne(parent),
                   partitioner),
        parent_(std::move(parent)),
        f_(std::move(f)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<U> emit) override {
    const F& f = f_;
    return parent_->Iterate(p, tc, [&](T&& v) { return emit(std::invoke(f, std::move(v))); });
  }

 private:
  const std::shared_ptr<RddNode<T>> parent_;
  const F f_;
};

template <typename T, typename F>
class FilterNode final : public RddNode<T> {
 public:
  FilterNode(std::shared_ptr<RddNode<T>> parent, F f)
      : RddNode<T>(&parent->context(), "filter", parent->num_partitions(), OneToOne(parent),
                   parent->partitioner()),
        parent_(std::move(parent)),
        f_(std::move(f)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<T> emit) override {
    const F& f = f_;
    return parent_->Iterate(p, tc, [&](T&& v) {
      return std::invoke(f, static_cast<const T&>(v)) ? emit(std::move(v)) : true;
    });
  }

 private:
  const std::shared_ptr<RddNode<T>> parent_;
  const F f_;
};

template <typename T, typename U, typename F>
class FlatMapNode final : public RddNode<U> {
 public:
  FlatMapNode(std::shared_ptr<RddNode<T>> parent, F f, std::string name,
              std::optional<Partitioner> partitioner)
      : RddNode<U>(&parent->context(), std::move(name), parent->num_partitions(), OneToOne(parent),
                   partitioner),
        parent_(std::move(parent)),
        f_(std::move(f)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<U> emit) override {
    const F& f = f_;
    return parent_->Iterate(p, tc, [&](T&& v) {
      for (auto&& out : std::invoke(f, std::move(v))) {
        if (!emit(U(std::move(out)))) return false;
      }
      return true;
    });
  }

 private:
  const std::shared_ptr<RddNode<T>> parent_;
  const F f_;
};

// f(partition index, all records of the partition) -> the output records.
template <typename T, typename U, typename F>
class MapPartitionsNode final : public RddNode<U> {
 public:
  MapPartitionsNode(std::shared_ptr<RddNode<T>> parent, F f, std::string name,
                    std::optional<Partitioner> partitioner)
      : RddNode<U>(&parent->context(), std::move(name), parent->num_partitions(), OneToOne(parent),
                   partitioner),
        parent_(std::move(parent)),
        f_(std::move(f)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<U> emit) override {
    std::vector<T> input;
    RETURN_NOT_OK(parent_->Iterate(p, tc, [&](T&& v) {
      input.push_back(std::move(v));
      return true;
    }));
    std::vector<U> output = std::invoke(f_, p, std::move(input));
    for (U& u : output) {
      if (!emit(std::move(u))) break;
    }
    return Status::OK();
  }

 private:
  const std::shared_ptr<RddNode<T>> parent_;
  const F f_;
};

template <typename T>
class UnionNode final : public RddNode<T> {
 public:
  explicit UnionNode(std::vector<std::shared_ptr<RddNode<T>>> parents)
      : RddNode<T>(&parents.front()->context(), "union", TotalPartitions(parents),
                   Dependencies(parents), std::nullopt),
        parents_(std::move(parents)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<T> emit) override {
    for (const auto& parent : parents_) {
      if (p < parent->num_partitions()) return parent->Iterate(p, tc, emit);
      p -= parent->num_partitions();
    }
    return Status::OutOfRange("union partition out of range");
  }

 private:
  static int TotalPartitions(const std::vector<std::shared_ptr<RddNode<T>>>& parents) {
    int n = 0;
    for (const auto& p : parents) n += p->num_partitions();
    return n;
  }
  static std::vector<Dependency> Dependencies(
      const std::vector<std::shared_ptr<RddNode<T>>>& parents) {
    std::vector<Dependency> deps;
    for (const auto& p : parents) deps.push_back({Dependency::Kind::kRange, p, nullptr});
    return deps;
  }

  const std::vector<std::shared_ptr<RddNode<T>>> parents_;
};

// Fewer partitions without a shuffle: child partition i reads a contiguous range of parents.
template <typename T>
class CoalesceNode final : public RddNode<T> {
 public:
  CoalesceNode(std::shared_ptr<RddNode<T>> parent, int partitions)
      : RddNode<T>(&parent->context(), "coalesce", partitions,
                   {Dependency{Dependency::Kind::kRange, parent, nullptr}}, std::nullopt),
        parent_(std::move(parent)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<T> emit) override {
    const int64_t parents = parent_->num_partitions();
    const int64_t n = this->num_partitions();
    bool stopped = false;
    for (int64_t q = parents * p / n; q < parents * (p + 1) / n && !stopped; ++q) {
      RETURN_NOT_OK(parent_->Iterate(static_cast<int>(q), tc, [&](T&& v) {
        stopped = !emit(std::move(v));
        return !stopped;
      }));
    }
    return Status::OK();
  }

 private:
  const std::shared_ptr<RddNode<T>> parent_;
};

// ---- Shuffles ----------------------------------------------------------------------------

// How values of a key combine: C create(V), C merge_value(C, V), C merge_combiners(C, C).
// The three are template parameters so the per-record calls inline into the shuffle loops.
template <typename V, typename C, typename Create, typename MergeValue, typename MergeCombiners>
struct Aggregator {
  Create create;
  MergeValue merge_value;
  MergeCombiners merge_combiners;
};

// The aggregator of shuffles that move records as they are (partitionBy, repartition, sort).
// Never called (such shuffles have no aggregator); it only makes the types complete.
template <typename V>
struct KeepFirst {
  V operator()(V v) const { return v; }
  V operator()(V a, V) const { return a; }
};
template <typename V>
using NoAggregator = Aggregator<V, V, KeepFirst<V>, KeepFirst<V>, KeepFirst<V>>;

// Folds `x` into key k's row of `table` (make(x) for a new key, fold(row, x) otherwise) and
// returns how much the table's memory grew: Serde::MemorySize of the key and row, plus the slot.
// What the map and reduce sides of a shuffle count against the task's memory share.
template <typename K, typename C, typename X, typename Make, typename Fold>
int64_t FoldInto(HashMap<K, C>* table, K&& k, X&& x, const Make& make, const Fold& fold) {
  auto it = table->find(k);
  if (it == table->end()) {
    const int64_t key_bytes = static_cast<int64_t>(Serde<K>::MemorySize(k));
    it = table->emplace(std::move(k), make(std::forward<X>(x))).first;
    return key_bytes +
           static_cast<int64_t>(Serde<C>::MemorySize(it->second) + sizeof(std::pair<K, C>));
  }
  const size_t before = Serde<C>::MemorySize(it->second);
  it->second = fold(std::move(it->second), std::forward<X>(x));
  return static_cast<int64_t>(Serde<C>::MemorySize(it->second)) - static_cast<int64_t>(before);
}

template <typename K, typename V, typename C, typename Agg>
class ShuffleDependency final : public ShuffleDependencyBase {
 public:
  using PartitionFn = std::function<int(const K&)>;

  // `aggregator` empty: records are moved as they are (partitionBy, repartition, sort).
  ShuffleDependency(std::shared_ptr<RddNode<std::pair<K, V>>> parent, Partitioner partitioner,
                    PartitionFn partition_fn, std::optional<Agg> aggregator, bool map_side_combine)
      : ShuffleDependencyBase(&parent->context(), parent, partitioner,
                              map_side_combine && aggregator.has_value()),
        parent_(std::move(parent)),
        partition_fn_(std::move(partition_fn)),
        aggregator_(std::move(aggregator)) {}

  const std::optional<Agg>& aggregator() const { return aggregator_; }

  Status RunMapTask(int map_partition, TaskContext& tc) override {
    MapOutputBuilder out(this, map_partition, tc);
    // Records (or combined rows) are serialized into buckets as they come; the buckets spill
    // as a run when they pass half the task's memory share, the combine table is flushed into
    // them when it passes the other half (a key may then reach a reducer more than once).
    const int64_t half_share = context_->task_memory_bytes() / 2;
    int64_t records = 0;
    auto write = [&](const K& k, const auto& x) {
      std::string& bucket = out.bucket(partition_fn_(k));
      const size_t before = bucket.size();
      Serde<K>::Write(k, &bucket);
      Serde<std::decay_t<decltype(x)>>::Write(x, &bucket);
      out.Added(bucket.size() - before);
      ++records;
    };
    Status spilled;
    if (map_side_combine()) {
      const Agg& agg = *aggregator_;
      HashMap<K, C> combined;
      int64_t table_bytes = 0;
      auto flush = [&] {
        for (const auto& [k, c] : combined) write(k, c);
        combined.clear();
        table_bytes = 0;
        return out.SpillIfOver(half_share);
      };
      auto create = [&agg](V&& v) { return agg.create(std::move(v)); };
      auto merge = [&agg](C&& c, V&& v) { return agg.merge_value(std::move(c), std::move(v)); };
      RETURN_NOT_OK(parent_->Iterate(map_partition, tc, [&](std::pair<K, V>&& kv) {
        table_bytes +=
            FoldInto(&combined, std::move(kv.first), std::move(kv.second), create, merge);
        if (table_bytes > half_share) spilled = flush();
        return spilled.ok();
      }));
      RETURN_NOT_OK(spilled);
      for (const auto& [k, c] : combined) write(k, c);
    } else {
      RETURN_NOT_OK(parent_->Iterate(map_partition, tc, [&](std::pair<K, V>&& kv) {
        write(kv.first, kv.second);
        spilled = out.SpillIfOver(half_share);
        return spilled.ok();
      }));
      RETURN_NOT_OK(spilled);
    }
    tc.metrics().records_out += records;
    return out.Finish();
  }

 private:
  const std::shared_ptr<RddNode<std::pair<K, V>>> parent_;
  const PartitionFn partition_fn_;
  const std::optional<Agg> aggregator_;
};

// The reduce side of a shuffle: bucket p of every map output, merged by key when the
// shuffle has an aggregator, streamed through as they are otherwise.
//
// The merge table spills when it passes the task's memory share (Context::task_memory_bytes):
// its rows are sorted by key and written as a run to a spill file, and the runs and the
// table's remainder are merged back in key order at the end. Only ordered keys spill (a key
// type without operator< keeps its table in memory). With `key_ordered` every partition's
// output is in key order, spilled or not.
template <typename K, typename V, typename C, typename Agg>
class ShuffledNode final : public RddNode<std::pair<K, C>> {
 public:
  ShuffledNode(std::shared_ptr<ShuffleDependency<K, V, C, Agg>> dep, std::string name,
               bool key_ordered = false)
      : RddNode<std::pair<K, C>>(
            &dep->parent()->context(), std::move(name), dep->num_reduce_partitions(),
            {Dependency{Dependency::Kind::kShuffle, dep->parent(), dep}}, dep->partitioner()),
        dep_(std::move(dep)),
        key_ordered_(key_ordered) {}

  const std::shared_ptr<ShuffleDependency<K, V, C, Agg>>& shuffle() const { return dep_; }

 protected:
  static constexpr bool kCanSpill = std::totally_ordered<K>;

  Status Compute(int p, TaskContext& tc, Emit<std::pair<K, C>> emit) override {
    if (!dep_->aggregator()) {
      return ForEachRecord<V>(p, tc, [&](K&& k, V&& v) {
        if constexpr (std::is_same_v<V, C>) {
          return emit(std::pair<K, C>(std::move(k), std::move(v)));
        } else {
          return false;  // unreachable: shuffles without an aggregator have C == V
        }
      });
    }
    const Agg& agg = *dep_->aggregator();
    const int64_t share = this->context().task_memory_bytes();
    HashMap<K, C> merged;
    int64_t table_bytes = 0;
    Runs runs;
    Status spilled;
    auto add = [&](K&& k, auto&& x, const auto& make, const auto& fold) {
      table_bytes += FoldInto(&merged, std::move(k), std::move(x), make, fold);
      if constexpr (kCanSpill) {
        if (table_bytes > share) {
          spilled = SpillRun(&merged, &runs, tc);
          table_bytes = 0;
        }
      }
      return spilled.ok();
    };
    auto keep = [](C&& c) { return std::move(c); };
    auto create = [&agg](V&& v) { return agg.create(std::move(v)); };
    Status st;
    if (dep_->map_side_combine()) {
      st = ForEachRecord<C>(p, tc, [&](K&& k, C&& c) {
        return add(std::move(k), std::move(c), keep, [&agg](C&& a, C&& b) {
          return agg.merge_combiners(std::move(a), std::move(b));
        });
      });
    } else {
      st = ForEachRecord<V>(p, tc, [&](K&& k, V&& v) {
        return add(std::move(k), std::move(v), create,
                   [&agg](C&& a, V&& b) { return agg.merge_value(std::move(a), std::move(b)); });
      });
    }
    RETURN_NOT_OK(st);
    RETURN_NOT_OK(spilled);
    if constexpr (kCanSpill) {
      if (!runs.spans.empty()) return MergeRuns(std::move(merged), runs, agg, emit);
      if (key_ordered_) {
        std::vector<std::pair<K, C>> rows = Drain(&merged);
        for (auto& row : rows) {
          if (!emit(std::move(row))) break;
        }
        return Status::OK();
      }
    }
    for (auto& [k, c] : merged) {
      if (!emit(std::pair<K, C>(k, std::move(c)))) break;
    }
    return Status::OK();
  }

 private:
  // Sorted runs of (K, C) in one spill file.
  struct Runs {
    std::shared_ptr<SpillFile> file;
    std::vector<std::pair<int64_t, int64_t>> spans;  // (offset, length) per run
  };

  // The table's rows sorted by key; the table is left empty.
  static std::vector<std::pair<K, C>> Drain(HashMap<K, C>* table) {
    std::vector<std::pair<K, C>> rows;
    rows.reserve(table->size());
    // The keys move out too: the table is destroyed right after, never probed again.
    for (auto& [k, c] : *table) rows.emplace_back(std::move(const_cast<K&>(k)), std::move(c));
    HashMap<K, C>().swap(*table);
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    return rows;
  }

  Status SpillRun(HashMap<K, C>* table, Runs* runs, TaskContext& tc) {
    if (!runs->file) {
      ASSIGN_OR_RETURN(runs->file,
                       SpillFile::Create(this->context().spill_dir(),
                                         fmt::format("stage {} ({}): merge of partition {}",
                                                     tc.stage_id(), this->name(), tc.partition())));
    }
    const int64_t begin = runs->file->size();
    std::string buffer;
    for (const auto& [k, c] : Drain(table)) {
      Serde<K>::Write(k, &buffer);
      Serde<C>::Write(c, &buffer);
      if (buffer.size() >= (size_t{256} << 10)) {
        RETURN_NOT_OK(runs->file->Append(buffer));
        buffer.clear();
      }
    }
    RETURN_NOT_OK(runs->file->Append(buffer));
    RETURN_NOT_OK(runs->file->Finish());
    runs->spans.emplace_back(begin, runs->file->size() - begin);
    tc.metrics().spill_bytes += runs->file->size() - begin;
    return Status::OK();
  }

  // Merges the sorted runs and the table's remainder in key order into `emit`.
  Status MergeRuns(HashMap<K, C> rest, const Runs& runs, const Agg& agg,
                   Emit<std::pair<K, C>> emit) {
    std::vector<std::pair<K, C>> tail = Drain(&rest);
    // Cursor i < runs: a run; cursor `runs`: the table's remainder.
    struct Cursor {
      std::optional<SpillReader> reader;
      size_t next = 0;  // in `tail`
      std::pair<K, C> row;
    };
    const size_t n = runs.spans.size();
    const size_t chunk =
        std::clamp<size_t>(static_cast<size_t>(this->context().task_memory_bytes()) / (2 * (n + 1)),
                           16 << 10, 256 << 10);
    std::vector<Cursor> cursors(n + 1);
    auto advance = [&](size_t i) -> Result<bool> {
      Cursor& c = cursors[i];
      if (!c.reader) {
        if (c.next == tail.size()) return false;
        c.row = std::move(tail[c.next++]);
        return true;
      }
      return c.reader->Next([&](std::string_view* in) {
        c.row = {};
        return Serde<K>::Read(in, &c.row.first) && Serde<C>::Read(in, &c.row.second);
      });
    };
    auto later = [&](size_t a, size_t b) { return cursors[b].row.first < cursors[a].row.first; };
    std::vector<size_t> heap;
    for (size_t i = 0; i <= n; ++i) {
      if (i < n)
        cursors[i].reader.emplace(runs.file, runs.spans[i].first, runs.spans[i].second, chunk);
      ASSIGN_OR_RETURN(bool has, advance(i));
      if (has) heap.push_back(i);
    }
    std::make_heap(heap.begin(), heap.end(), later);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const size_t first = heap.back();
      std::pair<K, C> row = std::move(cursors[first].row);
      ASSIGN_OR_RETURN(bool has, advance(first));
      if (has) {
        std::push_heap(heap.begin(), heap.end(), later);
      } else {
        heap.pop_back();
      }
      // Every other cursor at the same key folds into this row.
      while (!heap.empty() && !(row.first < cursors[heap.front()].row.first)) {
        std::pop_heap(heap.begin(), heap.end(), later);
        const size_t i = heap.back();
        row.second = agg.merge_combiners(std::move(row.second), std::move(cursors[i].row.second));
        ASSIGN_OR_RETURN(bool more, advance(i));
        if (more) {
          std::push_heap(heap.begin(), heap.end(), later);
        } else {
          heap.pop_back();
        }
      }
      if (!emit(std::move(row))) break;
    }
    return Status::OK();
  }

  // Parses bucket p of every map output as (K, X) records and calls fn(k, x) on each until
  // it returns false. A missing map output is a fetch failure.
  template <typename X, typename Fn>
  Status ForEachRecord(int p, TaskContext& tc, Fn&& fn) {
    ShuffleStore& store = this->context().shuffle_store();
    const int maps = dep_->parent()->num_partitions();
    for (int m = 0; m < maps; ++m) {
      std::shared_ptr<const MapOutput> output = store.Get(dep_->shuffle_id(), m);
      if (!output) return FetchFailure(tc, dep_->shuffle_id(), m);
      auto malformed = [&] {
        return Status::Corruption(
            fmt::format("shuffle {} map output {} is malformed", dep_->shuffle_id(), m));
      };
      if (!output->file) {
        std::string_view bytes = output->buckets[static_cast<size_t>(p)];
        tc.metrics().shuffle_read_bytes += static_cast<int64_t>(bytes.size());
        while (!bytes.empty()) {
          K k{};
          X x{};
          if (!Serde<K>::Read(&bytes, &k) || !Serde<X>::Read(&bytes, &x)) return malformed();
          ++tc.metrics().records_in;
          if (!fn(std::move(k), std::move(x))) return Status::OK();
        }
        continue;
      }
      for (const auto& run : output->runs) {
        const auto [offset, length] = run[static_cast<size_t>(p)];
        tc.metrics().shuffle_read_bytes += length;
        SpillReader reader(output->file, offset, length);
        for (;;) {
          K k{};
          X x{};
          Result<bool> got = reader.Next([&](std::string_view* in) {
            k = K{};
            x = X{};
            return Serde<K>::Read(in, &k) && Serde<X>::Read(in, &x);
          });
          if (!got.ok())
            return got.status().WithContext(fmt::format("shuffle {}", dep_->shuffle_id()));
          if (!*got) break;
          ++tc.metrics().records_in;
          if (!fn(std::move(k), std::move(x))) return Status::OK();
        }
      }
    }
    return Status::OK();
  }

  const std::shared_ptr<ShuffleDependency<K, V, C, Agg>> dep_;
  const bool key_ordered_;
};

// Groups two co-partitioned pair RDDs by key: partition p of each parent holds the same keys.
template <typename K, typename V, typename W>
class CoGroupNode final : public RddNode<std::pair<K, std::pair<std::vector<V>, std::vector<W>>>> {
 public:
  using Out = std::pair<K, std::pair<std::vector<V>, std::vector<W>>>;

  CoGroupNode(std::shared_ptr<RddNode<std::pair<K, V>>> left,
              std::shared_ptr<RddNode<std::pair<K, W>>> right, Partitioner partitioner)
      : RddNode<Out>(&left->context(), "cogroup", partitioner.num_partitions,
                     {Dependency{Dependency::Kind::kOneToOne, left, nullptr},
                      Dependency{Dependency::Kind::kOneToOne, right, nullptr}},
                     partitioner),
        left_(std::move(left)),
        right_(std::move(right)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<Out> emit) override {
    HashMap<K, std::pair<std::vector<V>, std::vector<W>>> groups;
    RETURN_NOT_OK(left_->Iterate(p, tc, [&](std::pair<K, V>&& kv) {
      groups[std::move(kv.first)].first.push_back(std::move(kv.second));
      return true;
    }));
    RETURN_NOT_OK(right_->Iterate(p, tc, [&](std::pair<K, W>&& kw) {
      groups[std::move(kw.first)].second.push_back(std::move(kw.second));
      return true;
    }));
    for (auto& [k, g] : groups) {
      if (!emit(Out(k, std::move(g)))) break;
    }
    return Status::OK();
  }

 private:
  const std::shared_ptr<RddNode<std::pair<K, V>>> left_;
  const std::shared_ptr<RddNode<std::pair<K, W>>> right_;
};

// ---- Text output ----------------------------------------------------------------------------

// How SaveAsTextFile writes a record: strings as they are, numbers in decimal, pairs as
// "key<TAB>value".
template <typename T>
void AppendText(const T& v, std::string* out) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out->append(std::string_view(v));
  } else if constexpr (PairType<T>) {
    AppendText(v.first, out);
    out->push_back('\t');
    AppendText(v.second, out);
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", v);
  }
}

}  // namespace runnel::engine
