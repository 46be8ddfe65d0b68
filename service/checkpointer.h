// Checkpointer: takes the service's periodic checkpoints. Every `every_ms` (or every
// `every_batches` committed batches, summed over the queries), when some batch committed since
// the last checkpoint, it takes one on its own thread; Final() takes the last one at shutdown.
// Each checkpoint is logged at info and observed by the metrics.
//
// Thread safety: every method may be called from any thread; listeners run on the queries'
// runner threads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "service/metrics.h"
#include "streaming/streaming_context.h"

namespace runnel::service {

struct CheckpointerOptions {
  std::string state_dir;
  int keep = 3;
  int64_t every_ms = 30000;   // 0: counted in batches
  int64_t every_batches = 0;  // used when every_ms is 0
  // Called after each checkpoint (e.g. to commit its Kafka offsets to the consumer group).
  std::function<void(const checkpoint::v1::Manifest&)> on_checkpoint;
};

class Checkpointer {
 public:
  Checkpointer(CheckpointerOptions options, state::RocksDbStateStore* db, Metrics* metrics);
  ~Checkpointer();  // stops the thread (without a final checkpoint)

  // A listener to add to every query's streaming context: counts committed batches.
  streaming::BatchListener* listener() { return &listener_; }

  // Starts the periodic thread.
  void Start();
  // Stops the thread, takes a checkpoint if anything committed since the last one, and syncs
  // the WAL.
  Status Final();

 private:
  class Listener final : public streaming::BatchListener {
   public:
    explicit Listener(Checkpointer* c) : c_(c) {}
    void OnBatchCompleted(const streaming::BatchProgress& progress) override;

   private:
    Checkpointer* const c_;
  };

  // Takes a checkpoint when batches committed since the last one.
  Status TakeIfChanged();
  void Loop(std::stop_token stop);

  const CheckpointerOptions options_;
  state::RocksDbStateStore* const db_;
  Metrics* const metrics_;
  checkpoint::CheckpointStore store_;
  Listener listener_{this};
  std::mutex mu_;
  std::condition_variable_any cv_;
  int64_t committed_ = 0;        // guarded by mu_: batches committed since start
  int64_t checkpointed_at_ = 0;  // guarded by mu_: `committed_` at the last checkpoint
  std::mutex take_mu_;           // one checkpoint at a time
  std::jthread thread_;
};

}  // namespace runnel::service
