// A task parked on a weft primitive (an Event, a Semaphore, a Lock, a Condition, a Queue, a
// timer), woken either by the primitive or by its scope's cancellation, whichever comes first,
// exactly once. WaiterList (below) is the FIFO every such primitive keeps its Waiters in.
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
#include <thread>

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
  // `cancellable` false: no callback is registered, only the primitive can wake the waiter
  // (Condition::wait() taking its Lock back).
  template <class P>
  bool begin(std::coroutine_handle<P> h, void (*leave_fn)(Waiter*) noexcept, void* owner,
             bool cancellable = true) {
    handle = h;
    promise = weft_promise_of(h);
    scope = promise != nullptr && cancellable ? promise->cancel : nullptr;
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
  [[noreturn]] void throw_cancelled_here() const;

 private:
  static void on_cancel(CancelCallbackNode* node) noexcept;
};

// The level-triggered pull check that a primitive's fast path makes before it completes
// without suspending: two loads when nothing was cancelled.
[[gnu::always_inline]] inline bool pull_cancelled(const PromiseBase* p) noexcept {
  return p != nullptr && p->cancel != nullptr && p->cancel->is_cancelled();
}

// Throws Cancelled into the task of `p` (null: not a weft task), remembering that it was
// handed Cancelled.
[[noreturn, gnu::always_inline]] inline void throw_cancelled_into(PromiseBase* p) {
  if (p != nullptr) p->saw_cancelled = true;
  throw_cancelled();
}

inline void Waiter::throw_cancelled_here() const { throw_cancelled_into(promise); }

// Resumes `h` on `s` (from any thread); runs it inline when there is no scheduler (a waiter
// that parked outside a runtime).
void resume_waiter(Scheduler* s, std::coroutine_handle<> h);

// The intrusive FIFO of parked Waiters that every waiting primitive keeps (through
// Waiter::queue_prev/queue_next/queued), guarded by the primitive's lock: every member function
// runs under it. It holds Waiting and Cancelled waiters (a Cancelled one's leave() is on its
// way to unlink it). Claimed waiters leave it and are chained through queue_next into a
// "claimed chain" that resume_claimed() resumes once the lock is released.
//
//   WaiterList waiters;                       // in the primitive, beside its lock
//   waiters.push_back(w);                     // after w.start_waiting() succeeded
//   Waiter* woken = waiters.claim_first();    // notify: Waiting -> Notified, unlinked
//   ... unlock ...
//   resume_claimed(woken);
class WaiterList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  Waiter* front() const noexcept { return head_; }
  // True when a linked waiter is still Waiting (not only Cancelled ones on their way out).
  // Inline when the list is empty (the fast paths of try_push and friends).
  bool has_waiting() const noexcept { return head_ != nullptr && any_waiting(); }
  // Links `w` (Waiting, not linked) at the tail.
  void push_back(Waiter& w) noexcept;
  // Unlinks `w` if it is linked; false when it was not (a leave() after a claim, or a waiter
  // cancelled before it was linked).
  bool remove(Waiter& w) noexcept;
  // Claims (Waiting -> Notified) and unlinks the first Waiting waiter, skipping Cancelled
  // ones; nullptr when there is none. The result is a claimed chain of one.
  Waiter* claim_first() noexcept;
  // Claims and unlinks every Waiting waiter; returns them as a claimed chain, in FIFO order.
  Waiter* claim_all() noexcept;

 private:
  bool any_waiting() const noexcept;

  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

// Resumes every waiter of a claimed chain but `except` (a waiter that goes on without having
// suspended). Reads each link before resuming: a resumed task may free its waiter at once.
void resume_chain(Waiter* chain, const Waiter* except) noexcept;
inline void resume_claimed(Waiter* chain, const Waiter* except = nullptr) noexcept {
  if (chain != nullptr) resume_chain(chain, except);  // inline when nothing was claimed
}

// Prints "weft: <what> was destroyed while tasks were waiting on it" and terminates.
[[noreturn]] void die_destroyed_while_waited_on(const char* what) noexcept;

// A primitive's destructor, holding its queue's lock: waits until `queue` holds no Cancelled
// waiter (each has its cancellation in flight, about to call leave(), which takes the lock),
// then terminates with "weft: <what> was destroyed while tasks were waiting on it" if any
// waiter is still queued: a Waiting one could never be woken.
template <class Mutex>
void drain_cancelled_waiters_or_die(std::unique_lock<Mutex>& lock, const WaiterList& queue,
                                    const char* what) noexcept {
  while (!queue.empty() && !queue.has_waiting()) {
    lock.unlock();
    std::this_thread::yield();
    lock.lock();
  }
  if (!queue.empty()) die_destroyed_while_waited_on(what);
}

}  // namespace weft::detail
