#include "sources/kafka_broker.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "common/logging.h"

namespace runnel::sources {
namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

// Applies one control line; returns a reply for stdout.
std::string Control(rd_kafka_mock_cluster_t* cluster, const std::string& line) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (cmd == "down" || cmd == "up") {
    int32_t id = 0;
    if (!(in >> id)) return "ERR usage: down|up BROKER_ID";
    err = cmd == "down" ? rd_kafka_mock_broker_set_down(cluster, id)
                        : rd_kafka_mock_broker_set_up(cluster, id);
  } else if (cmd == "leader") {
    std::string topic;
    int32_t partition = 0, id = 0;
    if (!(in >> topic >> partition >> id)) return "ERR usage: leader TOPIC PARTITION BROKER_ID";
    err = rd_kafka_mock_partition_set_leader(cluster, topic.c_str(), partition, id);
  } else if (cmd == "rtt") {
    int32_t id = 0, ms = 0;
    if (!(in >> id >> ms)) return "ERR usage: rtt BROKER_ID MILLIS";
    err = rd_kafka_mock_broker_set_rtt(cluster, id, ms);
  } else if (cmd == "errors") {
    int16_t api = 0;
    int count = 0, code = 0;
    if (!(in >> api >> count >> code) || count <= 0 || count > 1000) {
      return "ERR usage: errors API_KEY COUNT ERROR_CODE";
    }
    std::vector<rd_kafka_resp_err_t> errs(static_cast<size_t>(count),
                                          static_cast<rd_kafka_resp_err_t>(code));
    rd_kafka_mock_push_request_errors_array(cluster, api, errs.size(), errs.data());
  } else if (cmd.empty()) {
    return "";
  } else {
    return "ERR unknown command " + cmd;
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return std::string("ERR ") + rd_kafka_err2str(err);
  return "OK " + line;
}

}  // namespace

Result<std::pair<std::string, int>> ParseTopicSpec(const std::string& spec) {
  const size_t colon = spec.rfind(':');
  std::string name = spec.substr(0, colon);
  int partitions = 1;
  if (colon != std::string::npos) {
    try {
      partitions = std::stoi(spec.substr(colon + 1));
    } catch (const std::exception&) {
      partitions = 0;
    }
  }
  if (name.empty() || partitions < 1 || partitions > 1024) {
    return Status::InvalidArgument(fmt::format("--topic {}: want NAME:PARTITIONS", spec));
  }
  return std::pair(std::move(name), partitions);
}

int RunBroker(const BrokerOptions& options) {
  auto broker = EmbeddedBroker::Start(options);
  if (!broker.ok()) {
    Logger("broker")->error("{}", broker.status().ToString());
    return 1;
  }
  std::printf("BOOTSTRAP=%s\n", (*broker)->bootstrap().c_str());
  std::fflush(stdout);

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::string pending;
  while (!g_stop) {
    pollfd fd{0, POLLIN, 0};
    const int ready = ::poll(&fd, 1, 200);
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(0, buf, sizeof(buf));
    if (n <= 0) break;  // stdin closed: the parent is gone
    pending.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      const std::string reply = (*broker)->Control(pending.substr(0, nl));
      pending.erase(0, nl + 1);
      if (!reply.empty()) {
        std::printf("%s\n", reply.c_str());
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Start(const BrokerOptions& options) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return Status::Internal(fmt::format("rd_kafka_new: {}", errstr));
  std::unique_ptr<EmbeddedBroker> broker(new EmbeddedBroker());
  broker->rk_ = rk;
  auto* cluster = rd_kafka_mock_cluster_new(rk, options.brokers);
  if (cluster == nullptr) return Status::Internal("could not start the mock cluster");
  broker->cluster_ = cluster;
  for (const auto& [topic, partitions] : options.topics) {
    const rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, topic.c_str(), partitions,
                                                               std::min(options.brokers, 3));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Status::Internal(fmt::format("create topic {}: {}", topic, rd_kafka_err2str(err)));
    }
  }
  broker->bootstrap_ = rd_kafka_mock_cluster_bootstraps(cluster);
  return broker;
}

std::string EmbeddedBroker::Control(const std::string& line) {
  return runnel::sources::Control(static_cast<rd_kafka_mock_cluster_t*>(cluster_), line);
}

EmbeddedBroker::~EmbeddedBroker() {
  if (cluster_ != nullptr)
    rd_kafka_mock_cluster_destroy(static_cast<rd_kafka_mock_cluster_t*>(cluster_));
  if (rk_ != nullptr) rd_kafka_destroy(static_cast<rd_kafka_t*>(rk_));
}

}  // namespace runnel::sources
