#include "streaming/event_parser.h"

#include <fmt/format.h>
#include <simdjson.h>

#include "streaming/state_key.h"

namespace runnel::streaming {
namespace {

constexpr int64_t kMaxEpochMs = 253402300799999;  // 9999-12-31T23:59:59.999Z
constexpr int64_t kSecondsBelow = 100'000'000'000;

// The value of a field: a JSON string for text fields (group values, distinct and value
// counts), a JSON number for numeric ones (sum/min/max), written as text. Anything else is a
// wrong type. Returns the invalid reason, or "" on success.
std::string FieldText(simdjson::dom::object& obj, const std::string& name, bool numeric,
                      std::string* out) {
  simdjson::dom::element value;
  if (obj.at_key(name).get(value) != simdjson::SUCCESS || value.is_null()) return "missing_field";
  if (!numeric) {
    std::string_view s;
    if (value.get_string().get(s) != simdjson::SUCCESS) return "wrong_type";
    out->assign(s);
    return "";
  }
  switch (value.type()) {
    case simdjson::dom::element_type::INT64:
      *out = std::to_string(int64_t(value));
      return "";
    case simdjson::dom::element_type::UINT64:
      *out = std::to_string(uint64_t(value));
      return "";
    case simdjson::dom::element_type::DOUBLE:
      *out = fmt::format("{}", double(value));
      return "";
    default:
      return "wrong_type";
  }
}

// Whether a key appears twice at the top level (events have a handful of fields: a linear
// scan over at most 32 keys; larger objects are not checked).
bool HasDuplicateKey(simdjson::dom::object& obj) {
  std::string_view keys[32];
  size_t n = 0;
  for (auto field : obj) {
    if (n == std::size(keys)) return false;
    for (size_t i = 0; i < n; ++i) {
      if (keys[i] == field.key) return true;
    }
    keys[n++] = field.key;
  }
  return false;
}

bool IsNumeric(const AggregateSpec& spec) {
  return spec.kind == AggregateSpec::Kind::kSum || spec.kind == AggregateSpec::Kind::kMin ||
         spec.kind == AggregateSpec::Kind::kMax;
}

std::string EventTime(simdjson::dom::object& obj, const std::string& name, EventTimeMs* out) {
  simdjson::dom::element value;
  if (obj.at_key(name).get(value) != simdjson::SUCCESS || value.is_null()) return "missing_field";
  if (value.is_string()) {
    auto parsed = ParseIsoTimestamp(std::string_view(value.get_string().value_unsafe()));
    if (!parsed.ok()) return "bad_timestamp";
    *out = *parsed;
    return "";
  }
  int64_t ms = 0;
  if (value.get_int64().get(ms) == simdjson::SUCCESS) {
    // Epoch seconds are common: below 10^11 (1973-03-03 in ms, year 5138 in s) means seconds.
    if (ms >= 0 && ms < kSecondsBelow) ms *= 1000;
    if (ms < 0 || ms > kMaxEpochMs) return "bad_timestamp";
    *out = ms;
    return "";
  }
  return "bad_timestamp";
}

bool Holds(const FieldCondition& c, simdjson::dom::object& obj) {
  std::string_view value;
  if (obj.at_key(c.field).get_string().get(value) != simdjson::SUCCESS) return false;
  switch (c.op) {
    case FieldCondition::Op::kEquals:
      return value == c.value;
    case FieldCondition::Op::kNotEquals:
      return value != c.value;
    case FieldCondition::Op::kPrefix:
      return value.starts_with(c.value);
  }
  return false;
}

}  // namespace

ParsedEvent ParseEvent(const AggregationOptions& opts, EventTimeMs watermark_now,
                       EventTimeMs latest_allowed, const std::string& line) {
  ParsedEvent result;
  if (line.find_first_not_of(" \t\r") == std::string::npos) {
    result.invalid_reason = "empty";
    return result;
  }
  if (line.size() > opts.max_record_bytes) {
    result.invalid_reason = "too_large";
    return result;
  }
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(line.data(), line.size(), /*realloc_if_needed=*/true).get(doc) !=
      simdjson::SUCCESS) {
    result.invalid_reason = "malformed_json";
    return result;
  }
  simdjson::dom::object obj;
  if (doc.get_object().get(obj) != simdjson::SUCCESS) {
    result.invalid_reason = "not_an_object";
    return result;
  }
  if (HasDuplicateKey(obj)) {  // which one would count is anyone's guess: neither does
    result.invalid_reason = "duplicate_field";
    return result;
  }
  for (const FieldCondition& c : opts.where) {
    if (!Holds(c, obj)) {
      result.filtered = true;
      return result;
    }
  }
  EventTimeMs t = 0;
  if (std::string reason = EventTime(obj, opts.time_field, &t); !reason.empty()) {
    result.invalid_reason = reason;
    return result;
  }
  if (t > latest_allowed) {
    result.invalid_reason = "ts_in_future";
    return result;
  }
  std::vector<std::string> group(opts.group_by.size());
  for (size_t i = 0; i < opts.group_by.size(); ++i) {
    if (std::string reason = FieldText(obj, opts.group_by[i], false, &group[i]); !reason.empty()) {
      result.invalid_reason = reason;
      return result;
    }
  }
  RecordValues values(opts.aggregates.size());
  for (size_t i = 0; i < opts.aggregates.size(); ++i) {
    const AggregateSpec& spec = opts.aggregates[i];
    if (spec.field.empty()) continue;
    if (std::string reason = FieldText(obj, spec.field, IsNumeric(spec), &values[i]);
        !reason.empty()) {
      result.invalid_reason = reason;
      return result;
    }
    AggCell scratch;  // numbers: what AddValue refuses (no allocation for these kinds)
    if (IsNumeric(spec) && !AddValue(spec, values[i], &scratch).ok()) {
      result.invalid_reason = "bad_number";
      return result;
    }
  }
  result.event_time = t;
  const std::vector<EventTimeMs> windows = opts.window.WindowsOf(t);
  for (size_t w = 0; w < windows.size(); ++w) {
    const EventTimeMs end = opts.window.EndOf(windows[w]);
    if (watermark_now != Watermark::kNone && end <= watermark_now) continue;  // closed
    result.partials.emplace_back(EncodeStateKey(group, windows[w]),
                                 w + 1 == windows.size() ? std::move(values) : values);
  }
  result.late = result.partials.empty();
  return result;
}

}  // namespace runnel::streaming
