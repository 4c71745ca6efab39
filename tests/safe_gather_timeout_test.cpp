// weft/safe_gather.hpp with GatherOptions::timeout (SPEC §5): fail-fast + timeout throws
// TimeoutError after cancelling and awaiting the rest; return_exceptions + timeout keeps the
// finished results and reports the unfinished ones as TimeoutError outcomes; the caller's
// cancellation still gives Cancelled; zero and huge timeouts; the deadline the children see.
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using weft_test::spin_until;
using weft_test::TaskError;

using weft::Cancelled;
using weft::CancellationSource;
using weft::Deadline;
using weft::Duration;
using weft::Future;
using weft::GatherOptions;
using weft::Outcome;
using weft::return_exceptions;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;
using weft::TimeoutError;

namespace this_task = weft::this_task;

Task<int> value_of(int v) { co_return v; }

// Counts how the gather's children ended.
struct Endings {
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  std::atomic<int> cancelled{0};
};

Task<int> value_after(Duration d, int v, Endings& e) {
  e.started.fetch_add(1);
  try {
    co_await weft::sleep_for(d);
  } catch (const Cancelled&) {
    e.cancelled.fetch_add(1);
    e.finished.fetch_add(1);
    throw;
  }
  e.finished.fetch_add(1);
  co_return v;
}

Task<void> void_after(Duration d, Endings& e) { co_await value_after(d, 0, e); }

Task<int> fail_after(Duration d, int id, Endings& e) {
  co_await value_after(d, 0, e);
  throw TaskError(id);
}

Task<Deadline> deadline_here() { co_return co_await this_task::deadline(); }

// Finishes without suspending.
Task<int> value_now(int v, Endings& e) {
  e.started.fetch_add(1);
  e.finished.fetch_add(1);
  co_return v;
}
Task<int> fail_now(int id, Endings& e) {
  e.started.fetch_add(1);
  e.finished.fetch_add(1);
  throw TaskError(id);
  co_return 0;
}

// Deadlines are short when nothing depends on the children having started, and kStartMargin
// when something does: the children must start (and the quick ones finish) before the
// deadline, also on a loaded machine.
constexpr auto kStartMargin = 200ms;

// ----------------------------------------------------------------------------------------------
// fail-fast

