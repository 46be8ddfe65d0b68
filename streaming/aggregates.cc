#include "streaming/aggregates.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "engine/hash.h"
#include "streaming/aggregates.pb.h"

namespace runnel::streaming {
namespace {

using Kind = AggregateSpec::Kind;
constexpr uint32_t kRowFormatVersion = 1;  // AggregateRow.format_version

// Sparse HLL: exact hashes until this many, then 2^p registers.
size_t SparseLimit(int precision) { return (size_t{1} << precision) / 8; }

void AddToRegisters(uint64_t h, int p, std::vector<uint8_t>* registers) {
  const uint64_t index = h >> (64 - p);
  const uint64_t rest = (h << p) | (uint64_t{1} << (p - 1));  // guard bit bounds the rank
  const auto rank = static_cast<uint8_t>(std::countl_zero(rest) + 1);
  (*registers)[index] = std::max((*registers)[index], rank);
}

void Densify(int p, AggCell* cell) {
  if (!cell->registers.empty()) return;
  cell->registers.assign(size_t{1} << p, 0);
  for (uint64_t h : cell->hashes.sorted()) AddToRegisters(h, p, &cell->registers);
  cell->hashes.clear();
}

double HllEstimate(int p, const std::vector<uint8_t>& registers) {
  const double m = static_cast<double>(registers.size());
  double sum = 0;
  int zeros = 0;
  for (uint8_t r : registers) {
    sum += std::ldexp(1.0, -r);
    zeros += r == 0;
  }
  const double alpha = p == 4 ? 0.673 : p == 5 ? 0.697 : p == 6 ? 0.709 : 0.7213 / (1 + 1.079 / m);
  double estimate = alpha * m * m / sum;
  if (estimate <= 2.5 * m && zeros > 0) estimate = m * std::log(m / zeros);  // linear counting
  return estimate;
}

void CapTopK(int top_k, ValueCounts* values) {
  if (top_k <= 0 || static_cast<int>(values->size()) <= top_k + 1) return;
  int64_t other = 0;
  if (auto it = values->find("__other__"); it != values->end()) {
    other = it->second;
    values->erase(it);
  }
  std::vector<std::pair<std::string, int64_t>> sorted(values->begin(), values->end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  values->clear();
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (static_cast<int>(i) < top_k) {
      values->insert(sorted[i]);
    } else {
      other += sorted[i].second;
    }
  }
  (*values)["__other__"] = other;
}

// A value seen for the first time, into a top-k map that is full (k values and __other__): it
// displaces the kept value that ranks last (fewest, then the largest value) when it ranks
// before it, and is counted under __other__ otherwise. The same result as inserting it and
// CapTopK, in one pass without sorting or copying the map.
void AddToFullTopK(std::string_view value, ValueCounts* values) {
  auto other = values->find("__other__");
  auto last = values->end();
  for (auto it = values->begin(); it != values->end(); ++it) {
    if (it == other) continue;
    if (last == values->end() || it->second < last->second ||
        (it->second == last->second && it->first > last->first)) {
      last = it;
    }
  }
  if (last != values->end() && (last->second < 1 || (last->second == 1 && value < last->first))) {
    other->second += last->second;
    values->erase(last);
    values->emplace(value, 1);
  } else {
    ++other->second;
  }
}

}  // namespace

void HashSet64::Normalize() const {
  if (pending_.empty()) return;
  std::sort(pending_.begin(), pending_.end());
  pending_.erase(std::unique(pending_.begin(), pending_.end()), pending_.end());
  if (sorted_.empty()) {
    sorted_.swap(pending_);
  } else {
    std::vector<uint64_t> merged;
    merged.reserve(sorted_.size() + pending_.size());
    std::set_union(sorted_.begin(), sorted_.end(), pending_.begin(), pending_.end(),
                   std::back_inserter(merged));
    sorted_.swap(merged);
  }
  pending_.clear();
}

void HashSet64::MergeFrom(const HashSet64& other) {
  const std::vector<uint64_t>& from = other.sorted();
  if (from.empty()) return;
  if (from.size() <= kMinRun) {  // a record's worth (the map-side combine): pending
    for (uint64_t h : from) Insert(h);
    return;
  }
  Normalize();
  std::vector<uint64_t> merged;
  merged.reserve(from.size() + sorted_.size());
  std::set_union(sorted_.begin(), sorted_.end(), from.begin(), from.end(),
                 std::back_inserter(merged));
  sorted_.swap(merged);
}

std::string_view AggregateKindName(Kind kind) {
  switch (kind) {
    case Kind::kCount:
      return "count";
    case Kind::kCountDistinct:
      return "count_distinct";
    case Kind::kApproxDistinct:
      return "approx_distinct";
    case Kind::kCountValues:
      return "count_values";
    case Kind::kSum:
      return "sum";
    case Kind::kMin:
      return "min";
    case Kind::kMax:
      return "max";
  }
  return "unknown";
}

Status AddValue(const AggregateSpec& spec, std::string_view value, AggCell* cell) {
  switch (spec.kind) {
    case Kind::kCount:
      ++cell->count;
      return Status::OK();
    case Kind::kCountDistinct:
      cell->hashes.Insert(engine::KeyHash<std::string>()(value));
      return Status::OK();
    case Kind::kApproxDistinct: {
      const uint64_t h = engine::KeyHash<std::string>()(value);
      if (cell->registers.empty()) {
        cell->hashes.Insert(h);
        if (cell->hashes.size_bound() > SparseLimit(spec.hll_precision) &&
            cell->hashes.size() > SparseLimit(spec.hll_precision))
          Densify(spec.hll_precision, cell);
      } else {
        AddToRegisters(h, spec.hll_precision, &cell->registers);
      }
      return Status::OK();
    }
    case Kind::kCountValues:
      if (auto it = cell->values.find(value); it != cell->values.end()) {
        ++it->second;
      } else if (spec.top_k > 0 && static_cast<int>(cell->values.size()) == spec.top_k + 1 &&
                 cell->values.contains("__other__")) {
        AddToFullTopK(value, &cell->values);
      } else {
        cell->values.emplace(value, 1);
        CapTopK(spec.top_k, &cell->values);
      }
      return Status::OK();
    case Kind::kSum:
    case Kind::kMin:
    case Kind::kMax: {
      double d = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), d);
      if (ec != std::errc() || end != value.data() + value.size() || !std::isfinite(d)) {
        return Status::InvalidArgument(fmt::format("field {} is not a number", spec.field));
      }
      AggCell one;
      one.number = d;
      one.has_number = true;
      Merge(spec, one, cell);
      return Status::OK();
    }
  }
  return Status::Internal("unknown aggregate kind");
}

