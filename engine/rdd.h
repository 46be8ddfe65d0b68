// Rdd<T>: a read-only, partitioned dataset with lineage (Zaharia et al., NSDI 2012).
//
// An Rdd is a cheap handle (a shared pointer to its node). Transformations are lazy: they
// return a new Rdd whose lineage points at its parents. Actions (Collect, Count, ...) run a
// job on the Context's scheduler and block until it is done. Narrow transformations are
// pipelined into one pass per partition; wide ones (ReduceByKey, GroupByKey, Join, ...) split
// the job into stages at a hash-partitioned shuffle with map-side combine where it applies.
//
//   ASSIGN_OR_RETURN(auto ctx, Context::Make({.workers = 2}));
//   auto counts = ctx->Parallelize(words).Map([](std::string w) { return std::pair(w, 1); })
//                     .ReduceByKey([](int a, int b) { return a + b; });
//   ASSIGN_OR_RETURN(std::vector<std::pair<std::string, int>> out, counts.Collect());
//
// Functions passed to transformations run on worker threads, concurrently for different
// partitions, through a const reference: they must not mutate shared state (use an
// Accumulator for that). They may throw; a throwing task fails and is retried.
//
// Thread safety: an Rdd handle may be shared between threads; actions may run concurrently.
// Actions must not be called from inside a task.
#pragma once

#include <algorithm>
#include <random>

#include "engine/rdd_internal.h"

namespace runnel::engine {

// How CombineByKey shuffles and merges.
struct CombineOptions {
  int partitions = 0;  // 0: the context's default parallelism
  bool map_side_combine = true;
  // Each output partition in key order (the key type must be ordered), spilled or not.
  bool key_ordered = false;
  std::string name = "combineByKey";
};

template <typename T>
class Rdd {
 public:
  using value_type = T;

  explicit Rdd(std::shared_ptr<RddNode<T>> node) : node_(std::move(node)) {}

  int id() const { return node_->id(); }
  int num_partitions() const { return node_->num_partitions(); }
  Context& context() const { return node_->context(); }
  const std::shared_ptr<RddNode<T>>& node() const { return node_; }
  const std::optional<Partitioner>& partitioner() const { return node_->partitioner(); }

  // ---- Narrow transformations (lazy, pipelined) ----

  template <typename F>
  auto Map(F f, std::string name = "map") const {
    using U = std::decay_t<std::invoke_result_t<const F&, T&&>>;
    return Rdd<U>(
        std::make_shared<MapNode<T, U, F>>(node_, std::move(f), std::move(name), std::nullopt));
  }

  // Keeps the records for which f(record) is true.
  template <typename F>
  Rdd<T> Filter(F f) const {
    return Rdd<T>(std::make_shared<FilterNode<T, F>>(node_, std::move(f)));
  }

  // f(record) returns a range (vector, ...); its elements are the output.
  template <typename F>
  auto FlatMap(F f) const {
    using R = std::invoke_result_t<const F&, T&&>;
    using U = std::decay_t<std::ranges::range_value_t<std::remove_reference_t<R>>>;
    return Rdd<U>(
        std::make_shared<FlatMapNode<T, U, F>>(node_, std::move(f), "flatMap", std::nullopt));
  }

  // f(std::vector<T> partition) -> std::vector<U>: one call per partition.
  template <typename F>
  auto MapPartitions(F f) const {
    auto g = [f = std::move(f)](int, std::vector<T>&& in) { return f(std::move(in)); };
    using U = typename std::invoke_result_t<const F&, std::vector<T>&&>::value_type;
    return Rdd<U>(std::make_shared<MapPartitionsNode<T, U, decltype(g)>>(
        node_, std::move(g), "mapPartitions", std::nullopt));
  }

  // f(int partition_index, std::vector<T> partition) -> std::vector<U>.
  template <typename F>
  auto MapPartitionsWithIndex(F f) const {
    using U = typename std::invoke_result_t<const F&, int, std::vector<T>&&>::value_type;
    return Rdd<U>(std::make_shared<MapPartitionsNode<T, U, F>>(
        node_, std::move(f), "mapPartitionsWithIndex", std::nullopt));
  }

