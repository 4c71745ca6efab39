// weft/sleep.hpp: sleep_for and sleep_until (SPEC §6): how long they sleep, that a sleeper holds
// no worker, cancellation (prompt wake-up, the timer removed), zero, negative and huge
// durations, runtime shutdown, misuse.
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <cstdint>
#include <exception>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using weft_test::Eager;
using weft_test::HangGuard;
using weft_test::Rng;
using weft_test::spin_until;

using weft::Cancelled;
using weft::CancellationSource;
using weft::Duration;
using weft::Future;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;
using weft::UsageError;

std::uint64_t timers_armed(const Runtime& rt) { return rt.stats().timers_armed; }

// Sleeps for `d` under `source`; true when it ended by Cancelled.
Task<bool> sleep_until_cancelled(Duration d, CancellationSource source) {
  try {
    co_await weft::with_cancellation(source.token(), weft::sleep_for(d));
  } catch (const Cancelled&) {
    co_return true;
  }
  co_return false;
}

// ----------------------------------------------------------------------------------------------
// how long

TEST(Sleep, SleepForWaitsAtLeastTheGivenDuration) {
  Runtime rt({.workers = 2});
  const auto start = Clock::now();
  rt.block_on(weft::sleep_for(50ms));
  EXPECT_GE(Clock::now() - start, 50ms);
}

TEST(Sleep, SleepForAcceptsAnyDurationType) {
  Runtime rt({.workers = 1});
  const auto start = Clock::now();
  rt.block_on([]() -> Task<void> {
    co_await weft::sleep_for(std::chrono::microseconds(1500));
    co_await weft::sleep_for(std::chrono::duration<double, std::milli>(1.5));
  }());
  EXPECT_GE(Clock::now() - start, 3ms);
}

TEST(Sleep, SleepUntilResumesAtOrAfterTheGivenTime) {
  Runtime rt({.workers = 2});
  const auto until = Clock::now() + 30ms;
  const Clock::time_point woke = rt.block_on([](Clock::time_point t) -> Task<Clock::time_point> {
    co_await weft::sleep_until(t);
    co_return Clock::now();
  }(until));
  EXPECT_GE(woke, until);
}

TEST(Sleep, TheDurationCountsFromWhenTheSleepStartsNotFromWhenItIsCreated) {
  Runtime rt({.workers = 1});
  rt.block_on([]() -> Task<void> {
    Task<void> nap = weft::sleep_for(40ms);
    co_await weft::sleep_for(40ms);
    const auto start = Clock::now();
    co_await std::move(nap);
    EXPECT_GE(Clock::now() - start, 40ms);
  }());
}

TEST(Sleep, SleepersOnOneWorkerWakeInDeadlineOrder) {
  // The timer thread fires in deadline order and one worker runs what it injects in order.
  // Absolute deadlines, far enough ahead that every sleeper has parked before the first one
  // (the sleepers start one after another, and a deadline already past does not park).
  Runtime rt({.workers = 1});
  std::vector<int> order;
  rt.block_on([](std::vector<int>& order) -> Task<void> {
    const auto base = Clock::now() + 200ms;
    auto sleeper = [&order, base](int ms) -> Task<void> {
      co_await weft::sleep_until(base + std::chrono::milliseconds(ms));
      order.push_back(ms);
    };
    std::vector<Task<void>> sleepers;
    for (int ms : {9, 3, 15, 1, 12, 6}) sleepers.push_back(sleeper(ms));
    co_await safe_gather(std::move(sleepers));
  }(order));
  EXPECT_EQ(order, (std::vector<int>{1, 3, 6, 9, 12, 15}));
}

TEST(Sleep, ManyConcurrentSleepersAllWakeAndLeaveNoTimerBehind) {
  Runtime rt({.workers = 2});
  constexpr int kSleepers = 2000;
  std::atomic<int> woke{0};
  rt.block_on([](std::atomic<int>& woke) -> Task<void> {
    auto sleeper = [&woke](int i) -> Task<void> {
      co_await weft::sleep_for(std::chrono::microseconds(100 * (i % 50)));
      woke.fetch_add(1);
    };
    std::vector<Task<void>> sleepers;
    for (int i = 0; i < kSleepers; ++i) sleepers.push_back(sleeper(i));
    co_await safe_gather(std::move(sleepers));
  }(woke));
  EXPECT_EQ(woke.load(), kSleepers);
  EXPECT_EQ(timers_armed(rt), 0u);
}

