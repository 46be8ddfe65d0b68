#include "service/demo.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/file_util.h"
#include "common/logging.h"
#include "service/config.h"
#include "service/exit_codes.h"
#include "service/runner.h"
#include "sources/kafka_broker.h"
#include "sources/kafka_producer.h"

namespace runnel::service {

int RunDemo(const DemoOptions& options) {
  auto log = Logger("demo");
  // Every thread started below inherits this mask: SIGTERM/SIGINT go to the service's sigwait.
  BlockTerminationSignals();

  auto broker = sources::EmbeddedBroker::Start({.brokers = 1, .topics = {{"clicks", 8}}});
  if (!broker.ok()) {
    log->error("{}", broker.status().ToString());
    return kExitFailure;
  }
  const char* dir_env = std::getenv("RUNNEL_DEMO_DIR");  // NOLINT(concurrency-mt-unsafe)
  const std::string dir = dir_env ? dir_env : "./var/demo-kafka";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);  // each demo starts from nothing
  if (Status st = MakeDirs(dir); !st.ok()) {
    log->error("{}", st.ToString());
    return kExitFailure;
  }
  ::setenv("KAFKA_BOOTSTRAP", (*broker)->bootstrap().c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  ::setenv("RUNNEL_DEMO_DIR", dir.c_str(), 1);                     // NOLINT(concurrency-mt-unsafe)
  const std::string config_path = dir + "/demo.yaml";
  if (Status st = WriteFileAtomically(config_path, DemoConfigYaml()); !st.ok()) {
    log->error("{}", st.ToString());
    return kExitFailure;
  }
  std::vector<ConfigError> errors;
  auto config = LoadConfig(config_path, &errors);
  for (const auto& e : errors) std::cerr << e.ToString() << "\n";
  if (!config.ok()) return kExitConfig;

  const int64_t events = static_cast<int64_t>(options.events_per_second *
                                              static_cast<double>(options.duration_ms) / 1000.0);
  std::cout << fmt::format(
                   "Runnel demo: broker {} (topic clicks, 8 partitions), {} events at {:.0f}/s "
                   "over {} s.\n"
                   "  metrics:    http://{}/metrics\n"
                   "  queries:    http://{}/v1/queries/hourly_pages\n"
                   "  aggregates: http://{}/v1/queries/hourly_pages/aggregates?customer=a.com\n"
                   "  output:     {}/out/hourly_pages/batch=N/part-NNNNN.jsonl\n",
                   (*broker)->bootstrap(), events, options.events_per_second,
                   options.duration_ms / 1000, config->http_listen, config->http_listen,
                   config->http_listen, dir)
            << std::flush;

  std::atomic<bool> stop{false};
  std::atomic<int64_t> produced{0};
  std::jthread generator([&] {
    // Time-ordered over 2017-09-17, so hours fill and close as the demo runs.
    Status st = sources::ProduceEvents(
        {.events = events, .seed = 1, .customers = 2, .ordered_disorder_seconds = 120},
        {.bootstrap_servers = (*broker)->bootstrap(),
         .topic = "clicks",
         .events_per_second = options.events_per_second},
        &stop, &produced);
    if (!st.ok()) log->error("generator: {}", st.ToString());
  });
  std::jthread timer([&](std::stop_token token) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    cv.wait_for(lock, token, std::chrono::milliseconds(options.duration_ms), [] { return false; });
    stop = true;
    if (!token.stop_requested()) kill(getpid(), SIGTERM);
  });
  const int code = RunService(*config, {.available_now = false, .progress_log_ms = 5000});
  stop = true;
  timer.request_stop();
  generator.join();
  std::cout << fmt::format("Demo over: {} events produced. State in {}/state, output in {}/out.\n",
                           produced.load(), dir, dir);
  return code;
}

}  // namespace runnel::service
