// The seed's click workload: `runnel gen`.
//
// Each event: {"customer": C, "url": "http://C/articles/K", "referrer": R, "session_id": S,
// "ts": T} with K uniform in 1..ceil(N^(1/3)), R one of google, bing, facebook, S one of the
// 210 three-letter permutations of "abcdefg", T uniform over 2017-09-17 (UTC), whole seconds.
// Deterministic for a seed. Options add customers, disorder, late and malformed lines.
//
// Thread safety: a Generator is used by one thread.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/result.h"

namespace runnel::sources {

struct GeneratorOptions {
  int64_t events = 1000;
  uint64_t seed = 1;
  // Customers "a.com", then "c1.example", "c2.example", ...
  int customers = 1;
  // Distinct urls (http://C/articles/K, K in 1..urls) per customer; 0: ceil(events^(1/3)).
  int64_t urls = 0;
  // Events come in time order, each shuffled back by up to this many seconds (0: uniform
  // random order over the day).
  int64_t ordered_disorder_seconds = -1;
  // Fraction of events whose time is moved 4 hours back (late for a 1h lateness).
  double late_fraction = 0;
  // Fraction of lines replaced by malformed JSON.
  double malformed_fraction = 0;
  // Every event gets its own session id ("s" + its index) instead of one of the 210.
  bool unique_sessions = false;
};

class Generator {
 public:
  explicit Generator(GeneratorOptions options);

  // Appends the next event as one JSON line (with its newline) to `out`.
  void AppendNext(std::string* out);
  int64_t produced() const { return produced_; }

 private:
  const GeneratorOptions options_;
  std::mt19937_64 rng_;
  int64_t produced_ = 0;
  int64_t url_count_;
  std::vector<std::string> customers_;
  std::vector<std::string> sessions_;
};

// Writes `options.events` lines to `path` (through a temporary file and a rename).
Status GenerateToFile(const GeneratorOptions& options, const std::string& path);

}  // namespace runnel::sources
