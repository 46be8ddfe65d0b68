#include "service/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/file_util.h"
#include "common/logging.h"
#include "service/http_server.h"

namespace runnel::service {
namespace {

using streaming::AggregateSpec;

// Bounds on what the config reads: a path mistyped as a device or a log file fails cleanly.
constexpr size_t kMaxConfigBytes = 16 << 20;
constexpr size_t kMaxSecretBytes = 64 << 10;
constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr int64_t kMaxDurationMs = 3650 * kDayMs;  // ten years: any duration key
constexpr int64_t kMaxSizeBytes = int64_t{1} << 40;
constexpr int64_t kMaxRecordsPerBatch = 100'000'000;
constexpr int64_t kMaxWindowsPerEvent = 1000;
// Query parameters of /v1/queries/NAME/aggregates besides the group fields.
const std::set<std::string> kAggregatesApiParameters = {"from", "to", "limit", "after", "scope"};

// n * factor, or nullopt when it overflows int64.
std::optional<int64_t> Times(int64_t n, int64_t factor) {
  int64_t out = 0;
  if (__builtin_mul_overflow(n, factor, &out)) return std::nullopt;
  return out;
}

std::string FormatDuration(int64_t ms) {
  if (ms % kDayMs == 0) return fmt::format("{}d", ms / kDayMs);
  if (ms % kHourMs == 0) return fmt::format("{}h", ms / kHourMs);
  if (ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

// Replaces ${VAR} and ${VAR:-default} in `text`; reports unset variables without a default.
std::string Interpolate(const std::string& text, const std::string& file,
                        std::vector<ConfigError>* errors) {
  std::string out;
  int line = 1;
  int col = 1;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 2, "${") == 0) {
      const size_t close = text.find('}', i + 2);
      const size_t newline = text.find('\n', i);
      if (close == std::string::npos || close > newline) {
        errors->push_back({file, line, col, "unterminated ${...}"});
        out += text.substr(i, 2);
        i += 2;
        col += 2;
        continue;
      }
      const std::string inner = text.substr(i + 2, close - i - 2);
      const size_t dflt = inner.find(":-");
      const std::string name = inner.substr(0, dflt);
      const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): startup
      if (value != nullptr && *value != '\0') {
        out += value;
      } else if (dflt != std::string::npos) {
        out += inner.substr(dflt + 2);
      } else {
        errors->push_back({file, line, col,
                           fmt::format("environment variable {} is not set and has no default "
                                       "(write ${{{}:-value}})",
                                       name, name)});
      }
      col += static_cast<int>(close + 1 - i);
      i = close + 1;
      continue;
    }
    if (text[i] == '\n') {
      ++line;
      col = 0;
    }
    out.push_back(text[i++]);
    ++col;
  }
  return out;
}

class Validator {
 public:
  Validator(std::string file, std::vector<ConfigError>* errors)
      : file_(std::move(file)), errors_(errors) {}

  void Error(const YAML::Node& at, const std::string& message) {
    const YAML::Mark mark = at.Mark();
    errors_->push_back({file_, mark.line + 1, mark.column + 1, message});
  }

  // Unknown keys of a map are errors; a non-map is one too.
  bool Keys(const YAML::Node& node, const std::string& what, const std::set<std::string>& allowed) {
    if (!node.IsMap()) {
      Error(node, fmt::format("{} must be a mapping", what));
      return false;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      if (!allowed.contains(key)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        Error(it->first, fmt::format("unknown key '{}' in {} (known: {})", key, what, list));
      }
    }
    return true;
  }

  bool String(const YAML::Node& parent, const char* key, std::string* out, bool required = false) {
    const YAML::Node n = parent[key];
    if (!n) {
      if (required) Error(parent, fmt::format("missing required key '{}'", key));
      return false;
    }
    if (!n.IsScalar()) {
      Error(n, fmt::format("'{}' must be a string", key));
      return false;
    }
    *out = n.Scalar();
    return true;
  }

