// Condition: a condition variable for tasks over a weft::Lock (asyncio.Condition, SPEC §11).
//
//   weft::Lock lock;
//   weft::Condition changed(lock);
//   std::deque<Job> jobs;                        // guarded by `lock`
//
//   Task<Job> take() {
//     weft::LockGuard g = co_await lock.lock();
//     while (jobs.empty()) co_await changed.wait(g);   // or: co_await changed.wait(g, pred)
//     Job j = std::move(jobs.front()); jobs.pop_front();
//     co_return j;
//   }
//   Task<void> put(Job j) {
//     weft::LockGuard g = co_await lock.lock();
//     jobs.push_back(std::move(j));
//     changed.notify_one();
//   }
//
// Rules:
// - wait(g) unlocks the lock and parks the task, atomically with respect to notify: a notify
//   that comes after the waiter released the lock (so after any change it made under the
//   lock) wakes it. When woken it takes the lock back (queueing behind other lockers in FIFO
//   order) before it returns. Waiters are woken in FIFO order.
// - No spurious wake-ups: wait() returns only after a notify_one()/notify_all() chose it.
//   Still test the predicate in a loop: another task may have changed the state between the
//   notify and the moment this one got the lock back.
// - The lock is held whenever wait() ends, returning or throwing (asyncio's rule), so the
//   guard stays valid and unlocks on scope exit as usual.
// - Cancellation: wait() is a cancellation point. A task already cancelled throws Cancelled
//   at once, without unlocking. A parked waiter is woken by its cancellation, leaves the
//   queue, takes the lock back (that part ignores cancellation, so it may wait for the
//   current holder), then throws Cancelled (a timeout around it: TimeoutError). A cancelled
//   waiter consumes no notification: notify_one() skips it and wakes the next one. A waiter
//   that was notified at the instant of its cancellation returns normally (the notification
//   is not lost); its next suspension point throws Cancelled.
// - notify_one()/notify_all() may be called from any thread, holding the lock or not; change
//   the state the waiters test under the lock, or a waiter may test it, miss the change, and
//   park after the notify.
// - A Condition must not be destroyed while tasks wait on it (the process terminates with a
//   message), nor outlive its Lock.
#pragma once

#include <mutex>
#include <utility>

#include "weft/detail/waiter.hpp"
#include "weft/errors.hpp"
#include "weft/lock.hpp"
#include "weft/task.hpp"

namespace weft {

class Condition {
 public:
  // A condition over `lock`, which must outlive it.
  //
  //   weft::Condition not_empty(lock);
  explicit Condition(Lock& lock) noexcept : lock_(lock) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;
  // Terminates the process if tasks still wait on it.
  ~Condition();

  // co_await cond.wait(g): unlocks, waits for a notify, locks again (see the top of this
  // file; Cancelled after the lock is held again when cancelled). Throws UsageError at the
  // call when `g` does not hold this condition's lock. Which error wins: the UsageError (at
  // the call), then Cancelled.
  //
  //   while (!ready) co_await cond.wait(g);
  [[nodiscard]] Task<void> wait(LockGuard& g);

  // co_await cond.wait(g, pred): `while (!pred()) co_await cond.wait(g);` (pred runs with the
  // lock held; it may be called several times). Like every awaited task it throws Cancelled
  // without running in a task that is already cancelled, even when pred() holds.
  //
  //   co_await cond.wait(g, [&] { return !jobs.empty(); });
  template <class Pred>
  [[nodiscard]] Task<void> wait(LockGuard& g, Pred pred) {
    check_guard(g);
    return wait_until(*this, g, std::move(pred));
  }

  // Wakes the first waiter (FIFO), if any. From any thread; never throws.
  //
  //   jobs.push_back(j); cond.notify_one();
  void notify_one() noexcept;
  // Wakes every waiter parked right now. From any thread; never throws.
  //
  //   closing = true; cond.notify_all();
  void notify_all() noexcept;

 private:
  class ParkAwaiter;

  // UsageError unless `g` holds lock_.
  void check_guard(const LockGuard& g) const;
  static Task<void> wait_parked(Condition& self, LockGuard& g);
  template <class Pred>
  static Task<void> wait_until(Condition& self, LockGuard& g, Pred pred) {
    while (!pred()) co_await wait_parked(self, g);
  }
  // The Waiter protocol's leave(): a cancelled waiter takes itself out of the queue.
  static void leave(detail::Waiter* w) noexcept;

  Lock& lock_;
  std::mutex mutex_;            // guards waiters_
  detail::WaiterList waiters_;  // FIFO of parked waits
};

inline Task<void> Condition::wait(LockGuard& g) {
  check_guard(g);
  return wait_parked(*this, g);
}

}  // namespace weft
