// weft/queue.hpp: Queue<T> (SPEC §11): a bounded MPMC FIFO channel; push waits while full,
// pop while empty, both FIFO-fair, cancellable and timeout-safe (a cancelled push keeps its
// value, a cancelled pop takes nothing); close() semantics; try_push/try_pop; misuse.
//
// Ordering tests run on a 1-worker runtime (see lock_test.cpp): a task seen to have arrived,
// by a task that yielded meanwhile, has parked.
#include <weft/queue.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
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
using weft::Queue;
using weft::QueueClosed;
using weft::Runtime;
using weft::Task;
using weft::UsageError;

struct Log {
  std::atomic<int> arrived{0};
  std::atomic<int> done{0};
  std::atomic<int> closed{0};     // pushes that threw QueueClosed
  std::atomic<int> cancelled{0};  // pushes or pops that threw Cancelled
  std::vector<int> popped;        // in the order the poppers ran (1 worker: no race)
  int by_popper[8] = {-2, -2, -2, -2, -2, -2, -2, -2};  // what popper i got (-1: nullopt)
};

Task<void> push_one(Queue<int>& q, int value, Log& log) {
  log.arrived.fetch_add(1);
  try {
    co_await q.push(std::move(value));
  } catch (const QueueClosed&) {
    log.closed.fetch_add(1);
    co_return;
  } catch (const Cancelled&) {
    log.cancelled.fetch_add(1);
    throw;
  }
  log.done.fetch_add(1);
}

Task<void> pop_one(Queue<int>& q, Log& log, int id = 0) {
  log.arrived.fetch_add(1);
  std::optional<int> item;
  try {
    item = co_await q.pop();
  } catch (const Cancelled&) {
    log.cancelled.fetch_add(1);
    throw;
  }
  log.popped.push_back(item ? *item : -1);
  log.by_popper[id] = item ? *item : -1;
  log.done.fetch_add(1);
}

TEST(Queue, ItemsComeOutInTheOrderTheyWentIn) {
  Queue<int> q(4);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(q.try_push(i));
  EXPECT_EQ(q.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(q.try_pop(), std::optional<int>(i));
  EXPECT_EQ(q.try_pop(), std::nullopt);
  // Around the ring's end a few times.
  for (int i = 0; i < 10; ++i) {
    int a = 2 * i, b = 2 * i + 1;
    EXPECT_TRUE(q.try_push(a));
    EXPECT_TRUE(q.try_push(b));
    EXPECT_EQ(q.try_pop(), std::optional<int>(2 * i));
    EXPECT_EQ(q.try_pop(), std::optional<int>(2 * i + 1));
  }
  EXPECT_EQ(q.size(), 0u);
}

TEST(Queue, TryPushFailsWhenFullAndLeavesTheValueWithTheCaller) {
  Queue<std::unique_ptr<int>> q(1);
  auto a = std::make_unique<int>(1);
  auto b = std::make_unique<int>(2);
  EXPECT_TRUE(q.try_push(a));
  EXPECT_EQ(a, nullptr) << "the value was not moved in";
  EXPECT_FALSE(q.try_push(b));
  ASSERT_NE(b, nullptr) << "a failed try_push took the value";
  EXPECT_EQ(*b, 2);
  EXPECT_EQ(q.size(), 1u);
}

TEST(Queue, APushWaitsWhileFullAndEntersWhenAPopFreesASlotInArrivalOrder) {
  Queue<int> q(1);
  Log log;
  std::vector<int> out;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    int first = 100;
    EXPECT_TRUE(q.try_push(first));
    for (int i = 0; i < 4; ++i) {
      (void)tg.spawn(push_one(q, i, log));
      co_await yield_until([&] { return log.arrived.load() == i + 1; });
    }
    EXPECT_EQ(log.done.load(), 0) << "a push entered a full queue";
    int barging = 99;
    EXPECT_FALSE(q.try_push(barging)) << "try_push overtook parked pushers";
    for (int i = 0; i < 5; ++i) {
      std::optional<int> item = co_await q.pop();
      EXPECT_TRUE(item.has_value());
      out.push_back(item.value_or(-1));
      EXPECT_EQ(q.size(), i < 4 ? 1u : 0u) << "a pop did not pull the first parked pusher in";
    }
  });
  EXPECT_EQ(out, (std::vector<int>{100, 0, 1, 2, 3}));
  EXPECT_EQ(log.done.load(), 4);
}

