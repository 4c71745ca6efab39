// weft/lock.hpp: Lock and LockGuard (SPEC §11): FIFO-fair, cancellable and timeout-safe
// mutual exclusion for tasks, try_lock, RAII guards.
//
// Tests that depend on the order in which waiters queue run on a 1-worker runtime: a task
// runs from its "arrived" store to its park without interruption there, so a waiter seen to
// have arrived (by a task that yielded meanwhile) is queued.
#include <weft/lock.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "test_support.hpp"
#include "waiting_support.hpp"

namespace {

using namespace std::chrono_literals;

using weft_test::in_a_group;
using weft_test::yield_until;

using weft::CancellationSource;
using weft::Cancelled;
using weft::Lock;
using weft::LockGuard;
using weft::Runtime;
using weft::Task;

// Takes the lock, appends `id` to `order` while holding it, and unlocks.
Task<void> lock_and_note(Lock& lock, std::vector<int>& order, std::atomic<int>& arrived,
                         int id) {
  arrived.fetch_add(1);
  LockGuard g = co_await lock.lock();
  order.push_back(id);  // one holder at a time: no race
}

TEST(Lock, ANewLockIsFreeAndTryLockTakesIt) {
  Lock lock;
  EXPECT_FALSE(lock.locked());
  std::optional<LockGuard> g = lock.try_lock();
  ASSERT_TRUE(g.has_value());
  EXPECT_TRUE(g->owns_lock());
  EXPECT_TRUE(lock.locked());
  EXPECT_FALSE(lock.try_lock().has_value()) << "a held lock was taken twice";
  g.reset();
  EXPECT_FALSE(lock.locked()) << "the guard's destructor did not unlock";
}

TEST(Lock, LockAndUnlockInALoopLeaveTheLockFree) {
  Lock lock;
  Runtime rt({.workers = 1});
  const int rounds = rt.block_on([](Lock& lock) -> Task<int> {
    int rounds = 0;
    for (int i = 0; i < 100'000; ++i) {
      LockGuard g = co_await lock.lock();
      ++rounds;
    }
    co_return rounds;
  }(lock));
  EXPECT_EQ(rounds, 100'000);
  EXPECT_FALSE(lock.locked());
}

TEST(Lock, GuardUnlockIsIdempotentAndAMovedGuardUnlocksOnceByItsNewOwner) {
  Lock lock;
  std::optional<LockGuard> g = lock.try_lock();
  ASSERT_TRUE(g.has_value());
  LockGuard moved = std::move(*g);
  EXPECT_FALSE(g->owns_lock());
  EXPECT_TRUE(moved.owns_lock());
  g.reset();
  EXPECT_TRUE(lock.locked()) << "the moved-from guard unlocked";
  moved.unlock();
  EXPECT_FALSE(lock.locked());
  moved.unlock();  // does nothing
  EXPECT_FALSE(moved.owns_lock());
  EXPECT_FALSE(lock.locked());
}

TEST(Lock, LockIsFifoFairParkedTasksGetItInArrivalOrder) {
  Lock lock;
  Runtime rt({.workers = 1});
  const std::vector<int> order = rt.block_on([](Lock& lock) -> Task<std::vector<int>> {
    std::vector<int> order;
    std::atomic<int> arrived{0};
    LockGuard held = co_await lock.lock();
    co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < 6; ++i) {
        (void)tg.spawn(lock_and_note(lock, order, arrived, i));
        co_await yield_until([&] { return arrived.load() == i + 1; });
      }
      held.unlock();
    });
    co_return order;
  }(lock));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_FALSE(lock.locked());
}

TEST(Lock, AnUnlockHandsTheLockToTheFirstWaiterSoTryLockCannotBargeIn) {
  Lock lock;
  std::vector<int> order;
  std::atomic<int> arrived{0};
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    std::optional<LockGuard> held = lock.try_lock();
    (void)tg.spawn(lock_and_note(lock, order, arrived, 1));
    co_await yield_until([&] { return arrived.load() == 1; });
    held.reset();  // hands the lock to the parked task, which has not run yet
    EXPECT_TRUE(lock.locked());
    EXPECT_FALSE(lock.try_lock().has_value()) << "try_lock overtook a parked waiter";
  });
  EXPECT_EQ(order, std::vector<int>{1});
  EXPECT_FALSE(lock.locked());
}

