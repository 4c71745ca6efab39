// Semaphore: a lock-free fast path over a locked FIFO queue of Waiters.
//
// State. One atomic word, state_ = free | Q: `free` (low 63 bits) is the number of permits
// nobody holds and nobody has been granted; Q (the top bit) says "a waiter is linked in the
// queue". The queue (waiters_, a detail::WaiterList) is guarded by mutex_ and holds
// PermitWaiters (detail::Waiter plus the count they want), each Waiting or Cancelled (a Cancelled one's leave() is on its
// way to unlink it; it is owed nothing and holds nobody back).
//
// Invariants.
//   I1. Q is set iff the queue is non-empty. Q is set and cleared only under mutex_.
//   I2. While Q is set, state_ changes only under mutex_. The lock-free operations CAS from a
//       value whose Q is clear, so every one of them fails once Q is set (a CAS compares the
//       whole word, and RMWs on one atomic read the latest value in its modification order).
//   I3. At the end of every locked section, either the queue is empty, or the first Waiting
//       waiter wants more than `free` (grant_locked() runs last in every section that adds
//       permits or changes the queue).
//   I4. Permits are conserved: free + permits held + permits granted to waiters not yet
//       resumed changes only by Semaphore::release() by hand (a permit's release gives back
//       what it took), starts at the initial permits, and free never exceeds the capacity
//       (a release that would take it there throws UsageError and changes nothing). With
//       Semaphore(0, n) (a signal) the sum starts at 0 and grows by the hand releases.
//
// Paths.
//   Fast acquire (await_suspend, inline): the scope's pull check, then CAS free -> free - n
//     if Q is clear and free >= n. No lock, no cancellation callback.
//   Fast release (inline): CAS free -> free + n if Q is clear (and the capacity allows it).
//   Slow acquire (enqueue()): Waiter::begin() registers the cancellation callback; then, under
//     mutex_: if Q is clear and free >= n now, take them (the Waiter goes Setup -> Notified;
//     if a cancellation claimed it first, the permits are added back: Q is clear and we hold
//     the lock, so no waiter can be owed them). Otherwise Setup -> Waiting, link at the tail,
//     set Q with an RMW (fetch_or), and run grant_locked(), which may grant this very waiter
//     (permits released between its fast attempt and the RMW, or ahead of it only Cancelled
//     waiters): then it does not suspend.
//   Slow release (Q was set): under mutex_, re-read; if Q has cleared meanwhile, do the fast
//     release's CAS; else add n to free and run grant_locked().
//   grant_locked(): walk from the head, skip Cancelled waiters, and while the first Waiting
//     waiter's n <= free: claim it (Waiting -> Notified), subtract n, unlink it; stop at the
//     first that does not fit (FIFO: nobody overtakes it). Then store free | (Q iff queue
//     non-empty). Claimed waiters are resumed after unlocking; the permits are already
//     theirs, so no task arriving meanwhile can barge in and take them.
//   Cancellation (Waiter::on_cancel on any thread): Waiting -> Cancelled, then leave() unlinks
//     under mutex_ and runs grant_locked(): a cancelled waiter that held back the ones
//     behind it lets them through. A waiter granted at the same instant its scope was
//     cancelled wins the CAS for the grant; its await_resume() sees the scope cancelled,
//     releases the permits (the release path hands them on) and throws Cancelled.
//
// No lost wake-up. A task parks only after its own RMW that set Q (or under the lock with Q
// already set), followed by grant_locked() in the same locked section. Take any release R of
// permits that the parked waiter W could use.
//   - If R's RMW comes before W's fetch_or in state_'s modification order, fetch_or returns a
//     value that includes R's permits, and the grant_locked() that follows sees them.
//   - If it comes after, R reads Q set (I2: the RMW reads the latest value), so R is the slow
//     release: it takes mutex_ and runs grant_locked() over a queue that contains W.
//   Q cannot clear in between: only a locked section with an empty queue clears it (I1), and
//   W stays linked until granted or cancelled. With I3 this gives: a Waiting waiter stays
//   parked only while the permits ahead of it, plus its own, exceed what is free.
// No lost permit. Permits leave `free` only by a successful CAS (the taker owns them), by a
// grant (the claimed waiter owns them: exactly one of grant and cancellation wins its CAS),
// or by try_acquire under the lock. A waiter that a cancellation claims is never granted
// anything; one granted and then found cancelled gives the permits back through release().
#include "weft/semaphore.hpp"

