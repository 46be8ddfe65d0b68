// FunctionRef<R(Args...)>: a non-owning reference to a callable, two words, no allocation.
// The engine pushes every record of a pipelined chain through one of these per operator.
// The referenced callable must outlive the FunctionRef (pass temporaries down, never store).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

namespace runnel::engine {

template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F>
  requires(!std::is_same_v<std::decay_t<F>, FunctionRef> && std::is_invocable_r_v<R, F&, Args...>)
      FunctionRef(F&& f)  // NOLINT(google-explicit-constructor)
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* object, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

}  // namespace runnel::engine
