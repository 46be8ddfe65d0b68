#include "sources/kafka_producer.h"

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "sources/kafka_conf.h"

namespace runnel::sources {
namespace {

// Delivery reports (on the producing thread, inside rd_kafka_poll/flush).
struct Deliveries {
  std::atomic<int64_t>* produced = nullptr;  // the caller's counter, may be null
  int64_t failed = 0;
  rd_kafka_resp_err_t first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* d = static_cast<Deliveries*>(opaque);
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (d->failed++ == 0) d->first_error = msg->err;
  } else if (d->produced != nullptr) {
    ++*d->produced;
  }
}

}  // namespace

Status ProduceEvents(const GeneratorOptions& gen, const ProduceOptions& options,
                     const std::atomic<bool>* stop, std::atomic<int64_t>* produced) {
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf,
                   MakeKafkaConf({{"bootstrap.servers", options.bootstrap_servers},
                                  {"linger.ms", "5"},
                                  {"enable.idempotence", "true"},
                                  {"log_level", "3"}},
                                 "producer"));
  char errstr[512];
  rd_kafka_conf_set_dr_msg_cb(conf, OnDelivery);
  Deliveries deliveries{.produced = produced};
  rd_kafka_conf_set_opaque(conf, &deliveries);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return Status::InvalidArgument(fmt::format("producer: {}", errstr));

  Generator generator(gen);
  std::string line;
  const auto start = std::chrono::steady_clock::now();
  Status st;
  for (int64_t i = 0; i < gen.events && !(stop && stop->load()); ++i) {
    if (options.events_per_second > 0) {
      const auto due =
          start + std::chrono::duration<double>(static_cast<double>(i) / options.events_per_second);
      std::this_thread::sleep_until(due);
    }
    line.clear();
    generator.AppendNext(&line);
    line.pop_back();  // the newline
    // Key: the url (the first "url" value of the line), so a page stays in one partition.
    std::string key;
    if (const size_t u = line.find("\"url\": \""); u != std::string::npos) {
      key = line.substr(u + 8, line.find('"', u + 8) - u - 8);
    }
    while (true) {
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(options.topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(line.data(), line.size()),
          RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        st =
            Status::IOError(fmt::format("produce to {}: {}", options.topic, rd_kafka_err2str(err)));
      }
      break;
    }
    if (!st.ok()) break;
    rd_kafka_poll(rk, 0);
  }
  const rd_kafka_resp_err_t flushed = rd_kafka_flush(rk, 60000);
  if (st.ok() && flushed != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = Status::Unavailable(fmt::format("flush: {}", rd_kafka_err2str(flushed)));
  }
  if (st.ok() && deliveries.failed > 0) {  // a generator is a source of truth: say so
    st = Status::Unavailable(fmt::format("{} messages were not delivered (first error: {})",
                                         deliveries.failed,
                                         rd_kafka_err2str(deliveries.first_error)));
  }
  rd_kafka_destroy(rk);
  return st;
}

}  // namespace runnel::sources
