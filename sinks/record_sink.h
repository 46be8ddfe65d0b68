// RecordSink: where a query's output records go, batch by batch, in parts. A query writes one
// part per reduce partition from its workers, at once, before the batch commits:
//   Begin(batch)            on the query's thread, before the batch's job runs;
//   WritePart(batch, p, r, first, last)
//                           from any thread, a part's records in chunks (so that no task holds
//                           its part whole): `first` starts the part (again, replacing what an
//                           earlier attempt wrote, when the task that made it is retried),
//                           `last` ends it;
//   Publish(batch)          on the query's thread once every part is written: the batch's
//                           output becomes visible (and durable) as one.
// A batch rerun after a crash writes its parts again under the same id; its output is
// replaced where the sink can (files), repeated where it cannot (Kafka: at-least-once).
//
// Thread safety: Begin and Publish from one thread at a time per sink; WritePart from several
// threads at once between them.
#pragma once

#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"

namespace runnel::sinks {

class RecordSink {
 public:
  virtual ~RecordSink() = default;

  virtual Status Begin(BatchId /*batch*/) { return Status::OK(); }
  virtual Status WritePart(BatchId batch, int part, const std::vector<std::string>& records,
                           bool first, bool last) = 0;
  virtual Status Publish(BatchId /*batch*/) { return Status::OK(); }

  // A whole batch as part 0 (late records, dead letters, tests).
  Status Write(BatchId batch, const std::vector<std::string>& records) {
    RETURN_NOT_OK(Begin(batch));
    RETURN_NOT_OK(WritePart(batch, 0, records, /*first=*/true, /*last=*/true));
    return Publish(batch);
  }
};

}  // namespace runnel::sinks
