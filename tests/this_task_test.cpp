// weft/this_task.hpp: what a running task can ask about itself (SPEC §3): token(), checkpoint(),
// yield(), deadline(), cancelled().
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::TaskError;
using weft_test::HangGuard;

using namespace std::chrono_literals;

using weft_test::spin_until;

using weft::Cancelled;
using weft::CancellationCallback;
using weft::CancellationSource;
using weft::CancellationToken;
using weft::Deadline;
using weft::Future;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;

namespace this_task = weft::this_task;



Task<int> value_of(int v) { co_return v; }

using weft_test::Eager;

// ----------------------------------------------------------------------------------------------
// token()

struct TokenProbe {
  std::atomic<bool> started{false};
  std::atomic<bool> can_be_cancelled{false};
  std::atomic<bool> cancelled_at_first{true};
  std::atomic<bool> saw_cancellation{false};
};

// Polls its own token, without suspending, until it is cancelled; returns the token.
Task<CancellationToken> poll_own_token(TokenProbe& p) {
  CancellationToken t = co_await this_task::token();
  p.can_be_cancelled.store(t.can_be_cancelled());
  p.cancelled_at_first.store(t.is_cancelled());
  p.started.store(true);
  p.saw_cancellation.store(spin_until([&] { return t.is_cancelled(); }));
  co_return t;
}

TEST(ThisTask, TheTokenFollowsTheTasksScopeAndOutlivesIt) {
  TokenProbe p;
  std::optional<CancellationToken> token;
  {
    Runtime rt({.workers = 2});
    Future<CancellationToken> f = rt.submit(poll_own_token(p));
    ASSERT_TRUE(spin_until([&] { return p.started.load(); }));
    f.cancel();
    token = f.get();  // the task was never handed Cancelled: it returns normally
  }
  EXPECT_TRUE(p.can_be_cancelled.load());
  EXPECT_FALSE(p.cancelled_at_first.load());
  EXPECT_TRUE(p.saw_cancellation.load());
  // The scope, its task and the runtime are gone; the token keeps the state it had.
  EXPECT_TRUE(token->is_cancelled());
  EXPECT_TRUE(token->can_be_cancelled());
}

// Neither Future::cancel() nor ~Runtime (which cancels what still runs) may reach a task that
// has ended. Many rounds: ~Runtime races with the end of the root's bookkeeping.
TEST(ThisTask, TheTokenOfAnUncancelledTaskStaysUncancelledAfterTheTaskEnds) {
  for (int round = 0; round < 200; ++round) {
    std::optional<CancellationToken> token;
    {
      Runtime rt({.workers = 1});
      Future<CancellationToken> f = rt.submit([]() -> Task<CancellationToken> {
        // Two awaits of token() share the scope's state.
        CancellationToken a = co_await this_task::token();
        CancellationToken b = co_await this_task::token();
        co_return a.shared_state() == b.shared_state() ? a : CancellationToken{};
      }());
      ASSERT_TRUE(f.wait_for(60s));
      f.cancel();  // the task has ended: nothing is left to cancel
      token = f.get();
      EXPECT_FALSE(token->is_cancelled()) << "Future::cancel reached a task that had ended";
    }
    ASSERT_TRUE(token->can_be_cancelled());
    ASSERT_FALSE(token->is_cancelled())
        << "~Runtime cancelled a task that had ended, in round " << round;
  }
}

