#include "state/rocksdb_store.h"

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>

#include "common/file_util.h"
#include "engine/serde.h"

namespace runnel::state {
namespace {

constexpr char kBatchKeyPrefix[] = "batch/";
constexpr uint8_t kBatchFormatVersion = 1;

std::string EncodeCommitted(const streaming::CommittedBatch& b) {
  std::string out(1, static_cast<char>(kBatchFormatVersion));
  engine::Serde<int64_t>::Write(b.batch_id.value(), &out);
  engine::Serde<std::map<std::string, std::string>>::Write(b.positions, &out);
  engine::Serde<std::map<std::string, std::string>>::Write(b.metadata, &out);
  return out;
}

Result<streaming::CommittedBatch> DecodeCommitted(std::string_view in) {
  if (in.empty() || static_cast<uint8_t>(in[0]) != kBatchFormatVersion) {
    return Status::Corruption("committed batch record: unknown format version");
  }
  in.remove_prefix(1);
  int64_t id = 0;
  streaming::CommittedBatch b;
  if (!engine::Serde<int64_t>::Read(&in, &id) ||
      !engine::Serde<std::map<std::string, std::string>>::Read(&in, &b.positions) ||
      !engine::Serde<std::map<std::string, std::string>>::Read(&in, &b.metadata) || !in.empty()) {
    return Status::Corruption("committed batch record: malformed");
  }
  b.batch_id = BatchId(id);
  return b;
}

}  // namespace

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  const std::string msg = fmt::format("{}: {}", what, s.ToString());
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsIOError()) return Status::IOError(msg);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return Status::Unavailable(msg);
  return Status::Internal(msg);
}

Result<std::unique_ptr<RocksDbStateStore>> RocksDbStateStore::Open(RocksDbOptions options) {
  RETURN_NOT_OK(MakeDirs(options.path));
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
      static_cast<size_t>(options.write_buffer_bytes));
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db_options.keep_log_file_num = 3;

  rocksdb::ColumnFamilyOptions cf_options;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(static_cast<size_t>(options.block_cache_bytes));
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, options.path, &names);
  if (!listed.ok()) names = {rocksdb::kDefaultColumnFamilyName};  // a new database
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, cf_options);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  RETURN_NOT_OK(FromRocks(rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &raw),
                          "open state " + options.path));
  std::unique_ptr<rocksdb::DB> db(raw);
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families;
  for (size_t i = 0; i < handles.size(); ++i) families[names[i]] = handles[i];
  return std::unique_ptr<RocksDbStateStore>(
      new RocksDbStateStore(std::move(options), std::move(db), std::move(families), cf_options));
}

RocksDbStateStore::RocksDbStateStore(RocksDbOptions options, std::unique_ptr<rocksdb::DB> db,
                                     std::map<std::string, rocksdb::ColumnFamilyHandle*> families,
                                     rocksdb::ColumnFamilyOptions cf_options)
    : options_(std::move(options)),
      db_(std::move(db)),
      cf_options_(std::move(cf_options)),
      families_(std::move(families)) {}

RocksDbStateStore::~RocksDbStateStore() {
  db_->FlushWAL(true).PermitUncheckedError();  // best effort at close; commits already synced
  for (auto& [name, handle] : families_)
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
}

Result<rocksdb::ColumnFamilyHandle*> RocksDbStateStore::Family(const std::string& ns, bool create) {
  if (ns.empty() || ns == rocksdb::kDefaultColumnFamilyName) {
    return Status::InvalidArgument(fmt::format("bad namespace '{}'", ns));
  }
  std::lock_guard lock(mu_);
  if (auto it = families_.find(ns); it != families_.end()) return it->second;
  if (!create) return static_cast<rocksdb::ColumnFamilyHandle*>(nullptr);
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  RETURN_NOT_OK(
      FromRocks(db_->CreateColumnFamily(cf_options_, ns, &handle), "create column family " + ns));
  families_[ns] = handle;
  return handle;
}

Result<std::optional<std::string>> RocksDbStateStore::Get(const std::string& ns,
                                                          const std::string& key) {
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(ns, false));
  if (cf == nullptr) return std::optional<std::string>();
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf, key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  RETURN_NOT_OK(FromRocks(s, "get " + ns));
  return std::optional<std::string>(std::move(value));
}

Status RocksDbStateStore::Scan(
    const std::string& ns, const std::string& begin, const std::string& end,
    const std::function<bool(const std::string&, const std::string&)>& fn) {
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(ns, false));
  if (cf == nullptr) return Status::OK();
  rocksdb::ReadOptions read;
  rocksdb::Slice upper(end);
  if (!end.empty()) read.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, cf));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (!fn(it->key().ToString(), it->value().ToString())) break;
  }
  return FromRocks(it->status(), "scan " + ns);
}

Status RocksDbStateStore::Commit(const streaming::BatchCommit& commit) {
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(commit.ns, true));
  std::lock_guard lock(mu_);  // one commit at a time: the batch id check below stays true
  ASSIGN_OR_RETURN(std::optional<streaming::CommittedBatch> last, LastCommitted(commit.ns));
  if (last && commit.batch_id.value() != last->batch_id.value() + 1) {
    return Status::FailedPrecondition(fmt::format("{}: commit of batch {} after batch {}",
                                                  commit.ns, commit.batch_id, last->batch_id));
  }
  streaming::CommittedBatch next = last.value_or(streaming::CommittedBatch{});
  next.batch_id = commit.batch_id;
  for (const auto& [k, v] : commit.positions) next.positions[k] = v;
  for (const auto& [k, v] : commit.metadata) next.metadata[k] = v;

  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : commit.puts) RETURN_NOT_OK(FromRocks(batch.Put(cf, k, v), "batch put"));
  for (const auto& k : commit.deletes)
    RETURN_NOT_OK(FromRocks(batch.Delete(cf, k), "batch delete"));
  RETURN_NOT_OK(FromRocks(
      batch.Put(db_->DefaultColumnFamily(), kBatchKeyPrefix + commit.ns, EncodeCommitted(next)),
      "batch put"));
  rocksdb::WriteOptions write;
  write.sync = options_.sync_commits;
  write.disableWAL = false;
  return FromRocks(db_->Write(write, &batch), "commit " + commit.ns);
}

Result<std::optional<streaming::CommittedBatch>> RocksDbStateStore::LastCommitted(
    const std::string& ns) {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), kBatchKeyPrefix + ns, &value);
  if (s.IsNotFound()) return std::optional<streaming::CommittedBatch>();
  RETURN_NOT_OK(FromRocks(s, "read last batch of " + ns));
  ASSIGN_OR_RETURN(streaming::CommittedBatch b, DecodeCommitted(value));
  return std::optional<streaming::CommittedBatch>(std::move(b));
}

int64_t RocksDbStateStore::EstimateKeys(const std::string& ns) {
  auto cf = Family(ns, false);
  if (!cf.ok() || *cf == nullptr) return 0;
  uint64_t n = 0;
  db_->GetIntProperty(*cf, "rocksdb.estimate-num-keys", &n);
  return static_cast<int64_t>(n);
}

}  // namespace runnel::state
