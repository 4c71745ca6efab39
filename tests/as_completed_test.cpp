// weft/as_completed.hpp: results in completion order, each with its index; destroying the
// Completions early cancels what still runs (SPEC §8).
#include <weft/as_completed.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <stdexcept>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using weft::Cancelled;
using weft::Completed;
using weft::Completions;
using weft::Event;
using weft::Runtime;
using weft::Task;
using weft::TaskGroup;
using weft::UsageError;
using weft_test::TaskError;

Task<int> after(Event& gate, int value) {
  co_await gate.wait();
  co_return value;
}
Task<int> fail_after(Event& gate) {
  co_await gate.wait();
  throw TaskError(2);
}

struct Gates {
  Event e[4];
};

TEST(AsCompleted, HandsBackResultsInTheOrderTheTasksFinishWithTheirIndices) {
  Runtime rt({.workers = 2});
  Gates g;
  std::vector<std::size_t> order = rt.block_on([](Gates& g) -> Task<std::vector<std::size_t>> {
    std::vector<std::size_t> order;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<Task<int>> tasks;
      for (int i = 0; i < 4; ++i) tasks.push_back(after(g.e[i], i * 10));
      Completions<int> done = weft::as_completed(tg, std::move(tasks));
      EXPECT_EQ(done.size(), 4u);
      // Released in the order 2, 0, 3, 1, each only after the previous was handed back.
      for (int i : {2, 0, 3, 1}) {
        g.e[i].set();
        std::optional<Completed<int>> c = co_await done.next();
        EXPECT_TRUE(c.has_value());
        if (!c) co_return;
        EXPECT_EQ(c->outcome.value(), static_cast<int>(c->index) * 10);
        order.push_back(c->index);
      }
      EXPECT_FALSE((co_await done.next()).has_value());
    });
    co_return order;
  }(g));
  EXPECT_EQ(order, (std::vector<std::size_t>{2, 0, 3, 1}));
}

TEST(AsCompleted, AFailureComesBackInItsOutcomeAndDoesNotFailTheGroup) {
  Runtime rt({.workers = 2});
  Gates g;
  bool saw_failure = rt.block_on([](Gates& g) -> Task<bool> {
    bool saw = false;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<Task<int>> tasks;
      tasks.push_back(fail_after(g.e[0]));
      tasks.push_back(after(g.e[1], 1));
      Completions<int> done = weft::as_completed(tg, std::move(tasks));
      g.e[0].set();
      g.e[1].set();
      while (auto c = co_await done.next()) {
        if (c->index == 0) saw = c->outcome.has_exception() && !c->outcome.is_cancelled();
      }
    });
    co_return saw;
  }(g));
  EXPECT_TRUE(saw_failure);
}

TEST(AsCompleted, DestroyingTheCompletionsEarlyCancelsTheTasksStillRunning) {
  Runtime rt({.workers = 2});
  Gates g;
  struct Counts {
    std::atomic<int> started{0};
    std::atomic<int> cancelled{0};
    std::atomic<int> finished{0};
  } counts;
  int first = rt.block_on([](Gates& g, Counts& counts) -> Task<int> {
    int first = -1;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<Task<int>> tasks;
      for (int i = 0; i < 4; ++i)
        tasks.push_back([](Event& gate, int i, Counts& counts) -> Task<int> {
          counts.started.fetch_add(1);
          try {
            co_await gate.wait();
          } catch (const Cancelled&) {
            counts.cancelled.fetch_add(1);
            throw;
          }
          counts.finished.fetch_add(1);
          co_return i;
        }(g.e[i], i, counts));
      {
        Completions<int> done = weft::as_completed(tg, std::move(tasks));
        g.e[3].set();
        auto c = co_await done.next();
        first = c ? static_cast<int>(c->index) : -1;
      }  // the three others are cancelled here (or never start); the group awaits them
    });
    co_return first;
  }(g, counts));
  EXPECT_EQ(first, 3);
  EXPECT_EQ(counts.finished.load(), 1);
  // Every other task that started was cancelled (one not yet started never runs).
  EXPECT_EQ(counts.cancelled.load(), counts.started.load() - 1);
}

