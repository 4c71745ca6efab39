// weft/task_group.hpp: results through JoinHandles, spawning while the group waits, fail-fast
// cancellation and ExceptionGroup contents, outer cancellation, nesting, cancel(), misuse
// (SPEC §4).
//
// Synchronisation is by Events (a waiting task holds no worker) and atomics; a task that must
// hold its worker while it waits for a sibling only does so on runtimes with spare workers.
// No timing assertions: spin_until() only turns a hang into a failure.
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "test_support.hpp"

#include <weft/detail/frame_allocator.hpp>

namespace {

using weft_test::TaskError;

using weft_test::spin_until;

using weft::CancellationSource;
using weft::Cancelled;
using weft::Event;
using weft::ExceptionGroup;
using weft::Future;
using weft::JoinHandle;
using weft::Outcome;
using weft::Runtime;
using weft::Task;
using weft::task_group;
using weft::TaskGroup;
using weft::UsageError;
namespace this_task = weft::this_task;

// The exception every failing task of these tests throws: which task threw it.

// Counts the tasks of one kind: how many started, ended (by any means) and saw Cancelled.
// `all_started` is set when `expected` of them have started.
struct Tracker {
  explicit Tracker(int expected = 0) : expected(expected) {}
  const int expected;
  std::atomic<int> started{0};
  std::atomic<int> ended{0};
  std::atomic<int> cancelled{0};
  Event all_started;

  void start() {
    if (started.fetch_add(1, std::memory_order_acq_rel) + 1 == expected) all_started.set();
  }
};

// Marks a tracked task's end, also when it ends by throwing.
struct EndGuard {
  Tracker& t;
  ~EndGuard() { t.ended.fetch_add(1, std::memory_order_acq_rel); }
};

Task<int> value_of(int v) { co_return v; }
Task<std::string> text(std::string s) { co_return s; }
Task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }

Task<void> set_flag(std::atomic<bool>& flag) {
  flag.store(true);
  co_return;
}

// Waits for `e`; counts its start, end and cancellation in `t`.
Task<void> wait_on(Event& e, Tracker& t) {
  t.start();
  EndGuard end{t};
  try {
    co_await e.wait();
  } catch (const Cancelled&) {
    t.cancelled.fetch_add(1, std::memory_order_acq_rel);
    throw;
  }
}

// The same, returning `v` when `e` is set.
Task<int> wait_then_return(Event& e, Tracker& t, int v) {
  co_await wait_on(e, t);
  co_return v;
}

// Throws TaskError(id) once `go` is set.
Task<void> fail_after(Event& go, int id) {
  co_await go.wait();
  throw TaskError(id);
}

using weft_test::Eager;

static_assert(std::is_same_v<JoinHandle<void>::value_type, std::monostate>);
static_assert(std::is_same_v<JoinHandle<int>::value_type, int>);
static_assert(std::is_nothrow_move_constructible_v<JoinHandle<int>>);
static_assert(!std::is_copy_constructible_v<JoinHandle<int>>);
static_assert(std::is_same_v<decltype(std::declval<JoinHandle<void>&>().result()), std::monostate&>);
static_assert(std::is_same_v<decltype(std::declval<JoinHandle<void>&>().outcome()), Outcome<void>&>);

// ----------------------------------------------------------------------------------------------
// Results

TEST(TaskGroup, TheBodysResultIsReturnedOnceEveryChildHasFinished) {
  Runtime rt({.workers = 4});
  Tracker children(20);
  const int r = rt.block_on([](Tracker& children) -> Task<int> {
    int seen = -1;
    const int v = co_await task_group([&](TaskGroup& tg) -> Task<int> {
      for (int i = 0; i < children.expected; ++i) {
        auto h = tg.spawn([](Tracker& t, int i) -> Task<void> {
          t.start();
          EndGuard end{t};
          for (int k = 0; k < (i % 5) * 50; ++k) co_await value_of(k);
        }(children, i));
      }
      co_return 42;
    });
    seen = children.ended.load();
    co_return seen == children.expected ? v : -seen;
  }(children));
  EXPECT_EQ(r, 42);
  EXPECT_EQ(children.started.load(), 20);
  EXPECT_EQ(children.ended.load(), 20);
}

TEST(TaskGroup, ResultsAreReadThroughJoinHandlesAfterTheGroupEnded) {
  Runtime rt({.workers = 2});
  std::atomic<bool> void_ran{false};
  struct Results {
    int i = 0;
    std::string s;
    bool void_done = false;
    std::unique_ptr<int> p;
    std::vector<int> many;
  };
  Results r = rt.block_on([](std::atomic<bool>& void_ran) -> Task<Results> {
    std::optional<JoinHandle<int>> hi;
    std::optional<JoinHandle<std::string>> hs;
    std::optional<JoinHandle<void>> hv;
    std::optional<JoinHandle<std::unique_ptr<int>>> hp;
    std::vector<JoinHandle<int>> many;
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      hi.emplace(tg.spawn(value_of(7)));
      hs.emplace(tg.spawn(text("seven")));
      hv.emplace(tg.spawn(set_flag(void_ran)));
      hp.emplace(tg.spawn(boxed(77)));
      for (int i = 0; i < 50; ++i) many.push_back(tg.spawn(value_of(i * 3)));
      co_return;
    });
    Results r;
    r.i = hi->result();
    r.s = hs->result();
    r.void_done = hv->done() && hv->outcome().has_value();
    std::monostate m = hv->result();
    (void)m;
    r.p = std::move(hp->result());
    for (auto& h : many) {
      if (!h.done()) r.many.push_back(-1);
      else r.many.push_back(h.outcome().value());
    }
    co_return r;
  }(void_ran));
  EXPECT_EQ(r.i, 7);
  EXPECT_EQ(r.s, "seven");
  EXPECT_TRUE(r.void_done);
  EXPECT_TRUE(void_ran.load());
  ASSERT_NE(r.p, nullptr);
  EXPECT_EQ(*r.p, 77);
  ASSERT_EQ(r.many.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(r.many[i], i * 3) << "child " << i;
}

Task<int> throws_error(int id) {
  throw TaskError(id);
  co_return 0;
}

