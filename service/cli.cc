#include "service/cli.h"

#include <sys/resource.h>

#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "common/build_info.h"
#include "common/logging.h"
#include "service/checkpoint_cli.h"
#include "service/config.h"
#include "service/demo.h"
#include "service/exit_codes.h"
#include "service/runner.h"
#include "sources/generator.h"
#include "sources/kafka_broker.h"
#include "sources/kafka_producer.h"

namespace runnel {
namespace {

// What the command line asked for; filled by CLI11, read by the subcommand that runs.
struct CliOptions {
  std::string log_format = "text";
  std::string log_level = "info";

  std::string config_path;
  bool available_now = false;
  std::string duration = "60s";
  double rate = 20000;
  double gen_rate = 0;
  int brokers = 1;
  std::vector<std::string> topics;
  int64_t events = 0;
  uint64_t seed = 1;
  int customers = 1;
  int64_t urls = 0;
  int64_t disorder_seconds = -1;
  double late_fraction = 0;
  double malformed_fraction = 0;
  bool unique_sessions = false;
  std::string out_path;
  std::string bootstrap;
  std::string topic;
  std::string state_dir;
  int64_t checkpoint_id = 0;
  bool json = false;
};

// Loads the config, printing every problem as file:line:col: message.
std::optional<service::Config> LoadOrReport(const std::string& path) {
  std::vector<service::ConfigError> errors;
  auto config = service::LoadConfig(path, &errors);
  for (const auto& e : errors) std::cerr << e.ToString() << "\n";
  if (!config.ok()) return std::nullopt;
  return std::move(config).value();
}

int Validate(const CliOptions& opts) {
  auto config = LoadOrReport(opts.config_path);
  if (!config) return kExitConfig;
  std::cout << fmt::format("{}: ok ({} sources, {} queries)\n", opts.config_path,
                           config->sources.size(), config->queries.size());
  return kExitOk;
}

// Raises the soft limit of open files to the hard one: spilled map outputs, RocksDB's table
// files and connections each hold a descriptor, and the usual soft limit (1024) is far below
// what a large shuffle or state needs (the systemd unit sets LimitNOFILE=65536 itself).
void RaiseOpenFilesLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const rlim_t was = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) {
    Logger("service")->debug("open files limit raised from {} to {}", was, limit.rlim_cur);
  }
}

int Run(const CliOptions& opts, bool log_format_given) {
  auto config = LoadOrReport(opts.config_path);
  if (!config) return kExitConfig;
  if (!log_format_given) {
    LoggingOptions logging;
    logging.format = *ParseLogFormat(config->log_format);
    logging.level = *ParseLogLevel(opts.log_level);
    ConfigureLogging(logging);
  }
  RaiseOpenFilesLimit();
  // A progress line (and systemd STATUS=) every 30 s while serving.
  return service::RunService(*config,
                             {.available_now = opts.available_now, .progress_log_ms = 30000});
}

int Broker(const CliOptions& opts) {
  sources::BrokerOptions broker{.brokers = opts.brokers};
  for (const std::string& spec : opts.topics) {
    auto topic = sources::ParseTopicSpec(spec);
    if (!topic.ok()) {
      std::cerr << "runnel broker: " << topic.status().message() << "\n";
      return kExitUsage;
    }
    broker.topics.push_back(*topic);
  }
  return sources::RunBroker(broker);
}

