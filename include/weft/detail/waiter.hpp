// A task parked on a weft primitive (an Event, later a Semaphore or a timer), woken either by
// the primitive or by its scope's cancellation, whichever comes first, exactly once.
//
// Protocol (state: Setup -> Waiting -> Notified | Cancelled, or Setup -> Notified | Cancelled):
//   Parking (await_suspend):
//     1. register a callback on the task's scope (if the scope is already cancelled: claim
//        Cancelled, leave the primitive, do not suspend);
//     2. the primitive links the waiter into its queue (under its own lock);
//     3. CAS Setup -> Waiting. If that fails, a wake-up or a cancellation already claimed the
//        waiter during steps 1-2: do not suspend (whoever claimed it did not resume it,
//        because it saw Setup).
//   Waking (primitive, under its lock, after unlinking the waiter): CAS Waiting -> Notified and
//     schedule the task; or CAS Setup -> Notified and leave the resume to step 3. If both
//     fail the waiter was cancelled: the primitive skips it (it must not hand it anything).
//   Cancelling (scope callback, any thread): CAS Waiting -> Cancelled, unlink from the
//     primitive, schedule the task; or CAS Setup -> Cancelled, unlink, leave the resume to
//     step 3. If both fail it was notified: nothing to do.
//   Resuming (await_resume): remove the callback (waiting for it if it runs on another thread),
//     then throw Cancelled or return the primitive's result.
//
// Invariants: exactly one of wake/cancel wins the waiter; the task is resumed exactly once,
// and never while await_suspend still runs (only a Waiting waiter is scheduled by others).
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>

#include "weft/detail/cancel_state.hpp"
#include "weft/detail/worker.hpp"
#include "weft/task.hpp"

namespace weft::detail {

class Scheduler;

struct Waiter : CancelCallbackNode {
  enum : std::uint8_t { kSetup, kWaiting, kNotified, kCancelled };

  // The primitive's part: unlink this waiter from its queue if it is still there (under the
  // primitive's lock). Called by the cancellation path.
  void (*leave)(Waiter* self) noexcept = nullptr;
  void* primitive = nullptr;
  Waiter* queue_prev = nullptr;  // guarded by the primitive's lock
  Waiter* queue_next = nullptr;
  bool queued = false;

  std::coroutine_handle<> handle;
  Scheduler* scheduler = nullptr;
  CancelState* scope = nullptr;
  PromiseBase* promise = nullptr;
  // acq_rel CASes: one winner; the winner's writes (a permit, a value) are visible to the
  // resumed task, whose acquire comes from being scheduled.
  std::atomic<std::uint8_t> state{kSetup};

  // Step 1. False when the scope is already cancelled (the waiter is then Cancelled).
  template <class P>
  bool begin(std::coroutine_handle<P> h, void (*leave_fn)(Waiter*) noexcept, void* owner) {
    handle = h;
    promise = weft_promise_of(h);
    scope = promise != nullptr ? promise->cancel : nullptr;
    leave = leave_fn;
    primitive = owner;
    Worker* w = tl_worker;
    scheduler = w != nullptr ? &w->scheduler : nullptr;
    run = &on_cancel;
    if (scope != nullptr && !scope->add_callback(*this)) {
      state.store(kCancelled, std::memory_order_relaxed);
      scope = nullptr;  // nothing registered to remove
      return false;
    }
    return true;
  }

  // Step 3: true when the task should stay suspended.
  bool finish_suspend() noexcept {
    std::uint8_t expected = kSetup;
    return state.compare_exchange_strong(expected, kWaiting, std::memory_order_acq_rel);
  }

  // The primitive's wake-up (under its lock, the waiter already unlinked). False when the
  // waiter was cancelled and must be skipped.
  bool notify() noexcept;

  // In await_resume: true when the wait ended by cancellation.
  bool end() noexcept {
    if (scope != nullptr) scope->remove_callback(*this);
    resume_in(promise);
    return state.load(std::memory_order_acquire) == kCancelled;
  }

  // Throws Cancelled into the awaiting task.
  [[noreturn]] void throw_cancelled_here() const {
    if (promise != nullptr) promise->saw_cancelled = true;
    throw_cancelled();
  }

 private:
  static void on_cancel(CancelCallbackNode* node) noexcept;
};

// Resumes `h` on `s` (from any thread); runs it inline when there is no scheduler (a waiter
// that parked outside a runtime).
void resume_waiter(Scheduler* s, std::coroutine_handle<> h);

}  // namespace weft::detail
