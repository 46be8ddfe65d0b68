#include "state/rocksdb_store.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <random>

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_buffer_manager.h>

#include "common/crash_point.h"
#include "common/file_util.h"
#include "state/fault_fs.h"
#include "state/state.pb.h"
#include "streaming/state_key.h"

namespace runnel::state {
namespace {

constexpr char kBatchKeyPrefix[] = "batch/";
constexpr char kIncarnationKey[] = "incarnation";

// 128 random bits as 32 hex digits.
std::string NewIncarnationId() {
  std::random_device random;
  std::string out;
  for (int i = 0; i < 4; ++i) out += fmt::format("{:08x}", static_cast<uint32_t>(random()));
  return out;
}
// BatchRecord.format_version: 2 holds the typed record (field 5); 1, written before typed
// records, held positions and metadata as text (fields 3 and 4) and is read by migrating it.
constexpr uint32_t kBatchFormatVersion = 2;

std::string EncodeCommitted(const streaming::BatchRecord& b) {
  v1::BatchRecord record;
  record.set_format_version(kBatchFormatVersion);
  record.set_batch_id(b.batch_id.value());
  *record.mutable_record() = streaming::ToProto(b);
  std::string out;
  // Deterministic: the same record is always the same bytes.
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  record.SerializeToCodedStream(&coded);
  return out;
}

Result<streaming::CommittedBatch> DecodeCommitted(std::string_view in) {
  v1::BatchRecord record;
  if (!record.ParseFromArray(in.data(), static_cast<int>(in.size()))) {
    return Status::Corruption("committed batch record: malformed");
  }
  streaming::CommittedBatch b;
  switch (record.format_version()) {
    case 1: {
      const std::map<std::string, std::string> positions(record.positions().begin(),
                                                         record.positions().end());
      const std::map<std::string, std::string> metadata(record.metadata().begin(),
                                                        record.metadata().end());
      ASSIGN_OR_RETURN(b.record,
                       streaming::FromFormat1(BatchId(record.batch_id()), positions, metadata));
      return b;
    }
    case kBatchFormatVersion:
      b.record = streaming::FromProto(record.record());
      if (b.record.batch_id.value() != record.batch_id()) {
        return Status::Corruption(fmt::format("committed batch record: batch id {} and {}",
                                              record.batch_id(), b.record.batch_id));
      }
      return b;
    default:
      return Status::Corruption(fmt::format(
          "committed batch record: unknown format version {} (written by a newer runnel?)",
          record.format_version()));
  }
}

class RetentionFilter final : public rocksdb::CompactionFilter {
 public:
  explicit RetentionFilter(int64_t cutoff) : cutoff_(cutoff) {}
  bool Filter(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& /*value*/,
              std::string* /*new_value*/, bool* /*value_changed*/) const override {
    int64_t t = 0;
    return streaming::StateKeyTime(key.ToStringView(), &t) && t < cutoff_;
  }
  const char* Name() const override { return "runnel.RetentionFilter"; }

 private:
  const int64_t cutoff_;
};

// Creates an empty database at `path` atomically: built in "<path>.new", then renamed, so a
// crash during creation never leaves a half-made database where a real one is expected.
Status CreateDatabase(const std::string& path, const rocksdb::DBOptions& db_options) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".new";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  rocksdb::Options options(db_options, rocksdb::ColumnFamilyOptions());
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  RETURN_NOT_OK(FromRocks(rocksdb::DB::Open(options, tmp, &raw), "create state " + tmp));
  std::unique_ptr<rocksdb::DB> db(raw);
  RETURN_NOT_OK(FromRocks(db->Close(), "close " + tmp));
  db.reset();
  RETURN_NOT_OK(SyncPath(tmp));
  fs::rename(tmp, path, ec);
  if (ec) return Status::IOError(fmt::format("rename {}: {}", tmp, ec.message()));
  return SyncPath(fs::path(path).parent_path().string());
}

}  // namespace

