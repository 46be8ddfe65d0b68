// StateStore: where stateful streaming operators keep their state between batches, and where a
// batch commits. A batch's state changes, its source positions and its id are applied in ONE
// atomic Commit: after a crash, a store holds every change of a batch or none of them. What a
// batch says about itself is its BatchRecord (streaming/batch_record.h).
//
// Keys and values are bytes, grouped in namespaces (one per query). InMemoryStateStore is the
// implementation for tests and for queries without durability; state/ provides RocksDB.
//
// Thread safety: implementations are safe to call from any thread; a Commit is atomic with
// respect to concurrent reads (a reader sees the store before or after it).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "streaming/batch_record.h"

namespace runnel::streaming {

// A sorted run of puts of one namespace, written ahead of the commit that applies it (see
// BatchCommit::runs): a batch too large to hold in memory has each reduce partition write its
// own puts into a run as it merges them. Made by StateStore::NewSortedRun; applied only by the
// store that made it. A run not committed is discarded when destroyed.
//
// Thread safety: one thread at a time per run; runs of one store may be written at once.
class SortedRun {
 public:
  virtual ~SortedRun() = default;
  // Keys strictly increasing (bytewise).
  virtual Status Add(std::string_view key, std::string_view value) = 0;
  // After the last Add; then the run may go into a BatchCommit.
  virtual Status Finish() = 0;
  virtual int64_t entries() const = 0;
};

// Everything one batch of one query changes, applied atomically.
struct BatchCommit {
  std::string ns;  // the query's namespace
  std::vector<std::pair<std::string, std::string>> puts;
  std::vector<std::string> deletes;
  // Finished runs of `ns` (not owned; they outlive the Commit): applied with the puts, in the
  // same atomic commit. No key is in two runs or in a run and the puts.
  std::vector<SortedRun*> runs;
  // The batch's record, merged into the stored one (MergeRecord): an input this batch did not
  // plan keeps its last position, a field the batch leaves unset its stored value. Its
  // expire_before_ms is retention: keys whose time (StateKeyTime, streaming/state_key.h) is
  // before it may be dropped from now on.
  BatchRecord record;
};

struct CommittedBatch {
  BatchRecord record;
  // Recover dropped the state just now (on_definition_change: reset): sources start from
  // their starting offsets, not from offsets published elsewhere (a consumer group's).
  bool reset = false;
};

// The record a store holds after committing `commit` over `stored` (nullptr: none): the
// commit's, with the stored positions of inputs it did not plan and the stored value of every
// field it leaves unset (INT64_MIN, empty, batch time 0). Every store applies this.
BatchRecord MergeRecord(const BatchRecord* stored, const BatchRecord& commit);

class StateStore {
 public:
  virtual ~StateStore() = default;

  virtual Result<std::optional<std::string>> Get(const std::string& ns, const std::string& key) = 0;
  // The values of `keys` (best sorted: a store may read them in one pass), nullopt where absent.
  virtual Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::string& ns, const std::vector<std::string>& keys);
  // Calls fn(key, value) for keys in [begin, end) in key order (end empty: to the end) until it
  // returns false.
  virtual Status Scan(const std::string& ns, const std::string& begin, const std::string& end,
                      const std::function<bool(const std::string&, const std::string&)>& fn) = 0;
  // Applies `commit` atomically. Batch ids of a namespace must increase (empty batches that
  // commit nothing leave gaps).
  virtual Status Commit(const BatchCommit& commit) = 0;
  // A new, empty run of puts for a later Commit of `ns`.
  virtual Result<std::unique_ptr<SortedRun>> NewSortedRun(const std::string& ns) = 0;
  // The last committed batch of `ns`, or nullopt when none was.
  virtual Result<std::optional<CommittedBatch>> LastCommitted(const std::string& ns) = 0;
  // Drops every key of `ns` and its batch record but the batch id; its batch ids go on from
  // the last committed one (so outputs written under later ids never collide with older ones).
  virtual Status Reset(const std::string& ns) = 0;
  // Whether a commit can be tried now. A store that stopped writing after a disk error tries
  // to resume here and fails (transiently) while it cannot, so a batch fails before it reads
  // and computes its input again only to fail at the commit.
  virtual Status Writable() { return Status::OK(); }
};

class InMemoryStateStore final : public StateStore {
 public:
  Result<std::optional<std::string>> Get(const std::string& ns, const std::string& key) override;
  Status Scan(const std::string& ns, const std::string& begin, const std::string& end,
              const std::function<bool(const std::string&, const std::string&)>& fn) override;
  Status Commit(const BatchCommit& commit) override;
  // A run held in memory.
  Result<std::unique_ptr<SortedRun>> NewSortedRun(const std::string& ns) override;
  Result<std::optional<CommittedBatch>> LastCommitted(const std::string& ns) override;
  Status Reset(const std::string& ns) override;

 private:
  struct Namespace {
    std::map<std::string, std::string> data;
    std::optional<CommittedBatch> last;
  };
  std::mutex mu_;
  std::map<std::string, Namespace> namespaces_;  // guarded by mu_
};

}  // namespace runnel::streaming
