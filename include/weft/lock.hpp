// Lock: a FIFO-fair mutual-exclusion lock for tasks (asyncio.Lock), and LockGuard, the RAII
// proof of holding it (SPEC §11).
//
//   weft::Lock accounts_lock;
//   Task<void> transfer(Account& a, Account& b, long amount) {
//     weft::LockGuard g = co_await accounts_lock.lock();   // parks (holding no worker) while held
//     a.balance -= amount;
//     co_await audit(a, b);                                 // still held across suspensions
//     b.balance += amount;
//   }                                                       // unlocked by the guard
//
// Rules:
// - FIFO-fair: the lock goes to waiters strictly in arrival order, and an unlock hands it to
//   the first waiter directly (a task arriving meanwhile cannot barge in); try_lock() fails
//   while anyone waits.
// - lock() is a cancellation point like every weft suspension point: in a task that is
//   already cancelled it throws Cancelled even when the lock is free, and a parked lock() is
//   woken by the cancellation itself, leaves the queue and throws Cancelled (a timeout around
//   it: TimeoutError from the timeout). A cancelled lock() never holds the lock: if the lock
//   was handed to it at the instant of its cancellation, it passes it on to the next waiter.
// - Not reentrant and not owned by a task: a task that locks a Lock it already holds waits
//   for itself for ever (a deadlock; weft cannot tell it from a wait for another holder), and
//   a guard may be moved to, and unlocked by, another task.
// - A Lock must outlive its guards, and must not be destroyed while tasks wait on it (that
//   terminates the process with a message: those tasks could never be woken).
//
// Built on Semaphore(1) (semaphore.hpp, whose protocol is at the top of
// primitives/semaphore.cpp): an uncontended lock() is the scope's pull check and one CAS, an
// uncontended unlock one CAS, and a waiter is a detail::Waiter in the semaphore's FIFO.
#pragma once

#include <coroutine>
#include <cstddef>
#include <optional>
#include <utility>

#include "weft/semaphore.hpp"

namespace weft {

class Lock;
class Condition;

// Proof that a Lock is held; unlocks it when destroyed. Move-only; a default-constructed,
// moved-from or unlocked guard holds nothing. Keep it in a variable: a discarded
// `co_await l.lock();` unlocks at once ([[nodiscard]]: clang warns).
//
//   weft::LockGuard g = co_await l.lock();
//   ...
//   g.unlock();        // early; the destructor then does nothing
class [[nodiscard]] LockGuard {
 public:
  // Holds nothing.
  LockGuard() noexcept = default;
  LockGuard(LockGuard&& other) noexcept = default;
  // Unlocks what this guard held, then takes over `other`'s lock.
  LockGuard& operator=(LockGuard&& other) noexcept = default;
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;
  // Unlocks the lock if held.
  ~LockGuard() = default;

  // Unlocks now, handing the lock to the first waiter if any; later calls and the destructor
  // then do nothing.
  //
  //   g.unlock();
  //   co_await slow_io();   // without holding the lock
  void unlock() { permit_.release(); }

  // True while this guard holds its lock.
  //
  //   if (g.owns_lock()) g.unlock();
  bool owns_lock() const noexcept { return permit_.count() != 0; }
  explicit operator bool() const noexcept { return owns_lock(); }

 private:
  friend class Lock;
  friend class Condition;
  LockGuard(Lock& lock, SemaphorePermit permit) noexcept
      : lock_(&lock), permit_(std::move(permit)) {}

  Lock* lock_ = nullptr;     // which lock (kept after unlock(): Condition checks it)
  SemaphorePermit permit_;   // the Lock's one permit, or nothing
};

class Lock {
 public:
  // An unlocked lock.
  //
  //   weft::Lock l;
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  // Terminates the process if tasks still wait on it (they could never be woken).
  ~Lock() = default;

  class LockAwaiter;

  // co_await l.lock() -> LockGuard. Waits, in FIFO order, until the lock is free; throws
  // Cancelled if the task is cancelled before or while it waits (Cancelled wins over a free
  // lock: the check comes first). Deadlocks if this task already holds the lock.
  //
  //   weft::LockGuard g = co_await l.lock();
  [[nodiscard]] LockAwaiter lock() noexcept;

  // Takes the lock if it is free and nobody waits for it; never waits, never throws.
  //
  //   if (auto g = l.try_lock()) update(); else count_busy();
  std::optional<LockGuard> try_lock() noexcept {
    // try_acquire(1) throws only for n above the capacity (1): never here.
    std::optional<SemaphorePermit> p = permits_.try_acquire(1);
    if (!p) return std::nullopt;
    return LockGuard(*this, std::move(*p));
  }

  // Whether some guard holds the lock right now (a snapshot, for diagnostics).
  //
  //   assert(l.locked());
  bool locked() const noexcept { return permits_.available() == 0; }

 private:
  friend class Condition;
  // One permit: the lock. Its FIFO is the lock's queue.
  Semaphore permits_{1};
};

// The awaitable of Lock::lock(). Not movable: co_await it where lock() returns it.
class Lock::LockAwaiter {
 public:
  explicit LockAwaiter(Lock& lock) noexcept : lock_(lock), acquire_(lock.permits_, 1) {}
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return acquire_.await_suspend(h);
  }
  LockGuard await_resume() { return LockGuard(lock_, acquire_.await_resume()); }

 private:
  Lock& lock_;
  Semaphore::AcquireAwaiter acquire_;
};

inline Lock::LockAwaiter Lock::lock() noexcept { return LockAwaiter(*this); }

}  // namespace weft