TEST(TaskGroup, ResultReadsTheSameValueEachTimeAndOutcomeThenTakesIt) {
  Runtime rt({.workers = 2});
  struct Seen {
    bool same_object = false;
    int after_edit = 0;
    int after_move_of_handle = 0;
    int outcome_value = 0;
    int result_after_outcome = 0;
    int failures_rethrown = 0;
  };
  Seen seen = rt.block_on([]() -> Task<Seen> {
    Seen seen;
    std::optional<JoinHandle<std::string>> hs;
    std::optional<JoinHandle<int>> hi, bad;
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      hs.emplace(tg.spawn(text("in place")));
      hi.emplace(tg.spawn(value_of(5)));
      co_return;
    });
    // In a group of its own: its failure would cancel siblings that had not started yet.
    try {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        bad.emplace(tg.spawn(throws_error(9)));
        co_return;
      });
    } catch (const weft::ExceptionGroup&) {
    }
    // Read in place, as often as wanted: the same object each time.
    seen.same_object = &hs->result() == &hs->result() && hs->result() == "in place";
    hi->result() += 1;
    seen.after_edit = hi->result();
    // A moved handle takes the frame, and the value in it, along.
    JoinHandle<int> moved = std::move(*hi);
    seen.after_move_of_handle = moved.result();
    // outcome() takes the value out of the frame; result() then reads the Outcome.
    seen.outcome_value = moved.outcome().value();
    seen.result_after_outcome = moved.result();
    for (int i = 0; i < 2; ++i) {
      try {
        (void)bad->result();
      } catch (const TaskError& e) {
        if (e.id == 9) ++seen.failures_rethrown;
      }
    }
    co_return seen;
  }());
  EXPECT_TRUE(seen.same_object);
  EXPECT_EQ(seen.after_edit, 6);
  EXPECT_EQ(seen.after_move_of_handle, 6);
  EXPECT_EQ(seen.outcome_value, 6);
  EXPECT_EQ(seen.result_after_outcome, 6);
  EXPECT_EQ(seen.failures_rethrown, 2) << "a failed task's result() rethrows every time";
}

TEST(TaskGroup, AJoinHandleRefusesItsResultBeforeItsTaskFinished) {
  Runtime rt({.workers = 2});
  Event release;
  Tracker child(1);
  struct Seen {
    bool done_before = true;
    bool result_refused = false;
    bool outcome_refused = false;
    bool done_after = false;
    int value = 0;
  };
  const Seen seen = rt.block_on([](Event& release, Tracker& child) -> Task<Seen> {
    Seen seen;
    std::optional<JoinHandle<int>> h;
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      h.emplace(tg.spawn(wait_then_return(release, child, 5)));
      co_await child.all_started.wait();
      seen.done_before = h->done();
      try {
        (void)h->result();
      } catch (const UsageError&) {
        seen.result_refused = true;
      }
      try {
        (void)h->outcome();
      } catch (const UsageError&) {
        seen.outcome_refused = true;
      }
      release.set();
    });
    seen.done_after = h->done();
    seen.value = h->result();
    co_return seen;
  }(release, child));
  EXPECT_FALSE(seen.done_before);
  EXPECT_TRUE(seen.result_refused);
  EXPECT_TRUE(seen.outcome_refused);
  EXPECT_TRUE(seen.done_after);
  EXPECT_EQ(seen.value, 5);
}

// A node of a tree that spawns its own children into the group: fanout^depth leaves.
Task<void> spawn_tree(TaskGroup& tg, std::atomic<int>& visited, int fanout, int depth) {
  visited.fetch_add(1, std::memory_order_relaxed);
  if (depth == 0) co_return;
  for (int k = 0; k < fanout; ++k) {
    co_await this_task::yield();
    auto h = tg.spawn(spawn_tree(tg, visited, fanout, depth - 1));
  }
}

TEST(TaskGroup, ChildrenSpawnMoreChildrenWhileTheGroupWaits) {
  Runtime rt({.workers = 4});
  std::atomic<int> visited{0};
  Event body_returning;
  struct Seen {
    int visited_when_body_returned = -1;
    int visited_after_group = -1;
  };
  const Seen seen = rt.block_on([](std::atomic<int>& visited, Event& body_returning) -> Task<Seen> {
    Seen seen;
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      // The root of the tree starts spawning only once the body has returned.
      auto h = tg.spawn([](TaskGroup& tg, std::atomic<int>& visited, Event& go) -> Task<void> {
        co_await go.wait();
        co_await spawn_tree(tg, visited, 3, 6);
      }(tg, visited, body_returning));
      seen.visited_when_body_returned = visited.load();
      body_returning.set();
      co_return;
    });
    seen.visited_after_group = visited.load();
    co_return seen;
  }(visited, body_returning));
  // 1 + 3 + ... + 3^6 nodes.
  EXPECT_EQ(seen.visited_when_body_returned, 0);
  EXPECT_EQ(seen.visited_after_group, 1093);
  EXPECT_EQ(visited.load(), 1093);
}

TEST(TaskGroup, AnEmptyGroupReturnsTheBodysResult) {
  Runtime rt({.workers = 1});
  const int r = rt.block_on([]() -> Task<int> {
    co_return co_await task_group([](TaskGroup&) -> Task<int> { co_return 3; });
  }());
  EXPECT_EQ(r, 3);
}

TEST(TaskGroup, AGroupCanBeTheTaskARuntimeRuns) {
  Runtime rt({.workers = 2});
  std::atomic<int> children{0};
  const int r = rt.block_on(task_group([&children](TaskGroup& tg) -> Task<int> {
    for (int i = 0; i < 10; ++i) {
      auto h = tg.spawn([](std::atomic<int>& n) -> Task<void> {
        n.fetch_add(1);
        co_return;
      }(children));
    }
    co_return 6;
  }));
  EXPECT_EQ(r, 6);
  EXPECT_EQ(children.load(), 10);
}

// ----------------------------------------------------------------------------------------------
// Failures

TEST(TaskGroup, AChildFailureCancelsTheBodyAndEveryChild) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(3);
  Event failing_go;
  struct Seen {
    int group_size = -1;
    int failed_id = -1;
    bool body_saw_cancelled = false;
    bool body_went_on = false;
    int waiting_cancelled_handles = 0;
    int ended_when_caught = -1;
  };
  const Seen seen = rt.block_on([](Event& never, Tracker& waiting, Event& failing_go) -> Task<Seen> {
    Seen seen;
    std::vector<JoinHandle<int>> handles;
    std::optional<JoinHandle<void>> failing;
    try {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        for (int i = 0; i < waiting.expected; ++i)
          handles.push_back(tg.spawn(wait_then_return(never, waiting, i)));
        failing.emplace(tg.spawn(fail_after(failing_go, 1)));
        co_await waiting.all_started.wait();
        failing_go.set();
        try {
          co_await never.wait();
          seen.body_went_on = true;
        } catch (const Cancelled&) {
          seen.body_saw_cancelled = true;
          throw;
        }
      });
    } catch (const ExceptionGroup& eg) {
      seen.ended_when_caught = waiting.ended.load();
      seen.group_size = static_cast<int>(eg.exceptions().size());
      try {
        std::rethrow_exception(eg.exceptions().at(0));
      } catch (const TaskError& e) {
        seen.failed_id = e.id;
      } catch (...) {
      }
    }
    for (auto& h : handles)
      if (h.done() && h.outcome().is_cancelled()) ++seen.waiting_cancelled_handles;
    if (!failing->done() || failing->outcome().has_value()) seen.failed_id = -2;
    co_return seen;
  }(never, waiting, failing_go));
  EXPECT_EQ(seen.group_size, 1);
  EXPECT_EQ(seen.failed_id, 1);
  EXPECT_TRUE(seen.body_saw_cancelled);
  EXPECT_FALSE(seen.body_went_on);
  EXPECT_EQ(seen.ended_when_caught, 3) << "the group threw before its children had ended";
  EXPECT_EQ(seen.waiting_cancelled_handles, 3);
  EXPECT_EQ(waiting.cancelled.load(), 3);
}

