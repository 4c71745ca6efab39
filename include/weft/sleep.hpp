// sleep_for, sleep_until: suspend the calling task until a time passes (asyncio.sleep).
//
//   co_await weft::sleep_for(250ms);
//   co_await weft::sleep_until(next_tick);
//
// A sleeping task holds no worker thread: it is parked on its runtime's timer service (one
// timer thread per runtime, detail/timer_service.hpp) and resumed through the runtime's
// injection queue when its deadline passes, normally within well under a millisecond on an
// idle machine (a few tens of microseconds here; see benchmarks/timers.cpp).
//
// Cancellation: a sleep is a suspension point. A task whose scope is cancelled while it
// sleeps is resumed at once by the cancellation, its timer is removed (no stale wake-up, no
// memory left behind), and the sleep throws Cancelled; a sleep that starts in a cancelled
// task throws Cancelled without sleeping. Inside timeout() the sleep sees Cancelled too; the
// timeout turns it into TimeoutError.
//
// A duration of zero or less (or a time already past) does not park: the task yields (other
// ready tasks run first) and then checks for cancellation, so `sleep_for(0s)` is a cheap
// cooperative yield point. Durations past the clock's range (hours::max(), Duration::max())
// sleep until cancelled, without overflow. A NaN floating-point duration throws UsageError
// when sleep_for() is called.
//
// Must be awaited from a task running on a weft runtime: elsewhere there is no timer service
// to wake it, and the sleep throws UsageError.
#pragma once

#include <chrono>

#include "weft/deadline.hpp"
#include "weft/detail/deadline_timer.hpp"
#include "weft/task.hpp"

namespace weft {

namespace detail {
Task<void> sleep_for_impl(Duration d);
}  // namespace detail

// co_await sleep_until(t): resumes once steady_clock::now() >= t (see the top of this file).
//
//   const auto start = std::chrono::steady_clock::now();
//   for (int i = 1; i <= 10; ++i) co_await weft::sleep_until(start + i * 100ms);  // no drift
Task<void> sleep_until(std::chrono::steady_clock::time_point t);

// co_await sleep_for(d): resumes once `d` has passed, measured from when the sleep starts
// (when it is awaited, not when it is created); see the top of this file.
//
//   co_await weft::sleep_for(std::chrono::milliseconds(10));
template <class Rep, class Period>
Task<void> sleep_for(std::chrono::duration<Rep, Period> d) {
  return detail::sleep_for_impl(detail::saturating_duration(d, "sleep_for"));
}

}  // namespace weft