TEST(Queue, APopWaitsWhileEmptyAndPushesServeParkedPoppersInArrivalOrder) {
  Queue<int> q(2);
  Log log;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    for (int i = 0; i < 3; ++i) {
      (void)tg.spawn(pop_one(q, log, i));
      co_await yield_until([&] { return log.arrived.load() == i + 1; });
    }
    for (int v : {10, 11, 12}) co_await q.push(std::move(v));
    EXPECT_EQ(q.size(), 0u) << "the items went to the queue, not to the parked poppers";
    co_await yield_until([&] { return log.done.load() == 3; });
  });
  EXPECT_EQ(log.by_popper[0], 10);
  EXPECT_EQ(log.by_popper[1], 11);
  EXPECT_EQ(log.by_popper[2], 12);
}

TEST(Queue, AQueueClosedWhileAConsumerWaitsWakesItWithNullopt) {
  Queue<int> q(2);
  Log log;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    (void)tg.spawn(pop_one(q, log));
    (void)tg.spawn(pop_one(q, log));
    co_await yield_until([&] { return log.arrived.load() == 2; });
    q.close();
    co_await yield_until([&] { return log.done.load() == 2; });
  });
  EXPECT_EQ(log.popped, (std::vector<int>{-1, -1}));
}

TEST(Queue, AQueueClosedWhileAProducerWaitsWakesItWithQueueClosedAndItKeepsItsValue) {
  Queue<std::unique_ptr<int>> q(1);
  std::unique_ptr<int> kept;
  bool threw = false;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    std::atomic<int> arrived{0};
    auto first = std::make_unique<int>(1);
    EXPECT_TRUE(q.try_push(first));
    (void)tg.spawn([](Queue<std::unique_ptr<int>>& q, std::unique_ptr<int>& kept, bool& threw,
                      std::atomic<int>& arrived) -> Task<void> {
      auto mine = std::make_unique<int>(2);
      arrived.fetch_add(1);
      try {
        co_await q.push(std::move(mine));
      } catch (const QueueClosed&) {
        threw = true;
      }
      kept = std::move(mine);
    }(q, kept, threw, arrived));
    co_await yield_until([&] { return arrived.load() == 1; });
    q.close();
    co_await yield_until([&] { return threw; });
  });
  EXPECT_TRUE(threw);
  ASSERT_NE(kept, nullptr) << "the closed push lost its value";
  EXPECT_EQ(*kept, 2);
  // The queued item is still there after close.
  std::optional<std::unique_ptr<int>> item = q.try_pop();
  ASSERT_TRUE(item.has_value());
  EXPECT_EQ(**item, 1);
}

TEST(Queue, AfterCloseQueuedItemsAreStillPoppedThenPopReturnsNullopt) {
  Queue<int> q(4);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(q.try_push(i));
  q.close();
  q.close();  // idempotent
  EXPECT_TRUE(q.closed());
  Runtime rt({.workers = 1});
  const std::vector<int> out = rt.block_on([](Queue<int>& q) -> Task<std::vector<int>> {
    std::vector<int> out;
    while (std::optional<int> item = co_await q.pop()) out.push_back(*item);
    co_return out;
  }(q));
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(q.try_pop(), std::nullopt);
}

