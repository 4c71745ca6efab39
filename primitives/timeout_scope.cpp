// TimeoutScope's timer and its rescheduling (include/weft/timeout_scope.hpp).
//
// Protocol:
//   The scope's deadline lives in its CancelState (a MovableDeadline scope: scopes below keep
//   only their own deadline and read this one through CancelState::deadline()). The alarm is
//   armed at the deadline while it is finite. reschedule() runs under `mutex_`: it disarms
//   the alarm, which returns only once a firing in progress has finished; if the alarm had
//   fired, the deadline has expired and it refuses; otherwise it stores the new deadline and
//   arms the alarm again. end() takes the same mutex, marks the scope ended and disarms.
// Invariants:
//   - `fired_` is set only by the alarm's firing, before it cancels the scope (so a body woken
//     by that cancellation reads expired()); after end() (or a disarm() under the mutex) it is
//     final. The body's Cancelled is a timeout only when `fired_` is set and the caller is not
//     cancelled: an outer cancellation stays Cancelled whichever came first.
//   - The alarm is armed only while `ended_` is false: end() is the last disarm, so the timer
//     service holds no reference to the alarm once end() returns (before the scope dies).
#include "weft/timeout_scope.hpp"

namespace weft {

TimeoutScope::TimeoutScope(detail::CancelState* outer, detail::TimerService& timers,
                           detail::TimePoint when)
    : scope_(outer, when, detail::CancelState::MovableDeadline{}), timers_(timers) {
  alarm_.owner = this;
  alarm_.fire = &on_fire;
  if (when != detail::TimePoint::max()) timers_.arm(alarm_, when);
}

void TimeoutScope::on_fire(detail::TimerNode* node) noexcept {
  TimeoutScope* self = static_cast<Alarm*>(node)->owner;
  // Before the cancel: a body woken by it already reads expired(). Release pairs with
  // expired()'s acquire load (and the wake-up orders it for the woken body anyway).
  self->fired_.store(true, std::memory_order_release);
  self->scope_.cancel();
}

void TimeoutScope::reschedule(Deadline when) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (ended_) throw UsageError("TimeoutScope::reschedule: its timeout_scope has ended");
  timers_.disarm(alarm_);  // waits for a firing in progress
  if (expired())
    throw UsageError("TimeoutScope::reschedule: the deadline has already expired");
  scope_.set_movable_deadline(when.time());
  if (when.time() != detail::TimePoint::max()) timers_.arm(alarm_, when.time());
}

void TimeoutScope::end() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (ended_) return;
  ended_ = true;
  timers_.disarm(alarm_);
}

bool TimeoutScope::timed_out() const noexcept {
  if (!expired()) return false;
  const detail::CancelState* outer = scope_.parent();
  return outer == nullptr || !outer->is_cancelled();
}

}  // namespace weft