// Two children throw at the same time (each waits, holding its worker, until the other has
// started), while two more wait for an Event that is never set.
TEST(TaskGroup, TheExceptionGroupHoldsEveryFailureAndNoCancelled) {
  Runtime rt({.workers = 3});
  Event never;
  Tracker waiting(2);
  std::atomic<int> arrived{0};
  struct Seen {
    std::vector<int> ids;
    bool contains_task_error = false;
    bool contains_cancelled = true;
    bool contains_logic_error = true;
    std::size_t split_matching = 0;
    bool split_rest_empty = false;
    bool split_other_matching_empty = false;
    std::size_t split_other_rest = 0;
    std::string what;
  };
  auto rendezvous_then_fail = [](std::atomic<int>& arrived, int id) -> Task<void> {
    arrived.fetch_add(1);
    spin_until([&] { return arrived.load() == 2; });
    throw TaskError(id);
    co_return;
  };
  const Seen seen = rt.block_on([](Event& never, Tracker& waiting, std::atomic<int>& arrived,
                                   auto rendezvous_then_fail) -> Task<Seen> {
    Seen seen;
    try {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        auto w1 = tg.spawn(wait_on(never, waiting));
        auto w2 = tg.spawn(wait_on(never, waiting));
        co_await waiting.all_started.wait();
        auto f1 = tg.spawn(rendezvous_then_fail(arrived, 1));
        auto f2 = tg.spawn(rendezvous_then_fail(arrived, 2));
        co_return;
      });
    } catch (const ExceptionGroup& eg) {
      for (const std::exception_ptr& e : eg.exceptions()) {
        try {
          std::rethrow_exception(e);
        } catch (const TaskError& te) {
          seen.ids.push_back(te.id);
        } catch (const Cancelled&) {
          seen.ids.push_back(-1);
        } catch (...) {
          seen.ids.push_back(-2);
        }
      }
      seen.contains_task_error = eg.contains<TaskError>();
      seen.contains_cancelled = eg.contains<Cancelled>();
      seen.contains_logic_error = eg.contains<std::logic_error>();
      auto [errors, rest] = eg.split<TaskError>();
      seen.split_matching = errors ? errors->exceptions().size() : 0;
      seen.split_rest_empty = !rest.has_value();
      auto [logic, others] = eg.split<std::logic_error>();
      seen.split_other_matching_empty = !logic.has_value();
      seen.split_other_rest = others ? others->exceptions().size() : 0;
      seen.what = eg.what();
    }
    co_return seen;
  }(never, waiting, arrived, rendezvous_then_fail));
  std::vector<int> ids = seen.ids;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int>{1, 2})) << seen.what;
  EXPECT_TRUE(seen.contains_task_error);
  EXPECT_FALSE(seen.contains_cancelled);
  EXPECT_FALSE(seen.contains_logic_error);
  EXPECT_EQ(seen.split_matching, 2u);
  EXPECT_TRUE(seen.split_rest_empty);
  EXPECT_TRUE(seen.split_other_matching_empty);
  EXPECT_EQ(seen.split_other_rest, 2u);
  EXPECT_NE(seen.what.find("task 1"), std::string::npos) << seen.what;
  EXPECT_NE(seen.what.find("task 2"), std::string::npos) << seen.what;
  EXPECT_EQ(seen.what.find("Cancelled"), std::string::npos) << seen.what;
  EXPECT_EQ(waiting.cancelled.load(), 2);
  EXPECT_EQ(waiting.ended.load(), 2);
}

TEST(TaskGroup, ABodyFailureCancelsTheChildrenAndIsReported) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(4);
  struct Seen {
    std::vector<int> ids;
    int ended_when_caught = -1;
  };
  const Seen seen = rt.block_on([](Event& never, Tracker& waiting) -> Task<Seen> {
    Seen seen;
    try {
      co_await task_group([&](TaskGroup& tg) -> Task<int> {
        for (int i = 0; i < waiting.expected; ++i) auto h = tg.spawn(wait_on(never, waiting));
        co_await waiting.all_started.wait();
        throw TaskError(0);
      });
    } catch (const ExceptionGroup& eg) {
      seen.ended_when_caught = waiting.ended.load();
      for (const std::exception_ptr& e : eg.exceptions()) {
        try {
          std::rethrow_exception(e);
        } catch (const TaskError& te) {
          seen.ids.push_back(te.id);
        } catch (...) {
          seen.ids.push_back(-1);
        }
      }
    }
    co_return seen;
  }(never, waiting));
  EXPECT_EQ(seen.ids, (std::vector<int>{0}));
  EXPECT_EQ(seen.ended_when_caught, 4);
  EXPECT_EQ(waiting.cancelled.load(), 4);
}

TEST(TaskGroup, ABodyThatFailsBeforeSpawningAnythingIsReportedInAGroup) {
  Runtime rt({.workers = 1});
  int id = -1;
  try {
    rt.block_on([]() -> Task<void> {
      co_await task_group([](TaskGroup&) -> Task<void> {
        throw TaskError(9);
        co_return;
      });
    }());
  } catch (const ExceptionGroup& eg) {
    ASSERT_EQ(eg.exceptions().size(), 1u);
    try {
      std::rethrow_exception(eg.exceptions()[0]);
    } catch (const TaskError& e) {
      id = e.id;
    }
  }
  EXPECT_EQ(id, 9);
}

// The body throws once a child has started; the child, holding its worker, throws right after.
TEST(TaskGroup, TheBodysFailureAndAChildsFailureAreBothReported) {
  Runtime rt({.workers = 2});
  std::atomic<bool> child_started{false};
  std::atomic<bool> body_throwing{false};
  std::vector<int> ids;
  try {
    rt.block_on([](std::atomic<bool>& child_started, std::atomic<bool>& body_throwing) -> Task<void> {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        auto h = tg.spawn([](std::atomic<bool>& started, std::atomic<bool>& body_throwing) -> Task<void> {
          started.store(true);
          spin_until([&] { return body_throwing.load(); });
          throw TaskError(1);
          co_return;
        }(child_started, body_throwing));
        spin_until([&] { return child_started.load(); });
        body_throwing.store(true);
        throw TaskError(0);
      });
    }(child_started, body_throwing));
  } catch (const ExceptionGroup& eg) {
    for (const std::exception_ptr& e : eg.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const TaskError& te) {
        ids.push_back(te.id);
      } catch (...) {
        ids.push_back(-1);
      }
    }
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int>{0, 1}));
}

// A child that throws something else while it is being cancelled failed for real.
TEST(TaskGroup, AnErrorThrownWhileBeingCancelledIsAFailureToo) {
  Runtime rt({.workers = 2});
  Event never;
  Event go;
  Tracker cleanup(1);
  std::vector<int> ids;
  try {
    rt.block_on([](Event& never, Event& go, Tracker& cleanup) -> Task<void> {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        auto h = tg.spawn([](Event& never, Tracker& t) -> Task<void> {
          try {
            co_await wait_on(never, t);
          } catch (const Cancelled&) {
            throw TaskError(2);  // a cleanup that failed
          }
        }(never, cleanup));
        auto f = tg.spawn(fail_after(go, 1));
        co_await cleanup.all_started.wait();
        go.set();
      });
    }(never, go, cleanup));
  } catch (const ExceptionGroup& eg) {
    for (const std::exception_ptr& e : eg.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const TaskError& te) {
        ids.push_back(te.id);
      } catch (...) {
        ids.push_back(-1);
      }
    }
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int>{1, 2}));
}