TEST(Queue, PushAndTryPushAfterCloseThrowQueueClosedAndLeaveTheValue) {
  Queue<std::unique_ptr<int>> q(4);
  q.close();
  auto v = std::make_unique<int>(5);
  EXPECT_THROW(q.try_push(v), QueueClosed);
  ASSERT_NE(v, nullptr);
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on([](Queue<std::unique_ptr<int>>& q,
                              std::unique_ptr<int>& v) -> Task<void> {
                 co_await q.push(std::move(v));
               }(q, v)),
               QueueClosed);
  ASSERT_NE(v, nullptr) << "a push to a closed queue took the value";
  EXPECT_EQ(*v, 5);
}

TEST(Queue, ACancelledPushLeavesItsValueWithTheCallerAndLeavesTheQueue) {
  Queue<std::unique_ptr<int>> q(1);
  std::unique_ptr<int> kept;
  bool cancelled = false;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    std::atomic<int> arrived{0};
    CancellationSource source;
    auto first = std::make_unique<int>(1);
    EXPECT_TRUE(q.try_push(first));
    (void)tg.spawn([](Queue<std::unique_ptr<int>>& q, std::unique_ptr<int>& kept,
                      bool& cancelled, std::atomic<int>& arrived,
                      CancellationSource& source) -> Task<void> {
      auto mine = std::make_unique<int>(2);
      arrived.fetch_add(1);
      try {
        co_await weft::with_cancellation(
            source.token(), [](Queue<std::unique_ptr<int>>& q,
                               std::unique_ptr<int>& mine) -> Task<void> {
              co_await q.push(std::move(mine));
            }(q, mine));
      } catch (const Cancelled&) {
        cancelled = true;
      }
      kept = std::move(mine);
    }(q, kept, cancelled, arrived, source));
    co_await yield_until([&] { return arrived.load() == 1; });
    source.cancel();
    co_await yield_until([&] { return cancelled; });
    // The cancelled pusher left: a pop frees a slot that nobody takes.
    std::optional<std::unique_ptr<int>> item = q.try_pop();
    EXPECT_TRUE(item.has_value());
    EXPECT_EQ(q.size(), 0u) << "the cancelled push entered the queue";
  });
  ASSERT_NE(kept, nullptr) << "the cancelled push lost its value";
  EXPECT_EQ(*kept, 2);
}

TEST(Queue, ACancelledPopTakesNoItemAndTheNextPushGoesToTheQueue) {
  Queue<int> q(2);
  Log log;
  in_a_group(1, [&](weft::TaskGroup& tg) -> Task<void> {
    CancellationSource source;
    (void)tg.spawn([](Queue<int>& q, Log& log, CancellationSource& source) -> Task<void> {
      try {
        co_await weft::with_cancellation(source.token(), pop_one(q, log));
      } catch (const Cancelled&) {
      }
    }(q, log, source));
    co_await yield_until([&] { return log.arrived.load() == 1; });
    source.cancel();
    co_await yield_until([&] { return log.cancelled.load() == 1; });
    int v = 42;
    EXPECT_TRUE(q.try_push(v));
    EXPECT_EQ(q.size(), 1u) << "the item went to the cancelled popper";
    EXPECT_EQ(q.try_pop(), std::optional<int>(42));
  });
  EXPECT_TRUE(log.popped.empty());
}

TEST(Queue, APushThatTimesOutThrowsTimeoutErrorAndKeepsItsValue) {
  Queue<std::unique_ptr<int>> q(1);
  Runtime rt({.workers = 2});
  auto first = std::make_unique<int>(1);
  EXPECT_TRUE(q.try_push(first));
  auto v = std::make_unique<int>(2);
  EXPECT_THROW(rt.block_on(weft::timeout(10ms, [](Queue<std::unique_ptr<int>>& q,
                                                  std::unique_ptr<int>& v) -> Task<void> {
                 co_await q.push(std::move(v));
               }(q, v))),
               weft::TimeoutError);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 2);
  EXPECT_EQ(q.size(), 1u);
}

