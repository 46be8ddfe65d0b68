#include "streaming/batch_record.h"

#include <charconv>
#include <string_view>

#include <fmt/format.h>

namespace runnel::streaming {
namespace {

bool ParseInt(std::string_view text, int64_t* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

bool SamePosition(const SourcePosition& a, const SourcePosition& b) {
  if (a.kind_case() != b.kind_case()) return false;
  switch (a.kind_case()) {
    case SourcePosition::kNextOffset:
      return a.next_offset() == b.next_offset();
    case SourcePosition::kFile:
      return a.file().byte() == b.file().byte() && a.file().line() == b.file().line();
    case SourcePosition::KIND_NOT_SET:
      return true;
  }
  return false;
}

std::string PositionText(const SourcePosition& p) {
  switch (p.kind_case()) {
    case SourcePosition::kNextOffset:
      return std::to_string(p.next_offset());
    case SourcePosition::kFile:
      return fmt::format("byte {} line {}", p.file().byte(), p.file().line());
    case SourcePosition::KIND_NOT_SET:
      break;
  }
  return "none";
}

v1::BatchRecord ToProto(const BatchRecord& r) {
  v1::BatchRecord out;
  out.set_batch_id(r.batch_id.value());
  out.set_batch_time_unix_ms(r.batch_time.value());
  out.mutable_positions()->insert(r.positions.begin(), r.positions.end());
  out.set_watermark_ms(r.watermark_ms);
  out.set_max_event_time_ms(r.max_event_time_ms);
  out.set_definition_fingerprint(r.definition_fingerprint);
  out.set_definition(r.definition);
  out.set_expire_before_ms(r.expire_before_ms);
  return out;
}

BatchRecord FromProto(const v1::BatchRecord& r) {
  BatchRecord out;
  out.batch_id = BatchId(r.batch_id());
  out.batch_time = BatchTime(r.batch_time_unix_ms());
  out.positions.insert(r.positions().begin(), r.positions().end());
  out.watermark_ms = r.watermark_ms();
  out.max_event_time_ms = r.max_event_time_ms();
  out.definition_fingerprint = r.definition_fingerprint();
  out.definition = r.definition();
  out.expire_before_ms = r.expire_before_ms();
  return out;
}

Result<BatchRecord> FromFormat1(BatchId batch_id,
                                const std::map<std::string, std::string>& positions,
                                const std::map<std::string, std::string>& metadata) {
  BatchRecord out;
  out.batch_id = batch_id;
  for (const auto& [input, text] : positions) {
    // No source reads a position under another name: there is nothing to migrate it to.
    if (!input.starts_with("kafka:") && !input.starts_with("file:")) continue;
    SourcePosition p;
    int64_t offset = 0;
    long byte = 0;  // NOLINT(runtime/int): sscanf's %ld
    long line = 0;  // NOLINT(runtime/int)
    if (input.starts_with("kafka:") && ParseInt(text, &offset)) {
      p.set_next_offset(offset);
    } else if (input.starts_with("file:") &&
               std::sscanf(text.c_str(), "%ld %ld", &byte, &line) == 2 && byte >= 0) {
      p.mutable_file()->set_byte(byte);
      p.mutable_file()->set_line(line);
    } else {
      return Status::Corruption(fmt::format("batch record: bad position {:?} of {}", text, input));
    }
    out.positions.emplace(input, std::move(p));
  }
  // As format 1's readers did: a metadata number that does not parse reads as its default.
  auto number = [&](const char* key, int64_t fallback, int64_t* into) -> Status {
    *into = fallback;
    auto it = metadata.find(key);
    if (it != metadata.end() && !ParseInt(it->second, into)) *into = fallback;
    return Status::OK();
  };
  int64_t batch_time = 0;
  RETURN_NOT_OK(number("batch_time", 0, &batch_time));
  out.batch_time = BatchTime(batch_time);
  RETURN_NOT_OK(number("watermark", INT64_MIN, &out.watermark_ms));
  RETURN_NOT_OK(number("max_event_time", INT64_MIN, &out.max_event_time_ms));
  RETURN_NOT_OK(number("expire_before", INT64_MIN, &out.expire_before_ms));
  if (auto it = metadata.find("definition_fingerprint"); it != metadata.end()) {
    out.definition_fingerprint = it->second;
  }
  if (auto it = metadata.find("definition"); it != metadata.end()) out.definition = it->second;
  return out;
}

}  // namespace runnel::streaming