TEST(TaskGroup, ExceptionsThatAreNotStdExceptionsAreReportedToo) {
  Runtime rt({.workers = 2});
  bool caught_int = false;
  try {
    rt.block_on([]() -> Task<void> {
      co_await task_group([](TaskGroup& tg) -> Task<void> {
        auto h = tg.spawn([]() -> Task<int> {
          throw 42;
          co_return 0;
        }());
        co_return;
      });
    }());
  } catch (const ExceptionGroup& eg) {
    ASSERT_EQ(eg.exceptions().size(), 1u);
    try {
      std::rethrow_exception(eg.exceptions()[0]);
    } catch (int v) {
      caught_int = v == 42;
    }
    EXPECT_FALSE(eg.contains<std::exception>());
  }
  EXPECT_TRUE(caught_int);
}

// ----------------------------------------------------------------------------------------------
// Cancellation from outside

TEST(TaskGroup, CancellingTheCallerPropagatesCancelledNotAnExceptionGroup) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(3);
  std::atomic<bool> body_saw_cancelled{false};
  std::atomic<bool> after_group_ran{false};
  Future<void> f = rt.submit([](Event& never, Tracker& waiting, std::atomic<bool>& body_saw,
                                std::atomic<bool>& after) -> Task<void> {
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < waiting.expected; ++i) auto h = tg.spawn(wait_on(never, waiting));
      try {
        co_await never.wait();
      } catch (const Cancelled&) {
        body_saw.store(true);
        throw;
      }
    });
    after.store(true);
  }(never, waiting, body_saw_cancelled, after_group_ran));
  ASSERT_TRUE(spin_until([&] { return waiting.started.load() == waiting.expected; }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(body_saw_cancelled.load());
  EXPECT_FALSE(after_group_ran.load());
  EXPECT_EQ(waiting.ended.load(), 3);
  EXPECT_EQ(waiting.cancelled.load(), 3);
}

// Children that fail for real while the caller's cancellation tears the group down do not turn
// the caller's Cancelled into an ExceptionGroup.
// r2: a real failure is never lost to an outside cancellation (asyncio 3.12+, Trio), even one
// the cancellation provoked; the caller's scope stays cancelled.
TEST(TaskGroup, RealFailuresProvokedByTheCallersCancellationAreStillReported) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(2);
  Future<void> f = rt.submit([](Event& never, Tracker& waiting) -> Task<void> {
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < waiting.expected; ++i) {
        auto h = tg.spawn([](Event& never, Tracker& t, int i) -> Task<void> {
          try {
            co_await wait_on(never, t);
          } catch (const Cancelled&) {
            throw TaskError(i);
          }
        }(never, waiting, i));
      }
      co_return;
    });
  }(never, waiting));
  ASSERT_TRUE(spin_until([&] { return waiting.started.load() == waiting.expected; }));
  f.cancel();
  try {
    f.get();
    ADD_FAILURE() << "the group returned normally";
  } catch (const ExceptionGroup& g) {
    EXPECT_EQ(g.exceptions().size(), 2u);
    EXPECT_TRUE(g.contains<TaskError>());
  }
  EXPECT_EQ(waiting.ended.load(), 2);
}

TEST(TaskGroup, ACancellationSourceFromAnotherThreadCancelsTheGroupWithCancelled) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(3);
  CancellationSource source;
  struct Seen {
    bool cancelled = false;
    bool group_error = false;
    bool caller_not_cancelled = false;
  };
  Future<Seen> f = rt.submit([](Event& never, Tracker& waiting, CancellationSource source) -> Task<Seen> {
    Seen seen;
    try {
      co_await weft::with_cancellation(
          source.token(), task_group([&](TaskGroup& tg) -> Task<int> {
            for (int i = 0; i < waiting.expected; ++i) auto h = tg.spawn(wait_on(never, waiting));
            co_await never.wait();
            co_return 1;
          }));
    } catch (const Cancelled&) {
      seen.cancelled = true;
    } catch (const ExceptionGroup&) {
      seen.group_error = true;
    }
    // The caller itself was not cancelled: its own checkpoints still pass.
    co_await this_task::checkpoint();
    seen.caller_not_cancelled = !this_task::cancelled();
    co_return seen;
  }(never, waiting, source));
  ASSERT_TRUE(spin_until([&] { return waiting.started.load() == waiting.expected; }));
  std::thread canceller([&] { EXPECT_TRUE(source.cancel()); });
  canceller.join();
  const Seen seen = f.get();
  EXPECT_TRUE(seen.cancelled);
  EXPECT_FALSE(seen.group_error);
  EXPECT_TRUE(seen.caller_not_cancelled);
  EXPECT_EQ(waiting.cancelled.load(), 3);
  EXPECT_EQ(waiting.ended.load(), 3);
}

TEST(TaskGroup, AGroupInAnAlreadyCancelledTaskNeverRunsItsBody) {
  Runtime rt({.workers = 2});
  std::atomic<bool> waiting{false};
  std::atomic<bool> cancel_requested{false};
  std::atomic<bool> body_ran{false};
  Future<void> f = rt.submit([](std::atomic<bool>& waiting, std::atomic<bool>& cancel_requested,
                                std::atomic<bool>& body_ran) -> Task<void> {
    waiting.store(true);
    spin_until([&] { return cancel_requested.load(); });
    co_await task_group([&](TaskGroup&) -> Task<void> {
      body_ran.store(true);
      co_return;
    });
  }(waiting, cancel_requested, body_ran));
  ASSERT_TRUE(spin_until([&] { return waiting.load(); }));
  f.cancel();
  cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(body_ran.load());
}

TEST(TaskGroup, AFailingOuterGatherCancelsAGroupInsideIt) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(2);
  std::atomic<bool> group_saw_cancelled{false};
  int id = -1;
  try {
    rt.block_on([](Event& never, Tracker& waiting, std::atomic<bool>& saw) -> Task<void> {
      auto grouped = [](Event& never, Tracker& waiting, std::atomic<bool>& saw) -> Task<int> {
        try {
          co_return co_await task_group([&](TaskGroup& tg) -> Task<int> {
            for (int i = 0; i < waiting.expected; ++i) auto h = tg.spawn(wait_on(never, waiting));
            co_return 1;
          });
        } catch (const Cancelled&) {
          saw.store(true);
          throw;
        }
      };
      auto failing = [](Tracker& waiting) -> Task<int> {
        co_await waiting.all_started.wait();
        throw TaskError(3);
      };
      co_await weft::safe_gather(grouped(never, waiting, saw), failing(waiting));
    }(never, waiting, group_saw_cancelled));
  } catch (const TaskError& e) {
    id = e.id;
  }
  EXPECT_EQ(id, 3);
  EXPECT_TRUE(group_saw_cancelled.load());
  EXPECT_EQ(waiting.cancelled.load(), 2);
}

