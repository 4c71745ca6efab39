// weft/timeout_scope.hpp: a deadline around a body that can be moved while it runs (SPEC §6,
// asyncio.Timeout): TimeoutError only from the scope whose deadline fired, reschedule() earlier,
// later and to never, from inside and from another task, racing the timer; expired(); nesting
// under and over timeout() and timed gathers; children inherit the moved deadline; misuse.
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <tuple>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

using weft_test::spin_until;

using weft::Cancelled;
using weft::CancellationSource;
using weft::Deadline;
using weft::Runtime;
using weft::Task;
using weft::TimeoutError;
using weft::TimeoutScope;
using weft::UsageError;

namespace this_task = weft::this_task;

// Deadlines the body must not reach before it has started, on a loaded machine.
constexpr auto kStartMargin = 100ms;
// A guard on tests whose failure mode would be a hang: the outer timeout fails them instead.
constexpr auto kHangGuard = 60s;

Task<void> sleep_an_hour() { co_await weft::sleep_for(1h); }

TEST(TimeoutScope, ABodyThatFinishesInTimeReturnsItsValueAndHasNotExpired) {
  Runtime rt({.workers = 2});
  const auto [value, expired] = rt.block_on([]() -> Task<std::tuple<int, bool>> {
    bool expired = true;
    const int v = co_await weft::timeout_scope(Deadline::after(1h), [&](TimeoutScope& ts) -> Task<int> {
      expired = ts.expired();
      co_return 42;
    });
    co_return std::tuple{v, expired};
  }());
  EXPECT_EQ(value, 42);
  EXPECT_FALSE(expired);
}

TEST(TimeoutScope, APassedDeadlineCancelsTheBodyAndThrowsTimeoutError) {
  Runtime rt({.workers = 2});
  std::atomic<bool> saw_cancelled{false};
  std::atomic<bool> expired{false};
  EXPECT_THROW(rt.block_on([](std::atomic<bool>& saw, std::atomic<bool>& expired) -> Task<void> {
    co_await weft::timeout_scope(Deadline::after(10ms), [&](TimeoutScope& ts) -> Task<void> {
      try {
        co_await sleep_an_hour();
      } catch (const Cancelled&) {
        saw.store(true);
        expired.store(ts.expired());
        throw;
      }
    });
  }(saw_cancelled, expired)),
               TimeoutError);
  EXPECT_TRUE(saw_cancelled.load()) << "the body sees Cancelled, not TimeoutError";
  EXPECT_TRUE(expired.load());
}

TEST(TimeoutScope, ADeadlineAlreadyPassedThrowsTimeoutErrorWithoutRunningTheBody) {
  Runtime rt({.workers = 1});
  std::atomic<bool> ran{false};
  EXPECT_THROW(rt.block_on([](std::atomic<bool>& ran) -> Task<void> {
    co_await weft::timeout_scope(Deadline::after(-1s), [&](TimeoutScope&) -> Task<void> {
      ran.store(true);
      co_return;
    });
  }(ran)),
               TimeoutError);
  EXPECT_FALSE(ran.load());
}

TEST(TimeoutScope, ReschedulingLaterFromInsideLetsTheBodyFinish) {
  Runtime rt({.workers = 2});
  const int v = rt.block_on([]() -> Task<int> {
    co_return co_await weft::timeout_scope(Deadline::after(kStartMargin), [](TimeoutScope& ts) -> Task<int> {
      ts.reschedule(Deadline::after(1h));
      co_await weft::sleep_for(2 * kStartMargin);  // past the first deadline
      co_return ts.expired() ? -1 : 7;
    });
  }());
  EXPECT_EQ(v, 7);
}

TEST(TimeoutScope, ReschedulingEarlierFromInsideCancelsSooner) {
  Runtime rt({.workers = 2});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    co_await weft::timeout_scope(Deadline::after(1h), [](TimeoutScope& ts) -> Task<void> {
      ts.reschedule(Deadline::after(10ms));
      co_await sleep_an_hour();
    });
  }()),
               TimeoutError);
}

TEST(TimeoutScope, ReschedulingToThePastCancelsTheBodyAtOnce) {
  Runtime rt({.workers = 2});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    co_await weft::timeout_scope(Deadline::after(1h), [](TimeoutScope& ts) -> Task<void> {
      ts.reschedule(Deadline::after(-1s));
      co_await sleep_an_hour();
    });
  }()),
               TimeoutError);
}

