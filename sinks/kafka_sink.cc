#include "sinks/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <mutex>

#include <fmt/format.h>
#include <simdjson.h>

#include "sources/kafka_conf.h"

namespace runnel::sinks {
namespace {

// Errors no retry of the same record can fix: the query stops, naming the record.
bool IsPermanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__FATAL:  // the idempotent producer is unusable from here on
      return true;
    default:
      return false;
  }
}

// A produce or delivery error, classified where it enters: permanent ones are InvalidArgument
// (the query stops), the rest Unavailable (the batch is retried).
Status ProduceError(rd_kafka_resp_err_t err, const std::string& what) {
  const std::string msg = fmt::format("kafka sink: {}: {}", what, rd_kafka_err2str(err));
  return IsPermanent(err) ? Status::InvalidArgument(msg) : Status::Unavailable(msg);
}

}  // namespace

// Delivery reports of one WritePart. Owned by the sink, never the stack: a report may arrive after
// the WritePart that produced its record gave up waiting.
struct KafkaSink::Deliveries {
  int64_t produced = 0;  // records handed to librdkafka (the writing thread only)
  std::atomic<int64_t> acked{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int> first_error{RD_KAFKA_RESP_ERR_NO_ERROR};
  std::mutex mu;
  std::string first_failed;  // the first failed record's _id and size; guarded by mu
};

namespace {

void OnDelivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* message, void* /*opaque*/) {
  auto* deliveries = static_cast<KafkaSink::Deliveries*>(message->_private);
  if (deliveries == nullptr) return;
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++deliveries->acked;
  } else {
    int none = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (deliveries->first_error.compare_exchange_strong(none, message->err)) {
      std::lock_guard lock(deliveries->mu);
      deliveries->first_failed = fmt::format(
          "_id {} ({} bytes)",
          std::string_view(static_cast<const char*>(message->key), message->key_len), message->len);
    }
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
  rd_kafka_destroy(producer_);  // no report is served after this: `deliveries_` may go
}

Status KafkaSink::WritePart(BatchId batch, int /*part*/, const std::vector<std::string>& records,
                            bool /*first*/, bool /*last*/) {
  if (records.empty()) return Status::OK();
  std::lock_guard write_lock(write_mu_);
  // Reports of earlier parts have all arrived: their counters can go.
  std::erase_if(deliveries_, [](const std::unique_ptr<Deliveries>& d) {
    return d->acked + d->failed == d->produced;
  });
  deliveries_.push_back(std::make_unique<Deliveries>());
  Deliveries& deliveries = *deliveries_.back();
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
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++deliveries.produced;
        break;
      }
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || std::chrono::steady_clock::now() > deadline) {
        return ProduceError(err, fmt::format("produce record _id {} ({} bytes) of batch {} to {}",
                                             id, record.size(), batch, options_.topic));
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
    // Reports still pending reference `deliveries`, which the sink keeps until they arrive.
    rd_kafka_purge(producer_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    return Status::Unavailable(fmt::format("kafka sink: batch {} not acknowledged within {} ms",
                                           batch, options_.timeout_ms));
  }
  if (deliveries.failed > 0) {
    std::lock_guard lock(deliveries.mu);
    return ProduceError(
        static_cast<rd_kafka_resp_err_t>(deliveries.first_error.load()),
        fmt::format("{} of {} records of batch {} not delivered, the first: record {}",
                    deliveries.failed.load(), total, batch, deliveries.first_failed));
  }
  return Status::OK();
}

}  // namespace runnel::sinks
