// weft/wait.hpp: wait on JoinHandles until FirstCompleted / FirstException / AllCompleted;
// cancels nothing (SPEC §8).
#include <weft/wait.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "test_support.hpp"

namespace {

using weft::Cancelled;
using weft::Event;
using weft::JoinHandle;
using weft::ReturnWhen;
using weft::Runtime;
using weft::Task;
using weft::TaskGroup;
using weft::UsageError;
using weft::WaitResult;
using weft_test::TaskError;

using Indices = std::vector<std::size_t>;

Task<int> after(Event& gate, int value) {
  co_await gate.wait();
  co_return value;
}
Task<int> fail_after(Event& gate) {
  co_await gate.wait();
  throw TaskError(2);
}
Task<int> value(int v) { co_return v; }
Task<int> signal_then_after(Event& started, Event& gate, int value) {
  started.set();
  co_await gate.wait();
  co_return value;
}

struct Gates {
  Event a, b, c;
};

TEST(Wait, FirstCompletedReturnsWhenOneTaskHasFinishedAndCancelsNothing) {
  Runtime rt({.workers = 2});
  Gates g;
  struct Seen {
    WaitResult r;
    int late_value = 0;
  };
  Seen seen = rt.block_on([](Gates& g) -> Task<Seen> {
    Seen seen;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<JoinHandle<int>> hs;
      hs.push_back(tg.spawn(after(g.a, 1)));
      hs.push_back(tg.spawn(after(g.b, 2)));
      hs.push_back(tg.spawn(after(g.c, 3)));
      g.b.set();
      seen.r = co_await weft::wait(hs, ReturnWhen::FirstCompleted);
      // Nothing was cancelled: the others still finish normally once released.
      g.a.set();
      g.c.set();
      (void)co_await weft::wait(hs, ReturnWhen::AllCompleted);
      seen.late_value = hs[0].result() + hs[2].result();
    });
    co_return seen;
  }(g));
  EXPECT_EQ(seen.r.done, Indices{1});
  EXPECT_EQ(seen.r.pending, (Indices{0, 2}));
  EXPECT_EQ(seen.late_value, 4);
}

TEST(Wait, AllCompletedWaitsForEveryTask) {
  Runtime rt({.workers = 2});
  Gates g;
  WaitResult r = rt.block_on([](Gates& g) -> Task<WaitResult> {
    WaitResult r;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<JoinHandle<int>> hs;
      hs.push_back(tg.spawn(after(g.a, 1)));
      hs.push_back(tg.spawn(value(2)));
      hs.push_back(tg.spawn(after(g.b, 3)));
      // Opened by a sibling while the body waits.
      (void)tg.spawn([](Gates& g) -> Task<void> {
        co_await weft::this_task::yield();
        g.a.set();
        co_await weft::this_task::yield();
        g.b.set();
      }(g));
      r = co_await weft::wait(hs, ReturnWhen::AllCompleted);
    });
    co_return r;
  }(g));
  EXPECT_EQ(r.done, (Indices{0, 1, 2}));
  EXPECT_TRUE(r.pending.empty());
}

TEST(Wait, FirstExceptionReturnsAtTheFirstRealFailure) {
  Runtime rt({.workers = 2});
  Gates g;
  WaitResult r = rt.block_on([](Gates& g) -> Task<WaitResult> {
    WaitResult r;
    try {
      co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
        std::vector<JoinHandle<int>> hs;
        hs.push_back(tg.spawn(value(1)));  // a success does not end a FirstException wait
        // The failure of task 2 cancels the group, and task 1 used to end (Cancelled) before
        // the wait returned, now and then. Shielded, and known to be running inside its
        // shield (g.c) before task 2 may fail, it can only end once its gate opens, after the
        // wait: pending, deterministically.
        hs.push_back(tg.spawn(weft::shield(signal_then_after(g.c, g.a, 2))));
        hs.push_back(tg.spawn(fail_after(g.b)));
        co_await g.c.wait();
        g.b.set();
        // Shielded: the failure also cancels the group, body included, and an unshielded
        // wait could see that cancellation first.
        r = co_await weft::shield(weft::wait(hs, ReturnWhen::FirstException));
        g.a.set();
      });
    } catch (const weft::ExceptionGroup&) {
      // The failure fails the group as usual, after the wait saw it.
    }
    co_return r;
  }(g));
  ASSERT_EQ(r.pending.size() + r.done.size(), 3u);
  EXPECT_NE(std::find(r.done.begin(), r.done.end(), 2u), r.done.end());
  // Task 1 cannot have finished (shielded, its gate opens after the wait); task 0 may or may
  // not have.
  EXPECT_NE(std::find(r.pending.begin(), r.pending.end(), 1u), r.pending.end());
}

TEST(Wait, FirstExceptionWithoutAFailureWaitsForAll) {
  Runtime rt({.workers = 2});
  WaitResult r = rt.block_on([]() -> Task<WaitResult> {
    WaitResult r;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<JoinHandle<int>> hs;
      for (int i = 0; i < 8; ++i) hs.push_back(tg.spawn(value(i)));
      r = co_await weft::wait(hs, ReturnWhen::FirstException);
    });
    co_return r;
  }());
  EXPECT_EQ(r.done.size(), 8u);
  EXPECT_TRUE(r.pending.empty());
}

TEST(Wait, HandlesThatFinishedBeforeTheCallAreDoneAtOnce) {
  Runtime rt({.workers = 1});
  WaitResult r = rt.block_on([]() -> Task<WaitResult> {
    std::vector<JoinHandle<int>> hs;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      hs.push_back(tg.spawn(value(1)));
      hs.push_back(tg.spawn(value(2)));
      co_return;
    });
    // The group has ended: every handle is done, and the group is never touched.
    co_return co_await weft::wait(hs, ReturnWhen::AllCompleted);
  }());
  EXPECT_EQ(r.done, (Indices{0, 1}));
}

