// Status: the outcome of a fallible call. Runnel does not use exceptions across module
// boundaries; library errors (librdkafka, RocksDB, yaml-cpp, Beast, protobuf) are converted
// to a Status where they enter Runnel, and that is also where their retry meaning (a
// RetryScope) is decided. The engine's scheduler and the streaming context read the scope;
// nothing recognises an error by its message (docs/batch-protocol.md).
//
// Thread safety: a Status is an immutable value; distinct objects may be used from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace runnel {

enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kOutOfRange,
  kFailedPrecondition,
  kIOError,
  kCorruption,
  kUnavailable,
  kDeadlineExceeded,
  kResourceExhausted,
  kCancelled,
  kNotImplemented,
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

// What running something again can do about a failure. The narrowest scope that can help:
// each layer retries its own scope and passes the others up.
enum class RetryScope : uint8_t {
  kNone,    // no retry helps: the input, the config, the data on disk or the code is wrong
  kTask,    // the task may succeed when run again (a user function threw); the scheduler
            // retries it after a pause, up to the engine's max_task_attempts
  kStage,   // a shuffle output the task reads is gone: the scheduler recomputes it from its
            // lineage and runs the task again
  kBatch,   // a resource may come back (the broker, the disk): the streaming context abandons
            // the batch and runs it again after a growing pause
  kReplan,  // the batch's input plan no longer holds (its offsets left the log): the
            // streaming context abandons the batch and plans it again at once
};

std::string_view RetryScopeName(RetryScope scope);

// The scope of an error created without one: kBatch for Unavailable, DeadlineExceeded and
// ResourceExhausted (something outside may come back), kNone for every other code.
RetryScope DefaultRetryScope(StatusCode code);

class [[nodiscard]] Status {
 public:
  // An OK status. Cheap: holds no allocation.
  Status() = default;

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string_view msg) {
    return {StatusCode::kInvalidArgument, msg};
  }
  static Status NotFound(std::string_view msg) { return {StatusCode::kNotFound, msg}; }
  static Status AlreadyExists(std::string_view msg) { return {StatusCode::kAlreadyExists, msg}; }
  static Status OutOfRange(std::string_view msg) { return {StatusCode::kOutOfRange, msg}; }
  static Status FailedPrecondition(std::string_view msg) {
    return {StatusCode::kFailedPrecondition, msg};
  }
  static Status IOError(std::string_view msg) { return {StatusCode::kIOError, msg}; }
  static Status Corruption(std::string_view msg) { return {StatusCode::kCorruption, msg}; }
  static Status Unavailable(std::string_view msg) { return {StatusCode::kUnavailable, msg}; }
  static Status DeadlineExceeded(std::string_view msg) {
    return {StatusCode::kDeadlineExceeded, msg};
  }
  static Status ResourceExhausted(std::string_view msg) {
    return {StatusCode::kResourceExhausted, msg};
  }
  static Status Cancelled(std::string_view msg) { return {StatusCode::kCancelled, msg}; }
  static Status NotImplemented(std::string_view msg) { return {StatusCode::kNotImplemented, msg}; }
  static Status Internal(std::string_view msg) { return {StatusCode::kInternal, msg}; }

  // errno-style failure of a system call: "<what>: <strerror(err)>". ENOSPC and EDQUOT are
  // ResourceExhausted and EIO Unavailable (a disk may recover: retry the batch); others are
  // IOError (no retry).
  static Status FromErrno(std::string_view what, int err);

  bool ok() const { return state_ == nullptr; }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  // Empty for OK.
  const std::string& message() const;
  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

  // What a retry can do about this error (see RetryScope); kNone for OK.
  RetryScope retry() const;
  // The same error with the given retry scope; OK stays OK.
  Status WithRetry(RetryScope scope) const;

  // The same code and retry scope with "<context>: " put before the message; OK stays OK.
  Status WithContext(std::string_view context) const;

  // Marks a status as deliberately ignored. Greppable; use sparingly and say why.
  void IgnoreError() const {}

  bool operator==(const Status& other) const {
    return code() == other.code() && message() == other.message();
  }

 private:
  Status(StatusCode code, std::string_view msg);

  struct State {
    StatusCode code;
    std::string msg;
    RetryScope retry;
  };
  // Shared and immutable: copying a Status never allocates.
  std::shared_ptr<const State> state_;
};

std::ostream& operator<<(std::ostream& os, const Status& status);

}  // namespace runnel

#define RUNNEL_CONCAT_IMPL(a, b) a##b
#define RUNNEL_CONCAT(a, b) RUNNEL_CONCAT_IMPL(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK.
#define RETURN_NOT_OK(expr)                          \
  do {                                               \
    ::runnel::Status _runnel_status = (expr);        \
    if (!_runnel_status.ok()) return _runnel_status; \
  } while (false)
