#include "common/status.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace runnel {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "InvalidArgument";
    case StatusCode::kNotFound:
      return "NotFound";
    case StatusCode::kAlreadyExists:
      return "AlreadyExists";
    case StatusCode::kOutOfRange:
      return "OutOfRange";
    case StatusCode::kFailedPrecondition:
      return "FailedPrecondition";
    case StatusCode::kIOError:
      return "IOError";
    case StatusCode::kCorruption:
      return "Corruption";
    case StatusCode::kUnavailable:
      return "Unavailable";
    case StatusCode::kDeadlineExceeded:
      return "DeadlineExceeded";
    case StatusCode::kResourceExhausted:
      return "ResourceExhausted";
    case StatusCode::kCancelled:
      return "Cancelled";
    case StatusCode::kNotImplemented:
      return "NotImplemented";
    case StatusCode::kInternal:
      return "Internal";
  }
  return "Unknown";
}

std::string_view RetryScopeName(RetryScope scope) {
  switch (scope) {
    case RetryScope::kNone:
      return "none";
    case RetryScope::kTask:
      return "task";
    case RetryScope::kStage:
      return "stage";
    case RetryScope::kBatch:
      return "batch";
    case RetryScope::kReplan:
      return "replan";
  }
  return "unknown";
}

RetryScope DefaultRetryScope(StatusCode code) {
  switch (code) {
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kResourceExhausted:
      return RetryScope::kBatch;
    default:
      return RetryScope::kNone;
  }
}

Status::Status(StatusCode code, std::string_view msg) {
  if (code != StatusCode::kOk) {
    state_ = std::make_shared<const State>(State{code, std::string(msg), DefaultRetryScope(code)});
  }
}

RetryScope Status::retry() const { return state_ ? state_->retry : RetryScope::kNone; }

Status Status::WithRetry(RetryScope scope) const {
  if (ok() || state_->retry == scope) return *this;
  Status out;
  out.state_ = std::make_shared<const State>(State{state_->code, state_->msg, scope});
  return out;
}

Status Status::FromErrno(std::string_view what, int err) {
  const std::string msg = fmt::format("{}: {}", what, std::strerror(err));
  // A full disk or a failing device may recover: batches retry these (RetryScope::kBatch).
  if (err == ENOSPC || err == EDQUOT) return ResourceExhausted(msg);
  if (err == EIO) return Unavailable(msg);
  return IOError(msg);
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return state_ ? state_->msg : kEmpty;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return fmt::format("{}: {}", StatusCodeName(code()), message());
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  Status out;
  out.state_ = std::make_shared<const State>(
      State{state_->code, fmt::format("{}: {}", context, state_->msg), state_->retry});
  return out;
}

std::ostream& operator<<(std::ostream& os, const Status& status) { return os << status.ToString(); }

}  // namespace runnel