TEST(Wait, ACancelledWaiterGetsCancelledAndTheTasksRunOn) {
  Runtime rt({.workers = 2});
  Gates g;
  std::atomic<bool> waiting{false};
  weft::CancellationSource source;
  struct Seen {
    bool waiter_cancelled = false;
    int result = 0;
  };
  auto f = rt.submit([](Gates& g, std::atomic<bool>& waiting,
                        weft::CancellationSource& source) -> Task<Seen> {
    Seen seen;
    // Outside the body: the waiter child reads it and may still run after the body ended.
    std::vector<JoinHandle<int>> hs;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      hs.push_back(tg.spawn(after(g.a, 7)));
      // The waiter is a child of its own, cancelled on its own.
      (void)tg.spawn([](std::vector<JoinHandle<int>>& hs, std::atomic<bool>& waiting,
                        weft::CancellationSource& source, Seen& seen) -> Task<void> {
        try {
          waiting.store(true);
          co_await weft::with_cancellation(
              source.token(),
              [](std::vector<JoinHandle<int>>& hs) -> Task<void> {
                (void)co_await weft::wait(hs, ReturnWhen::AllCompleted);
              }(hs));
        } catch (const Cancelled&) {
          seen.waiter_cancelled = true;
        }
      }(hs, waiting, source, seen));
      co_await g.b.wait();
      g.a.set();
      (void)co_await weft::wait(hs, ReturnWhen::AllCompleted);
      seen.result = hs[0].result();
    });
    co_return seen;
  }(g, waiting, source));
  ASSERT_TRUE(weft_test::spin_until([&] { return waiting.load(); }));
  source.cancel();
  g.b.set();
  Seen seen = f.get();
  EXPECT_TRUE(seen.waiter_cancelled);
  EXPECT_EQ(seen.result, 7);
}

TEST(Wait, ATimeoutReturnsWhatIsDoneSoFarWithoutAnErrorAndCancelsNothing) {
  using namespace std::chrono_literals;
  Runtime rt({.workers = 2});
  Gates g;
  struct Seen {
    WaitResult r;
    int late = 0;
  };
  Seen seen = rt.block_on([](Gates& g) -> Task<Seen> {
    Seen seen;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<JoinHandle<int>> hs;
      hs.push_back(tg.spawn(value(1)));
      hs.push_back(tg.spawn(after(g.a, 2)));
      seen.r = co_await weft::wait(hs, ReturnWhen::AllCompleted, 20ms);
      g.a.set();  // the pending task was not cancelled: it still finishes with its value
      (void)co_await weft::wait(hs, ReturnWhen::AllCompleted);
      seen.late = hs[1].result();
    });
    co_return seen;
  }(g));
  EXPECT_EQ(seen.r.done, Indices{0});
  EXPECT_EQ(seen.r.pending, Indices{1});
  EXPECT_EQ(seen.late, 2);
}

TEST(Wait, AZeroTimeoutReportsTheCurrentStateAtOnce) {
  using namespace std::chrono_literals;
  Runtime rt({.workers = 1});
  Gates g;
  WaitResult r = rt.block_on([](Gates& g) -> Task<WaitResult> {
    WaitResult r;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<JoinHandle<int>> hs;
      hs.push_back(tg.spawn(after(g.a, 1)));
      r = co_await weft::wait(hs, ReturnWhen::FirstCompleted, 0ms);
      g.a.set();
    });
    co_return r;
  }(g));
  EXPECT_TRUE(r.done.empty());
  EXPECT_EQ(r.pending, Indices{0});
}

TEST(Wait, AnEmptyVectorOrAnEmptyHandleIsAUsageError) {
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
                 std::vector<JoinHandle<int>> none;
                 (void)co_await weft::wait(none, ReturnWhen::FirstCompleted);
               }()),
               UsageError);
  try {
    rt.block_on([]() -> Task<void> {
      std::vector<JoinHandle<int>> hs;
      co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
        hs.push_back(tg.spawn(value(1)));
        JoinHandle<int> moved = std::move(hs[0]);
        (void)co_await weft::wait(hs, ReturnWhen::FirstCompleted);
      });
    }());
    ADD_FAILURE() << "no error";
  } catch (const weft::ExceptionGroup& e) {
    EXPECT_TRUE(e.contains<UsageError>());  // the body's error, reported by its group
  }
}

// Many waits racing many completions on 4 workers: every wait returns with its condition
// met, and nothing is counted twice or missed.
TEST(Wait, WaitsRacingCompletionsNeverMissOne) {
  Runtime rt({.workers = 4});
  const int rounds = weft_test::kSanitized ? 50 : 500;
  for (int round = 0; round < rounds; ++round) {
    const bool ok = rt.block_on([]() -> Task<bool> {
      bool ok = true;
      co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
        std::vector<JoinHandle<int>> hs;
        for (int i = 0; i < 16; ++i)
          hs.push_back(tg.spawn([](int i) -> Task<int> {
            for (int k = 0; k < i % 4; ++k) co_await weft::this_task::yield();
            co_return i;
          }(i)));
        WaitResult first = co_await weft::wait(hs, ReturnWhen::FirstCompleted);
        ok = ok && !first.done.empty();
        WaitResult all = co_await weft::wait(hs, ReturnWhen::AllCompleted);
        ok = ok && all.done.size() == 16 && all.pending.empty();
      });
      co_return ok;
    }());
    ASSERT_TRUE(ok) << "round " << round;
  }
}

}  // namespace
