// `runnel broker`: librdkafka's mock cluster (rdkafka_mock.h) in its own process, the test and
// demo broker. It creates the topics, prints "BOOTSTRAP=host:port,..." on one stdout line, and
// runs until SIGTERM/SIGINT or until stdin closes. Lines on stdin control faults:
//   down BROKER_ID | up BROKER_ID           take a broker off the network / back
//   leader TOPIC PARTITION BROKER_ID        move a partition's leader
//   rtt BROKER_ID MILLIS                    add latency to a broker's responses
//   errors API_KEY COUNT ERROR_CODE         fail the next COUNT requests of an API (1 = Fetch)
// Limits (it is librdkafka's test cluster): about 5 MiB kept per partition, no TLS/SASL, no
// transaction isolation. Production uses a real Kafka cluster.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace runnel::sources {

struct BrokerOptions {
  int brokers = 1;
  std::vector<std::pair<std::string, int>> topics;  // name, partitions
};

// Parses "NAME:PARTITIONS" (PARTITIONS defaults to 1).
Result<std::pair<std::string, int>> ParseTopicSpec(const std::string& spec);

// Runs the broker in the calling process; returns the exit code.
int RunBroker(const BrokerOptions& options);

// A mock cluster inside this process (for `runnel demo`); stopped by the destructor.
class EmbeddedBroker {
 public:
  static Result<std::unique_ptr<EmbeddedBroker>> Start(const BrokerOptions& options);
  ~EmbeddedBroker();
  const std::string& bootstrap() const { return bootstrap_; }
  // Applies one fault command (see RunBroker) and returns the reply line ("OK ..."/"ERR ...").
  std::string Control(const std::string& line);

 private:
  EmbeddedBroker() = default;
  void* rk_ = nullptr;       // rd_kafka_t
  void* cluster_ = nullptr;  // rd_kafka_mock_cluster_t
  std::string bootstrap_;
};

}  // namespace runnel::sources
