// Semaphore: a FIFO-fair counting semaphore for tasks (asyncio.Semaphore, with requests for
// several permits at once), and SemaphorePermit, the RAII handle of acquired permits.
//
//   weft::Semaphore connections(8);                    // at most 8 requests in flight
//   Task<Page> fetch(Url url) {
//     SemaphorePermit permit = co_await connections.acquire();   // parks while 8 are out
//     co_return co_await http_get(url);                // the permit is released on return
//   }
//
//   weft::Semaphore memory_mb(1024);
//   SemaphorePermit mb = co_await memory_mb.acquire(chunk_mb);     // several permits at once
//
// Rules (SPEC §7):
// - FIFO-fair, multi-permit requests included: permits go to waiters strictly in arrival order,
//   so a waiter for 3 permits is never overtaken by a later waiter for 1, and try_acquire()
//   fails while any acquire is queued. Released permits are handed to the woken waiter
//   directly: a task that arrives meanwhile cannot barge in and take them.
// - acquire() is a cancellation point (level-triggered, like every weft suspension point): in
//   a task that is already cancelled it throws Cancelled even when permits are free, and a
//   parked acquire is woken by the cancellation itself, leaves the queue, and throws
//   Cancelled. A cancelled (or, with a deadline, timed-out) acquire never loses or leaks a
//   permit: permits granted to it at the very moment it was cancelled are handed on to the
//   next waiter, and a cancelled waiter at the head of the queue lets the ones behind it
//   through when the permits suffice for them.
// - Misuse throws UsageError: acquire(n) or try_acquire(n) with n above the capacity (it
//   could never succeed), and a release() that would take available() above the capacity.
// - n == 0 is allowed and takes nothing: acquire(0) never waits (it still throws Cancelled in
//   a cancelled task) and try_acquire(0) always succeeds, both with an empty permit, even
//   while others queue (they wait for permits it does not take); release(0) does nothing.
//   (tokio's acquire_many(0) does the same: generic code computing n may legitimately get 0.)
// - A Semaphore must outlive its permits and must not be destroyed while tasks wait on it
//   (that terminates the process with a message: those tasks could never be woken).
//
// Cost: an uncontended acquire is the pull cancellation check (two loads) and one CAS; an
// uncontended release one CAS. No lock and no cancellation callback unless the task has to
// wait. The protocol between that lock-free path and the locked queue is at the top of
// primitives/semaphore.cpp.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <optional>
#include <utility>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/waiter.hpp"
#include "weft/errors.hpp"