// Per column family cutoffs, read when a compaction starts. Thread safety: all methods.
class RocksDbStateStore::RetentionFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  void Set(uint32_t cf_id, int64_t cutoff) {
    std::lock_guard lock(mu_);
    cutoffs_[cf_id] = cutoff;
  }
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& context) override {
    std::lock_guard lock(mu_);
    auto it = cutoffs_.find(context.column_family_id);
    if (it == cutoffs_.end()) return nullptr;
    return std::make_unique<RetentionFilter>(it->second);
  }
  const char* Name() const override { return "runnel.RetentionFilterFactory"; }

 private:
  std::mutex mu_;
  std::map<uint32_t, int64_t> cutoffs_;  // guarded by mu_
};

Status FromRocks(const rocksdb::Status& s, std::string_view what, bool store_recovers) {
  if (s.ok()) return Status::OK();
  const std::string msg = fmt::format("{}: {}", what, s.ToString());
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsNoSpace()) return Status::ResourceExhausted(msg);
  if (s.IsIOError()) {
    return store_recovers ? Status::IOError(msg).WithRetry(RetryScope::kBatch)
                          : Status::IOError(msg);
  }
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return Status::Unavailable(msg);
  return Status::Internal(msg);
}

Result<std::unique_ptr<RocksDbStateStore>> RocksDbStateStore::Open(RocksDbOptions options) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = false;
  db_options.create_missing_column_families = true;
  db_options.paranoid_checks = true;
  // No background auto-resume after a write error: the store itself reopens the database
  // (Recover), and RocksDB's resume thread racing that reopen can block Close.
  db_options.max_bgerror_resume_count = 0;
  // One share of memory for all of RocksDB: memtables are charged to the block cache (up to
  // write_buffer_bytes), and so are index and filter blocks.
  auto cache = rocksdb::NewLRUCache(static_cast<size_t>(options.block_cache_bytes));
  db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
      static_cast<size_t>(options.write_buffer_bytes), cache);
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db_options.keep_log_file_num = 3;
  auto statistics = rocksdb::CreateDBStatistics();
  statistics->set_stats_level(rocksdb::StatsLevel::kExceptTimers);
  db_options.statistics = statistics;
  std::unique_ptr<rocksdb::Env> env;
  if (!options.disk_fault_file.empty()) {
    env = rocksdb::NewCompositeEnv(
        NewFaultInjectingFileSystem(rocksdb::FileSystem::Default(), options.disk_fault_file));
    db_options.env = env.get();
  }

  auto retention = std::make_shared<RetentionFilterFactory>();
  rocksdb::ColumnFamilyOptions cf_options;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // A batch's keys are mostly new at high cardinality: a Bloom filter answers a miss without
  // reading data blocks (10 bits a key, ~1% false positives; charged to the cache too).
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options.compaction_filter_factory = retention;

  std::error_code ec;
  if (!std::filesystem::exists(options.path, ec)) {
    RETURN_NOT_OK(MakeDirs(std::filesystem::path(options.path).parent_path().string()));
    RETURN_NOT_OK(CreateDatabase(options.path, db_options));
  }
  // A database whose own files are missing (CURRENT, or the MANIFEST it names) is corrupt;
  // every other open error (a lock, EACCES, EMFILE, ENOSPC, EIO) is reported as what it is.
  auto opening = [&options](const rocksdb::Status& s, std::string_view what) {
    if (s.IsPathNotFound()) {
      return Status::Corruption(fmt::format("state {}: {}: a file of the database is missing: {}",
                                            options.path, what, s.ToString()));
    }
    return FromRocks(s, fmt::format("state {}: {}", options.path, what));
  };
  const bool has_current = std::filesystem::exists(options.path + "/CURRENT", ec);
  if (ec) return Status::FromErrno("state " + options.path + "/CURRENT", ec.value());
  if (!has_current) {
    return Status::Corruption(
        fmt::format("state {} is not a database: it has no CURRENT file", options.path));
  }
  std::vector<std::string> names;
  RETURN_NOT_OK(opening(rocksdb::DB::ListColumnFamilies(db_options, options.path, &names),
                        "list column families"));
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, cf_options);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  RETURN_NOT_OK(
      opening(rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &raw), "open"));
  std::unique_ptr<rocksdb::DB> db(raw);
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families;
  for (size_t i = 0; i < handles.size(); ++i) families[names[i]] = handles[i];
  std::unique_ptr<RocksDbStateStore> store(new RocksDbStateStore(
      std::move(options), std::move(db), std::move(families), cf_options, std::move(retention),
      std::move(statistics), std::move(env), db_options));
  RETURN_NOT_OK(store->LoadRetention());
  RETURN_NOT_OK(store->LoadIncarnation());
  // Runs a crash left behind were never committed.
  std::filesystem::remove_all(store->IngestDir(), ec);
  if (ec) return Status::FromErrno("remove " + store->IngestDir(), ec.value());
  RETURN_NOT_OK(MakeDirs(store->IngestDir()));
  return store;
}

