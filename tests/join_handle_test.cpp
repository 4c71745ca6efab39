// JoinHandle (join_handle.hpp) and the r2 rules of TaskGroup and awaitables (SPEC §1, §3, §4,
// §8): join, per-child cancel, supervised children, nothing lost, shield, composition.
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::TaskError;

using weft::Cancelled;
using weft::Event;
using weft::ExceptionGroup;
using weft::JoinHandle;
using weft::Runtime;
using weft::Task;
using weft::task_group;
using weft::TaskGroup;

Task<int> value(int v) { co_return v; }
Task<int> fail(int id) {
  throw TaskError(id);
  co_return 0;
}
Task<int> wait_then(Event& e, int v) {
  co_await e.wait();
  co_return v;
}

TEST(JoinHandle, JoinWaitsForOneChildAndReturnsItsValue) {
  Runtime rt({.workers = 2});
  Event go;
  const int r = rt.block_on(task_group([&](TaskGroup& tg) -> Task<int> {
    JoinHandle<int> slow = tg.spawn(wait_then(go, 7));
    JoinHandle<int> fast = tg.spawn(value(5));
    const int f = co_await fast.join();
    EXPECT_FALSE(slow.done());
    go.set();
    co_return f + co_await slow.join();
  }));
  EXPECT_EQ(r, 12);
}

TEST(JoinHandle, AHandleIsDirectlyAwaitable) {
  Runtime rt({.workers = 1});
  const int r = rt.block_on(task_group([&](TaskGroup& tg) -> Task<int> {
    JoinHandle<int> h = tg.spawn(value(3));
    co_return co_await h;
  }));
  EXPECT_EQ(r, 3);
}

TEST(JoinHandle, JoinUnderATimeoutCancelsNothingButTheWait) {
  Runtime rt({.workers = 2});
  Event go;
  const int r = rt.block_on(task_group([&](TaskGroup& tg) -> Task<int> {
    JoinHandle<int> h = tg.spawn(wait_then(go, 9));
    bool timed_out = false;
    try {
      (void)co_await weft::timeout(5ms, h.join());
    } catch (const weft::TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_FALSE(h.done());  // the child goes on
    go.set();
    co_return co_await h.join();
  }));
  EXPECT_EQ(r, 9);
}

TEST(JoinHandle, CancelCancelsOneChildAloneAndIsNotAFailureOfTheGroup) {
  Runtime rt({.workers = 2});
  Event never;
  Event go;
  const int r = rt.block_on(task_group([&](TaskGroup& tg) -> Task<int> {
    JoinHandle<int> victim = tg.spawn(wait_then(never, 1));
    JoinHandle<int> sibling = tg.spawn(wait_then(go, 2));
    victim.cancel();
    EXPECT_THROW((void)co_await victim.join(), Cancelled);
    EXPECT_TRUE(victim.outcome().is_cancelled());
    EXPECT_FALSE(sibling.done());
    go.set();
    co_return co_await sibling.join();
  }));
  EXPECT_EQ(r, 2);
}

TEST(JoinHandle, ASupervisedFailureIsKeptInTheHandleAndTheGroupSucceeds) {
  Runtime rt({.workers = 2});
  Event go;
  std::vector<int> results = rt.block_on(task_group([&](TaskGroup& tg) -> Task<std::vector<int>> {
    JoinHandle<int> bad = tg.spawn(weft::supervised, fail(4));
    JoinHandle<int> good = tg.spawn(wait_then(go, 8));
    try {
      (void)co_await bad.join();
      ADD_FAILURE() << "join() of a failed child returned";
    } catch (const TaskError& e) {
      EXPECT_EQ(e.id, 4);
    }
    go.set();  // the sibling was not cancelled by the failure
    const int g = co_await good.join();  // (not inside a braced list: a g++-12 trap)
    co_return std::vector<int>{g};
  }));
  EXPECT_EQ(results, std::vector<int>{8});
}

TEST(JoinHandle, ASupervisedFailureReadAfterTheGroupEndedStaysInItsHandle) {
  Runtime rt({.workers = 2});
  std::optional<JoinHandle<int>> kept;
  rt.block_on([](std::optional<JoinHandle<int>>& kept) -> Task<void> {
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      kept.emplace(tg.spawn(weft::supervised, fail(6)));
      co_return;
    });
  }(kept));
  ASSERT_TRUE(kept->done());
  EXPECT_TRUE(kept->outcome().has_exception());
  EXPECT_THROW(kept->result(), TaskError);
}