TEST(AsCompleted, AFailureNobodyTookFailsTheGroupAfterTheCompletionsAreGone) {
  Runtime rt({.workers = 2});
  Gates g;
  EXPECT_THROW(rt.block_on([](Gates& g) -> Task<void> {
                 co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
                   std::vector<Task<int>> tasks;
                   // Fails even when cancelled: a cleanup that goes wrong.
                   tasks.push_back([](Event& gate, Event& started) -> Task<int> {
                     started.set();
                     try {
                       co_await gate.wait();
                     } catch (const Cancelled&) {
                       throw TaskError(3);
                     }
                     co_return 0;
                   }(g.e[0], g.e[1]));
                   {
                     Completions<int> done = weft::as_completed(tg, std::move(tasks));
                     co_await g.e[1].wait();  // the task runs (and will see the cancellation)
                   }
                 });
               }(g)),
               weft::ExceptionGroup);
}

TEST(AsCompleted, AFailureThatFinishedButWasNeverHandedOutFailsTheGroup) {
  // One worker: the failing task's whole chain (throw, delivery) ends before the body resumes.
  Runtime rt({.workers = 1});
  Gates g;
  EXPECT_THROW(rt.block_on([](Gates& g) -> Task<void> {
                 co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
                   std::vector<Task<int>> tasks;
                   tasks.push_back([](Event& failing) -> Task<int> {
                     failing.set();
                     throw TaskError(4);
                     co_return 0;
                   }(g.e[0]));
                   Completions<int> done = weft::as_completed(tg, std::move(tasks));
                   co_await g.e[0].wait();
                   // Destroyed with the failure delivered but never handed out.
                 });
               }(g)),
               weft::ExceptionGroup);
}

TEST(AsCompleted, ACancelledCallerOfNextGetsCancelled) {
  Runtime rt({.workers = 2});
  Gates g;
  weft::CancellationSource source;
  std::atomic<bool> parked{false};
  auto f = rt.submit(weft::with_cancellation(
      source.token(), [](Gates& g, std::atomic<bool>& parked) -> Task<void> {
        co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
          std::vector<Task<int>> tasks;
          tasks.push_back(after(g.e[0], 0));
          Completions<int> done = weft::as_completed(tg, std::move(tasks));
          parked.store(true);
          (void)co_await done.next();
        });
      }(g, parked)));
  ASSERT_TRUE(weft_test::spin_until([&] { return parked.load(); }));
  source.cancel();
  EXPECT_THROW(f.get(), Cancelled);
}

TEST(AsCompleted, NoTasksEndsAtOnce) {
  Runtime rt({.workers = 1});
  bool empty = rt.block_on([]() -> Task<bool> {
    bool empty = false;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      Completions<int> done = weft::as_completed(tg, std::vector<Task<int>>{});
      empty = !(co_await done.next()).has_value();
    });
    co_return empty;
  }());
  EXPECT_TRUE(empty);
}

TEST(AsCompleted, TwoNextCallsAtOnceAreAUsageError) {
  Runtime rt({.workers = 2});
  Gates g;
  EXPECT_THROW(rt.block_on([](Gates& g) -> Task<void> {
                 co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
                   std::vector<Task<int>> tasks;
                   tasks.push_back(after(g.e[0], 0));
                   Completions<int> done = weft::as_completed(tg, std::move(tasks));
                   auto second = [](Completions<int>& done, Event& open) -> Task<void> {
                     try {
                       (void)co_await done.next();
                     } catch (...) {
                       open.set();
                       throw;
                     }
                   };
                   // The body parks in next(); a child's next() meanwhile is refused, and its
                   // failure then releases the first.
                   (void)tg.spawn(second(done, g.e[0]));
                   (void)co_await done.next();
                 });
               }(g)),
               weft::ExceptionGroup);
}