class RocksDbStateStore::SstRun final : public streaming::SortedRun {
 public:
  SstRun(std::string ns, std::string path, std::unique_ptr<rocksdb::SstFileWriter> writer)
      : ns_(std::move(ns)), path_(std::move(path)), writer_(std::move(writer)) {}
  ~SstRun() override {
    // Committed with move_files: RocksDB took the file over and removed this name already.
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  Status Add(std::string_view key, std::string_view value) override {
    // The database is untouched by a run: a failed write is the batch's to retry.
    if (entries_ == 0) {
      RETURN_NOT_OK(FromRocks(writer_->Open(path_), "open sorted run " + path_, true));
    }
    ++entries_;
    return FromRocks(writer_->Put(key, value), "sorted run " + path_, true);
  }
  Status Finish() override {
    if (entries_ == 0 || finished_) return Status::OK();  // an empty run commits nothing
    finished_ = true;
    return FromRocks(writer_->Finish(), "finish sorted run " + path_, true);  // synced
  }
  int64_t entries() const override { return entries_; }
  const std::string& ns() const { return ns_; }
  const std::string& path() const { return path_; }
  bool finished() const { return finished_; }

 private:
  const std::string ns_;
  const std::string path_;
  const std::unique_ptr<rocksdb::SstFileWriter> writer_;
  int64_t entries_ = 0;
  bool finished_ = false;
};

Result<std::unique_ptr<RocksDbStateStore::SstRun>> RocksDbStateStore::NewSstRun(
    const std::string& ns) {
  const std::string path = fmt::format("{}/{}.{}.sst", IngestDir(), ns, next_run_.fetch_add(1));
  // The family's options (comparator, table format); no family handle: a reopen changes them.
  rocksdb::Options options(db_options_, cf_options_);
  return std::make_unique<SstRun>(
      ns, path,
      std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(db_options_), options));
}

Result<std::unique_ptr<streaming::SortedRun>> RocksDbStateStore::NewSortedRun(
    const std::string& ns) {
  ASSIGN_OR_RETURN(std::unique_ptr<SstRun> run, NewSstRun(ns));
  return std::unique_ptr<streaming::SortedRun>(std::move(run));
}

