// weft/timeout.hpp: timeout and timeout_at (SPEC §6): the inner code sees Cancelled and only the
// scope whose deadline fired throws TimeoutError; nested scopes use the earliest deadline and
// children inherit it (this_task::deadline()); zero, negative and huge timeouts; results that
// beat the deadline are kept; the caller's cancellation stays Cancelled; shield() is immune to
// an outer deadline but not to one inside it; every wait is woken; misuse.
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <exception>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using weft_test::Eager;
using weft_test::HangGuard;
using weft_test::spin_until;
using weft_test::TaskError;

using weft::Cancelled;
using weft::CancellationSource;
using weft::Deadline;
using weft::Duration;
using weft::Event;
using weft::ExceptionGroup;
using weft::Future;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;
using weft::TaskGroup;
using weft::TimeoutError;
using weft::UsageError;

namespace this_task = weft::this_task;

Task<int> value_of(int v) { co_return v; }

Task<int> value_after(Duration d, int v) {
  co_await weft::sleep_for(d);
  co_return v;
}

// Deadlines in the tests below are short when nothing depends on the timed task having
// started, and kStartMargin when something does: the task must start before its deadline,
// also on a loaded machine.
constexpr auto kStartMargin = 100ms;

// Sleeps for an hour; counts that it started and that it was woken by Cancelled (rethrown).
struct SleepCounts {
  std::atomic<int> started{0};
  std::atomic<int> cancelled{0};
};
Task<void> sleep_long(SleepCounts& counts) {
  counts.started.fetch_add(1);
  try {
    co_await weft::sleep_for(1h);
  } catch (const Cancelled&) {
    counts.cancelled.fetch_add(1);
    throw;
  }
}

Task<Deadline> deadline_here() { co_return co_await this_task::deadline(); }

// How an await ended.
enum class Ending { Value, Timeout, Cancelled, Other };

template <class T>
Task<Ending> ending_of(Task<T> task) {
  try {
    co_await std::move(task);
  } catch (const TimeoutError&) {
    co_return Ending::Timeout;
  } catch (const Cancelled&) {
    co_return Ending::Cancelled;
  } catch (...) {
    co_return Ending::Other;
  }
  co_return Ending::Value;
}

// ----------------------------------------------------------------------------------------------
// the basic rule

