// Helpers for tests that run the real `runnel` binary on configs they write.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "sinks/json_file_sink.h"
#include "tests/support/subprocess.h"

extern char** environ;

namespace runnel::testing {

// ../shared/golden beside the repository (as in CI), or $RUNNEL_GOLDEN_DIR.
inline std::string GoldenDir() {
  const char* dir = std::getenv("RUNNEL_GOLDEN_DIR");  // NOLINT(concurrency-mt-unsafe)
  return dir != nullptr ? dir : SourceDir() + "/../shared/golden";
}

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "runnel-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The flagship query over a file source, as YAML.
inline std::string HourlyConfig(const std::string& dir, const std::string& input,
                                int64_t batch = 1000, const std::string& lateness = "10m") {
  return "service: { state_dir: " + dir +
         "/state }\n"
         "engine: { workers: 2 }\n"
         "checkpoint: { every: 10 batches, keep: 2 }\n"
         "sources:\n"
         "  clicks: { type: file, path: " +
         input + ", max_records_per_batch: " + std::to_string(batch) +
         " }\n"
         "queries:\n"
         "  - name: hourly_pages\n"
         "    source: clicks\n"
         "    batch_interval: 1s\n"
         "    event_time: { field: ts }\n"
         "    window: 1h\n"
         "    allowed_lateness: " +
         lateness +
         "\n"
         "    group_by: [customer, url]\n"
         "    aggregates:\n"
         "      page_views: count\n"
         "      visitors: { count_distinct: session_id }\n"
         "      referrers: { count_values: referrer }\n"
         "    sinks: [ { type: json_files, path: " +
         dir + "/out } ]\n";
}

// The service's own log lines (librdkafka's debug lines left out), for failure messages.
inline std::string ServiceLog(const std::string& path) {
  std::string text;
  for (const auto& l : ReadLines(path)) {
    if (!l.starts_with("%")) text += l + "\n";
  }
  return text;
}

// _id -> parsed record.
inline std::map<std::string, boost::json::value> ById(const std::vector<std::string>& lines) {
  std::map<std::string, boost::json::value> out;
  for (const auto& l : lines) {
    if (l.empty()) continue;
    auto v = boost::json::parse(l);
    out[std::string(v.at("_id").as_string())] = v;
  }
  return out;
}

// The JSON sink's current content: the latest record per _id.
inline std::map<std::string, boost::json::value> SinkContent(const std::string& dir) {
  auto latest = sinks::JsonFileSink::ReadLatest(dir + "/out/hourly_pages");
  EXPECT_TRUE(latest.ok()) << latest.status();
  return ById(latest.ok() ? *latest : std::vector<std::string>{});
}

// A config whose query sends invalid records to the dead-letter output under `dir`/dead.
inline std::string WithDeadLetters(std::string config, const std::string& dir) {
  config.replace(config.find("    sinks:"), 0,
                 "    on_invalid: dead_letter\n    dead_letter: { path: " + dir + "/dead }\n");
  return config;
}

// How many of the query's dead letters (WithDeadLetters) carry each reason.
inline std::map<std::string, size_t> DeadLettersByReason(const std::string& dir) {
  std::map<std::string, size_t> by_reason;
  auto dead = sinks::JsonFileSink::ReadLatest(dir + "/dead/hourly_pages");
  EXPECT_TRUE(dead.ok()) << dead.status();
  if (!dead.ok()) return by_reason;
  for (const auto& [id, rec] : ById(*dead)) by_reason[std::string(rec.at("reason").as_string())]++;
  return by_reason;
}

// An HourlyConfig that serves HTTP on a free port with batches every `batch_interval`.
inline std::string Serving(std::string config, const std::string& batch_interval) {
  config.replace(config.find("service: {"), 10, "service: { http_listen: \"127.0.0.1:0\",");
  config.replace(config.find("batch_interval: 1s"), 18, "batch_interval: " + batch_interval);
  return config;
}

// An HourlyConfig whose source `clicks` reads the Kafka topic `clicks` instead of a file.
inline std::string WithKafkaSource(std::string config, const std::string& bootstrap,
                                   int max_records_per_partition) {
  const size_t a = config.find("  clicks: {");
  config.replace(a, config.find('\n', a) - a,
                 "  clicks: { type: kafka, bootstrap_servers: \"" + bootstrap +
                     "\", topic: clicks, max_records_per_partition: " +
                     std::to_string(max_records_per_partition) +
                     // The mock cluster holds a member that left until its session ends.
                     ", librdkafka: { session.timeout.ms: \"6000\" } }");
  return config;
}

// The hourly query over a golden file, serving HTTP on a free port, 100 ms batches.
inline std::string ServeConfig(const std::string& dir,
                               const std::string& input_name = "clicks-dirty.jsonl") {
  return Serving(HourlyConfig(dir, GoldenDir() + "/" + input_name, 1000, "1h"), "100ms");
}

// `runnel run --config FILE` in the background, stderr to a file; SIGKILLed if still running.
class Service {
 public:
  // `extra_env`: "NAME=value" entries added to this process's environment.
  Service(const std::string& config, const std::string& log,
          const std::vector<std::string>& extra_env = {}) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> argv = {RunnelBinary(), "run", "--config", config};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings = extra_env;
    std::vector<char*> env;
    // An entry of `extra_env` replaces the inherited variable of the same name.
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const std::string_view name = entry.substr(0, entry.find('='));
      bool replaced = false;
      for (const auto& x : env_strings) replaced |= x.starts_with(std::string(name) + "=");
      if (!replaced) env.push_back(*e);
    }
    for (auto& e : env_strings) env.push_back(e.data());
    env.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), env.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    // The log names the port once the server listens.
    const std::regex port_line("serving http on port ([0-9]+)");
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::smatch m;
      if (std::regex_search(text, m, port_line)) port_ = std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_NE(port_, 0) << "the service did not start serving";
  }
  ~Service() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Sends `signals` (SIGTERM) and returns the exit code (or -1 if it did not exit within
  // `timeout`).
  int Terminate(std::chrono::seconds timeout, const std::vector<int>& signals = {SIGTERM}) {
    for (int sig : signals) kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Waits until /readyz answers 200 (a Kafka source has joined its group); false on timeout.
  bool WaitReady(std::chrono::seconds timeout = std::chrono::seconds(60)) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = RunProcess({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                           Url("/readyz")});
      if (r.out == "200") return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

inline ProcessOutput Get(const std::string& url) {
  return RunProcess({"curl", "-s", "-S", "--max-time", "10", "-w", "\n%{http_code}", url});
}

// The HTTP status code of a curl -w run, and the body before it.
inline int Code(const ProcessOutput& r) { return std::stoi(r.out.substr(r.out.rfind('\n') + 1)); }
inline std::string Body(const ProcessOutput& r) { return r.out.substr(0, r.out.rfind('\n')); }

// `runnel broker` as a child process; killed by the destructor.
class Broker {
 public:
  explicit Broker(const std::vector<std::string>& topics, int brokers = 1) {
    int out[2], in[2];
    EXPECT_EQ(pipe(out), 0);
    EXPECT_EQ(pipe(in), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<std::string> argv = {RunnelBinary(), "broker", "--brokers",
                                     std::to_string(brokers)};
    for (const auto& t : topics) {
      argv.push_back("--topic");
      argv.push_back(t);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    out_ = fdopen(out[0], "r");
    char line[512];
    while (fgets(line, sizeof(line), out_) != nullptr) {
      std::string l(line);
      if (l.starts_with("BOOTSTRAP=")) {
        bootstrap_ = l.substr(10, l.find_last_not_of("\n") - 9);
        break;
      }
    }
    EXPECT_FALSE(bootstrap_.empty()) << "the broker printed no BOOTSTRAP= line";
  }
  ~Broker() {
    close(stdin_);  // the broker exits when stdin closes
    int status = 0;
    waitpid(pid_, &status, 0);
    fclose(out_);
  }
  const std::string& bootstrap() const { return bootstrap_; }
  // Sends one fault command on the broker's stdin; returns its reply ("OK ..." / "ERR ...").
  std::string Control(const std::string& line) {
    const std::string text = line + "\n";
    EXPECT_EQ(write(stdin_, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    char reply[512];
    while (fgets(reply, sizeof(reply), out_) != nullptr) {
      std::string r(reply);
      if (r.starts_with("OK") || r.starts_with("ERR")) return r.substr(0, r.find('\n'));
    }
    return "no reply";
  }

 private:
  pid_t pid_ = 0;
  int stdin_ = -1;
  FILE* out_ = nullptr;
  std::string bootstrap_;
};

inline void Produce(const std::string& bootstrap, const std::string& topic,
                    const std::string& file) {
  // One message per line; per-message random partitions (no sticky batching).
  // Bounded: kcat waits forever for a broker that is gone.
  auto r = RunProcess({"timeout", "120", "kcat", "-P", "-b", bootstrap, "-t", topic, "-X",
                       "sticky.partitioning.linger.ms=0", "-l", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// The sum of a metric's samples in a scrape (every label set).
inline double SumOf(const std::string& metrics, const std::string& name) {
  double sum = 0;
  std::istringstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(name + "{") || line.starts_with(name + " ")) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

// Starts `argv` (found on PATH) with stderr to `err_path` and stdout to `out_path`; returns
// its pid.
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& err_path = "/dev/null",
                   const std::string& out_path = "/dev/null") {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  EXPECT_EQ(posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

inline int WaitFor(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace runnel::testing
