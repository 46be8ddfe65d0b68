// Produces the seed workload to a Kafka topic (`runnel gen --bootstrap`, `runnel demo`).
// Messages are keyed by url, so one page's events stay in one partition, in time order.
#pragma once

#include <atomic>
#include <string>

#include "sources/generator.h"

namespace runnel::sources {

struct ProduceOptions {
  std::string bootstrap_servers;
  std::string topic;
  double events_per_second = 0;  // 0: as fast as possible
};

// Produces `gen.events` events (stops early when `stop` becomes true) and waits until the
// broker acknowledged them. `produced` (optional) counts acknowledged events as they go.
Status ProduceEvents(const GeneratorOptions& gen, const ProduceOptions& options,
                     const std::atomic<bool>* stop = nullptr,
                     std::atomic<int64_t>* produced = nullptr);

}  // namespace runnel::sources