  template <typename Int>
  bool Integer(const YAML::Node& parent, const char* key, Int* out, int64_t min, int64_t max) {
    const YAML::Node n = parent[key];
    if (!n) return false;
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
      Error(n, fmt::format("'{}' must be an integer", key));
      return false;
    }
    if (v < min || v > max) {
      Error(n, fmt::format("'{}' must be between {} and {}", key, min, max));
      return false;
    }
    *out = static_cast<Int>(v);
    return true;
  }

  // A duration in (0, max_ms], or [0, max_ms] with `allow_zero`.
  bool Duration(const YAML::Node& parent, const char* key, int64_t* out_ms, bool required = false,
                int64_t max_ms = kMaxDurationMs, bool allow_zero = false) {
    std::string text;
    if (!String(parent, key, &text, required)) return false;
    auto d = ParseDuration(text);
    if (!d || *d < 0 || (*d == 0 && !allow_zero)) {
      Error(parent[key],
            fmt::format("'{}': '{}' is not a duration (e.g. 500ms, 10s, 5m, 1h, 1d)", key, text));
      return false;
    }
    if (*d > max_ms) {
      Error(parent[key], fmt::format("'{}': '{}' is longer than the most allowed, {}", key, text,
                                     FormatDuration(max_ms)));
      return false;
    }
    *out_ms = *d;
    return true;
  }

  bool Size(const YAML::Node& parent, const char* key, int64_t* out) {
    std::string text;
    if (!String(parent, key, &text)) return false;
    auto s = ParseSize(text);
    if (!s || *s <= 0) {
      Error(parent[key], fmt::format("'{}': '{}' is not a size (e.g. 512MiB, 1GiB)", key, text));
      return false;
    }
    if (*s > kMaxSizeBytes) {
      Error(parent[key],
            fmt::format("'{}': '{}' is larger than the most allowed, 1TiB", key, text));
      return false;
    }
    *out = *s;
    return true;
  }

  // `key`'s value, one of `allowed`'s names, as the value it names.
  template <typename T>
  bool OneOf(const YAML::Node& parent, const char* key, T* out,
             const std::map<std::string, T>& allowed) {
    std::string name;
    std::set<std::string> names;
    for (const auto& [n, unused] : allowed) names.insert(n);
    if (!OneOf(parent, key, &name, names)) return false;
    *out = allowed.at(name);
    return true;
  }

  bool OneOf(const YAML::Node& parent, const char* key, std::string* out,
             const std::set<std::string>& allowed) {
    if (!String(parent, key, out)) return false;
    if (!allowed.contains(*out)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : "|") + a;
      Error(parent[key], fmt::format("'{}' must be one of {}, not '{}'", key, list, *out));
      return false;
    }
    return true;
  }

  // A name that becomes a directory or a key: letters, digits, '_' and '-'.
  bool SafeName(const YAML::Node& at, const std::string& what, const std::string& name) {
    static const std::regex kName("[A-Za-z0-9_][A-Za-z0-9_-]{0,99}");
    if (!std::regex_match(name, kName)) {
      Error(at, fmt::format("{} '{}' must be letters, digits, '_' or '-' (no '/', no '..')", what,
                            name));
      return false;
    }
    return true;
  }

  void Service(const YAML::Node& n, Config* c) {
    if (!Keys(n, "service",
              {"http_listen", "state_dir", "log_format", "shutdown_timeout", "http_token_file",
               "http_allow_unauthenticated", "http_max_connections"})) {
      return;
    }
    String(n, "http_listen", &c->http_listen);
    String(n, "state_dir", &c->state_dir);
    if (String(n, "http_token_file", &c->http_token_file)) {
      auto token = ReadFile(c->http_token_file, kMaxSecretBytes);
      if (!token.ok()) {
        Error(n["http_token_file"], fmt::format("cannot read http_token_file {}: {}",
                                                c->http_token_file, token.status().message()));
      } else if (const size_t begin = token->find_first_not_of(" \t\r\n");
                 begin == std::string::npos) {
        Error(n["http_token_file"], fmt::format("http_token_file {} is empty", c->http_token_file));
      } else {
        c->http_token = token->substr(begin, token->find_last_not_of(" \t\r\n") - begin + 1);
        struct stat st {};
        if (::stat(c->http_token_file.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO))) {
          Logger("config")->warn(
              "{}: http_token_file {} can be read by others (mode {:o}); chmod 600 it", file_,
              c->http_token_file, st.st_mode & 0777);
        }
      }
    }
    OneOf(n, "log_format", &c->log_format, {"text", "json"});
    Duration(n, "shutdown_timeout", &c->shutdown_timeout_ms, false, kHourMs);
    Bool(n, "http_allow_unauthenticated", &c->http_allow_unauthenticated);
    Integer(n, "http_max_connections", &c->http_max_connections, 1, 100'000);
    if (n["http_listen"]) {
      const auto listen = ParseListenAddress(c->http_listen);  // as the server reads it
      if (!listen.ok()) {
        Error(n["http_listen"],
              fmt::format("'http_listen': '{}' is not ADDRESS:PORT (an IP address and a port "
                          "0..65535)",
                          c->http_listen));
      } else if (!listen->address.is_loopback() && c->http_token_file.empty() &&
                 !c->http_allow_unauthenticated) {
        Error(n["http_listen"],
              fmt::format("'http_listen': {} is not a loopback address: set http_token_file (or "
                          "http_allow_unauthenticated: true to serve the API to anyone)",
                          c->http_listen));
      }
    }
  }

  bool Bool(const YAML::Node& parent, const char* key, bool* out) {
    const YAML::Node n = parent[key];
    if (!n) return false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, *out)) {
      Error(n, fmt::format("'{}' must be true or false", key));
      return false;
    }
    return true;
  }

  void Engine(const YAML::Node& n, Config* c) {
    if (!Keys(n, "engine", {"workers", "memory_budget"})) return;
    Integer(n, "workers", &c->workers, 1, 256);
    Size(n, "memory_budget", &c->memory_budget_bytes);
  }

  void Checkpoint(const YAML::Node& n, Config* c) {
    if (!Keys(n, "checkpoint", {"every", "keep"})) return;
    // A duration ("30s") or a batch count ("100 batches").
    static const std::regex kBatches(R"(\s*([0-9]{1,9})\s+batch(es)?\s*)");
    std::string every;
    std::smatch m;
    if (String(n, "every", &every) && std::regex_match(every, m, kBatches)) {
      c->checkpoint_every_ms = 0;
      c->checkpoint_every_batches = std::stoll(m[1].str());
      if (c->checkpoint_every_batches <= 0) Error(n["every"], "'every': need at least 1 batch");
    } else {
      Duration(n, "every", &c->checkpoint_every_ms, false, kDayMs);
    }
    Integer(n, "keep", &c->checkpoint_keep, 1, 1000);
  }

  void State(const YAML::Node& n, Config* c) {
    if (!Keys(n, "state", {"retention", "block_cache", "write_buffer"})) return;
    Duration(n, "retention", &c->state_retention_ms);
    Size(n, "block_cache", &c->state_block_cache_bytes);
    Size(n, "write_buffer", &c->state_write_buffer_bytes);
  }

  // The state store's share must leave the engine at least half of engine.memory_budget.
  void MemoryShares(const YAML::Node& root, const Config& c) {
    // A `state` that is not a mapping was reported already; errors then point at the root.
    const YAML::Node state = root["state"] && root["state"].IsMap() ? root["state"] : YAML::Node();
    const YAML::Node at = state && state["block_cache"] ? state["block_cache"] : root;
    if (StateCacheBytes(c) > c.memory_budget_bytes / 2) {
      Error(at, fmt::format("state.block_cache ({} MiB) is more than half of engine.memory_budget "
                            "({} MiB), which it is a share of (it holds the memtables too); "
                            "lower it or raise the budget",
                            StateCacheBytes(c) >> 20, c.memory_budget_bytes >> 20));
    }
    if (StateWriteBufferBytes(c) > StateCacheBytes(c)) {
      Error(state && state["write_buffer"] ? state["write_buffer"] : root,
            fmt::format("state.write_buffer ({} MiB) is more than state.block_cache ({} MiB), "
                        "which the memtables are charged to",
                        StateWriteBufferBytes(c) >> 20, StateCacheBytes(c) >> 20));
    }
  }

  void Source(const std::string& name, const YAML::Node& n, Config* c) {
    SourceConfig s;
    s.name = name;
    if (!n.IsMap()) {
      Error(n, fmt::format("source {} must be a mapping", name));
      return;
    }
    if (!OneOf(n, "type", &s.type, {{"kafka", SourceType::kKafka}, {"file", SourceType::kFile}})) {
      if (!n["type"]) Error(n, fmt::format("source {}: missing required key 'type'", name));
      return;
    }
    if (s.type == SourceType::kFile) {
      Keys(n, "file source " + name,
           {"type", "path", "max_records_per_batch", "max_bytes_per_batch"});
      if (String(n, "path", &s.path, true) && !FileExists(s.path)) {
        Error(n["path"], fmt::format("source {}: cannot read '{}'", name, s.path));
      }
      Integer(n, "max_records_per_batch", &s.max_records_per_batch, 1, kMaxRecordsPerBatch);
      Size(n, "max_bytes_per_batch", &s.max_bytes_per_batch);
    } else {
      Keys(n, "kafka source " + name,
           {"type", "bootstrap_servers", "topic", "topics", "group_id", "starting_offsets",
            "max_records_per_partition", "on_data_loss", "librdkafka", "assignment",
            "request_timeout", "rate_control", "max_bytes_per_batch"});
      String(n, "bootstrap_servers", &s.bootstrap_servers, true);
      std::string topic;
      if (String(n, "topic", &topic)) s.topics.push_back(topic);
      if (const YAML::Node ts = n["topics"]) {
        if (!ts.IsSequence()) {
          Error(ts, "'topics' must be a list");
        } else {
          for (const auto& t : ts) s.topics.push_back(t.as<std::string>());
        }
      }
      if (s.topics.empty())
        Error(n, fmt::format("kafka source {} needs 'topic' or 'topics'", name));
      String(n, "group_id", &s.group_id);
      OneOf(n, "starting_offsets", &s.start_at_earliest, {{"earliest", true}, {"latest", false}});
      Integer(n, "max_records_per_partition", &s.max_records_per_partition, 1, kMaxRecordsPerBatch);
      Size(n, "max_bytes_per_batch", &s.max_bytes_per_batch);
      OneOf(n, "on_data_loss", &s.fail_on_data_loss, {{"fail", true}, {"skip", false}});
      OneOf(n, "assignment", &s.group_membership, {{"group", true}, {"all", false}});
      if (const YAML::Node rc = n["rate_control"]) {
        if (Keys(rc, "rate_control", {"initial_rate", "min_rate"})) {
          s.rate_control = true;
          Integer(rc, "initial_rate", &s.initial_rate, 1, kMaxRecordsPerBatch);
          Integer(rc, "min_rate", &s.min_rate, 1, kMaxRecordsPerBatch);
        }
      }
      if (Duration(n, "request_timeout", &s.request_timeout_ms) &&
          (s.request_timeout_ms < 100 || s.request_timeout_ms > 3600000)) {
        Error(n["request_timeout"], "request_timeout must be between 100ms and 1h");
      }
      Librdkafka(n, &s.librdkafka);
    }
    c->sources[name] = std::move(s);
  }

  void Aggregate(const std::string& name, const YAML::Node& n, streaming::AggregationOptions* q) {
    AggregateSpec spec;
    spec.name = name;
    if (n.IsScalar()) {
      if (n.Scalar() != "count") {
        Error(n, fmt::format("aggregate {}: '{}' is not an aggregate (count, or a mapping with "
                             "count_distinct, count_values, sum, min or max)",
                             name, n.Scalar()));
        return;
      }
      spec.kind = AggregateSpec::Kind::kCount;
      q->aggregates.push_back(spec);
      return;
    }
    if (!Keys(n, "aggregate " + name,
              {"count_distinct", "count_values", "sum", "min", "max", "approx", "precision",
               "top_k"})) {
      return;
    }
    int kinds = 0;
    const std::pair<const char*, AggregateSpec::Kind> kKinds[] = {
        {"count_distinct", AggregateSpec::Kind::kCountDistinct},
        {"count_values", AggregateSpec::Kind::kCountValues},
        {"sum", AggregateSpec::Kind::kSum},
        {"min", AggregateSpec::Kind::kMin},
        {"max", AggregateSpec::Kind::kMax}};
    for (const auto& [key, kind] : kKinds) {
      if (String(n, key, &spec.field)) {
        spec.kind = kind;
        ++kinds;
      }
    }
    if (kinds != 1) {
      Error(n, fmt::format("aggregate {} needs exactly one of count_distinct, count_values, sum, "
                           "min, max",
                           name));
      return;
    }
    if (const YAML::Node approx = n["approx"]) {
      bool is_approx = false;
      if (!YAML::convert<bool>::decode(approx, is_approx)) {
        Error(approx, "'approx' must be true or false");
      } else if (is_approx) {
        if (spec.kind != AggregateSpec::Kind::kCountDistinct) {
          Error(approx, "'approx' applies to count_distinct only");
        }
        spec.kind = AggregateSpec::Kind::kApproxDistinct;
      }
    }
    Integer(n, "precision", &spec.hll_precision, 4, 18);
    Integer(n, "top_k", &spec.top_k, 1, 1'000'000);
    q->aggregates.push_back(spec);
  }

  // where: [ { field: F, equals: V } | { field: F, not_equals: V } | { field: F, prefix: V } ]
  void Where(const YAML::Node& n, streaming::AggregationOptions* a) {
    if (!n.IsSequence() || n.size() == 0) {
      Error(n, "'where' must be a non-empty list of { field: F, equals|not_equals|prefix: V }");
      return;
    }
    for (const YAML::Node& item : n) {
      if (!item.IsMap()) {
        Error(item, "a 'where' condition must be a mapping { field: F, equals: V }");
        continue;
      }
      if (!Keys(item, "where condition", {"field", "equals", "not_equals", "prefix"})) continue;
      streaming::FieldCondition c;
      if (!String(item, "field", &c.field, true)) continue;
      int ops = 0;
      for (auto [key, op] : {std::pair{"equals", streaming::FieldCondition::Op::kEquals},
                             std::pair{"not_equals", streaming::FieldCondition::Op::kNotEquals},
                             std::pair{"prefix", streaming::FieldCondition::Op::kPrefix}}) {
        if (String(item, key, &c.value)) {
          c.op = op;
          ++ops;
        }
      }
      if (ops != 1) {
        Error(item, "a 'where' condition needs exactly one of equals, not_equals, prefix");
        continue;
      }
      a->where.push_back(std::move(c));
    }
  }

  // librdkafka: { property: value, ... }, passed through.
  void Librdkafka(const YAML::Node& parent, std::map<std::string, std::string>* out) {
    const YAML::Node props = parent["librdkafka"];
    if (!props) return;
    if (!props.IsMap()) {
      Error(props, "'librdkafka' must be a mapping of property: value");
      return;
    }
    for (auto it = props.begin(); it != props.end(); ++it) {
      (*out)[it->first.as<std::string>()] = it->second.as<std::string>();
    }
  }

  void Query(const YAML::Node& n, std::set<std::string>* names, Config* c) {
    if (!Keys(n, "query",
              {"name", "source", "batch_interval", "event_time", "window", "allowed_lateness",
               "group_by", "aggregates", "output_mode", "on_invalid", "dead_letter", "late_output",
               "sinks", "shuffle_partitions", "on_definition_change", "where"})) {
      return;
    }
    QueryConfig q;
    auto& a = q.aggregation;
    if (String(n, "name", &a.name, true) && SafeName(n["name"], "query name", a.name) &&
        !names->insert(a.name).second) {
      Error(n["name"], fmt::format("duplicate query name '{}'", a.name));
    }
    if (String(n, "source", &q.source, true) && !c->sources.contains(q.source)) {
      Error(n["source"], fmt::format("unknown source '{}'", q.source));
    }
    Duration(n, "batch_interval", &q.batch_interval_ms, false, kHourMs);
    if (const YAML::Node et = n["event_time"]) {
      if (Keys(et, "event_time", {"field", "max_future"})) {
        String(et, "field", &a.time_field, true);
        Duration(et, "max_future", &a.max_future_ms);
      }
    } else {
      Error(n, "missing required key 'event_time' (e.g. event_time: { field: ts })");
    }
    if (const YAML::Node w = n["window"]) {
      if (w.IsScalar()) {
        Duration(n, "window", &a.window.length_ms);
        a.window.slide_ms = a.window.length_ms;
      } else if (Keys(w, "window", {"length", "slide"})) {
        Duration(w, "length", &a.window.length_ms, true);
        a.window.slide_ms = a.window.length_ms;
        Duration(w, "slide", &a.window.slide_ms);
      }
      if (kDayMs % a.window.length_ms != 0) {
        Error(w, "window length must divide a day (e.g. 1m, 15m, 1h, 1d)");
      } else if (a.window.length_ms % 1000 != 0 || a.window.slide_ms % 1000 != 0) {
        // An output record's ts (and so its _id) names the window start to the second.
        Error(w, "window length and slide must be whole seconds");
      } else if (a.window.slide_ms > a.window.length_ms ||
                 a.window.length_ms % a.window.slide_ms != 0) {
        Error(w, "window slide must divide the window length");
      } else if (a.window.length_ms / a.window.slide_ms > kMaxWindowsPerEvent) {
        Error(w, fmt::format("a window of {} sliding by {} puts each event in {} windows; at most "
                             "{} are allowed",
                             FormatDuration(a.window.length_ms), FormatDuration(a.window.slide_ms),
                             a.window.length_ms / a.window.slide_ms, kMaxWindowsPerEvent));
      }
    } else {
      Error(n, "missing required key 'window' (e.g. window: 1h)");
    }
    Duration(n, "allowed_lateness", &a.allowed_lateness_ms, false, kMaxDurationMs,
             /*allow_zero=*/true);
    std::set<std::string> output_fields = {"_id", "ts", "freq", "metrics"};
    if (const YAML::Node g = n["group_by"]; g && g.IsSequence() && g.size() > 0) {
      for (const auto& f : g) {
        const std::string field = f.as<std::string>();
        if (kAggregatesApiParameters.contains(field)) {
          Error(f, fmt::format("group field '{}' would be read as the aggregates API's own "
                               "parameter '{}'; rename it in the query",
                               field, field));
        } else if (!output_fields.insert(field).second) {
          Error(f, fmt::format("group field '{}' collides with an output record field", field));
        }
        a.group_by.push_back(field);
      }
    } else {
      Error(g ? g : n, "'group_by' must be a non-empty list of fields");
    }
    if (const YAML::Node aggs = n["aggregates"]; aggs && aggs.IsMap() && aggs.size() > 0) {
      for (auto it = aggs.begin(); it != aggs.end(); ++it) {
        const std::string name = it->first.as<std::string>();
        Aggregate(name, it->second, &a);
        // Map aggregates sit beside the group fields at the record's top level (scalars go
        // under `metrics`, where only aggregates are).
        if (!a.aggregates.empty() && a.aggregates.back().name == name &&
            a.aggregates.back().is_map() && output_fields.contains(name)) {
          Error(it->first, fmt::format("aggregate name '{}' collides with an output record field "
                                       "(_id, ts, freq, metrics or a group field)",
                                       name));
        }
      }
    } else {
      Error(aggs ? aggs : n, "'aggregates' must be a non-empty mapping of name: aggregate");
    }
    std::string mode;
    if (OneOf(n, "output_mode", &mode, {"update", "final"})) {
      a.output_mode =
          mode == "final" ? streaming::OutputMode::kFinal : streaming::OutputMode::kUpdate;
    }
    std::string invalid;
    if (OneOf(n, "on_invalid", &invalid, {"fail", "skip", "dead_letter"})) {
      a.on_invalid = invalid == "fail"   ? streaming::OnInvalid::kFail
                     : invalid == "skip" ? streaming::OnInvalid::kSkip
                                         : streaming::OnInvalid::kDeadLetter;
    }
    if (const YAML::Node dl = n["dead_letter"]) {
      if (Keys(dl, "dead_letter", {"path"})) String(dl, "path", &q.dead_letter_path, true);
    }
    if (const YAML::Node lo = n["late_output"]) {
      if (Keys(lo, "late_output", {"path"})) String(lo, "path", &q.late_output_path, true);
    }
    if (a.on_invalid == streaming::OnInvalid::kDeadLetter && q.dead_letter_path.empty()) {
      Error(n["on_invalid"], "on_invalid: dead_letter needs dead_letter: { path: DIR }");
    }
    Integer(n, "shuffle_partitions", &a.shuffle_partitions, 1, 4096);
    if (const YAML::Node where = n["where"]) Where(where, &a);
    std::string on_change;
    if (OneOf(n, "on_definition_change", &on_change, {"fail", "reset"})) {
      a.reset_on_definition_change = on_change == "reset";
    }
    a.retention_ms = c->state_retention_ms;
    if (const YAML::Node sinks = n["sinks"]) {
      if (!sinks.IsSequence()) {
        Error(sinks, "'sinks' must be a list");
      } else {
        for (const auto& s : sinks) {
          SinkConfig sink;
          if (!Keys(s, "sink", {"type", "path", "bootstrap_servers", "topic", "librdkafka"})) {
            continue;
          }
          if (!OneOf(s, "type", &sink.type,
                     {{"json_files", SinkType::kJsonFiles}, {"kafka", SinkType::kKafka}})) {
            continue;
          }
          if (sink.type == SinkType::kJsonFiles) {
            String(s, "path", &sink.path, true);
            for (const char* key : {"bootstrap_servers", "topic", "librdkafka"}) {
              if (s[key]) Error(s[key], fmt::format("'{}' is for kafka sinks", key));
            }
          } else {
            String(s, "bootstrap_servers", &sink.bootstrap_servers, true);
            String(s, "topic", &sink.topic, true);
            Librdkafka(s, &sink.librdkafka);
            if (s["path"]) Error(s["path"], "'path' is for json_files sinks");
          }
          q.sinks.push_back(sink);
        }
      }
    }
    OutputDirs(n, q, c->state_dir);
    c->queries.push_back(std::move(q));
  }

  // The directories a query writes (PATH/QUERY of each JSON sink, dead letters, late output)
  // may not be one another, nor one inside another, nor inside the state directory: two
  // writers of one batch=N directory replace each other's files.
  void OutputDirs(const YAML::Node& n, const QueryConfig& q, const std::string& state_dir) {
    namespace fs = std::filesystem;
    auto normal = [](const std::string& path) {
      std::error_code ec;
      fs::path p = fs::absolute(path, ec);
      return (ec ? fs::path(path) : p).lexically_normal();
    };
    auto inside = [](const fs::path& a, const fs::path& b) {  // a is b or under it
      auto [ai, bi] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
      return bi == b.end() || (bi->empty() && std::next(bi) == b.end());
    };
    std::vector<std::pair<fs::path, std::string>> mine;
    const std::string& name = q.aggregation.name;
    for (size_t i = 0; i < q.sinks.size(); ++i) {
      if (q.sinks[i].type != SinkType::kJsonFiles) continue;
      mine.emplace_back(normal(q.sinks[i].path) / name,
                        fmt::format("sink {} of query {}", i + 1, name));
    }
    if (!q.dead_letter_path.empty()) {
      mine.emplace_back(normal(q.dead_letter_path) / name, "dead_letter of query " + name);
    }
    if (!q.late_output_path.empty()) {
      mine.emplace_back(normal(q.late_output_path) / name, "late_output of query " + name);
    }
    // Outputs may live under state_dir (a systemd unit can write only there), but not over
    // the state's own files: db/ (and db.broken-*, db.new), checkpoints/, LOCK.
    const fs::path state = normal(state_dir);
    for (size_t i = 0; i < mine.size(); ++i) {
      const fs::path& dir = mine[i].first;
      const fs::path rel = dir.lexically_relative(state);  // "db/..." when under state_dir
      const std::string first = rel.empty() ? "" : rel.begin()->string();
      const bool state_file =
          first == "." || first.starts_with("db") || first == "checkpoints" || first == "LOCK";
      if (state_file || inside(state, dir)) {
        Error(n, fmt::format("{} writes {}, over the state in service.state_dir {}", mine[i].second,
                             dir.string(), state.string()));
      }
      auto overlap = [&](const std::pair<fs::path, std::string>& other) {
        if (inside(mine[i].first, other.first) || inside(other.first, mine[i].first)) {
          Error(n, fmt::format("{} and {} write overlapping directories ({} and {})", other.second,
                               mine[i].second, other.first.string(), mine[i].first.string()));
        }
      };
      for (size_t j = 0; j < i; ++j) overlap(mine[j]);
      for (const auto& other : output_dirs_) overlap(other);
    }
    output_dirs_.insert(output_dirs_.end(), mine.begin(), mine.end());
  }

 private:
  static bool FileExists(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

  std::string file_;
  std::vector<ConfigError>* errors_;
  // Output directories of the queries validated so far, with what writes them.
  std::vector<std::pair<std::filesystem::path, std::string>> output_dirs_;
};

}  // namespace

