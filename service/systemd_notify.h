// SystemdNotifier: the service's side of systemd's notify protocol (sd_notify). READY=1 once
// state is recovered and sources are connected, STATUS= lines, RELOADING=1 while a config
// reload runs (READY=1 again when it ends), STOPPING=1 when draining, and
// WATCHDOG=1 from the batch loop: every query's completed batch may ping, at most once per half
// of WATCHDOG_USEC, so a service whose batches stop running stops pinging and is restarted.
// Does nothing when NOTIFY_SOCKET is unset (not started by systemd).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "streaming/streaming_context.h"

namespace runnel::service {

class SystemdNotifier {
 public:
  SystemdNotifier();

  bool enabled() const { return enabled_; }
  // The watchdog interval systemd asked for (0: none).
  std::chrono::microseconds watchdog_interval() const { return watchdog_; }

  void Ready(const std::string& status);
  // A reload began (RELOADING=1, MONOTONIC_USEC=now); Ready ends it.
  void Reloading(const std::string& status);
  void Status(const std::string& status);
  void Stopping(const std::string& status);
  // WATCHDOG=1, unless one was sent less than half the interval ago.
  void PingWatchdog();

  // A listener for every query's streaming context: each completed batch may ping.
  streaming::BatchListener* listener() { return &listener_; }

 private:
  class Listener final : public streaming::BatchListener {
   public:
    explicit Listener(SystemdNotifier* n) : n_(n) {}
    void OnBatchCompleted(const streaming::BatchProgress&) override { n_->PingWatchdog(); }

   private:
    SystemdNotifier* const n_;
  };

  void Send(const std::string& state);

  const bool enabled_;
  const std::chrono::microseconds watchdog_;
  Listener listener_{this};
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_ping_;  // guarded by mu_
};

}  // namespace runnel::service
