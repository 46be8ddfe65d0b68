// Result<T>: a value of type T, or the non-OK Status that explains why there is none.
//
// Thread safety: like T; distinct objects may be used from any thread.
#pragma once

#include <cassert>
#include <cstdlib>
#include <iostream>
#include <type_traits>
#include <utility>
#include <variant>

#include "common/status.h"

namespace runnel {

template <typename T>
class [[nodiscard]] Result {
 public:
  static_assert(!std::is_same_v<T, Status>, "use Status, not Result<Status>");

  // Requires !status.ok(): an OK status carries no value. An OK status is turned into an
  // Internal error rather than a Result that claims success without a value.
  Result(Status status)  // NOLINT(google-explicit-constructor): allows `return status;`
      : repr_(status.ok() ? Status::Internal("Result built from an OK status")
                          : std::move(status)) {}
  Result(T value) : repr_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  template <typename U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, T> &&
           !std::is_same_v<std::decay_t<U>, Status>) Result(U&& value)
      : repr_(T(std::forward<U>(value))) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(repr_); }

  // OK when a value is held.
  Status status() const { return ok() ? Status::OK() : std::get<Status>(repr_); }

  // Requires ok(). Aborts with the status otherwise: reading a value that is not there is a bug.
  const T& value() const& { return (CheckOk(), std::get<T>(repr_)); }
  T& value() & { return (CheckOk(), std::get<T>(repr_)); }
  // By value: `for (auto& x : F().value())` must not bind to a dying Result.
  T value() && { return (CheckOk(), std::get<T>(std::move(repr_))); }

  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  T operator*() && { return std::move(*this).value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

  // The value, or `fallback` when there is none.
  T ValueOr(T fallback) const& { return ok() ? std::get<T>(repr_) : std::move(fallback); }

 private:
  void CheckOk() const {
    if (!ok()) {
      std::cerr << "Result::value() on an error: " << std::get<Status>(repr_) << std::endl;
      std::abort();
    }
  }

  std::variant<Status, T> repr_;
};

}  // namespace runnel

#define RUNNEL_ASSIGN_OR_RETURN_IMPL(result, lhs, rexpr) \
  auto result = (rexpr);                                 \
  if (!result.ok()) return result.status();              \
  lhs = std::move(result).value()

// `lhs = value of rexpr`, or returns its status from the enclosing function.
// `lhs` may declare a variable: ASSIGN_OR_RETURN(auto db, Db::Open(options));
// It expands to several statements: put it in braces under an `if`.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  RUNNEL_ASSIGN_OR_RETURN_IMPL(RUNNEL_CONCAT(_runnel_result_, __LINE__), lhs, rexpr)
