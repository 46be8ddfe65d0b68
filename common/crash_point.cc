#include "common/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <mutex>
#include <string>

namespace runnel {
namespace {

struct Armed {
  std::string name;  // empty: no crash point armed
  int64_t at = 1;    // crash on this pass
  std::atomic<int64_t> passes{0};
};

Armed& Config() {
  static Armed armed;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("RUNNEL_CRASH_AT");  // NOLINT(concurrency-mt-unsafe)
    if (env == nullptr) return;
    std::string_view spec(env);
    const size_t colon = spec.find(':');
    armed.name = std::string(spec.substr(0, colon));
    if (colon != std::string_view::npos) {
      const std::string_view n = spec.substr(colon + 1);
      std::from_chars(n.data(), n.data() + n.size(), armed.at);
    }
  });
  return armed;
}

}  // namespace

void CrashPoint(std::string_view name) {
  static std::atomic<int> state{-1};  // -1: unknown, 0: nothing armed, 1: armed
  int s = state.load(std::memory_order_relaxed);
  if (s == 0) return;
  Armed& armed = Config();
  if (s < 0) state.store(armed.name.empty() ? 0 : 1, std::memory_order_relaxed);
  if (armed.name != name) return;
  if (armed.passes.fetch_add(1) + 1 != armed.at) return;
  static constexpr char kMessage[] = "runnel: crash point reached (RUNNEL_CRASH_AT)\n";
  (void)!::write(2, kMessage, sizeof(kMessage) - 1);
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);
}

}  // namespace runnel
