// RocksDbStateStore: the durable StateStore. One RocksDB database per service (under
// service.state_dir), one column family per query namespace, and the "default" family for
// metadata: per namespace, the last committed batch (id, source positions, query metadata) as
// a protobuf BatchRecord. The layout is documented in docs/state-format.md.
//
// Commit writes the batch's puts and deletes, its positions and its id in ONE WriteBatch with
// the WAL on (and synced unless `sync_commits` is off): that write is the commit point, so
// after a crash (kill -9 included) a namespace holds every change of a batch or none. A batch
// too large to hold commits sorted runs instead: SST files its partitions wrote (SstFileWriter,
// in `path`-ingest/), plus one for its remaining puts and one for its batch record in the
// default family, ingested in ONE IngestExternalFiles call across the two families, which
// RocksDB records atomically in the MANIFEST: the same all-or-nothing commit point.
// All column families share one block cache, which the memtables are charged to.
//
// Retention: a commit's `expire_before_ms` becomes its family's cutoff; a compaction filter
// drops keys whose trailing 8-byte time is before it (readers skip them until then).
//
// Thread safety: every method may be called from any thread. Reads see whole commits;
// CreateCheckpoint sees no commit half-done.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include <rocksdb/db.h>
#include <rocksdb/statistics.h>

#include "streaming/state_store.h"

namespace runnel::state {

struct RocksDbOptions {
  std::string path;  // the database directory
  // All of RocksDB's memory, shared by all queries: data blocks, index and filter blocks, and
  // the memtables, which are charged to it up to write_buffer_bytes.
  int64_t block_cache_bytes = 256 << 20;
  int64_t write_buffer_bytes = 128 << 20;  // total memtable budget, within block_cache_bytes
  bool sync_commits = true;                // fsync the WAL at each commit (power-loss safety)
  // Tests only: fail writes while this file exists (state/fault_fs.h; RUNNEL_DISK_FAULT_FILE).
  std::string disk_fault_file;
};

// Size of one namespace, for the state probe.
struct NamespaceStats {
  int64_t keys = 0;   // RocksDB's estimate
  int64_t bytes = 0;  // SST files plus memtables
};

class RocksDbStateStore final : public streaming::StateStore {
 public:
  // Opens the database at options.path, creating it (atomically) only when the directory is
  // missing: a directory without a valid database is an error, never overwritten.
  static Result<std::unique_ptr<RocksDbStateStore>> Open(RocksDbOptions options);
  ~RocksDbStateStore() override;

  Result<std::optional<std::string>> Get(const std::string& ns, const std::string& key) override;
  // One RocksDB MultiGet (keys in order read in one pass over the files).
  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::string& ns, const std::vector<std::string>& keys) override;
  Status Scan(const std::string& ns, const std::string& begin, const std::string& end,
              const std::function<bool(const std::string&, const std::string&)>& fn) override;
  // With runs, deletes are not supported (InvalidArgument).
  Status Commit(const streaming::BatchCommit& commit) override;
  // An SST file in `path`-ingest/, removed unless committed (and at the next Open).
  Result<std::unique_ptr<streaming::SortedRun>> NewSortedRun(const std::string& ns) override;
  Result<std::optional<streaming::CommittedBatch>> LastCommitted(const std::string& ns) override;
  Status Reset(const std::string& ns) override;
  // Reopens the database when a write failed (Recover).
  Status Writable() override { return Recover(); }

  // The last committed batch of every namespace.
  Result<std::map<std::string, streaming::CommittedBatch>> AllCommitted();

  // A RocksDB checkpoint (hard-linked SST files, copied WAL and MANIFEST) into `dir`, which
  // must not exist. No commit runs meanwhile, so the returned batch records are exactly the
  // checkpoint's content.
  Result<std::map<std::string, streaming::CommittedBatch>> CreateCheckpoint(const std::string& dir);

  // Syncs the WAL to disk (graceful stop).
  Status FlushWal();
  // Compacts a namespace's whole key range, applying retention now (tests, maintenance).
  Status Compact(const std::string& ns);