TEST(Timeout, ATaskThatFinishesInTimeReturnsItsValue) {
  Runtime rt({.workers = 2});
  EXPECT_EQ(rt.block_on(weft::timeout(1h, value_of(7))), 7);
  EXPECT_EQ(rt.block_on(weft::timeout(1h, value_after(1ms, 8))), 8);
  EXPECT_EQ(rt.block_on(weft::timeout_at(Deadline::after(1h), value_of(9))), 9);
  rt.block_on(weft::timeout(1h, weft::sleep_for(1ms)));  // void
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(Timeout, ATaskThatOverrunsIsCancelledAwaitedAndReportedAsTimeoutError) {
  Runtime rt({.workers = 2});
  SleepCounts cancelled;
  const auto start = Clock::now();
  EXPECT_THROW(rt.block_on(weft::timeout(kStartMargin, sleep_long(cancelled))), TimeoutError);
  EXPECT_GE(Clock::now() - start, kStartMargin);
  EXPECT_EQ(cancelled.started.load(), 1);
  EXPECT_EQ(cancelled.cancelled.load(), 1);  // it had finished before timeout() threw
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(Timeout, TheInnerCodeSeesCancelledNotTimeoutError) {
  Runtime rt({.workers = 2});
  std::atomic<bool> saw_cancelled{false};
  std::atomic<bool> saw_timeout{false};
  auto inner = [&]() -> Task<void> {
    try {
      co_await weft::sleep_for(1h);
    } catch (const Cancelled&) {
      saw_cancelled.store(true);
      throw;
    } catch (const TimeoutError&) {
      saw_timeout.store(true);
      throw;
    }
  };
  EXPECT_THROW(rt.block_on(weft::timeout(kStartMargin, inner())), TimeoutError);
  EXPECT_TRUE(saw_cancelled.load());
  EXPECT_FALSE(saw_timeout.load());
}

TEST(Timeout, ACheckpointLoopIsStoppedByTheDeadline) {
  Runtime rt({.workers = 2});
  auto spin = []() -> Task<void> {
    HangGuard guard;
    while (!guard.expired()) co_await this_task::checkpoint();
  };
  EXPECT_THROW(rt.block_on(weft::timeout(10ms, spin())), TimeoutError);
}

TEST(Timeout, TheDeadlineWakesATaskParkedOnAnEvent) {
  Runtime rt({.workers = 2});
  Event never;
  auto wait = [&]() -> Task<void> { co_await never.wait(); };
  EXPECT_THROW(rt.block_on(weft::timeout(10ms, wait())), TimeoutError);
}

TEST(Timeout, TheDeadlineCancelsAGatherAndAwaitsEveryChild) {
  Runtime rt({.workers = 2});
  SleepCounts cancelled;
  auto gather = [&]() -> Task<void> {
    std::vector<Task<void>> children;
    for (int i = 0; i < 50; ++i) children.push_back(sleep_long(cancelled));
    co_await safe_gather(std::move(children));
  };
  EXPECT_THROW(rt.block_on(weft::timeout(kStartMargin, gather())), TimeoutError);
  // Every child that started was woken and awaited (on a loaded machine some may not have
  // started before the deadline: those never run).
  EXPECT_EQ(cancelled.cancelled.load(), cancelled.started.load());
}

TEST(Timeout, TheDeadlineCancelsATaskGroupWhichReportsTimeoutErrorNotAnExceptionGroup) {
  Runtime rt({.workers = 2});
  SleepCounts cancelled;
  auto group = [&]() -> Task<void> {
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < 50; ++i) (void)tg.spawn(sleep_long(cancelled));
      co_return;
    });
  };
  try {
    rt.block_on(weft::timeout(kStartMargin, group()));
    ADD_FAILURE() << "no exception";
  } catch (const TimeoutError&) {
  } catch (const ExceptionGroup&) {
    ADD_FAILURE() << "ExceptionGroup";
  }
  EXPECT_EQ(cancelled.cancelled.load(), cancelled.started.load());
}

// ----------------------------------------------------------------------------------------------
// zero, negative, huge

