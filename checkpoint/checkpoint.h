// Checkpoints of the state database: STATE_DIR/checkpoints/<id>/ holds db/ (a RocksDB
// checkpoint: hard-linked SST files, copied WAL and MANIFEST) and MANIFEST.runnel (a protobuf
// Manifest in a CRC32C frame, listing every file of db/ with its size and CRC32C). A
// checkpoint is taken into "<id>.tmp", its files and directories fsynced, and renamed: a
// directory without ".tmp" is complete, and a leftover ".tmp" is removed by the next one.
// The on-disk format is documented in docs/checkpoint-format.md.
//
// OpenState is the start-up policy: open the live database, and if it cannot be opened or is
// behind the newest valid checkpoint, set it aside and restore the newest checkpoint that
// verifies (falling back to older ones).
//
// Thread safety: CheckpointStore methods may be called from any thread; Take calls are
// serialized. Free functions are thread-compatible.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/crc.hpp>

#include "checkpoint/manifest.pb.h"
#include "common/result.h"
#include "state/rocksdb_store.h"

namespace runnel::checkpoint {

inline constexpr uint32_t kManifestFormatVersion = 1;
inline constexpr char kManifestFile[] = "MANIFEST.runnel";

// The manifest file's bytes: magic, length, CRC32C, payload.
std::string EncodeManifest(const v1::Manifest& manifest);
// Corruption when the frame, the CRC or the message is wrong, or the version is unknown.
Result<v1::Manifest> DecodeManifest(std::string_view bytes);

// CRC32C (Castagnoli), by Boost.CRC: Crc32c() of one buffer, Crc32cAccumulator fed in pieces
// (process_bytes, then checksum()).
using Crc32cAccumulator = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;
uint32_t Crc32c(std::string_view data);

// One complete checkpoint directory, as found on disk.
struct CheckpointEntry {
  int64_t id = 0;
  std::string path;        // STATE_DIR/checkpoints/<id>
  Status manifest_status;  // whether MANIFEST.runnel decodes
  std::optional<v1::Manifest> manifest;
};

// What Verify found.
struct Verification {
  Status status;                      // OK, or the first problem
  std::vector<std::string> problems;  // every problem, one line each
  int64_t files = 0;
  int64_t bytes = 0;
};

class CheckpointStore {
 public:
  // `state_dir` is the service's state directory; checkpoints go to state_dir/checkpoints.
  CheckpointStore(std::string state_dir, int keep);

  // Takes a checkpoint of `db` with the next id, keeps the newest `keep` and removes the rest
  // (and leftover ".tmp" directories). Returns its manifest.
  //
  // Cost: what changed since the last checkpoint, not the state's size. SST files are
  // immutable and never reuse a name: one already in the newest checkpoint with the same size
  // keeps that manifest's CRC32C and is neither read nor synced again (it is the same file,
  // hard-linked); the other files are read, checksummed and fsynced.
  Result<v1::Manifest> Take(state::RocksDbStateStore* db);

  // What the last Take read: files and bytes checksummed (the rest reused their CRC).
  struct TakeStats {
    int64_t files = 0;
    int64_t scanned_files = 0;
    int64_t scanned_bytes = 0;
  };
  TakeStats last_take() const;

  const std::string& dir() const { return dir_; }

 private:
  const std::string dir_;
  const int keep_;
  mutable std::mutex mu_;  // one Take at a time
  TakeStats last_;         // guarded by mu_
};

// Complete checkpoints under state_dir/checkpoints, oldest first (".tmp" ones are skipped).
Result<std::vector<CheckpointEntry>> ListCheckpoints(const std::string& state_dir);

// Checks the manifest and every listed file (present, same size, same CRC32C).
Verification Verify(const CheckpointEntry& entry);

// Copies the checkpoint's database to `db_path` (which must not exist): SST files are
// hard-linked (they are immutable), the rest copied, everything fsynced.
Status RestoreInto(const CheckpointEntry& entry, const std::string& db_path);

// The start-up policy (see the header comment). `options.path` is ignored: the database is
// state_dir/db. Says what it did in the log.
Result<std::unique_ptr<state::RocksDbStateStore>> OpenState(const std::string& state_dir,
                                                            state::RocksDbOptions options);

// The bytes of a checkpoint's files, from its manifest.
uint64_t ManifestBytes(const v1::Manifest& manifest);

// A query's batch record in a manifest (one written before typed records is migrated).
Result<streaming::BatchRecord> QueryRecord(const v1::QueryState& query);

// Human text and JSON renderings of a manifest (for `runnel checkpoint`).
std::string ManifestText(const v1::Manifest& manifest);
std::string ManifestJson(const v1::Manifest& manifest);

}  // namespace runnel::checkpoint