  NamespaceStats Stats(const std::string& ns);
  // This database's incarnation: an id written once, when the database is made (or first
  // opened by a version that has incarnations), and kept by checkpoints and restores. A state
  // that starts over (its db/ lost or removed) has a new one; sinks use it to refuse mixing a
  // new state's output with an earlier state's (sinks/json_file_sink.h).
  const std::string& incarnation() const { return incarnation_; }
  // RocksDB's tickers the metrics export, by short name (block_cache_hit, bytes_written, ...).
  std::map<std::string, uint64_t> Tickers() const;

 private:
  class RetentionFilterFactory;
  class SstRun;

  // Commit of a batch with runs (commit_mu_ and db_mu_ held).
  Status CommitRuns(const streaming::BatchCommit& commit, rocksdb::ColumnFamilyHandle* cf,
                    const streaming::BatchRecord& next);
  Result<std::unique_ptr<SstRun>> NewSstRun(const std::string& ns);
  std::string IngestDir() const { return options_.path + "-ingest"; }

  RocksDbStateStore(RocksDbOptions options, std::unique_ptr<rocksdb::DB> db,
                    std::map<std::string, rocksdb::ColumnFamilyHandle*> families,
                    rocksdb::ColumnFamilyOptions cf_options,
                    std::shared_ptr<RetentionFilterFactory> retention,
                    std::shared_ptr<rocksdb::Statistics> statistics,
                    std::unique_ptr<rocksdb::Env> env, rocksdb::DBOptions db_options);
  // The family of `ns`, created on first use; nullptr with `create` false and none exists.
  Result<rocksdb::ColumnFamilyHandle*> Family(const std::string& ns, bool create);
  // Reads every namespace's expire_before cutoff into the retention filter (at open).
  Status LoadRetention();
  // Reads the incarnation id, or makes and writes one (at open).
  Status LoadIncarnation();
  // The callers hold db_mu_ (shared or exclusive).
  Status Usable() const;
  Result<std::optional<streaming::CommittedBatch>> LastCommittedLocked(const std::string& ns);
  Result<std::map<std::string, streaming::CommittedBatch>> AllCommittedLocked();
  // After a failed write RocksDB stops writing until the database is reopened (a failed WAL
  // write cannot be resumed): close it and open it again. db_mu_ held exclusively; on
  // failure db_ stays closed (every call answers Unavailable) and the next commit tries again.
  Status ReopenLocked();
  // Reopens the database when a write failed since (takes db_mu_ exclusively); called first
  // by every method that uses it.
  Status Recover();
  // Recover(), then `lock` holds db_mu_ shared; OK when the database is open.
  Status LockDb(std::shared_lock<std::shared_mutex>& lock);

  const RocksDbOptions options_;
  const std::unique_ptr<rocksdb::Env> env_;  // the fault-injecting env, if any; outlives db_
  const rocksdb::DBOptions db_options_;
  // Shared by every use of db_ and of the family handles; exclusive to reopen the database.
  // Lock order: commit_mu_, db_mu_, families_mu_.
  mutable std::shared_mutex db_mu_;
  std::unique_ptr<rocksdb::DB> db_;  // null only after a reopen failed
  const rocksdb::ColumnFamilyOptions cf_options_;
  const std::shared_ptr<RetentionFilterFactory> retention_;
  const std::shared_ptr<rocksdb::Statistics> statistics_;
  std::mutex commit_mu_;                   // serializes commits, resets and checkpoints
  std::atomic<bool> write_failed_{false};  // a write failed: the next call reopens the db
  std::mutex families_mu_;                 // guards families_ (handles live until the store closes)
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families_;
  std::string incarnation_;            // set at open, then constant
  std::atomic<uint64_t> next_run_{0};  // names the runs' files
};

// Converts a RocksDB status at the module edge, deciding its retry scope: a full disk may drain
// (RetryScope::kBatch); another I/O error is kBatch only for a write the store recovers from
// by reopening the database (`store_recovers`, see Recover), and no retry elsewhere (open,
// checkpoint); corruption never retries.
Status FromRocks(const rocksdb::Status& s, std::string_view what, bool store_recovers = false);

}  // namespace runnel::state