// ----------------------------------------------------------------------------------------------
// Nesting

struct NestedScenario {
  Event never;
  Tracker inner_children{2};
  std::atomic<bool> inner_saw_cancelled{false};
  std::atomic<bool> inner_saw_group{false};
  std::atomic<bool> after_inner_ran{false};

  // A child of the outer group that runs a group of its own (void body, children waiting).
  Task<void> inner_user() {
    try {
      co_await task_group([this](TaskGroup& inner) -> Task<void> {
        for (int i = 0; i < inner_children.expected; ++i)
          auto h = inner.spawn(wait_on(never, inner_children));
        co_return;
      });
      after_inner_ran.store(true);
    } catch (const Cancelled&) {
      inner_saw_cancelled.store(true);
      throw;
    } catch (const ExceptionGroup&) {
      inner_saw_group.store(true);
      throw;
    }
  }
};

TEST(TaskGroup, AnInnerGroupDoesNotAbsorbTheCancellationCausedByAnOuterFailure) {
  Runtime rt({.workers = 2});
  NestedScenario s;
  std::vector<int> ids;
  try {
    rt.block_on([](NestedScenario& s) -> Task<void> {
      co_await task_group([&](TaskGroup& outer) -> Task<void> {
        auto b = outer.spawn(s.inner_user());
        auto a = outer.spawn([](NestedScenario& s) -> Task<void> {
          co_await s.inner_children.all_started.wait();
          throw TaskError(1);
        }(s));
        co_return;
      });
    }(s));
  } catch (const ExceptionGroup& eg) {
    for (const std::exception_ptr& e : eg.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const TaskError& te) {
        ids.push_back(te.id);
      } catch (...) {
        ids.push_back(-1);
      }
    }
  }
  EXPECT_EQ(ids, (std::vector<int>{1}));
  EXPECT_TRUE(s.inner_saw_cancelled.load());
  EXPECT_FALSE(s.inner_saw_group.load());
  EXPECT_FALSE(s.after_inner_ran.load()) << "the inner group swallowed the outer cancellation";
  EXPECT_EQ(s.inner_children.cancelled.load(), 2);
}

// Both bodies return void, so an inner group that took the outer cancel() for its own would end
// quietly.
TEST(TaskGroup, AnInnerGroupDoesNotAbsorbAnOuterCancel) {
  Runtime rt({.workers = 2});
  NestedScenario s;
  std::atomic<bool> after_outer_ran{false};
  rt.block_on([](NestedScenario& s, std::atomic<bool>& after_outer_ran) -> Task<void> {
    co_await task_group([&](TaskGroup& outer) -> Task<void> {
      auto b = outer.spawn(s.inner_user());
      auto a = outer.spawn([](NestedScenario& s, TaskGroup& outer) -> Task<void> {
        co_await s.inner_children.all_started.wait();
        outer.cancel();
      }(s, outer));
      co_return;
    });
    after_outer_ran.store(true);
  }(s, after_outer_ran));
  EXPECT_TRUE(after_outer_ran.load()) << "a void group ended by cancel() must end quietly";
  EXPECT_TRUE(s.inner_saw_cancelled.load());
  EXPECT_FALSE(s.inner_saw_group.load());
  EXPECT_FALSE(s.after_inner_ran.load()) << "the inner group swallowed the outer cancellation";
  EXPECT_EQ(s.inner_children.cancelled.load(), 2);
}

TEST(TaskGroup, CancellingTheCallerCancelsNestedGroupsAllTheWayDown) {
  Runtime rt({.workers = 2});
  NestedScenario s;
  Future<void> f = rt.submit([](NestedScenario& s) -> Task<void> {
    co_await task_group([&](TaskGroup& outer) -> Task<void> {
      auto b = outer.spawn(s.inner_user());
      auto c = outer.spawn(s.inner_user());
      co_return;
    });
  }(s));
  // Two inner groups of two children each: wait for all four.
  ASSERT_TRUE(spin_until([&] { return s.inner_children.started.load() == 4; }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(s.inner_saw_cancelled.load());
  EXPECT_FALSE(s.inner_saw_group.load());
  EXPECT_FALSE(s.after_inner_ran.load());
  EXPECT_EQ(s.inner_children.cancelled.load(), 4);
  EXPECT_EQ(s.inner_children.ended.load(), 4);
}

// The outer body itself waits in an inner group when a sibling of it fails.
TEST(TaskGroup, ABodyWaitingInAnInnerGroupIsCancelledByASiblingFailure) {
  Runtime rt({.workers = 2});
  NestedScenario s;
  std::atomic<bool> body_went_on{false};
  std::vector<int> ids;
  try {
    rt.block_on([](NestedScenario& s, std::atomic<bool>& body_went_on) -> Task<void> {
      co_await task_group([&](TaskGroup& outer) -> Task<int> {
        auto a = outer.spawn([](NestedScenario& s) -> Task<void> {
          co_await s.inner_children.all_started.wait();
          throw TaskError(5);
        }(s));
        co_await s.inner_user();
        body_went_on.store(true);
        co_return 1;
      });
    }(s, body_went_on));
  } catch (const ExceptionGroup& eg) {
    for (const std::exception_ptr& e : eg.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const TaskError& te) {
        ids.push_back(te.id);
      } catch (...) {
        ids.push_back(-1);
      }
    }
  }
  EXPECT_EQ(ids, (std::vector<int>{5}));
  EXPECT_TRUE(s.inner_saw_cancelled.load());
  EXPECT_FALSE(s.after_inner_ran.load());
  EXPECT_FALSE(body_went_on.load());
  EXPECT_EQ(s.inner_children.cancelled.load(), 2);
}

// ----------------------------------------------------------------------------------------------
// cancel()

TEST(TaskGroup, CancelEndsAVoidGroupQuietly) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(3);
  struct Seen {
    bool after_group_ran = false;
    bool body_saw_cancelled = false;
    bool token_cancelled = false;
    bool token_cancelled_before = true;
    bool caller_cancelled = true;
  };
  const Seen seen = rt.block_on([](Event& never, Tracker& waiting) -> Task<Seen> {
    Seen seen;
    std::optional<weft::CancellationToken> token;
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      token.emplace(tg.token());
      seen.token_cancelled_before = token->is_cancelled();
      for (int i = 0; i < waiting.expected; ++i) auto h = tg.spawn(wait_on(never, waiting));
      co_await waiting.all_started.wait();
      tg.cancel();
      tg.cancel();  // idempotent
      try {
        co_await never.wait();
      } catch (const Cancelled&) {
        seen.body_saw_cancelled = true;
        throw;
      }
    });
    seen.after_group_ran = true;
    seen.token_cancelled = token->is_cancelled();
    seen.caller_cancelled = this_task::cancelled();
    co_await this_task::checkpoint();
    co_return seen;
  }(never, waiting));
  EXPECT_TRUE(seen.after_group_ran);
  EXPECT_TRUE(seen.body_saw_cancelled);
  EXPECT_FALSE(seen.token_cancelled_before);
  EXPECT_TRUE(seen.token_cancelled);
  EXPECT_FALSE(seen.caller_cancelled) << "cancel() leaked out of the group";
  EXPECT_EQ(waiting.cancelled.load(), 3);
}

