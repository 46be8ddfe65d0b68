// The `runnel` command line: parses argv with CLI11 and runs one subcommand.
#pragma once

namespace runnel {

// Runs `runnel` with these arguments and returns the process exit code (service/exit_codes.h).
// Writes usage and errors to stderr, command output to stdout. Call from the main thread.
int RunCli(int argc, char** argv);

}  // namespace runnel
