// Partial aggregates of the flagship query: what one batch contributes to a (group, window)
// key, mergeable with what state already holds. Every kind merges associatively and
// commutatively, so map-side combine, the reduce side and state all use the same Merge.
//
//   count            records
//   count_distinct   exact: the set of 64-bit XXH3 hashes of the field's values (collision
//                    odds for n distinct values about n^2 / 2^65: 3e-8 at a million)
//   approx_distinct  HyperLogLog with 2^p registers (p = 4..18), exact hashes while small
//                    (sparse), standard error 1.04 / sqrt(2^p)
//   count_values     value -> count, optionally capped to the top_k values (rest: "__other__")
//   sum, min, max    of a numeric field
//
// Thread safety: plain values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "engine/serde.h"

namespace runnel::streaming {

struct AggregateSpec {
  enum class Kind { kCount, kCountDistinct, kApproxDistinct, kCountValues, kSum, kMin, kMax };
  std::string name;  // output name, e.g. "page_views"
  Kind kind = Kind::kCount;
  std::string field;  // input field (empty for count)
  int hll_precision = 14;
  int top_k = 0;  // count_values: 0 keeps every value

  // Map aggregates (count_values) go at the top level of output records; the others under
  // "metrics".
  bool is_map() const { return kind == Kind::kCountValues; }
  bool operator==(const AggregateSpec&) const = default;
};

// The config name of a kind: count, count_distinct, approx_distinct, count_values, sum, ...
std::string_view AggregateKindName(AggregateSpec::Kind kind);

// count_values: occurrences per value (looked up by string_view without a copy).
using ValueCounts = std::map<std::string, int64_t, std::less<>>;

// A set of 64-bit hashes (exact distinct counts). Inserts append to a pending run, which is
// sorted and merged into the sorted part once it is as long: amortized O(log n) per insert,
// where inserting in order into one sorted vector cost O(n) (a hot key with a million
// visitors, O(n^2)). Merges are linear. Reads see the set sorted and unique; they sort the
// pending run first (hence the mutable members).
//
// Thread safety: a value; not to be read from two threads at once (a read may sort).
class HashSet64 {
 public:
  void Insert(uint64_t h) {
    pending_.push_back(h);
    if (pending_.size() >= std::max<size_t>(kMinRun, sorted_.size())) Normalize();
  }
  // The union with `other`, in linear time.
  void MergeFrom(const HashSet64& other);
  // From hashes already sorted and unique (as stored).
  template <typename It>
  void AssignSorted(It begin, It end) {
    sorted_.assign(begin, end);
    pending_.clear();
  }
  void clear() {
    sorted_ = {};
    pending_ = {};
  }
  bool empty() const { return sorted_.empty() && pending_.empty(); }
  // At least size(), without sorting.
  size_t size_bound() const { return sorted_.size() + pending_.size(); }
  size_t size() const { return sorted().size(); }
  const std::vector<uint64_t>& sorted() const {
    Normalize();
    return sorted_;
  }
  size_t memory_bytes() const { return (sorted_.capacity() + pending_.capacity()) * 8; }
  bool operator==(const HashSet64& other) const { return sorted() == other.sorted(); }

 private:
  static constexpr size_t kMinRun = 16;
  void Normalize() const;

  mutable std::vector<uint64_t> sorted_;   // sorted, unique
  mutable std::vector<uint64_t> pending_;  // inserted since: any order, may repeat
};

// One aggregate's partial value. Which members are used depends on the spec's kind.
struct AggCell {
  int64_t count = 0;               // count
  double number = 0;               // sum / min / max
  bool has_number = false;         // min / max: whether `number` holds a value
  HashSet64 hashes;                // distinct (exact, or HLL while sparse)
  std::vector<uint8_t> registers;  // HLL once dense: 2^p registers
  ValueCounts values;              // count_values

  bool operator==(const AggCell&) const = default;
};

// The cells of one key, one per aggregate of the query, in the spec order.
using AggRow = std::vector<AggCell>;

// The contribution of one record with the given field value (numeric fields as text).
// `value` is ignored for count. Errors when a numeric field does not parse.
Status AddValue(const AggregateSpec& spec, std::string_view value, AggCell* cell);

// One record's field values for a query's aggregates, in the spec order (numeric fields as
// text, "" for count): what a key's row folds in with AddRecord.
using RecordValues = std::vector<std::string>;

// Adds one record to `row` (sized to `specs` when empty). The values must have been accepted
// by AddValue already (ParseEvent does): a value AddValue refuses is skipped.
void AddRecord(const std::vector<AggregateSpec>& specs, const RecordValues& values, AggRow* row);

// Merges `from` into `into` (same spec).
void Merge(const AggregateSpec& spec, const AggCell& from, AggCell* into);
void MergeRow(const std::vector<AggregateSpec>& specs, const AggRow& from, AggRow* into);

// The aggregate's current value: a count, a distinct estimate, a number.
double ScalarValue(const AggregateSpec& spec, const AggCell& cell);
// HyperLogLog standard error for the cell (0 while exact).
double StandardError(const AggregateSpec& spec, const AggCell& cell);

// Bytes for state: the protobuf AggregateRow of streaming/aggregates.proto (see
// docs/state-format.md). Shuffles use the faster Serde<AggCell> below.
std::string EncodeRow(const AggRow& row);
Result<AggRow> DecodeRow(std::string_view bytes);

}  // namespace runnel::streaming

template <>
struct runnel::engine::Serde<runnel::streaming::AggCell> {
  using Cell = runnel::streaming::AggCell;
  static void Write(const Cell& c, std::string* out) {
    Serde<int64_t>::Write(c.count, out);
    Serde<double>::Write(c.number, out);
    Serde<bool>::Write(c.has_number, out);
    Serde<std::vector<uint64_t>>::Write(c.hashes.sorted(), out);
    Serde<std::vector<uint8_t>>::Write(c.registers, out);
    Serde<runnel::streaming::ValueCounts>::Write(c.values, out);
  }
  static bool Read(std::string_view* in, Cell* c) {
    std::vector<uint64_t> hashes;
    if (!(Serde<int64_t>::Read(in, &c->count) && Serde<double>::Read(in, &c->number) &&
          Serde<bool>::Read(in, &c->has_number) &&
          Serde<std::vector<uint64_t>>::Read(in, &hashes) &&
          Serde<std::vector<uint8_t>>::Read(in, &c->registers) &&
          Serde<runnel::streaming::ValueCounts>::Read(in, &c->values))) {
      return false;
    }
    c->hashes.AssignSorted(hashes.begin(), hashes.end());
    return true;
  }
  static size_t MemorySize(const Cell& c) {
    return sizeof(Cell) + c.hashes.memory_bytes() + c.registers.capacity() +
           Serde<runnel::streaming::ValueCounts>::MemorySize(c.values);
  }
};