TEST(TaskGroup, CancelEndsAGroupWhoseBodyHasNoResultYetWithCancelled) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(2);
  struct Seen {
    bool cancelled = false;
    bool group_error = false;
    int value = 0;
    bool caller_cancelled = true;
  };
  const Seen seen = rt.block_on([](Event& never, Tracker& waiting) -> Task<Seen> {
    Seen seen;
    try {
      seen.value = co_await task_group([&](TaskGroup& tg) -> Task<int> {
        for (int i = 0; i < waiting.expected; ++i) auto h = tg.spawn(wait_on(never, waiting));
        // A child cancels the group while the body waits.
        auto c = tg.spawn([](Tracker& waiting, TaskGroup& tg) -> Task<void> {
          co_await waiting.all_started.wait();
          tg.cancel();
        }(waiting, tg));
        co_await never.wait();
        co_return 5;
      });
    } catch (const Cancelled&) {
      seen.cancelled = true;
    } catch (const ExceptionGroup&) {
      seen.group_error = true;
    }
    seen.caller_cancelled = this_task::cancelled();
    co_await this_task::checkpoint();
    co_return seen;
  }(never, waiting));
  EXPECT_TRUE(seen.cancelled);
  EXPECT_FALSE(seen.group_error);
  EXPECT_EQ(seen.value, 0);
  EXPECT_FALSE(seen.caller_cancelled);
  EXPECT_EQ(waiting.cancelled.load(), 2);
}

TEST(TaskGroup, ABodyThatReturnedItsValueBeforeCancelKeepsIt) {
  Runtime rt({.workers = 2});
  Event never;
  Event body_returned;
  Tracker waiting(1);
  const int r = rt.block_on([](Event& never, Event& body_returned, Tracker& waiting) -> Task<int> {
    co_return co_await task_group([&](TaskGroup& tg) -> Task<int> {
      auto h = tg.spawn([](Event& never, Event& body_returned, Tracker& waiting,
                           TaskGroup& tg) -> Task<void> {
        co_await body_returned.wait();
        tg.cancel();
        co_await wait_on(never, waiting);
      }(never, body_returned, waiting, tg));
      body_returned.set();
      co_return 8;
    });
  }(never, body_returned, waiting));
  EXPECT_EQ(r, 8);
}

// The group is held open by a shielded child until the foreign thread is done with it.
TEST(TaskGroup, CancelFromAForeignThreadCancelsTheBodyAndEveryChild) {
  Runtime rt({.workers = 2});
  Event never;
  Event foreign_done;
  Tracker gate(1);
  Tracker waiting(3);
  std::atomic<TaskGroup*> group{nullptr};
  std::atomic<bool> body_saw_cancelled{false};
  Future<bool> f = rt.submit([](Event& never, Event& foreign_done, Tracker& gate, Tracker& waiting,
                                std::atomic<TaskGroup*>& group, std::atomic<bool>& saw) -> Task<bool> {
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      auto g = tg.spawn(weft::shield([](Event& done, Tracker& gate) -> Task<void> {
        gate.start();
        co_await done.wait();
      }(foreign_done, gate)));
      for (int i = 0; i < waiting.expected; ++i) auto h = tg.spawn(wait_on(never, waiting));
      co_await gate.all_started.wait();
      co_await waiting.all_started.wait();
      group.store(&tg);
      try {
        co_await never.wait();
      } catch (const Cancelled&) {
        saw.store(true);
        throw;
      }
    });
    co_return true;
  }(never, foreign_done, gate, waiting, group, body_saw_cancelled));
  ASSERT_TRUE(spin_until([&] { return group.load() != nullptr; }));
  std::thread foreign([&] {
    group.load()->cancel();
    foreign_done.set();
  });
  foreign.join();
  EXPECT_TRUE(f.get());
  EXPECT_TRUE(body_saw_cancelled.load());
  EXPECT_EQ(waiting.cancelled.load(), 3);
}

// TaskGroup::token() is "cancelled when the group is", and spawn() refuses "once the group is
// cancelled": whoever sees the one must see the other. Here a CancellationCallback on an inner
// group's token runs (on the cancelling thread) inside the outer group's cancel(), after the
// outer group was marked cancelled: spawn() into the outer group is refused there, so the outer
// token must read cancelled too. Everything happens on the thread that calls cancel(), in an
// order the test fixes: the inner group's link was registered on the outer scope after the outer
// token, and the inner body waits under a shield, so nothing else waits on the inner scope.
TEST(TaskGroup, ItsTokenReadsCancelledWheneverSpawnRefusesBecauseTheGroupWasCancelled) {
  Runtime rt({.workers = 2});
  struct Probe {
    Event ready;    // the inner body registered its callback
    Event release;  // the callback ran
    bool ran = false;
    bool refused = false;
    bool inner_token_cancelled = false;
    bool outer_token_cancelled = false;
  } probe;
  const int r = rt.block_on([](Probe& probe) -> Task<int> {
    co_return co_await task_group([&probe](TaskGroup& outer) -> Task<int> {
      const weft::CancellationToken outer_token = outer.token();
      auto c = outer.spawn([](Probe& probe, TaskGroup& outer,
                              weft::CancellationToken outer_token) -> Task<int> {
        co_return co_await task_group([&](TaskGroup& inner) -> Task<int> {
          const weft::CancellationToken inner_token = inner.token();
          weft::CancellationCallback on_cancel(inner_token, [&]() noexcept {
            probe.ran = true;
            probe.inner_token_cancelled = inner_token.is_cancelled();
            try {
              auto h = outer.spawn(value_of(0));
            } catch (const UsageError&) {
              probe.refused = true;
            }
            probe.outer_token_cancelled = outer_token.is_cancelled();
            probe.release.set();
          });
          probe.ready.set();
          co_await weft::shield([](Event& release) -> Task<void> {
            co_await release.wait();
          }(probe.release));
          co_return 1;
        });
      }(probe, outer, outer_token));
      co_await probe.ready.wait();
      outer.cancel();
      co_return 2;
    });
  }(probe));
  EXPECT_EQ(r, 2);
  ASSERT_TRUE(probe.ran);
  EXPECT_TRUE(probe.inner_token_cancelled);
  EXPECT_TRUE(probe.refused);
  EXPECT_TRUE(probe.outer_token_cancelled)
      << "spawn() refused because the group is cancelled, yet its token() is not cancelled";
}

