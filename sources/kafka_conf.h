// librdkafka configuration from a property map, shared by the Kafka source, the producer of
// `runnel gen` and the Kafka sink. Thread safety: a free function.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/result.h"

typedef struct rd_kafka_conf_s rd_kafka_conf_t;

namespace runnel::sources {

// A new configuration with every property set (the caller owns it, and hands it to
// rd_kafka_new); InvalidArgument naming `what` and the property librdkafka refused.
Result<rd_kafka_conf_t*> MakeKafkaConf(const std::map<std::string, std::string>& properties,
                                       std::string_view what);

}  // namespace runnel::sources
