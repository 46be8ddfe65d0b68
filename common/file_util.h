// Small file helpers with Status errors, shared by every module that writes files.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace runnel {

// Writes `path` through "<path>.tmp-<pid>-<n>" and a rename, so readers see all or nothing.
// With `sync`, the file is fsynced before the rename and its directory after: durable once
// this returns, even across power loss.
Status WriteFileAtomically(const std::string& path, std::string_view content, bool sync = false);

// fsync of a file or directory (a directory: so renames and new entries in it are durable).
Status SyncPath(const std::string& path);

// The whole file; ResourceExhausted when it holds more than `max_bytes` (a config or secret
// named by mistake as /dev/zero or a log file must not eat the memory).
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = SIZE_MAX);
// Reads `path` front to back, handing each chunk (up to 64 KiB) to `chunk`; stops early (OK)
// when `chunk` returns false.
Status ReadFileChunks(const std::string& path, const std::function<bool(std::string_view)>& chunk);

// Creates `dir` and its parents if missing.
Status MakeDirs(const std::string& dir);

}  // namespace runnel
