#include "checkpoint/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <boost/endian/conversion.hpp>

#include "common/build_info.h"
#include "common/crash_point.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "streaming/event_time.h"

namespace runnel::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[4] = {'R', 'N', 'L', 'C'};
constexpr size_t kHeaderBytes = 12;  // magic, length, crc
constexpr char kTmpSuffix[] = ".tmp";

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status FsError(const std::string& what, const std::error_code& ec) {
  return Status::IOError(fmt::format("{}: {}", what, ec.message()));
}

// The size and CRC32C of `path`; with `sync`, fsyncs it too.
Status ScanFile(const std::string& path, bool sync, uint64_t* size, uint32_t* crc) {
  Crc32cAccumulator accumulator;
  *size = 0;
  RETURN_NOT_OK(ReadFileChunks(path, [&](std::string_view chunk) {
    accumulator.process_bytes(chunk.data(), chunk.size());
    *size += chunk.size();
    return true;
  }));
  *crc = accumulator.checksum();
  return sync ? SyncPath(path) : Status::OK();
}

// Every regular file under `dir`, by name relative to it, sorted.
Result<std::vector<std::string>> FilesUnder(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file()) names.push_back(fs::relative(it->path(), dir).string());
  }
  if (ec) return FsError("list " + dir, ec);
  std::sort(names.begin(), names.end());
  return names;
}

void RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) Logger("checkpoint")->warn("cannot remove {}: {}", path, ec.message());
}

// Whether the live database holds at least what `newest` does for every query.
bool Covers(const std::map<std::string, streaming::CommittedBatch>& live,
            const v1::Manifest& newest, std::string* why) {
  for (const v1::QueryState& q : newest.queries()) {
    auto it = live.find(q.name());
    if (it == live.end()) {
      *why = fmt::format("query {} has no committed batch, checkpoint {} has batch {}", q.name(),
                         newest.checkpoint_id(), q.batch_id());
      return false;
    }
    if (it->second.record.batch_id.value() < q.batch_id()) {
      *why = fmt::format("query {} is at batch {}, behind checkpoint {} at batch {}", q.name(),
                         it->second.record.batch_id, newest.checkpoint_id(), q.batch_id());
      return false;
    }
  }
  return true;
}

}  // namespace

