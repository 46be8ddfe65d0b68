// The service configuration: YAML, with ${VAR} and ${VAR:-default} interpolation, validated in
// full before anything starts. Every problem is reported as file:line:col: message; unknown
// keys are errors. See README.md ("Configuration") for every key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "streaming/aggregation_query.h"

namespace runnel::service {

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based
  int column = 0;
  std::string message;
  std::string ToString() const;
};

enum class SourceType { kFile, kKafka };
enum class SinkType { kJsonFiles, kKafka };

struct SourceConfig {
  std::string name;
  SourceType type = SourceType::kKafka;  // type: file | kafka
  // file
  std::string path;
  int64_t max_records_per_batch = 100000;
  // file: whole lines, a longer one goes alone; kafka: estimated from the previous batch's
  // average message size (16 KiB a message before the first batch)
  int64_t max_bytes_per_batch = int64_t{256} << 20;
  // kafka
  std::string bootstrap_servers;
  std::vector<std::string> topics;
  std::string group_id = "runnel";
  bool start_at_earliest = true;  // starting_offsets: earliest | latest
  int64_t max_records_per_partition = 200000;
  bool fail_on_data_loss = true;  // on_data_loss: fail | skip
  // assignment: group (join group_id and read the partitions it assigns) | all (read every
  // partition).
  bool group_membership = true;
  // How long one broker request (metadata, offsets, a range read) may wait before the batch
  // fails and is retried.
  int64_t request_timeout_ms = 30000;
  // Backpressure (rate_control: { initial_rate, min_rate }, records per second).
  bool rate_control = false;
  int64_t initial_rate = 100000;
  int64_t min_rate = 100;
  std::map<std::string, std::string> librdkafka;
  bool operator==(const SourceConfig&) const = default;
};

struct SinkConfig {
  SinkType type = SinkType::kJsonFiles;  // type: json_files | kafka
  std::string path;                      // json_files
  // kafka
  std::string bootstrap_servers;
  std::string topic;
  std::map<std::string, std::string> librdkafka;
  bool operator==(const SinkConfig&) const = default;
};

struct QueryConfig {
  std::string source;
  int64_t batch_interval_ms = 1000;
  streaming::AggregationOptions aggregation;
  std::vector<SinkConfig> sinks;
  std::string dead_letter_path;  // on_invalid: dead_letter writes here (JSON lines)
  std::string late_output_path;  // late records are written here too, when set
  bool operator==(const QueryConfig&) const = default;
};

struct Config {
  std::string file;
  // service
  std::string http_listen = "127.0.0.1:9464";
  std::string state_dir = "./var/state";
  std::string log_format = "text";
  std::string http_token_file;  // a file holding the bearer token /v1/* requests need
  std::string http_token;       // its content without surrounding whitespace (read at load)
  // Serve /v1 without a token on a non-loopback address (refused by validate otherwise).
  bool http_allow_unauthenticated = false;
  int64_t http_max_connections = 256;  // more are answered 503 and closed
  int64_t shutdown_timeout_ms = 20000;
  // engine
  int workers = 2;
  int64_t memory_budget_bytes = int64_t{1} << 30;
  // checkpoint
  int64_t checkpoint_every_ms = 30000;   // 0 when counted in batches
  int64_t checkpoint_every_batches = 0;  // "every: N batches" (batches of all queries)
  int checkpoint_keep = 3;
  // state
  int64_t state_retention_ms = 48LL * 3600 * 1000;
  // Shares of memory_budget; 0: derived (see StateCacheBytes, StateWriteBufferBytes).
  int64_t state_block_cache_bytes = 0;
  int64_t state_write_buffer_bytes = 0;

  std::map<std::string, SourceConfig> sources;
  std::vector<QueryConfig> queries;
};

// Loads and validates `path`. On failure, every problem found (not just the first).
Result<Config> LoadConfig(const std::string& path, std::vector<ConfigError>* errors);
// The same for a config's text; `path` only names it in errors.
Result<Config> ParseConfig(const std::string& text, const std::string& path,
                           std::vector<ConfigError>* errors);

// "500ms", "10s", "5m", "1h", "2d" -> milliseconds.
std::optional<int64_t> ParseDuration(std::string_view text);
// "1GiB", "512MiB", "64KiB", "100MB", "4096" -> bytes.
std::optional<int64_t> ParseSize(std::string_view text);

// How engine.memory_budget is split (README, "Memory"): the state store's share is its block
// cache, which holds the memtables too (charged to it, up to the write buffer) and the index and
// filter blocks; the engine gets the rest. Defaults: a quarter of the budget for the cache, half
// the cache for memtables.
inline int64_t StateCacheBytes(const Config& c) {
  return c.state_block_cache_bytes > 0 ? c.state_block_cache_bytes : c.memory_budget_bytes / 4;
}
inline int64_t StateWriteBufferBytes(const Config& c) {
  return c.state_write_buffer_bytes > 0 ? c.state_write_buffer_bytes : StateCacheBytes(c) / 2;
}
inline int64_t EngineMemoryBytes(const Config& c) {
  return c.memory_budget_bytes - StateCacheBytes(c);
}

}  // namespace runnel::service