std::string ConfigError::ToString() const {
  return fmt::format("{}:{}:{}: {}", file, line, column, message);
}

std::optional<int64_t> ParseDuration(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 12) return std::nullopt;
  const int64_t n = std::stoll(std::string(text.substr(0, i)));
  const std::string_view unit = text.substr(i);
  if (unit == "ms") return n;
  if (unit == "s") return Times(n, 1000);
  if (unit == "m" || unit == "min") return Times(n, 60'000);
  if (unit == "h") return Times(n, 3'600'000);
  if (unit == "d") return Times(n, kDayMs);
  return std::nullopt;
}

std::optional<int64_t> ParseSize(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 15) return std::nullopt;
  const int64_t n = std::stoll(std::string(text.substr(0, i)));
  const std::string_view unit = text.substr(i);
  if (unit.empty() || unit == "B") return n;
  if (unit == "KiB") return Times(n, int64_t{1} << 10);
  if (unit == "MiB") return Times(n, int64_t{1} << 20);
  if (unit == "GiB") return Times(n, int64_t{1} << 30);
  if (unit == "KB") return Times(n, 1000);
  if (unit == "MB") return Times(n, 1000'000);
  if (unit == "GB") return Times(n, 1000'000'000);
  return std::nullopt;
}

Result<Config> LoadConfig(const std::string& path, std::vector<ConfigError>* errors) {
  auto text = ReadFile(path, kMaxConfigBytes);
  if (!text.ok()) {
    errors->push_back(
        {path, 1, 1, fmt::format("cannot read the config: {}", text.status().message())});
    return Status::InvalidArgument("invalid config");
  }
  return ParseConfig(*text, path, errors);
}