// A gather child's scope ends with the gather: cancelling its caller afterwards leaves the
// child's token as it was.
TEST(ThisTask, TheTokenOfAGatherChildKeepsItsStateAfterTheGatherEnds) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::optional<CancellationToken> token;  // written before `have_token`
    std::atomic<bool> have_token{false};
  } s;
  Future<void> f = rt.submit([](Shared& s) -> Task<void> {
    auto [t, unused] = co_await safe_gather(
        []() -> Task<CancellationToken> {
          CancellationToken t = co_await this_task::token();
          co_return t;
        }(),
        value_of(1));
    (void)unused;
    s.token = t;
    s.have_token.store(true);
    HangGuard guard;
    while (!guard.expired()) co_await this_task::yield();
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.have_token.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(s.token->can_be_cancelled());
  EXPECT_FALSE(s.token->is_cancelled());
}

TEST(ThisTask, TheTokenOfAGatherChildIsCancelledWhenASiblingFails) {
  Runtime rt({.workers = 2});
  TokenProbe p;
  std::atomic<bool> checkpoint_threw{false};
  try {
    rt.block_on([](TokenProbe& p, std::atomic<bool>& checkpoint_threw) -> Task<void> {
      auto child = [](TokenProbe& p, std::atomic<bool>& checkpoint_threw) -> Task<void> {
        CancellationToken t = co_await poll_own_token(p);  // awaited: runs in this child's scope
        try {
          co_await this_task::checkpoint();
        } catch (const Cancelled&) {
          checkpoint_threw.store(true);
          throw;
        }
      };
      auto failing = [](TokenProbe& p) -> Task<void> {
        HangGuard guard;
        while (!p.started.load() && !guard.expired()) co_await this_task::yield();
        throw TaskError(1);
      };
      co_await safe_gather(child(p, checkpoint_threw), failing(p));
    }(p, checkpoint_threw));
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 1);
  }
  EXPECT_FALSE(p.cancelled_at_first.load());
  EXPECT_TRUE(p.saw_cancellation.load());
  EXPECT_TRUE(checkpoint_threw.load());
}

// The cancellation of a root travels down through nested gathers to the token of a task three
// levels below.
TEST(ThisTask, TheTokenOfADeeplyNestedTaskIsCancelledWithItsRoot) {
  Runtime rt({.workers = 2});
  TokenProbe p;
  Future<void> f = rt.submit([](TokenProbe& p) -> Task<void> {
    auto leaf = [](TokenProbe& p) -> Task<int> {
      co_await poll_own_token(p);
      co_await this_task::checkpoint();
      co_return 0;
    };
    auto middle = [](TokenProbe& p, auto leaf) -> Task<int> {
      auto [a, b] = co_await safe_gather(leaf(p), value_of(1));
      co_return a + b;
    };
    std::vector<Task<int>> tasks;
    tasks.push_back(middle(p, leaf));
    co_await safe_gather(std::move(tasks));
  }(p));
  ASSERT_TRUE(spin_until([&] { return p.started.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(p.saw_cancellation.load());
}

TEST(ThisTask, ACallbackOnTheTaskTokenRunsWhenTheTaskIsCancelled) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::optional<CancellationToken> token;  // written before `published`
    std::atomic<bool> published{false};
  } s;
  // Yields until cancelled: it can only end with Cancelled (a release flag set after cancel()
  // could be seen first, and the task would then rightly return normally).
  Future<void> f = rt.submit([](Shared& s) -> Task<void> {
    s.token = co_await this_task::token();
    s.published.store(true);
    HangGuard guard;
    while (!guard.expired()) co_await this_task::yield();
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.published.load(); }));
  int runs = 0;
  CancellationCallback cb(*s.token, [&] { ++runs; });
  EXPECT_EQ(runs, 0);
  f.cancel();
  EXPECT_EQ(runs, 1) << "Future::cancel returned before the callbacks below it ran";
  EXPECT_THROW(f.get(), Cancelled);
}

Eager token_outside_weft(bool& can_be_cancelled) {
  CancellationToken t = co_await this_task::token();
  can_be_cancelled = t.can_be_cancelled();
}

TEST(ThisTask, TheTokenOutsideAWeftTaskCanNeverBeCancelled) {
  bool can_be_cancelled = true;
  token_outside_weft(can_be_cancelled);
  EXPECT_FALSE(can_be_cancelled);
}

// ----------------------------------------------------------------------------------------------
// checkpoint()

TEST(ThisTask, CheckpointThrowsOnlyOnceTheTaskIsCancelled) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::atomic<int> passed{0};
    std::atomic<bool> ready{false};
    std::atomic<bool> cancel_requested{false};
    std::atomic<bool> threw{false};
  } s;
  Future<void> f = rt.submit([](Shared& s) -> Task<void> {
    for (int i = 0; i < 10'000; ++i) {
      co_await this_task::checkpoint();
      s.passed.fetch_add(1);
    }
    s.ready.store(true);
    spin_until([&] { return s.cancel_requested.load(); });
    try {
      co_await this_task::checkpoint();
    } catch (const Cancelled&) {
      s.threw.store(true);
      throw;
    }
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.ready.load(); }));
  EXPECT_EQ(s.passed.load(), 10'000);
  f.cancel();
  s.cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(s.threw.load());
}