int Gen(const CliOptions& opts) {
  sources::GeneratorOptions gen{.events = opts.events,
                                .seed = opts.seed,
                                .customers = opts.customers,
                                .urls = opts.urls,
                                .ordered_disorder_seconds = opts.disorder_seconds,
                                .late_fraction = opts.late_fraction,
                                .malformed_fraction = opts.malformed_fraction,
                                .unique_sessions = opts.unique_sessions};
  if (opts.out_path.empty() && (opts.bootstrap.empty() || opts.topic.empty())) {
    std::cerr << "runnel gen: give --out FILE, or --bootstrap B --topic T\n";
    return kExitUsage;
  }
  Status st = opts.out_path.empty()
                  ? sources::ProduceEvents(gen, {.bootstrap_servers = opts.bootstrap,
                                                 .topic = opts.topic,
                                                 .events_per_second = opts.gen_rate})
                  : sources::GenerateToFile(gen, opts.out_path);
  if (!st.ok()) {
    std::cerr << "runnel gen: " << st.ToString() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

std::string VersionText() {
  return fmt::format("runnel {} (commit {})", BuildVersion(), BuildCommit());
}

}  // namespace

int RunCli(int argc, char** argv) {
  CliOptions opts;
  std::function<int()> action;

  CLI::App app{"Runnel: streaming queries as micro-batches of RDDs.", "runnel"};
  app.set_version_flag("--version", VersionText, "Print the version and git commit, then exit");
  app.require_subcommand(0, 1);
  app.option_defaults()->always_capture_default();
  auto* log_format = app.add_option("--log-format", opts.log_format,
                                    "Log format: text or json (default: the config's)")
                         ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", opts.log_level, "trace|debug|info|warn|error|critical|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  auto* run = app.add_subcommand("run", "Serve the queries of a config file");
  run->add_option("--config", opts.config_path, "YAML config file")->required();
  run->add_flag("--available-now", opts.available_now,
                "Process what the sources hold now, checkpoint, exit 0");
  run->callback([&] { action = [&] { return Run(opts, log_format->count() > 0); }; });

  auto* validate = app.add_subcommand("validate", "Check a config file; exit 78 listing errors");
  validate->add_option("--config", opts.config_path, "YAML config file")->required();
  validate->callback([&] { action = [&] { return Validate(opts); }; });

  auto* demo = app.add_subcommand("demo", "Embedded broker + generator + service");
  demo->add_option("--duration", opts.duration, "How long to run, e.g. 60s");
  demo->add_option("--rate", opts.rate, "Events per second the generator produces");
  demo->callback([&] {
    action = [&]() -> int {
      auto ms = service::ParseDuration(opts.duration);
      if (!ms) {
        std::cerr << "runnel demo: --duration " << opts.duration << " is not a duration\n";
        return kExitUsage;
      }
      return service::RunDemo({.duration_ms = *ms, .events_per_second = opts.rate});
    };
  });

  auto* broker = app.add_subcommand("broker", "Kafka-protocol test broker (librdkafka mock)");
  broker->add_option("--brokers", opts.brokers, "Number of brokers")->check(CLI::Range(1, 16));
  broker->add_option("--topic", opts.topics, "NAME:PARTITIONS, repeatable");
  broker->callback([&] { action = [&] { return Broker(opts); }; });

  auto* gen = app.add_subcommand("gen", "Generate the seed click workload");
  gen->add_option("--events", opts.events, "Number of events")
      ->required()
      ->check(CLI::NonNegativeNumber);
  gen->add_option("--seed", opts.seed, "Random seed");
  auto* out = gen->add_option("--out", opts.out_path, "Write JSON lines to FILE");
  auto* bootstrap = gen->add_option("--bootstrap", opts.bootstrap, "Kafka bootstrap servers");
  gen->add_option("--topic", opts.topic, "Kafka topic")->needs(bootstrap);
  gen->add_option("--rate", opts.gen_rate,
                  "With --bootstrap: events per second (0: as fast as possible)");
  gen->add_option("--customers", opts.customers, "Customers: a.com, c1.example, ...")
      ->check(CLI::Range(1, 1000));
  gen->add_option("--urls", opts.urls,
                  "Distinct urls per customer (default: the cube root of --events)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  gen->add_option(
      "--disorder", opts.disorder_seconds,
      "Time-ordered events, each up to this many seconds early (default: random order)");
  gen->add_option("--late-fraction", opts.late_fraction, "Events moved 4h back")
      ->check(CLI::Range(0.0, 1.0));
  gen->add_option("--malformed-fraction", opts.malformed_fraction, "Lines that are not JSON")
      ->check(CLI::Range(0.0, 1.0));
  gen->add_flag("--unique-sessions", opts.unique_sessions,
                "A distinct session_id per event (for distinct-count memory tests)");
  out->excludes(bootstrap);
  gen->callback([&] { action = [&] { return Gen(opts); }; });

  auto* checkpoint = app.add_subcommand("checkpoint", "List, inspect or verify checkpoints");
  checkpoint->require_subcommand(1);
  for (const char* verb : {"list", "inspect", "verify"}) {
    auto* sub = checkpoint->add_subcommand(verb, std::string(verb) + " checkpoints");
    sub->add_option("--state-dir", opts.state_dir, "The service's state_dir")->required();
    sub->add_flag("--json", opts.json, "Print JSON instead of text");
    if (std::string_view(verb) != "list") {
      sub->add_option("--id", opts.checkpoint_id, "One checkpoint (default: newest / all)");
    }
    sub->callback([&, verb] {
      action = [&, verb] {
        return service::RunCheckpointCommand({.verb = verb,
                                              .state_dir = opts.state_dir,
                                              .id = opts.checkpoint_id,
                                              .json = opts.json});
      };
    });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  LoggingOptions logging;
  logging.format = *ParseLogFormat(opts.log_format);
  logging.level = *ParseLogLevel(opts.log_level);
  ConfigureLogging(logging);

  if (!action) {
    std::cerr << "runnel: a subcommand is required\nRun with --help for more information.\n";
    return kExitUsage;
  }
  return action();
}

}  // namespace runnel