TEST(Timeout, ATimeoutOfZeroOrLessThrowsTimeoutErrorWithoutRunningTheTask) {
  Runtime rt({.workers = 1});
  std::atomic<int> ran{0};
  auto body = [&]() -> Task<int> {
    ran.fetch_add(1);
    co_return 1;
  };
  EXPECT_THROW(rt.block_on(weft::timeout(0s, body())), TimeoutError);
  EXPECT_THROW(rt.block_on(weft::timeout(-1s, body())), TimeoutError);
  EXPECT_THROW(rt.block_on(weft::timeout(Duration::min(), body())), TimeoutError);
  EXPECT_THROW(rt.block_on(weft::timeout(std::chrono::hours::min(), body())), TimeoutError);
  EXPECT_THROW(rt.block_on(weft::timeout_at(Deadline::after(-1ms), body())), TimeoutError);
  EXPECT_THROW(rt.block_on(weft::timeout_at(Deadline::at(Clock::time_point::min()), body())),
               TimeoutError);
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(Timeout, HugeTimeoutsMeanNoDeadlineAndDoNotOverflow) {
  Runtime rt({.workers = 1});
  auto run = [](Task<Deadline> t) -> Task<Deadline> { co_return co_await std::move(t); };
  EXPECT_TRUE(rt.block_on(weft::timeout(Duration::max(), deadline_here())).is_never());
  EXPECT_TRUE(rt.block_on(weft::timeout(std::chrono::hours::max(), deadline_here())).is_never());
  EXPECT_TRUE(
      rt.block_on(weft::timeout(std::chrono::duration<double>(1e300), deadline_here())).is_never());
  EXPECT_TRUE(rt.block_on(weft::timeout_at(Deadline::never(), deadline_here())).is_never());
  EXPECT_TRUE(rt.block_on(run(weft::timeout(Duration::max(), deadline_here()))).is_never());
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(Timeout, ANaNDurationIsAUsageErrorAndRunsNothing) {
  // Converting NaN to the clock's integer ticks is undefined (UBSan reports it).
  const auto nan = std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN());
  bool ran = false;
  auto body = [](bool& ran) -> Task<int> {
    ran = true;
    co_return 1;
  };
  EXPECT_THROW((void)weft::timeout(nan, body(ran)), UsageError);
  EXPECT_FALSE(ran);
}

TEST(Timeout, TheDeadlineCountsFromWhenTheTimeoutStartsNotFromWhenItIsCreated) {
  Runtime rt({.workers = 1});
  Task<int> timed = weft::timeout(30ms, value_of(5));
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(rt.block_on(std::move(timed)), 5);
}

TEST(Timeout, ATimeoutThatIsNeverAwaitedRunsNothing) {
  std::atomic<int> ran{0};
  {
    auto body = [&]() -> Task<int> {
      ran.fetch_add(1);
      co_return 1;
    };
    Task<int> timed = weft::timeout(1s, body());
  }
  EXPECT_EQ(ran.load(), 0);
}

// ----------------------------------------------------------------------------------------------
// what beats the deadline is kept

TEST(Timeout, AValueReturnedAfterTheDeadlinePassedIsKept) {
  // The task never reaches a suspension point after the deadline: it returns its value.
  Runtime rt({.workers = 2});
  auto stubborn = []() -> Task<int> {
    HangGuard guard;
    while (!this_task::cancelled() && !guard.expired()) std::this_thread::yield();
    co_return 42;
  };
  EXPECT_EQ(rt.block_on(weft::timeout(kStartMargin, stubborn())), 42);
}

TEST(Timeout, AnErrorOtherThanCancelledPropagatesAsItself) {
  Runtime rt({.workers = 2});
  auto converts = []() -> Task<void> {
    try {
      co_await weft::sleep_for(1h);
    } catch (const Cancelled&) {
      throw TaskError(3);
    }
  };
  try {
    rt.block_on(weft::timeout(kStartMargin, converts()));
    ADD_FAILURE() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 3);
  }
  auto fails_at_once = []() -> Task<int> {
    throw TaskError(4);
    co_return 0;
  };
  EXPECT_THROW(rt.block_on(weft::timeout(1h, fails_at_once())), TaskError);
}

// ----------------------------------------------------------------------------------------------
// nesting: the earliest deadline, and only the scope that fired reports it

TEST(Timeout, WhenAnOuterDeadlineFiresTheInnerTimeoutLetsCancelledThroughAndTheOuterThrows) {
  Runtime rt({.workers = 2});
  SleepCounts cancelled;
  std::optional<Ending> inner_ending;
  auto outer_body = [&]() -> Task<void> {
    try {
      co_await weft::timeout(1h, sleep_long(cancelled));
    } catch (const TimeoutError&) {
      inner_ending = Ending::Timeout;
      throw;
    } catch (const Cancelled&) {
      inner_ending = Ending::Cancelled;
      throw;
    }
  };
  EXPECT_THROW(rt.block_on(weft::timeout(kStartMargin, outer_body())), TimeoutError);
  ASSERT_TRUE(inner_ending.has_value());
  EXPECT_EQ(*inner_ending, Ending::Cancelled);
  EXPECT_EQ(cancelled.cancelled.load(), 1);
}

TEST(Timeout, WhenAnInnerDeadlineFiresOnlyTheInnerTimeoutThrows) {
  Runtime rt({.workers = 2});
  SleepCounts cancelled;
  auto outer_body = [&]() -> Task<int> {
    try {
      co_await weft::timeout(10ms, sleep_long(cancelled));
    } catch (const TimeoutError&) {
      co_return 1;  // handled here: the outer scope is not involved
    }
    co_return 0;
  };
  EXPECT_EQ(rt.block_on(weft::timeout(1h, outer_body())), 1);
  EXPECT_EQ(cancelled.cancelled.load(), cancelled.started.load());
}

