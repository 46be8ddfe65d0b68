// RocksDbStateStore: the durable StateStore. One RocksDB database per service (under
// service.state_dir), one column family per query namespace, and the "default" family for
// metadata: per namespace, the last committed batch (id, source positions, query metadata).
//
// Commit writes the batch's puts and deletes, its positions and its id in ONE WriteBatch with
// the WAL on (and synced unless `sync_commits` is off): that write is the commit point, so
// after a crash (kill -9 included) a namespace holds every change of a batch or none.
// All column families share one block cache and one write-buffer budget.
//
// Thread safety: every method may be called from any thread. Reads see whole commits.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <rocksdb/db.h>

#include "streaming/state_store.h"

namespace runnel::state {

struct RocksDbOptions {
  std::string path;                        // the database directory (created if missing)
  int64_t block_cache_bytes = 256 << 20;   // shared by all queries
  int64_t write_buffer_bytes = 128 << 20;  // total memtable budget, shared by all queries
  bool sync_commits = true;                // fsync the WAL at each commit (power-loss safety)
};

class RocksDbStateStore final : public streaming::StateStore {
 public:
  static Result<std::unique_ptr<RocksDbStateStore>> Open(RocksDbOptions options);
  ~RocksDbStateStore() override;

  Result<std::optional<std::string>> Get(const std::string& ns, const std::string& key) override;
  Status Scan(const std::string& ns, const std::string& begin, const std::string& end,
              const std::function<bool(const std::string&, const std::string&)>& fn) override;
  Status Commit(const streaming::BatchCommit& commit) override;
  Result<std::optional<streaming::CommittedBatch>> LastCommitted(const std::string& ns) override;

  // Keys in a namespace (RocksDB's estimate).
  int64_t EstimateKeys(const std::string& ns);
  rocksdb::DB* db() { return db_.get(); }

 private:
  RocksDbStateStore(RocksDbOptions options, std::unique_ptr<rocksdb::DB> db,
                    std::map<std::string, rocksdb::ColumnFamilyHandle*> families,
                    rocksdb::ColumnFamilyOptions cf_options);
  // The family of `ns`, created on first use; nullptr with `create` false and none exists.
  Result<rocksdb::ColumnFamilyHandle*> Family(const std::string& ns, bool create);

  const RocksDbOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  const rocksdb::ColumnFamilyOptions cf_options_;
  std::mutex mu_;  // serializes family creation and commits
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families_;  // guarded by mu_
};

// Converts a RocksDB status at the module edge.
Status FromRocks(const rocksdb::Status& s, std::string_view what);

}  // namespace runnel::state