Eager checkpoint_outside_weft(bool& passed) {
  co_await this_task::checkpoint();
  co_await this_task::checkpoint();
  passed = true;
}

TEST(ThisTask, CheckpointOutsideAWeftTaskNeverThrows) {
  bool passed = false;
  checkpoint_outside_weft(passed);
  EXPECT_TRUE(passed);
}

// ----------------------------------------------------------------------------------------------
// yield()

// Two tasks take turns: each acts only on its own turn and yields while it waits. On one worker
// that works only if yield() really lets the other task run.
struct TakingTurns {
  static constexpr int kTurns = 200;
  std::atomic<int> turn{0};  // even: task 0's turn, odd: task 1's
  std::atomic<int> acted[2] = {0, 0};

  Task<void> player(int me) {
    HangGuard guard;
    while (turn.load() < kTurns) {
      if (turn.load() % 2 == me) {
        acted[me].fetch_add(1);
        turn.fetch_add(1);
      }
      co_await this_task::yield();
      if (guard.expired()) co_return;
    }
  }
};

TEST(ThisTask, YieldLetsAnotherRootTaskRunOnOneWorker) {
  Runtime rt({.workers = 1});
  TakingTurns t;
  Future<void> a = rt.submit(t.player(0));
  Future<void> b = rt.submit(t.player(1));
  a.get();
  b.get();
  EXPECT_EQ(t.acted[0].load(), TakingTurns::kTurns / 2);
  EXPECT_EQ(t.acted[1].load(), TakingTurns::kTurns / 2);
}

TEST(ThisTask, YieldLetsAGatherSiblingRunOnOneWorker) {
  Runtime rt({.workers = 1});
  TakingTurns t;
  rt.block_on([](TakingTurns& t) -> Task<void> {
    co_await safe_gather(t.player(0), t.player(1));
  }(t));
  EXPECT_EQ(t.acted[0].load(), TakingTurns::kTurns / 2);
  EXPECT_EQ(t.acted[1].load(), TakingTurns::kTurns / 2);
}

TEST(ThisTask, YieldThrowsCancelledWhenTheTaskWasCancelledMeanwhile) {
  Runtime rt({.workers = 2});
  std::atomic<bool> started{false};
  std::atomic<int> yields_after_cancel{0};
  std::atomic<bool> cancelled{false};
  Future<void> f = rt.submit([](std::atomic<bool>& started, std::atomic<bool>& cancelled,
                                std::atomic<int>& yields_after_cancel) -> Task<void> {
    started.store(true);
    HangGuard guard;
    while (!guard.expired()) {
      const bool was_cancelled = cancelled.load();
      co_await this_task::yield();
      if (was_cancelled) yields_after_cancel.fetch_add(1);
    }
  }(started, cancelled, yields_after_cancel));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  cancelled.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(yields_after_cancel.load(), 0) << "a yield returned normally after the cancellation";
}

Eager yield_outside_weft(bool& passed) {
  co_await this_task::yield();
  passed = true;
}

TEST(ThisTask, YieldOutsideAWorkerContinuesAtOnce) {
  bool passed = false;
  yield_outside_weft(passed);
  EXPECT_TRUE(passed);
}

// ----------------------------------------------------------------------------------------------
// deadline()

