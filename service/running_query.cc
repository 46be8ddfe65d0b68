#include "service/running_query.h"

#include "common/logging.h"
#include "sinks/kafka_sink.h"
#include "sinks/rejected_record.h"
#include "sources/file_source.h"

namespace runnel::service {
namespace {

std::optional<streaming::RateControlOptions> RateControl(const SourceConfig& source) {
  if (!source.rate_control) return std::nullopt;
  return streaming::RateControlOptions{.min_rate = static_cast<double>(source.min_rate),
                                       .initial_rate = static_cast<double>(source.initial_rate)};
}

// A JSON file sink under `root` for query `name`, claimed for the state's incarnation.
Result<std::unique_ptr<sinks::JsonFileSink>> JsonSink(const std::string& root,
                                                      const std::string& name,
                                                      const std::string& incarnation,
                                                      bool state_has_batches) {
  auto sink = std::make_unique<sinks::JsonFileSink>(root, name);
  RETURN_NOT_OK(sink->Claim(incarnation, /*adopt_unmarked=*/state_has_batches));
  return sink;
}

}  // namespace

RunningQuery::~RunningQuery() {
  if (watcher.joinable()) {
    ssc->Stop(Millis(0)).IgnoreError();
    watcher.join();
  }
  // The API may keep the context for its progress: not the graph and the source it holds.
  if (ssc) ssc->ReleaseOutputs();
}

sources::KafkaSourceOptions KafkaOptions(const SourceConfig& source) {
  return {.name = source.name,
          .bootstrap_servers = source.bootstrap_servers,
          .topics = source.topics,
          .group_id = source.group_id,
          .group_membership = source.group_membership,
          .start_at_earliest = source.start_at_earliest,
          .max_records_per_partition = source.max_records_per_partition,
          .max_bytes_per_batch = source.max_bytes_per_batch,
          .fail_on_data_loss = source.fail_on_data_loss,
          .librdkafka = source.librdkafka,
          .timeout_ms = static_cast<int>(source.request_timeout_ms),
          .rate_control = RateControl(source)};
}

Result<std::unique_ptr<RunningQuery>> BuildQuery(const QueryConfig& qc, const SourceConfig& source,
                                                 engine::Context* engine,
                                                 state::RocksDbStateStore* store,
                                                 const Subscribe& subscribe) {
  auto rq = std::make_unique<RunningQuery>();
  const std::string& name = qc.aggregation.name;
  rq->config = qc;
  rq->source = source;
  ASSIGN_OR_RETURN(rq->query, streaming::AggregationQuery::Make(qc.aggregation, store));
  ASSIGN_OR_RETURN(streaming::CommittedBatch next, rq->query->Recover());
  const bool has_batches = next.record.batch_id.value() > 0;  // the state holds batches of its own
  rq->ssc = std::make_shared<streaming::StreamingContext>(
      engine, streaming::StreamingOptions{.batch_interval = Millis(qc.batch_interval_ms),
                                          .first_batch_id = next.record.batch_id});
  if (source.type == SourceType::kFile) {
    ASSIGN_OR_RETURN(
        auto file, sources::FileSource::Make(rq->ssc.get(),
                                             {.path = source.path,
                                              .max_records_per_batch = source.max_records_per_batch,
                                              .max_bytes_per_batch = source.max_bytes_per_batch,
                                              .name = source.name}));
    RETURN_NOT_OK(file->Restore(next.record.positions));
    rq->input = file.get();
    rq->stream.emplace(file);
  } else {
    ASSIGN_OR_RETURN(auto subscription, subscribe(source));
    ASSIGN_OR_RETURN(auto kafka, sources::KafkaSource::Make(rq->ssc.get(), std::move(subscription),
                                                            name, KafkaOptions(source)));
    RETURN_NOT_OK(kafka->Restore(next.record.positions, /*use_group_offsets=*/!next.reset));
    rq->input = kafka.get();
    rq->kafka = kafka.get();
    rq->ssc->AddListener(kafka.get());  // rate control learns from each batch
    rq->stream.emplace(kafka);
  }
  for (const SinkConfig& s : qc.sinks) {
    if (s.type == SinkType::kKafka) {
      ASSIGN_OR_RETURN(auto sink, sinks::KafkaSink::Make({.bootstrap_servers = s.bootstrap_servers,
                                                          .topic = s.topic,
                                                          .librdkafka = s.librdkafka}));
      rq->sinks.push_back(std::move(sink));
    } else {
      ASSIGN_OR_RETURN(auto sink, JsonSink(s.path, name, store->incarnation(), has_batches));
      rq->sinks.push_back(std::move(sink));
    }
  }
  if (!qc.dead_letter_path.empty()) {
    ASSIGN_OR_RETURN(rq->dead_letters,
                     JsonSink(qc.dead_letter_path, name, store->incarnation(), has_batches));
  }
  if (!qc.late_output_path.empty()) {
    ASSIGN_OR_RETURN(rq->late_output,
                     JsonSink(qc.late_output_path, name, store->incarnation(), has_batches));
    auto* late = rq->late_output.get();
    rq->query->SetLateOutput([late](BatchId batch, const std::vector<std::string>& lines) {
      std::vector<std::string> records;
      for (const auto& l : lines) {
        records.push_back(sinks::RejectedRecord(batch, records.size(), "late", l));
      }
      return late->Write(batch, records);
    });
  }
  auto* sinks = &rq->sinks;
  auto* dead = rq->dead_letters.get();
  streaming::AggregationQuery::Output output{
      .begin =
          [sinks](BatchId batch) {
            for (auto& sink : *sinks) RETURN_NOT_OK(sink->Begin(batch));
            return Status::OK();
          },
      .part =
          [sinks](BatchId batch, int part, const std::vector<std::string>& records, bool first,
                  bool last) {
            for (auto& sink : *sinks) {
              RETURN_NOT_OK(sink->WritePart(batch, part, records, first, last));
            }
            return Status::OK();
          },
      .publish =
          [sinks](BatchId batch) {
            for (auto& sink : *sinks) RETURN_NOT_OK(sink->Publish(batch));
            return Status::OK();
          }};
  rq->query->Attach(
      *rq->stream, std::move(output),
      [dead](BatchId batch, const std::vector<streaming::InvalidRecord>& invalid) {
        if (dead == nullptr) return Status::OK();
        std::vector<std::string> lines;
        for (const auto& r : invalid) {
          lines.push_back(sinks::RejectedRecord(batch, lines.size(), r.reason, r.line));
        }
        return dead->Write(batch, lines);
      });
  Logger("service")->info("query {} recovered: next batch {}, {} source positions", name,
                          next.record.batch_id, next.record.positions.size());
  return rq;
}

}  // namespace runnel::service