Status RocksDbStateStore::CommitRuns(const streaming::BatchCommit& commit,
                                     rocksdb::ColumnFamilyHandle* cf,
                                     const streaming::BatchRecord& next) {
  if (!commit.deletes.empty()) {
    return Status::InvalidArgument(commit.ns + ": a commit with sorted runs cannot delete");
  }
  rocksdb::IngestExternalFileArg rows, record;
  rows.column_family = cf;
  for (streaming::SortedRun* r : commit.runs) {
    auto* run = static_cast<SstRun*>(r);
    if (run->ns() != commit.ns) {
      return Status::InvalidArgument(
          fmt::format("{}: a sorted run of namespace {} in its commit", commit.ns, run->ns()));
    }
    if (run->entries() == 0) continue;
    if (!run->finished()) return Status::InvalidArgument(commit.ns + ": a run not finished");
    rows.external_files.push_back(run->path());
  }
  // The puts held in memory: one more run, in key order.
  ASSIGN_OR_RETURN(std::unique_ptr<SstRun> rest, NewSstRun(commit.ns));
  std::vector<const std::pair<std::string, std::string>*> puts;
  puts.reserve(commit.puts.size());
  for (const auto& kv : commit.puts) puts.push_back(&kv);
  std::sort(puts.begin(), puts.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (const auto* kv : puts) RETURN_NOT_OK(rest->Add(kv->first, kv->second));
  RETURN_NOT_OK(rest->Finish());
  if (rest->entries() > 0) rows.external_files.push_back(rest->path());
  // The batch record, in the default family: ingested with the rows, atomically.
  ASSIGN_OR_RETURN(std::unique_ptr<SstRun> batch, NewSstRun(commit.ns));
  RETURN_NOT_OK(batch->Add(kBatchKeyPrefix + commit.ns, EncodeCommitted(next)));
  RETURN_NOT_OK(batch->Finish());
  record.column_family = db_->DefaultColumnFamily();
  record.external_files.push_back(batch->path());
  for (auto* arg : {&rows, &record}) {
    arg->options.move_files = true;            // hard links: no copy
    arg->options.allow_blocking_flush = true;  // memtables holding these keys flush first
  }
  std::vector<rocksdb::IngestExternalFileArg> args;
  if (!rows.external_files.empty()) args.push_back(rows);
  args.push_back(record);
  if (rocksdb::Status s = db_->IngestExternalFiles(args); !s.ok()) {
    // Nothing of the batch is visible (the ingestion is atomic): a retry redoes it all, after
    // the store reopens the database (a failed flush or MANIFEST write stops RocksDB's writes).
    if (s.IsIOError() || s.IsNoSpace()) write_failed_ = true;
    return FromRocks(s, "commit " + commit.ns + " (ingest)", /*store_recovers=*/true);
  }
  return Status::OK();
}

RocksDbStateStore::RocksDbStateStore(RocksDbOptions options, std::unique_ptr<rocksdb::DB> db,
                                     std::map<std::string, rocksdb::ColumnFamilyHandle*> families,
                                     rocksdb::ColumnFamilyOptions cf_options,
                                     std::shared_ptr<RetentionFilterFactory> retention,
                                     std::shared_ptr<rocksdb::Statistics> statistics,
                                     std::unique_ptr<rocksdb::Env> env,
                                     rocksdb::DBOptions db_options)
    : options_(std::move(options)),
      env_(std::move(env)),
      db_options_(std::move(db_options)),
      db_(std::move(db)),
      cf_options_(std::move(cf_options)),
      retention_(std::move(retention)),
      statistics_(std::move(statistics)),
      families_(std::move(families)) {}

RocksDbStateStore::~RocksDbStateStore() {
  if (!db_) return;
  db_->FlushWAL(true).PermitUncheckedError();  // best effort at close; commits already synced
  for (auto& [name, handle] : families_)
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
}

Status RocksDbStateStore::Recover() {
  if (!write_failed_.load()) return Status::OK();
  // The last write failed (a full or failing disk) and RocksDB stopped writing: reopen;
  // while the disk is still in trouble this fails and the caller's batch is retried later.
  std::unique_lock reopen(db_mu_);
  if (!write_failed_.load()) return Status::OK();
  if (Status st = ReopenLocked(); !st.ok()) {
    return Status::Unavailable(
        fmt::format("state: writes stopped after a disk error; reopening: {}", st.message()));
  }
  write_failed_ = false;
  return Status::OK();
}

Status RocksDbStateStore::LockDb(std::shared_lock<std::shared_mutex>& lock) {
  RETURN_NOT_OK(Recover());
  lock = std::shared_lock(db_mu_);
  return Usable();
}

Status RocksDbStateStore::Usable() const {
  if (db_) return Status::OK();
  return Status::Unavailable("state: the database is closed after a disk error (retrying)");
}

Status RocksDbStateStore::ReopenLocked() {
  if (db_) {
    for (auto& [name, handle] : families_) {
      db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    }
    families_.clear();
    db_->Close().PermitUncheckedError();
    db_.reset();
  }
  std::vector<std::string> names;
  RETURN_NOT_OK(FromRocks(rocksdb::DB::ListColumnFamilies(db_options_, options_.path, &names),
                          "reopen state " + options_.path));
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, cf_options_);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  RETURN_NOT_OK(
      FromRocks(rocksdb::DB::Open(db_options_, options_.path, descriptors, &handles, &raw),
                "reopen state " + options_.path));
  db_.reset(raw);
  std::lock_guard lock(families_mu_);
  for (size_t i = 0; i < handles.size(); ++i) families_[names[i]] = handles[i];
  return Status::OK();
}

