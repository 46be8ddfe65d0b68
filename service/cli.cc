#include "service/cli.h"

#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "common/build_info.h"
#include "common/logging.h"
#include "service/exit_codes.h"

namespace runnel {
namespace {

// What the command line asked for; filled by CLI11, read by the subcommand that runs.
struct CliOptions {
  std::string log_format = "text";
  std::string log_level = "info";

  std::string config_path;
  bool available_now = false;
  std::string duration = "60s";
  int brokers = 1;
  std::vector<std::string> topics;
  int64_t events = 0;
  uint64_t seed = 1;
  std::string out_path;
  std::string bootstrap;
  std::string topic;
  std::string state_dir;
  bool json = false;
};

int NotImplemented(std::string_view command) {
  std::cerr << fmt::format("runnel {}: not implemented in this build ({} {})\n", command,
                           BuildVersion(), BuildCommit());
  return kExitUnavailable;
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
  app.add_option("--log-format", opts.log_format, "Log format: text or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", opts.log_level, "trace|debug|info|warn|error|critical|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  auto* run = app.add_subcommand("run", "Serve the queries of a config file");
  run->add_option("--config", opts.config_path, "YAML config file")->required();
  run->add_flag("--available-now", opts.available_now,
                "Process what the sources hold now, checkpoint, exit 0");
  run->callback([&] { action = [] { return NotImplemented("run"); }; });

  auto* validate = app.add_subcommand("validate", "Check a config file; exit 78 listing errors");
  validate->add_option("--config", opts.config_path, "YAML config file")->required();
  validate->callback([&] { action = [] { return NotImplemented("validate"); }; });

  auto* demo = app.add_subcommand("demo", "Embedded broker + generator + service");
  demo->add_option("--duration", opts.duration, "How long to run, e.g. 60s");
  demo->callback([&] { action = [] { return NotImplemented("demo"); }; });

  auto* broker = app.add_subcommand("broker", "Kafka-protocol test broker (librdkafka mock)");
  broker->add_option("--brokers", opts.brokers, "Number of brokers")->check(CLI::Range(1, 16));
  broker->add_option("--topic", opts.topics, "NAME:PARTITIONS, repeatable");
  broker->callback([&] { action = [] { return NotImplemented("broker"); }; });

  auto* gen = app.add_subcommand("gen", "Generate the seed click workload");
  gen->add_option("--events", opts.events, "Number of events")
      ->required()
      ->check(CLI::NonNegativeNumber);
  gen->add_option("--seed", opts.seed, "Random seed");
  auto* out = gen->add_option("--out", opts.out_path, "Write JSON lines to FILE");
  auto* bootstrap = gen->add_option("--bootstrap", opts.bootstrap, "Kafka bootstrap servers");
  gen->add_option("--topic", opts.topic, "Kafka topic")->needs(bootstrap);
  out->excludes(bootstrap);
  gen->callback([&] { action = [] { return NotImplemented("gen"); }; });

  auto* checkpoint = app.add_subcommand("checkpoint", "List, inspect or verify checkpoints");
  checkpoint->require_subcommand(1);
  for (const char* verb : {"list", "inspect", "verify"}) {
    auto* sub = checkpoint->add_subcommand(verb, std::string(verb) + " checkpoints");
    sub->add_option("--state-dir", opts.state_dir, "The service's state_dir")->required();
    sub->add_flag("--json", opts.json, "Print JSON instead of text");
    sub->callback([&, verb] {
      action = [verb] { return NotImplemented(fmt::format("checkpoint {}", verb)); };
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
