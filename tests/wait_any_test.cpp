// weft/wait_any.hpp: the first task to finish wins; the rest are cancelled and awaited
// (SPEC §8).
#include <weft/wait_any.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <vector>

#include "test_support.hpp"

namespace {

using weft::Cancelled;
using weft::Event;
using weft::Runtime;
using weft::Task;
using weft::UsageError;
using weft::WaitAny;
using weft_test::TaskError;

struct Track {
  std::atomic<int> started{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> finished{0};
};

// Parks on `gate` (forever unless set), counting how it ended.
Task<int> parked(Event& gate, Track& t, int value) {
  t.started.fetch_add(1);
  try {
    co_await gate.wait();
  } catch (const Cancelled&) {
    t.cancelled.fetch_add(1);
    throw;
  }
  t.finished.fetch_add(1);
  co_return value;
}

Task<int> quick(int value) { co_return value; }
Task<int> failing() {
  throw TaskError(1);
  co_return 0;
}

TEST(WaitAny, ReturnsTheFirstTaskToFinishAndCancelsAndAwaitsTheRest) {
  Runtime rt({.workers = 2});
  Event never;
  Track t;
  WaitAny<int> w = rt.block_on([](Event& never, Track& t) -> Task<WaitAny<int>> {
    co_return co_await weft::wait_any(parked(never, t, 1), quick(2), parked(never, t, 3));
  }(never, t));
  EXPECT_EQ(w.index, 1u);
  EXPECT_EQ(w.outcome.value(), 2);
  // Both parked tasks were cancelled and had ended before wait_any returned.
  EXPECT_EQ(t.cancelled.load(), t.started.load());
  EXPECT_EQ(t.finished.load(), 0);
}

TEST(WaitAny, AFailureIsAFinishAndIsReturnedAsTheWinnersOutcome) {
  Runtime rt({.workers = 2});
  Event never;
  Track t;
  WaitAny<int> w = rt.block_on([](Event& never, Track& t) -> Task<WaitAny<int>> {
    co_return co_await weft::wait_any(parked(never, t, 1), failing());
  }(never, t));
  EXPECT_EQ(w.index, 1u);
  ASSERT_TRUE(w.outcome.has_exception());
  EXPECT_THROW(w.outcome.value(), TaskError);
  EXPECT_EQ(t.cancelled.load(), t.started.load());
}

TEST(WaitAny, TheVectorFormReportsTheWinnersIndex) {
  Runtime rt({.workers = 2});
  Event never;
  Track t;
  WaitAny<int> w = rt.block_on([](Event& never, Track& t) -> Task<WaitAny<int>> {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 5; ++i) tasks.push_back(parked(never, t, i));
    tasks.push_back(quick(42));
    for (int i = 0; i < 5; ++i) tasks.push_back(parked(never, t, i));
    co_return co_await weft::wait_any(std::move(tasks));
  }(never, t));
  EXPECT_EQ(w.index, 5u);
  EXPECT_EQ(w.outcome.value(), 42);
  EXPECT_EQ(t.cancelled.load(), t.started.load());
}

TEST(WaitAny, VoidTasksReturnAMonostateOutcome) {
  Runtime rt({.workers = 1});
  WaitAny<void> w = rt.block_on([]() -> Task<WaitAny<void>> {
    co_return co_await weft::wait_any([]() -> Task<void> { co_return; }());
  }());
  EXPECT_EQ(w.index, 0u);
  EXPECT_TRUE(w.outcome.has_value());
}

TEST(WaitAny, ACancelledCallerCancelsEveryTaskAndGetsCancelled) {
  Runtime rt({.workers = 2});
  Event never;
  Track t;
  weft::CancellationSource source;
  auto f = rt.submit(weft::with_cancellation(
      source.token(), [](Event& never, Track& t) -> Task<WaitAny<int>> {
        co_return co_await weft::wait_any(parked(never, t, 1), parked(never, t, 2));
      }(never, t)));
  ASSERT_TRUE(weft_test::spin_until([&] { return t.started.load() == 2; }));
  source.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(t.cancelled.load(), 2);
}

TEST(WaitAny, NoTasksIsAUsageError) {
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on(weft::wait_any(std::vector<Task<int>>{})), UsageError);
}

TEST(WaitAny, AnAlreadyStartedOrEmptyTaskIsAUsageError) {
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
                 Task<int> moved = quick(1);
                 Task<int> keep = std::move(moved);
                 std::vector<Task<int>> tasks;
                 tasks.push_back(std::move(moved));
                 (void)co_await weft::wait_any(std::move(tasks));
               }()),
               UsageError);
}

}  // namespace