TEST(AsCompleted, NextOrSizeOnAMovedFromCompletionsIsAUsageError) {
  Runtime rt({.workers = 1});
  EXPECT_TRUE(rt.block_on([]() -> Task<bool> {
    bool refused = false;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      std::vector<Task<int>> tasks;
      tasks.push_back([]() -> Task<int> { co_return 1; }());
      Completions<int> from = weft::as_completed(tg, std::move(tasks));
      Completions<int> to = std::move(from);
      // Was a null dereference.
      EXPECT_THROW((void)from.next(), UsageError);
      EXPECT_THROW((void)from.size(), UsageError);
      auto c = co_await to.next();
      refused = c.has_value() && c->index == 0;
    });
    co_return refused;
  }()));
}

TEST(AsCompleted, ACompletionsMovedOutOfTheBodyDoesNotKeepATimedOutGroupOpen) {
  // The group's cancellation (here its timeout) ends the hold of a Completions that outlives
  // the body; before, the group waited for it for ever.
  Runtime rt({.workers = 2});
  std::optional<Completions<int>> escaped;
  std::atomic<int> cancelled{0};
  EXPECT_THROW(
      rt.block_on(weft::timeout(20ms, weft::task_group([&](TaskGroup& tg) -> Task<void> {
        std::vector<Task<int>> tasks;
        for (int i = 0; i < 3; ++i)
          tasks.push_back([](std::atomic<int>& cancelled) -> Task<int> {
            try {
              co_await weft::sleep_for(weft::Duration::max());
            } catch (const Cancelled&) {
              cancelled.fetch_add(1);
              throw;
            }
            co_return 0;
          }(cancelled));
        escaped.emplace(weft::as_completed(tg, std::move(tasks)));
        co_return;
      }))),
      weft::TimeoutError);
  EXPECT_LE(cancelled.load(), 3) << "every task ended with the group";
  escaped.reset();  // after its group ended: touches nothing of the group
}

// An outside cancellation that arrives while as_completed spawns: either it throws before any
// task started, or it returns with every task accounted for. Before, it could start some tasks
// and then throw UsageError (the rest dropped).
TEST(AsCompleted, AnOutsideCancellationDuringTheSpawnsStartsAllTasksOrNone) {
  Runtime rt({.workers = 2});
  constexpr int kTasks = 500;
  const int rounds = weft_test::kSanitized ? 30 : 150;
  int threw = 0, returned = 0;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> bodies{0};
    std::atomic<bool> go{false};
    struct Seen {
      bool threw = false;
    };
    auto seen = std::make_shared<Seen>();
    weft::Future<void> f = rt.submit(
        [](std::atomic<int>& bodies, std::atomic<bool>& go, std::shared_ptr<Seen> seen) -> Task<void> {
          co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
            std::vector<Task<int>> tasks;
            for (int i = 0; i < kTasks; ++i)
              tasks.push_back([](std::atomic<int>& bodies) -> Task<int> {
                bodies.fetch_add(1);
                co_return 0;
              }(bodies));
            go.store(true);
            try {
              Completions<int> done = weft::as_completed(tg, std::move(tasks));
            } catch (const UsageError&) {
              seen->threw = true;
            }
            co_return;
          });
        }(bodies, go, seen));
    weft_test::spin_until([&] { return go.load(); });
    for (int spin = round % 40; spin > 0; --spin) std::this_thread::yield();
    f.cancel();
    try {
      f.get();
    } catch (const Cancelled&) {
    } catch (const weft::ExceptionGroup&) {
    }
    if (seen->threw) {
      ++threw;
      EXPECT_EQ(bodies.load(), 0) << "as_completed threw after starting tasks (round " << round
                                  << ")";
    } else {
      ++returned;
    }
  }
  RecordProperty("threw", threw);
  RecordProperty("returned", returned);
}

}  // namespace