  // The partitions of this RDD followed by those of `others`.
  Rdd<T> Union(const std::vector<Rdd<T>>& others) const {
    std::vector<std::shared_ptr<RddNode<T>>> parents = {node_};
    for (const auto& o : others) parents.push_back(o.node_);
    return Rdd<T>(std::make_shared<UnionNode<T>>(std::move(parents)));
  }
  Rdd<T> Union(const Rdd<T>& other) const { return Union(std::vector<Rdd<T>>{other}); }
  // The union of `rdds` in order; nullopt when there is none.
  static std::optional<Rdd<T>> UnionAll(const std::vector<Rdd<T>>& rdds) {
    if (rdds.empty()) return std::nullopt;
    return rdds.front().Union(std::vector<Rdd<T>>(rdds.begin() + 1, rdds.end()));
  }

  // (f(record), record) pairs.
  template <typename F>
  auto KeyBy(F f) const {
    return Map(
        [f = std::move(f)](T&& v) {
          auto key = f(static_cast<const T&>(v));
          return std::pair<decltype(key), T>(std::move(key), std::move(v));
        },
        "keyBy");
  }

  // At most `partitions` partitions, without a shuffle.
  Rdd<T> Coalesce(int partitions) const {
    if (partitions <= 0 || partitions >= num_partitions()) return *this;
    return Rdd<T>(std::make_shared<CoalesceNode<T>>(node_, partitions));
  }

  // ---- Wide transformations (a shuffle) ----

  // The distinct records (T needs KeyHash, Serde and ==).
  Rdd<T> Distinct(int partitions = 0) const {
    return Map([](T&& v) { return std::pair<T, char>(std::move(v), 0); }, "distinct")
        .ReduceByKey([](char a, char) { return a; }, partitions)
        .Keys();
  }

  // Exactly `partitions` partitions of about equal size, through a shuffle.
  Rdd<T> Repartition(int partitions) const {
    auto keyed = MapPartitionsWithIndex([](int index, std::vector<T>&& in) {
      std::vector<std::pair<int64_t, T>> out;
      out.reserve(in.size());
      int64_t i = int64_t{index} << 40;
      for (T& v : in) out.emplace_back(i++, std::move(v));
      return out;
    });
    return keyed.PartitionBy(partitions).Values();
  }

  // ---- Pair RDD transformations (T = std::pair<K, V>) ----

  auto Keys() const requires PairType<T> {
    return Map([](T&& kv) { return std::move(kv.first); }, "keys");
  }
  auto Values() const requires PairType<T> {
    return Map([](T&& kv) { return std::move(kv.second); }, "values");
  }

  // (k, f(v)); keeps the partitioner.
  template <typename F>
  auto MapValues(F f) const requires PairType<T> {
    using K = typename PairTraits<T>::Key;
    using U = std::decay_t<std::invoke_result_t<const F&, typename PairTraits<T>::Value&&>>;
    auto g = [f = std::move(f)](T&& kv) {
      return std::pair<K, U>(std::move(kv.first), f(std::move(kv.second)));
    };
    return Rdd<std::pair<K, U>>(std::make_shared<MapNode<T, std::pair<K, U>, decltype(g)>>(
        node_, std::move(g), "mapValues", partitioner()));
  }

  // Spark's combineByKey: C create(V), C merge_value(C, V), C merge_combiners(C, C).
  template <typename C, typename Create, typename MergeValue, typename MergeCombiners>
  Rdd<std::pair<typename PairTraits<T>::Key, C>> CombineByKey(
      Create create, MergeValue merge_value, MergeCombiners merge_combiners, int partitions = 0,
      bool map_side_combine = true, std::string name = "combineByKey") const requires PairType<T> {
    return CombineByKey<C>(std::move(create), std::move(merge_value), std::move(merge_combiners),
                           CombineOptions{.partitions = partitions,
                                          .map_side_combine = map_side_combine,
                                          .name = std::move(name)});
  }
  template <typename C, typename Create, typename MergeValue, typename MergeCombiners>
  Rdd<std::pair<typename PairTraits<T>::Key, C>> CombineByKey(
      Create create, MergeValue merge_value, MergeCombiners merge_combiners,
      CombineOptions options) const requires PairType<T> {
    using K = typename PairTraits<T>::Key;
    using V = typename PairTraits<T>::Value;
    using Agg = Aggregator<V, C, Create, MergeValue, MergeCombiners>;
    const Partitioner partitioner = HashPartitioner(options.partitions);
    auto dep = std::make_shared<ShuffleDependency<K, V, C, Agg>>(
        node_, partitioner, HashPartitionFn<K>(partitioner.num_partitions),
        Agg{std::move(create), std::move(merge_value), std::move(merge_combiners)},
        options.map_side_combine);
    return Rdd<std::pair<K, C>>(std::make_shared<ShuffledNode<K, V, C, Agg>>(
        std::move(dep), std::move(options.name), options.key_ordered));
  }