TEST(Lock, ALockInAnAlreadyCancelledTaskThrowsCancelledEvenWhenTheLockIsFree) {
  Lock lock;
  Runtime rt({.workers = 1});
  rt.block_on([](Lock& lock) -> Task<void> {
    CancellationSource source;
    bool threw = false;
    try {
      co_await weft::with_cancellation(source.token(), [](Lock& lock, CancellationSource& source)
                                                           -> Task<void> {
        source.cancel();
        LockGuard g = co_await lock.lock();
        ADD_FAILURE() << "took the lock in a cancelled task";
      }(lock, source));
    } catch (const Cancelled&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
  }(lock));
  EXPECT_FALSE(lock.locked());
}

TEST(Lock, AParkedLockIsWokenByItsCancellationAndTheLockGoesToTheNextWaiter) {
  Lock lock;
  std::vector<int> order;
  std::atomic<int> arrived{0};
  std::atomic<int> cancelled{0};
  CancellationSource source;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    std::optional<LockGuard> held = lock.try_lock();
    (void)tg.spawn([](Lock& lock, std::vector<int>& order, std::atomic<int>& arrived,
                      std::atomic<int>& cancelled, CancellationSource& source) -> Task<void> {
      try {
        co_await weft::with_cancellation(source.token(), lock_and_note(lock, order, arrived, 0));
      } catch (const Cancelled&) {
        cancelled.fetch_add(1);
      }
    }(lock, order, arrived, cancelled, source));
    co_await yield_until([&] { return arrived.load() == 1; });
    (void)tg.spawn(lock_and_note(lock, order, arrived, 1));
    co_await yield_until([&] { return arrived.load() == 2; });
    source.cancel();  // wakes task 0 by itself
    co_await yield_until([&] { return cancelled.load() == 1; });
    EXPECT_TRUE(lock.locked()) << "the cancelled waiter took or freed the lock";
    held.reset();  // goes to task 1, not to the cancelled task 0
  });
  EXPECT_EQ(order, std::vector<int>{1});
  EXPECT_FALSE(lock.locked());
}

TEST(Lock, ALockThatTimesOutThrowsTimeoutErrorAndNeverHoldsTheLock) {
  Lock lock;
  Runtime rt({.workers = 2});
  std::optional<LockGuard> held = lock.try_lock();
  std::atomic<int> arrived{0};
  std::vector<int> order;
  weft::Future<void> f =
      rt.submit(weft::timeout(20ms, lock_and_note(lock, order, arrived, 0)));
  EXPECT_THROW(f.get(), weft::TimeoutError);
  EXPECT_TRUE(lock.locked());
  held.reset();
  EXPECT_FALSE(lock.locked()) << "the unlock went to the timed-out waiter";
  EXPECT_TRUE(lock.try_lock().has_value()) << "the timed-out waiter is still queued";
  EXPECT_TRUE(order.empty());
}

TEST(Lock, ALockGivesMutualExclusionAcrossWorkersAndSuspensions) {
  Lock lock;
  Runtime rt({.workers = 4});
  long counter = 0;  // guarded by `lock`, not atomic: TSan checks the exclusion
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  const int tasks = 16;
  const int rounds = weft_test::kSanitized ? 200 : 2000;
  rt.block_on([&]() -> Task<void> {
    std::vector<Task<void>> loops;
    for (int t = 0; t < tasks; ++t)
      loops.push_back([](Lock& lock, long& counter, std::atomic<int>& inside,
                         std::atomic<int>& most_inside, int rounds) -> Task<void> {
        for (int i = 0; i < rounds; ++i) {
          LockGuard g = co_await lock.lock();
          const int now = inside.fetch_add(1) + 1;
          int seen = most_inside.load();
          while (now > seen && !most_inside.compare_exchange_weak(seen, now)) {
          }
          const long before = counter;
          if (i % 8 == 0) co_await weft::this_task::yield();  // held across a suspension
          counter = before + 1;
          inside.fetch_sub(1);
        }
      }(lock, counter, inside, most_inside, rounds));
    co_await weft::safe_gather(std::move(loops));
  }());
  EXPECT_EQ(most_inside.load(), 1);
  EXPECT_EQ(counter, static_cast<long>(tasks) * rounds);
  EXPECT_FALSE(lock.locked());
}

TEST(Lock, AGuardMovedToAnotherTaskUnlocksThere) {
  Lock lock;
  Runtime rt({.workers = 2});
  rt.block_on([](Lock& lock) -> Task<void> {
    LockGuard g = co_await lock.lock();
    co_await [](LockGuard g) -> Task<void> {
      EXPECT_TRUE(g.owns_lock());
      co_return;  // unlocks here
    }(std::move(g));
    EXPECT_FALSE(lock.locked());
    LockGuard again = co_await lock.lock();
    EXPECT_TRUE(again.owns_lock());
  }(lock));
  EXPECT_FALSE(lock.locked());
}

}  // namespace
