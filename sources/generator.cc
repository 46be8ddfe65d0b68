#include "sources/generator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "common/file_util.h"
#include "streaming/event_time.h"

namespace runnel::sources {
namespace {

constexpr int64_t kDayStartSeconds = 1'505'606'400;  // 2017-09-17T00:00:00Z
constexpr int64_t kDaySeconds = 86'400;
constexpr const char* kReferrers[] = {"http://google.com/", "http://bing.com/",
                                      "http://facebook.com/"};

}  // namespace

Generator::Generator(GeneratorOptions options)
    : options_(options),
      rng_(options.seed),
      url_count_(
          options.urls > 0
              ? options.urls
              : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(
                                         std::cbrt(static_cast<double>(options.events)) - 1e-9)))) {
  customers_.push_back("a.com");
  for (int i = 1; i < options_.customers; ++i) customers_.push_back(fmt::format("c{}.example", i));
  std::string letters = "abcdefg";
  for (char a : letters) {
    for (char b : letters) {
      for (char c : letters) {
        if (a != b && b != c && a != c) sessions_.push_back({a, b, c});
      }
    }
  }
}

void Generator::AppendNext(std::string* out) {
  const int64_t i = produced_++;
  std::uniform_real_distribution<double> unit(0, 1);
  if (options_.malformed_fraction > 0 && unit(rng_) < options_.malformed_fraction) {
    out->append("{\"customer\": \"a.com\", \"url\":\n");
    return;
  }
  int64_t t;
  if (options_.ordered_disorder_seconds >= 0) {
    t = kDayStartSeconds + i * kDaySeconds / std::max<int64_t>(1, options_.events);
    t -=
        static_cast<int64_t>(rng_() % static_cast<uint64_t>(options_.ordered_disorder_seconds + 1));
    t = std::max(t, kDayStartSeconds);
  } else {
    t = kDayStartSeconds + static_cast<int64_t>(rng_() % kDaySeconds);
  }
  if (options_.late_fraction > 0 && unit(rng_) < options_.late_fraction) t -= 4 * 3600;
  const std::string& customer = customers_[rng_() % customers_.size()];
  const int64_t k = 1 + static_cast<int64_t>(rng_() % static_cast<uint64_t>(url_count_));
  fmt::format_to(
      std::back_inserter(*out),
      "{{\"customer\": \"{}\", \"url\": \"http://{}/articles/{}\", \"referrer\": \"{}\", "
      "\"session_id\": \"{}\", \"ts\": \"{}\"}}\n",
      customer, customer, k, kReferrers[rng_() % 3],
      options_.unique_sessions ? fmt::format("s{}", i) : sessions_[rng_() % sessions_.size()],
      streaming::FormatIsoTimestamp(t * 1000));
}

Status GenerateToFile(const GeneratorOptions& options, const std::string& path) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::FromErrno("open " + tmp, errno);
  Generator gen(options);
  std::string buf;
  buf.reserve(1 << 20);
  for (int64_t i = 0; i < options.events; ++i) {
    gen.AppendNext(&buf);
    if (buf.size() > (1 << 20) - 512 || i + 1 == options.events) {
      if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) {
        const int err = errno;
        std::fclose(f);
        return Status::FromErrno("write " + tmp, err);
      }
      buf.clear();
    }
  }
  if (std::fclose(f) != 0) return Status::FromErrno("close " + tmp, errno);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::FromErrno("rename " + tmp, errno);
  return Status::OK();
}

}  // namespace runnel::sources
