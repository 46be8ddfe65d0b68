// RecordSink: where a query's output records go, batch by batch. Write is called before the
// batch commits; a batch rerun after a crash calls it again with the same id and records.
//
// Thread safety: Write may be called from one thread at a time per sink.
#pragma once

#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"

namespace runnel::sinks {

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual Status Write(BatchId batch, const std::vector<std::string>& records) = 0;
};

}  // namespace runnel::sinks
