// weft/condition.hpp: Condition over a Lock (SPEC §11): wait releases the lock and parks,
// notify_one/notify_all wake in FIFO order, the lock is held again whenever wait ends, no
// spurious wake-ups, and cancelled or timed-out waits consume no notification.
//
// Ordering tests run on a 1-worker runtime (see lock_test.cpp): a task seen to have arrived,
// by a task that yielded meanwhile, has parked.
#include <weft/condition.hpp>
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
using weft::Condition;
using weft::Lock;
using weft::LockGuard;
using weft::Runtime;
using weft::Task;
using weft::UsageError;

struct Shared {
  Lock lock;
  Condition cond{lock};
  std::atomic<int> arrived{0};    // waiters about to wait
  std::atomic<int> woken{0};      // waits that returned
  std::atomic<int> cancelled{0};  // waits that threw Cancelled
  std::vector<int> order;         // guarded by lock
  bool held_after_wait = true;    // guarded by lock
};

// Takes the lock, waits once, notes its id (with the lock held), and unlocks.
Task<void> wait_once(Shared& s, int id) {
  LockGuard g = co_await s.lock.lock();
  s.arrived.fetch_add(1);
  bool cancelled = false;
  try {
    co_await s.cond.wait(g);
  } catch (const Cancelled&) {
    cancelled = true;
  }
  if (!g.owns_lock() || !s.lock.locked()) s.held_after_wait = false;
  if (cancelled) {
    s.cancelled.fetch_add(1);
    throw Cancelled{};
  }
  s.order.push_back(id);
  s.woken.fetch_add(1);
}

// wait_once under a CancellationSource; swallows nothing (the caller's group sees Cancelled).
Task<void> wait_once_cancellable(Shared& s, int id, CancellationSource& source) {
  try {
    co_await weft::with_cancellation(source.token(), wait_once(s, id));
  } catch (const Cancelled&) {
    // The source's cancellation, not this task's: ending normally is fine.
  }
}

TEST(Condition, AWaitReleasesTheLockAndNotifyOneWakesItWithTheLockHeldAgain) {
  Shared s;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    (void)tg.spawn(wait_once(s, 7));
    co_await yield_until([&] { return s.arrived.load() == 1; });
    EXPECT_FALSE(s.lock.locked()) << "wait() did not release the lock";
    LockGuard g = co_await s.lock.lock();
    s.cond.notify_one();
    co_await weft::this_task::yield();
    EXPECT_EQ(s.woken.load(), 0) << "the waiter returned without the lock";
  });
  EXPECT_EQ(s.order, std::vector<int>{7});
  EXPECT_TRUE(s.held_after_wait);
  EXPECT_FALSE(s.lock.locked());
}

TEST(Condition, NotifyOneWakesWaitersInFifoOrder) {
  Shared s;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    for (int i = 0; i < 5; ++i) {
      (void)tg.spawn(wait_once(s, i));
      co_await yield_until([&] { return s.arrived.load() == i + 1; });
    }
    for (int i = 0; i < 5; ++i) {
      s.cond.notify_one();
      co_await yield_until([&] { return s.woken.load() == i + 1; });
    }
  });
  EXPECT_EQ(s.order, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(s.held_after_wait);
}

TEST(Condition, NotifyAllWakesEveryParkedWaiter) {
  Shared s;
  in_a_group(2, [&](weft::TaskGroup& tg) -> Task<void> {
    for (int i = 0; i < 8; ++i) (void)tg.spawn(wait_once(s, i));
    co_await yield_until([&] { return s.arrived.load() == 8; });
    // Every waiter noted its arrival under the lock, then parked before unlocking it.
    LockGuard g = co_await s.lock.lock();
    s.cond.notify_all();
  });
  EXPECT_EQ(s.woken.load(), 8);
  EXPECT_EQ(s.order.size(), 8u);
  EXPECT_TRUE(s.held_after_wait);
}

TEST(Condition, ANotifyWithNoWaiterIsNotRememberedSoThereIsNoSpuriousWakeUp) {
  Shared s;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
  s.cond.notify_one();
  s.cond.notify_all();
    (void)tg.spawn(wait_once(s, 1));
    co_await yield_until([&] { return s.arrived.load() == 1; });
    for (int i = 0; i < 10; ++i) co_await weft::this_task::yield();
    EXPECT_EQ(s.woken.load(), 0) << "a wait returned without a notify";
    s.cond.notify_one();
  });
  EXPECT_EQ(s.woken.load(), 1);
}