TEST(Queue, APopThatTimesOutThrowsTimeoutErrorAndTakesNothing) {
  Queue<int> q(1);
  Runtime rt({.workers = 2});
  EXPECT_THROW(rt.block_on(weft::timeout(10ms, [](Queue<int>& q) -> Task<std::optional<int>> {
                 co_return co_await q.pop();
               }(q))),
               weft::TimeoutError);
  int v = 3;
  EXPECT_TRUE(q.try_push(v));
  EXPECT_EQ(q.try_pop(), std::optional<int>(3)) << "the timed-out pop is still parked";
}

TEST(Queue, CancelledWinsOverQueueClosedAndOverAQueuedItem) {
  Queue<int> q(2);
  int v = 1;
  EXPECT_TRUE(q.try_push(v));
  q.close();
  Runtime rt({.workers = 1});
  int cancelled = 0;
  rt.block_on([](Queue<int>& q, int& cancelled) -> Task<void> {
    CancellationSource source;
    try {
      co_await weft::with_cancellation(source.token(), [](Queue<int>& q,
                                                          CancellationSource& source) -> Task<void> {
        source.cancel();  // the task runs on: its next suspension point sees it
        int w = 2;
        co_await q.push(std::move(w));  // closed, but cancelled first
      }(q, source));
    } catch (const Cancelled&) {
      ++cancelled;
    }
    CancellationSource source2;
    try {
      co_await weft::with_cancellation(source2.token(), [](Queue<int>& q,
                                                           CancellationSource& source) -> Task<void> {
        source.cancel();
        (void)co_await q.pop();  // an item is queued, but cancelled first
      }(q, source2));
    } catch (const Cancelled&) {
      ++cancelled;
    }
  }(q, cancelled));
  EXPECT_EQ(cancelled, 2);
  EXPECT_EQ(q.size(), 1u) << "a cancelled pop took the item";
}

TEST(Queue, AQueueOfCapacityZeroIsAUsageError) {
  EXPECT_THROW(Queue<int>(0), UsageError);
}

TEST(Queue, ItemsStillQueuedAreDestroyedWithTheQueue) {
  auto counted = std::make_shared<int>(0);
  {
    Queue<std::shared_ptr<int>> q(4);
    for (int i = 0; i < 3; ++i) {
      std::shared_ptr<int> copy = counted;
      EXPECT_TRUE(q.try_push(copy));
    }
    EXPECT_EQ(counted.use_count(), 4);
    (void)q.try_pop();
    EXPECT_EQ(counted.use_count(), 3);
  }
  EXPECT_EQ(counted.use_count(), 1) << "the queue leaked its items";
}

TEST(Queue, ProducersAndConsumersOnSeveralWorkersDeliverEveryItemOnce) {
  Queue<int> q(8);
  Runtime rt({.workers = 4});
  const int per_producer = weft_test::kSanitized ? 500 : 5000;
  std::vector<int> seen(static_cast<std::size_t>(per_producer) * 3, 0);
  rt.block_on([](Queue<int>& q, std::vector<int>& seen, int per_producer) -> Task<void> {
    std::atomic<int> producers_left{3};
    std::vector<Task<void>> tasks;
    for (int p = 0; p < 3; ++p)
      tasks.push_back([](Queue<int>& q, int p, int n, std::atomic<int>& left) -> Task<void> {
        for (int i = 0; i < n; ++i) co_await q.push(p * n + i);
        if (left.fetch_sub(1) == 1) q.close();
      }(q, p, per_producer, producers_left));
    for (int c = 0; c < 3; ++c)
      tasks.push_back([](Queue<int>& q, std::vector<int>& seen) -> Task<void> {
        std::vector<int> mine;
        while (std::optional<int> item = co_await q.pop()) mine.push_back(*item);
        for (int i : mine) std::atomic_ref<int>(seen[static_cast<std::size_t>(i)]).fetch_add(1);
      }(q, seen));
    co_await weft::safe_gather(std::move(tasks));
  }(q, seen, per_producer));
  for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "item " << i;
}

}  // namespace
