// Small file helpers with Status errors, shared by every module that writes files.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace runnel {

// Writes `path` through "<path>.tmp-<pid>-<n>" and a rename, so readers see all or nothing.
Status WriteFileAtomically(const std::string& path, std::string_view content);

Result<std::string> ReadFile(const std::string& path);

// Creates `dir` and its parents if missing.
Status MakeDirs(const std::string& dir);

}  // namespace runnel
