// weft::Queue<T>'s untyped half: see the protocol and invariants at the top of
// include/weft/detail/queue_core.hpp.
#include "weft/queue.hpp"

#include <cassert>

namespace weft::detail {

QueueCore::QueueCore(std::size_t capacity) : capacity_(capacity) {
  if (capacity == 0)
    throw UsageError(
        "Queue(0): a Queue needs a capacity of at least 1 (asyncio's maxsize=0 means "
        "unbounded; weft's queues are bounded)");
}

void QueueCore::drain_or_die() noexcept {
  std::unique_lock<SpinLock> lock(lock_);
  drain_cancelled_waiters_or_die(lock, pushers_, "a Queue");
  drain_cancelled_waiters_or_die(lock, poppers_, "a Queue");
}

void QueueCore::close_and_wake() noexcept {
  Waiter* pushers = nullptr;
  Waiter* poppers = nullptr;
  {
    std::lock_guard<SpinLock> lock(lock_);
    if (closed_.load(std::memory_order_relaxed)) return;
    closed_.store(true, std::memory_order_relaxed);
    pushers = pushers_.claim_all();
    // Claimed: ours until resumed. They throw QueueClosed, their items untouched.
    for (Waiter* w = pushers; w != nullptr; w = w->queue_next)
      static_cast<PushWaiter*>(w)->closed = true;
    // Q2: parked poppers mean an empty queue: they get nullopt.
    poppers = poppers_.claim_all();
    assert(invariants_hold_locked());
  }
  resume_claimed(pushers);
  resume_claimed(poppers);
}

bool QueueCore::invariants_hold_locked() const noexcept {
  const std::size_t n = size_.load(std::memory_order_relaxed);
  const bool closed = closed_.load(std::memory_order_relaxed);
  if (n > capacity_ || head_ >= capacity_) return false;                      // Q1
  if (poppers_.has_waiting() && (n != 0 || closed)) return false;             // Q2, Q4
  if (pushers_.has_waiting() && (n != capacity_ || closed)) return false;     // Q3, Q4
  return true;
}

void QueueCore::leave_push(Waiter* w) noexcept {
  auto* self = static_cast<QueueCore*>(w->primitive);
  std::lock_guard<SpinLock> lock(self->lock_);
  self->pushers_.remove(*w);
}

void QueueCore::leave_pop(Waiter* w) noexcept {
  auto* self = static_cast<QueueCore*>(w->primitive);
  std::lock_guard<SpinLock> lock(self->lock_);
  self->poppers_.remove(*w);
}

void QueueCore::throw_closed() { throw QueueClosed(); }

}  // namespace weft::detail
