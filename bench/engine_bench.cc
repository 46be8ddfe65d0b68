// engine_bench: the RDD engine against a hand-written single-threaded loop over the same data,
// in the same process and run. Prints events per second (median of --runs) and the ratios.
//
//   engine_bench [--workloads=groupby,wordcount] [--pairs=10000000] [--text_mb=200] [--runs=3]
//                [--json=FILE]
//
// groupby:   sum of values per key over N (uint64 key, int64 value) pairs (100k distinct keys).
// wordcount: counts of whitespace-separated words in a generated text file.
// Each engine run is checked against the hand loop's answer; a mismatch fails the benchmark.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include "common/file_util.h"
#include "common/logging.h"
#include "engine/rdd.h"
#include "examples/example_util.h"

namespace runnel::bench {
namespace {

using engine::Context;

struct Figure {
  double median = 0, min = 0, max = 0;  // events per second
};

// Runs `fn` (returning a checksum) `runs` times; events/s over `events`.
Figure Measure(int runs, int64_t events, const std::function<uint64_t()>& fn, uint64_t* checksum) {
  std::vector<double> eps;
  for (int r = 0; r < runs; ++r) {
    const auto start = std::chrono::steady_clock::now();
    *checksum = fn();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    eps.push_back(static_cast<double>(events) / s);
  }
  std::sort(eps.begin(), eps.end());
  return {eps[eps.size() / 2], eps.front(), eps.back()};
}

uint64_t Mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x9E3779B97F4A7C15ULL + (h >> 7); }

// ---- groupby ----

std::vector<std::pair<uint64_t, int64_t>> MakePairs(int64_t n) {
  std::mt19937_64 rng(42);
  std::vector<std::pair<uint64_t, int64_t>> pairs(static_cast<size_t>(n));
  for (auto& p : pairs) p = {rng() % 100000, static_cast<int64_t>(rng() % 1000)};
  return pairs;
}

template <typename Map>
uint64_t ChecksumOf(const Map& sums) {
  // Order-independent: a sum of per-entry mixes.
  uint64_t total = 0;
  for (const auto& [k, v] : sums)
    total += Mix(std::hash<std::decay_t<decltype(k)>>()(k), static_cast<uint64_t>(v));
  return total;
}

uint64_t HandGroupBy(const std::vector<std::pair<uint64_t, int64_t>>& pairs) {
  boost::unordered_flat_map<uint64_t, int64_t, engine::KeyHash<uint64_t>> sums;
  for (const auto& [k, v] : pairs) sums[k] += v;
  return ChecksumOf(sums);
}

uint64_t EngineGroupBy(
    Context& ctx, const std::shared_ptr<const std::vector<std::pair<uint64_t, int64_t>>>& pairs) {
  const int parts = 2 * ctx.options().workers;
  auto sums =
      ctx.Parallelize(pairs, parts).ReduceByKey([](int64_t a, int64_t b) { return a + b; }, parts);
  auto out = sums.Collect();
  if (!out.ok()) {
    std::fprintf(stderr, "engine groupby failed: %s\n", out.status().ToString().c_str());
    std::exit(1);
  }
  return ChecksumOf(*out);
}

// ---- wordcount ----

Status MakeText(const std::string& path, int64_t bytes) {
  std::mt19937_64 rng(7);
  std::vector<std::string> vocab;
  for (int i = 0; i < 50000; ++i) {
    std::string w;
    for (int len = 2 + static_cast<int>(rng() % 9); len > 0; --len) w.push_back('a' + rng() % 26);
    vocab.push_back(w);
  }
  std::string text;
  text.reserve(static_cast<size_t>(bytes) + 64);
  // Zipf-like: small indexes far more often.
  while (static_cast<int64_t>(text.size()) < bytes) {
    for (int i = 0; i < 12; ++i) {
      const double u = std::uniform_real_distribution<double>(0, 1)(rng);
      text += vocab[static_cast<size_t>(std::pow(u, 3.0) * static_cast<double>(vocab.size() - 1))];
      text.push_back(i == 11 ? '\n' : ' ');
    }
  }
  return WriteFileAtomically(path, text);
}

uint64_t HandWordCount(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) std::exit(1);
  boost::unordered_flat_map<std::string, int64_t, engine::KeyHash<std::string>, std::equal_to<>>
      counts;
  const std::string& t = *text;
  size_t i = 0;
  while (i < t.size()) {
    while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
    const size_t start = i;
    while (i < t.size() && !std::isspace(static_cast<unsigned char>(t[i]))) ++i;
    if (i > start) {
      std::string_view w(t.data() + start, i - start);
      auto it = counts.find(w);
      if (it == counts.end()) {
        counts.emplace(std::string(w), 1);
      } else {
        ++it->second;
      }
    }
  }
  return ChecksumOf(counts);
}

