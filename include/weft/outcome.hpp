// Outcome<T>: how a task finished: with a value, or with an exception.
//
//   std::vector<weft::Outcome<int>> results = co_await gather_outcomes(a(), b());
//   for (auto& r : results) {
//     if (r) use(r.value());
//     else if (r.is_timeout()) retry();
//     else std::rethrow_exception(r.exception());
//   }
//
// The value of an Outcome<void> is a std::monostate (SPEC §2: wherever the result of a void
// task is held, it is held as std::monostate). An Outcome is copyable when its value is,
// move-only when its value is move-only (e.g. Outcome<std::unique_ptr<int>>). It has no
// empty state and no default constructor: build one with from_value() or from_exception().
#pragma once

#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include "weft/errors.hpp"

namespace weft {

namespace detail {
// The same mapping as detail::stored_t in task.hpp (kept here so that this header does not
// depend on task.hpp): void is held as std::monostate, every other T as itself.
template <class T>
using outcome_value_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
}  // namespace detail

template <class T>
class Outcome {
  static_assert(!std::is_reference_v<T>, "Outcome<T&> is not supported: use a pointer");

 public:
  // The held value's type: T, or std::monostate for Outcome<void>.
  using value_type = detail::outcome_value_t<T>;

  // An Outcome holding `value` (moved in).
  //
  //   auto o = weft::Outcome<int>::from_value(42);            // o.value() == 42
  //   auto p = weft::Outcome<std::unique_ptr<int>>::from_value(std::make_unique<int>(7));
  static Outcome from_value(value_type value) {
    return Outcome(std::in_place_index<0>, std::move(value));
  }

  // For Outcome<void> only: an Outcome holding std::monostate{} (a void task that returned).
  //
  //   auto o = weft::Outcome<void>::from_value();              // o.has_value()
  static Outcome from_value()
    requires std::is_void_v<T>
  {
    return Outcome(std::in_place_index<0>, std::monostate{});
  }

  // An Outcome holding the exception `e`. `e` must be non-null, else throws UsageError.
  //
  //   auto o = weft::Outcome<int>::from_exception(std::current_exception());
  //   auto c = weft::Outcome<void>::from_exception(std::make_exception_ptr(weft::Cancelled{}));
  static Outcome from_exception(std::exception_ptr e) {
    if (!e) throw UsageError("Outcome::from_exception: the exception_ptr is null");
    return Outcome(std::in_place_index<1>, std::move(e));
  }

  // True when it holds a value; exactly one of has_value() and has_exception() is true.
  //
  //   weft::Outcome<int>::from_value(1).has_value();   // true
  bool has_value() const noexcept { return state_.index() == 0; }

  // True when it holds an exception (then exception() is non-null).
  //
  //   weft::Outcome<int>::from_exception(e).has_exception();   // true
  bool has_exception() const noexcept { return state_.index() == 1; }

  // has_value(). Explicit: `if (o)` works, `bool b = o;` does not.
  //
  //   if (auto o = weft::Outcome<int>::from_value(1)) use(o.value());
  explicit operator bool() const noexcept { return has_value(); }

  // The held value; if it holds an exception, rethrows that exception (the same object, via
  // std::rethrow_exception). The rvalue overload lets a move-only value be moved out.
  //
  //   int x = o.value();                          // 42, or throws what the task threw
  //   o.value() += 1;                             // modifies the held value
  //   std::unique_ptr<int> p = std::move(po).value();
  value_type& value() & {
    rethrow_if_exception();
    return std::get<0>(state_);
  }
  const value_type& value() const& {
    rethrow_if_exception();
    return std::get<0>(state_);
  }
  value_type&& value() && {
    rethrow_if_exception();
    return std::get<0>(std::move(state_));
  }

  // The held value if there is one, else `fallback` converted to value_type. Never throws the
  // held exception. The rvalue overload moves the held value out.
  //
  //   int x = o.value_or(-1);                     // -1 when o holds an exception
  //   auto p = std::move(po).value_or(nullptr);   // unique_ptr moved out, or null
  template <class U>
  value_type value_or(U&& fallback) const& {
    if (has_value()) return std::get<0>(state_);
    return static_cast<value_type>(std::forward<U>(fallback));
  }
  template <class U>
  value_type value_or(U&& fallback) && {
    if (has_value()) return std::get<0>(std::move(state_));
    return static_cast<value_type>(std::forward<U>(fallback));
  }

  // The held exception, or a null exception_ptr when it holds a value.
  //
  //   if (auto e = o.exception()) std::rethrow_exception(e);
  std::exception_ptr exception() const noexcept {
    return has_exception() ? std::get<1>(state_) : std::exception_ptr();
  }

  // True when it holds an exception that is a weft::Cancelled (the test is
  // `catch (const Cancelled&)`, so types derived from Cancelled count too). An ExceptionGroup
  // that contains a Cancelled does not count: test that with
  // ExceptionGroup::contains<Cancelled>().
  //
  //   weft::Outcome<void>::from_exception(std::make_exception_ptr(weft::Cancelled{}))
  //       .is_cancelled();   // true
  bool is_cancelled() const noexcept { return holds<Cancelled>(); }

  // True when it holds an exception that is a weft::TimeoutError or of a type derived from
  // it. As with is_cancelled(), an ExceptionGroup holding one does not count.
  //
  //   weft::Outcome<int>::from_exception(std::make_exception_ptr(weft::TimeoutError()))
  //       .is_timeout();     // true
  bool is_timeout() const noexcept { return holds<TimeoutError>(); }

 private:
  template <std::size_t I, class V>
  Outcome(std::in_place_index_t<I> index, V&& v) : state_(index, std::forward<V>(v)) {}

  void rethrow_if_exception() const {
    if (has_exception()) std::rethrow_exception(std::get<1>(state_));
  }

  template <class E>
  bool holds() const noexcept {
    if (!has_exception()) return false;
    try {
      std::rethrow_exception(std::get<1>(state_));
    } catch (const E&) {
      return true;
    } catch (...) {
      return false;
    }
  }

  // Index 0: the value; index 1: the exception (indices, not types, so that
  // Outcome<std::exception_ptr> is unambiguous).
  std::variant<value_type, std::exception_ptr> state_;
};

}  // namespace weft