TEST(ThisTask, TheDeadlineIsNeverByDefault) {
  Runtime rt({.workers = 2});
  const std::vector<Deadline> seen = rt.block_on([]() -> Task<std::vector<Deadline>> {
    auto deadline_here = []() -> Task<Deadline> {
      const Deadline d = co_await this_task::deadline();
      co_return d;
    };
    std::vector<Deadline> seen;
    const Deadline root = co_await this_task::deadline();
    seen.push_back(root);
    auto [a, b] = co_await safe_gather(deadline_here(), deadline_here());
    seen.push_back(a);
    seen.push_back(b);
    const Deadline shielded = co_await weft::shield(deadline_here());
    seen.push_back(shielded);
    CancellationSource s;
    const Deadline with = co_await weft::with_cancellation(s.token(), deadline_here());
    seen.push_back(with);
    co_return seen;
  }());
  ASSERT_EQ(seen.size(), 5u);
  for (const Deadline& d : seen) {
    EXPECT_EQ(d, Deadline::never());
    EXPECT_TRUE(d.is_never());
    EXPECT_FALSE(d.expired());
  }
}

Eager deadline_outside_weft(bool& never) {
  const Deadline d = co_await this_task::deadline();
  never = d == Deadline::never();
}

TEST(ThisTask, TheDeadlineOutsideAWeftTaskIsNever) {
  bool never = false;
  deadline_outside_weft(never);
  EXPECT_TRUE(never);
}

// ----------------------------------------------------------------------------------------------
// cancelled()

Eager cancelled_outside_weft(bool& cancelled) {
  cancelled = this_task::cancelled();
  co_return;
}

TEST(ThisTask, CancelledIsFalseOutsideTasks) {
  EXPECT_FALSE(this_task::cancelled());
  bool cancelled = true;
  cancelled_outside_weft(cancelled);
  EXPECT_FALSE(cancelled);
  // Also on a thread that has just seen a cancelled runtime's tasks from the outside.
  CancellationSource s;
  s.cancel();
  EXPECT_FALSE(this_task::cancelled());
}

TEST(ThisTask, CancelledIsAPlainPollThatTurnsTrueInACancelledTask) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::atomic<bool> started{false};
    std::atomic<bool> before{true};
    std::atomic<bool> saw{false};
  } s;
  Future<void> f = rt.submit([](Shared& s) -> Task<void> {
    co_await this_task::yield();  // perhaps onto the other worker
    s.before.store(this_task::cancelled());
    s.started.store(true);
    s.saw.store(spin_until([] { return this_task::cancelled(); }));  // no suspension
    co_await this_task::checkpoint();
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.started.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(s.before.load());
  EXPECT_TRUE(s.saw.load());
}

// cancelled() answers for the task that runs on the thread now: inside a shield it is false
// although the caller is cancelled, and after the shield it is the caller's answer again; inside
// a with_cancellation whose token fired it is true, and false again in the uncancelled caller.
TEST(ThisTask, CancelledAnswersForTheTaskRunningNow) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::atomic<bool> waiting{false};
    std::atomic<bool> cancel_requested{false};
    std::atomic<bool> in_shield{true};
    std::atomic<bool> after_shield{false};
  } s;
  Future<void> f = rt.submit([](Shared& s) -> Task<void> {
    s.waiting.store(true);
    spin_until([&] { return s.cancel_requested.load(); });
    const bool inside = co_await weft::shield([]() -> Task<bool> {
      co_await this_task::yield();
      co_return this_task::cancelled();
    }());
    s.in_shield.store(inside);
    s.after_shield.store(this_task::cancelled());
    co_await this_task::checkpoint();
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.waiting.load(); }));
  f.cancel();
  s.cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(s.in_shield.load());
  EXPECT_TRUE(s.after_shield.load());

  CancellationSource source;
  struct Inner {
    std::atomic<bool> started{false};
    std::atomic<bool> inside{false};
    std::atomic<bool> after{true};
  } in;
  Future<void> g = rt.submit([](Inner& in, CancellationToken t) -> Task<void> {
    try {
      co_await weft::with_cancellation(std::move(t), [](Inner& in) -> Task<void> {
        in.started.store(true);
        in.inside.store(spin_until([] { return this_task::cancelled(); }));
        co_await this_task::checkpoint();
      }(in));
    } catch (const Cancelled&) {
    }
    in.after.store(this_task::cancelled());
  }(in, source.token()));
  ASSERT_TRUE(spin_until([&] { return in.started.load(); }));
  source.cancel();
  g.get();
  EXPECT_TRUE(in.inside.load());
  EXPECT_FALSE(in.after.load());
}

}  // namespace
