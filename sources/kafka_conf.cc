#include "sources/kafka_conf.h"

#include <librdkafka/rdkafka.h>

#include <fmt/format.h>

namespace runnel::sources {

Result<rd_kafka_conf_t*> MakeKafkaConf(const std::map<std::string, std::string>& properties,
                                       std::string_view what) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : properties) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument(
          fmt::format("{}: librdkafka property {}: {}", what, k, errstr));
    }
  }
  return conf;
}

}  // namespace runnel::sources
