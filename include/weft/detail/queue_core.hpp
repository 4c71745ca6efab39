// The untyped half of weft::Queue<T> (queue.hpp): its lock, its two FIFOs of parked tasks, the
// closed flag and the item count. The typed half (the ring of items and the awaiters) is in
// queue_impl.hpp; the out-of-line parts in primitives/queue.cpp.
//
// Protocol. Everything below is guarded by lock_ (a SpinLock: every section is a few loads
// and stores and at most one item move). Parked tasks are detail::Waiters (waiter.hpp), in
// pushers_ (PushWaiter: a pointer to the item it pushes) or poppers_ (PopWaiter: a pointer to
// the optional<T> it pops into).
//   push (try_push, or push()'s fast path): under lock_, when the queue is not closed and
//     can_push_locked() (room, and no pusher parked ahead): hand the item to the first
//     parked popper that a claim wins (Waiting -> Notified), or else move it into the ring.
//   pop: under lock_, when an item is queued: move the oldest one out, then move the first
//     parked pusher that a claim wins into the freed slot.
//   A push() or pop() that cannot complete parks: Waiter::begin() (the cancellation
//     callback) without the lock, then under lock_ it retries; if it can complete now it
//     claims itself first (satisfy_now(): Setup -> Notified; a failed claim means a
//     cancellation won and nothing is moved), else start_waiting() and link at the tail.
//   close(): under lock_, set closed_, claim every parked pusher (marked `closed`: it throws
//     QueueClosed, its item untouched) and every parked popper (its optional stays empty).
//   Cancellation (Waiter::on_cancel, any thread): Waiting -> Cancelled, then leave_push() /
//     leave_pop() unlinks under lock_ and the task throws Cancelled, having moved nothing.
//   Claimed waiters are resumed after lock_ is released.
//
// Invariants (at the end of every section under lock_; checked by invariants_hold_locked()
// in debug builds).
//   Q1. size_ <= capacity_.
//   Q2. A Waiting popper is parked only while size_ == 0 (a push hands to it first).
//   Q3. A Waiting pusher is parked only while size_ == capacity_ (a pop pulls it in first).
//   Q4. Once closed_, no Waiting waiter is parked in either list, and none parks again.
//   Q5. Every item is in exactly one place: with its pusher (until a claim moves it), in the
//       ring, or in a claimed popper's optional; only the winner of a waiter's claim moves
//       its item, so nothing is lost or duplicated.
// Which wakes a parked task: exactly one of claim (push, pop, close) and cancellation wins
// the Waiter's CAS; the winner's moves happen under lock_ before the task is resumed, and
// being scheduled orders them before the task reads its result.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>

#include "weft/detail/cancel_state.hpp"
#include "weft/detail/waiter.hpp"

namespace weft::detail {

class QueueCore {
 protected:
  // A parked push: the item it moves in when claimed; `closed`: claimed by close() (it then
  // throws QueueClosed). Written by the claimer under lock_, read by the resumed task.
  struct PushWaiter : Waiter {
    void* value = nullptr;  // T*
    bool closed = false;
  };
  // A parked pop: where a push hands its item (close() leaves it empty).
  struct PopWaiter : Waiter {
    void* out = nullptr;  // std::optional<T>*
    bool closed = false;  // unused: pop reports a close as std::nullopt
  };

  explicit QueueCore(std::size_t capacity);  // UsageError for 0
  ~QueueCore() = default;
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;

  // For the destructor: waits out cancellations still unlinking their waiters, terminates if
  // a task still waits.
  void drain_or_die() noexcept;

  bool can_push_locked() const noexcept {
    return size_.load(std::memory_order_relaxed) < capacity_ && !pushers_.has_waiting();
  }
  bool is_closed() const noexcept {
    // Relaxed: a snapshot for closed(); under lock_ the lock orders it.
    return closed_.load(std::memory_order_relaxed);
  }
  std::size_t snapshot_size() const noexcept {
    // Relaxed: a snapshot for size(); under lock_ the lock orders it.
    return size_.load(std::memory_order_relaxed);
  }
  void close_and_wake() noexcept;
  // Q1-Q4, for assert() in debug builds (walks both lists).
  bool invariants_hold_locked() const noexcept;

  static void leave_push(Waiter* w) noexcept;
  static void leave_pop(Waiter* w) noexcept;
  [[noreturn]] static void throw_closed();

  mutable SpinLock lock_;
  WaiterList pushers_;  // guarded by lock_
  WaiterList poppers_;  // guarded by lock_
  const std::size_t capacity_;
  std::size_t head_ = 0;  // guarded by lock_: the ring index of the oldest item
  // Written only under lock_ (relaxed: the lock orders it); read without it by size().
  std::atomic<std::size_t> size_{0};
  // Written only under lock_ (relaxed, as size_); read without it by closed().
  std::atomic<bool> closed_{false};
};

}  // namespace weft::detail