uint32_t Crc32c(std::string_view data) {
  Crc32cAccumulator crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

std::string EncodeManifest(const v1::Manifest& manifest) {
  std::string payload;
  manifest.SerializeToString(&payload);
  std::string out(kMagic, sizeof(kMagic));
  const uint32_t length = boost::endian::native_to_little(static_cast<uint32_t>(payload.size()));
  const uint32_t crc = boost::endian::native_to_little(Crc32c(payload));
  out.append(reinterpret_cast<const char*>(&length), 4);
  out.append(reinterpret_cast<const char*>(&crc), 4);
  out += payload;
  return out;
}

Result<v1::Manifest> DecodeManifest(std::string_view bytes) {
  if (bytes.size() < kHeaderBytes || bytes.substr(0, 4) != std::string_view(kMagic, 4)) {
    return Status::Corruption("manifest: not a Runnel checkpoint manifest");
  }
  uint32_t length = 0;
  uint32_t crc = 0;
  std::memcpy(&length, bytes.data() + 4, 4);
  std::memcpy(&crc, bytes.data() + 8, 4);
  length = boost::endian::little_to_native(length);
  crc = boost::endian::little_to_native(crc);
  const std::string_view payload = bytes.substr(kHeaderBytes);
  if (payload.size() != length) {
    return Status::Corruption(
        fmt::format("manifest: length {} but {} payload bytes", length, payload.size()));
  }
  if (Crc32c(payload) != crc) return Status::Corruption("manifest: CRC32C mismatch");
  v1::Manifest manifest;
  if (!manifest.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::Corruption("manifest: malformed message");
  }
  if (manifest.format_version() != kManifestFormatVersion) {
    return Status::Corruption(
        fmt::format("manifest: unknown format version {}", manifest.format_version()));
  }
  for (const v1::FileEntry& f : manifest.files()) {  // a name must stay inside db/
    const fs::path name(f.name());
    if (f.name().empty() || name.is_absolute() ||
        std::any_of(name.begin(), name.end(), [](const fs::path& part) { return part == ".."; })) {
      return Status::Corruption(fmt::format("manifest: file name {:?} is outside db/", f.name()));
    }
  }
  return manifest;
}

CheckpointStore::CheckpointStore(std::string state_dir, int keep)
    : dir_(std::move(state_dir) + "/checkpoints"), keep_(std::max(keep, 1)) {}

Result<v1::Manifest> CheckpointStore::Take(state::RocksDbStateStore* db) {
  std::lock_guard lock(mu_);
  RETURN_NOT_OK(MakeDirs(dir_));
  ASSIGN_OR_RETURN(std::vector<CheckpointEntry> existing,
                   ListCheckpoints(fs::path(dir_).parent_path()));
  const int64_t id = existing.empty() ? 1 : existing.back().id + 1;
  const std::string final_path = fmt::format("{}/{}", dir_, id);
  const std::string tmp = final_path + kTmpSuffix;
  RemoveAll(tmp);
  RETURN_NOT_OK(MakeDirs(tmp));

  ASSIGN_OR_RETURN(auto committed, db->CreateCheckpoint(tmp + "/db"));
  v1::Manifest manifest;
  manifest.set_format_version(kManifestFormatVersion);
  manifest.set_checkpoint_id(id);
  manifest.set_created_unix_ms(NowUnixMs());
  manifest.set_runnel_version(fmt::format("{} ({})", BuildVersion(), BuildCommit()));
  for (const auto& [name, batch] : committed) {
    v1::QueryState* q = manifest.add_queries();
    const streaming::BatchRecord& r = batch.record;
    q->set_name(name);
    q->set_batch_id(r.batch_id.value());
    q->set_batch_time_unix_ms(r.batch_time.value());
    q->set_definition_fingerprint(r.definition_fingerprint);
    q->set_watermark_ms(r.watermark_ms);
    *q->mutable_batch() = streaming::ToProto(r);
  }
  // SST files the newest checkpoint has, by name: their CRC stands (see the header).
  std::map<std::string, const v1::FileEntry*> known;
  if (!existing.empty() && existing.back().manifest) {
    for (const v1::FileEntry& f : existing.back().manifest->files()) {
      if (f.name().ends_with(".sst")) known[f.name()] = &f;
    }
  }
  TakeStats stats;
  ASSIGN_OR_RETURN(std::vector<std::string> files, FilesUnder(tmp + "/db"));
  for (const std::string& name : files) {
    const std::string path = tmp + "/db/" + name;
    v1::FileEntry* f = manifest.add_files();
    f->set_name(name);
    ++stats.files;
    std::error_code ec;
    const uint64_t on_disk = fs::file_size(path, ec);
    if (auto it = known.find(name); !ec && it != known.end() && it->second->size() == on_disk) {
      f->set_size(on_disk);
      f->set_crc32c(it->second->crc32c());
      continue;
    }
    uint64_t size = 0;
    uint32_t crc = 0;
    RETURN_NOT_OK(ScanFile(path, /*sync=*/true, &size, &crc));
    f->set_size(size);
    f->set_crc32c(crc);
    ++stats.scanned_files;
    stats.scanned_bytes += static_cast<int64_t>(size);
  }
  last_ = stats;
  RETURN_NOT_OK(SyncPath(tmp + "/db"));
  CrashPoint("mid_checkpoint");
  RETURN_NOT_OK(WriteFileAtomically(tmp + "/" + kManifestFile, EncodeManifest(manifest),
                                    /*sync=*/true));
  std::error_code ec;
  fs::rename(tmp, final_path, ec);
  if (ec) return FsError("rename " + tmp, ec);
  RETURN_NOT_OK(SyncPath(dir_));
  CrashPoint("after_checkpoint_rename");

  // Retention: the newest `keep_` complete checkpoints stay; leftovers of failed ones go.
  existing.push_back({.id = id, .path = final_path});
  for (size_t i = 0; i + keep_ < existing.size(); ++i) RemoveAll(existing[i].path);
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().string().ends_with(kTmpSuffix)) RemoveAll(entry.path().string());
  }
  return manifest;
}

CheckpointStore::TakeStats CheckpointStore::last_take() const {
  std::lock_guard lock(mu_);
  return last_;
}

