// KafkaSink: a query's output records produced to a Kafka topic, each keyed by its `_id` with
// the batch id in the header `runnel-batch-id`, by librdkafka's idempotent producer
// (enable.idempotence: no duplicates from producer retries). WritePart returns once the broker
// acknowledged every record of the chunk, so a batch commits only after its output is in
// Kafka. At-least-once: a batch rerun after a crash between its parts and the commit produces its
// records again (same keys, same batch id header; a compacted topic or a consumer that keeps
// the latest value per key sees exact aggregates).
//
// Thread safety: as RecordSink; parts written at once are produced one after the other (a
// part that times out purges what is in flight, so parts do not share the producer's queue).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sinks/record_sink.h"

typedef struct rd_kafka_s rd_kafka_t;

namespace runnel::sinks {

struct KafkaSinkOptions {
  std::string bootstrap_servers;
  std::string topic;
  std::map<std::string, std::string> librdkafka;  // passed through
  int timeout_ms = 30000;                         // for a batch to be acknowledged
};

class KafkaSink final : public RecordSink {
 public:
  static Result<std::unique_ptr<KafkaSink>> Make(KafkaSinkOptions options);
  ~KafkaSink() override;

  // Errors no retry can fix (a record over the broker's size limit, an invalid record, no
  // authorization for the topic) are InvalidArgument naming the record's _id: the query stops.
  // Others (the broker away, a batch not acknowledged in time) are Unavailable: retried.
  Status WritePart(BatchId batch, int part, const std::vector<std::string>& records, bool first,
                   bool last) override;

  struct Deliveries;  // the delivery reports of one WritePart (kafka_sink.cc)

 private:
  KafkaSink(KafkaSinkOptions options, rd_kafka_t* producer);

  const KafkaSinkOptions options_;
  rd_kafka_t* const producer_;
  std::mutex write_mu_;  // one WritePart at a time; guards deliveries_
  // Reports of the parts whose records may still be reported on; freed once complete, and
  // after the producer is destroyed (no report is served after that).
  std::vector<std::unique_ptr<Deliveries>> deliveries_;
};

}  // namespace runnel::sinks