// ----------------------------------------------------------------------------------------------
// a sleeping task holds no worker

TEST(Sleep, ASleepingTaskHoldsNoWorkerThread) {
  Runtime rt({.workers = 1});
  CancellationSource source;
  Future<bool> sleeper = rt.submit(sleep_until_cancelled(1h, source));
  ASSERT_TRUE(spin_until([&] { return timers_armed(rt) == 1; }));
  // The only worker is free to run everything else meanwhile.
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(rt.block_on([](int v) -> Task<int> { co_return v; }(i)), i);
  EXPECT_FALSE(sleeper.wait_for(0s));
  source.cancel();
  EXPECT_TRUE(sleeper.get());
}

TEST(Sleep, SleepForZeroLetsOtherReadyTasksRun) {
  // One worker: the flag can only be set if sleep_for(0) yields to the other task.
  Runtime rt({.workers = 1});
  const bool saw_flag = rt.block_on([]() -> Task<bool> {
    std::atomic<bool> flag{false};
    bool saw = false;
    auto waiter = [&]() -> Task<void> {
      HangGuard guard;
      while (!flag.load() && !guard.expired()) co_await weft::sleep_for(0s);
      saw = flag.load();
    };
    auto setter = [&]() -> Task<void> {
      flag.store(true);
      co_return;
    };
    co_await safe_gather(waiter(), setter());
    co_return saw;
  }());
  EXPECT_TRUE(saw_flag);
  EXPECT_EQ(timers_armed(rt), 0u);
}

TEST(Sleep, ASleepUntilATimeAlreadyPastReturnsWithoutArmingATimer) {
  Runtime rt({.workers = 1});
  rt.block_on([](const Runtime& rt) -> Task<void> {
    co_await weft::sleep_until(Clock::now() - 1s);
    co_await weft::sleep_until(Clock::time_point::min());
    co_await weft::sleep_for(-5s);
    co_await weft::sleep_for(Duration::min());
    EXPECT_EQ(rt.stats().timers_armed, 0u);
  }(rt));
}

// ----------------------------------------------------------------------------------------------
// cancellation

TEST(Sleep, CancellingASleepingTaskWakesItAtOnceAndRemovesItsTimer) {
  Runtime rt({.workers = 2});
  CancellationSource source;
  Future<bool> sleeper = rt.submit(sleep_until_cancelled(1h, source));
  ASSERT_TRUE(spin_until([&] { return timers_armed(rt) == 1; }));
  source.cancel();
  EXPECT_TRUE(sleeper.get());
  EXPECT_EQ(timers_armed(rt), 0u);
}

TEST(Sleep, FutureCancelWakesASleepingRootTask) {
  Runtime rt({.workers = 2});
  Future<void> sleeper = rt.submit(weft::sleep_for(1h));
  ASSERT_TRUE(spin_until([&] { return timers_armed(rt) == 1; }));
  sleeper.cancel();
  EXPECT_THROW(sleeper.get(), Cancelled);
  EXPECT_EQ(timers_armed(rt), 0u);
}

TEST(Sleep, ASleepInACancelledTaskThrowsCancelledWithoutSleeping) {
  Runtime rt({.workers = 1});
  CancellationSource source;
  source.cancel();
  for (Duration d : {Duration(1h), Duration::zero(), Duration(-1s), Duration::max()})
    EXPECT_TRUE(rt.block_on(sleep_until_cancelled(d, source)));
  EXPECT_EQ(timers_armed(rt), 0u);
}

TEST(Sleep, ARepeatedSleepOfZeroThrowsCancelledOnceAnotherTaskCancelsIt) {
  // One worker: the canceller can only run because sleep_for(0) yields.
  Runtime rt({.workers = 1});
  const bool cancelled = rt.block_on([]() -> Task<bool> {
    CancellationSource source;
    auto spinner = [&]() -> Task<bool> {
      HangGuard guard;
      try {
        while (!guard.expired())
          co_await weft::with_cancellation(source.token(), weft::sleep_for(0s));
      } catch (const Cancelled&) {
        co_return true;
      }
      co_return false;
    };
    auto canceller = [&]() -> Task<bool> {
      source.cancel();
      co_return false;
    };
    auto [spun, ignored] = co_await safe_gather(spinner(), canceller());
    (void)ignored;
    co_return spun;
  }());
  EXPECT_TRUE(cancelled);
}