void Merge(const AggregateSpec& spec, const AggCell& from, AggCell* into) {
  switch (spec.kind) {
    case Kind::kCount:
      into->count += from.count;
      return;
    case Kind::kCountDistinct:
      into->hashes.MergeFrom(from.hashes);
      return;
    case Kind::kApproxDistinct: {
      const int p = spec.hll_precision;
      if (from.registers.empty() && into->registers.empty()) {
        into->hashes.MergeFrom(from.hashes);
        if (into->hashes.size() > SparseLimit(p)) Densify(p, into);
        return;
      }
      Densify(p, into);
      for (uint64_t h : from.hashes.sorted()) AddToRegisters(h, p, &into->registers);
      for (size_t i = 0; i < from.registers.size(); ++i) {
        into->registers[i] = std::max(into->registers[i], from.registers[i]);
      }
      return;
    }
    case Kind::kCountValues:
      for (const auto& [v, n] : from.values) into->values[v] += n;
      CapTopK(spec.top_k, &into->values);
      return;
    case Kind::kSum:
      into->number += from.number;
      into->has_number = into->has_number || from.has_number;
      return;
    case Kind::kMin:
    case Kind::kMax:
      if (!from.has_number) return;
      if (!into->has_number ||
          (spec.kind == Kind::kMin ? from.number < into->number : from.number > into->number)) {
        into->number = from.number;
      }
      into->has_number = true;
      return;
  }
}

void AddRecord(const std::vector<AggregateSpec>& specs, const RecordValues& values, AggRow* row) {
  if (row->empty()) row->resize(specs.size());
  for (size_t i = 0; i < specs.size() && i < values.size(); ++i) {
    AddValue(specs[i], values[i], &(*row)[i]).IgnoreError();  // validated when parsed
  }
}

void MergeRow(const std::vector<AggregateSpec>& specs, const AggRow& from, AggRow* into) {
  if (into->empty()) into->resize(specs.size());
  for (size_t i = 0; i < specs.size() && i < from.size(); ++i)
    Merge(specs[i], from[i], &(*into)[i]);
}

double ScalarValue(const AggregateSpec& spec, const AggCell& cell) {
  switch (spec.kind) {
    case Kind::kCount:
      return static_cast<double>(cell.count);
    case Kind::kCountDistinct:
      return static_cast<double>(cell.hashes.size());
    case Kind::kApproxDistinct:
      return cell.registers.empty() ? static_cast<double>(cell.hashes.size())
                                    : std::round(HllEstimate(spec.hll_precision, cell.registers));
    case Kind::kCountValues: {
      int64_t total = 0;
      for (const auto& [v, n] : cell.values) total += n;
      return static_cast<double>(total);
    }
    case Kind::kSum:
    case Kind::kMin:
    case Kind::kMax:
      return cell.number;
  }
  return 0;
}

double StandardError(const AggregateSpec& spec, const AggCell& cell) {
  if (spec.kind != Kind::kApproxDistinct || cell.registers.empty()) return 0;
  return 1.04 / std::sqrt(static_cast<double>(size_t{1} << spec.hll_precision));
}

std::string EncodeRow(const AggRow& row) {
  state::v1::AggregateRow proto;
  proto.set_format_version(kRowFormatVersion);
  for (const AggCell& cell : row) {
    state::v1::AggregateCell* c = proto.add_cells();
    c->set_count(cell.count);
    c->set_number(cell.number);
    c->set_has_number(cell.has_number);
    const std::vector<uint64_t>& hashes = cell.hashes.sorted();  // sorted once, when encoded
    c->mutable_hashes()->Add(hashes.begin(), hashes.end());
    c->set_registers(cell.registers.data(), cell.registers.size());
    for (const auto& [value, count] : cell.values) {
      state::v1::ValueCount* vc = c->add_values();
      vc->set_value(value);
      vc->set_count(count);
    }
  }
  return proto.SerializeAsString();
}

Result<AggRow> DecodeRow(std::string_view bytes) {
  state::v1::AggregateRow proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Status::Corruption("aggregate row: malformed");
  }
  if (proto.format_version() != kRowFormatVersion) {
    return Status::Corruption(
        fmt::format("aggregate row: unknown format version {}", proto.format_version()));
  }
  AggRow row(proto.cells_size());
  for (int i = 0; i < proto.cells_size(); ++i) {
    const state::v1::AggregateCell& c = proto.cells(i);
    AggCell& cell = row[i];
    cell.count = c.count();
    cell.number = c.number();
    cell.has_number = c.has_number();
    cell.hashes.AssignSorted(c.hashes().begin(), c.hashes().end());
    cell.registers.assign(c.registers().begin(), c.registers().end());
    for (const state::v1::ValueCount& vc : c.values()) cell.values[vc.value()] += vc.count();
  }
  return row;
}

}  // namespace runnel::streaming