TEST(Timeout, NestedScopesUseTheEarliestDeadline) {
  Runtime rt({.workers = 2});
  struct Seen {
    Deadline outer = Deadline::never();
    Deadline inner_later = Deadline::never();
    Deadline inner_earlier = Deadline::never();
    Deadline innermost = Deadline::never();
  };
  const Seen seen = rt.block_on([]() -> Task<Seen> {
    auto body = []() -> Task<Seen> {
      Seen s;
      s.outer = co_await this_task::deadline();
      s.inner_later = co_await weft::timeout(1h, deadline_here());
      auto nested = []() -> Task<Deadline> {
        co_return co_await weft::timeout(2h, deadline_here());
      };
      s.inner_earlier = co_await weft::timeout(5s, deadline_here());
      s.innermost = co_await weft::timeout(5s, nested());
      co_return s;
    };
    co_return co_await weft::timeout(10s, body());
  }());
  EXPECT_FALSE(seen.outer.is_never());
  EXPECT_EQ(seen.inner_later, seen.outer);  // a later deadline does not extend the earlier one
  EXPECT_LT(seen.inner_earlier, seen.outer);
  EXPECT_LE(seen.inner_earlier.time(), Clock::now() + 5s);
  EXPECT_GT(seen.innermost, seen.inner_earlier);  // a new 5 s scope, started later
  EXPECT_LT(seen.innermost, seen.outer);
}

TEST(Timeout, ChildrenInheritTheDeadline) {
  Runtime rt({.workers = 2});
  struct Seen {
    Deadline own = Deadline::never();
    Deadline nested = Deadline::never();
    Deadline gathered_a = Deadline::never();
    Deadline gathered_b = Deadline::never();
    Deadline spawned = Deadline::never();
    Deadline with_token = Deadline::never();
  };
  const Seen seen = rt.block_on(weft::timeout(1h, []() -> Task<Seen> {
    Seen s;
    s.own = co_await this_task::deadline();
    s.nested = co_await deadline_here();
    auto [a, b] = co_await safe_gather(deadline_here(), deadline_here());
    s.gathered_a = a;
    s.gathered_b = b;
    std::optional<weft::JoinHandle<Deadline>> h;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      h.emplace(tg.spawn(deadline_here()));
      co_return;
    });
    s.spawned = h->result();
    CancellationSource source;
    s.with_token = co_await weft::with_cancellation(source.token(), deadline_here());
    co_return s;
  }()));
  EXPECT_FALSE(seen.own.is_never());
  EXPECT_LE(seen.own.time(), Clock::now() + 1h);
  for (const Deadline& d :
       {seen.nested, seen.gathered_a, seen.gathered_b, seen.spawned, seen.with_token})
    EXPECT_EQ(d, seen.own);
}

// ----------------------------------------------------------------------------------------------
// the caller's cancellation

