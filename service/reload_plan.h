// What a config reload changes: the difference between the config the service runs and the
// file as it now stands, decided without touching anything (the service applies it between
// batches). Pure: no I/O, unit-tested on its own.
//
// Per query (by name):
//   - in the file only: started;
//   - running only: stopped after its running batch (its state stays on disk);
//   - its definition (AggregationQuery::DefinitionText: group_by, event time, window, lateness,
//     aggregates, where) changed: refused and kept running as it is, unless the file sets
//     `on_definition_change: reset`, which rebuilds it on fresh state;
//   - anything else of it changed (batch interval, sinks, output mode, on_invalid, dead-letter
//     and late outputs, retention), or its source's settings did: restarted between batches with
//     the new settings, from its committed batch;
//   - nothing changed: left alone.
// Settings that are read once at start (the listen address, the state directory, the engine's
// workers and memory budget, checkpointing, the state store's cache sizes, the HTTP token and
// limits, the log format) are reported as needing a restart and keep their running values.
//
// Thread safety: values and pure functions.
#pragma once

#include <string>
#include <vector>

#include "service/config.h"

namespace runnel::service {

struct QueryChange {
  enum class Kind {
    kStart,    // a new query
    kStop,     // removed from the file
    kRestart,  // settings changed; the definition did not
    kReset,    // definition changed, with on_definition_change: reset
    kRefuse,   // definition changed, without reset: kept running as it is
  };
  std::string name;
  Kind kind = Kind::kStart;
  std::string why;  // what changed, for the log and the API
};

struct ReloadPlan {
  // The config to run from now on: the file's, except the restart-only settings and the
  // refused queries, which keep their running values.
  Config next;
  std::vector<std::string> needs_restart;  // "engine.workers: 2 -> 4", one per setting
  std::vector<QueryChange> changes;        // queries that change, in the file's order
};

ReloadPlan PlanReload(const Config& running, const Config& file);

// What a reload did to one query: outcome started, stopped, restarted, reset, refused, failed
// or unchanged, and why.
struct ReloadOutcome {
  int64_t at_ms = 0;  // when (epoch ms); 0: no reload yet
  std::string outcome;
  std::string message;
};

// What a reload did, as logged and as POST /v1/reload answers.
struct ReloadReport {
  // applied (all of the file is in effect), partial (valid, but something was refused, failed
  // to start or needs a restart), invalid (nothing changed), busy (another reload runs, or
  // the queries are starting: nothing done), stopping (the service drains: nothing done).
  std::string result;
  int64_t at_ms = 0;
  std::vector<std::string> errors;         // invalid: every error, as `validate` prints it
  std::vector<std::string> needs_restart;  // settings left as they are
  std::vector<std::pair<std::string, ReloadOutcome>> queries;  // each query changed
};

// What the change did, as logged and reported: started, stopped, restarted, reset, refused.
std::string OutcomeName(QueryChange::Kind kind);

}  // namespace runnel::service