Status RocksDbStateStore::LoadIncarnation() {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), kIncarnationKey, &value);
  if (s.ok()) {
    incarnation_ = value;
    return Status::OK();
  }
  if (!s.IsNotFound()) return FromRocks(s, "read the state's incarnation");
  // A new database (or one made before incarnations): its id, written once.
  incarnation_ = NewIncarnationId();
  rocksdb::WriteOptions write;
  write.sync = options_.sync_commits;
  return FromRocks(db_->Put(write, db_->DefaultColumnFamily(), kIncarnationKey, incarnation_),
                   "write the state's incarnation");
}

Status RocksDbStateStore::LoadRetention() {
  ASSIGN_OR_RETURN(auto all, AllCommitted());
  for (const auto& [ns, batch] : all) {
    const int64_t cutoff = batch.record.expire_before_ms;
    if (cutoff == INT64_MIN) continue;
    ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(ns, false));
    if (cf != nullptr) retention_->Set(cf->GetID(), cutoff);
  }
  return Status::OK();
}

Result<rocksdb::ColumnFamilyHandle*> RocksDbStateStore::Family(const std::string& ns, bool create) {
  if (ns.empty() || ns == rocksdb::kDefaultColumnFamilyName) {
    return Status::InvalidArgument(fmt::format("bad namespace '{}'", ns));
  }
  std::lock_guard lock(families_mu_);
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
  std::shared_lock<std::shared_mutex> db_lock;
  RETURN_NOT_OK(LockDb(db_lock));
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(ns, false));
  if (cf == nullptr) return std::optional<std::string>();
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf, key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  RETURN_NOT_OK(FromRocks(s, "get " + ns));
  return std::optional<std::string>(std::move(value));
}

Result<std::vector<std::optional<std::string>>> RocksDbStateStore::MultiGet(
    const std::string& ns, const std::vector<std::string>& keys) {
  std::shared_lock<std::shared_mutex> db_lock;
  RETURN_NOT_OK(LockDb(db_lock));
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(ns, false));
  std::vector<std::optional<std::string>> values(keys.size());
  if (cf == nullptr || keys.empty()) return values;
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> found(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  const bool sorted = std::is_sorted(keys.begin(), keys.end());
  db_->MultiGet(rocksdb::ReadOptions(), cf, keys.size(), slices.data(), found.data(),
                statuses.data(), sorted);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    RETURN_NOT_OK(FromRocks(statuses[i], "get " + ns));
    values[i].emplace(found[i].data(), found[i].size());
  }
  return values;
}

