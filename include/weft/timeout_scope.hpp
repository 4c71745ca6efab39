// timeout_scope: a deadline around a block of work that can be moved while the work runs
// (asyncio.timeout()'s Timeout object: when(), reschedule(), expired()).
//
//   co_await weft::timeout_scope(weft::Deadline::after(2s), [&](weft::TimeoutScope& ts) -> Task<void> {
//     co_await handshake();
//     ts.reschedule(weft::Deadline::after(30s));   // the slow part gets its own budget
//     co_await transfer();
//   });                                             // TimeoutError if the deadline passed
//
// Semantics:
// - The body runs in a scope of its own below the caller's, with the deadline given. When the
//   deadline passes, the scope is cancelled: the body sees Cancelled at its suspension points,
//   unwinds, and timeout_scope() throws TimeoutError in its place (asyncio's rule, as for
//   timeout(): only the scope whose deadline fired reports it; a cancellation of the caller
//   stays Cancelled; a body that returns a value or fails otherwise keeps its outcome).
// - Scopes nest with timeout(), timeout_at(), timed gathers and other timeout_scopes in either
//   order: the earliest deadline in force wins, and children (gathers, groups, nested tasks)
//   inherit it; this_task::deadline() inside reports it, including after a reschedule().
// - A deadline already passed when timeout_scope() starts throws TimeoutError without running
//   the body (§6's rule for timeouts of zero or less). Deadline::never() arms nothing until a
//   reschedule() gives it a deadline.
// - The body's TimeoutScope may be used from any thread (from the body, its children, or
//   another task given a reference) until timeout_scope() returns; not after.
// Must be awaited from a task running on a weft runtime (UsageError otherwise).
#pragma once

#include <atomic>
#include <mutex>
#include <type_traits>
#include <utility>

#include "weft/cancellation.hpp"
#include "weft/deadline.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/timer_service.hpp"
#include "weft/errors.hpp"
#include "weft/task.hpp"

namespace weft {

class TimeoutScope {
 public:
  // The scope's own deadline (Deadline::never() when it has none): the one given to
  // timeout_scope() or the last reschedule(). An enclosing deadline may come earlier.
  Deadline when() const noexcept { return Deadline::at(scope_.movable_deadline()); }

  // Moves the deadline: earlier, later, or Deadline::never() (none). Races with the timer are
  // settled one way or the other: either the old deadline fires first (then the body is being
  // cancelled, and this throws UsageError: too late to move it), or it never fires and the new
  // one applies. A deadline that has already passed cancels the body at once. Throws
  // UsageError once the deadline has expired or timeout_scope() has ended.
  //
  //   ts.reschedule(ts.when() + std::chrono::seconds(5));   // five seconds more
  void reschedule(Deadline when);

  // True once this scope's deadline has passed and the scope has started cancelling the body
  // (also when something else had cancelled it first; a body cancelled only by something else
  // reads false).
  bool expired() const noexcept {
    // Acquire pairs with the release store in on_fire().
    return fired_.load(std::memory_order_acquire);
  }

  // For timeout_scope(): a scope below `outer` whose deadline is `when` (armed when finite).
  TimeoutScope(detail::CancelState* outer, detail::TimerService& timers, detail::TimePoint when);
  ~TimeoutScope() { end(); }
  TimeoutScope(const TimeoutScope&) = delete;
  TimeoutScope& operator=(const TimeoutScope&) = delete;

  // For timeout_scope(): the body's scope, the end of the body, and the verdict.
  detail::CancelState& scope() noexcept { return scope_; }
  // Disarms the timer (waiting for a firing in progress); reschedule() refuses from here on.
  void end() noexcept;
  // After end(): the body's Cancelled is a timeout (this deadline cancelled the scope, and the
  // caller is not cancelled).
  bool timed_out() const noexcept;

 private:
  struct Alarm : detail::TimerNode {
    TimeoutScope* owner = nullptr;
  };
  static void on_fire(detail::TimerNode* node) noexcept;

  detail::CancelState scope_;
  detail::TimerService& timers_;
  Alarm alarm_;
  std::mutex mutex_;    // serialises reschedule() with itself and with end()
  bool ended_ = false;  // guarded by mutex_
  // Set (release) by the timer thread when the deadline passes, before it cancels the scope.
  std::atomic<bool> fired_{false};
};

namespace detail {

template <class F>
using timeout_scope_result_t = typename std::invoke_result_t<F&, TimeoutScope&>::value_type;

template <class F>
Task<timeout_scope_result_t<F>> timeout_scope_impl(Deadline deadline, F body) {
  using R = timeout_scope_result_t<F>;
  PromiseBase* self = co_await CurrentPromise{};
  check_cancelled(self);
  TimerService& timers = current_timer_service("timeout_scope");
  if (deadline.time() <= TimerClock::now()) throw TimeoutError();  // the body never starts
  TimeoutScope ts(self != nullptr ? self->cancel : nullptr, timers, deadline.time());
  Task<R> run = body(ts);
  require_fresh(run.handle(), "timeout_scope body");
  try {
    if constexpr (std::is_void_v<R>) {
      co_await in_scope(std::move(run), &ts.scope());
      ts.end();
      co_return;
    } else {
      R result = co_await in_scope(std::move(run), &ts.scope());
      ts.end();
      co_return result;
    }
  } catch (const Cancelled&) {
    ts.end();  // waits for a firing in progress: timed_out() is final after it
    if (ts.timed_out()) throw TimeoutError();
    throw;
  }
}

}  // namespace detail

// co_await timeout_scope(deadline, body) -> what body's Task returns, or TimeoutError once the
// (movable) deadline has passed; `body` is called with the scope's TimeoutScope. See the top of
// this file.
//
//   auto page = co_await weft::timeout_scope(weft::Deadline::after(1s),
//       [&](weft::TimeoutScope& ts) -> weft::Task<Page> {
//         if (is_slow(url)) ts.reschedule(weft::Deadline::after(10s));
//         co_return co_await fetch(url);
//       });
template <class F>
  requires std::is_invocable_v<F&, TimeoutScope&>
Task<detail::timeout_scope_result_t<F>> timeout_scope(Deadline deadline, F body) {
  return detail::timeout_scope_impl(deadline, std::move(body));
}

}  // namespace weft