Result<std::vector<CheckpointEntry>> ListCheckpoints(const std::string& state_dir) {
  const std::string dir = state_dir + "/checkpoints";
  std::vector<CheckpointEntry> entries;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    int64_t id = 0;
    auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), id);
    if (err != std::errc() || end != name.data() + name.size() || !e.is_directory()) continue;
    CheckpointEntry entry{.id = id, .path = e.path().string()};
    auto bytes = ReadFile(entry.path + "/" + kManifestFile);
    auto manifest = bytes.ok() ? DecodeManifest(*bytes) : Result<v1::Manifest>(bytes.status());
    if (manifest.ok()) {
      entry.manifest = std::move(manifest).value();
    } else {
      entry.manifest_status = manifest.status();
    }
    entries.push_back(std::move(entry));
  }
  if (ec) return FsError("list " + dir, ec);
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return entries;
}

Verification Verify(const CheckpointEntry& entry) {
  Verification v;
  auto problem = [&v](std::string text) {
    if (v.status.ok()) v.status = Status::Corruption(text);
    v.problems.push_back(std::move(text));
  };
  if (!entry.manifest) {
    problem(entry.manifest_status.ToString());
    return v;
  }
  if (entry.manifest->checkpoint_id() != entry.id) {
    problem(fmt::format("manifest names checkpoint {}, directory is {}",
                        entry.manifest->checkpoint_id(), entry.id));
  }
  for (const v1::FileEntry& f : entry.manifest->files()) {
    uint64_t size = 0;
    uint32_t crc = 0;
    Status st = ScanFile(entry.path + "/db/" + f.name(), /*sync=*/false, &size, &crc);
    if (!st.ok()) {
      problem(fmt::format("{}: {}", f.name(), st.message()));
    } else if (size != f.size()) {
      problem(fmt::format("{}: {} bytes, manifest says {}", f.name(), size, f.size()));
    } else if (crc != f.crc32c()) {
      problem(fmt::format("{}: CRC32C mismatch", f.name()));
    }
    ++v.files;
    v.bytes += static_cast<int64_t>(size);
  }
  return v;
}

Status RestoreInto(const CheckpointEntry& entry, const std::string& db_path) {
  const std::string from = entry.path + "/db";
  const std::string tmp = db_path + kTmpSuffix;
  RemoveAll(tmp);
  ASSIGN_OR_RETURN(std::vector<std::string> files, FilesUnder(from));
  RETURN_NOT_OK(MakeDirs(tmp));
  for (const std::string& name : files) {
    const std::string src = from + "/" + name;
    const std::string dst = tmp + "/" + name;
    RETURN_NOT_OK(MakeDirs(fs::path(dst).parent_path().string()));
    std::error_code ec;
    // SST files are immutable: a hard link is enough (a copy across file systems).
    bool linked = false;
    if (name.ends_with(".sst")) {
      fs::create_hard_link(src, dst, ec);
      linked = !ec;
      ec.clear();
    }
    if (!linked) fs::copy_file(src, dst, ec);
    if (ec) return FsError("restore " + src, ec);
    uint64_t size = 0;
    uint32_t crc = 0;
    RETURN_NOT_OK(ScanFile(dst, /*sync=*/true, &size, &crc));
  }
  RETURN_NOT_OK(SyncPath(tmp));
  std::error_code ec;
  fs::rename(tmp, db_path, ec);
  if (ec) return FsError("rename " + tmp, ec);
  return SyncPath(fs::path(db_path).parent_path().string());
}

