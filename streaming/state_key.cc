#include "streaming/state_key.h"

namespace runnel::streaming {
namespace {

constexpr uint64_t kSignBit = uint64_t{1} << 63;

void PutBigEndian(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

// The window start in the key's last 8 bytes (the caller checked there are 8).
int64_t TimeSuffix(std::string_view key) {
  uint64_t u = 0;
  for (size_t i = key.size() - 8; i < key.size(); ++i) u = (u << 8) | static_cast<uint8_t>(key[i]);
  return static_cast<int64_t>(u ^ kSignBit);
}

}  // namespace

std::string EncodeStateKey(const std::vector<std::string>& group_values, int64_t window_start) {
  std::string key;
  size_t size = 8;
  for (const std::string& v : group_values) size += v.size() + 2;
  key.reserve(size);
  for (const std::string& v : group_values) {
    if (v.find('\0') == std::string::npos) {
      key.append(v);  // the common case: nothing to escape
    } else {
      for (char c : v) {
        key.push_back(c);
        if (c == '\0') key.push_back('\xff');
      }
    }
    key.append("\0\x01", 2);
  }
  PutBigEndian(static_cast<uint64_t>(window_start) ^ kSignBit, &key);
  return key;
}

Status DecodeStateKey(std::string_view key, size_t group_count, std::vector<std::string>* values,
                      int64_t* window_start) {
  values->clear();
  size_t i = 0;
  for (size_t g = 0; g < group_count; ++g) {
    std::string v;
    while (true) {
      if (i + 1 >= key.size()) return Status::Corruption("state key: truncated group value");
      if (key[i] == '\0') {
        if (key[i + 1] == '\x01') {
          i += 2;
          break;
        }
        if (key[i + 1] != '\xff') return Status::Corruption("state key: bad escape");
        v.push_back('\0');
        i += 2;
      } else {
        v.push_back(key[i++]);
      }
    }
    values->push_back(std::move(v));
  }
  if (key.size() - i != 8) return Status::Corruption("state key: bad time suffix");
  *window_start = TimeSuffix(key);
  return Status::OK();
}

bool StateKeyTime(std::string_view key, int64_t* window_start) {
  if (key.size() < 8) return false;
  *window_start = TimeSuffix(key);
  return true;
}

}  // namespace runnel::streaming