TEST(Timeout, TheCallersCancellationStaysCancelled) {
  Runtime rt({.workers = 2});
  CancellationSource source;
  SleepCounts cancelled;
  Future<Ending> f =
      rt.submit(ending_of(weft::with_cancellation(source.token(), weft::timeout(1h, sleep_long(cancelled)))));
  ASSERT_TRUE(spin_until([&] { return rt.stats().timers_armed == 2; }));  // timeout + sleep
  source.cancel();
  EXPECT_EQ(f.get(), Ending::Cancelled);
  EXPECT_EQ(cancelled.cancelled.load(), 1);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(Timeout, TheCallersCancellationWinsEvenWhenTheDeadlineFiredFirst) {
  // The inner task waits (without suspending) until the deadline has cancelled it, then the
  // caller is cancelled too, then the inner task throws Cancelled: Cancelled, not TimeoutError.
  Runtime rt({.workers = 2});
  CancellationSource source;
  std::atomic<bool> deadline_seen{false};
  std::atomic<bool> caller_cancelled{false};
  auto inner = [&]() -> Task<void> {
    HangGuard guard;
    while (!this_task::cancelled() && !guard.expired()) std::this_thread::yield();
    deadline_seen.store(true);
    while (!caller_cancelled.load() && !guard.expired()) std::this_thread::yield();
    co_await this_task::checkpoint();
  };
  Future<Ending> f =
      rt.submit(ending_of(weft::with_cancellation(source.token(), weft::timeout(kStartMargin, inner()))));
  ASSERT_TRUE(spin_until([&] { return deadline_seen.load(); }));
  source.cancel();
  caller_cancelled.store(true);
  EXPECT_EQ(f.get(), Ending::Cancelled);
}

TEST(Timeout, ACallerCancelledBeforeTheTimeoutStartsGetsCancelledEvenForAZeroTimeout) {
  Runtime rt({.workers = 1});
  CancellationSource source;
  source.cancel();
  EXPECT_EQ(rt.block_on(ending_of(weft::with_cancellation(source.token(),
                                                          weft::timeout(0s, value_of(1))))),
            Ending::Cancelled);
  EXPECT_EQ(rt.block_on(ending_of(weft::with_cancellation(source.token(),
                                                          weft::timeout(1h, value_of(1))))),
            Ending::Cancelled);
}

// ----------------------------------------------------------------------------------------------
// shield

TEST(Timeout, AShieldIsImmuneToAnOuterDeadline) {
  Runtime rt({.workers = 2});
  auto shielded = []() -> Task<int> {
    const Deadline d = co_await this_task::deadline();
    co_await weft::sleep_for(40ms);  // outlives the 10 ms deadline outside
    co_return d.is_never() ? 1 : 0;
  };
  // The deadline fired meanwhile, but the shielded task returned a value: it is kept.
  EXPECT_EQ(rt.block_on(weft::timeout(10ms, weft::shield(shielded()))), 1);
}

TEST(Timeout, ATimeoutInsideAShieldStillApplies) {
  Runtime rt({.workers = 2});
  SleepCounts cancelled;
  auto shielded = [&]() -> Task<Ending> {
    const Deadline before = co_await this_task::deadline();
    EXPECT_TRUE(before.is_never());
    const Deadline inside = co_await weft::timeout(10ms, deadline_here());
    EXPECT_LE(inside.time(), Clock::now() + 10ms);
    co_return co_await ending_of(weft::timeout(10ms, sleep_long(cancelled)));
  };
  EXPECT_EQ(rt.block_on(weft::timeout(1h, weft::shield(shielded()))), Ending::Timeout);
  EXPECT_EQ(cancelled.cancelled.load(), cancelled.started.load());
}

// ----------------------------------------------------------------------------------------------
// timers and misuse

TEST(Timeout, TimeoutsThatFinishInTimeLeaveNoTimerArmed) {
  Runtime rt({.workers = 2});
  rt.block_on([]() -> Task<void> {
    for (int i = 0; i < 1000; ++i) co_await weft::timeout(1h, value_of(i));
  }());
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

TEST(Timeout, TimingOutAnEmptyTaskIsAUsageError) {
  EXPECT_THROW((void)weft::timeout(1s, Task<int>{}), UsageError);
  EXPECT_THROW((void)weft::timeout_at(Deadline::never(), Task<int>{}), UsageError);
}

Eager timeout_outside_a_runtime(std::exception_ptr& error) {
  try {
    co_await weft::timeout(1s, value_of(1));
  } catch (...) {
    error = std::current_exception();
  }
}

TEST(Timeout, ATimeoutOutsideARuntimeIsAUsageError) {
  std::exception_ptr error;
  timeout_outside_a_runtime(error);
  ASSERT_TRUE(error);
  EXPECT_THROW(std::rethrow_exception(error), UsageError);
}

}  // namespace