TEST(SafeGatherTimeout, AGatherThatFinishesInTimeReturnsEveryResult) {
  Runtime rt({.workers = 2});
  Endings e;
  auto [a, b, c] = rt.block_on([](Endings& e) -> Task<std::tuple<int, int, std::monostate>> {
    co_return co_await safe_gather(GatherOptions{.timeout = 1h}, value_of(1),
                                   value_after(1ms, 2, e), void_after(0s, e));
  }(e));
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  (void)c;
  const std::vector<int> v = rt.block_on([](Endings& e) -> Task<std::vector<int>> {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 10; ++i) tasks.push_back(value_after(std::chrono::microseconds(i), i, e));
    co_return co_await safe_gather(GatherOptions{.timeout = 1h}, std::move(tasks));
  }(e));
  EXPECT_EQ(v, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(SafeGatherTimeout, AFailFastGatherPastItsTimeoutCancelsAwaitsAndThrowsTimeoutError) {
  Runtime rt({.workers = 2});
  Endings e;
  const auto start = Clock::now();
  EXPECT_THROW(rt.block_on([](Endings& e) -> Task<void> {
    co_await safe_gather(GatherOptions{.timeout = kStartMargin}, value_of(1),
                         value_after(1h, 2, e), value_after(1h, 3, e));
  }(e)),
               TimeoutError);
  EXPECT_GE(Clock::now() - start, kStartMargin);
  EXPECT_EQ(e.started.load(), 2);
  EXPECT_EQ(e.finished.load(), 2);  // awaited before the gather threw
  EXPECT_EQ(e.cancelled.load(), 2);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(SafeGatherTimeout, AFailFastVectorGatherPastItsTimeoutThrowsTimeoutError) {
  Runtime rt({.workers = 2});
  Endings e;
  EXPECT_THROW(rt.block_on([](Endings& e) -> Task<void> {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 20; ++i) tasks.push_back(i % 2 == 0 ? value_now(i, e) : value_after(1h, i, e));
    co_await safe_gather(GatherOptions{.timeout = 10ms}, std::move(tasks));
  }(e)),
               TimeoutError);
  // Every child that started has finished (some may not have started before the deadline).
  EXPECT_EQ(e.finished.load(), e.started.load());
  EXPECT_LE(e.cancelled.load(), 10);
}

TEST(SafeGatherTimeout, AnInlineVectorGatherPastItsTimeoutThrowsTimeoutErrorOrReportsTheLateOnes) {
  Runtime rt({.workers = 2});
  Endings e;
  EXPECT_THROW(rt.block_on([](Endings& e) -> Task<void> {
    weft::InlineVector<Task<int>, 4> tasks;
    tasks.push_back(value_now(1, e));
    tasks.push_back(value_after(1h, 2, e));
    co_await safe_gather(GatherOptions{.timeout = 10ms}, std::move(tasks));
  }(e)),
               TimeoutError);
  EXPECT_EQ(e.finished.load(), e.started.load());

  const auto r = rt.block_on([](Endings& e) -> Task<weft::InlineVector<Outcome<int>, 4>> {
    weft::InlineVector<Task<int>, 4> tasks;
    tasks.push_back(value_now(1, e));
    tasks.push_back(value_after(1h, 2, e));
    co_return co_await safe_gather(return_exceptions, GatherOptions{.timeout = kStartMargin},
                                   std::move(tasks));
  }(e));
  ASSERT_EQ(r.size(), 2u);
  ASSERT_TRUE(r[0].has_value());
  EXPECT_EQ(r[0].value(), 1);
  EXPECT_TRUE(r[1].is_timeout());
}

TEST(SafeGatherTimeout, ARealFailureBeforeTheTimeoutIsRethrownAsItself) {
  Runtime rt({.workers = 2});
  Endings e;
  try {
    rt.block_on([](Endings& e) -> Task<void> {
      co_await safe_gather(GatherOptions{.timeout = 1h}, fail_after(1ms, 5, e),
                           value_after(1h, 2, e));
    }(e));
    ADD_FAILURE() << "no exception";
  } catch (const TaskError& err) {
    EXPECT_EQ(err.id, 5);
  }
  EXPECT_EQ(e.cancelled.load(), 1);
}

TEST(SafeGatherTimeout, ATimeoutOfZeroOrLessStartsNothingAndThrowsTimeoutError) {
  Runtime rt({.workers = 1});
  Endings e;
  for (Duration d : {Duration::zero(), Duration(-1s), Duration::min()}) {
    EXPECT_THROW(rt.block_on([](Duration d, Endings& e) -> Task<void> {
      co_await safe_gather(GatherOptions{.timeout = d}, value_after(0s, 1, e));
    }(d, e)),
                 TimeoutError);
    EXPECT_THROW(rt.block_on([](Duration d, Endings& e) -> Task<void> {
      std::vector<Task<int>> tasks;
      tasks.push_back(value_after(0s, 1, e));
      co_await safe_gather(GatherOptions{.timeout = d}, std::move(tasks));
    }(d, e)),
                 TimeoutError);
  }
  EXPECT_EQ(e.started.load(), 0);
}

TEST(SafeGatherTimeout, AnEmptyTimedGatherReturnsAtOnce) {
  Runtime rt({.workers = 1});
  const std::size_t n = rt.block_on([]() -> Task<std::size_t> {
    std::vector<int> a = co_await safe_gather(GatherOptions{.timeout = 0s}, std::vector<Task<int>>{});
    std::vector<Outcome<int>> b = co_await safe_gather(
        return_exceptions, GatherOptions{.timeout = 1ms}, std::vector<Task<int>>{});
    co_return a.size() + b.size();
  }());
  EXPECT_EQ(n, 0u);
}

TEST(SafeGatherTimeout, TheDefaultAndHugeTimeoutsMeanNone) {
  Runtime rt({.workers = 2});
  const auto [a, b] = rt.block_on([]() -> Task<std::tuple<Deadline, Deadline>> {
    co_return co_await safe_gather(GatherOptions{}, deadline_here(), deadline_here());
  }());
  EXPECT_TRUE(a.is_never());
  EXPECT_TRUE(b.is_never());
  const auto [c] = rt.block_on([]() -> Task<std::tuple<Deadline>> {
    co_return co_await safe_gather(GatherOptions{.timeout = Duration::max()}, deadline_here());
  }());
  EXPECT_TRUE(c.is_never());
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

// ----------------------------------------------------------------------------------------------
// return_exceptions

TEST(SafeGatherTimeout, ReturnExceptionsKeepsFinishedResultsAndReportsTheRestAsTimeoutError) {
  Runtime rt({.workers = 2});
  Endings e;
  auto [fast, failed, slow, slow_void] = rt.block_on(
      [](Endings& e)
          -> Task<std::tuple<Outcome<int>, Outcome<int>, Outcome<int>, Outcome<void>>> {
        co_return co_await safe_gather(return_exceptions, GatherOptions{.timeout = kStartMargin},
                                       value_now(1, e), fail_now(7, e), value_after(1h, 3, e),
                                       void_after(1h, e));
      }(e));
  ASSERT_TRUE(fast.has_value());
  EXPECT_EQ(fast.value(), 1);
  ASSERT_TRUE(failed.has_exception());
  EXPECT_THROW(failed.value(), TaskError);  // a failure before the deadline stays itself
  EXPECT_TRUE(slow.is_timeout());
  EXPECT_FALSE(slow.is_cancelled());
  EXPECT_THROW(slow.value(), TimeoutError);
  EXPECT_TRUE(slow_void.is_timeout());
  EXPECT_EQ(e.cancelled.load(), 2);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(SafeGatherTimeout, AVectorGatherWithReturnExceptionsReportsTheLateOnesAsTimeoutError) {
  Runtime rt({.workers = 2});
  Endings e;
  const std::vector<Outcome<int>> outcomes =
      rt.block_on([](Endings& e) -> Task<std::vector<Outcome<int>>> {
        std::vector<Task<int>> tasks;
        for (int i = 0; i < 20; ++i)
          tasks.push_back(i % 2 == 0 ? value_now(i, e) : value_after(1h, i, e));
        co_return co_await safe_gather(return_exceptions, GatherOptions{.timeout = kStartMargin},
                                       std::move(tasks));
      }(e));
  ASSERT_EQ(outcomes.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    if (i % 2 == 0) {
      ASSERT_TRUE(outcomes[i].has_value()) << i;
      EXPECT_EQ(outcomes[i].value(), i);
    } else {
      EXPECT_TRUE(outcomes[i].is_timeout()) << i;
    }
  }
}

TEST(SafeGatherTimeout, ReturnExceptionsWithATimeoutOfZeroReportsEveryTaskAsTimeoutError) {
  Runtime rt({.workers = 1});
  Endings e;
  auto [a, b] = rt.block_on([](Endings& e) -> Task<std::tuple<Outcome<int>, Outcome<void>>> {
    co_return co_await safe_gather(return_exceptions, GatherOptions{.timeout = 0s},
                                   value_after(0s, 1, e), void_after(0s, e));
  }(e));
  EXPECT_TRUE(a.is_timeout());
  EXPECT_TRUE(b.is_timeout());
  const std::vector<Outcome<int>> v = rt.block_on([](Endings& e) -> Task<std::vector<Outcome<int>>> {
    std::vector<Task<int>> tasks;
    tasks.push_back(value_after(0s, 1, e));
    tasks.push_back(value_after(0s, 2, e));
    co_return co_await safe_gather(return_exceptions, GatherOptions{.timeout = -1s},
                                   std::move(tasks));
  }(e));
  ASSERT_EQ(v.size(), 2u);
  EXPECT_TRUE(v[0].is_timeout());
  EXPECT_TRUE(v[1].is_timeout());
  EXPECT_EQ(e.started.load(), 0);
}

// ----------------------------------------------------------------------------------------------
// the caller's cancellation, and deadlines

// Runs `gather` under `source`; true when it ended with Cancelled.
template <class G>
Task<bool> cancelled_by(CancellationSource source, G make_gather) {
  try {
    co_await weft::with_cancellation(source.token(), make_gather());
  } catch (const Cancelled&) {
    co_return true;
  }
  co_return false;
}

TEST(SafeGatherTimeout, TheCallersCancellationGivesCancelledInEveryMode) {
  Runtime rt({.workers = 2});
  for (int mode = 0; mode < 4; ++mode) {
    Endings e;
    CancellationSource source;
    auto make = [&e, mode]() -> Task<void> {
      if (mode == 0) {
        co_await safe_gather(GatherOptions{.timeout = 1h}, value_after(1h, 1, e),
                             value_after(1h, 2, e));
      } else if (mode == 1) {
        co_await safe_gather(return_exceptions, GatherOptions{.timeout = 1h},
                             value_after(1h, 1, e), value_after(1h, 2, e));
      } else {
        std::vector<Task<int>> tasks;
        tasks.push_back(value_after(1h, 1, e));
        tasks.push_back(value_after(1h, 2, e));
        if (mode == 2) co_await safe_gather(GatherOptions{.timeout = 1h}, std::move(tasks));
        else
          co_await safe_gather(return_exceptions, GatherOptions{.timeout = 1h}, std::move(tasks));
      }
    };
    Future<bool> f = rt.submit(cancelled_by(source, make));
    // The gather's timer and the two sleeps.
    ASSERT_TRUE(spin_until([&] { return rt.stats().timers_armed == 3; })) << mode;
    source.cancel();
    EXPECT_TRUE(f.get()) << mode;
    EXPECT_EQ(e.cancelled.load(), 2) << mode;
    EXPECT_EQ(rt.stats().timers_armed, 0u) << mode;
  }
}

TEST(SafeGatherTimeout, TheChildrenInheritTheGathersDeadline) {
  Runtime rt({.workers = 2});
  const auto before = Clock::now();
  auto [a, b] = rt.block_on([]() -> Task<std::tuple<Deadline, Deadline>> {
    co_return co_await safe_gather(GatherOptions{.timeout = 1h}, deadline_here(), deadline_here());
  }());
  EXPECT_FALSE(a.is_never());
  EXPECT_EQ(a, b);
  EXPECT_GE(a.time(), before + 1h);
  EXPECT_LE(a.time(), Clock::now() + 1h);
}

TEST(SafeGatherTimeout, AGatherTimeoutLaterThanTheDeadlineInForceArmsNoTimerAndTheOuterOneFires) {
  Runtime rt({.workers = 2});
  Endings e;
  std::optional<bool> gather_saw_cancelled;
  std::uint64_t armed_inside = 0;
  auto body = [&]() -> Task<void> {
    const Deadline outer = co_await this_task::deadline();
    auto probe = [&]() -> Task<int> {
      armed_inside = (co_await this_task::deadline() == outer) ? rt.stats().timers_armed : 99;
      co_return co_await value_after(1h, 1, e);
    };
    try {
      co_await safe_gather(GatherOptions{.timeout = 1h}, probe());
      gather_saw_cancelled = false;
    } catch (const Cancelled&) {
      gather_saw_cancelled = true;
      throw;
    }
  };
  EXPECT_THROW(rt.block_on(weft::timeout(kStartMargin, body())), TimeoutError);
  EXPECT_EQ(armed_inside, 1u);  // the outer timeout's timer only
  ASSERT_TRUE(gather_saw_cancelled.has_value());
  EXPECT_TRUE(*gather_saw_cancelled);
}

TEST(SafeGatherTimeout, AGatherTimeoutInsideATimeoutReportsItselfOnly) {
  Runtime rt({.workers = 2});
  Endings e;
  auto body = [&]() -> Task<int> {
    try {
      co_await safe_gather(GatherOptions{.timeout = 10ms}, value_after(1h, 1, e));
    } catch (const TimeoutError&) {
      co_return 1;
    }
    co_return 0;
  };
  EXPECT_EQ(rt.block_on(weft::timeout(1h, body())), 1);
}

weft_test::Eager timed_gather_outside_a_runtime(std::exception_ptr& error) {
  try {
    co_await safe_gather(GatherOptions{.timeout = 1s}, value_of(1));
  } catch (...) {
    error = std::current_exception();
  }
}

TEST(SafeGatherTimeout, ATimedGatherOutsideARuntimeIsAUsageError) {
  std::exception_ptr error;
  timed_gather_outside_a_runtime(error);
  ASSERT_TRUE(error);
  EXPECT_THROW(std::rethrow_exception(error), weft::UsageError);
}

}  // namespace