  // Merges the values of each key with an associative f(V, V) -> V, combining map-side.
  template <typename F>
  auto ReduceByKey(F f, int partitions = 0) const requires PairType<T> {
    using V = typename PairTraits<T>::Value;
    return CombineByKey<V>([](V v) { return v; }, f, f, partitions, true, "reduceByKey");
  }

  // Folds the values of each key into `zero` with seq(U, V), merging partials with comb(U, U).
  template <typename U, typename Seq, typename Comb>
  auto AggregateByKey(U zero, Seq seq, Comb comb, int partitions = 0) const requires PairType<T> {
    using V = typename PairTraits<T>::Value;
    auto create = [zero, seq](V v) { return seq(zero, std::move(v)); };
    return CombineByKey<U>(std::move(create), std::move(seq), std::move(comb), partitions, true,
                           "aggregateByKey");
  }

  // All values of each key (no map-side combine: it would not shrink anything).
  auto GroupByKey(int partitions = 0) const requires PairType<T> {
    using V = typename PairTraits<T>::Value;
    using C = std::vector<V>;
    return CombineByKey<C>([](V v) { return C{std::move(v)}; },
                           [](C c, V v) {
                             c.push_back(std::move(v));
                             return c;
                           },
                           [](C a, C b) {
                             a.insert(a.end(), std::make_move_iterator(b.begin()),
                                      std::make_move_iterator(b.end()));
                             return a;
                           },
                           partitions, /*map_side_combine=*/false, "groupByKey");
  }

  // Hash-partitions by key into `partitions`; a no-op when already partitioned that way.
  Rdd<T> PartitionBy(int partitions) const requires PairType<T> {
    const Partitioner partitioner = HashPartitioner(partitions);
    if (this->partitioner() == partitioner) return *this;
    using K = typename PairTraits<T>::Key;
    return Shuffle(partitioner, HashPartitionFn<K>(partitioner.num_partitions), "partitionBy");
  }

  // (k, (values of k here, values of k in other)) for every key of either.
  template <typename W>
  auto CoGroup(const Rdd<std::pair<typename PairTraits<T>::Key, W>>& other,
               int partitions = 0) const requires PairType<T> {
    using K = typename PairTraits<T>::Key;
    using V = typename PairTraits<T>::Value;
    // Reuse a parent's hash partitioning when there is one: that side needs no shuffle.
    Partitioner target = HashPartitioner(partitions);
    if (partitions <= 0) {
      if (IsHash(partitioner())) {
        target = *partitioner();
      } else if (IsHash(other.partitioner())) {
        target = *other.partitioner();
      }
    }
    Rdd<T> left = PartitionBy(target.num_partitions);
    auto right = other.PartitionBy(target.num_partitions);
    return Rdd<std::pair<K, std::pair<std::vector<V>, std::vector<W>>>>(
        std::make_shared<CoGroupNode<K, V, W>>(left.node(), right.node(), target));
  }

  // Inner join: (k, (v, w)) for every pair of values of a key present in both.
  template <typename W>
  auto Join(const Rdd<std::pair<typename PairTraits<T>::Key, W>>& other,
            int partitions = 0) const requires PairType<T> {
    using K = typename PairTraits<T>::Key;
    using V = typename PairTraits<T>::Value;
    using Out = std::pair<K, std::pair<V, W>>;
    auto grouped = CoGroup(other, partitions);
    auto expand = [](std::pair<K, std::pair<std::vector<V>, std::vector<W>>>&& g) {
      std::vector<Out> out;
      out.reserve(g.second.first.size() * g.second.second.size());
      for (const V& v : g.second.first) {
        for (const W& w : g.second.second) out.emplace_back(g.first, std::pair<V, W>(v, w));
      }
      return out;
    };
    using In = std::pair<K, std::pair<std::vector<V>, std::vector<W>>>;
    return Rdd<Out>(std::make_shared<FlatMapNode<In, Out, decltype(expand)>>(
        grouped.node(), std::move(expand), "join", grouped.partitioner()));
  }