// The same when the cancellation comes from a scope above the group: a gather's scope is
// cancelled by a failing sibling of the task that runs the group. A CancellationCallback on the
// gather scope's own token runs first (the mirror is cancelled before the scope's callbacks),
// while the group, below that scope, already refuses spawn() as cancelled: its token must read
// cancelled as well.
TEST(TaskGroup, ItsTokenReadsCancelledWheneverSpawnRefusesBecauseAnOuterScopeWasCancelled) {
  Runtime rt({.workers = 2});
  struct Probe {
    std::atomic<TaskGroup*> group{nullptr};
    std::optional<weft::CancellationToken> group_token;
    Event group_ready;
    Event probe_ready;
    Event never;
    bool ran = false;
    bool refused = false;
    bool group_token_cancelled = false;
  } probe;
  int id = -1;
  try {
    rt.block_on([](Probe& probe) -> Task<void> {
      auto grouped = [](Probe& probe) -> Task<int> {
        co_return co_await task_group([&probe](TaskGroup& tg) -> Task<int> {
          probe.group_token.emplace(tg.token());
          probe.group.store(&tg);
          probe.group_ready.set();
          co_await probe.never.wait();
          co_return 1;
        });
      };
      auto observer = [](Probe& probe) -> Task<int> {
        co_await probe.group_ready.wait();
        const weft::CancellationToken gather_scope = co_await this_task::token();
        weft::CancellationCallback on_cancel(gather_scope, [&probe]() noexcept {
          probe.ran = true;
          try {
            auto h = probe.group.load()->spawn(value_of(0));
          } catch (const UsageError&) {
            probe.refused = true;
          }
          probe.group_token_cancelled = probe.group_token->is_cancelled();
        });
        probe.probe_ready.set();
        co_await probe.never.wait();
        co_return 2;
      };
      auto failing = [](Probe& probe) -> Task<int> {
        co_await probe.probe_ready.wait();
        throw TaskError(1);
      };
      co_await weft::safe_gather(grouped(probe), observer(probe), failing(probe));
    }(probe));
  } catch (const TaskError& e) {
    id = e.id;
  }
  EXPECT_EQ(id, 1);
  ASSERT_TRUE(probe.ran);
  EXPECT_TRUE(probe.refused);
  EXPECT_TRUE(probe.group_token_cancelled)
      << "spawn() refused because the group is cancelled, yet its token() is not cancelled";
}

// ----------------------------------------------------------------------------------------------
// spawn() misuse

TEST(TaskGroup, SpawningIntoACancelledGroupThrowsUsageErrorAndRunsNothing) {
  Runtime rt({.workers = 2});
  std::atomic<bool> ran{false};
  struct Seen {
    bool refused = false;
    bool after_group_ran = false;
  };
  const Seen seen = rt.block_on([](std::atomic<bool>& ran) -> Task<Seen> {
    Seen seen;
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      tg.cancel();
      try {
        auto h = tg.spawn(set_flag(ran));
      } catch (const UsageError&) {
        seen.refused = true;
      }
      co_return;
    });
    seen.after_group_ran = true;
    co_return seen;
  }(ran));
  EXPECT_TRUE(seen.refused);
  EXPECT_TRUE(seen.after_group_ran);
  EXPECT_FALSE(ran.load());
}

// After a child failed, the group is cancelled: spawning from the body or from another child is
// refused.
TEST(TaskGroup, SpawningIntoAGroupCancelledByAFailureThrowsUsageError) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker waiting(1);
  std::atomic<bool> ran{false};
  std::atomic<int> refused{0};
  std::vector<int> ids;
  try {
    rt.block_on([](Event& never, Tracker& waiting, std::atomic<bool>& ran,
                   std::atomic<int>& refused) -> Task<void> {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        // A child that tries to spawn once it was cancelled.
        auto c = tg.spawn([](Event& never, Tracker& waiting, TaskGroup& tg, std::atomic<bool>& ran,
                             std::atomic<int>& refused) -> Task<void> {
          try {
            co_await wait_on(never, waiting);
          } catch (const Cancelled&) {
          }
          try {
            auto h = tg.spawn(set_flag(ran));
          } catch (const UsageError&) {
            refused.fetch_add(1);
          }
          co_await this_task::checkpoint();  // throws Cancelled again
        }(never, waiting, tg, ran, refused));
        co_await waiting.all_started.wait();
        auto f = tg.spawn([]() -> Task<void> {
          throw TaskError(4);
          co_return;
        }());
        // Let the failure (stolen by the other worker) cancel the group, then try to spawn
        // from the body.
        const weft::CancellationToken token = tg.token();
        spin_until([&] { return token.is_cancelled(); });
        try {
          auto h = tg.spawn(set_flag(ran));
        } catch (const UsageError&) {
          refused.fetch_add(1);
        }
      });
    }(never, waiting, ran, refused));
  } catch (const ExceptionGroup& eg) {
    for (const std::exception_ptr& e : eg.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const TaskError& te) {
        ids.push_back(te.id);
      } catch (...) {
        ids.push_back(-1);
      }
    }
  }
  EXPECT_EQ(ids, (std::vector<int>{4}));
  EXPECT_EQ(refused.load(), 2);
  EXPECT_FALSE(ran.load());
}

TEST(TaskGroup, SpawningAnAlreadyStartedTaskThrowsUsageError) {
  Runtime rt({.workers = 2});
  const int refused = rt.block_on([]() -> Task<int> {
    int refused = 0;
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      Task<int> t = value_of(1);
      co_await t;
      try {
        auto h = tg.spawn(std::move(t));
      } catch (const UsageError&) {
        ++refused;
      }
      try {
        auto h = tg.spawn(Task<int>());
      } catch (const UsageError&) {
        ++refused;
      }
      co_return;
    });
    co_return refused;
  }());
  EXPECT_EQ(refused, 2);
}

// spawn() from a thread that is not a worker, while the group runs (held open by a shielded
// child until that thread is done): the child runs and the group waits for it.
TEST(TaskGroup, AForeignThreadCanSpawnIntoARunningGroup) {
  Runtime rt({.workers = 2});
  Event foreign_done;
  Tracker gate(1);
  std::atomic<TaskGroup*> group{nullptr};
  std::atomic<int> foreign_children{0};
  std::optional<JoinHandle<int>> handle;
  Future<int> f = rt.submit([](Event& foreign_done, Tracker& gate, std::atomic<TaskGroup*>& group,
                               std::atomic<int>& foreign_children) -> Task<int> {
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      auto g = tg.spawn(weft::shield([](Event& done, Tracker& gate) -> Task<void> {
        gate.start();
        co_await done.wait();
      }(foreign_done, gate)));
      co_await gate.all_started.wait();
      group.store(&tg);
    });
    co_return foreign_children.load();
  }(foreign_done, gate, group, foreign_children));
  ASSERT_TRUE(spin_until([&] { return group.load() != nullptr; }));
  std::thread foreign([&] {
    handle.emplace(group.load()->spawn([](std::atomic<int>& n) -> Task<int> {
      co_await this_task::yield();
      n.fetch_add(1);
      co_return 11;
    }(foreign_children)));
    foreign_done.set();
  });
  foreign.join();
  EXPECT_EQ(f.get(), 1) << "the group ended before the foreign thread's child";
  ASSERT_TRUE(handle.has_value());
  EXPECT_TRUE(handle->done());
  EXPECT_EQ(handle->result(), 11);
}

// ----------------------------------------------------------------------------------------------
// Lifetimes

