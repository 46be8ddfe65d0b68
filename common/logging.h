// Logging setup: one named spdlog logger per module ("engine", "kafka", ...), all writing to
// one stderr sink, as human text or as JSON lines with `time`, `level`, `logger` and `msg`.
//
// Thread safety: every function here may be called from any thread; loggers are thread-safe.
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/formatter.h>
#include <spdlog/logger.h>

#include "common/result.h"

namespace runnel {

enum class LogFormat { kText, kJson };

struct LoggingOptions {
  // kText: "2026-11-23T19:30:05.123Z info  [engine] message"; kJson: one JSON object per line.
  LogFormat format = LogFormat::kText;
  // Messages below this level are dropped.
  spdlog::level::level_enum level = spdlog::level::info;
};

// "text" | "json".
Result<LogFormat> ParseLogFormat(std::string_view name);
// "trace" | "debug" | "info" | "warn" | "error" | "critical" | "off".
Result<spdlog::level::level_enum> ParseLogLevel(std::string_view name);

// `in` with each byte that is not part of a valid UTF-8 sequence replaced by U+FFFD.
std::string ToValidUtf8(std::string_view in);

// Applies `options` to every module logger, present and future.
void ConfigureLogging(const LoggingOptions& options);

// The logger of `module`, created on first use with the configured format and level.
std::shared_ptr<spdlog::logger> Logger(std::string_view module);

// The formatter of LogFormat::kJson: {"time":"...Z","level":"info","logger":"...","msg":"..."}.
// Strings are JSON-escaped; a message that is not valid UTF-8 has its invalid bytes replaced
// by U+FFFD, so every line is valid JSON whatever was logged.
std::unique_ptr<spdlog::formatter> MakeJsonFormatter();

}  // namespace runnel
