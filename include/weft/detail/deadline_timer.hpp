// DeadlineTimer: a timer that cancels a scope when its deadline passes. The one mechanism
// behind timeout(), timeout_at() and safe_gather's timeout.
//
// Protocol (asyncio.timeout's rule, made multithreaded):
//   1. The owner makes a scope for the timed work whose deadline is min(inherited, its own),
//      and arms the timer only when its own deadline is the earlier one: otherwise an
//      enclosing deadline fires first and no timer is needed.
//   2. On the timer thread, fire() cancels the scope and records whether that cancel() call
//      was the one that cancelled it (`fired_`): false when the scope was already cancelled,
//      by an outer cancellation that reached it through its links or by a failure.
//   3. When the timed work has ended, the owner disarms the timer (disarm() waits for a fire
//      that is running), after which fired() is final. The work's Cancelled becomes
//      TimeoutError only if fired() and the scope's parent is not cancelled: the scope whose
//      deadline fired, and no other, reports the timeout; an outer cancellation stays
//      Cancelled. Work that finished with a value keeps it, even if the deadline passed.
// Invariants: the scope outlives the timer's arming (the owner declares the scope first and
// disarms before it ends); `fired_` is written only by fire() and read only after disarm().
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <limits>
#include <type_traits>

#include "weft/deadline.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/timer_service.hpp"
#include "weft/errors.hpp"

namespace weft::detail {

// `d` as a Duration, clamped to Duration's range instead of overflowing (hours::max() and
// the like mean "no limit"). A NaN floating-point duration has no meaning as a time to wait
// (converting it would be undefined behaviour): UsageError, naming `what`.
template <class Rep, class Period>
Duration saturating_duration(std::chrono::duration<Rep, Period> d, const char* what) {
  using Wide = std::chrono::duration<long double, Duration::period>;
  const Wide wide = std::chrono::duration_cast<Wide>(d);
  if (wide.count() != wide.count())
    throw UsageError(std::string(what) + ": the duration is NaN");
  if (wide >= Wide(Duration::max())) return Duration::max();
  if (wide <= Wide(Duration::min())) return Duration::min();
  return std::chrono::duration_cast<Duration>(d);
}

class DeadlineTimer : private TimerNode {
 public:
  DeadlineTimer() noexcept { fire = &on_fire; }
  ~DeadlineTimer() { disarm(); }
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // Step 1: arms the timer to cancel `scope` at `when` (may throw: std::bad_alloc,
  // UsageError). Once only.
  void arm(TimerService& timers, CancelState& scope, TimerTimePoint when) {
    scope_ = &scope;
    timers.arm(*this, when);
    timers_ = &timers;
  }

  // Step 3: idempotent; a no-op when never armed.
  void disarm() noexcept {
    if (timers_ != nullptr) {
      timers_->disarm(*this);
      timers_ = nullptr;
    }
  }

  // After disarm(): true when this timer's firing cancelled the scope.
  bool fired() const noexcept { return fired_; }

  // After disarm(): the timed work's Cancelled is a timeout (this timer cancelled the scope
  // and the scope's parent is not cancelled).
  bool timed_out() const noexcept {
    if (!fired_) return false;
    const CancelState* outer = scope_->parent();
    return outer == nullptr || !outer->is_cancelled();
  }

 private:
  static void on_fire(TimerNode* node) noexcept {
    auto* self = static_cast<DeadlineTimer*>(node);
    self->fired_ = self->scope_->cancel();
  }

  TimerService* timers_ = nullptr;
  CancelState* scope_ = nullptr;
  bool fired_ = false;
};

}  // namespace weft::detail
