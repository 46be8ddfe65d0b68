#include "sinks/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>

#include <fmt/format.h>
#include <simdjson.h>

#include "sources/kafka_conf.h"

namespace runnel::sinks {
namespace {

// Delivery reports of one Write.
struct Deliveries {
  std::atomic<int64_t> acked{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int> first_error{RD_KAFKA_RESP_ERR_NO_ERROR};
};

void OnDelivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* message, void* /*opaque*/) {
  auto* deliveries = static_cast<Deliveries*>(message->_private);
  if (deliveries == nullptr) return;
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++deliveries->acked;
  } else {
    int none = RD_KAFKA_RESP_ERR_NO_ERROR;
    deliveries->first_error.compare_exchange_strong(none, message->err);
    ++deliveries->failed;
  }
}

}  // namespace

Result<std::unique_ptr<KafkaSink>> KafkaSink::Make(KafkaSinkOptions options) {
  if (options.bootstrap_servers.empty()) return Status::InvalidArgument("kafka sink: no bootstrap");
  if (options.topic.empty()) return Status::InvalidArgument("kafka sink: no topic");
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", options.bootstrap_servers},
      {"enable.idempotence", "true"},
      {"linger.ms", "5"},
      {"log_level", "3"},
  };
  for (const auto& [k, v] : options.librdkafka) props[k] = v;
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, sources::MakeKafkaConf(props, "kafka sink"));
  rd_kafka_conf_set_dr_msg_cb(conf, OnDelivery);
  char errstr[512];
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (producer == nullptr) return Status::InvalidArgument(fmt::format("kafka sink: {}", errstr));
  return std::unique_ptr<KafkaSink>(new KafkaSink(std::move(options), producer));
}

KafkaSink::KafkaSink(KafkaSinkOptions options, rd_kafka_t* producer)
    : options_(std::move(options)), producer_(producer) {}

KafkaSink::~KafkaSink() {
  rd_kafka_flush(producer_, options_.timeout_ms);
  rd_kafka_destroy(producer_);
}

Status KafkaSink::Write(BatchId batch, const std::vector<std::string>& records) {
  if (records.empty()) return Status::OK();
  Deliveries deliveries;
  const std::string batch_header = std::to_string(batch.value());
  simdjson::dom::parser parser;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  for (const std::string& record : records) {
    std::string_view id;
    simdjson::dom::element doc;
    if (parser.parse(record).get(doc) != simdjson::SUCCESS ||
        doc["_id"].get_string().get(id) != simdjson::SUCCESS) {
      return Status::InvalidArgument("kafka sink: a record without an _id");
    }
    while (true) {
      const rd_kafka_resp_err_t err =
          rd_kafka_producev(producer_, RD_KAFKA_V_TOPIC(options_.topic.c_str()),
                            RD_KAFKA_V_KEY(const_cast<char*>(id.data()), id.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(record.data()), record.size()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADER("runnel-batch-id", batch_header.data(),
                                              static_cast<ssize_t>(batch_header.size())),
                            RD_KAFKA_V_OPAQUE(&deliveries), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || std::chrono::steady_clock::now() > deadline) {
        rd_kafka_flush(producer_, options_.timeout_ms);  // `deliveries` must outlive its reports
        return Status::Unavailable(
            fmt::format("kafka sink: produce to {}: {}", options_.topic, rd_kafka_err2str(err)));
      }
      rd_kafka_poll(producer_, 50);
    }
  }
  const int64_t total = static_cast<int64_t>(records.size());
  while (deliveries.acked + deliveries.failed < total &&
         std::chrono::steady_clock::now() < deadline) {
    rd_kafka_flush(producer_, 100);
  }
  if (deliveries.acked + deliveries.failed < total) {
    // Reports still pending reference `deliveries`: wait for them (purging what is queued).
    rd_kafka_purge(producer_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(producer_, options_.timeout_ms);
    return Status::Unavailable(fmt::format("kafka sink: batch {} not acknowledged within {} ms",
                                           batch, options_.timeout_ms));
  }
  if (deliveries.failed > 0) {
    return Status::Unavailable(fmt::format(
        "kafka sink: {} of {} records of batch {} not delivered: {}", deliveries.failed.load(),
        total, batch,
        rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(deliveries.first_error.load()))));
  }
  return Status::OK();
}

}  // namespace runnel::sinks