TEST(JoinHandle, ASupervisedFailureDroppedUnreadWhileTheGroupRunsFailsTheGroup) {
  Runtime rt({.workers = 2});
  // The handle is dropped at once, before its child fails: the group fails with it.
  try {
    rt.block_on(task_group([](TaskGroup& tg) -> Task<void> {
      tg.spawn(weft::supervised, fail(2));
      co_return;
    }));
    ADD_FAILURE() << "the group succeeded";
  } catch (const ExceptionGroup& g) {
    ASSERT_EQ(g.exceptions().size(), 1u);
    EXPECT_TRUE(g.contains<TaskError>());
  }
  // The handle is dropped after its child failed, while the group still runs.
  try {
    rt.block_on(task_group([&](TaskGroup& tg) -> Task<void> {
      {
        JoinHandle<int> h = tg.spawn(weft::supervised, fail(3));
        std::vector<JoinHandle<int>> hs;
        hs.push_back(std::move(h));
        (void)co_await weft::wait(hs, weft::ReturnWhen::AllCompleted);
        EXPECT_TRUE(hs[0].done());
      }
      co_return;
    }));
    ADD_FAILURE() << "the group succeeded";
  } catch (const ExceptionGroup& g) {
    ASSERT_EQ(g.exceptions().size(), 1u);
    EXPECT_TRUE(g.contains<TaskError>());
  }
}

std::atomic<int> g_unobserved{0};

TEST(JoinHandle, ASupervisedFailureDroppedUnreadAfterTheGroupEndedGoesToTheUnobservedHandler) {
  weft::set_unobserved_error_handler([](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const TaskError& t) {
      g_unobserved.fetch_add(t.id);
    } catch (...) {
    }
  });
  {
    Runtime rt({.workers = 2});
    std::optional<JoinHandle<int>> kept, read;
    rt.block_on([](std::optional<JoinHandle<int>>& kept,
                   std::optional<JoinHandle<int>>& read) -> Task<void> {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        kept.emplace(tg.spawn(weft::supervised, fail(10)));
        read.emplace(tg.spawn(weft::supervised, fail(1000)));
        co_return;
      });
    }(kept, read));
    EXPECT_TRUE(read->outcome().has_exception());  // observed: not reported
    kept.reset();
    read.reset();
  }
  weft::set_unobserved_error_handler(nullptr);
  EXPECT_EQ(g_unobserved.load(), 10);
}

TEST(JoinHandle, WaitFirstExceptionReturnsTheFailedSupervisedChildInDone) {
  Runtime rt({.workers = 2});
  Event never;
  const weft::WaitResult r = rt.block_on(task_group([&](TaskGroup& tg) -> Task<weft::WaitResult> {
    std::vector<JoinHandle<int>> hs;
    hs.push_back(tg.spawn(weft::supervised, wait_then(never, 1)));
    hs.push_back(tg.spawn(weft::supervised, fail(5)));
    weft::WaitResult w = co_await weft::wait(hs, weft::ReturnWhen::FirstException);
    EXPECT_TRUE(hs[1].outcome().has_exception());
    tg.cancel();
    co_return w;
  }));
  EXPECT_EQ(r.done, std::vector<std::size_t>{1});
  EXPECT_EQ(r.pending, std::vector<std::size_t>{0});
}

TEST(JoinHandle, ARealFailureIsNotLostWhenTheGroupIsCancelledFromOutside) {
  Runtime rt({.workers = 2});
  Event never;
  weft::CancellationSource source;
  std::atomic<bool> caller_still_cancelled{false};
  auto body = [&]() -> Task<void> {
    try {
      co_await weft::with_cancellation(source.token(), task_group([&](TaskGroup& tg) -> Task<void> {
        tg.spawn([](weft::CancellationSource& s) -> Task<void> {
          s.cancel();  // the outside cancellation arrives ...
          throw TaskError(1);  // ... while this child fails for real
          co_return;
        }(source));
        co_await never.wait();
      }));
      ADD_FAILURE() << "the group returned normally";
    } catch (const ExceptionGroup& g) {
      EXPECT_TRUE(g.contains<TaskError>());
    }
  };
  rt.block_on(body());
  (void)caller_still_cancelled;
}

TEST(JoinHandle, AShieldSpawnedIntoAGroupCancelledBeforeItStartsStillRuns) {
  Runtime rt({.workers = 1});
  std::atomic<bool> ran{false};
  rt.block_on(task_group([&](TaskGroup& tg) -> Task<void> {
    tg.spawn(weft::shield([](std::atomic<bool>& ran) -> Task<void> {
      ran = true;
      co_return;
    }(ran)));
    tg.cancel();  // before the child started: one worker, it waits in the deque
    co_return;
  }));
  EXPECT_TRUE(ran.load());
}

