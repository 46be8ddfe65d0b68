// The batch record (streaming/batch.proto): a committed batch's id, time, source positions,
// watermark, definition and retention, as one typed value. A query writes it with each commit
// (StateStore::Commit), recovery reads it back (StateStore::LastCommitted), checkpoint
// manifests copy it. Sources make their own positions: the Kafka source a next offset per
// partition, the file source a byte and line per file (see their PositionOf / Restore).
//
// Thread safety: values; distinct objects may be used from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/ids.h"
#include "common/result.h"
#include "streaming/batch.pb.h"

namespace runnel::streaming {

using SourcePosition = v1::SourcePosition;
// By input name: "kafka:TOPIC/PARTITION", "file:PATH".
using SourcePositions = std::map<std::string, SourcePosition>;

struct BatchRecord {
  BatchId batch_id{0};
  BatchTime batch_time{0};
  SourcePositions positions;
  int64_t watermark_ms = INT64_MIN;
  int64_t max_event_time_ms = INT64_MIN;
  std::string definition_fingerprint;
  std::string definition;
  int64_t expire_before_ms = INT64_MIN;
};

bool SamePosition(const SourcePosition& a, const SourcePosition& b);
// For people (logs, `runnel checkpoint list`): "20", "byte 1024 line 12", or "none".
std::string PositionText(const SourcePosition& position);

v1::BatchRecord ToProto(const BatchRecord& record);
BatchRecord FromProto(const v1::BatchRecord& record);

// The record as format 1 wrote it (before typed records): positions and metadata as text
// ("kafka:..." -> "<next offset>", "file:..." -> "<byte> <line>"; metadata "watermark",
// "max_event_time", "batch_time", "definition_fingerprint", "definition", "expire_before").
// Used only to read state and checkpoints written by earlier versions. A position that does
// not parse is Corruption (no source could resume from it); a metadata number that does not
// parse reads as its default, as format 1's readers did. Positions under other names (no
// source reads them) are left out.
Result<BatchRecord> FromFormat1(BatchId batch_id,
                                const std::map<std::string, std::string>& positions,
                                const std::map<std::string, std::string>& metadata);

}  // namespace runnel::streaming
