// sleep_for / sleep_until: a task parked on a timer, woken by the timer or by its scope's
// cancellation, exactly once.
//
// Protocol (the Waiter protocol of detail/waiter.hpp, with the timer service as the primitive;
// the timer thread is the waker):
//   Parking: begin() registers the waiter on the task's scope; then the timer is armed; then
//     start_waiting() (Setup -> Waiting) commits the task to suspend. The timer is armed
//     before the commit, so either party may claim the waiter while it is still in Setup:
//     - the timer fires first: on_fire() moves Setup -> Notified, start_waiting() fails and
//       the task goes on without suspending (its sleep is over);
//     - a cancellation comes first: on_cancel() moves Setup -> Cancelled and disarms the
//       timer (leave()), start_waiting() fails and the task goes on to throw Cancelled.
//     Either way the parking task disarms once more before going on (a cancellation may
//     have run leave() before the timer was armed; a fire may still be returning), so that
//     the timer service holds nothing of the frame when the task continues.
//   Waking: on_fire() moves Waiting -> Notified and schedules the task on its runtime (the
//     injection queue). A waiter it finds Cancelled belongs to the cancellation.
//   Cancelling: on_cancel() moves Waiting -> Cancelled, disarms the timer (waiting for an
//     on_fire() that is running, which then loses its CAS) and schedules the task.
// Invariants: exactly one of fire/cancel resumes the task, once; once the task continues, the
// timer is not armed and no callback of the timer service is running on its node, so the
// frame may go.
#include "weft/sleep.hpp"

#include "weft/detail/timer_service.hpp"
#include "weft/detail/waiter.hpp"
#include "weft/this_task.hpp"

namespace weft::detail {
namespace {

class SleepTimer : private TimerNode {
 public:
  SleepTimer() noexcept { fire = &on_fire; }

  // Parks the task behind `h` until `when` (see the protocol); true when it must suspend.
  template <class P>
  bool park(std::coroutine_handle<P> h, TimerService& timers, TimerTimePoint when) {
    timers_ = &timers;
    if (!waiter_.begin(h, &SleepTimer::leave, this)) return false;  // already cancelled
    try {
      timers.arm(*this, when);
    } catch (...) {
      waiter_.end();  // unregisters from the scope (waiting for a cancellation that runs)
      throw;
    }
    if (waiter_.start_waiting()) return true;  // from here on the task is not ours to touch
    timers.disarm(*this);
    return false;
  }

  // After the task continues: true when the sleep ended by cancellation.
  bool finish() noexcept { return waiter_.end(); }
  [[noreturn]] void throw_cancelled() const { waiter_.throw_cancelled_here(); }

 private:
  static void on_fire(TimerNode* node) noexcept {
    Waiter& w = static_cast<SleepTimer*>(node)->waiter_;
    for (;;) {
      if (w.claim_for_wake()) {  // Waiting -> Notified: ours to resume
        resume_waiter(w.scheduler, w.handle);
        return;
      }
      if (w.satisfy_now()) return;  // Setup -> Notified: the parking task goes on by itself
      // Cancelled: the cancellation resumes it. Otherwise Setup became Waiting: retry.
      if (w.state.load(std::memory_order_acquire) == Waiter::kCancelled) return;
    }
  }

  static void leave(Waiter* w) noexcept {
    auto* self = static_cast<SleepTimer*>(w->primitive);
    self->timers_->disarm(*self);
  }

  Waiter waiter_;
  TimerService* timers_ = nullptr;
};

class SleepAwaiter {
 public:
  explicit SleepAwaiter(TimerTimePoint when) noexcept : when_(when) {}

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    TimerService& timers = current_timer_service("sleep_for/sleep_until");
    if (when_ <= TimerClock::now()) {
      // Nothing to wait for: a yield (other ready tasks first), then the cancellation check.
      yielded_ = true;
      promise_ = weft_promise_of(h);
      return yield_to_others(h);
    }
    return timer_.park(h, timers, when_);
  }

  void await_resume() {
    if (yielded_) {
      resume_in(promise_);
      check_cancelled(promise_);
      return;
    }
    if (timer_.finish()) timer_.throw_cancelled();
  }

 private:
  TimerTimePoint when_;
  SleepTimer timer_;
  PromiseBase* promise_ = nullptr;
  bool yielded_ = false;
};

}  // namespace

Task<void> sleep_for_impl(Duration d) {
  // The deadline counts from the start of the sleep, not from the creation of the Task.
  co_await SleepAwaiter(Deadline::after(d).time());
}

}  // namespace weft::detail

namespace weft {

Task<void> sleep_until(std::chrono::steady_clock::time_point t) {
  co_await detail::SleepAwaiter(t);
}

}  // namespace weft