TEST(JoinHandle, AShieldUnderATimeoutAwaitedByACancelledTaskStillRuns) {
  Runtime rt({.workers = 1});
  std::atomic<bool> ran{false};
  weft::CancellationSource source;
  source.cancel();
  rt.block_on([](weft::CancellationSource& source, std::atomic<bool>& ran) -> Task<void> {
    auto cleanup = [](std::atomic<bool>& ran) -> Task<int> {
      ran = true;
      co_return 1;
    };
    Task<int> inner = weft::timeout(1s, weft::shield(cleanup(ran)));
    // A shield inside with_cancellation by a source that is already cancelled.
    EXPECT_EQ(co_await weft::with_cancellation(source.token(), std::move(inner)), 1);
  }(source, ran));
  EXPECT_TRUE(ran.load());
}

TEST(Awaitables, BlockOnAndSyncWaitAcceptAGather) {
  Runtime rt({.workers = 2});
  auto [a, b] = rt.block_on(weft::safe_gather(value(1), value(2)));
  EXPECT_EQ(a + b, 3);
  auto [c, d] = weft::sync_wait(weft::safe_gather(value(3), value(4)));
  EXPECT_EQ(c + d, 7);
  EXPECT_EQ(rt.submit(weft::safe_gather(value(5), value(6))).get(), std::make_tuple(5, 6));
}

TEST(Awaitables, SpawnTimeoutShieldAndGatherAcceptAnyAwaitable) {
  Runtime rt({.workers = 2});
  const int r = rt.block_on(task_group([](TaskGroup& tg) -> Task<int> {
    JoinHandle<std::tuple<int, int>> pair = tg.spawn(weft::safe_gather(value(1), value(2)));
    auto [x, y] = co_await weft::timeout(1s, weft::safe_gather(value(3), value(4)));
    auto [z] = co_await weft::shield(weft::safe_gather(value(5)));
    JoinHandle<int> nested = tg.spawn(task_group([](TaskGroup& inner) -> Task<int> {
      co_return co_await inner.spawn(value(6)).join();
    }));
    // A gather of a task, a join and a nested group.
    auto [a, b, c] = co_await weft::safe_gather(value(7), nested.join(),
                                                task_group([](TaskGroup&) -> Task<int> {
                                                  co_return 8;
                                                }));
    auto [p, q] = co_await pair.join();
    co_return p + q + x + y + z + a + b + c;
  }));
  EXPECT_EQ(r, 1 + 2 + 3 + 4 + 5 + 7 + 6 + 8);
}

TEST(Awaitables, WaitAnyAcceptsGathers) {
  Runtime rt({.workers = 2});
  auto first = rt.block_on(weft::wait_any(weft::safe_gather(value(1)), weft::safe_gather(value(2))));
  EXPECT_TRUE(first.outcome.has_value());
}

TEST(Awaitables, ATaskGroupConvertsToATask) {
  Runtime rt({.workers = 1});
  Task<int> t = task_group([](TaskGroup& tg) -> Task<int> { co_return co_await tg.spawn(value(4)); });
  EXPECT_EQ(rt.block_on(std::move(t)), 4);
}

// A long-lived group whose children's handles are dropped frees each child's frame when it
// ends: the frame caches, not the group, hold the memory (a server's accept loop).
TEST(JoinHandle, DroppedHandlesFreeTheirChildrenAsTheyEnd) {
  Runtime rt({.workers = 2});
  std::atomic<long> live{0};
  std::atomic<long> peak{0};
  struct Probe {
    std::atomic<long>& live;
    std::atomic<long>& peak;
    explicit Probe(std::atomic<long>& l, std::atomic<long>& p) : live(l), peak(p) {
      const long n = live.fetch_add(1) + 1;
      long seen = peak.load();
      while (n > seen && !peak.compare_exchange_weak(seen, n)) {
      }
    }
    ~Probe() { live.fetch_sub(1); }
  };
  rt.block_on(task_group([&](TaskGroup& tg) -> Task<void> {
    for (int i = 0; i < 20000; ++i) {
      tg.spawn([](std::atomic<long>& live, std::atomic<long>& peak) -> Task<void> {
        Probe p(live, peak);
        co_return;
      }(live, peak));
      if (i % 64 == 63) co_await weft::this_task::yield();  // an accept loop's await
    }
    co_return;
  }));
  EXPECT_EQ(live.load(), 0);
  EXPECT_LT(peak.load(), 20000);
}

}  // namespace
