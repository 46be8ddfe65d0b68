// `runnel demo`: an embedded Kafka-protocol broker, a generator producing the seed workload
// at a steady rate, and the service running examples/demo.yaml against them, for a bounded
// time. Prints the URLs to look at and a progress line every few seconds.
#pragma once

#include <cstdint>

namespace runnel::service {

struct DemoOptions {
  int64_t duration_ms = 60000;
  double events_per_second = 20000;
};

int RunDemo(const DemoOptions& options);

// examples/demo.yaml, compiled in.
const char* DemoConfigYaml();

}  // namespace runnel::service
