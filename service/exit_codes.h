// Process exit codes of `runnel`, after sysexits(3) where one fits.
#pragma once

namespace runnel {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;        // the command ran and failed
inline constexpr int kExitUsage = 64;         // EX_USAGE: bad command line
inline constexpr int kExitDataError = 65;     // EX_DATAERR: corrupt data (a checkpoint)
inline constexpr int kExitNoInput = 66;       // EX_NOINPUT: nothing to read
inline constexpr int kExitUnavailable = 69;   // EX_UNAVAILABLE: not implemented in this build
inline constexpr int kExitSoftware = 70;      // EX_SOFTWARE: internal error
inline constexpr int kExitStateDirBusy = 75;  // EX_TEMPFAIL: another process owns state_dir
inline constexpr int kExitConfig = 78;        // EX_CONFIG: invalid configuration

}  // namespace runnel