Result<Config> ParseConfig(const std::string& text, const std::string& path,
                           std::vector<ConfigError>* errors) {
  const std::string expanded = Interpolate(text, path, errors);
  YAML::Node root;
  try {
    root = YAML::Load(expanded);
  } catch (const YAML::ParserException& e) {
    errors->push_back({path, e.mark.line + 1, e.mark.column + 1, e.msg});
    return Status::InvalidArgument("invalid config");
  }
  Config c;
  c.file = path;
  Validator v(path, errors);
  try {
    if (!root.IsMap()) {
      errors->push_back(
          {path, 1, 1, "the config must be a mapping with service, engine, sources, queries"});
      return Status::InvalidArgument("invalid config");
    }
    v.Keys(root, "the config", {"service", "engine", "checkpoint", "state", "sources", "queries"});
    if (root["service"]) v.Service(root["service"], &c);
    if (root["engine"]) v.Engine(root["engine"], &c);
    if (root["checkpoint"]) v.Checkpoint(root["checkpoint"], &c);
    if (root["state"]) v.State(root["state"], &c);
    v.MemoryShares(root, c);
    if (const YAML::Node sources = root["sources"]; sources && sources.IsMap()) {
      for (auto it = sources.begin(); it != sources.end(); ++it) {
        const std::string name = it->first.as<std::string>();
        if (v.SafeName(it->first, "source name", name)) v.Source(name, it->second, &c);
      }
    } else {
      v.Error(sources ? sources : root, "'sources' must be a mapping of name: source");
    }
    if (const YAML::Node queries = root["queries"]; queries && queries.IsSequence()) {
      std::set<std::string> names;
      for (const auto& q : queries) v.Query(q, &names, &c);
    } else {
      v.Error(queries ? queries : root, "'queries' must be a list");
    }
  } catch (const YAML::Exception& e) {  // a conversion the checks above did not foresee
    errors->push_back({path, e.mark.line + 1, e.mark.column + 1, e.msg});
  }
  if (!errors->empty()) return Status::InvalidArgument("invalid config");
  return c;
}

}  // namespace runnel::service