#include <cstdio>
#include <exception>
#include <string>

namespace weft {

using detail::Waiter;

Semaphore::Semaphore(std::size_t permits) : Semaphore(permits, permits) {}

Semaphore::Semaphore(std::size_t permits, std::size_t capacity)
    : state_(permits), capacity_(capacity) {
  if (capacity > kMaxPermits)
    throw UsageError("Semaphore: a capacity of " + std::to_string(capacity) +
                     " permits exceeds the maximum of " + std::to_string(kMaxPermits));
  if (permits > capacity)
    throw UsageError("Semaphore(" + std::to_string(permits) + ", " + std::to_string(capacity) +
                     "): more initial permits than the capacity");
}

Semaphore::~Semaphore() {
  std::unique_lock<std::mutex> lock(mutex_);
  detail::drain_cancelled_waiters_or_die(lock, waiters_, "a Semaphore");
}

void Semaphore::throw_above_capacity(const char* what, std::size_t n) const {
  throw UsageError("Semaphore::" + std::string(what) + "(" + std::to_string(n) +
                   ") asks for more permits than the capacity of " + std::to_string(capacity_) +
                   ": it could never succeed");
}

void Semaphore::throw_over_release(std::size_t n, std::size_t available) const {
  throw UsageError("Semaphore::release(" + std::to_string(n) + ") with " +
                   std::to_string(available) + " of " + std::to_string(capacity_) +
                   " permits free would exceed the capacity (released more than acquired?)");
}

Waiter* Semaphore::grant_locked() noexcept {
  // Q is set and we hold the lock, so the word is ours (I2). Acquire: see the permit
  // holders' writes that reached it through earlier lock-free RMWs.
  std::uint64_t free = state_.load(std::memory_order_acquire) & ~kQueued;
  Waiter* granted = nullptr;
  Waiter** granted_tail = &granted;
  for (Waiter* w = waiters_.front(); w != nullptr;) {
    Waiter* next = w->queue_next;
    // Acquire pairs with the cancellation's CAS; a stale Waiting only means we treat a
    // cancelled waiter as live for one more round: its leave() reruns this loop.
    if (w->state.load(std::memory_order_acquire) != Waiter::kCancelled) {
      const std::size_t wanted = static_cast<PermitWaiter*>(w)->permits;
      if (wanted > free) break;  // FIFO: nobody behind it may overtake it
      if (w->claim_for_wake()) {
        free -= wanted;
        waiters_.remove(*w);
        w->queue_next = nullptr;  // ours until resumed: reuse the link for the granted list
        *granted_tail = w;
        granted_tail = &w->queue_next;
      }  // else cancelled just now: it is owed nothing, go on behind it
    }
    w = next;
  }
  // Release pairs with the acquire CAS of a lock-free acquire once Q is clear: the permits'
  // last holders' writes are visible to their next holder.
  state_.store(free | (waiters_.empty() ? 0 : kQueued), std::memory_order_release);
  return granted;
}

bool Semaphore::enqueue(PermitWaiter& w) {
  Waiter* granted = nullptr;
  bool granted_here = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Relaxed: the CAS re-reads the word.
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    while ((s & kQueued) == 0 && s >= w.permits) {
      // Permits were released since the fast attempt and nobody is queued: take them.
      // Acquire: as in try_take_fast().
      if (state_.compare_exchange_weak(s, s - w.permits, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        if (!w.satisfy_now()) {
          // A cancellation claimed the waiter during begin(): give the permits back. Q is
          // clear and we hold the lock, so no waiter is owed them. Release: as release().
          state_.fetch_add(w.permits, std::memory_order_release);
        }
        return false;  // await_resume() sees Notified or Cancelled
      }
    }
    if (!w.start_waiting()) return false;  // cancelled during begin(): never linked
    waiters_.push_back(w);
    // From here on every release sees Q and comes through the lock (see "No lost wake-up").
    // acq_rel: an RMW in the one modification order with the lock-free CASes.
    state_.fetch_or(kQueued, std::memory_order_acq_rel);
    granted = grant_locked();
    // Only grant_locked(), under this lock, moves a Waiting waiter to Notified; a
    // cancellation may move it to Cancelled at any time, and then resumes the task itself.
    granted_here = w.state.load(std::memory_order_relaxed) == Waiter::kNotified;
  }
  // Not suspended yet: if this waiter was granted, it goes on without suspending; any other
  // waiter granted here is resumed. If it was not granted, it may already be running on
  // another thread (a release or a cancellation): touch nothing of it from here on.
  detail::resume_claimed(granted, &w);
  return !granted_here;
}

void Semaphore::release_slow(std::size_t n) {
  Waiter* granted = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Relaxed: the CAS re-reads; with Q set the word is ours.
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    while ((s & kQueued) == 0) {
      // The queue emptied since the lock-free attempt: release as it would.
      if (n > capacity_ - s) throw_over_release(n, static_cast<std::size_t>(s));
      if (state_.compare_exchange_weak(s, s + n, std::memory_order_release,
                                       std::memory_order_relaxed))
        return;
    }
    const std::uint64_t free = s & ~kQueued;
    if (n > capacity_ - free) throw_over_release(n, static_cast<std::size_t>(free));
    // Relaxed: grant_locked() stores the final word with release.
    state_.store((free + n) | kQueued, std::memory_order_relaxed);
    granted = grant_locked();
  }
  detail::resume_claimed(granted);
}