TEST(TaskGroup, DroppingAJoinHandleEarlyLetsItsTaskRunToTheEnd) {
  Runtime rt({.workers = 2});
  Event release;
  Tracker waiting(8);
  std::atomic<int> quick_ended{0};
  rt.block_on([](Event& release, Tracker& waiting, std::atomic<int>& quick_ended) -> Task<void> {
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      // Dropped while their tasks wait.
      for (int i = 0; i < waiting.expected; ++i) {
        JoinHandle<int> h = tg.spawn(wait_then_return(release, waiting, i));
      }
      // Dropped after its task finished, before the group ended.
      auto quick = tg.spawn([](std::atomic<int>& n) -> Task<std::string> {
        n.fetch_add(1);
        co_return std::string(1000, 'x');  // a value the frame must free
      }(quick_ended));
      while (!quick.done()) co_await this_task::yield();
      { JoinHandle<std::string> dropped = std::move(quick); }
      // Moved around and reassigned.
      JoinHandle<int> a = tg.spawn(value_of(1));
      JoinHandle<int> b = tg.spawn(value_of(2));
      a = std::move(b);
      co_await waiting.all_started.wait();
      release.set();
    });
  }(release, waiting, quick_ended));
  EXPECT_EQ(waiting.ended.load(), 8);
  EXPECT_EQ(waiting.cancelled.load(), 0);
  EXPECT_EQ(quick_ended.load(), 1);
}

// Children that loop forever (a step, then a yield) until cancelled; a failure ends the group.
// After it returned, none of them takes another step.
TEST(TaskGroup, NothingRunsAfterTheGroupReturned) {
  Runtime rt({.workers = 4});
  Tracker loopers(6);
  std::atomic<long> steps{0};
  struct Seen {
    long steps_when_returned = -1;
    int live_when_returned = -1;
    bool failed = false;
  };
  struct Loop {
    static Task<void> run(Tracker& t, std::atomic<long>& steps, TaskGroup& tg, int depth) {
      t.start();
      EndGuard end{t};
      for (long i = 0; i < (1L << 40); ++i) {
        steps.fetch_add(1, std::memory_order_relaxed);
        if (depth > 0 && i == 3) {
          bool refused = false;
          try {
            auto h = tg.spawn(run(t, steps, tg, depth - 1));
          } catch (const UsageError&) {
            refused = true;  // the group was cancelled meanwhile
          }
          if (refused) co_await this_task::checkpoint();  // throws Cancelled
        }
        co_await this_task::yield();
      }
    }
  };
  const Seen seen = rt.block_on([](Tracker& loopers, std::atomic<long>& steps) -> Task<Seen> {
    Seen seen;
    try {
      co_await task_group([&](TaskGroup& tg) -> Task<void> {
        for (int i = 0; i < 3; ++i) auto h = tg.spawn(Loop::run(loopers, steps, tg, 1));
        co_await loopers.all_started.wait();
        while (steps.load() < 1000) co_await this_task::yield();
        throw TaskError(0);
      });
    } catch (const ExceptionGroup&) {
      seen.failed = true;
    }
    seen.steps_when_returned = steps.load();
    seen.live_when_returned = loopers.started.load() - loopers.ended.load();
    co_return seen;
  }(loopers, steps));
  EXPECT_TRUE(seen.failed);
  EXPECT_EQ(seen.live_when_returned, 0);
  // Give any straggler every chance to run: more work through the same workers.
  for (int round = 0; round < 20; ++round) {
    rt.block_on([]() -> Task<void> {
      for (int i = 0; i < 100; ++i) co_await this_task::yield();
    }());
  }
  EXPECT_EQ(steps.load(), seen.steps_when_returned) << "a child ran after its group returned";
  EXPECT_EQ(loopers.started.load(), loopers.ended.load());
}

std::atomic<int> g_swallowed_reports{0};

// A child that catches its Cancelled and returns normally breaks the rules; weft reports it
// (in every build) and the group still ends.
TEST(TaskGroup, AChildThatSwallowsItsCancellationIsReportedAndTheGroupStillEnds) {
  Runtime rt({.workers = 2});
  Event never;
  Tracker swallower(1);
  g_swallowed_reports.store(0);
  weft::set_swallowed_cancellation_handler(
      [](std::string_view) { g_swallowed_reports.fetch_add(1); });
  std::vector<int> ids;
  try {
    rt.block_on([](Event& never, Tracker& swallower) -> Task<void> {
      co_await task_group([&](TaskGroup& tg) -> Task<int> {
        auto h = tg.spawn([](Event& never, Tracker& t) -> Task<int> {
          t.start();
          try {
            co_await never.wait();
          } catch (const Cancelled&) {
            co_return -1;  // swallowed
          }
          co_return 0;
        }(never, swallower));
        co_await swallower.all_started.wait();
        auto f = tg.spawn([]() -> Task<void> {
          throw TaskError(6);
          co_return;
        }());
        co_return 0;
      });
    }(never, swallower));
  } catch (const ExceptionGroup& eg) {
    for (const std::exception_ptr& e : eg.exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const TaskError& te) {
        ids.push_back(te.id);
      } catch (...) {
        ids.push_back(-1);
      }
    }
  }
  weft::set_swallowed_cancellation_handler(nullptr);
  EXPECT_EQ(ids, (std::vector<int>{6}));
  EXPECT_EQ(g_swallowed_reports.load(), 1);
}

// ----------------------------------------------------------------------------------------------
// Outside a runtime

Eager group_outside_a_runtime(bool& usage_error, std::atomic<bool>& body_ran) {
  try {
    co_await task_group([&](TaskGroup&) -> Task<void> {
      body_ran.store(true);
      co_return;
    });
  } catch (const UsageError&) {
    usage_error = true;
  }
}

TEST(TaskGroup, AwaitedOutsideARuntimeThrowsUsageError) {
  bool usage_error = false;
  std::atomic<bool> body_ran{false};
  group_outside_a_runtime(usage_error, body_ran);
  EXPECT_TRUE(usage_error);
  EXPECT_FALSE(body_ran.load()) << "the body ran although the group was refused";
}

// A long-lived group (a server's accept loop) whose children finish and whose handles are
// dropped holds no memory for them: each child's frame goes back to the frame cache when the
// child ends, so the group's run allocates no new frame once the cache is warm.
TEST(TaskGroup, AGroupHoldsNoMemoryForChildrenThatFinishedWithTheirHandlesDropped) {
  Runtime rt({.workers = 1});
  constexpr int kChildren = 100'000;
  struct Counts {
    long spawned = 0;
    std::uint64_t frames_from_heap = 0;
  };
  auto accept_loop = [](int children) -> Task<Counts> {
    Counts counts;
    auto child = [](long i) -> Task<long> {
      co_await this_task::yield();
      co_return i;
    };
    // Warm the frame cache first.
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < 100; ++i) tg.spawn(child(i));
      co_return;
    });
    const std::uint64_t before = weft::detail::frame_heap_allocations();
    co_await task_group([&](TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < children; ++i) {
        tg.spawn(child(i));
        ++counts.spawned;
        co_await this_task::yield();
      }
    });
    counts.frames_from_heap = weft::detail::frame_heap_allocations() - before;
    co_return counts;
  };
  const Counts c = rt.block_on(accept_loop(kChildren));
  EXPECT_EQ(c.spawned, kChildren);
  // A few frames at most (the yields interleave a handful of children), never one per child.
  EXPECT_LT(c.frames_from_heap, 64u);
}

}  // namespace