Result<std::unique_ptr<state::RocksDbStateStore>> OpenState(const std::string& state_dir,
                                                            state::RocksDbOptions options) {
  auto log = Logger("checkpoint");
  const std::string db_path = state_dir + "/db";
  options.path = db_path;
  ASSIGN_OR_RETURN(std::vector<CheckpointEntry> entries, ListCheckpoints(state_dir));
  // The newest checkpoint whose manifest decodes: what the live state must cover. Its files are
  // read (verified) only when the live state does not cover it, not on every start.
  const CheckpointEntry* newest = nullptr;
  for (auto it = entries.rbegin(); it != entries.rend() && newest == nullptr; ++it) {
    if (it->manifest) {
      newest = &*it;
    } else {
      log->warn("checkpoint {} is not valid: {}", it->id, it->manifest_status.message());
    }
  }

  std::unique_ptr<state::RocksDbStateStore> live;
  std::map<std::string, streaming::CommittedBatch> committed;
  Status live_error;
  std::string why;
  if (auto opened = state::RocksDbStateStore::Open(options); opened.ok()) {
    live = std::move(opened).value();
    if (newest == nullptr) return live;
    ASSIGN_OR_RETURN(committed, live->AllCommitted());
    if (Covers(committed, *newest->manifest, &why)) return live;  // the usual start
  } else {
    live_error = opened.status();
    // Only a database RocksDB calls corrupt is set aside. A lock, a permission, too many open
    // files, a full or failing disk: errors to report, never reasons to roll state back.
    if (live_error.code() != StatusCode::kCorruption) {
      return live_error.WithContext(
          "the state is left as it is (only a corrupt database is replaced by a checkpoint)");
    }
  }
  // Checkpoints that verify, newest first.
  std::vector<const CheckpointEntry*> valid;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (!it->manifest) continue;
    Verification v = Verify(*it);
    if (v.status.ok()) {
      valid.push_back(&*it);
    } else {
      log->warn("checkpoint {} is not valid: {}", it->id, v.status.message());
    }
  }
  if (live != nullptr) {
    if (valid.empty() || Covers(committed, *valid.front()->manifest, &why)) return live;
    live_error = Status::Corruption(why);
    live.reset();  // closed before it is moved aside
  }
  if (valid.empty()) {
    return Status::Corruption(fmt::format(
        "state {} cannot be opened ({}) and there is no valid checkpoint in {}/checkpoints to "
        "restore; move it aside to start empty",
        db_path, live_error.message(), state_dir));
  }
  const std::string aside = fmt::format("{}.broken-{}", db_path, NowUnixMs());
  log->error("live state {} is not usable: {}; moving it to {} and restoring a checkpoint", db_path,
             live_error.message(), aside);
  std::error_code ec;
  if (fs::exists(db_path, ec)) {
    fs::rename(db_path, aside, ec);
    if (ec) return FsError("rename " + db_path, ec);
  }
  // The newest valid checkpoint, then older ones.
  for (const CheckpointEntry* entry : valid) {
    Status st = RestoreInto(*entry, db_path);
    if (st.ok()) {
      auto restored = state::RocksDbStateStore::Open(options);
      if (restored.ok()) {
        log->warn("restored state from checkpoint {} (taken {} ms ago)", entry->id,
                  NowUnixMs() - entry->manifest->created_unix_ms());
        return restored;
      }
      st = restored.status();
    }
    log->error("cannot restore checkpoint {}: {}", entry->id, st.message());
    RemoveAll(db_path);
  }
  return Status::Corruption(fmt::format("state {}: no checkpoint could be restored", db_path));
}

Result<streaming::BatchRecord> QueryRecord(const v1::QueryState& q) {
  if (q.has_batch()) return streaming::FromProto(q.batch());
  const std::map<std::string, std::string> positions(q.positions().begin(), q.positions().end());
  const std::map<std::string, std::string> metadata(q.metadata().begin(), q.metadata().end());
  return streaming::FromFormat1(BatchId(q.batch_id()), positions, metadata);
}

uint64_t ManifestBytes(const v1::Manifest& manifest) {
  uint64_t bytes = 0;
  for (const auto& f : manifest.files()) bytes += f.size();
  return bytes;
}

std::string ManifestText(const v1::Manifest& m) {
  auto time = [](int64_t ms) {
    return ms == INT64_MIN ? std::string("none") : streaming::FormatIsoTimestamp(ms);
  };
  std::string out = fmt::format(
      "checkpoint {}\n  format version {}\n  created {}\n  written by runnel {}\n  files {} ({} "
      "bytes)\n",
      m.checkpoint_id(), m.format_version(), time(m.created_unix_ms()), m.runnel_version(),
      m.files_size(), ManifestBytes(m));
  for (const v1::QueryState& q : m.queries()) {
    out += fmt::format(
        "  query {}\n    batch {} (batch time {})\n    watermark {}\n    definition {}\n", q.name(),
        q.batch_id(), time(q.batch_time_unix_ms()), time(q.watermark_ms()),
        q.definition_fingerprint().empty() ? "-" : q.definition_fingerprint());
    auto record = QueryRecord(q);
    if (!record.ok()) {
      out += fmt::format("    positions unreadable: {}\n", record.status().message());
      continue;
    }
    for (const auto& [input, position] : record->positions) {
      out += fmt::format("    position {} = {}\n", input, streaming::PositionText(position));
    }
  }
  return out;
}

std::string ManifestJson(const v1::Manifest& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

}  // namespace runnel::checkpoint