  // Sorted by key across partitions (range-partitioned from a sample of the keys, then sorted
  // within each partition). Runs a sampling job now, hence the Result.
  Result<Rdd<T>> SortByKey(bool ascending = true, int partitions = 0) const requires PairType<T> {
    using K = typename PairTraits<T>::Key;
    const int n = partitions > 0 ? partitions : num_partitions();
    ASSIGN_OR_RETURN(std::vector<K> bounds, RangeBounds(n));
    auto partition_fn = [bounds = std::move(bounds), ascending, n](const K& k) {
      const int i =
          static_cast<int>(std::upper_bound(bounds.begin(), bounds.end(), k) - bounds.begin());
      return ascending ? i : n - 1 - i;
    };
    static std::atomic<int64_t> next_range_id{1};
    const Partitioner partitioner{Partitioner::Kind::kRange, n, next_range_id.fetch_add(1)};
    Rdd<T> shuffled = Shuffle(partitioner, std::move(partition_fn), "sortByKey");
    auto sorted = [ascending](int, std::vector<T>&& in) {
      std::stable_sort(in.begin(), in.end(), [ascending](const T& a, const T& b) {
        return ascending ? a.first < b.first : b.first < a.first;
      });
      return std::move(in);
    };
    return Rdd<T>(std::make_shared<MapPartitionsNode<T, T, decltype(sorted)>>(
        shuffled.node(), std::move(sorted), "sortByKey", partitioner));
  }

  // ---- Actions (run a job, block) ----

