#include "sources/kafka_client.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>

#include <fmt/format.h>

#include "sources/kafka_conf.h"

namespace runnel::sources {

Status FromKafka(int code, std::string_view what) {
  const auto err = static_cast<rd_kafka_resp_err_t>(code);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::OK();
  const std::string msg = fmt::format("{}: {}", what, rd_kafka_err2str(err));
  switch (err) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return Status::Unavailable(msg);
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:  // out of range, and auto.offset.reset=error
      return Status::OutOfRange(msg);
    default:
      return Status::IOError(msg);
  }
}

Result<rd_kafka_t*> NewConsumer(const KafkaSourceOptions& o, const std::string& suffix) {
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", o.bootstrap_servers},
      {"group.id", o.group_id + suffix},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"auto.offset.reset", "error"},
      // Offset queries wait for their request, not for their own timeout: bound the request.
      {"socket.timeout.ms", std::to_string(std::max(o.timeout_ms, 2000))},
      // A broker that comes back is found within 2 s (librdkafka's default backs off to 10 s).
      {"reconnect.backoff.max.ms", "2000"},
      // A batch reads only records that existed when it was planned, so a reader never needs
      // a fetch to wait for new data; a fetch waiting at the log end (500 ms by default) only
      // delays the next read from another offset (a retried batch rewinds every partition).
      {"fetch.wait.max.ms", "100"},
      {"log_level", "3"},
  };
  for (const auto& [k, v] : o.librdkafka) props[k] = v;
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, MakeKafkaConf(props, "kafka source " + o.name));
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);  // rd_kafka_new owns it only when it succeeds
    return Status::InvalidArgument(fmt::format("kafka consumer: {}", errstr));
  }
  rd_kafka_poll_set_consumer(rk);
  return rk;
}

}  // namespace runnel::sources