TEST(Condition, ACancelledWaitTakesTheLockBackBeforeItThrowsCancelled) {
  Shared s;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
  CancellationSource source;
    (void)tg.spawn(wait_once_cancellable(s, 0, source));
    co_await yield_until([&] { return s.arrived.load() == 1; });
    LockGuard g = co_await s.lock.lock();
    source.cancel();  // wakes the waiter, which now waits for our lock
    for (int i = 0; i < 10; ++i) co_await weft::this_task::yield();
    EXPECT_EQ(s.cancelled.load(), 0) << "the cancelled wait ended without the lock";
    g.unlock();
    co_await yield_until([&] { return s.cancelled.load() == 1; });
  });
  EXPECT_EQ(s.cancelled.load(), 1);
  EXPECT_TRUE(s.held_after_wait);
  EXPECT_FALSE(s.lock.locked());
}

TEST(Condition, ACancelledWaiterConsumesNoNotificationTheNextWaiterGetsIt) {
  Shared s;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
  CancellationSource source;
    (void)tg.spawn(wait_once_cancellable(s, 0, source));
    co_await yield_until([&] { return s.arrived.load() == 1; });
    (void)tg.spawn(wait_once(s, 1));
    co_await yield_until([&] { return s.arrived.load() == 2; });
    source.cancel();
    s.cond.notify_one();  // must go to waiter 1
    co_await yield_until([&] { return s.cancelled.load() == 1 && s.woken.load() == 1; });
  });
  EXPECT_EQ(s.order, std::vector<int>{1});
  EXPECT_TRUE(s.held_after_wait);
}

TEST(Condition, AWaitThatTimesOutThrowsTimeoutErrorWithTheLockHeld) {
  Shared s;
  Runtime rt({.workers = 2});
  bool held_in_catch = false;
  rt.block_on([](Shared& s, bool& held_in_catch) -> Task<void> {
    LockGuard g = co_await s.lock.lock();
    try {
      co_await weft::timeout(10ms, s.cond.wait(g));
    } catch (const weft::TimeoutError&) {
      held_in_catch = g.owns_lock() && s.lock.locked();
    }
  }(s, held_in_catch));
  EXPECT_TRUE(held_in_catch);
  EXPECT_FALSE(s.lock.locked());
}

TEST(Condition, AWaitInAnAlreadyCancelledTaskThrowsCancelledAndKeepsTheLock) {
  Shared s;
  Runtime rt({.workers = 1});
  bool held = false;
  rt.block_on([](Shared& s, bool& held) -> Task<void> {
    CancellationSource source;
    try {
      co_await weft::with_cancellation(source.token(), [](Shared& s, CancellationSource& source,
                                                          bool& held) -> Task<void> {
        LockGuard g = co_await s.lock.lock();
        source.cancel();
        try {
          co_await s.cond.wait(g);
        } catch (const Cancelled&) {
          held = g.owns_lock() && s.lock.locked();
          throw;
        }
      }(s, source, held));
    } catch (const Cancelled&) {
    }
  }(s, held));
  EXPECT_TRUE(held);
  EXPECT_FALSE(s.lock.locked());
}

TEST(Condition, WaitWithAGuardOfAnotherLockOrWithoutTheLockIsAUsageError) {
  Shared s;
  Lock other;
  std::optional<LockGuard> foreign = other.try_lock();
  ASSERT_TRUE(foreign.has_value());
  EXPECT_THROW((void)s.cond.wait(*foreign), UsageError);
  std::optional<LockGuard> mine = s.lock.try_lock();
  ASSERT_TRUE(mine.has_value());
  mine->unlock();
  EXPECT_THROW((void)s.cond.wait(*mine), UsageError);
  LockGuard empty;
  EXPECT_THROW((void)s.cond.wait(empty), UsageError);
  EXPECT_THROW((void)s.cond.wait(empty, [] { return true; }), UsageError);
}

TEST(Condition, WaitWithAPredicateReturnsOnceThePredicateHoldsWithTheLockHeld) {
  Shared s;
  Runtime rt({.workers = 2});
  int value = 0;  // guarded by s.lock
  rt.block_on([](Shared& s, int& value) -> Task<void> {
    co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
      (void)tg.spawn([](Shared& s, int& value) -> Task<void> {
        LockGuard g = co_await s.lock.lock();
        s.arrived.fetch_add(1);
        co_await s.cond.wait(g, [&] { return value >= 3; });
        EXPECT_TRUE(g.owns_lock());
        EXPECT_GE(value, 3);
        s.woken.fetch_add(1);
      }(s, value));
      for (int i = 0; i < 3; ++i) {
        co_await yield_until([&] { return s.arrived.load() == 1; });
        LockGuard g = co_await s.lock.lock();
        ++value;
        s.cond.notify_all();
      }
    });
  }(s, value));
  EXPECT_EQ(s.woken.load(), 1);
}

}  // namespace
