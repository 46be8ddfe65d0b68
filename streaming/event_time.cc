#include "streaming/event_time.h"

#include <algorithm>
#include <charconv>
#include <chrono>

#include <fmt/format.h>

namespace runnel::streaming {
namespace {

// Reads exactly `n` digits at text[*pos].
bool Digits(std::string_view text, size_t* pos, size_t n, int* out) {
  if (*pos + n > text.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

}  // namespace

Result<EventTimeMs> ParseIsoTimestamp(std::string_view text) {
  auto bad = [&] {
    return Status::InvalidArgument(fmt::format("not an ISO-8601 time: '{}'", text));
  };
  size_t pos = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!Digits(text, &pos, 4, &y) || !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &mo) ||
      !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &d)) {
    return bad();
  }
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != ' ')) return bad();
  ++pos;
  if (!Digits(text, &pos, 2, &h) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &mi) ||
      !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &s)) {
    return bad();
  }
  int millis = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 3) millis = millis * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return bad();
    for (size_t i = digits; i < 3; ++i) millis *= 10;
  }
  int offset_minutes = 0;
  if (pos < text.size()) {
    if (text[pos] == 'Z') {
      ++pos;
    } else if (text[pos] == '+' || text[pos] == '-') {
      const int sign = text[pos] == '-' ? -1 : 1;
      ++pos;
      int oh, om;
      if (!Digits(text, &pos, 2, &oh) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &om) ||
          oh > 23 || om > 59) {
        return bad();
      }
      offset_minutes = sign * (oh * 60 + om);
    }
  }
  if (pos != text.size()) return bad();
  if (y < 1970 || h > 23 || mi > 59 || s > 59) return bad();
  const std::chrono::year_month_day ymd{std::chrono::year{y},
                                        std::chrono::month{static_cast<unsigned>(mo)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return bad();
  const int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  return ((days * 24 + h) * 60 + mi - offset_minutes) * 60'000 + int64_t{s} * 1000 + millis;
}

std::string FormatIsoTimestamp(EventTimeMs ms) {
  const int64_t seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  const int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
  const int64_t rem = seconds - days * 86400;
  const std::chrono::year_month_day ymd{std::chrono::sys_days(std::chrono::days(days))};
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     rem / 3600, rem % 3600 / 60, rem % 60);
}

std::vector<EventTimeMs> WindowSpec::WindowsOf(EventTimeMs t) const {
  // The latest window start <= t, aligned to the epoch (floor division for negative t).
  EventTimeMs last = t - ((t % slide_ms) + slide_ms) % slide_ms;
  std::vector<EventTimeMs> starts;
  for (EventTimeMs start = last; start > t - length_ms; start -= slide_ms) starts.push_back(start);
  std::reverse(starts.begin(), starts.end());
  return starts;
}

std::string WindowFrequencyName(int64_t length_ms) {
  constexpr int64_t kDay = 86'400'000, kHour = 3'600'000, kMinute = 60'000, kSecond = 1000;
  if (length_ms % kDay == 0) return fmt::format("{}day", length_ms / kDay);
  if (length_ms % kHour == 0) return fmt::format("{}hour", length_ms / kHour);
  if (length_ms % kMinute == 0) return fmt::format("{}min", length_ms / kMinute);
  if (length_ms % kSecond == 0) return fmt::format("{}s", length_ms / kSecond);
  return fmt::format("{}ms", length_ms);
}

void Watermark::AdvanceTo(EventTimeMs batch_max_event_time) {
  if (batch_max_event_time > max_event_time_) max_event_time_ = batch_max_event_time;
  if (max_event_time_ == kNone) return;
  const EventTimeMs candidate = max_event_time_ - lateness_ms_;
  if (current_ == kNone || candidate > current_) current_ = candidate;
}

}  // namespace runnel::streaming
