#include "state/fault_fs.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>

namespace runnel::state {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;

class FaultFs;

class FaultFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultFile(std::unique_ptr<rocksdb::FSWritableFile> file, const FaultFs* fs)
      : FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}
  IOStatus Append(const rocksdb::Slice& data, const IOOptions& o, IODebugContext* d) override;
  IOStatus Append(const rocksdb::Slice& data, const IOOptions& o,
                  const rocksdb::DataVerificationInfo& info, IODebugContext* d) override;
  IOStatus Flush(const IOOptions& o, IODebugContext* d) override;
  IOStatus Sync(const IOOptions& o, IODebugContext* d) override;
  IOStatus Fsync(const IOOptions& o, IODebugContext* d) override;

 private:
  const FaultFs* const fs_;
};

class FaultFs final : public rocksdb::FileSystemWrapper {
 public:
  FaultFs(std::shared_ptr<rocksdb::FileSystem> base, std::string control)
      : FileSystemWrapper(std::move(base)), control_(std::move(control)) {}
  static const char* kClassName() { return "RunnelFaultInjectingFileSystem"; }
  const char* Name() const override { return kClassName(); }

  IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& opts,
                           std::unique_ptr<rocksdb::FSWritableFile>* result,
                           IODebugContext* dbg) override {
    if (IOStatus fault = Fault(); !fault.ok()) return fault;
    IOStatus s = target()->NewWritableFile(name, opts, result, dbg);
    if (s.ok()) *result = std::make_unique<FaultFile>(std::move(*result), this);
    return s;
  }

  // OK, or the error the control file asks for. Retryable: the disk may come back.
  IOStatus Fault() const {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (now - checked_.load(std::memory_order_relaxed) > 50'000'000) {
      std::lock_guard lock(mu_);
      checked_ = now;
      struct stat st {};
      if (::stat(control_.c_str(), &st) != 0) {
        mode_ = 0;
      } else {
        std::ifstream in(control_);
        std::string what;
        in >> what;
        mode_ = what == "eio" ? 2 : 1;
      }
    }
    switch (mode_.load(std::memory_order_relaxed)) {
      case 1: {
        IOStatus s = IOStatus::NoSpace("injected: no space left on device");
        s.SetRetryable(true);
        return s;
      }
      case 2: {
        IOStatus s = IOStatus::IOError("injected: input/output error");
        s.SetRetryable(true);
        return s;
      }
      default:
        return IOStatus::OK();
    }
  }

 private:
  const std::string control_;
  mutable std::mutex mu_;
  mutable std::atomic<int64_t> checked_{0};
  mutable std::atomic<int> mode_{0};
};

IOStatus FaultFile::Append(const rocksdb::Slice& data, const IOOptions& o, IODebugContext* d) {
  if (IOStatus fault = fs_->Fault(); !fault.ok()) return fault;
  return target()->Append(data, o, d);
}
IOStatus FaultFile::Append(const rocksdb::Slice& data, const IOOptions& o,
                           const rocksdb::DataVerificationInfo& info, IODebugContext* d) {
  if (IOStatus fault = fs_->Fault(); !fault.ok()) return fault;
  return target()->Append(data, o, info, d);
}
IOStatus FaultFile::Flush(const IOOptions& o, IODebugContext* d) {
  if (IOStatus fault = fs_->Fault(); !fault.ok()) return fault;
  return target()->Flush(o, d);
}
IOStatus FaultFile::Sync(const IOOptions& o, IODebugContext* d) {
  if (IOStatus fault = fs_->Fault(); !fault.ok()) return fault;
  return target()->Sync(o, d);
}
IOStatus FaultFile::Fsync(const IOOptions& o, IODebugContext* d) {
  if (IOStatus fault = fs_->Fault(); !fault.ok()) return fault;
  return target()->Fsync(o, d);
}

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewFaultInjectingFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base, std::string control_file) {
  return std::make_shared<FaultFs>(std::move(base), std::move(control_file));
}

}  // namespace runnel::state
