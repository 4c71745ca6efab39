// timeout, timeout_at: run a task under a deadline (asyncio.timeout, Trio's move_on_after
// that raises).
//
//   try {
//     Page p = co_await weft::timeout(2s, fetch(url));
//   } catch (const weft::TimeoutError&) {
//     ...   // fetch() was cancelled and has finished: nothing of it still runs
//   }
//
// Semantics:
// - The task runs in a scope of its own, below the caller's, whose deadline is the earlier of
//   the given one and the deadline already in force (this_task::deadline() inside reports
//   it; gathers, groups and nested tasks inherit it). When the deadline passes, the scope is
//   cancelled: the task sees Cancelled at its suspension points (a sleep or any other wait
//   is woken at once), unwinds, and timeout() then throws TimeoutError in its place.
// - Only the scope whose deadline fired reports TimeoutError. Nested timeouts: the inner
//   code of an outer timeout that fired sees Cancelled pass through the inner timeout()
//   unchanged, and the outer one throws TimeoutError. A cancellation of the caller stays
//   Cancelled, even if the deadline also passed.
// - A task that finishes with a value (or an error other than Cancelled) before it notices
//   the deadline keeps its result: the value is returned, the error propagates as itself.
// - A timeout of zero or less (a deadline already passed) throws TimeoutError without
//   starting the task. Durations past the clock's range (Duration::max(), hours::max()) or
//   Deadline::never() mean no deadline and never overflow. A NaN floating-point duration
//   throws UsageError when timeout() is called.
// - The deadline is computed when the returned Task starts (is awaited), not when timeout()
//   is called.
// - shield() inside a timeout is immune to it (Trio's rule): a shielded task sees neither the
//   outer cancellation nor the outer deadline, but a timeout inside the shield applies.
// - The cancellation runs on the runtime's timer thread: a CancellationCallback registered
//   on a token inside the timed task runs there, and a slow one delays every later timer of
//   the runtime (keep them short, as any cancellation callback should be).
// - Costs: one coroutine frame, and a timer on the runtime's timer service (O(log n) arm and
//   disarm) only when the new deadline is earlier than the one in force.
// Must be awaited from a task running on a weft runtime (UsageError otherwise).
#pragma once

#include <chrono>
#include <utility>

#include "weft/cancellation.hpp"
#include "weft/deadline.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/deadline_timer.hpp"
#include "weft/detail/timer_service.hpp"
#include "weft/errors.hpp"
#include "weft/task.hpp"

namespace weft {

namespace detail {

// A timeout's deadline as given: relative (resolved when the timeout starts) or absolute.
struct TimeoutRequest {
  Duration relative = Duration::zero();
  TimePoint absolute = TimePoint::max();
  bool is_relative = false;

  TimePoint resolve() const {
    return is_relative ? Deadline::after(relative).time() : absolute;
  }
};

template <class T>
Task<T> timeout_impl(TimeoutRequest request, Task<T> task) {
  PromiseBase* self = co_await CurrentPromise{};
  TimerService& timers = current_timer_service("timeout");
  const TimePoint when = request.resolve();
  if (when <= TimerClock::now()) throw TimeoutError();  // the task never starts
  CancelState* outer = self != nullptr ? self->cancel : nullptr;
  if (when == TimePoint::max() ||
      (outer != nullptr && !outer->deadline_may_move() && outer->deadline() <= when)) {
    // The deadline in force comes first (or there is none): its own timer covers this one
    // (unless a TimeoutScope above may still move it later).
    co_return co_await std::move(task);
  }
  CancelState scope(outer, when);
  DeadlineTimer timer;  // declared after the scope: disarmed before the scope ends
  timer.arm(timers, scope, when);
  try {
    co_return co_await in_scope(std::move(task), &scope);
  } catch (const Cancelled&) {
    timer.disarm();  // waits for a firing in progress: timed_out() is final after it
    if (timer.timed_out()) throw TimeoutError();
    throw;
  }
}

// The timeout's coroutine; around a shield it starts like the shield would (see shield()).
template <class T>
Task<T> timed(TimeoutRequest request, Task<T> task) {
  const bool shielded = task.handle().promise().shielded;
  Task<T> wrapper = timeout_impl(request, std::move(task));
  wrapper.handle().promise().shielded = shielded;
  return wrapper;
}

}  // namespace detail

// co_await timeout(d, task): the task's result, or TimeoutError once `d` (counted from when
// the timeout starts) has passed; see the top of this file.
//
//   auto rows = co_await weft::timeout(500ms, db.query(sql));
template <class Rep, class Period, class T>
Task<T> timeout(std::chrono::duration<Rep, Period> d, Task<T> task) {
  detail::require_fresh(task.handle(), "timeout");
  detail::TimeoutRequest request;
  request.relative = detail::saturating_duration(d, "timeout");
  request.is_relative = true;
  return detail::timed(request, std::move(task));
}

// Any other awaitable (a gather, h.join(), a task_group, ...), wrapped into a Task first.
//
//   int v = co_await weft::timeout(1s, handle.join());   // cancels nothing but the wait
template <class Rep, class Period, class A>
  requires detail::non_task_awaitable<A&&>
auto timeout(std::chrono::duration<Rep, Period> d, A&& awaitable) {
  return timeout(d, detail::as_task(std::forward<A>(awaitable)));
}

// co_await timeout_at(deadline, task): as timeout(), with an absolute deadline.
//
//   const weft::Deadline by = weft::Deadline::after(1s);   // one budget for several steps
//   co_await weft::timeout_at(by, step_one());
//   co_await weft::timeout_at(by, step_two());
template <class T>
Task<T> timeout_at(Deadline deadline, Task<T> task) {
  detail::require_fresh(task.handle(), "timeout_at");
  detail::TimeoutRequest request;
  request.absolute = deadline.time();
  return detail::timed(request, std::move(task));
}

template <class A>
  requires detail::non_task_awaitable<A&&>
auto timeout_at(Deadline deadline, A&& awaitable) {
  return timeout_at(deadline, detail::as_task(std::forward<A>(awaitable)));
}

}  // namespace weft