namespace weft {

class Semaphore;

// Permits taken from a Semaphore, released when the permit is destroyed or release()d.
// Move-only; a moved-from or empty permit holds nothing. Keep it in a variable: a discarded
// `co_await sem.acquire();` releases the permits at once ([[nodiscard]]: clang warns).
//
//   SemaphorePermit p = co_await sem.acquire(2);
//   ...
//   p.release();   // early; the destructor then does nothing
class [[nodiscard]] SemaphorePermit {
 public:
  // Holds nothing.
  SemaphorePermit() noexcept = default;
  SemaphorePermit(SemaphorePermit&& other) noexcept
      : semaphore_(std::exchange(other.semaphore_, nullptr)),
        count_(std::exchange(other.count_, 0)) {}
  // Releases what this permit held, then takes over `other`'s permits.
  SemaphorePermit& operator=(SemaphorePermit&& other) noexcept {
    if (this != &other) {
      release_from_destructor();
      semaphore_ = std::exchange(other.semaphore_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  SemaphorePermit(const SemaphorePermit&) = delete;
  SemaphorePermit& operator=(const SemaphorePermit&) = delete;
  // Releases the permits (see release_from_destructor() for the one case it cannot).
  ~SemaphorePermit() { release_from_destructor(); }

  // Gives the permits back to the semaphore now (waking waiters they suffice for); later
  // calls, and the destructor, then do nothing. Throws UsageError (and keeps holding) only
  // when the semaphore is already full: someone called Semaphore::release() for permits this
  // one holds.
  void release();

  // The number of permits held (0 once released, moved from, or from acquire(0)).
  std::size_t count() const noexcept { return count_; }
  explicit operator bool() const noexcept { return count_ != 0; }

 private:
  friend class Semaphore;
  SemaphorePermit(Semaphore& s, std::size_t n) noexcept
      : semaphore_(n != 0 ? &s : nullptr), count_(n) {}
  // release() for the destructor and move assignment, which must not throw: an over-release
  // (the misuse described at release()) is reported on stderr and the permits are dropped,
  // leaving the semaphore full.
  void release_from_destructor() noexcept;
  // Called in a catch block: prints the exception being handled.
  static void report_dropped_permits(std::size_t count) noexcept;

  Semaphore* semaphore_ = nullptr;
  std::size_t count_ = 0;
};

class Semaphore {
 public:
  // The largest capacity: the state word keeps the count in 63 bits, the top bit being its
  // "waiters queued" flag.
  static constexpr std::size_t kMaxPermits = (std::size_t{1} << 63) - 1;

  // A semaphore with `permits` free permits; `permits` is also its capacity. Throws
  // UsageError above kMaxPermits.
  //
  //   weft::Semaphore slots(8);          // 8 free, at most 8
  explicit Semaphore(std::size_t permits);
  // (SPEC r2) `permits` free now, at most `capacity` free ever: Semaphore(0, n) is a signal that
  // starts empty and that release() fills up to n. Throws UsageError when permits > capacity or
  // capacity > kMaxPermits. acquire(n)/try_acquire(n) with n > capacity, and a release() that
  // would take available() above capacity, throw UsageError as with the one-argument form.
  //
  //   weft::Semaphore ready(0, 64);      // producers release(), consumers co_await acquire()
  //   ready.release(3);                  // 3 available; release(62) now throws UsageError
  Semaphore(std::size_t permits, std::size_t capacity);
  // Terminates the process if tasks still wait on it (they could never be woken). Waits for
  // cancellations that are taking their waiters out of the queue right now.
  ~Semaphore();
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // The awaitable of acquire(); BasicAcquireAwaiter<false> is the uncancellable acquire that
  // a Condition uses to take its Lock back after a wait.
  template <bool kCancellable>
  class BasicAcquireAwaiter;
  using AcquireAwaiter = BasicAcquireAwaiter<true>;

  // co_await sem.acquire(n) -> SemaphorePermit holding n permits. Waits, in FIFO order,
  // until n permits are free; throws Cancelled if the task is cancelled before or while it
  // waits (see the top of this file). Throws UsageError at once when n > capacity().
  //
  //   SemaphorePermit p = co_await sem.acquire(3);
  [[nodiscard]] AcquireAwaiter acquire(std::size_t n = 1);

  // Takes n permits if they are free and nobody is queued for permits; never waits. Throws
  // UsageError when n > capacity().
  //
  //   if (auto p = sem.try_acquire()) serve(); else reject_busy();
  std::optional<SemaphorePermit> try_acquire(std::size_t n = 1);

  // Returns n permits (from any thread), waking the queued waiters they now suffice for, in
  // order. Throws UsageError, changing nothing, when available() + n would exceed capacity().
  // Prefer SemaphorePermit::release(): this is for code that manages permits by hand.
  void release(std::size_t n = 1);

  // Free permits right now (a snapshot). Permits handed to a woken waiter are not free.
  std::size_t available() const noexcept {
    // Relaxed: a snapshot; it orders nothing.
    return static_cast<std::size_t>(state_.load(std::memory_order_relaxed) & ~kQueued);
  }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  friend class Condition;
  // acquire() that ignores cancellation: it neither checks the scope nor registers a
  // cancellation callback, so it waits until the permits are granted. For Condition::wait(),
  // which must hold its Lock again when it ends, also when it ends by cancellation.
  [[nodiscard]] BasicAcquireAwaiter<false> acquire_uncancellable(std::size_t n);

  // A parked acquire: the Waiter protocol's node plus how many permits it asks for.
  struct PermitWaiter : detail::Waiter {
    std::size_t permits = 0;
  };

  // The top bit of state_: at least one waiter is linked in the queue. While it is set, the
  // state word changes only under mutex_ (see primitives/semaphore.cpp).
  static constexpr std::uint64_t kQueued = std::uint64_t{1} << 63;

  // The lock-free path: takes n permits if free and nobody is queued.
  bool try_take_fast(std::size_t n) noexcept {
    // Relaxed: the CAS below re-reads the word; a stale value only costs a retry.
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    while ((s & kQueued) == 0 && s >= n) {
      // Acquire pairs with the release of the permits' previous holder (release()), so the
      // data the permits guard is visible to the new holder.
      if (state_.compare_exchange_weak(s, s - n, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  // The locked path of acquire(), Waiter protocol step 2. True when the task must suspend.
  bool enqueue(PermitWaiter& w);
  void release_slow(std::size_t n);
  // Grants queued waiters in order while permits suffice; returns them (linked through
  // queue_next) to be resumed after unlocking. Under mutex_, with kQueued set.
  detail::Waiter* grant_locked() noexcept;
  // The Waiter protocol's leave(): a cancelled waiter takes itself out of the queue.
  static void leave(detail::Waiter* w) noexcept;
  [[noreturn]] void throw_above_capacity(const char* what, std::size_t n) const;
  [[noreturn]] void throw_over_release(std::size_t n, std::size_t available) const;

  // Free permits (low 63 bits) | kQueued. Its modification order is the one sequence of
  // every permit transfer, fast and slow.
  detail::atomic<std::uint64_t> state_;
  const std::size_t capacity_;
  std::mutex mutex_;            // the queue; and state_ while kQueued is set
  detail::WaiterList waiters_;  // FIFO of PermitWaiters, guarded by mutex_
};

// The awaitable of Semaphore::acquire(). Not movable: co_await it where acquire() returns it.
template <bool kCancellable>
class Semaphore::BasicAcquireAwaiter {
 public:
  BasicAcquireAwaiter(Semaphore& s, std::size_t n) noexcept : semaphore_(s), permits_(n) {}
  BasicAcquireAwaiter(const BasicAcquireAwaiter&) = delete;
  BasicAcquireAwaiter& operator=(const BasicAcquireAwaiter&) = delete;
  // The Waiter (built only on the slow path) is trivially destructible.
  ~BasicAcquireAwaiter() {}

  // Always goes to await_suspend, which learns the task's scope for the cancellation check;
  // on the fast path it does not suspend.
  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    promise_ = detail::weft_promise_of(h);
    // The level-triggered pull check first (two loads when nothing was cancelled).
    if (kCancellable && detail::pull_cancelled(promise_)) [[unlikely]] {
      how_ = How::kCancelledEarly;
      return false;
    }
    if (permits_ == 0 || semaphore_.try_take_fast(permits_)) [[likely]] {
      how_ = How::kTaken;
      return false;
    }
    return wait_slow(h);
  }

  SemaphorePermit await_resume() {
    if (how_ == How::kTaken) [[likely]]
      return SemaphorePermit(semaphore_, permits_);
    return resume_slow();
  }

 private:
  enum class How : std::uint8_t { kTaken, kCancelledEarly, kWaited };

  template <class P>
  bool wait_slow(std::coroutine_handle<P> h) {
    how_ = How::kWaited;
    ::new (static_cast<void*>(&waiter_)) PermitWaiter();
    waiter_.permits = permits_;
    // Step 1 of the Waiter protocol; false: already cancelled, the waiter is Cancelled.
    if (!waiter_.begin(h, &Semaphore::leave, &semaphore_, kCancellable)) return false;
    return semaphore_.enqueue(waiter_);
  }

  SemaphorePermit resume_slow() {
    if (how_ == How::kCancelledEarly) detail::throw_cancelled_into(promise_);
    if (waiter_.end()) waiter_.throw_cancelled_here();
    // Granted. Level-triggered: a task cancelled meanwhile (a grant racing its cancellation)
    // hands the permits on to the next waiter and sees Cancelled, as asyncio does.
    if (kCancellable && detail::pull_cancelled(promise_)) [[unlikely]] {
      semaphore_.release(permits_);
      waiter_.throw_cancelled_here();
    }
    return SemaphorePermit(semaphore_, permits_);
  }

  Semaphore& semaphore_;
  std::size_t permits_;
  detail::PromiseBase* promise_ = nullptr;
  How how_ = How::kTaken;
  // Constructed by wait_slow() only: the fast path does not pay for initialising it.
  union {
    PermitWaiter waiter_;
  };
};

inline Semaphore::AcquireAwaiter Semaphore::acquire(std::size_t n) {
  if (n > capacity_) [[unlikely]]
    throw_above_capacity("acquire", n);
  return AcquireAwaiter(*this, n);
}

inline Semaphore::BasicAcquireAwaiter<false> Semaphore::acquire_uncancellable(std::size_t n) {
  if (n > capacity_) [[unlikely]]
    throw_above_capacity("acquire", n);
  return BasicAcquireAwaiter<false>(*this, n);
}

inline void Semaphore::release(std::size_t n) {
  if (n == 0) return;
  // Relaxed: the CAS re-reads the word.
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  while ((s & kQueued) == 0) {
    if (n > capacity_ - s) [[unlikely]]
      throw_over_release(n, static_cast<std::size_t>(s));
    // Release pairs with the acquire CAS of the permits' next holder (try_take_fast()).
    if (state_.compare_exchange_weak(s, s + n, std::memory_order_release,
                                     std::memory_order_relaxed))
      return;
  }
  release_slow(n);  // waiters are queued: they may be owed these permits
}

inline void SemaphorePermit::release() {
  if (semaphore_ == nullptr) return;
  semaphore_->release(count_);
  semaphore_ = nullptr;
  count_ = 0;
}

inline void SemaphorePermit::release_from_destructor() noexcept {
  if (semaphore_ == nullptr) return;
  try {
    semaphore_->release(count_);
  } catch (...) {
    report_dropped_permits(count_);
  }
  semaphore_ = nullptr;
  count_ = 0;
}

}  // namespace weft
