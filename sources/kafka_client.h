// What the Kafka source's parts share (sources/kafka_source.h): its options, the conversion of
// librdkafka's consumer errors to Status (where their retry meaning is decided), and the
// consumer handles they talk to the broker with.
//
// Thread safety: free functions; KafkaSourceOptions is a value.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "streaming/rate_controller.h"

typedef struct rd_kafka_s rd_kafka_t;

namespace runnel::sources {

struct KafkaSourceOptions {
  std::string name = "kafka";
  std::string bootstrap_servers;
  std::vector<std::string> topics;
  std::string group_id = "runnel";
  // Join the group and read only the partitions it assigns (false: read every partition).
  bool group_membership = true;
  bool start_at_earliest = true;
  // No partition reads more per batch; the others read the same share of their backlog.
  int64_t max_records_per_partition = 200000;
  // Nor does a batch read more bytes than this, as far as the average size of the previous
  // batch's messages tells (16 KiB before the first): the partitions' record caps together come
  // to at most max_bytes_per_batch / average.
  int64_t max_bytes_per_batch = int64_t{256} << 20;
  bool fail_on_data_loss = true;
  // Passed to librdkafka as they are.
  std::map<std::string, std::string> librdkafka;
  // How long one range read or metadata request may wait for the broker.
  int timeout_ms = 30000;
  // A read that gets no record for this long while the broker reports data is a stall.
  int stall_ms = 2000;
  // Backpressure: when set, batches take at most what the rate controller allows (see
  // streaming/rate_controller.h), on top of max_records_per_partition.
  std::optional<streaming::RateControlOptions> rate_control;
};

// A librdkafka consumer error as a Status: a broker that is away (timeouts, transport, no
// leader) is Unavailable (RetryScope::kBatch: librdkafka reconnects, the batch runs again);
// an offset out of range is OutOfRange; anything else IOError (no retry).
Status FromKafka(int err, std::string_view what);

// A consumer of `options`' cluster that commits nothing by itself and never resets an offset
// (group id: options.group_id + suffix). The caller owns it.
Result<rd_kafka_t*> NewConsumer(const KafkaSourceOptions& options, const std::string& suffix);

}  // namespace runnel::sources