TEST(TimeoutScope, ReschedulingToNeverRemovesTheDeadline) {
  Runtime rt({.workers = 2});
  const bool never = rt.block_on([]() -> Task<bool> {
    co_return co_await weft::timeout_scope(Deadline::after(kStartMargin), [](TimeoutScope& ts) -> Task<bool> {
      ts.reschedule(Deadline::never());
      co_await weft::sleep_for(2 * kStartMargin);
      co_return ts.when().time() == Deadline::never().time() && !ts.expired();
    });
  }());
  EXPECT_TRUE(never);
}

TEST(TimeoutScope, ANeverDeadlineGetsOneFromReschedule) {
  Runtime rt({.workers = 2});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    co_await weft::timeout_scope(Deadline::never(), [](TimeoutScope& ts) -> Task<void> {
      ts.reschedule(Deadline::after(10ms));
      co_await sleep_an_hour();
    });
  }()),
               TimeoutError);
}

// Another task holds the scope and moves its deadline while the body waits.
TEST(TimeoutScope, AnotherTaskCanRescheduleTheScopeWhileTheBodyWaits) {
  Runtime rt({.workers = 2});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    std::atomic<TimeoutScope*> shared{nullptr};
    auto waiter = [&]() -> Task<void> {
      co_await weft::timeout_scope(Deadline::never(), [&](TimeoutScope& ts) -> Task<void> {
        shared.store(&ts);
        co_await sleep_an_hour();
      });
    };
    auto mover = [&]() -> Task<void> {
      weft_test::HangGuard guard;
      while (shared.load() == nullptr && !guard.expired()) co_await this_task::yield();
      shared.load()->reschedule(Deadline::after(5ms));
    };
    co_await weft::timeout(kHangGuard, weft::safe_gather(waiter(), mover()));
  }()),
               TimeoutError);
}

TEST(TimeoutScope, RescheduleAfterTheDeadlineExpiredThrowsUsageError) {
  Runtime rt({.workers = 2});
  std::string message;
  EXPECT_THROW(rt.block_on([](std::string& message) -> Task<void> {
    co_await weft::timeout_scope(Deadline::after(10ms), [&](TimeoutScope& ts) -> Task<void> {
      bool cancelled = false;
      try {
        co_await sleep_an_hour();
      } catch (const Cancelled&) {
        cancelled = true;
      }
      if (cancelled) {
        try {
          ts.reschedule(Deadline::after(1h));
        } catch (const UsageError& e) {
          message = e.what();
        }
        co_await this_task::checkpoint();  // rethrows Cancelled: the deadline stands
      }
    });
  }(message)),
               TimeoutError);
  EXPECT_NE(message.find("expired"), std::string::npos) << message;
}

// The timer and reschedule() race: whichever wins, the scope ends one of the legal ways and
// nothing hangs or leaks (many rounds, both orders).
TEST(TimeoutScope, RescheduleRacingTheTimerEndsOneOfTheLegalWays) {
  Runtime rt({.workers = 2});
  constexpr int kRounds = weft_test::kSanitized ? 200 : 1000;
  struct Counts {
    int not_started = 0, moved = 0, refused = 0, timed_out = 0, moved_and_timed_out = 0;
  } c;
  for (int i = 0; i < kRounds; ++i) {
    rt.block_on([](Counts& c) -> Task<void> {
      enum { kNotStarted, kMoved, kRefused } what = kNotStarted;
      try {
        co_await weft::timeout_scope(Deadline::after(50us), [&](TimeoutScope& ts) -> Task<void> {
          try {
            ts.reschedule(Deadline::never());
            what = kMoved;
          } catch (const UsageError&) {
            what = kRefused;
          }
          co_await weft::sleep_for(100us);
        });
      } catch (const TimeoutError&) {
        ++c.timed_out;
        if (what == kMoved) ++c.moved_and_timed_out;
      }
      if (what == kNotStarted) ++c.not_started;
      if (what == kMoved) ++c.moved;
      if (what == kRefused) ++c.refused;
    }(c));
  }
  // Legal: the deadline passed before the start (TimeoutError, no body); it fired before the
  // reschedule (refused, TimeoutError); the reschedule won (no timeout).
  EXPECT_EQ(c.moved_and_timed_out, 0);
  EXPECT_EQ(c.timed_out, c.not_started + c.refused);
  EXPECT_EQ(c.not_started + c.moved + c.refused, kRounds);
}

