#include "service/systemd_notify.h"

#include <systemd/sd-daemon.h>

#include <time.h>

#include <cstdlib>

#include <fmt/format.h>

#include "common/logging.h"

namespace runnel::service {
namespace {

std::chrono::microseconds WatchdogInterval() {
  uint64_t usec = 0;
  // > 0 when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this process).
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0) {
    return std::chrono::microseconds(usec);
  }
  return std::chrono::microseconds(0);
}

}  // namespace

SystemdNotifier::SystemdNotifier()
    : enabled_(std::getenv("NOTIFY_SOCKET") != nullptr),  // NOLINT(concurrency-mt-unsafe)
      watchdog_(enabled_ ? WatchdogInterval() : std::chrono::microseconds(0)) {
  if (enabled_) {
    Logger("service")->info("systemd notify socket found; watchdog every {} ms",
                            watchdog_.count() / 1000);
  }
}

void SystemdNotifier::Send(const std::string& state) {
  if (!enabled_) return;
  const int rc = sd_notify(/*unset_environment=*/0, state.c_str());
  if (rc < 0) Logger("service")->warn("sd_notify({}) failed: error {}", state, -rc);
}

void SystemdNotifier::Ready(const std::string& status) { Send("READY=1\nSTATUS=" + status); }

void SystemdNotifier::Reloading(const std::string& status) {
  // MONOTONIC_USEC lets systemd (Type=notify-reload) match this to the reload it asked for.
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const int64_t usec = int64_t{now.tv_sec} * 1'000'000 + now.tv_nsec / 1000;
  Send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}", usec, status));
}

void SystemdNotifier::Status(const std::string& status) { Send("STATUS=" + status); }

void SystemdNotifier::Stopping(const std::string& status) { Send("STOPPING=1\nSTATUS=" + status); }

void SystemdNotifier::PingWatchdog() {
  if (!enabled_ || watchdog_.count() == 0) return;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    if (last_ping_.time_since_epoch().count() != 0 && now - last_ping_ < watchdog_ / 2) return;
    last_ping_ = now;
  }
  Send("WATCHDOG=1");
}

}  // namespace runnel::service