uint64_t EngineWordCount(Context& ctx, const std::string& path) {
  auto lines = ctx.TextFile({path}, 16 << 20);
  if (!lines.ok()) std::exit(1);
  auto counts =
      lines->FlatMap(examples::SplitWords)
          .Map([](std::string w) { return std::pair<std::string, int64_t>(std::move(w), 1); })
          .ReduceByKey([](int64_t a, int64_t b) { return a + b; });
  auto out = counts.Collect();
  if (!out.ok()) {
    std::fprintf(stderr, "engine wordcount failed: %s\n", out.status().ToString().c_str());
    std::exit(1);
  }
  return ChecksumOf(*out);
}

// ---- driver ----

struct Row {
  std::string workload;
  int64_t events;
  Figure hand, engine1, engine2;
};

Row Compare(const std::string& name, int64_t events, int runs,
            const std::function<uint64_t()>& hand,
            const std::function<uint64_t(Context&)>& on_engine) {
  Row row{name, events, {}, {}, {}};
  uint64_t want = 0, got = 0;
  row.hand = Measure(runs, events, hand, &want);
  for (int workers : {1, 2}) {
    auto ctx = Context::Make({.workers = workers});
    if (!ctx.ok()) std::exit(1);
    Figure f = Measure(
        runs, events, [&] { return on_engine(**ctx); }, &got);
    if (got != want) {
      std::fprintf(stderr, "%s: engine with %d workers disagrees with the hand loop\n",
                   name.c_str(), workers);
      std::exit(2);
    }
    (workers == 1 ? row.engine1 : row.engine2) = f;
  }
  return row;
}

}  // namespace
}  // namespace runnel::bench

int main(int argc, char** argv) {
  using namespace runnel::bench;  // NOLINT(google-build-using-namespace): main of a tool
  std::string workloads = "groupby,wordcount";
  int64_t pairs = 10'000'000;
  int64_t text_mb = 200;
  int runs = 3;
  std::string json_path;
  std::string tmp_dir = "/tmp";
  CLI::App app{"RDD engine against a hand-written loop"};
  app.add_option("--workloads", workloads, "Comma-separated: groupby,wordcount");
  app.add_option("--pairs", pairs, "Pairs for groupby");
  app.add_option("--text_mb", text_mb, "Megabytes of text for wordcount");
  app.add_option("--runs", runs, "Runs per figure (median reported)");
  app.add_option("--json", json_path, "Also write the figures to this JSON file");
  app.add_option("--tmp_dir", tmp_dir, "Where the generated text goes");
  CLI11_PARSE(app, argc, argv);
  runnel::ConfigureLogging({runnel::LogFormat::kText, spdlog::level::warn});

  std::vector<Row> rows;
  if (workloads.find("groupby") != std::string::npos) {
    const auto data =
        std::make_shared<const std::vector<std::pair<uint64_t, int64_t>>>(MakePairs(pairs));
    rows.push_back(Compare(
        "groupby", pairs, runs, [&] { return HandGroupBy(*data); },
        [&](runnel::engine::Context& ctx) { return EngineGroupBy(ctx, data); }));
  }
  if (workloads.find("wordcount") != std::string::npos) {
    const std::string path = tmp_dir + "/runnel-bench-words.txt";
    if (!MakeText(path, text_mb << 20).ok()) return 1;
    int64_t words = 0;
    {
      auto text = runnel::ReadFile(path);
      for (size_t i = 0; i < text->size(); ++i) words += ((*text)[i] == ' ' || (*text)[i] == '\n');
    }
    rows.push_back(Compare(
        "wordcount", words, runs, [&] { return HandWordCount(path); },
        [&](runnel::engine::Context& ctx) { return EngineWordCount(ctx, path); }));
    std::remove(path.c_str());
  }

  std::printf("%-10s %12s %14s %14s %14s %10s %10s\n", "workload", "events", "hand ev/s",
              "engine1 ev/s", "engine2 ev/s", "e1/hand", "e2/e1");
  boost::json::object out;
  for (const Row& r : rows) {
    std::printf("%-10s %12lld %14.0f %14.0f %14.0f %10.2f %10.2f\n", r.workload.c_str(),
                static_cast<long long>(r.events), r.hand.median, r.engine1.median, r.engine2.median,
                r.engine1.median / r.hand.median, r.engine2.median / r.engine1.median);
    auto fig = [](const Figure& f) {
      return boost::json::object{{"median", f.median}, {"min", f.min}, {"max", f.max}};
    };
    out[r.workload] = boost::json::object{
        {"events", r.events},
        {"hand_eps", fig(r.hand)},
        {"engine_1_worker_eps", fig(r.engine1)},
        {"engine_2_workers_eps", fig(r.engine2)},
        {"ratio_engine1_vs_hand", r.engine1.median / r.hand.median},
        {"ratio_engine2_vs_engine1", r.engine2.median / r.engine1.median},
    };
  }
  if (!json_path.empty()) {
    if (!runnel::WriteFileAtomically(json_path, boost::json::serialize(out) + "\n").ok()) return 1;
  }
  return 0;
}