Status RocksDbStateStore::Scan(
    const std::string& ns, const std::string& begin, const std::string& end,
    const std::function<bool(const std::string&, const std::string&)>& fn) {
  std::shared_lock<std::shared_mutex> db_lock;
  RETURN_NOT_OK(LockDb(db_lock));
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
  std::lock_guard lock(commit_mu_);  // one commit at a time: the batch id check stays true
  std::shared_lock<std::shared_mutex> db_lock;
  RETURN_NOT_OK(LockDb(db_lock));
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(commit.ns, true));
  ASSIGN_OR_RETURN(std::optional<streaming::CommittedBatch> last, LastCommittedLocked(commit.ns));
  if (last && commit.record.batch_id.value() <= last->record.batch_id.value()) {
    return Status::FailedPrecondition(fmt::format("{}: commit of batch {} after batch {}",
                                                  commit.ns, commit.record.batch_id,
                                                  last->record.batch_id));
  }
  const streaming::BatchRecord next =
      streaming::MergeRecord(last ? &last->record : nullptr, commit.record);
  if (!commit.runs.empty()) {
    RETURN_NOT_OK(CommitRuns(commit, cf, next));
  } else {
    rocksdb::WriteBatch batch;
    for (const auto& [k, v] : commit.puts)
      RETURN_NOT_OK(FromRocks(batch.Put(cf, k, v), "batch put"));
    for (const auto& k : commit.deletes)
      RETURN_NOT_OK(FromRocks(batch.Delete(cf, k), "batch delete"));
    RETURN_NOT_OK(FromRocks(
        batch.Put(db_->DefaultColumnFamily(), kBatchKeyPrefix + commit.ns, EncodeCommitted(next)),
        "batch put"));
    rocksdb::WriteOptions write;
    write.sync = options_.sync_commits;
    write.disableWAL = false;
    if (rocksdb::Status w = db_->Write(write, &batch); !w.ok()) {
      // Nothing of the batch is visible (the write is atomic): a retry redoes it all.
      write_failed_ = true;
      // A failed commit write is retried after the store reopens the database (Recover).
      return FromRocks(w, "commit " + commit.ns, /*store_recovers=*/true);
    }
  }
  CrashPoint("after_state_commit");
  if (commit.record.expire_before_ms != INT64_MIN) {
    retention_->Set(cf->GetID(), commit.record.expire_before_ms);
  }
  return Status::OK();
}

Result<std::optional<streaming::CommittedBatch>> RocksDbStateStore::LastCommitted(
    const std::string& ns) {
  std::shared_lock<std::shared_mutex> db_lock;
  RETURN_NOT_OK(LockDb(db_lock));
  return LastCommittedLocked(ns);
}

Result<std::optional<streaming::CommittedBatch>> RocksDbStateStore::LastCommittedLocked(
    const std::string& ns) {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), kBatchKeyPrefix + ns, &value);
  if (s.IsNotFound()) return std::optional<streaming::CommittedBatch>();
  RETURN_NOT_OK(FromRocks(s, "read last batch of " + ns));
  ASSIGN_OR_RETURN(streaming::CommittedBatch b, DecodeCommitted(value));
  return std::optional<streaming::CommittedBatch>(std::move(b));
}

Result<std::map<std::string, streaming::CommittedBatch>> RocksDbStateStore::AllCommitted() {
  std::shared_lock<std::shared_mutex> db_lock;
  RETURN_NOT_OK(LockDb(db_lock));
  return AllCommittedLocked();
}

Result<std::map<std::string, streaming::CommittedBatch>> RocksDbStateStore::AllCommittedLocked() {
  std::map<std::string, streaming::CommittedBatch> all;
  const std::string prefix = kBatchKeyPrefix;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), db_->DefaultColumnFamily()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    ASSIGN_OR_RETURN(streaming::CommittedBatch b, DecodeCommitted(it->value().ToStringView()));
    all.emplace(it->key().ToString().substr(prefix.size()), std::move(b));
  }
  RETURN_NOT_OK(FromRocks(it->status(), "read batch records"));
  return all;
}

