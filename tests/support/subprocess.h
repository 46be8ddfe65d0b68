// Test helpers that run the `runnel` binary (or any program) as a child process.
#pragma once

#include <string>
#include <vector>

namespace runnel::testing {

struct ProcessOutput {
  int exit_code = -1;  // the exit status, or 128 + signal number when killed
  std::string out;     // everything written to stdout
  std::string err;     // everything written to stderr
};

// Runs `argv` (argv[0] is a path or a name on PATH) to completion with stdin closed.
ProcessOutput RunProcess(const std::vector<std::string>& argv);

// The path of the `runnel` binary under test ($RUNNEL_BINARY, else the one this build made).
std::string RunnelBinary();

// The source tree's root ($RUNNEL_SOURCE_DIR, else the one this build was configured from).
std::string SourceDir();

}  // namespace runnel::testing
