// The version and the git commit the binary was built from (generated at build time).
#pragma once

#include <string_view>

namespace runnel {

std::string_view BuildVersion();  // "0.1.0"
std::string_view BuildCommit();   // 12 hex digits, "-dirty" when built from a changed tree
                                  // or "unknown" outside a git checkout

}  // namespace runnel