Status RocksDbStateStore::Reset(const std::string& ns) {
  std::lock_guard lock(commit_mu_);
  std::shared_lock<std::shared_mutex> db_lock;
  RETURN_NOT_OK(LockDb(db_lock));
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(ns, true));
  ASSIGN_OR_RETURN(std::optional<streaming::CommittedBatch> last, LastCommittedLocked(ns));
  // Every key's delete and the emptied batch record in one write: a crash leaves the old
  // state or the reset one.
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    RETURN_NOT_OK(FromRocks(batch.Delete(cf, it->key()), "batch delete"));
  }
  RETURN_NOT_OK(FromRocks(it->status(), "scan " + ns));
  const std::string key = kBatchKeyPrefix + ns;
  if (last) {
    RETURN_NOT_OK(FromRocks(batch.Put(db_->DefaultColumnFamily(), key,
                                      EncodeCommitted({.batch_id = last->record.batch_id})),
                            "batch put"));
  }
  rocksdb::WriteOptions write;
  write.sync = true;
  RETURN_NOT_OK(FromRocks(db_->Write(write, &batch), "reset " + ns));
  retention_->Set(cf->GetID(), INT64_MIN);
  return Status::OK();
}

Result<std::map<std::string, streaming::CommittedBatch>> RocksDbStateStore::CreateCheckpoint(
    const std::string& dir) {
  std::lock_guard lock(commit_mu_);
  std::shared_lock db_lock(db_mu_);
  RETURN_NOT_OK(Usable());
  ASSIGN_OR_RETURN(auto all, AllCommittedLocked());
  rocksdb::Checkpoint* raw = nullptr;
  RETURN_NOT_OK(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  RETURN_NOT_OK(FromRocks(checkpoint->CreateCheckpoint(dir), "checkpoint into " + dir));
  return all;
}

Status RocksDbStateStore::FlushWal() {
  std::shared_lock db_lock(db_mu_);
  RETURN_NOT_OK(Usable());
  return FromRocks(db_->FlushWAL(true), "flush WAL");
}

Status RocksDbStateStore::Compact(const std::string& ns) {
  std::shared_lock db_lock(db_mu_);
  RETURN_NOT_OK(Usable());
  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, Family(ns, false));
  if (cf == nullptr) return Status::OK();
  rocksdb::CompactRangeOptions options;
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  return FromRocks(db_->CompactRange(options, cf, nullptr, nullptr), "compact " + ns);
}

NamespaceStats RocksDbStateStore::Stats(const std::string& ns) {
  NamespaceStats stats;
  std::shared_lock db_lock(db_mu_);
  if (!db_) return stats;
  auto cf = Family(ns, false);
  if (!cf.ok() || *cf == nullptr) return stats;
  uint64_t v = 0;
  if (db_->GetIntProperty(*cf, "rocksdb.estimate-num-keys", &v))
    stats.keys = static_cast<int64_t>(v);
  if (db_->GetIntProperty(*cf, "rocksdb.total-sst-files-size", &v))
    stats.bytes += static_cast<int64_t>(v);
  if (db_->GetIntProperty(*cf, "rocksdb.size-all-mem-tables", &v))
    stats.bytes += static_cast<int64_t>(v);
  return stats;
}

std::map<std::string, uint64_t> RocksDbStateStore::Tickers() const {
  return {
      {"block_cache_hit", statistics_->getTickerCount(rocksdb::BLOCK_CACHE_HIT)},
      {"block_cache_miss", statistics_->getTickerCount(rocksdb::BLOCK_CACHE_MISS)},
      {"bytes_written", statistics_->getTickerCount(rocksdb::BYTES_WRITTEN)},
      {"bytes_read", statistics_->getTickerCount(rocksdb::BYTES_READ)},
      {"compaction_bytes_written", statistics_->getTickerCount(rocksdb::COMPACT_WRITE_BYTES)},
      {"stall_micros", statistics_->getTickerCount(rocksdb::STALL_MICROS)},
      {"wal_syncs", statistics_->getTickerCount(rocksdb::WAL_FILE_SYNCED)},
  };
}

}  // namespace runnel::state
