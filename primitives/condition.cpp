// Condition: a FIFO of parked waits (detail::WaiterList) beside a Lock.
//
// Protocol. wait(g) is a coroutine of two steps, both on the Waiter protocol
// (detail/waiter.hpp):
//   1. Park (ParkAwaiter): Waiter::begin() registers the cancellation callback (already
//      cancelled: throw Cancelled, still holding the lock); then under mutex_:
//      start_waiting() (Setup -> Waiting; fails if a cancellation claimed the waiter during
//      begin(): throw Cancelled, still holding the lock), move the Lock's permit out of the
//      guard into a local, link the waiter at the tail. After unlocking mutex_, release the
//      local permit: the lock is free (or handed to its first waiter) only once the waiter is
//      linked, so a notifier that changes the state under the lock finds it queued.
//   2. Retake: whether woken by a notify (Notified) or by its cancellation (Cancelled), the
//      coroutine takes the Lock's permit back through Semaphore::acquire_uncancellable(),
//      which queues FIFO with the other lockers and ignores cancellation, and puts it back
//      into the guard; then it returns, or throws Cancelled if step 1 ended by cancellation.
//   notify_one()/notify_all(), under mutex_: WaiterList::claim_first()/claim_all() (Waiting ->
//     Notified, unlink; Cancelled waiters are skipped: they consume no notification), then
//     resume the claimed waiters after unlocking.
//   Cancellation (Waiter::on_cancel, any thread): Waiting -> Cancelled, leave() unlinks under
//     mutex_, then the task is resumed and runs step 2.
//
// Invariants.
//   C1. A linked waiter's guard holds no permit: the task released the lock (step 1) and will
//       take it back (step 2) before wait() ends. The guard is touched only by the waiting
//       task itself: before the link under mutex_, and after its resumption.
//   C2. wait() ends (returning or throwing) with the guard holding the lock, unless it threw
//       UsageError at the call.
//   C3. Exactly one of notify and cancellation claims a waiter (the Waiter's CAS); a claimed
//       waiter is unlinked by its claimer, a cancelled one by its leave().
//   C4. Nothing touches the waiter or the awaiting frame after the waiter is linked and
//       mutex_ is released (a notify or cancellation may resume the task at once, on any
//       thread); step 1 then touches only its local permit and the Lock.
#include "weft/condition.hpp"

#include <cassert>
#include <string>

namespace weft {

using detail::Waiter;

class Condition::ParkAwaiter {
 public:
  ParkAwaiter(Condition& cond, LockGuard& guard) noexcept : cond_(cond), guard_(guard) {}
  ParkAwaiter(const ParkAwaiter&) = delete;
  ParkAwaiter& operator=(const ParkAwaiter&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    // Step 1; false: the scope is cancelled already, the lock is kept (C2).
    if (!waiter_.begin(h, &Condition::leave, &cond_)) return false;
    SemaphorePermit lock_permit;
    {
      std::lock_guard<std::mutex> lock(cond_.mutex_);
      if (!waiter_.start_waiting()) return false;  // cancelled during begin(): not linked
      assert(guard_.owns_lock() && "wait() checked the guard");
      lock_permit = std::move(guard_.permit_);  // C1: before the link
      cond_.waiters_.push_back(waiter_);
    }
    // C4: from here on only the local permit. Unlocking hands the lock to its first waiter,
    // which may be a notifier about to wake this task.
    lock_permit.release();
    return true;
  }

  void await_resume() {
    if (waiter_.end()) waiter_.throw_cancelled_here();
  }

 private:
  Condition& cond_;
  LockGuard& guard_;
  Waiter waiter_;
};

Condition::~Condition() {
  std::unique_lock<std::mutex> lock(mutex_);
  detail::drain_cancelled_waiters_or_die(lock, waiters_, "a Condition");
}

void Condition::check_guard(const LockGuard& g) const {
  if (g.lock_ != &lock_)
    throw UsageError("Condition::wait: the guard is not a guard of this condition's Lock");
  if (!g.owns_lock())
    throw UsageError("Condition::wait: the guard does not hold the lock (unlocked or moved from)");
}

Task<void> Condition::wait_parked(Condition& self, LockGuard& g) {
  bool cancelled = false;
  try {
    co_await ParkAwaiter(self, g);
  } catch (const Cancelled&) {
    cancelled = true;  // co_await is not allowed in a catch block: step 2 comes below
  }
  // Step 2. The guard holds nothing iff step 1 linked the waiter and released the lock.
  if (!g.owns_lock()) g.permit_ = co_await self.lock_.permits_.acquire_uncancellable(1);
  assert(g.owns_lock());  // C2
  if (cancelled) detail::throw_cancelled();
}

void Condition::notify_one() noexcept {
  Waiter* woken = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken = waiters_.claim_first();
  }
  detail::resume_claimed(woken);
}

void Condition::notify_all() noexcept {
  Waiter* woken = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken = waiters_.claim_all();
  }
  detail::resume_claimed(woken);
}

void Condition::leave(Waiter* w) noexcept {
  auto* self = static_cast<Condition*>(w->primitive);
  std::lock_guard<std::mutex> lock(self->mutex_);
  self->waiters_.remove(*w);
}

}  // namespace weft
