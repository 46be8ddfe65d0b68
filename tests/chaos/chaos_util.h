// What the chaos test and the soak share: the truth computed straight from the generated
// events, and the comparison of the service's output with it.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "tests/service/service_test_util.h"

namespace runnel::testing {

// Counts one event (a JSON line) under its output _id ("URL|CUSTOMER|HOUR:00:00").
inline void AddPageView(std::string_view event, std::map<std::string, int64_t>& views) {
  const auto v = boost::json::parse(event).as_object();
  const std::string ts(v.at("ts").as_string());
  views[std::string(v.at("url").as_string()) + "|" + std::string(v.at("customer").as_string()) +
        "|" + ts.substr(0, 13) + ":00:00"]++;
}

// Page views per output _id, straight from the events.
inline std::map<std::string, int64_t> PageViewsFromEvents(const std::string& path) {
  std::map<std::string, int64_t> views;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) AddPageView(line, views);
  return views;
}

struct Exactness {
  int64_t lost = 0;        // page views the truth has and the output does not
  int64_t duplicated = 0;  // page views the output has beyond the truth
  int64_t max_key_diff = 0;
  std::map<std::string, int64_t> diffs;  // _id -> output minus truth, where they differ
};

inline Exactness Compare(const std::map<std::string, int64_t>& truth,
                         const std::map<std::string, boost::json::value>& got) {
  Exactness e;
  for (const auto& [id, want] : truth) {
    auto it = got.find(id);
    const int64_t have =
        it == got.end() ? 0 : it->second.at("metrics").at("page_views").to_number<int64_t>();
    e.lost += std::max<int64_t>(0, want - have);
    e.duplicated += std::max<int64_t>(0, have - want);
    e.max_key_diff = std::max(e.max_key_diff, std::abs(have - want));
    if (have != want) e.diffs[id] = have - want;
  }
  for (const auto& [id, row] : got) {
    if (truth.count(id)) continue;
    const int64_t have = row.at("metrics").at("page_views").to_number<int64_t>();
    e.duplicated += have;
    e.diffs[id] = have;
  }
  return e;
}

// The q-quantile of `values` (sorted here); 0 when empty.
inline double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(q * values.size()))];
}

inline int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): tests, before threads
  return v != nullptr ? std::atoi(v) : fallback;
}

}  // namespace runnel::testing