void Semaphore::leave(Waiter* w) noexcept {
  auto* self = static_cast<Semaphore*>(w->primitive);
  Waiter* granted = nullptr;
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    // Not linked: cancelled before it was linked, nothing to undo.
    if (!self->waiters_.remove(*w)) return;
    // It may have held back smaller requests behind it (I3): let them through.
    granted = self->grant_locked();
  }
  detail::resume_claimed(granted);
}

std::optional<SemaphorePermit> Semaphore::try_acquire(std::size_t n) {
  if (n > capacity_) throw_above_capacity("try_acquire", n);
  if (n == 0 || try_take_fast(n)) return SemaphorePermit(*this, n);
  // Relaxed: a hint; too few free permits and nobody queued is a plain failure.
  if ((state_.load(std::memory_order_relaxed) & kQueued) == 0) return std::nullopt;
  // Waiters are linked. Fail if any of them still waits (FIFO); only waiters whose
  // cancellation is taking them out of the queue right now do not count.
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t s = state_.load(std::memory_order_acquire);
  if ((s & kQueued) == 0) {
    if (try_take_fast(n)) return SemaphorePermit(*this, n);
    return std::nullopt;
  }
  if (waiters_.has_waiting()) return std::nullopt;
  if ((s & ~kQueued) < n) return std::nullopt;
  // Q stays set: the cancelled waiters are still linked (I1). The word is ours (I2).
  state_.store(s - n, std::memory_order_relaxed);
  return SemaphorePermit(*this, n);
}

void SemaphorePermit::report_dropped_permits(std::size_t count) noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft: a SemaphorePermit dropped its %zu permits: %s\n", count, e.what());
  } catch (...) {
    std::fprintf(stderr, "weft: a SemaphorePermit dropped its %zu permits\n", count);
  }
}

}  // namespace weft