TEST(Sleep, ASleepThatEndsNormallyIsNotDisturbedByALaterCancellation) {
  Runtime rt({.workers = 2});
  CancellationSource source;
  EXPECT_FALSE(rt.block_on(sleep_until_cancelled(1ms, source)));
  source.cancel();  // after the fact: nothing left to wake
  EXPECT_EQ(timers_armed(rt), 0u);
}

TEST(Sleep, SleepsRacingWithTheirCancellationEndExactlyOnce) {
  // Deadlines of a few microseconds against a cancellation from another thread at about the
  // same time: each sleep ends once, either way, and leaves no timer.
  Runtime rt({.workers = 2});
  Rng rng{0x5eed};
  const int rounds = weft_test::kSanitized ? 300 : 3000;
  int cancelled = 0;
  for (int i = 0; i < rounds; ++i) {
    CancellationSource source;
    const auto d = std::chrono::microseconds(rng.below(60));
    Future<bool> sleeper = rt.submit(sleep_until_cancelled(d, source));
    const auto spin_until_time = Clock::now() + std::chrono::microseconds(rng.below(60));
    while (Clock::now() < spin_until_time) {
    }
    source.cancel();
    cancelled += sleeper.get() ? 1 : 0;
  }
  EXPECT_EQ(timers_armed(rt), 0u);
  RecordProperty("cancelled", cancelled);
}

// ----------------------------------------------------------------------------------------------
// huge durations

TEST(Sleep, HugeDurationsSleepUntilCancelledWithoutOverflow) {
  Runtime rt({.workers = 2});
  for (int which = 0; which < 4; ++which) {
    CancellationSource source;
    auto sleeper = [](int which, CancellationSource source) -> Task<bool> {
      try {
        Task<void> nap = which == 0   ? weft::sleep_for(Duration::max())
                         : which == 1 ? weft::sleep_for(std::chrono::hours::max())
                         : which == 2 ? weft::sleep_for(std::chrono::duration<double>(1e300))
                                      : weft::sleep_until(Clock::time_point::max());
        co_await weft::with_cancellation(source.token(), std::move(nap));
      } catch (const Cancelled&) {
        co_return true;
      }
      co_return false;
    };
    Future<bool> f = rt.submit(sleeper(which, source));
    ASSERT_TRUE(spin_until([&] { return timers_armed(rt) == 1; })) << which;
    EXPECT_FALSE(f.wait_for(5ms)) << which;
    source.cancel();
    EXPECT_TRUE(f.get()) << which;
    EXPECT_EQ(timers_armed(rt), 0u) << which;
  }
}

// ----------------------------------------------------------------------------------------------
// shutdown and misuse

TEST(Sleep, ANaNDurationIsAUsageErrorNotUndefinedBehaviour) {
  // Converting NaN to the clock's integer ticks is undefined (UBSan reports it).
  const auto nan = std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN());
  EXPECT_THROW((void)weft::sleep_for(nan), UsageError);
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on([](std::chrono::duration<double> d) -> Task<void> {
    co_await weft::sleep_for(d);
  }(nan)), UsageError);
  EXPECT_EQ(timers_armed(rt), 0u);
}

TEST(Sleep, DestroyingTheRuntimeWakesEverySleeperWithCancelled) {
  std::vector<Future<void>> sleepers;
  {
    Runtime rt({.workers = 2});
    for (int i = 0; i < 100; ++i) sleepers.push_back(rt.submit(weft::sleep_for(1h)));
    ASSERT_TRUE(spin_until([&] { return timers_armed(rt) == 100; }));
  }
  for (Future<void>& f : sleepers) EXPECT_THROW(f.get(), Cancelled);
}

Eager sleep_outside_a_runtime(std::exception_ptr& error) {
  try {
    co_await weft::sleep_for(1ms);
  } catch (...) {
    error = std::current_exception();
  }
}

TEST(Sleep, SleepingOutsideARuntimeIsAUsageError) {
  std::exception_ptr error;
  sleep_outside_a_runtime(error);
  ASSERT_TRUE(error);
  EXPECT_THROW(std::rethrow_exception(error), UsageError);
}

}  // namespace
