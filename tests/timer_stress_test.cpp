// Stress for timers (SPEC §6): 100k concurrent sleepers; 100k sleepers cancelled in bulk (all
// resume, the timer heap is empty afterwards); timeouts, timed gathers and cancellations racing
// with the tasks they time. Sanitizer builds run a tenth of the work.
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

using weft_test::kSanitized;
using weft_test::Rng;
using weft_test::spin_until;

using weft::Cancelled;
using weft::CancellationSource;
using weft::Duration;
using weft::Future;
using weft::GatherOptions;
using weft::Outcome;
using weft::return_exceptions;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;
using weft::TaskGroup;
using weft::TimeoutError;

constexpr int kSleepers = kSanitized ? 10'000 : 100'000;

struct Counts {
  std::atomic<int> started{0};
  std::atomic<int> woke{0};
  std::atomic<int> cancelled{0};
};

Task<void> sleeper(Duration d, Counts& c) {
  c.started.fetch_add(1, std::memory_order_relaxed);
  try {
    co_await weft::sleep_for(d);
  } catch (const Cancelled&) {
    c.cancelled.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  c.woke.fetch_add(1, std::memory_order_relaxed);
}

TEST(TimerStress, HundredThousandConcurrentSleepersAllWakeAndLeaveNoTimerArmed) {
  Runtime rt({.workers = 2});
  Counts c;
  rt.block_on([](Counts& c) -> Task<void> {
    Rng rng{1};
    std::vector<Task<void>> tasks;
    tasks.reserve(kSleepers);
    for (int i = 0; i < kSleepers; ++i)
      tasks.push_back(sleeper(std::chrono::microseconds(1000 + rng.below(50'000)), c));
    co_await safe_gather(std::move(tasks));
  }(c));
  EXPECT_EQ(c.woke.load(), kSleepers);
  EXPECT_EQ(c.cancelled.load(), 0);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(TimerStress, HundredThousandSleepersInACancelledGroupAllResumeAndTheTimerHeapEmpties) {
  Runtime rt({.workers = 2});
  Counts c;
  CancellationSource source;
  auto group = [](Counts& c) -> Task<void> {
    co_await weft::task_group([&c](TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < kSleepers; ++i) (void)tg.spawn(sleeper(1h, c));
      co_return;
    });
  };
  Future<void> f = rt.submit(weft::with_cancellation(source.token(), group(c)));
  ASSERT_TRUE(spin_until([&] { return rt.stats().timers_armed == kSleepers; }));
  source.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(c.cancelled.load(), kSleepers);
  EXPECT_EQ(c.woke.load(), 0);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(TimerStress, HundredThousandSleepersUnderATimeoutAllResumeWhenItFires) {
  Runtime rt({.workers = 2});
  Counts c;
  const int n = kSleepers / 2;
  std::vector<Task<void>> tasks;
  tasks.reserve(n);
  for (int i = 0; i < n; ++i) tasks.push_back(sleeper(1h, c));
  auto body = [](std::vector<Task<void>> tasks) -> Task<void> {
    co_await safe_gather(std::move(tasks));
  };
  // A second is plenty for every sleeper to start and park; on an overloaded machine some may
  // still not have started when the deadline comes (those never run). Every one that started
  // was woken by the deadline.
  EXPECT_THROW(rt.block_on(weft::timeout(1s, body(std::move(tasks)))), TimeoutError);
  EXPECT_EQ(c.cancelled.load(), c.started.load());
  RecordProperty("started", c.started.load());
  EXPECT_EQ(c.woke.load(), 0);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

Task<int> sleep_then(Duration d, int v) {
  co_await weft::sleep_for(d);
  co_return v;
}

TEST(TimerStress, TimeoutsRacingWithTheirTasksEndOnceWithTheValueOrTimeoutError) {
  Runtime rt({.workers = 2});
  const int rounds = kSanitized ? 500 : 5000;
  std::atomic<int> values{0};
  std::atomic<int> timeouts{0};
  std::atomic<int> wrong{0};
  rt.block_on([](int rounds, std::atomic<int>& values, std::atomic<int>& timeouts,
                 std::atomic<int>& wrong) -> Task<void> {
    Rng rng{7};
    auto one = [&](Duration limit, Duration work, int v) -> Task<void> {
      try {
        const int got = co_await weft::timeout(limit, sleep_then(work, v));
        (got == v ? values : wrong).fetch_add(1);
      } catch (const TimeoutError&) {
        timeouts.fetch_add(1);
      }
    };
    // Batches of concurrent timeouts, each racing a sleep of about its own length.
    for (int done = 0; done < rounds; done += 50) {
      std::vector<Task<void>> batch;
      for (int i = 0; i < 50; ++i)
        batch.push_back(one(std::chrono::microseconds(rng.below(300)),
                            std::chrono::microseconds(rng.below(300)), done + i));
      co_await safe_gather(std::move(batch));
    }
  }(rounds, values, timeouts, wrong));
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(values.load() + timeouts.load(), (rounds + 49) / 50 * 50);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
  RecordProperty("timeouts", timeouts.load());
}

TEST(TimerStress, TimedGathersRacingWithTheirChildrenKeepEveryFinishedResult) {
  Runtime rt({.workers = 2});
  const int rounds = kSanitized ? 100 : 1000;
  std::atomic<int> bad{0};
  rt.block_on([](int rounds, std::atomic<int>& bad) -> Task<void> {
    Rng rng{11};
    for (int r = 0; r < rounds; ++r) {
      std::vector<Task<int>> tasks;
      for (int i = 0; i < 8; ++i) tasks.push_back(sleep_then(std::chrono::microseconds(rng.below(400)), i));
      const auto limit = std::chrono::microseconds(rng.below(400));
      std::vector<Outcome<int>> outcomes =
          co_await safe_gather(return_exceptions, GatherOptions{.timeout = limit}, std::move(tasks));
      for (int i = 0; i < 8; ++i) {
        const bool ok = outcomes[i].has_value() ? outcomes[i].value() == i : outcomes[i].is_timeout();
        if (!ok) bad.fetch_add(1);
      }
    }
  }(rounds, bad));
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(TimerStress, CancellationsRacingWithTimeoutsAndSleepsLeaveNoTimerArmed) {
  Runtime rt({.workers = 2});
  const int rounds = kSanitized ? 300 : 3000;
  Rng rng{23};
  int other = 0;
  for (int i = 0; i < rounds; ++i) {
    CancellationSource source;
    auto run = [](CancellationSource source, Duration limit, Duration work) -> Task<int> {
      try {
        co_await weft::with_cancellation(source.token(), weft::timeout(limit, sleep_then(work, 1)));
        co_return 0;
      } catch (const TimeoutError&) {
        co_return 1;
      } catch (const Cancelled&) {
        co_return 2;
      }
    };
    Future<int> f = rt.submit(run(source, std::chrono::microseconds(rng.below(100)),
                                  std::chrono::microseconds(rng.below(100))));
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(rng.below(100));
    while (std::chrono::steady_clock::now() < until) {
    }
    source.cancel();
    const int how = f.get();
    if (how < 0 || how > 2) ++other;
  }
  EXPECT_EQ(other, 0);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

}  // namespace