TEST(TimeoutScope, UnderAnEarlierTimeoutTheOuterOneFiresAndTheScopeHasNotExpired) {
  Runtime rt({.workers = 2});
  std::atomic<bool> inner_expired{true};
  EXPECT_THROW(rt.block_on([](std::atomic<bool>& inner_expired) -> Task<void> {
    co_await weft::timeout(10ms, weft::timeout_scope(Deadline::after(1h), [&](TimeoutScope& ts) -> Task<void> {
      try {
        co_await sleep_an_hour();
      } catch (const Cancelled&) {
        inner_expired.store(ts.expired());
        throw;
      }
    }));
  }(inner_expired)),
               TimeoutError);
  EXPECT_FALSE(inner_expired.load());
}

// A timeout nested inside the scope may not rely on the scope's timer: the scope's deadline
// can move later after the inner timeout started.
TEST(TimeoutScope, ANestedTimeoutStillFiresAfterTheScopeMovedItsDeadlineLater) {
  Runtime rt({.workers = 2});
  const std::string outcome = rt.block_on([]() -> Task<std::string> {
    co_return co_await weft::timeout(kHangGuard, weft::timeout_scope(Deadline::after(kStartMargin), [](TimeoutScope& ts) -> Task<std::string> {
      auto inner = [&]() -> Task<void> {
        ts.reschedule(Deadline::never());  // after the inner timeout has started
        co_await sleep_an_hour();
      };
      try {
        co_await weft::timeout(2 * kStartMargin, inner());
      } catch (const TimeoutError&) {
        co_return std::string("inner timed out");
      }
      co_return std::string("inner finished");
    }));
  }());
  EXPECT_EQ(outcome, "inner timed out");
}

TEST(TimeoutScope, ATimedGatherInsideStillFiresAfterTheScopeMovedItsDeadlineLater) {
  Runtime rt({.workers = 2});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    co_await weft::timeout(kHangGuard, weft::timeout_scope(Deadline::after(kStartMargin), [](TimeoutScope& ts) -> Task<void> {
      auto mover = [&]() -> Task<void> {
        ts.reschedule(Deadline::never());
        co_return;
      };
      co_await weft::safe_gather(weft::GatherOptions{.timeout = 2 * kStartMargin}, mover(),
                                 sleep_an_hour());
    }));
  }()),
               TimeoutError);
}

TEST(TimeoutScope, ChildrenSeeTheDeadlineInForceIncludingAfterAReschedule) {
  Runtime rt({.workers = 2});
  const Deadline moved = Deadline::after(3h);
  const auto [before, after, outer_wins] = rt.block_on([](Deadline moved) -> Task<std::tuple<Deadline, Deadline, Deadline>> {
    auto read = []() -> Task<Deadline> { co_return co_await this_task::deadline(); };
    co_return co_await weft::timeout_scope(Deadline::after(2h), [&](TimeoutScope& ts) -> Task<std::tuple<Deadline, Deadline, Deadline>> {
      auto [b] = co_await weft::safe_gather(read());
      ts.reschedule(moved);
      auto [a] = co_await weft::safe_gather(read());
      // An earlier timeout inside wins over the scope's.
      const Deadline inner = co_await weft::timeout(1h, read());
      co_return std::tuple{b, a, inner};
    });
  }(moved));
  EXPECT_LE(before.time(), Deadline::after(2h).time());
  EXPECT_GT(before.time(), Deadline::after(1h).time());
  EXPECT_EQ(after.time(), moved.time());
  EXPECT_LT(outer_wins.time(), moved.time());
}

TEST(TimeoutScope, ACancelledCallerStaysCancelledEvenIfTheDeadlineAlsoPassed) {
  Runtime rt({.workers = 2});
  CancellationSource source;
  weft::Future<void> f = rt.submit(weft::with_cancellation(source.token(), []() -> Task<void> {
    co_await weft::timeout_scope(Deadline::after(1h), [](TimeoutScope&) -> Task<void> {
      co_await sleep_an_hour();
    });
  }()));
  source.cancel();
  EXPECT_THROW(f.get(), Cancelled);
}

TEST(TimeoutScope, AFailureInTheBodyPropagatesAsItself) {
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    co_await weft::timeout_scope(Deadline::after(1h), [](TimeoutScope&) -> Task<void> {
      throw weft_test::TaskError(3);
      co_return;
    });
  }()),
               weft_test::TaskError);
}

}  // namespace
