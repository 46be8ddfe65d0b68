#include "common/logging.h"

#include <mutex>
#include <string>

#include <fmt/chrono.h>
#include <simdjson.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/json.hpp>

namespace runnel {

std::string ToValidUtf8(std::string_view in) {
  if (simdjson::validate_utf8(in.data(), in.size())) return std::string(in);
  std::string out;
  out.reserve(in.size() + 8);
  size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 0;
    if (len != 0 && i + len <= in.size() && simdjson::validate_utf8(in.data() + i, len)) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

namespace {

constexpr const char* kTextPattern = "%Y-%m-%dT%H:%M:%S.%eZ %-5l [%n] %v";

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto since_epoch =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch());
    const std::time_t seconds = static_cast<std::time_t>(since_epoch.count() / 1000);
    boost::json::object line;
    line["time"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", fmt::gmtime(seconds),
                               since_epoch.count() % 1000);
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string_view(level.data(), level.size());
    line["logger"] = ToValidUtf8(std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    line["msg"] = ToValidUtf8(std::string_view(msg.payload.data(), msg.payload.size()));
    const std::string text = boost::json::serialize(line);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

struct Registry {
  std::mutex mu;
  std::shared_ptr<spdlog::sinks::stderr_sink_mt> sink =
      std::make_shared<spdlog::sinks::stderr_sink_mt>();
  LoggingOptions options;  // guarded by mu
};

Registry& GetRegistry() {
  static Registry registry;
  return registry;
}

std::unique_ptr<spdlog::formatter> MakeFormatter(LogFormat format) {
  if (format == LogFormat::kJson) return MakeJsonFormatter();
  return std::make_unique<spdlog::pattern_formatter>(kTextPattern, spdlog::pattern_time_type::utc);
}

}  // namespace

Result<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return Status::InvalidArgument(fmt::format("unknown log format '{}' (text|json)", name));
}

Result<spdlog::level::level_enum> ParseLogLevel(std::string_view name) {
  for (int i = spdlog::level::trace; i < spdlog::level::n_levels; ++i) {
    const auto level = static_cast<spdlog::level::level_enum>(i);
    const auto level_name = spdlog::level::to_string_view(level);
    if (name == std::string_view(level_name.data(), level_name.size())) return level;
  }
  if (name == "warn") return spdlog::level::warn;
  return Status::InvalidArgument(
      fmt::format("unknown log level '{}' (trace|debug|info|warn|error|critical|off)", name));
}

void ConfigureLogging(const LoggingOptions& options) {
  Registry& registry = GetRegistry();
  std::lock_guard lock(registry.mu);
  registry.options = options;
  spdlog::set_formatter(MakeFormatter(options.format));
  spdlog::set_level(options.level);
}

std::shared_ptr<spdlog::logger> Logger(std::string_view module) {
  Registry& registry = GetRegistry();
  std::lock_guard lock(registry.mu);
  const std::string name(module);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = std::make_shared<spdlog::logger>(name, registry.sink);
  logger->set_formatter(MakeFormatter(registry.options.format));
  logger->set_level(registry.options.level);
  spdlog::register_logger(logger);
  return logger;
}

std::unique_ptr<spdlog::formatter> MakeJsonFormatter() { return std::make_unique<JsonFormatter>(); }

}  // namespace runnel
