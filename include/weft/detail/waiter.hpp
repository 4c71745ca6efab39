// A task parked on a weft primitive (an Event, later a Semaphore or a timer), woken either by
// the primitive or by its scope's cancellation, whichever comes first, exactly once.
//
// Protocol (state: Setup -> Waiting -> Notified | Cancelled, or Setup -> Notified | Cancelled):
//   Parking (await_suspend):
//     1. begin(): register a callback on the task's scope (if the scope is already cancelled:
//        the waiter is Cancelled at once and the task does not suspend);
//     2. the primitive, under its own lock: if it can satisfy the task now, CAS Setup ->
//        Notified and do not suspend; else CAS Setup -> Waiting and link the waiter into its
//        queue (if that CAS fails, a cancellation claimed the waiter during step 1-2: do not
//        link, do not suspend).
//   Waking (primitive, under its lock): CAS Waiting -> Notified, unlink, and resume the task
//     after unlocking. A waiter that fails the CAS was cancelled: it stays queued until its
//     cancellation unlinks it, and the primitive hands it nothing.
//   Cancelling (scope callback, any thread): CAS Waiting -> Cancelled, leave() (unlink under
//     the primitive's lock), resume the task; or CAS Setup -> Cancelled and leave the task
//     to go on by itself (step 2 fails). If both fail it was notified: nothing to do.
//   Resuming (await_resume): end() removes the callback (waiting, if it runs on another thread,
//     until it is done with the node: on_cancel() marks that itself, before it resumes the
//     task), then the task throws Cancelled or takes the primitive's result.
//
// Invariants: exactly one of wake/cancel wins the waiter; the task is resumed exactly once.
// A Waiting waiter may be resumed while its await_suspend is still returning: nothing touches
// the waiter after the CAS that queues it. A primitive must not be destroyed while a
// Cancelled waiter is still queued (its leave() is in flight).
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <mutex>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/fault_injection.hpp"
#include "weft/detail/perturb.hpp"
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
  detail::atomic<std::uint8_t> state{kSetup};

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
    marks_own_completion = true;
    fault::at_park(scope);  // test builds only (fault_injection.hpp)
    perturb::at_suspend();  // test builds only (perturb.hpp)
    if (scope != nullptr && !scope->add_callback(*this)) {
      state.store(kCancelled, std::memory_order_relaxed);
      scope = nullptr;  // nothing registered to remove
      return false;
    }
    return true;
  }

  // Step 2, under the primitive's lock: true when the waiter is now Waiting (the primitive
  // links it and the task suspends); false when a cancellation claimed it first.
  bool start_waiting() noexcept {
    std::uint8_t expected = kSetup;
    return state.compare_exchange_strong(expected, kWaiting, std::memory_order_acq_rel);
  }
  // Step 2 when the primitive can satisfy the task at once: false when a cancellation
  // claimed it first (the task then sees Cancelled).
  bool satisfy_now() noexcept {
    std::uint8_t expected = kSetup;
    return state.compare_exchange_strong(expected, kNotified, std::memory_order_acq_rel);
  }
  // Waking, under the primitive's lock: true when the waiter is ours to resume (after
  // unlocking); false when it was cancelled and must be skipped.
  bool claim_for_wake() noexcept {
    std::uint8_t expected = kWaiting;
    return state.compare_exchange_strong(expected, kNotified, std::memory_order_acq_rel);
  }

  // Waking by a waker that may find the waiter still in Setup (JoinHandle::join() registers
  // with its child before it goes Waiting): claims Setup or Waiting -> Notified and returns
  // the state it claimed from, or kCancelled when a cancellation claimed it. Only a waiter
  // claimed from Waiting is the waker's to resume; one claimed from Setup goes on by itself
  // (its start_waiting() fails). acq_rel, as the other CASes.
  std::uint8_t claim_for_wake_from_setup() noexcept {
    std::uint8_t seen = state.load(std::memory_order_acquire);
    while ((seen == kSetup || seen == kWaiting) &&
           !state.compare_exchange_weak(seen, kNotified, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
    }
    return seen;
  }

  // In await_resume: true when the wait ended by cancellation.
  bool end() noexcept {
    if (scope != nullptr) scope->remove_callback(*this);
    resume_in(promise);
    return state.load(std::memory_order_acquire) == kCancelled;
  }

  // Throws Cancelled into the awaiting task.
  [[noreturn, gnu::always_inline]] void throw_cancelled_here() const {
    if (promise != nullptr) promise->saw_cancelled = true;
    throw_cancelled();
  }

 private:
  static void on_cancel(CancelCallbackNode* node) noexcept;
};

// Resumes `h` on `s` (from any thread); runs it inline when there is no scheduler (a waiter
// that parked outside a runtime).
void resume_waiter(Scheduler* s, std::coroutine_handle<> h);

// A primitive's destructor, holding its queue's lock: waits until the queue (its head is
// *head_of_queue) holds no Cancelled waiter (each has its cancellation in flight, about to call
// leave(), which takes the lock), then terminates with "weft: <what> was destroyed while tasks
// were waiting on it" if any waiter is still queued: a Waiting one could never be woken.
void drain_cancelled_waiters_or_die(std::unique_lock<std::mutex>& lock,
                                    Waiter* const* head_of_queue, const char* what) noexcept;

}  // namespace weft::detail
