// Disk-fault injection for tests: a RocksDB FileSystem that fails writes (Append, Sync, Flush,
// new files) while a control file exists. Its content picks the error: "enospc" (no space,
// the default) or "eio" (an I/O error). The service wires it when RUNNEL_DISK_FAULT_FILE names
// the control file; never in production. The file is looked at no more than every 50 ms.
//
// Thread safety: all methods (RocksDB calls them from its threads).
#pragma once

#include <memory>
#include <string>

#include <rocksdb/file_system.h>

namespace runnel::state {

// A FileSystem over `base` that fails writes while `control_file` exists.
std::shared_ptr<rocksdb::FileSystem> NewFaultInjectingFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base, std::string control_file);

}  // namespace runnel::state
