#include "service/reload_plan.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace runnel::service {
namespace {

// Keeps the running value of each restart-only setting in `next`, and names those that differ.
class RestartOnly {
 public:
  RestartOnly(const Config& running, Config* next) : running_(running), next_(next) {}

  template <typename T>
  void Check(std::string_view key, T Config::*field) {
    const T& was = running_.*field;
    T& now = next_->*field;
    if (was == now) return;
    needs_restart.push_back(fmt::format("{}: {} -> {}", key, was, now));
    now = was;
  }
  // A setting whose values are not to be logged (the token).
  template <typename T>
  void CheckQuietly(std::string_view key, T Config::*field) {
    if (running_.*field == next_->*field) return;
    needs_restart.push_back(fmt::format("{}: changed", key));
    next_->*field = running_.*field;
  }

  std::vector<std::string> needs_restart;

 private:
  const Config& running_;
  Config* const next_;
};

// What differs between two configs of one query (and its source), for the log.
std::vector<std::string> SettingsChanged(const QueryConfig& a, const SourceConfig* source_a,
                                         const QueryConfig& b, const SourceConfig* source_b) {
  std::vector<std::string> out;
  if (a.source != b.source) out.push_back(fmt::format("source: {} -> {}", a.source, b.source));
  if (a.batch_interval_ms != b.batch_interval_ms) {
    out.push_back(
        fmt::format("batch_interval: {}ms -> {}ms", a.batch_interval_ms, b.batch_interval_ms));
  }
  if (a.sinks != b.sinks) out.push_back("sinks");
  if (a.dead_letter_path != b.dead_letter_path) out.push_back("dead_letter");
  if (a.late_output_path != b.late_output_path) out.push_back("late_output");
  const auto& x = a.aggregation;
  const auto& y = b.aggregation;
  if (x.output_mode != y.output_mode) out.push_back("output_mode");
  if (x.on_invalid != y.on_invalid) out.push_back("on_invalid");
  if (x.retention_ms != y.retention_ms) {
    out.push_back(fmt::format("retention: {}ms -> {}ms", x.retention_ms, y.retention_ms));
  }
  if (x.max_future_ms != y.max_future_ms || x.shuffle_partitions != y.shuffle_partitions ||
      x.max_record_bytes != y.max_record_bytes ||
      x.reset_on_definition_change != y.reset_on_definition_change) {
    out.push_back("query settings");
  }
  if (a.source == b.source && source_a != nullptr && source_b != nullptr &&
      !(*source_a == *source_b)) {
    out.push_back(fmt::format("source {} settings", a.source));
  }
  return out;
}

const SourceConfig* SourceOf(const Config& c, const QueryConfig& q) {
  auto it = c.sources.find(q.source);
  return it == c.sources.end() ? nullptr : &it->second;
}

}  // namespace

std::string OutcomeName(QueryChange::Kind kind) {
  switch (kind) {
    case QueryChange::Kind::kStart:
      return "started";
    case QueryChange::Kind::kStop:
      return "stopped";
    case QueryChange::Kind::kRestart:
      return "restarted";
    case QueryChange::Kind::kReset:
      return "reset";
    case QueryChange::Kind::kRefuse:
      return "refused";
  }
  return "?";
}

ReloadPlan PlanReload(const Config& running, const Config& file) {
  ReloadPlan plan{.next = file};
  Config& next = plan.next;
  RestartOnly restart(running, &next);
  restart.Check("service.http_listen", &Config::http_listen);
  restart.Check("service.state_dir", &Config::state_dir);
  restart.Check("service.log_format", &Config::log_format);
  restart.Check("service.http_token_file", &Config::http_token_file);
  restart.CheckQuietly("service.http_token_file's token", &Config::http_token);
  restart.Check("service.http_allow_unauthenticated", &Config::http_allow_unauthenticated);
  restart.Check("service.http_max_connections", &Config::http_max_connections);
  restart.Check("engine.workers", &Config::workers);
  restart.Check("engine.memory_budget", &Config::memory_budget_bytes);
  restart.Check("checkpoint.every (ms)", &Config::checkpoint_every_ms);
  restart.Check("checkpoint.every (batches)", &Config::checkpoint_every_batches);
  restart.Check("checkpoint.keep", &Config::checkpoint_keep);
  restart.Check("state.block_cache", &Config::state_block_cache_bytes);
  restart.Check("state.write_buffer", &Config::state_write_buffer_bytes);
  plan.needs_restart = std::move(restart.needs_restart);

  auto find = [](const std::vector<QueryConfig>& queries, const std::string& name) {
    return std::find_if(queries.begin(), queries.end(),
                        [&](const QueryConfig& q) { return q.aggregation.name == name; });
  };
  for (QueryConfig& q : next.queries) {
    const std::string& name = q.aggregation.name;
    auto was = find(running.queries, name);
    if (was == running.queries.end()) {
      plan.changes.push_back({name, QueryChange::Kind::kStart, "new in the config"});
      continue;
    }
    const std::string old_definition =
        streaming::AggregationQuery::DefinitionText(was->aggregation);
    const std::string new_definition = streaming::AggregationQuery::DefinitionText(q.aggregation);
    if (old_definition != new_definition) {
      const std::string why =
          fmt::format("definition changed (running: {}; file: {})", old_definition, new_definition);
      if (q.aggregation.reset_on_definition_change) {
        plan.changes.push_back({name, QueryChange::Kind::kReset, why});
        continue;
      }
      plan.changes.push_back({name, QueryChange::Kind::kRefuse,
                              why + "; kept running as it is: set on_definition_change: reset "
                                    "to rebuild its state, or rename the query"});
      q = *was;
      // It keeps reading its source, as that source is now configured (or as it was, when the
      // file no longer has it).
      if (!next.sources.contains(q.source)) next.sources[q.source] = running.sources.at(q.source);
    }
    const std::vector<std::string> changed =
        SettingsChanged(*was, SourceOf(running, *was), q, SourceOf(next, q));
    if (!changed.empty()) {
      const std::string why = fmt::format("{} changed", fmt::join(changed, ", "));
      if (old_definition != new_definition) {
        plan.changes.back().why += fmt::format("; restarted with its old definition ({})", why);
        continue;  // refused, and restarted for its source's settings
      }
      plan.changes.push_back({name, QueryChange::Kind::kRestart, why});
    }
  }
  for (const QueryConfig& q : running.queries) {
    if (find(next.queries, q.aggregation.name) == next.queries.end()) {
      plan.changes.push_back(
          {q.aggregation.name, QueryChange::Kind::kStop, "no longer in the config"});
    }
  }
  return plan;
}

}  // namespace runnel::service