  Result<std::vector<T>> Collect() const {
    std::vector<std::vector<T>> parts(static_cast<size_t>(num_partitions()));
    RETURN_NOT_OK(RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      auto& part = parts[static_cast<size_t>(p)];
      part.clear();  // a retried attempt starts over
      return node_->Iterate(p, tc, [&](T&& v) {
        ++tc.metrics().records_out;
        part.push_back(std::move(v));
        return true;
      });
    }));
    return Concat(std::move(parts));
  }

  Result<int64_t> Count() const {
    std::vector<int64_t> counts(static_cast<size_t>(num_partitions()));
    RETURN_NOT_OK(RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      int64_t n = 0;
      RETURN_NOT_OK(node_->Iterate(p, tc, [&](T&&) {
        ++n;
        return true;
      }));
      counts[static_cast<size_t>(p)] = n;
      tc.metrics().records_out += n;
      return Status::OK();
    }));
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    return total;
  }

  // The first n records: scans partition 0 first, then 4x more partitions per round until
  // it has n. Within a partition it stops as soon as it has enough.
  Result<std::vector<T>> Take(size_t n) const {
    std::vector<T> out;
    int scanned = 0;
    int round = 1;
    while (out.size() < n && scanned < num_partitions()) {
      std::vector<int> partitions;
      for (int p = scanned; p < std::min(num_partitions(), scanned + round); ++p) {
        partitions.push_back(p);
      }
      const size_t want = n - out.size();
      std::vector<std::vector<T>> parts(partitions.size());
      RETURN_NOT_OK(RunOnPartitions(partitions, [&](int p, TaskContext& tc) {
        auto& part = parts[static_cast<size_t>(p - scanned)];
        part.clear();
        return node_->Iterate(p, tc, [&](T&& v) {
          part.push_back(std::move(v));
          return part.size() < want;
        });
      }));
      for (auto& part : parts) {
        for (T& v : part) {
          if (out.size() == n) break;
          out.push_back(std::move(v));
        }
      }
      scanned += round;
      round *= 4;
    }
    return out;
  }

  // Folds all records with an associative f; an empty RDD is an error.
  template <typename F>
  Result<T> Reduce(F f) const {
    std::vector<std::optional<T>> partials(static_cast<size_t>(num_partitions()));
    RETURN_NOT_OK(RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      std::optional<T> acc;
      RETURN_NOT_OK(node_->Iterate(p, tc, [&](T&& v) {
        acc = acc ? f(std::move(*acc), std::move(v)) : std::move(v);
        return true;
      }));
      partials[static_cast<size_t>(p)] = std::move(acc);
      return Status::OK();
    }));
    std::optional<T> result;
    for (auto& part : partials) {
      if (part) result = result ? f(std::move(*result), std::move(*part)) : std::move(*part);
    }
    if (!result) return Status::InvalidArgument("Reduce of an empty RDD");
    return std::move(*result);
  }

  // Folds all records into `zero` (used once per partition and once for the total).
  template <typename F>
  Result<T> Fold(T zero, F f) const {
    std::vector<T> partials(static_cast<size_t>(num_partitions()), zero);
    RETURN_NOT_OK(RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      T acc = zero;
      RETURN_NOT_OK(node_->Iterate(p, tc, [&](T&& v) {
        acc = f(std::move(acc), std::move(v));
        return true;
      }));
      partials[static_cast<size_t>(p)] = std::move(acc);
      return Status::OK();
    }));
    T result = std::move(zero);
    for (T& part : partials) result = f(std::move(result), std::move(part));
    return result;
  }

  // Calls f(record) on the workers for every record.
  template <typename F>
  Status Foreach(F f) const {
    return RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      return node_->Iterate(p, tc, [&](T&& v) {
        f(v);
        return true;
      });
    });
  }

  // Calls f(std::vector<T>& partition) on the workers, once per partition.
  template <typename F>
  Status ForeachPartition(F f) const {
    return RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      std::vector<T> part;
      RETURN_NOT_OK(node_->Iterate(p, tc, [&](T&& v) {
        part.push_back(std::move(v));
        return true;
      }));
      f(part);
      return Status::OK();
    });
  }

  // Writes `dir/part-NNNNN`, one line per record (see AppendText), each file through a
  // temporary name and a rename; then an empty `dir/_SUCCESS`.
  Status SaveAsTextFile(const std::string& dir) const {
    RETURN_NOT_OK(MakeDirs(dir));
    RETURN_NOT_OK(RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      std::string text;
      RETURN_NOT_OK(node_->Iterate(p, tc, [&](T&& v) {
        AppendText(v, &text);
        text.push_back('\n');
        ++tc.metrics().records_out;
        return true;
      }));
      return WriteFileAtomically(fmt::format("{}/part-{:05d}", dir, p), text);
    }));
    return WriteFileAtomically(dir + "/_SUCCESS", "");
  }

  // ---- Persistence and lineage ----

  // Keeps computed partitions in the block manager at `level`; higher `priority` is evicted
  // later. Takes effect from the next job that computes a partition.
  const Rdd<T>& Persist(StorageLevel level = StorageLevel::kMemoryOnly, int priority = 0) const {
    node_->SetStorage(level, priority);
    return *this;
  }
  const Rdd<T>& Cache() const { return Persist(StorageLevel::kMemoryOnly); }
  // Stops caching and drops the cached partitions.
  const Rdd<T>& Unpersist() const {
    node_->SetStorage(StorageLevel::kNone, 0);
    context().block_manager().RemoveRdd(id());
    return *this;
  }

  // Writes every partition to `dir` (default: the context's local dir) and cuts the lineage:
  // later jobs read the files instead of recomputing the parents. Runs a job now.
  Status Checkpoint(std::string dir = "") const {
    if (dir.empty()) dir = fmt::format("{}/checkpoints/rdd-{}", context().local_dir(), id());
    RETURN_NOT_OK(MakeDirs(dir));
    std::vector<std::string> files;
    for (int p = 0; p < num_partitions(); ++p) {
      files.push_back(fmt::format("{}/part-{:05d}", dir, p));
    }
    if constexpr (!Serializable<T>) {
      return Status::NotImplemented("checkpointing this RDD needs a Serde for its element type");
    } else {
      RETURN_NOT_OK(RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
        std::vector<T> values;
        RETURN_NOT_OK(node_->Iterate(p, tc, [&](T&& v) {
          values.push_back(std::move(v));
          return true;
        }));
        return WriteFileAtomically(files[static_cast<size_t>(p)], SerializeAll(values));
      }));
      node_->MarkCheckpointed(std::move(files));
      return Status::OK();
    }
  }

  // The lineage as indented text, stage boundaries marked "+-" (see rdd_base.h).
  std::string DebugString() const { return engine::DebugString(*node_); }

  // Runs `task` on `partitions` as one job (what every action does).
  Status RunOnPartitions(const std::vector<int>& partitions, const ResultTask& task) const {
    return context().scheduler().RunJob(*node_, partitions, task).status();
  }

 private:
  template <typename U>
  friend class Rdd;

  std::vector<int> AllPartitions() const {
    std::vector<int> all(static_cast<size_t>(num_partitions()));
    for (int p = 0; p < num_partitions(); ++p) all[static_cast<size_t>(p)] = p;
    return all;
  }

  template <typename U>
  static std::vector<U> Concat(std::vector<std::vector<U>>&& parts) {
    size_t total = 0;
    for (const auto& p : parts) total += p.size();
    std::vector<U> out;
    out.reserve(total);
    for (auto& p : parts) std::move(p.begin(), p.end(), std::back_inserter(out));
    return out;
  }

  Partitioner HashPartitioner(int partitions) const {
    return Partitioner{Partitioner::Kind::kHash,
                       partitions > 0 ? partitions : context().default_parallelism(), 0};
  }

  static bool IsHash(const std::optional<Partitioner>& p) {
    return p && p->kind == Partitioner::Kind::kHash;
  }

  template <typename K>
  static std::function<int(const K&)> HashPartitionFn(int partitions) {
    return [partitions](const K& k) {
      return static_cast<int>(KeyHash<K>()(k) % static_cast<uint64_t>(partitions));
    };
  }

  // A shuffle that moves records as they are, placed by `partition_fn`.
  template <typename PartitionFn>
  Rdd<T> Shuffle(Partitioner partitioner, PartitionFn partition_fn,
                 std::string name) const requires PairType<T> {
    using K = typename PairTraits<T>::Key;
    using V = typename PairTraits<T>::Value;
    auto dep = std::make_shared<ShuffleDependency<K, V, V, NoAggregator<V>>>(
        node_, partitioner, std::move(partition_fn), std::nullopt, false);
    return Rdd<T>(
        std::make_shared<ShuffledNode<K, V, V, NoAggregator<V>>>(std::move(dep), std::move(name)));
  }

  // n - 1 split points for a range partitioner, from a reservoir sample of each partition.
  Result<std::vector<typename PairTraits<T>::Key>> RangeBounds(int n) const requires PairType<T> {
    using K = typename PairTraits<T>::Key;
    const size_t per_partition = static_cast<size_t>(std::max(20 * n, 100));
    std::vector<std::vector<K>> samples(static_cast<size_t>(num_partitions()));
    RETURN_NOT_OK(RunOnPartitions(AllPartitions(), [&](int p, TaskContext& tc) {
      std::vector<K>& sample = samples[static_cast<size_t>(p)];
      sample.clear();
      std::mt19937_64 rng(static_cast<uint64_t>(p) * 7919 + 1);
      size_t seen = 0;
      return node_->Iterate(p, tc, [&](T&& kv) {
        if (sample.size() < per_partition) {
          sample.push_back(std::move(kv.first));
        } else if (size_t j = rng() % (seen + 1); j < per_partition) {
          sample[j] = std::move(kv.first);
        }
        ++seen;
        return true;
      });
    }));
    std::vector<K> all = Concat(std::move(samples));
    std::sort(all.begin(), all.end());
    std::vector<K> bounds;
    for (int i = 1; i < n && !all.empty(); ++i) {
      bounds.push_back(all[all.size() * static_cast<size_t>(i) / static_cast<size_t>(n)]);
    }
    return bounds;
  }

  std::shared_ptr<RddNode<T>> node_;
};

// ---- Context factories ----

template <typename T>
Rdd<T> Context::Parallelize(std::vector<T> data, int num_slices) {
  return Parallelize(std::make_shared<const std::vector<T>>(std::move(data)), num_slices);
}

template <typename T>
Rdd<T> Context::Parallelize(std::shared_ptr<const std::vector<T>> data, int num_slices) {
  const int slices = num_slices > 0 ? num_slices : default_parallelism();
  return Rdd<T>(std::make_shared<ParallelizeNode<T>>(this, std::move(data), slices));
}

// An RDD whose partitions come from `compute(partition, tc, emit)`: the hook for sources
// (the Kafka RDD reads one offset range per partition).
template <typename T>
Rdd<T> FromSource(Context& ctx, std::string name, int partitions,
                  typename SourceNode<T>::ComputeFn compute) {
  return Rdd<T>(
      std::make_shared<SourceNode<T>>(&ctx, std::move(name), partitions, std::move(compute)));
}

}  // namespace runnel::engine
